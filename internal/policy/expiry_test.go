package policy

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// TestActivation follows a key that lives 24 h from its first real use,
// against a real store: count_tokens and stats lookups leave it dormant,
// the first real request activates it once, and it expires 24 h later —
// also for a cached copy of the key that predates the activation, and for
// a new engine after a restart.
func TestActivation(t *testing.T) {
	ctx := t.Context()
	c := newClock(t0)
	st := openStore(t, t.TempDir(), c)
	key := store.Key{ID: "k-act", Name: "act", Hash: "h-act", CreatedAt: t0, Policy: store.KeyPolicy{ActivateFor: 24 * time.Hour}}
	if err := st.CreateKey(ctx, key); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	activate := func(ctx context.Context, id store.KeyID, at time.Time) (time.Time, error) {
		calls.Add(1)
		return st.ActivateKey(ctx, id, at)
	}
	e := newEngine(c, func(o *Options) { o.Activate = activate })
	activatedAt := func() *time.Time {
		k, err := st.GetKey(ctx, key.ID)
		if err != nil {
			t.Fatal(err)
		}
		return k.ActivatedAt
	}

	ct := messages()
	ct.CountTokens = true
	if d := e.Check(ctx, key, ct); d != nil {
		t.Fatalf("count_tokens on a dormant key: %v", d)
	}
	if st, err := e.Status(ctx, key); err != nil || st.Expiry.ActivatedAt != nil || st.Expiry.ExpiresAt != nil || st.Expiry.ActivateFor != 24*time.Hour {
		t.Fatalf("status of a dormant key: %+v, %v", st.Expiry, err)
	}
	if at := activatedAt(); at != nil || calls.Load() != 0 {
		t.Fatalf("count_tokens or status activated the key: at %v, %d calls", at, calls.Load())
	}

	c.Advance(time.Hour)
	first := c.Now()
	if d := e.Check(ctx, key, messages()); d != nil {
		t.Fatalf("first real use: %v", d)
	}
	if at := activatedAt(); at == nil || !at.Equal(first) {
		t.Fatalf("activated at %v, want %v", at, first)
	}
	c.Advance(time.Hour)
	for range 3 {
		if d := e.Check(ctx, key, messages()); d != nil {
			t.Fatalf("later use: %v", d)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("Activate called %d times, want once", n)
	}
	if at := activatedAt(); !at.Equal(first) {
		t.Errorf("activation moved to %v", at)
	}
	st1, err := e.Status(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if end := first.Add(24 * time.Hour); st1.Expiry.ExpiresAt == nil || !st1.Expiry.ExpiresAt.Equal(end) || st1.Expiry.Expired {
		t.Errorf("status expiry %+v, want %v", st1.Expiry, end)
	}

	// Just before the end, then at it: the cached key (ActivatedAt nil)
	// and the key as reloaded both expire.
	c.Set(first.Add(24*time.Hour - time.Millisecond))
	if d := e.Check(ctx, key, messages()); d != nil {
		t.Fatalf("a millisecond before the end: %v", d)
	}
	c.Set(first.Add(24 * time.Hour))
	reloaded, err := st.GetKey(ctx, key.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []store.Key{key, reloaded} {
		if d := e.Check(ctx, k, messages()); d == nil || d.Code != CodeKeyExpired || d.Status != 401 {
			t.Errorf("at the end: %v, want 401 %s", d, CodeKeyExpired)
		}
	}
	// count_tokens does not activate, but an expired key is expired for
	// it too.
	if d := e.Check(ctx, reloaded, ct); d == nil || d.Code != CodeKeyExpired {
		t.Errorf("count_tokens on an expired key: %v", d)
	}

	// A restarted engine knows nothing but the store, and agrees.
	e2 := newEngine(c, func(o *Options) { o.Activate = activate })
	if d := e2.Check(ctx, reloaded, messages()); d == nil || d.Code != CodeKeyExpired {
		t.Errorf("after restart: %v", d)
	}
	// So does one holding the stale cached key: the store answers with the
	// first activation, which is over.
	if d := e2.Check(ctx, key, messages()); d == nil || d.Code != CodeKeyExpired {
		t.Errorf("after restart, stale key: %v", d)
	}
	if st2, err := e2.Status(ctx, reloaded); err != nil || !st2.Expiry.Expired {
		t.Errorf("status after the end: %+v, %v", st2.Expiry, err)
	}
}

func TestFixedExpiry(t *testing.T) {
	c := newClock(t0)
	e := newEngine(c, nil)
	end := t0.Add(time.Hour)
	key := store.Key{ID: "k", ExpiresAt: &end}
	if d := e.Check(t.Context(), key, messages()); d != nil {
		t.Fatalf("before expiry: %v", d)
	}
	c.Set(end)
	d := e.Check(t.Context(), key, messages())
	if d == nil || d.Status != 401 || d.Type != TypeAuthentication || d.Code != CodeKeyExpired {
		t.Fatalf("at expiry: %v", d)
	}
	st, err := e.Status(t.Context(), key)
	if err != nil || !st.Expiry.Expired || !st.Expiry.ExpiresAt.Equal(end) {
		t.Errorf("status: %+v, %v", st.Expiry, err)
	}
}
