package storetest

import (
	"bytes"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// samePending compares two pending sessions as instants and bytes.
func samePending(t *testing.T, what string, got, want store.OAuthPending) {
	t.Helper()
	if got.ID != want.ID || got.Platform != want.Platform || got.Kind != want.Kind ||
		!bytes.Equal(got.Sealed, want.Sealed) ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func testOAuthPending(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := nowMs()
	a := store.OAuthPending{
		ID: "pend-a", Platform: store.PlatformClaude, Kind: "oauth",
		Sealed:    []byte{0, 1, 0xff, 'v', 0, 7},
		CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute),
	}
	b := store.OAuthPending{
		ID: "pend-b", Platform: store.PlatformGemini, Kind: "setup-token",
		Sealed:    []byte("\x00sealed\x00"),
		CreatedAt: now.In(Zone()), ExpiresAt: now.Add(time.Hour).In(Zone()),
	}
	must(t, s.CreateOAuthPending(ctx, a))
	must(t, s.CreateOAuthPending(ctx, b))
	for _, want := range []store.OAuthPending{a, b} {
		got, err := s.TakeOAuthPending(ctx, want.ID)
		must(t, err)
		samePending(t, "TakeOAuthPending", got, want)
	}
	_, err := s.TakeOAuthPending(ctx, "pend-unknown")
	wantErr(t, "TakeOAuthPending unknown", err, store.ErrNotFound)
}

func testOAuthPendingSingleUse(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := nowMs()
	p := store.OAuthPending{ID: "pend-once", Platform: store.PlatformClaude, Kind: "oauth",
		Sealed: []byte("v"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	other := p
	other.ID = "pend-other"
	must(t, s.CreateOAuthPending(ctx, p))
	must(t, s.CreateOAuthPending(ctx, other))
	if _, err := s.TakeOAuthPending(ctx, p.ID); err != nil {
		t.Fatalf("first take: %v", err)
	}
	_, err := s.TakeOAuthPending(ctx, p.ID)
	wantErr(t, "second TakeOAuthPending", err, store.ErrNotFound)
	if got, err := s.TakeOAuthPending(ctx, other.ID); err != nil {
		t.Errorf("taking one pending session removed another: %v", err)
	} else {
		samePending(t, "the other pending session", got, other)
	}
}

func testOAuthPendingExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := nowMs()
	past := store.OAuthPending{ID: "pend-past", Platform: store.PlatformClaude, Kind: "oauth",
		Sealed: []byte("v"), CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-time.Second)}
	short := past
	short.ID, short.CreatedAt, short.ExpiresAt = "pend-short", now, now.Add(100*time.Millisecond)
	must(t, s.CreateOAuthPending(ctx, past))
	must(t, s.CreateOAuthPending(ctx, short))
	_, err := s.TakeOAuthPending(ctx, past.ID)
	wantErr(t, "TakeOAuthPending of an expired session", err, store.ErrNotFound)
	_, err = s.TakeOAuthPending(ctx, past.ID)
	wantErr(t, "TakeOAuthPending of an expired session, again", err, store.ErrNotFound)

	time.Sleep(time.Until(short.ExpiresAt) + 20*time.Millisecond)
	_, err = s.TakeOAuthPending(ctx, short.ID)
	wantErr(t, "TakeOAuthPending after ExpiresAt", err, store.ErrNotFound)
}

func testOAuthPendingConflict(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := nowMs()
	orig := store.OAuthPending{ID: "pend-dup", Platform: store.PlatformClaude, Kind: "oauth",
		Sealed: []byte("orig"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	dup := orig
	dup.Sealed, dup.Kind = []byte("dup"), "setup-token"
	must(t, s.CreateOAuthPending(ctx, orig))
	wantErr(t, "CreateOAuthPending with a taken ID", s.CreateOAuthPending(ctx, dup), store.ErrConflict)
	got, err := s.TakeOAuthPending(ctx, orig.ID)
	must(t, err)
	samePending(t, "pending session after conflict", got, orig)
}

func testSetAccountSecret(t *testing.T, s store.Store) {
	ctx := t.Context()
	orig := newAccount("sec", at(0))
	orig.SealedProxy = []byte("proxy")
	orig.BaseURL = "https://api.example.test"
	orig.CooldownUntil = ptr(at(time.Hour))
	orig.CooldownKind = store.CooldownTransient
	orig.CooldownReason = "529"
	orig.LastUsedAt = ptr(at(time.Minute))
	must(t, s.CreateAccount(ctx, orig))
	v0, err := s.ChangeVersion(ctx)
	must(t, err)

	before := nowMs()
	newSecret := []byte{9, 0, 0xfe, 'r', 'o', 't'}
	must(t, s.SetAccountSecret(ctx, orig.ID, newSecret))
	after := time.Now()
	got, err := s.GetAccount(ctx, orig.ID)
	must(t, err)
	if got.UpdatedAt.Before(before) || got.UpdatedAt.After(after) {
		t.Errorf("UpdatedAt = %v, want within [%v, %v]", got.UpdatedAt, before, after)
	}
	want := orig
	want.SealedSecret = newSecret
	want.UpdatedAt = got.UpdatedAt
	sameAccount(t, "after SetAccountSecret", got, want)
	if v1, err := s.ChangeVersion(ctx); err != nil || v1 == v0 {
		t.Errorf("ChangeVersion after SetAccountSecret = %d, %v; was %d", v1, err, v0)
	}

	missing := store.AccountID("acct-missing")
	wantErr(t, "SetAccountSecret of an unknown account", s.SetAccountSecret(ctx, missing, newSecret), store.ErrNotFound)
	_, err = s.GetAccount(ctx, missing)
	wantErr(t, "GetAccount after SetAccountSecret of an unknown account", err, store.ErrNotFound)
}
