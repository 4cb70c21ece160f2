// Package memcounters keeps limit counters and concurrency slots in process
// memory, for the embedded mode, where one crs process is the only one
// counting and a restart may forget them: windows start afresh, slots of
// requests that died with the process are gone with it, and spend is
// re-read from usage records by its owner.
//
// Nothing runs in the background. Expired entries are dropped when their
// name is touched, and by a sweep that some operations pay for, so names
// that are never read again (last hour's window, a key that went quiet) do
// not pile up.
package memcounters

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// sweepMinOps is the fewest operations between two sweeps. A sweep also
// waits for as many operations as there were entries after the last one,
// so its cost, which grows with the entries, is spread over at least as
// many operations: each operation pays O(1) on average, and the expired
// entries never outnumber the live ones plus the operations since the
// last sweep.
const sweepMinOps = 1024

// Counters implements store.LimitCounters in memory. The zero value is not
// usable; call New. It needs no Close.
type Counters struct {
	now func() time.Time

	mu       sync.Mutex
	counters map[string]counter
	// slots maps a name to its holders and the instant each lease ends.
	// A name without holders has no entry.
	slots map[string]map[string]time.Time
	// untilSweep counts down the operations left before the next sweep.
	untilSweep int
}

// counter is one fixed-window or spend counter.
type counter struct {
	value   int64
	expires time.Time // zero: never
}

// expired reports whether the counter is dropped at now.
func (c counter) expired(now time.Time) bool {
	return !c.expires.IsZero() && !now.Before(c.expires)
}

var (
	_ store.LimitCounters  = (*Counters)(nil)
	_ store.CounterBatcher = (*Counters)(nil)
)

// New returns empty counters that read the time from now, so tests can
// move time without sleeping. A nil now means time.Now.
func New(now func() time.Time) *Counters {
	if now == nil {
		now = time.Now
	}
	return &Counters{
		now:        now,
		counters:   make(map[string]counter),
		slots:      make(map[string]map[string]time.Time),
		untilSweep: sweepMinOps,
	}
}

// Add adds delta to the counter name and returns the new value. The
// expiry is fixed when the counter is created: a later Add's expires is
// ignored until the counter is dropped, so a window cannot be stretched by
// the requests inside it. The context is not consulted; nothing here
// blocks beyond a short mutex hold.
func (c *Counters) Add(_ context.Context, name string, delta int64, expires time.Time) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.add(c.now(), name, delta, expires), nil
}

// add is Add with c.mu held.
func (c *Counters) add(now time.Time, name string, delta int64, expires time.Time) int64 {
	c.tick(now)
	cur, ok := c.counters[name]
	if !ok || cur.expired(now) {
		cur = counter{expires: expires}
	}
	cur.value += delta
	if cur.expired(now) {
		// Created already expired: nothing will ever read it.
		delete(c.counters, name)
		return cur.value
	}
	c.counters[name] = cur
	return cur.value
}

// Get returns the counter's value and whether it exists, dropping it when
// it has expired.
func (c *Counters) Get(_ context.Context, name string) (int64, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.get(c.now(), name)
	return v, ok, nil
}

// get is Get with c.mu held.
func (c *Counters) get(now time.Time, name string) (int64, bool) {
	c.tick(now)
	cur, ok := c.counters[name]
	if !ok {
		return 0, false
	}
	if cur.expired(now) {
		delete(c.counters, name)
		return 0, false
	}
	return cur.value, true
}

// Acquire takes one of limit slots of name for holder until lease ends. A
// holder that already holds a slot keeps it and has its lease renewed, so
// a long stream can extend its lease by acquiring again; limit 0 or less
// has no slots. A lease that is not positive is an error: such a slot
// would be dead at once, or, read as "no lease", never free itself after a
// crash.
func (c *Counters) Acquire(_ context.Context, name, holder string, limit int, lease time.Duration) (bool, error) {
	if err := checkLease(name, holder, lease); err != nil {
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acquire(c.now(), name, holder, limit, lease), nil
}

func checkLease(name, holder string, lease time.Duration) error {
	if lease <= 0 {
		return fmt.Errorf("memcounters: acquire %q for %q: lease %v is not positive", name, holder, lease)
	}
	return nil
}

// acquire is Acquire with c.mu held and a lease already checked.
func (c *Counters) acquire(now time.Time, name, holder string, limit int, lease time.Duration) bool {
	c.tick(now)
	held := c.slots[name]
	if _, ok := held[holder]; ok {
		held[holder] = now.Add(lease)
		return true
	}
	if len(held) >= limit {
		// Expired leases count in len(held) until pruned; prune only
		// here, where they could wrongly refuse, to keep the common path
		// free of a walk over every holder.
		held = c.prune(name, now)
		if len(held) >= limit {
			return false
		}
	}
	if held == nil {
		held = make(map[string]time.Time)
		c.slots[name] = held
	}
	held[holder] = now.Add(lease)
	return true
}

// Batch runs ops in order, each exactly as its own method would, under
// one hold of the mutex: one lock per batch instead of one per operation.
// Callers must not rely on the batch as a whole being atomic; the shared
// store's is not. The context is not consulted.
func (c *Counters) Batch(_ context.Context, ops []store.CounterOp) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range ops {
		op := &ops[i]
		now := c.now()
		switch op.Kind {
		case store.OpAdd:
			op.Value, op.Err = c.add(now, op.Name, op.Delta, op.Expires), nil
		case store.OpGet:
			op.Value, op.Exists = c.get(now, op.Name)
			op.Err = nil
		case store.OpAcquire:
			op.Acquired = false
			if op.Err = checkLease(op.Name, op.Holder, op.Lease); op.Err == nil {
				op.Acquired = c.acquire(now, op.Name, op.Holder, op.Limit, op.Lease)
			}
		default:
			op.Err = fmt.Errorf("memcounters: unknown counter operation %d", op.Kind)
		}
	}
	return nil
}

// Release frees holder's slot of name; it does nothing when holder holds
// none. The context is not consulted, so a Release deferred in a request
// whose client went away still frees the slot.
func (c *Counters) Release(_ context.Context, name, holder string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tick(c.now())
	held := c.slots[name]
	delete(held, holder)
	if len(held) == 0 {
		delete(c.slots, name)
	}
	return nil
}

// InUse counts the slots of name whose lease has not ended.
func (c *Counters) InUse(_ context.Context, name string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.tick(now)
	return len(c.prune(name, now)), nil
}

// prune drops the ended leases of name, and name itself when none is
// left, and returns the live holders (nil when none). c.mu must be held.
func (c *Counters) prune(name string, now time.Time) map[string]time.Time {
	held := c.slots[name]
	for holder, end := range held {
		if !now.Before(end) {
			delete(held, holder)
		}
	}
	if len(held) == 0 {
		delete(c.slots, name)
		return nil
	}
	return held
}

// tick counts one operation and sweeps when enough have passed. c.mu must
// be held.
func (c *Counters) tick(now time.Time) {
	c.untilSweep--
	if c.untilSweep > 0 {
		return
	}
	for name, cur := range c.counters {
		if cur.expired(now) {
			delete(c.counters, name)
		}
	}
	entries := len(c.counters)
	for name := range c.slots {
		entries += len(c.prune(name, now))
	}
	c.untilSweep = max(sweepMinOps, entries)
}
