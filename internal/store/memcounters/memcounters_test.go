package memcounters

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/storetest"
)

// fakeClock is a clock that moves only when told to, safe for the
// concurrent parts of the suite.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, time.March, 10, 9, 15, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestConformance runs the suite on the real clock, as production does,
// and on a fake one, where every expiry lands exactly.
func TestConformance(t *testing.T) {
	t.Run("RealClock", func(t *testing.T) {
		storetest.RunCounters(t, func(t *testing.T) store.LimitCounters { return New(nil) }, nil)
	})
	t.Run("FakeClock", func(t *testing.T) {
		clock := newFakeClock()
		storetest.RunCounters(t, func(t *testing.T) store.LimitCounters { return New(clock.Now) }, clock)
	})
}

// TestSweepFreesUnreadNames fills the maps with windows and slots that are
// never touched again, lets them expire, and then only works on another
// name: the sweep alone must free them, within the operations it promises,
// and keep what still lives.
func TestSweepFreesUnreadNames(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	c := New(clock.Now)
	const n = 5000
	expires := clock.Now().Add(time.Minute)
	for i := range n {
		if _, err := c.Add(ctx, fmt.Sprintf("window:%d", i), 1, expires); err != nil {
			t.Fatal(err)
		}
		if ok, err := c.Acquire(ctx, fmt.Sprintf("key:%d", i), "req", 1, time.Minute); err != nil || !ok {
			t.Fatalf("Acquire: %v, %v", ok, err)
		}
	}
	if _, err := c.Add(ctx, "forever", 1, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Acquire(ctx, "long", "req", 1, time.Hour); err != nil || !ok {
		t.Fatalf("Acquire: %v, %v", ok, err)
	}
	// Sweeps ran during the fill; none may have dropped a live entry.
	if len(c.counters) != n+1 || len(c.slots) != n+1 {
		t.Fatalf("after the fill: %d counters, %d slot names; want %d each", len(c.counters), len(c.slots), n+1)
	}

	clock.Sleep(2 * time.Minute)
	// The last sweep set its countdown to at most the entries it saw.
	budget := max(sweepMinOps, 2*(n+1))
	ops := 0
	for len(c.counters) > 1 || len(c.slots) > 1 {
		if ops > budget {
			t.Fatalf("%d operations after expiry, still %d counters and %d slot names", ops, len(c.counters), len(c.slots))
		}
		if _, _, err := c.Get(ctx, "elsewhere"); err != nil {
			t.Fatal(err)
		}
		ops++
	}
	if v, ok, _ := c.Get(ctx, "forever"); !ok || v != 1 {
		t.Errorf("the never-expiring counter after the sweep: %d, %v", v, ok)
	}
	if n, _ := c.InUse(ctx, "long"); n != 1 {
		t.Errorf("the live slot after the sweep: InUse %d, want 1", n)
	}
}

// TestReadDropsExpired checks the lazy path: reading an expired name frees
// it at once, without waiting for a sweep.
func TestReadDropsExpired(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	c := New(clock.Now)
	if _, err := c.Add(ctx, "window", 1, clock.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Acquire(ctx, "key", "req", 1, time.Second); err != nil {
		t.Fatal(err)
	}
	clock.Sleep(time.Second)
	if _, ok, _ := c.Get(ctx, "window"); ok {
		t.Error("Get found the counter at its expiry instant")
	}
	if n, _ := c.InUse(ctx, "key"); n != 0 {
		t.Errorf("InUse at the lease's end = %d, want 0", n)
	}
	if len(c.counters) != 0 || len(c.slots) != 0 {
		t.Errorf("after reading: %d counters, %d slot names; want none", len(c.counters), len(c.slots))
	}
}

// TestExpiryInstant pins the edges: a counter lives until just before its
// expiry and is gone at it; an Add whose expiry has passed creates
// nothing that outlives it.
func TestExpiryInstant(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	c := New(clock.Now)
	expires := clock.Now().Add(time.Second)
	if _, err := c.Add(ctx, "window", 7, expires); err != nil {
		t.Fatal(err)
	}
	clock.Sleep(time.Second - time.Nanosecond)
	if v, ok, _ := c.Get(ctx, "window"); !ok || v != 7 {
		t.Errorf("1ns before expiry: Get = %d, %v; want 7, true", v, ok)
	}
	clock.Sleep(time.Nanosecond)
	if _, ok, _ := c.Get(ctx, "window"); ok {
		t.Error("at expiry: Get still finds the counter")
	}
	v, err := c.Add(ctx, "late", 3, clock.Now().Add(-time.Second))
	if err != nil || v != 3 {
		t.Errorf("Add with a past expiry = %d, %v; want 3", v, err)
	}
	if _, ok, _ := c.Get(ctx, "late"); ok || len(c.counters) != 0 {
		t.Error("Add with a past expiry left a counter behind")
	}
}

func TestAcquireRejectsNonPositiveLease(t *testing.T) {
	ctx := t.Context()
	c := New(nil)
	for _, lease := range []time.Duration{0, -time.Second} {
		if ok, err := c.Acquire(ctx, "key", "req", 1, lease); err == nil || ok {
			t.Errorf("Acquire with lease %v = %v, %v; want an error", lease, ok, err)
		}
	}
	if n, _ := c.InUse(ctx, "key"); n != 0 {
		t.Errorf("a rejected Acquire took a slot: InUse %d", n)
	}
}

func BenchmarkAdd(b *testing.B) {
	c := New(nil)
	expires := time.Now().Add(time.Hour)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Add(b.Context(), "rpm:key", 1, expires); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAcquireRelease(b *testing.B) {
	c := New(nil)
	var ids atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		holder := fmt.Sprintf("req-%d", ids.Add(1))
		for pb.Next() {
			if _, err := c.Acquire(b.Context(), "slots:key", holder, 1<<20, time.Minute); err != nil {
				b.Fatal(err)
			}
			if err := c.Release(b.Context(), "slots:key", holder); err != nil {
				b.Fatal(err)
			}
		}
	})
}
