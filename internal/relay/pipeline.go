package relay

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/provider"
	"github.com/crs-relay/crs/internal/provider/anthropic"
	"github.com/crs-relay/crs/internal/scheduler"
	"github.com/crs-relay/crs/internal/sse"
	"github.com/crs-relay/crs/internal/store"
)

// maxErrorBody bounds how much of an upstream error body is read.
const maxErrorBody = 1 << 20

// nonStreamTimeout bounds the wait for a non-stream answer.
const nonStreamTimeout = 10 * time.Minute

// dialect is what one wire protocol (Anthropic Messages, OpenAI Responses,
// Gemini) brings to the shared pipeline: how to build an account's
// request, read its faults, find the commit point and the usage in its
// stream. Everything else — scheduling, failover, the commit point itself,
// usage records, limits — is the same for every protocol.
type dialect struct {
	// build makes the upstream request for one account, or says why the
	// account cannot be used now.
	build func(ctx context.Context, req *http.Request, c *call, acct store.Account) (*http.Request, *provider.Outcome)
	// classify turns a non-2xx answer into an Outcome.
	classify func(now time.Time, status int, h http.Header, body []byte, c *call) provider.Outcome
	// streamError classifies an error event inside a 200 stream; ok is
	// false when ev is not one.
	streamError func(now time.Time, ev sse.Event, h http.Header, c *call) (o provider.Outcome, ok bool)
	// preamble events are held back before the commit point (message_start,
	// response.created…); the first other event commits.
	preamble func(ev sse.Event) bool
	// final events reach the client only once the usage record commits.
	final func(ev sse.Event) bool
	// newUsage taps a stream for its usage; bodyUsage reads a whole answer.
	newUsage  func() usageTap
	bodyUsage func(body []byte) (model string, tk pricing.Tokens, ok bool)
	// observe reads an answer's quota headers; nil when the protocol has
	// none.
	observe func(ctx context.Context, acct store.Account, status int, h http.Header)
}

// usageTap reads a stream's usage as its events pass.
type usageTap interface {
	Observe(ev sse.Event)
	Usage() (model string, tk pricing.Tokens, reported bool)
}

// failure is a finished attempt that did not reach the client.
type failure struct {
	outcome provider.Outcome
	account store.Account
	// skipped: the account was full and nothing was sent; the try does
	// not count against MaxAttempts.
	skipped bool
}

// serve runs an admitted call: pick an account, forward, and fail over to
// the next account until one answers or the attempts or the deadline run
// out.
func (r *Relay) serve(w http.ResponseWriter, req *http.Request, c *call) {
	ctx := req.Context()
	r.metrics.Serving(ctx, c.platform, c.model) // metrics hook
	deadline := c.start.Add(r.cfg.FailoverDeadline)
	tried := map[store.AccountID]bool{}
	var last *failure
	for c.attempts < r.cfg.MaxAttempts && r.now().Before(deadline) {
		acct, err := r.sched.Pick(ctx, c.pick(tried))
		if err != nil && c.binding != "" && c.key.Policy.BindingFallback {
			// The key's own accounts cannot serve; it may use the pool.
			c.binding = ""
			acct, err = r.sched.Pick(ctx, c.pick(tried))
		}
		if err != nil {
			if last == nil {
				r.writeNoAccount(w, c, err)
				return
			}
			break
		}
		tried[acct.ID] = true
		if c.platform == store.PlatformClaude && acct.Options.InterceptWarmup && c.metered && c.warmup() {
			// Claude Code's warmup and title calls cost quota and tell the
			// user nothing; the account asked for them to be answered here.
			anthropic.WriteWarmupReply(w, c.model, c.stream)
			return
		}
		if last != nil && !last.skipped && last.account.ID != acct.ID {
			r.metrics.FailingOver(c.platform, last.outcome) // metrics hook
		}
		c.attempts++
		failed, done := r.attempt(ctx, w, req, c, acct, deadline)
		// metrics hook: committed attempts count where they commit.
		if !done && !failed.skipped {
			r.metrics.Failed(c.platform, failed.outcome)
		} else if done && !c.committed {
			r.metrics.Abandoned(c.platform)
		}
		if done {
			if !c.committed && shuttingDown(ctx) {
				writeError(w, c.shape, apiError{Status: 529, Kind: errOverloaded, Message: "crs: the relay is shutting down; please retry", RetryAfter: time.Second})
			}
			return
		}
		last = failed
		if failed.skipped {
			c.attempts--
			continue
		}
		if r.refreshAfter401(ctx, c, acct, failed) {
			delete(tried, acct.ID) // the same account, once more, with its new token
			continue
		}
		r.log.Warn("upstream attempt failed", "request_id", c.id, "attempt", c.attempts,
			"account", acct.ID, "status", failed.outcome.Status, "reason", failed.outcome.Reason)
		if failed.outcome.Kind == provider.Failover {
			r.rest(ctx, acct, failed.outcome)
		}
		if ctx.Err() != nil {
			if shuttingDown(ctx) {
				writeError(w, c.shape, apiError{Status: 529, Kind: errOverloaded, Message: "crs: the relay is shutting down; please retry", RetryAfter: time.Second})
			}
			return // the client is gone; nobody to answer
		}
	}
	r.writeExhausted(w, c, last)
}

// writeNoAccount answers when the scheduler has nothing to offer.
func (r *Relay) writeNoAccount(w http.ResponseWriter, c *call, err error) {
	var cooling *scheduler.CoolingError
	var none *scheduler.NoAccountError
	switch {
	case errors.As(err, &cooling):
		msg := "crs: " + cooling.Error()
		if c.family != "" {
			msg = fmt.Sprintf("crs: every %s account that can serve %s models is resting or rate limited for them; the first recovers at %s",
				cooling.Platform, c.family, cooling.Until.UTC().Format(time.RFC3339))
		}
		writeError(w, c.shape, apiError{Status: 529, Kind: errOverloaded, Message: msg, RetryAfter: max(time.Second, cooling.Until.Sub(r.now()))})
	case errors.As(err, &none):
		msg := fmt.Sprintf("crs: no enabled account in the %s pool can serve model %q", none.Platform, none.Model)
		if c.noSubscription {
			msg += "; subscription accounts serve only Claude Code on this relay (CLAUDE_CODE_ONLY)"
		}
		writeError(w, c.shape, apiError{Status: http.StatusServiceUnavailable, Kind: errAPI, Message: msg})
	default:
		r.log.Error("scheduler failed", "err", err)
		writeError(w, c.shape, apiError{Status: http.StatusServiceUnavailable, Kind: errAPI, Message: "crs: the account store is unavailable", RetryAfter: 5 * time.Second})
	}
}

// writeExhausted answers after every attempt failed before the first byte.
func (r *Relay) writeExhausted(w http.ResponseWriter, c *call, last *failure) {
	retry := time.Second
	if last != nil && !last.outcome.Until.IsZero() {
		retry = max(retry, last.outcome.Until.Sub(r.now()))
	}
	if until, ok := r.sched.Recovery(c.pick(nil)); ok {
		retry = max(time.Second, until.Sub(r.now()))
	}
	reason := "no attempt was made"
	if last != nil {
		reason = last.outcome.Reason
	}
	writeError(w, c.shape, apiError{Status: 529, Kind: errOverloaded,
		Message: fmt.Sprintf("crs: %d upstream attempt(s) failed; last: %s", c.attempts, reason), RetryAfter: retry})
}

// attempt forwards the call to one account. done means the client got its
// answer (or left); otherwise f says why this account failed, and nothing
// was written to the client.
func (r *Relay) attempt(ctx context.Context, w http.ResponseWriter, req *http.Request, c *call, acct store.Account, deadline time.Time) (f *failure, done bool) {
	fail := func(o provider.Outcome) (*failure, bool) { return &failure{outcome: o, account: acct}, false }
	if acct.Options.MaxConcurrency > 0 {
		free, err := r.accountSlot(ctx, acct, c)
		if err != nil {
			return &failure{outcome: provider.Outcome{Kind: provider.Failover, Reason: err.Error()}, account: acct, skipped: true}, false
		}
		defer free()
	}
	release := func() {}
	if acct.Options.SerialQueue && c.platform == store.PlatformClaude && c.metered && c.userTurn() {
		var err error
		if release, err = r.serial.acquire(ctx, acct.ID); err != nil {
			if ctx.Err() != nil {
				return nil, true
			}
			// Another account may be free: fail over without resting this one.
			return fail(provider.Outcome{Kind: provider.Failover, Reason: "serial queue: " + err.Error()})
		}
		defer release()
	}
	client, err := r.clientFor(acct)
	if err != nil {
		return fail(provider.Rest(r.now(), store.CooldownCredentialDead, provider.CredentialCooldown, 0, err.Error()))
	}

	// The attempt's context ends with the client's; a guard ends it early
	// if no real event arrived in time. Once committed the guard is off:
	// a long stream must never be cut by a timer.
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	wait := min(r.cfg.FirstEventTimeout, time.Until(deadline))
	if !c.stream {
		// A non-stream answer arrives whole, after the model finished
		// writing it; Anthropic allows such requests ten minutes.
		wait = max(wait, nonStreamTimeout)
	}
	g := newCommitGuard(cancel, wait)
	defer g.stop()

	up, o := c.d.build(actx, req, c, acct)
	if o != nil {
		if ctx.Err() != nil {
			return nil, true
		}
		if o.Kind == provider.ClientError {
			// The request cannot be put into this protocol's shape; no
			// account would do better.
			c.committed = true
			writeError(w, c.shape, apiError{Status: http.StatusBadRequest, Kind: errInvalidRequest, Message: "crs: " + o.Reason})
			return nil, true
		}
		return fail(*o)
	}
	r.metrics.Sending(ctx, acct) // metrics hook: the upstream's time starts
	defer r.metrics.UpstreamDone(ctx)
	resp, err := client.Do(up)
	// The upstream counts a request when it is sent: the next user turn
	// may go as soon as the answer starts.
	release()
	if err != nil {
		if ctx.Err() != nil {
			return nil, true
		}
		if g.timedOut() {
			err = fmt.Errorf("no answer within %v", r.cfg.FirstEventTimeout)
		}
		return fail(provider.Transport(r.now(), err))
	}
	defer resp.Body.Close()
	firstByte := r.now()
	if c.d.observe != nil {
		c.d.observe(ctx, acct, resp.StatusCode, resp.Header)
	}

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		body := decoded(resp.Header, raw)
		o := c.d.classify(r.now(), resp.StatusCode, resp.Header, body, c)
		if o.Kind != provider.ClientError || !g.commit() {
			if o.Kind == provider.ClientError { // timed out while reading the body
				o = provider.Transport(r.now(), errors.New("error body too slow"))
			}
			return fail(o)
		}
		c.committed = true
		r.metrics.Committed(ctx, c.platform, resp.StatusCode) // metrics hook
		// The request itself is wrong: every account would say the
		// same, so the client sees the upstream's own answer (decoded:
		// crs asked for identity, and so may the client).
		copyHeaders(w.Header(), resp.Header, "Content-Type", "Retry-After")
		w.WriteHeader(resp.StatusCode)
		w.Write(body)
		return nil, true
	}

	rec := store.UsageRecord{
		RequestID: c.id, Attempt: c.attempts, KeyID: c.key.ID, AccountID: acct.ID,
		Model: c.model, Stream: c.stream, Status: resp.StatusCode,
		FirstByteMs: firstByte.Sub(c.start).Milliseconds(),
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return r.forwardBody(ctx, w, c, acct, resp, g, rec)
	}
	return r.forwardStream(ctx, w, c, acct, resp, g, rec)
}

// forwardBody relays a non-stream 200 answer: the whole body is the
// commit point; its usage is recorded before the client sees it.
func (r *Relay) forwardBody(ctx context.Context, w http.ResponseWriter, c *call, acct store.Account, resp *http.Response, g *commitGuard, rec store.UsageRecord) (*failure, bool) {
	body, err := io.ReadAll(resp.Body)
	r.metrics.UpstreamDone(ctx) // metrics hook: the answer is in
	if err != nil {
		if ctx.Err() != nil {
			return nil, true
		}
		return &failure{outcome: provider.Transport(r.now(), err), account: acct}, false
	}
	if !g.commit() {
		return &failure{outcome: provider.Transport(r.now(), errors.New("answer too slow")), account: acct}, false
	}
	c.committed = true
	body = decoded(resp.Header, body)
	if c.metered {
		if model, tk, ok := c.d.bodyUsage(body); ok {
			if model != "" {
				rec.Model = model
			}
			rec.LatencyMs = r.now().Sub(c.start).Milliseconds()
			r.record(context.WithoutCancel(ctx), c, acct, rec, tk)
		}
	}
	r.metrics.Committed(ctx, c.platform, resp.StatusCode) // metrics hook
	copyHeaders(w.Header(), resp.Header, "Content-Type")
	w.WriteHeader(resp.StatusCode)
	w.Write(c.bodyOut(body))
	return nil, true
}

// forwardStream relays an SSE answer. Events up to the first real one
// (anything but ping and message_start) are held back: until then the
// attempt may still fail over. After it, bytes pass through unchanged and
// flushed per event, and the account never changes.
func (r *Relay) forwardStream(ctx context.Context, w http.ResponseWriter, c *call, acct store.Account, resp *http.Response, g *commitGuard, rec store.UsageRecord) (*failure, bool) {
	// Events that arrived together leave in one write: the client is
	// flushed just before the relay would wait on the upstream again, never
	// while an event is held back.
	lazy := &flushBeforeRead{r: resp.Body, rc: http.NewResponseController(w)}
	var body io.Reader = lazy
	if strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") {
		// We asked for identity; a proxy on the way compressed anyway.
		// Events are read decoded and sent on decoded.
		zr, err := gzip.NewReader(lazy)
		if err != nil {
			return &failure{outcome: provider.Transport(r.now(), err), account: acct}, false
		}
		body = zr
	}
	rd := sse.NewReader(body)
	// Each event is written on (or copied into held) before the next is
	// read, so the reader may reuse its buffer.
	rd.ShareBuffers()
	su := c.d.newUsage()
	recorded := false
	finish := func(aborted bool) {
		model, tk, reported := su.Usage()
		if recorded || !c.metered || !reported {
			return
		}
		recorded = true
		if model != "" {
			rec.Model = model
		}
		rec.ClientAborted = aborted
		rec.LatencyMs = r.now().Sub(c.start).Milliseconds()
		r.record(context.WithoutCancel(ctx), c, acct, rec, tk)
	}

	// Before the commit point.
	var held bytes.Buffer
	for {
		ev, err := rd.Next()
		if err != nil {
			finish(ctx.Err() != nil)
			if ctx.Err() != nil {
				return nil, true
			}
			if g.timedOut() {
				err = fmt.Errorf("no event within %v", r.cfg.FirstEventTimeout)
			} else if err == io.EOF {
				err = errors.New("stream ended before its first event")
			}
			return &failure{outcome: provider.Transport(r.now(), err), account: acct}, false
		}
		su.Observe(ev)
		held.Write(c.eventOut(ev))
		if o, isErr := c.d.streamError(r.now(), ev, resp.Header, c); isErr && o.Kind != provider.ClientError {
			finish(false)
			return &failure{outcome: o, account: acct}, false
		}
		if !c.d.preamble(ev) {
			break
		}
	}
	if !g.commit() {
		finish(false)
		return &failure{outcome: provider.Transport(r.now(), errors.New("first event too slow")), account: acct}, false
	}
	c.committed = true
	r.metrics.Committed(ctx, c.platform, http.StatusOK) // metrics hooks
	r.metrics.StreamOpened(c.platform)
	defer r.metrics.StreamClosed(c.platform)

	h := w.Header()
	h.Set("Content-Type", resp.Header.Get("Content-Type"))
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(held.Bytes()); err != nil {
		finish(true)
		return nil, true
	}
	lazy.pending = true

	// After the commit point.
	for {
		ev, err := rd.Next()
		if err != nil {
			stopping := shuttingDown(ctx)
			if ctx.Err() != nil && !stopping {
				finish(true)
				return nil, true
			}
			if len(ev.Raw) > 0 {
				w.Write(c.eventOut(ev))
			}
			finish(false)
			if err != io.EOF {
				why := "the upstream stream was interrupted"
				if stopping {
					why = "the relay is shutting down; please retry"
				} else {
					r.log.Warn("upstream stream broke after the first byte", "request_id", c.id, "account", acct.ID, "err", err)
				}
				if len(ev.Raw) > 0 && !bytes.HasSuffix(ev.Raw, []byte("\n\n")) {
					w.Write([]byte("\n\n"))
				}
				writeStreamError(w, c.shape, apiError{Status: http.StatusBadGateway, Kind: errAPI, Message: "crs: " + why})
				lazy.rc.Flush()
			}
			return nil, true
		}
		su.Observe(ev)
		if c.d.final(ev) {
			// The client learns the response is complete only once its
			// usage is durable.
			finish(false)
		} else if o, isErr := c.d.streamError(r.now(), ev, resp.Header, c); isErr && o.Kind == provider.Failover {
			r.rest(ctx, acct, o)
		}
		if _, err := w.Write(c.eventOut(ev)); err != nil {
			finish(true)
			return nil, true
		}
		lazy.pending = true
	}
}

// flushBeforeRead flushes the client response, when something was written
// since the last flush, before each read from the upstream. The SSE reader
// reads only when it holds no complete event, so every event is flushed as
// soon as nothing more is ready, and a burst of events costs one write
// instead of one per event (which was 38 % of the relay's CPU).
type flushBeforeRead struct {
	r       io.Reader
	rc      *http.ResponseController
	pending bool
}

func (f *flushBeforeRead) Read(p []byte) (int, error) {
	if f.pending {
		f.pending = false
		f.rc.Flush()
	}
	return f.r.Read(p)
}

// eventName is the event's type: its event: field, else the data's "type".
func eventName(ev sse.Event) string {
	if ev.Name != "" {
		return ev.Name
	}
	if len(ev.Data) == 0 {
		return ""
	}
	return gjson.GetBytes(ev.Data, "type").String()
}

// decoded returns body decompressed when the upstream gzipped it although
// crs asked for identity (a proxy on the way did it); the client then gets
// the plain bytes, as it would from the real API.
func decoded(h http.Header, body []byte) []byte {
	if !strings.EqualFold(h.Get("Content-Encoding"), "gzip") {
		return body
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return body
	}
	out, err := io.ReadAll(io.LimitReader(zr, 64<<20))
	if err != nil {
		return body
	}
	return out
}

func copyHeaders(dst, src http.Header, names ...string) {
	for _, n := range names {
		if v := src.Values(n); len(v) > 0 {
			dst[http.CanonicalHeaderKey(n)] = v
		}
	}
}

// commitGuard cancels an attempt that did not reach its commit point in
// time. commit and the timer race under one lock, so exactly one wins: a
// committed attempt is never cancelled by the guard.
type commitGuard struct {
	mu        sync.Mutex
	committed bool
	fired     bool
	timer     *time.Timer
}

func newCommitGuard(cancel context.CancelFunc, d time.Duration) *commitGuard {
	g := &commitGuard{}
	g.timer = time.AfterFunc(max(d, time.Millisecond), func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if !g.committed {
			g.fired = true
			cancel()
		}
	})
	return g
}

// commit marks the commit point; false if the guard fired first.
func (g *commitGuard) commit() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fired {
		return false
	}
	g.committed = true
	g.timer.Stop()
	return true
}

func (g *commitGuard) timedOut() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fired
}

func (g *commitGuard) stop() { g.timer.Stop() }
