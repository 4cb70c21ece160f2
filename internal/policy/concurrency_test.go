package policy

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/memcounters"
)

// inFlight counts requests holding a slot and remembers the most at once.
type inFlight struct {
	now, most atomic.Int32
}

func (f *inFlight) enter() {
	n := f.now.Add(1)
	for m := f.most.Load(); n > m && !f.most.CompareAndSwap(m, n); m = f.most.Load() {
	}
}

func (f *inFlight) leave() { f.now.Add(-1) }

// TestConcurrencyQueued: 200 requests at once on a key with concurrency 5
// and a queue big enough for all: never more than 5 in flight, and every
// request is served.
func TestConcurrencyQueued(t *testing.T) {
	yes := true
	e := newEngine(newClock(t0), func(o *Options) { o.QueueFactor = 40; o.QueueTimeout = time.Minute })
	key := store.Key{ID: "k", Policy: store.KeyPolicy{Concurrency: 5, Queue: &yes}}
	var flight inFlight
	var served atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 200 {
		wg.Go(func() {
			<-start
			release, d := e.Acquire(t.Context(), key, messages())
			defer release()
			if d != nil {
				t.Errorf("refused: %v", d)
				return
			}
			flight.enter()
			time.Sleep(time.Millisecond) // the upstream call
			flight.leave()
			served.Add(1)
		})
	}
	close(start)
	wg.Wait()
	if most := flight.most.Load(); most > 5 {
		t.Errorf("%d requests in flight at once, limit 5", most)
	}
	if served.Load() != 200 {
		t.Errorf("%d of 200 served", served.Load())
	}
	st, _ := e.Status(t.Context(), key)
	if c := st.Concurrency; c == nil || c.InFlight != 0 || c.Queued != 0 || c.Limit != 5 || c.QueueSize != 200 {
		t.Errorf("status after: %+v", st.Concurrency)
	}
}

// TestConcurrencyNoQueue: without a queue, of 200 simultaneous requests
// exactly 5 get a slot and the rest are refused at once with 429.
func TestConcurrencyNoQueue(t *testing.T) {
	e := newEngine(newClock(t0), nil)
	key := store.Key{ID: "k", Policy: store.KeyPolicy{Concurrency: 5}}
	var got, refused atomic.Int32
	var wg sync.WaitGroup
	hold := make(chan struct{})
	for range 200 {
		wg.Go(func() {
			release, d := e.Acquire(t.Context(), key, messages())
			defer release()
			switch {
			case d == nil:
				got.Add(1)
				<-hold
			case d.Status == 429 && d.Code == CodeConcurrencyExceeded && d.RetryAfter >= time.Second:
				refused.Add(1)
			default:
				t.Errorf("unexpected: %v", d)
			}
		})
	}
	waitFor(t, func() bool { return got.Load()+refused.Load() == 200 || refused.Load() == 195 })
	close(hold)
	wg.Wait()
	if got.Load() != 5 || refused.Load() != 195 {
		t.Errorf("%d got a slot, %d refused; want 5 and 195", got.Load(), refused.Load())
	}
}

// TestQueueFull: with all slots taken and the queue (2× the limit) full,
// the next request is refused at once, not queued.
func TestQueueFull(t *testing.T) {
	e := newEngine(newClock(t0), func(o *Options) { o.Queue = true; o.QueueTimeout = 10 * time.Second })
	key := store.Key{ID: "k", Policy: store.KeyPolicy{Concurrency: 2}}
	var releases []func()
	for range 2 {
		release, d := e.Acquire(t.Context(), key, messages())
		if d != nil {
			t.Fatal(d)
		}
		releases = append(releases, release)
	}
	var wg sync.WaitGroup
	var servedLater atomic.Int32
	for range 4 {
		wg.Go(func() {
			release, d := e.Acquire(t.Context(), key, messages())
			defer release()
			if d == nil {
				servedLater.Add(1)
			}
		})
	}
	waitFor(t, func() bool { n, _ := e.counters.InUse(t.Context(), queueName(key.ID)); return n == 4 })
	began := time.Now()
	_, d := e.Acquire(t.Context(), key, messages())
	if d == nil || d.Status != 429 || d.Code != CodeConcurrencyExceeded || d.RetryAfter < time.Second {
		t.Fatalf("queue full: %v", d)
	}
	if waited := time.Since(began); waited > time.Second {
		t.Errorf("refusal took %v; it should not wait", waited)
	}
	for _, r := range releases {
		r()
	}
	wg.Wait()
	if servedLater.Load() != 4 {
		t.Errorf("%d of 4 queued requests served after the release", servedLater.Load())
	}
}

// TestQueueTimeout: a queued request whose wait runs out gets 429
// queue_timeout with a Retry-After, and leaves the queue.
func TestQueueTimeout(t *testing.T) {
	yes := true
	e := newEngine(newClock(t0), func(o *Options) { o.QueueTimeout = 80 * time.Millisecond })
	key := store.Key{ID: "k", Policy: store.KeyPolicy{Concurrency: 1, Queue: &yes}}
	release, d := e.Acquire(t.Context(), key, messages())
	if d != nil {
		t.Fatal(d)
	}
	defer release()
	began := time.Now()
	r2, d := e.Acquire(t.Context(), key, messages())
	r2()
	if d == nil || d.Status != 429 || d.Type != TypeRateLimit || d.Code != CodeQueueTimeout || retryAfter(d) != "1" {
		t.Fatalf("got %v", d)
	}
	if waited := time.Since(began); waited < 80*time.Millisecond {
		t.Errorf("gave up after %v, before the 80ms timeout", waited)
	}
	if n, _ := e.counters.InUse(t.Context(), queueName(key.ID)); n != 0 {
		t.Errorf("%d left in the queue", n)
	}
}

// TestQueueWaitsForRelease: a queued request takes the slot as soon as the
// holder releases it.
func TestQueueWaitsForRelease(t *testing.T) {
	yes := true
	e := newEngine(newClock(t0), func(o *Options) { o.QueueTimeout = 10 * time.Second })
	key := store.Key{ID: "k", Policy: store.KeyPolicy{Concurrency: 1, Queue: &yes}}
	release, d := e.Acquire(t.Context(), key, messages())
	if d != nil {
		t.Fatal(d)
	}
	go func() {
		time.Sleep(30 * time.Millisecond)
		release()
	}()
	began := time.Now()
	r2, d := e.Acquire(t.Context(), key, messages())
	defer r2()
	if d != nil {
		t.Fatalf("queued request refused: %v", d)
	}
	if waited := time.Since(began); waited < 30*time.Millisecond || waited > 5*time.Second {
		t.Errorf("waited %v", waited)
	}
}

// TestQueueFastFail: once recent waits run near the timeout (p90 ≥ 80 %)
// and the queue is over half full, new requests are refused at once
// instead of joining a queue that does not move. Either condition alone
// still queues.
func TestQueueFastFail(t *testing.T) {
	const timeout = 150 * time.Millisecond
	yes := true
	e := newEngine(newClock(t0), func(o *Options) { o.QueueFactor = 10; o.QueueTimeout = timeout })
	key := store.Key{ID: "k", Policy: store.KeyPolicy{Concurrency: 1, Queue: &yes}} // queue of 10
	release, d := e.Acquire(t.Context(), key, messages())
	if d != nil {
		t.Fatal(d)
	}
	defer release()

	// queueUp starts n waiters and returns once they are queued.
	queueUp := func(n int) *sync.WaitGroup {
		var wg sync.WaitGroup
		var joined atomic.Int32
		for range n {
			wg.Go(func() {
				joined.Add(1)
				r, _ := e.Acquire(t.Context(), key, messages())
				r()
			})
		}
		waitFor(t, func() bool { q, _ := e.counters.InUse(t.Context(), queueName(key.ID)); return q >= n })
		return &wg
	}
	// tryOne reports how long one more request took and how it ended.
	tryOne := func() (time.Duration, *Denial) {
		began := time.Now()
		r, d := e.Acquire(t.Context(), key, messages())
		r()
		return time.Since(began), d
	}

	// Healthy history (none yet), queue over half full: the request waits.
	wg := queueUp(6)
	if waited, d := tryOne(); d == nil || d.Code != CodeQueueTimeout || waited < timeout {
		t.Fatalf("no history, 6 of 10 queued: %v after %v, want a full wait", d, waited)
	}
	wg.Wait() // 7 waits timed out: not yet the 10 a judgement needs
	wg = queueUp(3)
	wg.Wait() // 10 timeouts now

	// Unhealthy history, queue under half full: still waits.
	wg = queueUp(4)
	if waited, d := tryOne(); d == nil || d.Code != CodeQueueTimeout || waited < timeout {
		t.Fatalf("bad history, 4 of 10 queued: %v after %v, want a full wait", d, waited)
	}
	wg.Wait()

	// Both: refused at once.
	wg = queueUp(6)
	waited, d := tryOne()
	if d == nil || d.Status != 429 || d.Code != CodeConcurrencyExceeded || waited > timeout/2 {
		t.Fatalf("bad history, 6 of 10 queued: %v after %v, want an immediate 429", d, waited)
	}
	wg.Wait()
}

// TestQueueCanceled: a client that goes away while queued leaves the
// queue at once.
func TestQueueCanceled(t *testing.T) {
	yes := true
	e := newEngine(newClock(t0), func(o *Options) { o.QueueTimeout = time.Minute })
	key := store.Key{ID: "k", Policy: store.KeyPolicy{Concurrency: 1, Queue: &yes}}
	release, d := e.Acquire(t.Context(), key, messages())
	if d != nil {
		t.Fatal(d)
	}
	defer release()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	r2, d := e.Acquire(ctx, key, messages())
	r2()
	if d == nil || d.Code != CodeCanceled {
		t.Fatalf("got %v, want %s", d, CodeCanceled)
	}
	if n, _ := e.counters.InUse(t.Context(), queueName(key.ID)); n != 0 {
		t.Errorf("%d left in the queue", n)
	}
}

// TestReleaseOnce: releasing twice frees one slot, not two.
func TestReleaseOnce(t *testing.T) {
	e := newEngine(newClock(t0), nil)
	key := store.Key{ID: "k", Policy: store.KeyPolicy{Concurrency: 2}}
	r1, _ := e.Acquire(t.Context(), key, messages())
	r2, _ := e.Acquire(t.Context(), key, messages())
	defer r2()
	r1()
	r1()
	if n, _ := e.counters.InUse(t.Context(), slotName(key.ID)); n != 1 {
		t.Errorf("%d slots in use, want 1", n)
	}
	r3, d := e.Acquire(t.Context(), key, messages())
	defer r3()
	if d != nil {
		t.Fatal(d)
	}
	if _, d := e.Acquire(t.Context(), key, messages()); d == nil {
		t.Error("a third request got a slot of two")
	}
}

// TestSlotRenewed: a request that runs longer than the slot lease keeps
// its slot, and a holder that never releases loses it after the lease.
func TestSlotRenewed(t *testing.T) {
	const lease = 200 * time.Millisecond
	e := New(Options{Counters: memcounters.New(nil), SlotLease: lease})
	key := store.Key{ID: "k", Policy: store.KeyPolicy{Concurrency: 1}}
	release, d := e.Acquire(t.Context(), key, messages())
	if d != nil {
		t.Fatal(d)
	}
	time.Sleep(3 * lease)
	if _, d := e.Acquire(t.Context(), key, messages()); d == nil {
		t.Fatal("the slot of a running request was lost")
	}
	release()
	r, d := e.Acquire(t.Context(), key, messages())
	defer r()
	if d != nil {
		t.Fatalf("after release: %v", d)
	}

	// A holder that crashed (no renewal, no release): its slot frees itself.
	counters := memcounters.New(nil)
	if ok, _ := counters.Acquire(t.Context(), slotName("k2"), "crashed", 1, lease); !ok {
		t.Fatal("could not take a slot")
	}
	e2 := New(Options{Counters: counters, SlotLease: lease})
	key2 := store.Key{ID: "k2", Policy: store.KeyPolicy{Concurrency: 1}}
	time.Sleep(lease + 20*time.Millisecond)
	r2, d := e2.Acquire(t.Context(), key2, messages())
	defer r2()
	if d != nil {
		t.Errorf("crashed holder's slot not freed: %v", d)
	}
}
