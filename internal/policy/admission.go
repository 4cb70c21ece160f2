package policy

import (
	"context"
	"fmt"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// Admission in one round trip. In shared mode every counter operation is a
// round trip to Redis, and a request that counts itself in a window, reads
// the window's tokens and cost, reads up to four spend counters and takes
// a slot would pay seven of them before its first byte goes upstream.
// Enter gathers them into one store.RunCounterOps batch and only then
// decides, in Admit's and Acquire's order, so the answers stay the same.
// What the batch cannot know in advance costs extra trips, but only on
// cold or refusing paths:
//
//   - the first request of a window publishes its start; the first request
//     this instance sees in a window opened elsewhere reads it (later ones
//     know it from Engine.starts);
//   - the first use of a spend counter seeds it (later ones know its marker
//     from Engine.seeded);
//   - a request refused for its window or cost after the batch took its
//     slot gives the slot back;
//   - a request that found every slot taken queues as Acquire does.

// Enter admits a request past its key's rate window, cost limits and
// concurrency limit: it does what Admit and then Acquire do, with the
// same answers, in one batch of counter operations in the steady state.
// The request counts in the window even when refused later (as with
// Admit). release is never nil and must be called on every path, as
// Acquire's.
//
// A request refused for its window or cost may hold a slot for the
// instant between the batch and the refusal; a concurrent request that
// looks then may find the key one slot fuller than it is.
func (e *Engine) Enter(ctx context.Context, key store.Key, req Request) (release func(), d *Denial) {
	return e.enter(ctx, key, req, true)
}

// batch gathers counter operations to run in one store.RunCounterOps.
type batch struct{ ops []store.CounterOp }

// add appends op and returns its index.
func (b *batch) add(op store.CounterOp) int {
	b.ops = append(b.ops, op)
	return len(b.ops) - 1
}

// run runs the operations, if any. A batch that could not run at all
// fails each of its operations with the batch's error.
func (b *batch) run(ctx context.Context, c store.LimitCounters) {
	if len(b.ops) == 0 {
		return
	}
	if err := store.RunCounterOps(ctx, c, b.ops); err != nil {
		for i := range b.ops {
			if b.ops[i].Err == nil {
				b.ops[i].Err = err
			}
		}
	}
}

// admission is one request's counter operations and where each one's
// result is.
type admission struct {
	batch
	window windowPlan
	costs  []costPlan
	slot   slotPlan
}

// slotPlan is the Acquire of a concurrency slot in the batch; op is -1
// when the request takes none.
type slotPlan struct {
	op           int
	name, holder string
	limit        int
}

// enter is Enter, or Admit when withSlot is false.
func (e *Engine) enter(ctx context.Context, key store.Key, req Request, withSlot bool) (func(), *Denial) {
	now := e.now()
	a := admission{slot: slotPlan{op: -1}}
	a.window = e.planWindow(&a, key, now)
	a.costs = e.planCost(&a, key, req, now)
	if limit := key.Policy.Concurrency; withSlot && limit > 0 && !req.CountTokens {
		a.slot = slotPlan{name: slotName(key.ID), holder: e.holder(req.RequestID), limit: limit}
		a.slot.op = a.add(store.CounterOp{Kind: store.OpAcquire, Name: a.slot.name, Holder: a.slot.holder,
			Limit: limit, Lease: e.slotLease})
	}
	a.run(ctx, e.counters)
	if d := e.decideWindow(ctx, key, a.window, a.ops); d != nil {
		return e.refuse(ctx, key.ID, a, d)
	}
	if d := e.decideCost(ctx, key, a.costs, a.ops, now); d != nil {
		return e.refuse(ctx, key.ID, a, d)
	}
	if a.slot.op < 0 {
		return noRelease, nil
	}
	s, op := a.slot, a.ops[a.slot.op]
	switch {
	case op.Err != nil:
		return e.refuse(ctx, key.ID, a, unavailable("concurrency", op.Err))
	case op.Acquired:
		return e.hold(key.ID, s.name, s.holder, s.limit), nil
	case !e.queueOn(key):
		return noRelease, concurrencyExceeded(fmt.Sprintf("all %d are in use", s.limit))
	}
	return e.wait(ctx, key.ID, s.name, s.holder, s.limit)
}

// refuse answers d, giving back the slot the batch may have taken: one it
// took, or one it may have taken when the batch failed (Release is a no-op
// for a holder without a slot).
func (e *Engine) refuse(ctx context.Context, id store.KeyID, a admission, d *Denial) (func(), *Denial) {
	if a.slot.op < 0 {
		return noRelease, d
	}
	if op := a.ops[a.slot.op]; op.Acquired || op.Err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		_ = e.counters.Release(rctx, a.slot.name, a.slot.holder) // the lease frees it otherwise
		e.queueOf(id).wakeAll()
	}
	return noRelease, d
}

// costPlan is one cost limit the request is judged by. op is the index of
// its spend counter's Get in the batch, or -1 when the counter may not be
// seeded yet and is read after the batch, seeding it first.
type costPlan struct {
	kind  spendKind
	limit int64
	per   period
	op    int
}

func (e *Engine) planCost(a *admission, key store.Key, req Request, now time.Time) []costPlan {
	var plans []costPlan
	for _, k := range spendKinds {
		limit := k.limit(key.Policy)
		if limit <= 0 || !k.covers(req.Model) {
			continue
		}
		c := costPlan{kind: k, limit: limit, per: e.periodAt(key.ID, key.Policy, k, now), op: -1}
		if e.isSeeded(c.per) {
			c.op = a.add(store.CounterOp{Kind: store.OpGet, Name: c.per.name})
		}
		plans = append(plans, c)
	}
	return plans
}

// decideCost applies the cost limits in spendKinds order.
func (e *Engine) decideCost(ctx context.Context, key store.Key, plans []costPlan, ops []store.CounterOp, now time.Time) *Denial {
	for _, c := range plans {
		var used int64
		var err error
		if c.op >= 0 {
			used, err = ops[c.op].Value, ops[c.op].Err
		} else {
			used, err = e.spent(ctx, key.ID, c.per)
		}
		if err != nil {
			return unavailable(c.kind.String()+" cost", err)
		}
		if used >= c.limit {
			return costExceeded(c.per, used, c.limit, now)
		}
	}
	return nil
}
