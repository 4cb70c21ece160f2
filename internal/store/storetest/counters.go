package storetest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// CountersClock is the time a store.LimitCounters backend under test runs
// on. A backend that takes an injected clock passes the one it was given,
// so the suite's waits cost nothing and land exactly on the instant it
// asks for. A backend that keeps time itself (Redis expires keys by its own
// clock) passes nil, and the suite waits for real: about 1.5 s in all.
type CountersClock interface {
	// Now is the backend's current time. The suite derives every expiry it
	// passes to Add from it.
	Now() time.Time
	// Sleep returns once d has passed on this clock.
	Sleep(d time.Duration)
}

// realClock is the wall clock, for backends that cannot take another.
type realClock struct{}

func (realClock) Now() time.Time        { return time.Now() }
func (realClock) Sleep(d time.Duration) { time.Sleep(d) }

const (
	// counterTTL is the life of the suite's short-lived counters and
	// leases. It is long enough that a machine loaded by -race still sees
	// them alive right after creating them, and short enough that the
	// suite stays well under 3 s on the real clock.
	counterTTL = 150 * time.Millisecond
	// expirySlack is how far past an expiry the suite waits before it
	// expects the entry gone, for backends that keep milliseconds only.
	expirySlack = 30 * time.Millisecond
)

// RunCounters runs the conformance suite of store.LimitCounters. open must
// return new, empty counters for each call (a fresh instance, or a fresh
// key prefix on a shared server) and arrange with t.Cleanup to close them.
// clock is the time those counters run on; nil means the real clock.
//
// Where the contract in internal/store is silent, the suite decides, and
// every backend must decide alike:
//
//   - A counter that Add brings to 0 still exists; only its expiry drops it.
//   - A counter's expiry is fixed when Add creates it: later Adds with
//     another expiry, or with none, do not move it, and a counter created
//     with none never expires. Once dropped, the next Add starts a new
//     counter at 0 with that Add's expiry.
//   - A holder that holds a slot and acquires again gets true, keeps its
//     one slot (even when all are taken) and has its lease renewed to the
//     new lease; it does not take a second slot. One Release frees it.
//   - Acquire with a limit of 0 or less is refused: there are no slots.
//   - Release by a holder whose lease ended is a no-op, also when another
//     holder took the freed slot since.
//
// Counter names and slot names are kept apart in the suite; a backend may
// keep them in one namespace.
//
// Counters that implement store.CounterBatcher also run the Batch tests:
// a batch answers every operation as its own call would, in the batch's
// order (a Get sees the Adds before it), an operation's failure fails
// only that operation, and concurrent batches lose no increment and hand
// out no slot twice.
func RunCounters(t *testing.T, open func(t *testing.T) store.LimitCounters, clock CountersClock) {
	if clock == nil {
		clock = realClock{}
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, c store.LimitCounters, clock CountersClock)
	}{
		{"CounterAdd", testCounterAdd},
		{"CounterNegative", testCounterNegative},
		{"CounterExpiry", testCounterExpiry},
		{"CounterKeepsFirstExpiry", testCounterKeepsFirstExpiry},
		{"CounterRace", testCounterRace},
		{"SlotLimit", testSlotLimit},
		{"SlotRelease", testSlotRelease},
		{"SlotReacquire", testSlotReacquire},
		{"SlotReacquireRenewsLease", testSlotReacquireRenewsLease},
		{"SlotLeaseExpiry", testSlotLeaseExpiry},
		{"SlotRace", testSlotRace},
		{"SlotChurn", testSlotChurn},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t), clock)
		})
	}
	batchTests := []struct {
		name string
		fn   func(t *testing.T, c batchCounters, open func(t *testing.T) store.LimitCounters, clock CountersClock)
	}{
		{"BatchMatchesSingleCalls", testBatchMatchesSingleCalls},
		{"BatchInOrder", testBatchInOrder},
		{"BatchOpErrors", testBatchOpErrors},
		{"BatchConcurrent", testBatchConcurrent},
	}
	for _, tc := range batchTests {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := open(t).(batchCounters)
			if !ok {
				t.Skip("the counters do not implement store.CounterBatcher")
			}
			tc.fn(t, c, open, clock)
		})
	}
}

// batchCounters are counters that run batches.
type batchCounters interface {
	store.LimitCounters
	store.CounterBatcher
}

// sleepPast waits on clock until deadline plus expirySlack has passed.
func sleepPast(clock CountersClock, deadline time.Time) {
	if d := deadline.Sub(clock.Now()) + expirySlack; d > 0 {
		clock.Sleep(d)
	}
}

// wantCounter fails the test unless Get reports value and exists for name.
func wantCounter(t *testing.T, c store.LimitCounters, name string, value int64, exists bool) {
	t.Helper()
	got, ok, err := c.Get(t.Context(), name)
	if err != nil {
		t.Fatalf("Get(%q): %v", name, err)
	}
	if got != value || ok != exists {
		t.Errorf("Get(%q) = %d, %v; want %d, %v", name, got, ok, value, exists)
	}
}

// wantAdd calls Add and fails the test unless it returns want.
func wantAdd(t *testing.T, c store.LimitCounters, name string, delta int64, expires time.Time, want int64) {
	t.Helper()
	got, err := c.Add(t.Context(), name, delta, expires)
	if err != nil {
		t.Fatalf("Add(%q, %d): %v", name, delta, err)
	}
	if got != want {
		t.Errorf("Add(%q, %d) = %d, want %d", name, delta, got, want)
	}
}

// wantAcquire calls Acquire and fails the test unless its answer is want.
func wantAcquire(t *testing.T, c store.LimitCounters, name, holder string, limit int, lease time.Duration, want bool) {
	t.Helper()
	got, err := c.Acquire(t.Context(), name, holder, limit, lease)
	if err != nil {
		t.Fatalf("Acquire(%q, %q, %d): %v", name, holder, limit, err)
	}
	if got != want {
		t.Errorf("Acquire(%q, %q, %d) = %v, want %v", name, holder, limit, got, want)
	}
}

// wantInUse fails the test unless InUse reports n for name.
func wantInUse(t *testing.T, c store.LimitCounters, name string, n int) {
	t.Helper()
	got, err := c.InUse(t.Context(), name)
	if err != nil {
		t.Fatalf("InUse(%q): %v", name, err)
	}
	if got != n {
		t.Errorf("InUse(%q) = %d, want %d", name, got, n)
	}
}

func testCounterAdd(t *testing.T, c store.LimitCounters, clock CountersClock) {
	wantCounter(t, c, "absent", 0, false)
	// A zero delta still creates the counter, at 0.
	wantAdd(t, c, "zero", 0, time.Time{}, 0)
	wantCounter(t, c, "zero", 0, true)
	later := clock.Now().Add(time.Hour)
	wantAdd(t, c, "rpm", 5, later, 5)
	wantAdd(t, c, "rpm", 3, later, 8)
	wantAdd(t, c, "rpm", 1, later, 9)
	wantCounter(t, c, "rpm", 9, true)
	// Names are independent.
	wantCounter(t, c, "zero", 0, true)
	wantCounter(t, c, "absent", 0, false)
}

func testCounterNegative(t *testing.T, c store.LimitCounters, clock CountersClock) {
	later := clock.Now().Add(time.Hour)
	wantAdd(t, c, "refund", -3, later, -3)
	wantAdd(t, c, "refund", 10, later, 7)
	wantAdd(t, c, "refund", -7, later, 0)
	// Back at 0 by Add, the counter still exists.
	wantCounter(t, c, "refund", 0, true)
	wantAdd(t, c, "refund", -1, later, -1)
	wantCounter(t, c, "refund", -1, true)
}

func testCounterExpiry(t *testing.T, c store.LimitCounters, clock CountersClock) {
	first := clock.Now().Add(counterTTL)
	wantAdd(t, c, "window", 2, first, 2)
	wantAdd(t, c, "window", 1, first, 3)
	wantCounter(t, c, "window", 3, true)
	sleepPast(clock, first)
	wantCounter(t, c, "window", 0, false)

	// The next window starts again at 0 and runs to its own expiry: alive
	// now (so not the old, past expiry), gone after it (so not "never").
	second := clock.Now().Add(counterTTL)
	wantAdd(t, c, "window", 4, second, 4)
	wantCounter(t, c, "window", 4, true)
	sleepPast(clock, second)
	wantCounter(t, c, "window", 0, false)
}

func testCounterKeepsFirstExpiry(t *testing.T, c store.LimitCounters, clock CountersClock) {
	first := clock.Now().Add(counterTTL)
	// Later Adds with a later expiry, or with none, keep the first.
	wantAdd(t, c, "moving", 1, first, 1)
	wantAdd(t, c, "moving", 1, clock.Now().Add(time.Hour), 2)
	wantAdd(t, c, "moving", 1, time.Time{}, 3)
	// A counter created without expiry never expires, even when a later
	// Add passes one.
	wantAdd(t, c, "forever", 1, time.Time{}, 1)
	wantAdd(t, c, "forever", 1, first, 2)
	sleepPast(clock, first)
	wantCounter(t, c, "moving", 0, false)
	wantCounter(t, c, "forever", 2, true)
	wantAdd(t, c, "forever", 1, time.Time{}, 3)
}

// testCounterRace adds 1 from 1000 goroutines at once: each Add must see
// its own total, so the answers are exactly 1..1000.
func testCounterRace(t *testing.T, c store.LimitCounters, clock CountersClock) {
	ctx := t.Context()
	const n = 1000
	expires := clock.Now().Add(time.Hour)
	var (
		wg     sync.WaitGroup
		start  = make(chan struct{})
		totals = make([]int64, n)
		errs   = make(chan error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			v, err := c.Add(ctx, "hot", 1, expires)
			if err != nil {
				errs <- err
				return
			}
			totals[i] = v
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := make([]bool, n+1)
	for _, v := range totals {
		if v < 1 || v > n || seen[v] {
			t.Fatalf("concurrent Add returned %d twice or out of 1..%d", v, n)
		}
		seen[v] = true
	}
	wantCounter(t, c, "hot", n, true)
}

func testSlotLimit(t *testing.T, c store.LimitCounters, _ CountersClock) {
	wantInUse(t, c, "key:a", 0)
	for _, h := range []string{"r1", "r2", "r3"} {
		wantAcquire(t, c, "key:a", h, 3, time.Minute, true)
	}
	wantInUse(t, c, "key:a", 3)
	wantAcquire(t, c, "key:a", "r4", 3, time.Minute, false)
	wantInUse(t, c, "key:a", 3)
	// A refused Acquire takes nothing, and other names are independent.
	wantAcquire(t, c, "key:b", "r4", 1, time.Minute, true)
	wantInUse(t, c, "key:b", 1)
	// A higher limit lets more in; a limit of 0 or less has no slots.
	wantAcquire(t, c, "key:a", "r4", 4, time.Minute, true)
	wantAcquire(t, c, "key:c", "r1", 0, time.Minute, false)
	wantAcquire(t, c, "key:c", "r1", -1, time.Minute, false)
	wantInUse(t, c, "key:c", 0)
}

func testSlotRelease(t *testing.T, c store.LimitCounters, _ CountersClock) {
	ctx := t.Context()
	wantAcquire(t, c, "key", "r1", 2, time.Minute, true)
	wantAcquire(t, c, "key", "r2", 2, time.Minute, true)
	// A holder without a slot releases nothing.
	must(t, c.Release(ctx, "key", "stranger"))
	wantInUse(t, c, "key", 2)
	wantAcquire(t, c, "key", "r3", 2, time.Minute, false)

	must(t, c.Release(ctx, "key", "r1"))
	wantInUse(t, c, "key", 1)
	wantAcquire(t, c, "key", "r3", 2, time.Minute, true)
	// r1 released already: a second Release must not free r2's or r3's slot.
	must(t, c.Release(ctx, "key", "r1"))
	wantInUse(t, c, "key", 2)
	wantAcquire(t, c, "key", "r4", 2, time.Minute, false)
	// Releasing on a name never used is harmless.
	must(t, c.Release(ctx, "never-used", "r1"))
	wantInUse(t, c, "never-used", 0)

	must(t, c.Release(ctx, "key", "r2"))
	must(t, c.Release(ctx, "key", "r3"))
	wantInUse(t, c, "key", 0)
}

func testSlotReacquire(t *testing.T, c store.LimitCounters, _ CountersClock) {
	ctx := t.Context()
	wantAcquire(t, c, "key", "r1", 2, time.Minute, true)
	wantAcquire(t, c, "key", "r2", 2, time.Minute, true)
	// All slots are taken, yet r1 holds one: acquiring again is true and
	// takes no second slot.
	wantAcquire(t, c, "key", "r1", 2, time.Minute, true)
	wantInUse(t, c, "key", 2)
	wantAcquire(t, c, "key", "r3", 2, time.Minute, false)
	// One Release frees r1 entirely.
	must(t, c.Release(ctx, "key", "r1"))
	wantInUse(t, c, "key", 1)
	wantAcquire(t, c, "key", "r3", 2, time.Minute, true)
	wantInUse(t, c, "key", 2)
}

func testSlotReacquireRenewsLease(t *testing.T, c store.LimitCounters, clock CountersClock) {
	const lease = 3 * counterTTL
	wantAcquire(t, c, "key", "long-stream", 1, lease, true)
	clock.Sleep(lease * 2 / 3)
	renewed := clock.Now().Add(lease)
	wantAcquire(t, c, "key", "long-stream", 1, lease, true)
	// Past the first lease's end, within the renewed one.
	clock.Sleep(lease/2 + expirySlack)
	wantInUse(t, c, "key", 1)
	wantAcquire(t, c, "key", "other", 1, lease, false)
	sleepPast(clock, renewed)
	wantAcquire(t, c, "key", "other", 1, lease, true)
	wantInUse(t, c, "key", 1)
}

// testSlotLeaseExpiry lets a holder crash (never Release) beside one that
// lives: the crashed holder's slot frees itself when its lease ends,
// InUse counts only the living, and the crashed holder's late Release does
// not free the slot someone else took since.
func testSlotLeaseExpiry(t *testing.T, c store.LimitCounters, clock CountersClock) {
	ctx := t.Context()
	crashedEnd := clock.Now().Add(counterTTL)
	wantAcquire(t, c, "key", "crashed", 2, counterTTL, true)
	wantAcquire(t, c, "key", "steady", 2, time.Minute, true)
	wantInUse(t, c, "key", 2)
	wantAcquire(t, c, "key", "next", 2, time.Minute, false)
	// The same mix on a name that only InUse reads after the expiry.
	wantAcquire(t, c, "watched", "crashed", 2, counterTTL, true)
	wantAcquire(t, c, "watched", "steady", 2, time.Minute, true)

	sleepPast(clock, crashedEnd)
	wantInUse(t, c, "watched", 1)
	// Acquire before any InUse of "key": it must see the ended lease on its
	// own, not rely on InUse to clear it.
	wantAcquire(t, c, "key", "next", 2, time.Minute, true)
	wantInUse(t, c, "key", 2)
	must(t, c.Release(ctx, "key", "next"))
	wantInUse(t, c, "key", 1)
	wantAcquire(t, c, "key", "next", 2, time.Minute, true)

	must(t, c.Release(ctx, "key", "crashed"))
	wantInUse(t, c, "key", 2)
	wantAcquire(t, c, "key", "crashed", 2, time.Minute, false)
}

// testSlotRace has 200 holders race for 5 slots at once: exactly 5 win.
func testSlotRace(t *testing.T, c store.LimitCounters, _ CountersClock) {
	ctx := t.Context()
	const (
		n     = 200
		limit = 5
	)
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		won   atomic.Int32
		errs  = make(chan error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			ok, err := c.Acquire(ctx, "contended", fmt.Sprintf("req-%d", i), limit, time.Minute)
			if err != nil {
				errs <- err
				return
			}
			if ok {
				won.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := won.Load(); got != limit {
		t.Errorf("%d of %d racing Acquires won, want exactly %d", got, n, limit)
	}
	wantInUse(t, c, "contended", limit)
}

// testSlotChurn has holders acquire, work and release over and over, as
// requests do under load. Counting the holders that believe they hold a
// slot at every instant, the count must never pass the limit, and every
// slot must be free at the end.
func testSlotChurn(t *testing.T, c store.LimitCounters, _ CountersClock) {
	ctx := t.Context()
	const (
		workers = 40
		rounds  = 25
		limit   = 3
	)
	var (
		wg       sync.WaitGroup
		holding  atomic.Int32
		most     atomic.Int32
		admitted atomic.Int32
		errs     = make(chan error, workers)
	)
	for w := range workers {
		wg.Go(func() {
			holder := fmt.Sprintf("worker-%d", w)
			for range rounds {
				ok, err := c.Acquire(ctx, "churn", holder, limit, time.Minute)
				if err != nil {
					errs <- err
					return
				}
				if !ok {
					continue
				}
				admitted.Add(1)
				n := holding.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				holding.Add(-1)
				if err := c.Release(ctx, "churn", holder); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := most.Load(); got > limit {
		t.Errorf("%d holders held a slot at once, limit %d", got, limit)
	}
	if admitted.Load() == 0 {
		t.Error("no Acquire succeeded")
	}
	wantInUse(t, c, "churn", 0)
}

// oneAtATime hides the counters' Batch, so store.RunCounterOps falls back
// to one call per operation.
type oneAtATime struct{ store.LimitCounters }

// wantOp is what a batch should have filled into one operation.
type wantOp struct {
	value    int64
	exists   bool
	acquired bool
	err      bool
}

// checkOps fails the test unless ops hold want, one for one.
func checkOps(t *testing.T, ops []store.CounterOp, want []wantOp) {
	t.Helper()
	if len(ops) != len(want) {
		t.Fatalf("checking %d operations against %d answers", len(ops), len(want))
	}
	for i, w := range want {
		g := ops[i]
		if g.Value != w.value || g.Exists != w.exists || g.Acquired != w.acquired || (g.Err != nil) != w.err {
			t.Errorf("op %d (kind %d, %q): value %d, exists %v, acquired %v, err %v; want %+v",
				i, g.Kind, g.Name, g.Value, g.Exists, g.Acquired, g.Err, w)
		}
	}
}

// testBatchMatchesSingleCalls runs the same operations as one Batch and
// one call at a time on twin counters: every result, error and the state
// left behind must match, and the batch must keep each operation's own
// rules (an expiry fixed at creation, a renewed lease, a refused slot, a
// bad lease).
func testBatchMatchesSingleCalls(t *testing.T, batched batchCounters, open func(t *testing.T) store.LimitCounters, clock CountersClock) {
	ctx := t.Context()
	single := oneAtATime{open(t)}
	if _, ok := store.LimitCounters(single).(store.CounterBatcher); ok {
		t.Fatal("oneAtATime still batches; the twin would not run one call at a time")
	}
	soon, later := clock.Now().Add(counterTTL), clock.Now().Add(time.Hour)
	ops := func() []store.CounterOp {
		return []store.CounterOp{
			{Kind: store.OpAdd, Name: "count", Delta: 1, Expires: soon},
			{Kind: store.OpAdd, Name: "count", Delta: 4, Expires: later}, // the expiry stays soon
			{Kind: store.OpGet, Name: "count"},
			{Kind: store.OpGet, Name: "missing"},
			{Kind: store.OpAdd, Name: "forever", Delta: 7},
			{Kind: store.OpAcquire, Name: "slots", Holder: "a", Limit: 1, Lease: counterTTL},
			{Kind: store.OpAcquire, Name: "slots", Holder: "b", Limit: 1, Lease: time.Minute},
			{Kind: store.OpAcquire, Name: "slots", Holder: "a", Limit: 1, Lease: time.Hour}, // renews a's lease
			{Kind: store.OpAcquire, Name: "bad", Holder: "a", Limit: 1},
			{Kind: store.OpAcquire, Name: "none", Holder: "a", Limit: 0, Lease: time.Minute},
			{Kind: store.CounterOpKind(99), Name: "unknown"},
		}
	}
	got, want := ops(), ops()
	if err := batched.Batch(ctx, got); err != nil {
		t.Fatalf("Batch: %v", err)
	}
	if err := store.RunCounterOps(ctx, single, want); err != nil {
		t.Fatalf("one at a time: %v", err)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Value != w.Value || g.Exists != w.Exists || g.Acquired != w.Acquired || (g.Err == nil) != (w.Err == nil) {
			t.Errorf("op %d (%s): batch %+v, one at a time %+v", i, g.Name, g, w)
		}
	}
	checkOps(t, got, []wantOp{
		{value: 1}, {value: 5}, {value: 5, exists: true}, {}, {value: 7},
		{acquired: true}, {}, {acquired: true}, {err: true}, {}, {err: true},
	})

	// What the batch left: the counter expires at its first expiry, the
	// one created without expiry stays, and holder a's lease was renewed
	// past its first end.
	sleepPast(clock, soon)
	for _, c := range []store.LimitCounters{batched, single} {
		wantCounter(t, c, "count", 0, false)
		wantCounter(t, c, "forever", 7, true)
		wantInUse(t, c, "slots", 1)
		wantAcquire(t, c, "slots", "b", 1, time.Minute, false)
		wantInUse(t, c, "none", 0)
	}
}

// testBatchInOrder mixes operations on one name: each sees the ones
// before it in the batch.
func testBatchInOrder(t *testing.T, c batchCounters, _ func(t *testing.T) store.LimitCounters, clock CountersClock) {
	ctx := t.Context()
	if err := c.Batch(ctx, nil); err != nil {
		t.Fatalf("empty Batch: %v", err)
	}
	later := clock.Now().Add(time.Hour)
	ops := []store.CounterOp{
		{Kind: store.OpGet, Name: "n"},
		{Kind: store.OpAdd, Name: "n", Delta: 2, Expires: later},
		{Kind: store.OpGet, Name: "n"},
		{Kind: store.OpAdd, Name: "n", Delta: -2, Expires: later},
		{Kind: store.OpGet, Name: "n"},
		{Kind: store.OpAdd, Name: "n", Delta: 3, Expires: later},
		{Kind: store.OpAcquire, Name: "s", Holder: "h1", Limit: 1, Lease: time.Minute},
		{Kind: store.OpAcquire, Name: "s", Holder: "h2", Limit: 1, Lease: time.Minute},
		{Kind: store.OpAcquire, Name: "s", Holder: "h1", Limit: 1, Lease: time.Minute},
		{Kind: store.OpAcquire, Name: "s", Holder: "h2", Limit: 2, Lease: time.Minute},
	}
	if err := c.Batch(ctx, ops); err != nil {
		t.Fatalf("Batch: %v", err)
	}
	checkOps(t, ops, []wantOp{
		{}, {value: 2}, {value: 2, exists: true}, {value: 0}, {value: 0, exists: true}, {value: 3},
		{acquired: true}, {}, {acquired: true}, {acquired: true},
	})
	wantCounter(t, c, "n", 3, true)
	wantInUse(t, c, "s", 2)
}

// testBatchOpErrors: operations that fail (a lease that is not positive,
// an unknown kind) fail alone; the batch runs the others, in order.
func testBatchOpErrors(t *testing.T, c batchCounters, _ func(t *testing.T) store.LimitCounters, clock CountersClock) {
	ctx := t.Context()
	later := clock.Now().Add(time.Hour)
	ops := []store.CounterOp{
		{Kind: store.OpAdd, Name: "a", Delta: 1, Expires: later},
		{Kind: store.OpAcquire, Name: "s", Holder: "h", Limit: 1, Lease: 0},
		{Kind: store.OpAdd, Name: "a", Delta: 1, Expires: later},
		{Kind: store.OpAcquire, Name: "s", Holder: "h", Limit: 1, Lease: -time.Second},
		{Kind: store.CounterOpKind(0), Name: "a"},
		{Kind: store.OpAcquire, Name: "z", Holder: "h", Limit: 0, Lease: time.Minute},
		{Kind: store.OpGet, Name: "a"},
		{Kind: store.OpAcquire, Name: "s", Holder: "h", Limit: 1, Lease: time.Minute},
	}
	if err := c.Batch(ctx, ops); err != nil {
		t.Fatalf("Batch: %v", err)
	}
	checkOps(t, ops, []wantOp{
		{value: 1}, {err: true}, {value: 2}, {err: true}, {err: true}, {}, {value: 2, exists: true}, {acquired: true},
	})
	wantInUse(t, c, "s", 1)
	wantInUse(t, c, "z", 0)
}

// testBatchConcurrent runs batches from many goroutines at once, as
// requests do: each Add must see its own total (no increment lost, none
// counted twice), a Get must see at least the Add before it, and the
// holders that believe they hold a slot must never outnumber the limit.
func testBatchConcurrent(t *testing.T, c batchCounters, _ func(t *testing.T) store.LimitCounters, clock CountersClock) {
	ctx := t.Context()
	const (
		workers = 16
		rounds  = 40
		limit   = 3
		n       = workers * rounds
	)
	expires := clock.Now().Add(time.Hour)
	var (
		wg       sync.WaitGroup
		holding  atomic.Int32
		most     atomic.Int32
		admitted atomic.Int32
		totals   = make([]int64, n)
		errs     = make(chan error, workers)
	)
	for w := range workers {
		wg.Go(func() {
			holder := fmt.Sprintf("worker-%d", w)
			for r := range rounds {
				ops := []store.CounterOp{
					{Kind: store.OpAdd, Name: "hits", Delta: 1, Expires: expires},
					{Kind: store.OpAcquire, Name: "slots", Holder: holder, Limit: limit, Lease: time.Minute},
					{Kind: store.OpGet, Name: "hits"},
				}
				if err := c.Batch(ctx, ops); err != nil {
					errs <- err
					return
				}
				for _, op := range ops {
					if op.Err != nil {
						errs <- op.Err
						return
					}
				}
				totals[w*rounds+r] = ops[0].Value
				if ops[2].Value < ops[0].Value {
					errs <- fmt.Errorf("Get after Add read %d, the Add answered %d", ops[2].Value, ops[0].Value)
					return
				}
				if !ops[1].Acquired {
					continue
				}
				admitted.Add(1)
				h := holding.Add(1)
				for m := most.Load(); h > m && !most.CompareAndSwap(m, h); m = most.Load() {
				}
				holding.Add(-1)
				if err := c.Release(ctx, "slots", holder); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := make([]bool, n+1)
	for _, v := range totals {
		if v < 1 || v > n || seen[v] {
			t.Fatalf("a batched Add returned %d twice or out of 1..%d", v, n)
		}
		seen[v] = true
	}
	wantCounter(t, c, "hits", n, true)
	if got := most.Load(); got > limit {
		t.Errorf("%d holders held a slot at once, limit %d", got, limit)
	}
	if admitted.Load() == 0 {
		t.Error("no batched Acquire succeeded")
	}
	wantInUse(t, c, "slots", 0)
}
