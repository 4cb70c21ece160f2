package fakeupstream

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// OpenAIUsage is the token accounting the fake OpenAI reports, in the
// Responses API's terms: Input counts every prompt token, Cached of them
// included (input_tokens_details.cached_tokens); Output counts every
// generated token, Reasoning of them included
// (output_tokens_details.reasoning_tokens). total_tokens is Input+Output.
type OpenAIUsage struct {
	Input     int64
	Cached    int64
	Output    int64
	Reasoning int64
}

// DefaultOpenAIUsage is what the fake reports when OpenAIOptions.Usage is
// zero: {Input: 16, Cached: 5, Output: 3, Reasoning: 1}. The numbers are
// distinct so a test can tell which class a relay mixed up; Codex shows 14
// "tokens used" for them (uncached input plus output).
func DefaultOpenAIUsage() OpenAIUsage {
	return OpenAIUsage{Input: 16, Cached: 5, Output: 3, Reasoning: 1}
}

// CodexWindow is one of the two ChatGPT subscription windows the Codex
// backend reports in x-codex-primary-* / x-codex-secondary-* headers.
type CodexWindow struct {
	// UsedPercent is reported as *-used-percent. At 100 or more the window
	// is spent: the Codex backend refuses requests with 429
	// usage_limit_reached until it resets.
	UsedPercent float64
	// Window is the window's length, reported as *-window-minutes. When
	// the reset passes, a window with a length starts again at 0 % used
	// and resets one length later.
	Window time.Duration
	// ResetAfter is how long from SetCodexUsage (or the fake's start) the
	// window resets; *-reset-after-seconds counts down to it and
	// *-reset-at is its Unix time.
	ResetAfter time.Duration
}

// CodexUsage is the subscription state the Codex backend reports: Primary
// is the 5-hour window, Secondary the weekly one.
type CodexUsage struct {
	Primary   CodexWindow
	Secondary CodexWindow
}

// DefaultCodexUsage is a healthy subscription with distinct numbers per
// window: 5 h window 12 % used resetting in 3 h, weekly window 34 % used
// resetting in 4 days.
func DefaultCodexUsage() CodexUsage {
	return CodexUsage{
		Primary:   CodexWindow{UsedPercent: 12, Window: 5 * time.Hour, ResetAfter: 3 * time.Hour},
		Secondary: CodexWindow{UsedPercent: 34, Window: 7 * 24 * time.Hour, ResetAfter: 96 * time.Hour},
	}
}

// OpenAIOptions configures a fake OpenAI. The zero value is a healthy fake
// whose Responses API accepts any non-empty API key and whose Codex backend
// accepts any bearer token with any non-empty chatgpt-account-id.
type OpenAIOptions struct {
	// APIKeys are the keys the Responses API (/v1/...) accepts as
	// Authorization: Bearer. Empty accepts any non-empty key.
	APIKeys []string
	// OAuth, when set, is the only issuer the Codex backend
	// (/backend-api/codex/...) trusts: a request must carry a live access
	// token it issued and a chatgpt-account-id equal to that token's
	// account, as on chatgpt.com. The Responses API then also refuses its
	// tokens, as api.openai.com refuses a ChatGPT login's token (missing
	// scope api.responses.write).
	OAuth *OpenAIOAuth
	// Deltas is the number of response.output_text.delta events per stream
	// (default 5). The reply text for a given count is ReplyText(Deltas).
	Deltas int
	// DeltaDelay is the pause between text deltas (default none); the pause
	// ends early when the request context ends.
	DeltaDelay time.Duration
	// Usage is reported in every successful reply. Zero means
	// DefaultOpenAIUsage.
	Usage OpenAIUsage
	// Name labels this fake in replies (ids resp_<Name>_… and msg_<Name>_…,
	// and the x-fake-upstream response header) so tests with several fakes
	// can see which one served a request.
	Name string
}

// OpenAIFault describes how one generation request (a POST to a responses
// or responses/compact route of either API) goes wrong. The zero value is a
// healthy answer. Faults apply in this order: FirstByteDelay and Hang (the
// network), then the fake's own checks (credentials, body; a wrong request
// is refused as upstream would even with a fault queued), then a spent
// Codex window, then Status, then the stream faults.
type OpenAIFault struct {
	// Status, when non-zero and not 200, answers with this status. On the
	// Codex backend a 429 carries the ChatGPT plan body
	// {"error":{"type":"usage_limit_reached",…,"resets_in_seconds":N}} and
	// a 401 the backend's {"detail":"Unauthorized"}; everything else gets
	// the OpenAI error shape {"error":{"message","type","param","code"}}
	// (429 rate_limit_exceeded, 401 invalid_api_key, 5xx server_error).
	// Status 200 with a Body writes that Body verbatim as the success reply
	// (for golden or malformed streams).
	Status int
	// Header holds extra response headers set on any reply under this
	// fault; they win over the headers the fake generates (x-codex-*).
	Header http.Header
	// Body replaces the generated error body (or the success body with
	// Status 200).
	Body string
	// ResetsIn is resets_in_seconds of a Codex 429 (rounded up to whole
	// seconds). Zero means the time left in the primary window.
	ResetsIn time.Duration
	// FirstByteDelay is slept before anything is written; it ends early when
	// the request context ends.
	FirstByteDelay time.Duration
	// Hang never answers; the handler returns only when the request context
	// ends or the fake is closed.
	Hang bool
	// CutAfterEvents, when > 0, closes the connection abruptly after that
	// many SSE events of a 200 stream (response.created is event 1). On a
	// non-stream 200 reply it cuts after half of the JSON body. A count past
	// the end of the stream has no effect.
	CutAfterEvents int
	// FailAfterEvents, when > 0, writes a response.failed event (status
	// "failed", response.error {code, message}) after that many events of a
	// 200 stream and ends the stream cleanly, as the real API does when a
	// generation fails half way. 0 is off.
	FailAfterEvents int
	// FailCode is response.error.code of that event (default
	// "server_error").
	FailCode string
}

func (f OpenAIFault) clone() OpenAIFault {
	f.Header = f.Header.Clone()
	return f
}

// OpenAI is a fake of OpenAI's Responses API (api.openai.com/v1, API keys)
// and of the ChatGPT Codex backend (chatgpt.com/backend-api/codex, OAuth
// tokens) on one handler. It implements http.Handler; StartOpenAI also runs
// it on a local test server. All methods are safe for concurrent use.
type OpenAI struct {
	opts OpenAIOptions

	// closed is closed by Close so hanging and delayed handlers return even
	// when a client never cancels.
	closed    chan struct{}
	closeOnce sync.Once

	// ledger counts generation requests and hands them their faults.
	ledger[OpenAIFault]

	mu     sync.Mutex
	server *httptest.Server
	seq    uint64
	codex  codexState
}

// NewOpenAI returns the fake as a bare handler, for callers that serve it
// on their own listener (bench, cmd/fakeopenai).
func NewOpenAI(opts OpenAIOptions) *OpenAI {
	if opts.Deltas <= 0 {
		opts.Deltas = 5
	}
	if opts.Usage == (OpenAIUsage{}) {
		opts.Usage = DefaultOpenAIUsage()
	}
	opts.APIKeys = append([]string(nil), opts.APIKeys...)
	o := &OpenAI{opts: opts, closed: make(chan struct{})}
	o.codex.set(DefaultCodexUsage(), time.Now())
	return o
}

// StartOpenAI runs a new fake on an httptest server on 127.0.0.1 and closes
// it when the test ends.
func StartOpenAI(tb testing.TB, opts OpenAIOptions) *OpenAI {
	tb.Helper()
	o := NewOpenAI(opts)
	srv := httptest.NewServer(o)
	o.mu.Lock()
	o.server = srv
	o.mu.Unlock()
	tb.Cleanup(o.Close)
	return o
}

// URL is the server root of a fake started by StartOpenAI; empty for a bare
// handler. The Responses API base URL is URL()+"/v1", the Codex backend's is
// CodexURL.
func (o *OpenAI) URL() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.server == nil {
		return ""
	}
	return o.server.URL
}

// CodexURL is the Codex backend base (…/backend-api/codex) of a started
// fake, to which clients append /responses.
func (o *OpenAI) CodexURL() string { return o.URL() + codexBasePath }

// Close releases every hanging or delayed request and, for a started fake,
// shuts its server down. It is idempotent.
func (o *OpenAI) Close() {
	o.closeOnce.Do(func() { close(o.closed) })
	o.mu.Lock()
	srv := o.server
	o.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// SetCodexUsage replaces the subscription windows the Codex backend reports
// and enforces; reset times count from now.
func (o *OpenAI) SetCodexUsage(u CodexUsage) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.codex.set(u, time.Now())
}

// Reset forgets recorded requests, the generation count and queued faults.
// The default fault and the Codex usage stay.
func (o *OpenAI) Reset() {
	o.resetLedger()
}

// ResponseCount is the number of generation requests received (POSTs to a
// responses or responses/compact route of either API), whatever their
// outcome.
func (o *OpenAI) ResponseCount() int { return o.counted() }

// nextSeq numbers replies, for response and request ids.
func (o *OpenAI) nextSeq() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seq++
	return o.seq
}

// codexSnapshot is the subscription state at one instant, for one reply.
func (o *OpenAI) codexSnapshot(now time.Time) codexState {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.codex.roll(now)
	return o.codex
}

// pause waits d, or less if the request ends or the fake closes; it reports
// whether the full wait elapsed.
func (o *OpenAI) pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-o.closed:
		return false
	}
}

// codexWindowState is one window with its reset as an instant, so the
// reported seconds count down in real time.
type codexWindowState struct {
	used    float64
	window  time.Duration
	resetAt time.Time
}

// codexState is the subscription of the one ChatGPT account behind the
// Codex backend. It lives in OpenAI and is guarded by OpenAI.mu.
type codexState struct {
	primary, secondary codexWindowState
}

func (c *codexState) set(u CodexUsage, now time.Time) {
	c.primary = codexWindowState{used: u.Primary.UsedPercent, window: u.Primary.Window, resetAt: now.Add(u.Primary.ResetAfter)}
	c.secondary = codexWindowState{used: u.Secondary.UsedPercent, window: u.Secondary.Window, resetAt: now.Add(u.Secondary.ResetAfter)}
}

// roll starts windows whose reset has passed again at 0 % used.
func (c *codexState) roll(now time.Time) {
	for _, w := range []*codexWindowState{&c.primary, &c.secondary} {
		if w.window <= 0 || now.Before(w.resetAt) {
			continue
		}
		w.used = 0
		for !now.Before(w.resetAt) {
			w.resetAt = w.resetAt.Add(w.window)
		}
	}
}

// spentUntil is when the latest spent window resets; zero when none is
// spent.
func (c codexState) spentUntil(now time.Time) time.Time {
	var until time.Time
	for _, w := range []codexWindowState{c.primary, c.secondary} {
		if w.used >= 100 && now.Before(w.resetAt) && w.resetAt.After(until) {
			until = w.resetAt
		}
	}
	return until
}

// Codex usage header names, as chatgpt.com sends them.
const (
	hdrCodexPlanType            = "x-codex-plan-type"
	hdrCodexPrimaryUsed         = "x-codex-primary-used-percent"
	hdrCodexPrimaryWindow       = "x-codex-primary-window-minutes"
	hdrCodexPrimaryResetAfter   = "x-codex-primary-reset-after-seconds"
	hdrCodexPrimaryResetAt      = "x-codex-primary-reset-at"
	hdrCodexSecondaryUsed       = "x-codex-secondary-used-percent"
	hdrCodexSecondaryWindow     = "x-codex-secondary-window-minutes"
	hdrCodexSecondaryResetAfter = "x-codex-secondary-reset-after-seconds"
	hdrCodexSecondaryResetAt    = "x-codex-secondary-reset-at"
)

// report sets the x-codex-* headers, leaving any a fault pinned.
func (c codexState) report(rep openaiReplier, now time.Time, plan string) {
	put := func(prefix [4]string, w codexWindowState) {
		rep.setHeader(prefix[0], strconv.FormatFloat(w.used, 'f', -1, 64))
		rep.setHeader(prefix[1], strconv.FormatInt(int64(w.window/time.Minute), 10))
		rep.setHeader(prefix[2], strconv.FormatInt(secondsUntil(now, w.resetAt), 10))
		rep.setHeader(prefix[3], strconv.FormatInt(w.resetAt.Unix(), 10))
	}
	put([4]string{hdrCodexPrimaryUsed, hdrCodexPrimaryWindow, hdrCodexPrimaryResetAfter, hdrCodexPrimaryResetAt}, c.primary)
	put([4]string{hdrCodexSecondaryUsed, hdrCodexSecondaryWindow, hdrCodexSecondaryResetAfter, hdrCodexSecondaryResetAt}, c.secondary)
	if plan != "" {
		rep.setHeader(hdrCodexPlanType, plan)
	}
}

// secondsUntil is the whole seconds from now to t, rounded up, never
// negative: a client that waits that long finds the window reset.
func secondsUntil(now, t time.Time) int64 {
	d := t.Sub(now)
	if d <= 0 {
		return 0
	}
	return int64(math.Ceil(d.Seconds()))
}
