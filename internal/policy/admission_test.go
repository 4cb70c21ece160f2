package policy

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/memcounters"
)

// countingCounters counts the round trips a shared store would make: one
// per call, one per batch however many operations it holds.
type countingCounters struct {
	inner *memcounters.Counters

	mu    sync.Mutex
	calls map[string]int // method → calls
	ops   []int          // operations of each batch
}

func newCounting(c *clock) *countingCounters {
	return &countingCounters{inner: memcounters.New(c.Now), calls: map[string]int{}}
}

var _ store.CounterBatcher = (*countingCounters)(nil)

func (c *countingCounters) count(method string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[method]++
}

// take returns the calls and batch sizes since the last take.
func (c *countingCounters) take() (map[string]int, []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	calls, ops := c.calls, c.ops
	c.calls, c.ops = map[string]int{}, nil
	return calls, ops
}

func (c *countingCounters) Add(ctx context.Context, name string, delta int64, expires time.Time) (int64, error) {
	c.count("Add")
	return c.inner.Add(ctx, name, delta, expires)
}

func (c *countingCounters) Get(ctx context.Context, name string) (int64, bool, error) {
	c.count("Get")
	return c.inner.Get(ctx, name)
}

func (c *countingCounters) Acquire(ctx context.Context, name, holder string, limit int, lease time.Duration) (bool, error) {
	c.count("Acquire")
	return c.inner.Acquire(ctx, name, holder, limit, lease)
}

func (c *countingCounters) Release(ctx context.Context, name, holder string) error {
	c.count("Release")
	return c.inner.Release(ctx, name, holder)
}

func (c *countingCounters) InUse(ctx context.Context, name string) (int, error) {
	c.count("InUse")
	return c.inner.InUse(ctx, name)
}

func (c *countingCounters) Batch(ctx context.Context, ops []store.CounterOp) error {
	c.mu.Lock()
	c.calls["Batch"]++
	c.ops = append(c.ops, len(ops))
	c.mu.Unlock()
	return c.inner.Batch(ctx, ops)
}

// expectTrips fails unless the calls since the last take are exactly want.
func expectTrips(t *testing.T, step string, cc *countingCounters, want map[string]int, wantOps ...int) {
	t.Helper()
	calls, ops := cc.take()
	if !maps.Equal(calls, want) {
		t.Errorf("%s: counter calls %v, want %v", step, calls, want)
	}
	if fmt.Sprint(ops) != fmt.Sprint(wantOps) && !(len(ops) == 0 && len(wantOps) == 0) {
		t.Errorf("%s: batch sizes %v, want %v", step, ops, wantOps)
	}
}

// fullKey has every counter limit: a rate window with requests, tokens
// and cost, the four cost limits, and a concurrency limit.
func fullKey(id store.KeyID) store.Key {
	return store.Key{ID: id, Policy: store.KeyPolicy{
		RateWindow: time.Hour, RateRequests: 100, RateTokens: 1_000_000, RateCost: usdPico(100),
		TotalCost: usdPico(1000), WeeklyCost: usdPico(500), DailyCost: usdPico(100), DailyOpusCost: usdPico(50),
		Concurrency: 2,
	}}
}

// opusRequest counts toward all four cost limits.
func opusRequest() Request {
	req := messages()
	req.Model = "claude-opus-4-1"
	return req
}

func opusRecord(key store.Key) store.UsageRecord {
	return store.UsageRecord{KeyID: key.ID, Model: "claude-opus-4-1", Input: 100, Output: 50,
		CostPico: usdPico(0.01), RatedCostPico: usdPico(0.01)}
}

// TestEnterRoundTrips: in the steady state a key with every counter limit
// is admitted in one batch (the window count, its tokens and cost, four
// spend counters, a slot: 8 operations), recorded in one (window tokens
// and cost, four spend counters: 6) and released in one call; a key
// without limits costs no counter call at all. Also on a second instance
// sharing the counters, once it has seen the window and the spend
// counters.
func TestEnterRoundTrips(t *testing.T) {
	c := newClock(t0)
	cc := newCounting(c)
	e := New(Options{Counters: cc, Now: c.Now, Location: shanghai})
	key, req := fullKey("k"), opusRequest()

	// The first request opens the window and seeds the spend counters:
	// extra trips, once.
	release, d := e.Enter(t.Context(), key, req)
	if d != nil {
		t.Fatal(d)
	}
	release()
	record(t, e, key, opusRecord(key))
	cc.take()

	for i := range 3 {
		c.Advance(time.Minute)
		release, d := e.Enter(t.Context(), key, req)
		if d != nil {
			t.Fatalf("request %d: %v", i, d)
		}
		expectTrips(t, "Enter", cc, map[string]int{"Batch": 1}, 8)
		record(t, e, key, opusRecord(key))
		expectTrips(t, "Record", cc, map[string]int{"Batch": 1}, 6)
		release()
		expectTrips(t, "release", cc, map[string]int{"Release": 1})
	}

	// What was counted is what the limits see.
	st, err := e.Status(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if st.Window.Requests != 4 || st.Window.Tokens != 4*150 || st.Window.Cost != 4*usdPico(0.01) {
		t.Errorf("window: %+v", st.Window)
	}
	for _, cs := range st.Costs {
		if cs.Used != 4*usdPico(0.01) {
			t.Errorf("%s spend %d, want %d", cs.Kind, cs.Used, 4*usdPico(0.01))
		}
	}
	if st.Concurrency.InFlight != 0 {
		t.Errorf("%d slots held after every release", st.Concurrency.InFlight)
	}
	cc.take()

	t.Run("second instance", func(t *testing.T) {
		e2 := New(Options{Counters: cc, Now: c.Now, Location: shanghai})
		release, d := e2.Enter(t.Context(), key, req)
		if d != nil {
			t.Fatal(d)
		}
		release()
		record(t, e2, key, opusRecord(key))
		cc.take()
		release, d = e2.Enter(t.Context(), key, req)
		if d != nil {
			t.Fatal(d)
		}
		expectTrips(t, "Enter", cc, map[string]int{"Batch": 1}, 8)
		record(t, e2, key, opusRecord(key))
		expectTrips(t, "Record", cc, map[string]int{"Batch": 1}, 6)
		release()
		expectTrips(t, "release", cc, map[string]int{"Release": 1})
	})

	t.Run("no limits", func(t *testing.T) {
		free := store.Key{ID: "free"}
		for range 2 {
			release, d := e.Enter(t.Context(), free, req)
			if d != nil {
				t.Fatal(d)
			}
			record(t, e, free, opusRecord(free))
			release()
		}
		expectTrips(t, "Enter, Record and release", cc, map[string]int{})
	})

	t.Run("count_tokens", func(t *testing.T) {
		ct := req
		ct.CountTokens = true
		release, d := e.Enter(t.Context(), key, ct)
		if d != nil {
			t.Fatal(d)
		}
		release()
		expectTrips(t, "Enter", cc, map[string]int{"Batch": 1}, 7) // no slot
	})
}

// TestEnterRefusedGivesSlotBack: a request refused for its window or its
// cost after the batch took its slot gives the slot back at once (one
// Release, the refusal's only extra trip), so the key's other requests
// find it free.
func TestEnterRefusedGivesSlotBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  store.Key
		code string
	}{
		{"window", store.Key{ID: "w", Policy: store.KeyPolicy{RateWindow: time.Hour, RateRequests: 1, Concurrency: 1}}, CodeRateWindowExceeded},
		{"cost", store.Key{ID: "c", Policy: store.KeyPolicy{DailyCost: usdPico(1), Concurrency: 1}}, CodeDailyCostExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock(t0)
			cc := newCounting(c)
			e := New(Options{Counters: cc, Now: c.Now, Location: shanghai})
			release, d := e.Enter(t.Context(), tc.key, messages())
			if d != nil {
				t.Fatal(d)
			}
			record(t, e, tc.key, store.UsageRecord{KeyID: tc.key.ID, Model: "claude-sonnet-4-5", RatedCostPico: usdPico(2)})
			release()
			cc.take()

			_, d = e.Enter(t.Context(), tc.key, messages())
			if d == nil || d.Code != tc.code {
				t.Fatalf("got %v, want %s", d, tc.code)
			}
			expectTrips(t, "refused Enter", cc, map[string]int{"Batch": 1, "Release": 1}, 2)
			if n, _ := cc.inner.InUse(t.Context(), slotName(tc.key.ID)); n != 0 {
				t.Errorf("%d slots held after the refusal", n)
			}
		})
	}
}

// TestEnterQueued: 100 requests at once through Enter on a key with
// concurrency 3, a queue for all and a window of 80 requests: never more
// than 3 in flight, exactly 80 served and 20 refused by the window, and
// no slot left held.
func TestEnterQueued(t *testing.T) {
	yes := true
	c := newClock(t0)
	e := newEngine(c, func(o *Options) { o.QueueFactor = 40; o.QueueTimeout = time.Minute })
	key := store.Key{ID: "k", Policy: store.KeyPolicy{Concurrency: 3, Queue: &yes, RateWindow: time.Hour, RateRequests: 80}}
	var flight inFlight
	var served, refused atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 100 {
		wg.Go(func() {
			<-start
			release, d := e.Enter(t.Context(), key, messages())
			defer release()
			switch {
			case d == nil:
				flight.enter()
				time.Sleep(time.Millisecond) // the upstream call
				flight.leave()
				served.Add(1)
			case d.Code == CodeRateWindowExceeded:
				refused.Add(1)
			default:
				t.Errorf("refused: %v", d)
			}
		})
	}
	close(start)
	wg.Wait()
	if most := flight.most.Load(); most > 3 {
		t.Errorf("%d requests in flight at once, limit 3", most)
	}
	if served.Load() != 80 || refused.Load() != 20 {
		t.Errorf("served %d, refused %d; want 80 and 20", served.Load(), refused.Load())
	}
	if n, _ := e.counters.InUse(t.Context(), slotName(key.ID)); n != 0 {
		t.Errorf("%d slots held at the end", n)
	}
}

// TestEnterWindowStartCache: the cached start serves only its own window.
// A request after the window ended opens a new one (and is told the new
// end), and a Record after the window ended counts in no window.
func TestEnterWindowStartCache(t *testing.T) {
	c := newClock(t0)
	e := newEngine(c, nil)
	key := store.Key{ID: "k", Policy: store.KeyPolicy{RateWindow: time.Hour, RateRequests: 2, RateTokens: 1000}}
	mustAdmit(t, e, key, messages())
	record(t, e, key, store.UsageRecord{KeyID: key.ID, Input: 1000})
	if d := admit(t, e, key, messages()); d == nil || !d.ResetAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("over the tokens: %v", d)
	}

	c.Advance(time.Hour) // the window ends exactly now
	record(t, e, key, store.UsageRecord{KeyID: key.ID, Input: 5000})
	mustAdmit(t, e, key, messages())
	mustAdmit(t, e, key, messages())
	d := admit(t, e, key, messages())
	if want := t0.Add(2 * time.Hour); d == nil || !d.ResetAt.Equal(want) {
		t.Fatalf("third request of the second window: %v, want reset at %v", d, want)
	}
	st, _ := e.Status(t.Context(), key)
	if st.Window.Tokens != 0 || !st.Window.Start.Equal(t0.Add(time.Hour)) {
		t.Errorf("second window: %+v", st.Window)
	}
}

// TestWindowStartsKeepsLatest: a start read late never hides a later one,
// the opener's start always wins, and an ended window is not served.
func TestWindowStartsKeepsLatest(t *testing.T) {
	var s windowStarts
	get := func(now time.Time) time.Time {
		start, _ := s.get("k", time.Hour, now)
		return start
	}
	s.put("k", time.Hour, t0)
	s.put("k", time.Hour, t0.Add(-time.Hour))
	if got := get(t0); !got.Equal(t0) {
		t.Errorf("after an older put: %v", got)
	}
	s.put("k", time.Hour, t0.Add(time.Minute))
	if got := get(t0.Add(time.Minute)); !got.Equal(t0.Add(time.Minute)) {
		t.Errorf("after a newer put: %v", got)
	}
	s.opened("k", time.Hour, t0.Add(-time.Minute))
	if got := get(t0); !got.Equal(t0.Add(-time.Minute)) {
		t.Errorf("after the opener: %v", got)
	}
	if _, ok := s.get("k", time.Hour, t0.Add(59*time.Minute)); ok {
		t.Error("the window ended at +59m and is still served")
	}
	if _, ok := s.get("k", time.Minute, t0); ok {
		t.Error("another length is served the hour's start")
	}
}
