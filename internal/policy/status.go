package policy

import (
	"context"
	"fmt"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// KeyStatus is where a key stands against its limits, for the key holder's
// stats page. Limits the key does not set are absent (nil) or zero.
type KeyStatus struct {
	// Window is the rate window; nil when the key has none.
	Window *WindowStatus `json:"window,omitempty"`
	// Costs lists the cost limits the key sets, in the order Admit checks
	// them.
	Costs []CostStatus `json:"costs,omitempty"`
	// Concurrency is the key's slots and queue; nil when unlimited.
	Concurrency *ConcurrencyStatus `json:"concurrency,omitempty"`
	// Expiry says when the key stops working.
	Expiry ExpiryStatus `json:"expiry"`
}

// WindowStatus is the rate window. Used figures are those of the window
// open now; when none is open (Active false) they are zero and the next
// request opens one.
type WindowStatus struct {
	Length time.Duration `json:"length"`
	Active bool          `json:"active"`
	// Start and End bound the open window; zero when none is, or while
	// its opener has not published its start.
	Start time.Time `json:"start,omitzero"`
	End   time.Time `json:"end,omitzero"`
	// Requests counts the requests admitted to the window, refused ones
	// included (the window counts attempts).
	Requests      int64 `json:"requests"`
	RequestsLimit int64 `json:"requests_limit,omitempty"`
	Tokens        int64 `json:"tokens"`
	TokensLimit   int64 `json:"tokens_limit,omitempty"`
	// Cost and CostLimit are rated picodollars.
	Cost      int64 `json:"cost"`
	CostLimit int64 `json:"cost_limit,omitempty"`
}

// CostStatus is one cost limit, in rated picodollars.
type CostStatus struct {
	// Kind is "total", "weekly", "daily" or "daily_opus".
	Kind string `json:"kind"`
	// Code is the Denial code the limit answers with when reached.
	Code  string `json:"code"`
	Used  int64  `json:"used"`
	Limit int64  `json:"limit"`
	// Left is what remains, never below 0.
	Left int64 `json:"left"`
	// Period bounds the spend counted; zero for the total.
	PeriodStart time.Time `json:"period_start,omitzero"`
	ResetAt     time.Time `json:"reset_at,omitzero"`
}

// ConcurrencyStatus is the key's slots and queue.
type ConcurrencyStatus struct {
	Limit    int  `json:"limit"`
	InFlight int  `json:"in_flight"`
	Queue    bool `json:"queue"`
	Queued   int  `json:"queued"`
	// QueueSize is the most requests that may wait; 0 without a queue.
	QueueSize int `json:"queue_size,omitempty"`
}

// ExpiryStatus says when the key stops working.
type ExpiryStatus struct {
	// ExpiresAt is the fixed expiry, or the end of an activated key's
	// life; nil when there is none yet.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// ActivateFor is the life a key gets at its first real use; zero for
	// keys without activation.
	ActivateFor time.Duration `json:"activate_for,omitempty"`
	// ActivatedAt is the first real use; nil before it.
	ActivatedAt *time.Time `json:"activated_at,omitempty"`
	Expired     bool       `json:"expired"`
}

// Status reports the key's standing. It reads counters (and may seed spend
// counters from stored usage) but counts nothing and never activates the
// key: looking at the stats page is not using the key.
func (e *Engine) Status(ctx context.Context, key store.Key) (KeyStatus, error) {
	now := e.now()
	var st KeyStatus
	var err error
	if st.Window, err = e.windowStatus(ctx, key, now); err != nil {
		return KeyStatus{}, err
	}
	for _, k := range spendKinds {
		limit := k.limit(key.Policy)
		if limit <= 0 {
			continue
		}
		per := e.periodAt(key.ID, key.Policy, k, now)
		used, err := e.spent(ctx, key.ID, per)
		if err != nil {
			return KeyStatus{}, fmt.Errorf("policy: %s spend: %w", k, err)
		}
		st.Costs = append(st.Costs, CostStatus{
			Kind: k.String(), Code: k.code(), Used: used, Limit: limit, Left: max(limit-used, 0),
			PeriodStart: per.start, ResetAt: per.end,
		})
	}
	if limit := key.Policy.Concurrency; limit > 0 {
		c := &ConcurrencyStatus{Limit: limit, Queue: e.queueOn(key)}
		if c.InFlight, err = e.counters.InUse(ctx, slotName(key.ID)); err != nil {
			return KeyStatus{}, fmt.Errorf("policy: slots: %w", err)
		}
		if c.Queue {
			c.QueueSize = e.queueFactor * limit
			if c.Queued, err = e.counters.InUse(ctx, queueName(key.ID)); err != nil {
				return KeyStatus{}, fmt.Errorf("policy: queue: %w", err)
			}
		}
		st.Concurrency = c
	}
	st.Expiry = e.expiryStatus(key, now)
	return st, nil
}

func (e *Engine) windowStatus(ctx context.Context, key store.Key, now time.Time) (*WindowStatus, error) {
	p := key.Policy
	length := windowLength(p)
	if length == 0 {
		return nil, nil
	}
	ws := &WindowStatus{Length: length, RequestsLimit: p.RateRequests, TokensLimit: p.RateTokens, CostLimit: p.RateCost}
	names := windowCounters(key.ID, length)
	n, open, err := e.counters.Get(ctx, names.count)
	if err != nil || !open {
		return ws, err
	}
	ws.Active, ws.Requests = true, n
	v, ok, err := e.counters.Get(ctx, names.start)
	if err != nil || !ok {
		return ws, err
	}
	start := time.UnixMilli(v)
	if !now.Before(start.Add(length)) {
		return ws, nil // the opener has not published its start yet
	}
	ws.Start, ws.End = start.In(e.loc), start.Add(length).In(e.loc)
	tokensName, costName := windowUsage(key.ID, length, start)
	if ws.Tokens, _, err = e.counters.Get(ctx, tokensName); err != nil {
		return ws, err
	}
	ws.Cost, _, err = e.counters.Get(ctx, costName)
	return ws, err
}

func (e *Engine) expiryStatus(key store.Key, now time.Time) ExpiryStatus {
	var es ExpiryStatus
	if key.ExpiresAt != nil {
		t := *key.ExpiresAt
		es.ExpiresAt = &t
	}
	if d := key.Policy.ActivateFor; d > 0 {
		es.ActivateFor = d
		if at, ok := e.activatedAt(key); ok {
			end := at.Add(d)
			es.ActivatedAt = &at
			if es.ExpiresAt == nil || end.Before(*es.ExpiresAt) {
				es.ExpiresAt = &end
			}
		}
	}
	es.Expired = es.ExpiresAt != nil && !now.Before(*es.ExpiresAt)
	return es
}
