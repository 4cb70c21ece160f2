package metrics

import (
	"context"
	"time"

	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/provider"
	"github.com/crs-relay/crs/internal/store"
)

// Exchange is one request's timings and the facts the access log shows
// about it. The server's middleware creates it and puts it in the request
// context (WithExchange); the relay's hooks (the *Metrics methods) fill it;
// the middleware reads it back as a Summary when the handler returns.
//
// It is used by the request's own goroutine only, and needs no lock: the
// relay calls its hooks from the handler, and the middleware reads it
// after the handler returned.
//
// # Overhead
//
// Overhead is the time spent in crs itself. It is measured as the
// request's elapsed time minus the time an upstream request was open (from
// just before it is sent until its answer was read to the end, or the
// attempt gave up) and minus the time it waited in its key's concurrency
// queue, plus the usage bookkeeping the relay did while an upstream
// request was open (it waits for the usage record to be durable before it
// lets the final event through).
//
// So overhead covers: reading and authenticating the request, policy
// checks, account choice, OAuth token refresh, building the upstream
// request, the gaps between failed attempts, usage recording, and
// everything after the last upstream byte. A queue wait is the key's own
// limit at work, not crs's cost: it is reported apart (Summary.Queued,
// crs_key_queue_wait_seconds).
// It does not split out the time between an upstream event arriving and
// its being written to the client: the two interleave within one stream,
// and timing every event would cost more than it tells. That time is
// counted as upstream time, so overhead errs low by the cost of a copy
// per event, never by a wait.
type Exchange struct {
	start time.Time

	platform    store.Platform
	model       string
	keyName     string
	accountID   store.AccountID
	accountName string
	attempts    int

	committed time.Time // first byte of an upstream answer to the client

	open     time.Time     // start of the open upstream span; zero when none
	upstream time.Duration // closed spans
	inner    time.Duration // bookkeeping done inside an open span
	queued   time.Duration // waits in the key's concurrency queue

	tokens   pricing.Tokens
	costPico int64
	usage    bool // at least one usage record was made
}

// NewExchange starts an Exchange at start (the request's arrival).
func NewExchange(start time.Time) *Exchange { return &Exchange{start: start} }

type exchangeKey struct{}

// WithExchange returns ctx carrying x, for the relay's hooks to find.
func WithExchange(ctx context.Context, x *Exchange) context.Context {
	return context.WithValue(ctx, exchangeKey{}, x)
}

// ExchangeFrom returns the Exchange in ctx, or nil.
func ExchangeFrom(ctx context.Context) *Exchange {
	x, _ := ctx.Value(exchangeKey{}).(*Exchange)
	return x
}

func (x *Exchange) openSpan(now time.Time) {
	if x.open.IsZero() {
		x.open = now
	}
}

func (x *Exchange) closeSpan(now time.Time) {
	if x.open.IsZero() {
		return
	}
	x.upstream += now.Sub(x.open)
	x.open = time.Time{}
}

func (x *Exchange) addUsage(tk pricing.Tokens, costPico int64, took time.Duration) {
	x.tokens = provider.AddTokens(x.tokens, tk)
	x.costPico += costPico
	x.usage = true
	if !x.open.IsZero() {
		x.inner += took
	}
}

// upstreamAt is the time spent waiting on upstreams up to now.
func (x *Exchange) upstreamAt(now time.Time) time.Duration {
	up := x.upstream
	if !x.open.IsZero() {
		up += now.Sub(x.open)
	}
	return up
}

// Overhead is crs's own time from the request's start up to now (see the
// type's doc). The server writes it into x-crs-overhead-ms when the
// response header goes out: for a stream that is the commit point, so the
// header holds the overhead before the first byte.
func (x *Exchange) Overhead(now time.Time) time.Duration {
	return max(now.Sub(x.start)-x.upstreamAt(now)-x.queued+x.inner, 0)
}

// Summary is what an Exchange knew at the end of its request.
type Summary struct {
	// Platform is the pool that served the request; "" when the request
	// ended before the relay chose one (refused, local, not relayed).
	Platform store.Platform
	// Model is the requested model, "" when unknown.
	Model string
	// KeyName is the name of the relay key used, "" when none
	// authenticated.
	KeyName string
	// AccountID and AccountName are the account last tried.
	AccountID   store.AccountID
	AccountName string
	// Attempts is the number of upstream requests sent.
	Attempts int
	// Total is the request's duration; FirstByte the time to the first
	// byte of an upstream answer (0 when none came); Upstream the time an
	// upstream request was open; Queued the time it waited in its key's
	// concurrency queue; Overhead crs's own time.
	Total, FirstByte, Upstream, Queued, Overhead time.Duration
	// Usage reports whether usage was recorded; Tokens and CostPico sum
	// its records.
	Usage    bool
	Tokens   pricing.Tokens
	CostPico int64
}

// Summary returns the request's facts as of end.
func (x *Exchange) Summary(end time.Time) Summary {
	s := Summary{
		Platform: x.platform, Model: x.model, KeyName: x.keyName,
		AccountID: x.accountID, AccountName: x.accountName, Attempts: x.attempts,
		Total: end.Sub(x.start), Upstream: x.upstreamAt(end), Queued: x.queued, Overhead: x.Overhead(end),
		Usage: x.usage, Tokens: x.tokens, CostPico: x.costPico,
	}
	if !x.committed.IsZero() {
		s.FirstByte = x.committed.Sub(x.start)
	}
	return s
}
