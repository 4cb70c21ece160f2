// Package policy enforces what a relay key may do and how much: its pools,
// models and clients, its expiry, a rate window, cost limits, and a
// concurrency limit with a bounded queue.
//
// The relay asks in three steps, in this order, and stops at the first
// Denial:
//
//  1. Check: expiry, permission (pool), model, client. It reads nothing but
//     the key and the request, except that a key which expires a while
//     after its first use is activated here.
//  2. Admit: the rate window (the request is counted here) and the cost
//     limits. It reads counters.
//  3. Acquire: a concurrency slot, or a place in the key's queue.
//
// Enter does steps 2 and 3 with the same answers in one batch of counter
// operations, one round trip to a shared store in the steady state; the
// relay calls Check and then Enter. After the response, Record adds its
// tokens and rated cost to the window and the spend counters, in one more.
// Status reports all of it for the key holder's stats page. docs/limits.md
// lists every answer with its status code.
//
// Every number lives behind store.LimitCounters, so one process (memory) and
// several (Redis) count the same way. Spend counters are seeded from the
// stored usage records the first time they are used, so cost limits hold
// across a restart.
package policy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// Defaults of Options.
const (
	DefaultQueueFactor  = 2
	DefaultQueueTimeout = 30 * time.Second
	DefaultSlotLease    = 10 * time.Minute
)

// Request is what policy needs to know about one client request. The relay
// extracts it once; policy parses no bodies.
type Request struct {
	// Platform is the pool the route serves; empty for routes that use
	// no pool (model lists, helper stubs), which Permissions do not limit.
	Platform store.Platform
	// Path is the client's URL path as received, without the query
	// ("/api/v1/messages"). Client rules whitelist paths per client, so a
	// key restricted to one client cannot use another compatible route.
	Path string
	// Model is the model asked for, as the client named it; empty when
	// the request names none.
	Model string
	// Header holds the request headers the client rules read.
	Header http.Header
	// ClaudeCodeBody is the relay's verdict that a Messages body is Claude
	// Code's own (its system prompt). The claude_code rule requires it on
	// Messages paths; policy does not read prompts itself.
	ClaudeCodeBody bool
	// CountTokens marks a token-counting request: it skips the client
	// restriction and the concurrency limit, is not a first "real use"
	// that activates a key, and still counts in windows and cost limits.
	CountTokens bool
	// RequestID names the request in slot holders, for debugging.
	RequestID string
}

// Options configure an Engine. Only Counters is required.
type Options struct {
	// Counters hold windows, spend and slots. Required.
	Counters store.LimitCounters
	// Spend totals stored usage (store.Usage.SummarizeUsage). It seeds a
	// spend counter the first time the counter is used, so cost limits
	// survive a restart. Nil starts every spend counter at 0.
	Spend func(ctx context.Context, f store.UsageFilter) (store.UsageSummary, error)
	// Activate records a key's first real use (store.Keys.ActivateKey)
	// and returns the activation that counts (the first one, also across
	// instances). Nil remembers activations in this process only, which
	// suits tests and nothing else.
	Activate func(ctx context.Context, id store.KeyID, at time.Time) (time.Time, error)
	// Location is the zone whose midnights and weekdays bound the daily
	// and weekly cost limits: the store's zone. Nil means time.Local.
	Location *time.Location
	// Now is the clock of windows, periods and expiry. Nil means
	// time.Now. Waits in the queue always run on real time.
	Now func() time.Time
	// Queue makes requests over a key's concurrency limit wait for a slot
	// instead of being refused; a key's own Policy.Queue overrides it.
	Queue bool
	// QueueFactor sizes a key's queue as this many times its concurrency
	// limit. Zero means DefaultQueueFactor.
	QueueFactor int
	// QueueTimeout bounds a queued request's wait. Zero means
	// DefaultQueueTimeout.
	QueueTimeout time.Duration
	// SlotLease is how long a slot outlives a holder that died without
	// releasing it (a crashed instance in shared mode). Held slots are
	// renewed while their request runs, so a long stream keeps its slot.
	// Zero means DefaultSlotLease.
	SlotLease time.Duration
	// ClientRules identify client programs; nil means DefaultClientRules.
	ClientRules []ClientRule
	// QueueObserver hears of every wait in a key's queue (metrics, and
	// the relay's overhead, which must not count the wait); nil hears
	// nothing.
	QueueObserver QueueObserver
}

// Engine applies key policies. It is safe for concurrent use; construct it
// once with New and share it.
type Engine struct {
	counters     store.LimitCounters
	spend        func(context.Context, store.UsageFilter) (store.UsageSummary, error)
	activateFn   func(context.Context, store.KeyID, time.Time) (time.Time, error)
	loc          *time.Location
	now          func() time.Time
	queue        bool
	queueFactor  int
	queueTimeout time.Duration
	slotLease    time.Duration
	rules        map[string]ClientRule
	observer     QueueObserver

	// activated remembers activation times (store.KeyID → time.Time), so
	// a key served from a cache that predates its activation does not
	// call Activate on every request.
	activated sync.Map

	// starts remembers the starts of open rate windows.
	starts windowStarts

	// instance and seq make slot holders unique across requests and, in
	// shared mode, across instances.
	instance string
	seq      atomic.Uint64

	// seeded remembers published seeding markers (name → Unix ms), and
	// seededN roughly counts them to bound the memory.
	seeded  sync.Map
	seededN atomic.Int64

	queueMu sync.Mutex
	queues  map[store.KeyID]*keyQueue
}

// New returns an Engine. It panics when o.Counters is nil: that is a
// wiring mistake, found at start.
func New(o Options) *Engine {
	if o.Counters == nil {
		panic("policy: Options.Counters is required")
	}
	e := &Engine{
		counters:     o.Counters,
		spend:        o.Spend,
		activateFn:   o.Activate,
		loc:          o.Location,
		now:          o.Now,
		queue:        o.Queue,
		queueFactor:  o.QueueFactor,
		queueTimeout: o.QueueTimeout,
		slotLease:    o.SlotLease,
		observer:     o.QueueObserver,
		rules:        make(map[string]ClientRule),
		queues:       make(map[store.KeyID]*keyQueue),
	}
	if e.loc == nil {
		e.loc = time.Local
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.queueFactor <= 0 {
		e.queueFactor = DefaultQueueFactor
	}
	if e.queueTimeout <= 0 {
		e.queueTimeout = DefaultQueueTimeout
	}
	if e.slotLease <= 0 {
		e.slotLease = DefaultSlotLease
	}
	rules := o.ClientRules
	if rules == nil {
		rules = DefaultClientRules()
	}
	for _, r := range rules {
		e.rules[r.Name] = r
	}
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	e.instance = hex.EncodeToString(b[:])
	return e
}

// Check applies the restrictions that need no counters, in this order:
// expiry, permission, model, client. A request that passes them all is the
// key's first real use when the key expires a while after it (ActivateFor);
// Check then activates the key. A request refused here never counts
// anywhere.
func (e *Engine) Check(ctx context.Context, key store.Key, req Request) *Denial {
	now := e.now()
	if d := e.checkExpiry(key, now); d != nil {
		return d
	}
	if d := checkPermission(key, req); d != nil {
		return d
	}
	if d := checkModel(key, req); d != nil {
		return d
	}
	if d := e.checkClient(key, req); d != nil {
		return d
	}
	return e.activate(ctx, key, req, now)
}

// Admit applies the rate window, counting the request in it, and then the
// cost limits. A request refused for cost has been counted in the window:
// the window counts attempts, so that counting stays one atomic step.
// Enter does this and Acquire in one batch of counter operations.
func (e *Engine) Admit(ctx context.Context, key store.Key, req Request) *Denial {
	_, d := e.enter(ctx, key, req, false)
	return d
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
