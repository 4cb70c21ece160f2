package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// newAccount returns a minimal valid account named n.
func newAccount(n string, created time.Time) store.Account {
	return store.Account{
		ID:           store.AccountID("acct-" + n),
		Name:         "account " + n,
		Platform:     store.PlatformClaude,
		Type:         store.TypeOAuth,
		Priority:     50,
		SealedSecret: []byte{1, 0, 0xff, 'n', 0, 7},
		CreatedAt:    created,
		UpdatedAt:    created,
	}
}

func testAccountRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	minimal := newAccount("minimal", at(0))
	minimal.SealedSecret = nil

	full := store.Account{
		ID:             "acct-full",
		Name:           "全部 fields",
		Platform:       store.PlatformOpenAI,
		Type:           store.TypeAPIKey,
		Priority:       1,
		Disabled:       true,
		Unschedulable:  true,
		BaseURL:        "https://api.example.test/v1",
		SealedSecret:   []byte{0, 1, 2, 3, 0, 255},
		SealedProxy:    []byte("\x01sealed proxy\x00"),
		CooldownUntil:  ptr(at(10*time.Minute + 3*time.Millisecond)),
		CooldownKind:   store.CooldownRateLimited,
		CooldownReason: "429 until reset",
		LastUsedAt:     ptr(at(time.Minute)),
		CreatedAt:      at(0),
		UpdatedAt:      at(time.Second),
	}
	zoned := newAccount("zoned", at(0).In(Zone()))
	zoned.UpdatedAt = at(time.Hour).In(Zone())

	for _, a := range []store.Account{minimal, full, zoned} {
		t.Run(string(a.ID), func(t *testing.T) {
			must(t, s.CreateAccount(ctx, a))
			got, err := s.GetAccount(ctx, a.ID)
			must(t, err)
			sameAccount(t, "GetAccount", got, a)
		})
	}
}

func testAccountConflict(t *testing.T, s store.Store) {
	ctx := t.Context()
	orig := newAccount("a", at(0))
	must(t, s.CreateAccount(ctx, orig))
	dup := newAccount("b", at(time.Second))
	dup.ID = orig.ID
	wantErr(t, "CreateAccount with a taken ID", s.CreateAccount(ctx, dup), store.ErrConflict)
	got, err := s.GetAccount(ctx, orig.ID)
	must(t, err)
	sameAccount(t, "account after conflict", got, orig)
}

func testAccountNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, s.CreateAccount(ctx, newAccount("present", at(0))))
	missing := newAccount("missing", at(0))
	_, err := s.GetAccount(ctx, missing.ID)
	wantErr(t, "GetAccount", err, store.ErrNotFound)
	wantErr(t, "UpdateAccount", s.UpdateAccount(ctx, missing), store.ErrNotFound)
	wantErr(t, "DeleteAccount", s.DeleteAccount(ctx, missing.ID), store.ErrNotFound)
	wantErr(t, "SetCooldown", s.SetCooldown(ctx, missing.ID, store.CooldownTransient, at(time.Hour), "x"), store.ErrNotFound)
	if _, err := s.GetAccount(ctx, missing.ID); err == nil {
		t.Error("an operation on a missing account created it")
	}
}

func testListAccounts(t *testing.T, s store.Store) {
	ctx := t.Context()
	accts, err := s.ListAccounts(ctx)
	must(t, err)
	if len(accts) != 0 {
		t.Fatalf("empty store lists %d accounts", len(accts))
	}
	c := newAccount("c", at(3*time.Hour))
	a := newAccount("a", at(1*time.Hour))
	b := newAccount("b", at(2*time.Hour))
	for _, x := range []store.Account{c, a, b} {
		must(t, s.CreateAccount(ctx, x))
	}
	accts, err = s.ListAccounts(ctx)
	must(t, err)
	var ids []store.AccountID
	for _, x := range accts {
		ids = append(ids, x.ID)
	}
	if want := []store.AccountID{a.ID, b.ID, c.ID}; fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Fatalf("ListAccounts = %v, want %v", ids, want)
	}
	sameAccount(t, "listed account", accts[1], b)
}

func testUpdateAccount(t *testing.T, s store.Store) {
	ctx := t.Context()
	orig := newAccount("u", at(0))
	orig.SealedProxy = []byte("proxy")
	orig.CooldownUntil = ptr(at(time.Hour))
	orig.CooldownKind = store.CooldownTransient
	orig.CooldownReason = "529"
	orig.LastUsedAt = ptr(at(time.Minute))
	must(t, s.CreateAccount(ctx, orig))

	upd := store.Account{
		ID:            orig.ID,
		Name:          "renamed",
		Platform:      store.PlatformGemini,
		Type:          store.TypeSetupToken,
		Priority:      100,
		Disabled:      true,
		Unschedulable: true,
		BaseURL:       "http://127.0.0.1:9/x",
		SealedSecret:  []byte("new secret"),
		SealedProxy:   nil, // cleared
		CooldownUntil: nil, // cleared
		LastUsedAt:    ptr(at(2 * time.Minute)),
		CreatedAt:     at(77 * time.Hour), // must be ignored
		UpdatedAt:     at(3 * time.Hour),
	}
	must(t, s.UpdateAccount(ctx, upd))
	want := upd
	want.CreatedAt = orig.CreatedAt
	got, err := s.GetAccount(ctx, orig.ID)
	must(t, err)
	sameAccount(t, "after UpdateAccount", got, want)
}

func testSetCooldown(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := newAccount("cd", at(0))
	must(t, s.CreateAccount(ctx, a))
	until := nowMs().Add(time.Hour)
	for _, kind := range []store.CooldownKind{
		store.CooldownTransient, store.CooldownRateLimited,
		store.CooldownCredentialDead, store.CooldownBlocked,
	} {
		must(t, s.SetCooldown(ctx, a.ID, kind, until, "because "+string(kind)))
		got, err := s.GetAccount(ctx, a.ID)
		must(t, err)
		want := a
		want.CooldownKind, want.CooldownUntil, want.CooldownReason = kind, &until, "because "+string(kind)
		sameAccount(t, "after SetCooldown "+string(kind), got, want)
		if st := got.Status(time.Now()); st != string(kind) {
			t.Errorf("Status = %q, want %q", st, kind)
		}
	}
	must(t, s.SetCooldown(ctx, a.ID, store.CooldownNone, time.Time{}, ""))
	got, err := s.GetAccount(ctx, a.ID)
	must(t, err)
	sameAccount(t, "after clearing the cooldown", got, a)
	if !got.Available(time.Now()) {
		t.Error("account not available after its cooldown was cleared")
	}
}

func testTouchAccounts(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b := newAccount("a", at(0)), newAccount("b", at(0))
	must(t, s.CreateAccount(ctx, a))
	must(t, s.CreateAccount(ctx, b))
	must(t, s.TouchAccounts(ctx, nil))
	ta := at(time.Hour + 5*time.Millisecond)
	ghost := store.AccountID("acct-ghost")
	must(t, s.TouchAccounts(ctx, map[store.AccountID]time.Time{a.ID: ta, ghost: ta}))
	got, err := s.GetAccount(ctx, a.ID)
	must(t, err)
	want := a
	want.LastUsedAt = &ta
	sameAccount(t, "touched account", got, want)
	got, err = s.GetAccount(ctx, b.ID)
	must(t, err)
	sameAccount(t, "untouched account", got, b)
	_, err = s.GetAccount(ctx, ghost)
	wantErr(t, "GetAccount of a touched unknown account", err, store.ErrNotFound)
}

func testDeleteAccount(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b := newAccount("a", at(0)), newAccount("b", at(time.Second))
	must(t, s.CreateAccount(ctx, a))
	must(t, s.CreateAccount(ctx, b))
	must(t, s.DeleteAccount(ctx, a.ID))
	_, err := s.GetAccount(ctx, a.ID)
	wantErr(t, "GetAccount after delete", err, store.ErrNotFound)
	accts, err := s.ListAccounts(ctx)
	must(t, err)
	if len(accts) != 1 || accts[0].ID != b.ID {
		t.Errorf("ListAccounts after delete = %v, want only %s", accts, b.ID)
	}
	wantErr(t, "second DeleteAccount", s.DeleteAccount(ctx, a.ID), store.ErrNotFound)
	must(t, s.CreateAccount(ctx, a)) // the ID is free again
}
