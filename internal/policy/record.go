package policy

import (
	"context"
	"errors"
	"fmt"

	"github.com/crs-relay/crs/internal/store"
)

// Record adds a finished response's tokens and rated cost to the key's
// rate window and spend counters, all in one batch of counter operations
// once the window's start and the spend counters' seeding are known (they
// are for any key this instance admitted a request for). rec.RatedCostPico
// must be set (see RatedCost); rec.CreatedAt places it in its day and week
// (zero means now). Call it once per record, before or after the usage
// store commits it: a record created before a spend counter was seeded
// from the store is left to the seed, so it is never counted twice.
func (e *Engine) Record(ctx context.Context, key store.Key, rec store.UsageRecord) error {
	now := e.now()
	if rec.CreatedAt.IsZero() {
		rec.CreatedAt = now
	}
	var r recording
	err := e.recordWindow(ctx, &r, key, rec, now)
	spendErrs := e.recordSpend(ctx, &r, key, rec, now)
	r.run(ctx, e.counters)
	for i, op := range r.ops {
		switch {
		case op.Err == nil:
		case r.spend[i] < 0:
			if err == nil {
				err = op.Err
			}
		default:
			spendErrs = append(spendErrs, fmt.Errorf("policy: record %s spend: %w", r.spend[i], op.Err))
		}
	}
	if err == nil {
		err = errors.Join(spendErrs...)
	}
	return err
}

// recording is the batch of one Record: window Adds and spend Adds.
type recording struct {
	batch
	// spend is, for each operation, the spend counter's kind, or -1 for a
	// window counter.
	spend []spendKind
}

func (r *recording) addWindow(op store.CounterOp) {
	r.add(op)
	r.spend = append(r.spend, -1)
}

func (r *recording) addSpend(k spendKind, op store.CounterOp) {
	r.add(op)
	r.spend = append(r.spend, k)
}
