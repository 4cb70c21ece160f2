// Package relay is the request pipeline: authenticate the relay key, read
// the body once, pick an account, forward, and stream the answer back
// untouched while accounting its usage. It is protocol-neutral in shape;
// each wire protocol (messages.go for Anthropic) is one file that uses the
// shared steps here.
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/crs-relay/crs/internal/metrics"
	"github.com/crs-relay/crs/internal/netx"
	"github.com/crs-relay/crs/internal/oauth"
	"github.com/crs-relay/crs/internal/policy"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/scheduler"
	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/usage"
)

// ErrShuttingDown is the cancel cause of request contexts when the server
// stops waiting for in-flight requests. Streams cut for it end with an
// error event that says so, instead of a bare close.
var ErrShuttingDown = errors.New("crs is shutting down")

func shuttingDown(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), ErrShuttingDown)
}

// Config tunes the pipeline.
type Config struct {
	// ClaudeBaseURL is the API root of Claude accounts that have none.
	ClaudeBaseURL string
	// OpenAIBaseURL is the Responses API root of openai API-key accounts
	// without one (OPENAI_API_URL); CodexBaseURL the Codex backend of
	// ChatGPT subscriptions (CODEX_API_URL).
	OpenAIBaseURL, CodexBaseURL string
	// GeminiBaseURL is the Gemini API root of gemini API-key accounts
	// without one (GEMINI_API_URL); CodeAssistBaseURL the Code Assist
	// backend of Gemini OAuth accounts (CODE_ASSIST_API_URL).
	GeminiBaseURL, CodeAssistBaseURL string
	// MaxBodyBytes bounds a client request body.
	MaxBodyBytes int64
	// MaxAttempts bounds the accounts tried before the first byte.
	MaxAttempts int
	// FirstEventTimeout bounds the wait for an upstream's first real event.
	FirstEventTimeout time.Duration
	// FailoverDeadline bounds all attempts of one request together.
	FailoverDeadline time.Duration
	// ClaudeCodeOnly keeps subscription (OAuth, setup-token) accounts for
	// real Claude Code traffic: other clients go to API-key accounts only.
	ClaudeCodeOnly bool
	// Location is the zone of daily quotas (TIMEZONE); default local.
	Location *time.Location
	// SerialGap is the minimum gap between user turns on an account with
	// the serial_queue option (default 200 ms); SerialTimeout bounds the
	// wait for the turn (default 60 s), after which another account is
	// tried.
	SerialGap     time.Duration
	SerialTimeout time.Duration
}

// Relay serves the client-facing API routes.
type Relay struct {
	cfg      Config
	keys     *KeyCache
	sched    *scheduler.Scheduler
	rec      *usage.Recorder
	prices   pricing.Source
	pool     *netx.Pool
	box      *secret.Box
	tokens   *oauth.Refresher
	counters store.LimitCounters
	policy   *policy.Engine
	spend    func(context.Context, store.UsageFilter) (store.UsageSummary, error)
	serial   *serialQueue
	claude   *dialect
	openai   *dialect
	gemini   *dialect
	newest   newestClaudeCode
	metrics  *metrics.Metrics
	alerts   Alerts
	log      *slog.Logger
	now      func() time.Time
}

// Deps are the services a Relay uses; all are required but Logger and Now.
type Deps struct {
	Keys      *KeyCache
	Scheduler *scheduler.Scheduler
	Recorder  *usage.Recorder
	// Prices is the price table, read once per usage record; a
	// pricing.Reloader (a *pricing.Live) is reloaded by Refresh, so a
	// table stored by `crs prices update` applies without a restart.
	Prices pricing.Source
	Pool   *netx.Pool
	Box    *secret.Box
	// Tokens hands out access tokens for OAuth and setup-token accounts;
	// nil leaves such accounts unusable (they fail over).
	Tokens *oauth.Refresher
	// Locks serialise user turns across instances (serial_queue accounts);
	// nil serialises within this process only.
	Locks store.Locks
	// Counters hold the in-flight slots of accounts with max_concurrency,
	// their daily spend (and the key limits); nil leaves those unenforced.
	Counters store.LimitCounters
	// Policy applies key limits and restrictions; nil admits everything.
	Policy *policy.Engine
	// Spend totals stored usage; it seeds spend counters after a restart.
	Spend func(context.Context, store.UsageFilter) (store.UsageSummary, error)
	// Metrics counts attempts, failovers, streams, tokens and cost, and
	// fills each request's metrics.Exchange (key, account, model, upstream
	// time) for the access log; nil counts nothing, and the Exchange is
	// still filled.
	Metrics *metrics.Metrics
	// Alerts hears account rests, 5-hour window warnings and keys refused
	// for a limit (a notify.Dispatcher); nil tells no one.
	Alerts Alerts
	Logger *slog.Logger
	Now    func() time.Time
}

// New builds a Relay.
func New(cfg Config, d Deps) *Relay {
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.FirstEventTimeout <= 0 {
		cfg.FirstEventTimeout = 120 * time.Second
	}
	if cfg.FailoverDeadline <= 0 {
		cfg.FailoverDeadline = 180 * time.Second
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 60 << 20
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	if cfg.SerialGap <= 0 {
		cfg.SerialGap = 200 * time.Millisecond
	}
	if cfg.SerialTimeout <= 0 {
		cfg.SerialTimeout = 60 * time.Second
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	r := &Relay{cfg: cfg, keys: d.Keys, sched: d.Scheduler, rec: d.Recorder, prices: d.Prices,
		pool: d.Pool, box: d.Box, tokens: d.Tokens, counters: d.Counters, policy: d.Policy, spend: d.Spend, metrics: d.Metrics, log: d.Logger, now: d.Now,
		serial: newSerialQueue(d.Locks, cfg.SerialGap, cfg.SerialTimeout)}
	if r.alerts = d.Alerts; r.alerts == nil {
		r.alerts = noAlerts{}
	}
	r.claude = r.claudeDialect()
	r.openai = r.openaiDialect()
	r.gemini = r.geminiDialect()
	return r
}

// authenticate resolves the relay key or answers the error itself, in
// Anthropic's shape.
func (r *Relay) authenticate(w http.ResponseWriter, req *http.Request) (store.Key, bool) {
	return r.authenticateIn(w, req, anthropicShape{})
}

// authenticateIn is authenticate answering in the given protocol's shape.
func (r *Relay) authenticateIn(w http.ResponseWriter, req *http.Request, shape errorShape) (store.Key, bool) {
	k, err := r.keys.Authenticate(ExtractKey(req))
	if err == nil {
		r.metrics.Authenticated(req.Context(), k) // metrics hook: the key's name for the access log
		return k, true
	}
	writeError(w, shape, apiError{Status: http.StatusUnauthorized, Kind: errAuthentication, Message: err.Error()})
	return store.Key{}, false
}

// readBody reads the whole request body once, bounded by MaxBodyBytes, or
// answers the error itself. The body is read fully before anything is
// forwarded: streaming it straight upstream lost bodies when the server
// closed the inbound side as response headers went out (golang/go#40747).
func (r *Relay) readBody(w http.ResponseWriter, req *http.Request, shape errorShape) ([]byte, bool) {
	if req.ContentLength > r.cfg.MaxBodyBytes {
		writeError(w, shape, apiError{Status: http.StatusRequestEntityTooLarge, Kind: errTooLarge,
			Message: fmt.Sprintf("request body is %d bytes; the limit is %d", req.ContentLength, r.cfg.MaxBodyBytes)})
		return nil, false
	}
	body, err := readAll(http.MaxBytesReader(w, req.Body, r.cfg.MaxBodyBytes), req.ContentLength)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, shape, apiError{Status: http.StatusRequestEntityTooLarge, Kind: errTooLarge,
				Message: fmt.Sprintf("request body exceeds the limit of %d bytes", r.cfg.MaxBodyBytes)})
		} else {
			writeError(w, shape, apiError{Status: http.StatusBadRequest, Kind: errInvalidRequest, Message: "could not read the request body"})
		}
		return nil, false
	}
	return body, true
}

// record prices and stores one usage record, waiting (bounded) until it is
// durable. It logs instead of failing: the response goes on either way.
func (r *Relay) record(ctx context.Context, c *call, acct store.Account, rec store.UsageRecord, tk pricing.Tokens) {
	rec.Input, rec.Output = tk.Input, tk.Output
	rec.CacheWrite5m, rec.CacheWrite1h, rec.CacheRead = tk.CacheWrite5m, tk.CacheWrite1h, tk.CacheRead
	rec.CostPico = r.prices.Table().CostPico(rec.Model, tk)
	rec.RatedCostPico = policy.RatedCost(c.key, acct.Platform, rec.CostPico)
	if rec.CreatedAt.IsZero() {
		rec.CreatedAt = r.now()
	}
	began := time.Now() // metrics hook: recording is crs's time, not the upstream's
	if err := r.rec.Record(ctx, rec); err != nil {
		r.log.Error("usage record lost", "request_id", rec.RequestID, "attempt", rec.Attempt, "err", err)
	}
	r.chargeAccount(ctx, acct, rec)
	if r.policy != nil {
		if err := r.policy.Record(ctx, c.key, rec); err != nil {
			r.log.Warn("key limits not updated", "request_id", rec.RequestID, "key", c.key.ID, "err", err)
		}
	}
	r.metrics.Recorded(ctx, acct.Platform, rec.Model, tk, rec.CostPico, time.Since(began)) // metrics hook
}

// Refresh reloads the key cache, the account snapshot and, when it can
// change, the price table.
func (r *Relay) Refresh(ctx context.Context) error {
	return errors.Join(r.keys.Reload(ctx), r.sched.Reload(ctx), r.reloadPrices(ctx))
}

func (r *Relay) reloadPrices(ctx context.Context) error {
	l, ok := r.prices.(pricing.Reloader)
	if !ok {
		return nil
	}
	changed, err := l.Reload(ctx)
	if changed {
		i := l.Table().Info()
		r.log.Info("price table in use", "version", i.Version, "as_of", i.AsOf, "origin", i.Origin, "models", i.Models)
	}
	return err
}

// FlushTouches writes gathered last-used times of keys and accounts.
func (r *Relay) FlushTouches(ctx context.Context) error {
	return errors.Join(r.keys.FlushTouches(ctx), r.sched.FlushTouches(ctx))
}

// readAll reads r to the end into one allocation when the size is known
// (Content-Length), instead of io.ReadAll's doubling copies.
func readAll(r io.Reader, size int64) ([]byte, error) {
	if size <= 0 {
		return io.ReadAll(r)
	}
	buf := make([]byte, 0, size+1) // +1 lets the EOF read land without a grow
	for {
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // a body longer than announced
		}
	}
}
