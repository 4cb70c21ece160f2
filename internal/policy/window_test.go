package policy

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// TestWindowRequests: requests count at admission; the window is fixed
// and starts with the first request after the previous window ended, not
// on a clock boundary.
func TestWindowRequests(t *testing.T) {
	c := newClock(t0)
	e := newEngine(c, nil)
	key := store.Key{ID: "k", Policy: store.KeyPolicy{RateWindow: time.Hour, RateRequests: 3}}
	for range 3 {
		mustAdmit(t, e, key, messages())
		c.Advance(10 * time.Minute)
	}
	d := admit(t, e, key, messages())
	if d == nil || d.Code != CodeRateWindowExceeded || !d.ResetAt.Equal(t0.Add(time.Hour)) || retryAfter(d) != "1800" {
		t.Fatalf("4th request at +30m: %v (reset %v, Retry-After %q)", d, d.ResetAt, retryAfter(d))
	}
	// A quiet gap after the window: the next window starts at the next
	// request, at +1h20m, and ends an hour later.
	c.Set(t0.Add(80 * time.Minute))
	for range 3 {
		mustAdmit(t, e, key, messages())
	}
	d = admit(t, e, key, messages())
	if want := t0.Add(140 * time.Minute); d == nil || !d.ResetAt.Equal(want) {
		t.Fatalf("second window: %v, want reset at %v", d, want)
	}
	st, err := e.Status(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	w := st.Window
	if w == nil || !w.Active || !w.Start.Equal(t0.Add(80*time.Minute)) || !w.End.Equal(t0.Add(140*time.Minute)) || w.Requests != 4 || w.RequestsLimit != 3 {
		t.Errorf("status: %+v", w)
	}
	c.Set(t0.Add(140 * time.Minute))
	if st, _ := e.Status(t.Context(), key); st.Window.Active || st.Window.Requests != 0 {
		t.Errorf("status after the window: %+v", st.Window)
	}
	mustAdmit(t, e, key, messages())
}

// TestWindowTokensAndCost: tokens and cost count after the request (Record),
// so the window refuses only once they are recorded; requests already in
// flight when the limit is crossed still finish, and that is the most a
// window overshoots.
func TestWindowTokensAndCost(t *testing.T) {
	c := newClock(t0)
	e := newEngine(c, nil)
	key := store.Key{ID: "k", Policy: store.KeyPolicy{RateWindow: time.Hour, RateTokens: 1000, RateCost: usdPico(1)}}
	rec := func(tokens, cost int64) store.UsageRecord {
		return store.UsageRecord{KeyID: key.ID, Model: "claude-sonnet-4-5", Input: tokens / 2, Output: tokens - tokens/2,
			CostPico: cost, RatedCostPico: cost}
	}
	// Three requests in flight at once, none recorded yet: all admitted.
	for range 3 {
		mustAdmit(t, e, key, messages())
	}
	record(t, e, key, rec(600, 0))
	mustAdmit(t, e, key, messages()) // 600 < 1000
	record(t, e, key, rec(300, 0))
	record(t, e, key, rec(300, 0)) // the in-flight ones land: 1200
	d := admit(t, e, key, messages())
	if d == nil || d.Code != CodeRateWindowExceeded || d.Status != 429 {
		t.Fatalf("after 1200 of 1000 tokens: %v", d)
	}
	st, _ := e.Status(t.Context(), key)
	if st.Window.Tokens != 1200 {
		t.Errorf("status tokens %d, want 1200", st.Window.Tokens)
	}

	// The next window starts clean; a record that arrives after its own
	// window closed counts in none.
	c.Advance(time.Hour)
	record(t, e, key, rec(5000, usdPico(5)))
	mustAdmit(t, e, key, messages())
	record(t, e, key, rec(10, usdPico(0.6)))
	mustAdmit(t, e, key, messages())
	record(t, e, key, rec(10, usdPico(0.4)))
	d = admit(t, e, key, messages())
	if d == nil || d.Code != CodeRateWindowExceeded {
		t.Fatalf("after $1.00 of $1.00: %v", d)
	}
	st, _ = e.Status(t.Context(), key)
	if st.Window.Cost != usdPico(1) || st.Window.Tokens != 20 {
		t.Errorf("status: cost %d tokens %d, want %d and 20", st.Window.Cost, st.Window.Tokens, usdPico(1))
	}
}

// TestWindowExactUnderConcurrency: 200 requests at once on a window of 50
// admit exactly 50.
func TestWindowExactUnderConcurrency(t *testing.T) {
	c := newClock(t0)
	e := newEngine(c, nil)
	key := store.Key{ID: "k", Policy: store.KeyPolicy{RateWindow: time.Minute, RateRequests: 50}}
	var admitted, refused atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 200 {
		wg.Go(func() {
			<-start
			if d := e.Admit(t.Context(), key, messages()); d == nil {
				admitted.Add(1)
			} else if d.Code == CodeRateWindowExceeded {
				refused.Add(1)
			} else {
				t.Errorf("unexpected denial %v", d)
			}
		})
	}
	close(start)
	wg.Wait()
	if admitted.Load() != 50 || refused.Load() != 150 {
		t.Errorf("admitted %d, refused %d; want 50 and 150", admitted.Load(), refused.Load())
	}
}

// TestWindowLengthChange: a new RateWindow starts a new window instead of
// misreading the old one.
func TestWindowLengthChange(t *testing.T) {
	c := newClock(t0)
	e := newEngine(c, nil)
	key := store.Key{ID: "k", Policy: store.KeyPolicy{RateWindow: time.Hour, RateRequests: 1}}
	mustAdmit(t, e, key, messages())
	if d := admit(t, e, key, messages()); d == nil {
		t.Fatal("second request admitted")
	}
	key.Policy.RateWindow = 10 * time.Minute
	mustAdmit(t, e, key, messages())
	d := admit(t, e, key, messages())
	if d == nil || !d.ResetAt.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("after the change: %v", d)
	}
}
