package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// newKey returns a minimal valid key named n.
func newKey(n string, created time.Time) store.Key {
	return store.Key{
		ID:        store.KeyID("key-" + n),
		Name:      "name " + n,
		Hash:      fmt.Sprintf("%064x", n), // unique per n, hash-shaped
		Hint:      "ab" + n,
		CreatedAt: created,
	}
}

func testKeyRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	full := newKey("full", at(0))
	full.Disabled = true
	full.Tags = []string{"team-a", "中文", "with \"quotes\""}
	full.Clients = []string{"claude_code", "codex_cli"}
	full.LastUsedAt = ptr(at(time.Hour + 7*time.Millisecond))
	full.ExpiresAt = ptr(at(30 * 24 * time.Hour))
	full.DeletedAt = ptr(at(2 * time.Hour))

	zoned := newKey("zoned", at(time.Minute).In(Zone()))
	zoned.ExpiresAt = ptr(at(time.Hour).In(Zone()))

	for _, k := range []store.Key{newKey("minimal", at(0)), full, zoned} {
		t.Run(string(k.ID), func(t *testing.T) {
			must(t, s.CreateKey(ctx, k))
			got, err := s.GetKey(ctx, k.ID)
			must(t, err)
			sameKey(t, "GetKey", got, k)
			got, err = s.KeyByHash(ctx, k.Hash)
			must(t, err)
			sameKey(t, "KeyByHash", got, k)
		})
	}
}

func testKeyConflict(t *testing.T, s store.Store) {
	ctx := t.Context()
	orig := newKey("a", at(0))
	must(t, s.CreateKey(ctx, orig))

	sameID := newKey("b", at(time.Second))
	sameID.ID = orig.ID
	wantErr(t, "CreateKey with a taken ID", s.CreateKey(ctx, sameID), store.ErrConflict)

	sameHash := newKey("c", at(time.Second))
	sameHash.Hash = orig.Hash
	wantErr(t, "CreateKey with a taken hash", s.CreateKey(ctx, sameHash), store.ErrConflict)

	got, err := s.GetKey(ctx, orig.ID)
	must(t, err)
	sameKey(t, "key after conflicts", got, orig)
	if _, err := s.GetKey(ctx, sameHash.ID); err == nil {
		t.Error("a conflicting key was stored")
	}
	keys, err := s.ListKeys(ctx, true)
	must(t, err)
	if len(keys) != 1 {
		t.Errorf("ListKeys after conflicts: %d keys, want 1", len(keys))
	}
}

func testKeyNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, s.CreateKey(ctx, newKey("present", at(0))))
	missing := newKey("missing", at(0))
	_, err := s.GetKey(ctx, missing.ID)
	wantErr(t, "GetKey", err, store.ErrNotFound)
	_, err = s.KeyByHash(ctx, missing.Hash)
	wantErr(t, "KeyByHash", err, store.ErrNotFound)
	wantErr(t, "UpdateKey", s.UpdateKey(ctx, missing), store.ErrNotFound)
	wantErr(t, "PurgeKey", s.PurgeKey(ctx, missing.ID), store.ErrNotFound)
}

func testListKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	keys, err := s.ListKeys(ctx, true)
	must(t, err)
	if len(keys) != 0 {
		t.Fatalf("empty store lists %d keys", len(keys))
	}

	// Inserted out of creation order: the list follows CreatedAt.
	c := newKey("c", at(3*time.Hour))
	a := newKey("a", at(1*time.Hour))
	b := newKey("b", at(2*time.Hour))
	for _, k := range []store.Key{c, a, b} {
		must(t, s.CreateKey(ctx, k))
	}
	b.DeletedAt = ptr(at(4 * time.Hour))
	must(t, s.UpdateKey(ctx, b))

	ids := func(includeDeleted bool) []store.KeyID {
		keys, err := s.ListKeys(ctx, includeDeleted)
		must(t, err)
		var out []store.KeyID
		for _, k := range keys {
			out = append(out, k.ID)
		}
		return out
	}
	if got, want := ids(false), []store.KeyID{a.ID, c.ID}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ListKeys(false) = %v, want %v", got, want)
	}
	if got, want := ids(true), []store.KeyID{a.ID, b.ID, c.ID}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ListKeys(true) = %v, want %v", got, want)
	}
	keys, err = s.ListKeys(ctx, true)
	must(t, err)
	sameKey(t, "listed deleted key", keys[1], b)

	got, err := s.KeyByHash(ctx, b.Hash)
	must(t, err)
	sameKey(t, "KeyByHash of a soft-deleted key", got, b)
}

func testUpdateKey(t *testing.T, s store.Store) {
	ctx := t.Context()
	k := newKey("u", at(0))
	k.Tags = []string{"old"}
	k.Clients = []string{"claude_code"}
	k.ExpiresAt = ptr(at(time.Hour))
	k.LastUsedAt = ptr(at(time.Minute))
	must(t, s.CreateKey(ctx, k))

	// Every mutable field changes (ExpiresAt, Tags and Clients are
	// cleared); the immutable ones are set to other values that must be
	// ignored.
	upd := k
	upd.Name = "renamed"
	upd.Disabled = true
	upd.Tags = nil
	upd.Clients = nil
	upd.ExpiresAt = nil
	upd.DeletedAt = ptr(at(2 * time.Hour))
	upd.Hash = fmt.Sprintf("%064x", "other")
	upd.Hint = "zzzz"
	upd.CreatedAt = at(99 * time.Hour)
	upd.LastUsedAt = ptr(at(98 * time.Hour))
	must(t, s.UpdateKey(ctx, upd))

	want := k
	want.Name, want.Disabled, want.Tags, want.Clients = upd.Name, upd.Disabled, nil, nil
	want.ExpiresAt, want.DeletedAt = nil, upd.DeletedAt
	got, err := s.GetKey(ctx, k.ID)
	must(t, err)
	sameKey(t, "after UpdateKey", got, want)
	if _, err := s.KeyByHash(ctx, upd.Hash); err == nil {
		t.Error("UpdateKey changed the hash")
	}

	// And back: tags, clients and expiry set again, soft delete undone.
	upd2 := want
	upd2.Tags = []string{"x", "y"}
	upd2.Clients = []string{"gemini_cli", "droid_cli"}
	upd2.ExpiresAt = ptr(at(5 * time.Hour))
	upd2.DeletedAt = nil
	upd2.Disabled = false
	must(t, s.UpdateKey(ctx, upd2))
	got, err = s.GetKey(ctx, k.ID)
	must(t, err)
	sameKey(t, "after second UpdateKey", got, upd2)
}

// testKeyClients round-trips a key's client list through every read
// (GetKey, KeyByHash, ListKeys) as UpdateKey changes it back and forth,
// with the tags held still so that the two lists cannot be stored in each
// other's place. Each change alone must change ChangeVersion: the relay
// caches keys, and a client just refused must be refused by every
// instance.
func testKeyClients(t *testing.T, s store.Store) {
	ctx := t.Context()
	k := newKey("cl", at(0))
	k.Tags = []string{"tag"}
	k.Clients = []string{"claude_code", "codex_cli"}
	must(t, s.CreateKey(ctx, k))
	check := func(what string) {
		t.Helper()
		got, err := s.GetKey(ctx, k.ID)
		must(t, err)
		sameKey(t, what+": GetKey", got, k)
		got, err = s.KeyByHash(ctx, k.Hash)
		must(t, err)
		sameKey(t, what+": KeyByHash", got, k)
		keys, err := s.ListKeys(ctx, false)
		must(t, err)
		if len(keys) != 1 {
			t.Fatalf("%s: ListKeys returned %d keys", what, len(keys))
		}
		sameKey(t, what+": ListKeys", keys[0], k)
	}
	check("after CreateKey")

	for _, clients := range [][]string{
		{"gemini_cli"},
		nil,
		{"droid_cli", "claude_code", "gemini_cli"},
		{},
	} {
		v0, err := s.ChangeVersion(ctx)
		must(t, err)
		k.Clients = clients
		must(t, s.UpdateKey(ctx, k))
		what := fmt.Sprintf("after UpdateKey with clients %q", clients)
		check(what)
		if v1, err := s.ChangeVersion(ctx); err != nil || v1 == v0 {
			t.Errorf("%s: ChangeVersion = %d, %v; was %d", what, v1, err, v0)
		}
	}
}

func testPurgeKey(t *testing.T, s store.Store) {
	ctx := t.Context()
	k := newKey("p", at(0))
	other := newKey("q", at(time.Second))
	must(t, s.CreateKey(ctx, k))
	must(t, s.CreateKey(ctx, other))
	must(t, s.PurgeKey(ctx, k.ID))

	_, err := s.GetKey(ctx, k.ID)
	wantErr(t, "GetKey after purge", err, store.ErrNotFound)
	_, err = s.KeyByHash(ctx, k.Hash)
	wantErr(t, "KeyByHash after purge", err, store.ErrNotFound)
	keys, err := s.ListKeys(ctx, true)
	must(t, err)
	if len(keys) != 1 || keys[0].ID != other.ID {
		t.Errorf("ListKeys after purge = %v, want only %s", keys, other.ID)
	}
	wantErr(t, "second PurgeKey", s.PurgeKey(ctx, k.ID), store.ErrNotFound)
	// The ID and hash are free again.
	must(t, s.CreateKey(ctx, k))
}

func testTouchKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b, c := newKey("a", at(0)), newKey("b", at(0)), newKey("c", at(0))
	for _, k := range []store.Key{a, b, c} {
		must(t, s.CreateKey(ctx, k))
	}
	must(t, s.TouchKeys(ctx, nil))
	ta, tb := at(time.Hour+1*time.Millisecond), at(2*time.Hour+2*time.Millisecond)
	// A key purged while its touch was batched must not fail the batch
	// nor come back to life.
	ghost := store.KeyID("key-ghost")
	must(t, s.TouchKeys(ctx, map[store.KeyID]time.Time{a.ID: ta, b.ID: tb, ghost: tb}))

	for _, w := range []struct {
		k    store.Key
		used *time.Time
	}{{a, &ta}, {b, &tb}, {c, nil}} {
		want := w.k
		want.LastUsedAt = w.used
		got, err := s.GetKey(ctx, w.k.ID)
		must(t, err)
		sameKey(t, "after TouchKeys", got, want)
	}
	_, err := s.GetKey(ctx, ghost)
	wantErr(t, "GetKey of a touched unknown key", err, store.ErrNotFound)

	later := at(3 * time.Hour)
	must(t, s.TouchKeys(ctx, map[store.KeyID]time.Time{a.ID: later}))
	got, err := s.GetKey(ctx, a.ID)
	must(t, err)
	if got.LastUsedAt == nil || !got.LastUsedAt.Equal(later) {
		t.Errorf("second touch: LastUsedAt = %v, want %v", got.LastUsedAt, later)
	}
}
