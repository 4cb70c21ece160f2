package storetest

import (
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

func testSticky(t *testing.T, s store.Store) {
	ctx := t.Context()
	get := func(session string) (store.AccountID, bool) {
		t.Helper()
		id, ok, err := s.GetSticky(ctx, session, 0)
		must(t, err)
		return id, ok
	}
	if id, ok := get("conv-1"); ok {
		t.Errorf("unknown session bound to %q", id)
	}
	must(t, s.SetSticky(ctx, "conv-1", "acct-a", time.Hour))
	must(t, s.SetSticky(ctx, "conv-2", "acct-b", time.Hour))
	if id, ok := get("conv-1"); !ok || id != "acct-a" {
		t.Errorf("conv-1 → %q, %v; want acct-a", id, ok)
	}
	// Rebinding replaces the account.
	must(t, s.SetSticky(ctx, "conv-1", "acct-c", time.Hour))
	if id, ok := get("conv-1"); !ok || id != "acct-c" {
		t.Errorf("rebound conv-1 → %q, %v; want acct-c", id, ok)
	}
	must(t, s.DeleteSticky(ctx, "conv-1"))
	if id, ok := get("conv-1"); ok {
		t.Errorf("deleted conv-1 still bound to %q", id)
	}
	if id, ok := get("conv-2"); !ok || id != "acct-b" {
		t.Errorf("conv-2 → %q, %v after deleting conv-1; want acct-b", id, ok)
	}
	must(t, s.DeleteSticky(ctx, "never-bound"))
}

func testStickyTTL(t *testing.T, s store.Store) {
	ctx := t.Context()
	bound := func(session string) bool {
		_, ok, err := s.GetSticky(ctx, session, 0)
		must(t, err)
		return ok
	}
	must(t, s.SetSticky(ctx, "short", "acct-a", 50*time.Millisecond))
	must(t, s.SetSticky(ctx, "renewed", "acct-a", 400*time.Millisecond))
	must(t, s.SetSticky(ctx, "long", "acct-a", time.Hour))
	start := time.Now()
	if !bound("short") {
		t.Fatal("binding gone at once")
	}
	waitUntil(t, "the 50ms binding to expire", func() bool { return !bound("short") })
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("50ms binding expired after %v", d)
	}

	// Renewal restarts the TTL: 250ms + 250ms after the first set is past
	// the first TTL, but within the second.
	time.Sleep(250*time.Millisecond - time.Since(start))
	must(t, s.SetSticky(ctx, "renewed", "acct-a", 400*time.Millisecond))
	renewed := time.Now()
	time.Sleep(250 * time.Millisecond)
	if !bound("renewed") && time.Since(renewed) < 400*time.Millisecond {
		t.Error("renewed binding expired with its first TTL")
	}
	if !bound("long") {
		t.Error("one-hour binding gone")
	}
}

func testStickyRenewOnGet(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, s.SetSticky(ctx, "conv", "acct-a", 300*time.Millisecond))
	start := time.Now()
	// A hit with renew extends the binding; a miss creates nothing.
	time.Sleep(150 * time.Millisecond)
	id, ok, err := s.GetSticky(ctx, "conv", time.Hour)
	must(t, err)
	if !ok || id != "acct-a" {
		t.Fatalf("GetSticky with renew = %q, %v; want acct-a", id, ok)
	}
	if _, ok, err := s.GetSticky(ctx, "unbound", time.Hour); err != nil || ok {
		t.Errorf("GetSticky of an unbound session with renew: ok %v, %v", ok, err)
	}
	time.Sleep(300*time.Millisecond - time.Since(start) + 150*time.Millisecond)
	if id, ok, err := s.GetSticky(ctx, "conv", 0); err != nil || !ok || id != "acct-a" {
		t.Errorf("binding renewed on get expired with its first TTL: %q, %v, %v", id, ok, err)
	}
	if _, ok, err := s.GetSticky(ctx, "unbound", 0); err != nil || ok {
		t.Errorf("GetSticky with renew bound an unknown session: ok %v, %v", ok, err)
	}
}

func testAdmin(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.GetAdmin(ctx)
	wantErr(t, "GetAdmin before SetAdmin", err, store.ErrNotFound)
	for _, a := range []store.Admin{
		{Username: "admin", PasswordHash: "$2a$10$abcdefghijklmnopqrstuv", UpdatedAt: at(0)},
		{Username: "root", PasswordHash: "$2a$10$zyxwvutsrqponmlkjihgfe", UpdatedAt: at(time.Hour).In(Zone())},
	} {
		must(t, s.SetAdmin(ctx, a))
		got, err := s.GetAdmin(ctx)
		must(t, err)
		if got.Username != a.Username || got.PasswordHash != a.PasswordHash || !got.UpdatedAt.Equal(a.UpdatedAt) {
			t.Errorf("GetAdmin = %+v, want %+v", got, a)
		}
	}
}

func testSessions(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := nowMs()
	a := store.AdminSession{TokenHash: "hash-a", Username: "admin", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	b := store.AdminSession{TokenHash: "hash-b", Username: "admin", CreatedAt: now, ExpiresAt: now.Add(2 * time.Hour)}
	must(t, s.CreateSession(ctx, a))
	must(t, s.CreateSession(ctx, b))
	for _, want := range []store.AdminSession{a, b} {
		got, err := s.GetSession(ctx, want.TokenHash)
		must(t, err)
		if got.TokenHash != want.TokenHash || got.Username != want.Username ||
			!got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
			t.Errorf("GetSession = %+v, want %+v", got, want)
		}
	}
	_, err := s.GetSession(ctx, "hash-unknown")
	wantErr(t, "GetSession unknown", err, store.ErrNotFound)

	must(t, s.DeleteSession(ctx, a.TokenHash))
	_, err = s.GetSession(ctx, a.TokenHash)
	wantErr(t, "GetSession after delete", err, store.ErrNotFound)
	if _, err := s.GetSession(ctx, b.TokenHash); err != nil {
		t.Errorf("deleting one session removed another: %v", err)
	}
}

func testSessionExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := nowMs()
	past := store.AdminSession{TokenHash: "hash-past", Username: "admin", CreatedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)}
	short := store.AdminSession{TokenHash: "hash-short", Username: "admin", CreatedAt: now, ExpiresAt: now.Add(100 * time.Millisecond)}
	must(t, s.CreateSession(ctx, past))
	must(t, s.CreateSession(ctx, short))
	_, err := s.GetSession(ctx, past.TokenHash)
	wantErr(t, "GetSession of an expired session", err, store.ErrNotFound)
	_, err = s.GetSession(ctx, past.TokenHash)
	wantErr(t, "GetSession of an expired session, again", err, store.ErrNotFound)

	if _, err := s.GetSession(ctx, short.TokenHash); err != nil && time.Now().Before(short.ExpiresAt) {
		t.Fatalf("live session: %v", err)
	}
	waitUntil(t, "the 100ms session to expire", func() bool {
		_, err := s.GetSession(ctx, short.TokenHash)
		return err != nil
	})
	_, err = s.GetSession(ctx, short.TokenHash)
	wantErr(t, "GetSession after expiry", err, store.ErrNotFound)
	if time.Now().Before(short.ExpiresAt) {
		t.Error("session expired before its ExpiresAt")
	}
}
