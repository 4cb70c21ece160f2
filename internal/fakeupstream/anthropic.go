// Package fakeupstream holds fake vendor APIs for tests and the bench load
// generator. Each fake enforces what the real API enforces (credentials,
// required headers, required body fields) so a relay that forwards a wrong
// request fails a test instead of passing, and each can inject the faults a
// relay must survive: error statuses, slow first bytes, cut streams, error
// events inside a 200 stream, unexpected gzip and hangs.
package fakeupstream

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// maxRecordedBody caps how much of each request body Requests keeps, so a
// load test that pushes large prompts does not grow memory without bound.
const maxRecordedBody = 1 << 20

// maxRequestBody is the real API's request size limit for the Messages and
// token counting endpoints; larger bodies get 413 request_too_large.
const maxRequestBody = 32 << 20

// Usage is the token accounting the fake reports. It is written into
// message_start and message_delta of a stream and into the usage object of a
// non-stream reply, in the real API's shape: cache_creation_input_tokens is
// CacheWrite5m+CacheWrite1h, and cache_creation carries the split as
// ephemeral_5m_input_tokens and ephemeral_1h_input_tokens.
type Usage struct {
	Input        int64
	Output       int64
	CacheWrite5m int64
	CacheWrite1h int64
	CacheRead    int64
}

// DefaultUsage is what the fake reports when Options.Usage is zero:
// {Input: 11, Output: 7, CacheWrite5m: 5, CacheWrite1h: 2, CacheRead: 3}.
// The numbers are distinct so a test can tell which class a relay mixed up.
func DefaultUsage() Usage {
	return Usage{Input: 11, Output: 7, CacheWrite5m: 5, CacheWrite1h: 2, CacheRead: 3}
}

// Options configures a fake Anthropic API. The zero value is a healthy fake
// that accepts any non-empty credential and streams 5 deltas.
type Options struct {
	// APIKeys are the accepted credentials, sent as x-api-key or as
	// Authorization: Bearer. Empty accepts any non-empty credential.
	APIKeys []string
	// OAuth, when set, also accepts bearer access tokens that this fake
	// OAuth server issued and that are still valid, as the real API does
	// for subscription accounts: such a request must carry the OAuth beta
	// (oauth-2025-04-20) in anthropic-beta, and an expired or unknown token
	// is refused with the real API's error text. Replies to such requests
	// carry the subscription's anthropic-ratelimit-unified-* headers, and
	// its limits are enforced (see SetWindow and LimitFamily); API-key
	// replies carry none.
	OAuth *OAuth
	// Deltas is the number of text deltas per stream (default 5). The reply
	// text for a given count is ReplyText(Deltas).
	Deltas int
	// DeltaDelay is the pause between text deltas (default none); the pause
	// ends early when the request context ends.
	DeltaDelay time.Duration
	// Usage is reported in every successful reply. Zero means DefaultUsage.
	Usage Usage
	// Name labels this fake in replies (message id prefix msg_<Name>_ and the
	// x-fake-upstream response header) so tests with several fakes can see
	// which one served a request.
	Name string
}

// Fault describes how one /v1/messages request goes wrong. The zero Fault is
// a healthy answer. Faults are applied in this order: FirstByteDelay and
// Hang (they model the network, so they precede everything), then the fake's
// own validation (a wrong request is rejected as the real API would, even if
// a fault was queued), then the subscription limits of an OAuth request,
// then Status, then the stream faults.
type Fault struct {
	// Status, when non-zero and not 200, answers with this status and an
	// Anthropic error body whose error.type fits the status (400
	// invalid_request_error, 401 authentication_error, 402 billing_error, 403
	// permission_error, 404 not_found_error, 413 request_too_large, 429
	// rate_limit_error, 500 api_error, 504 timeout_error, 529
	// overloaded_error; other 4xx invalid_request_error, other 5xx api_error).
	// Status 200 with a Body writes that Body verbatim as the success reply
	// (for golden or malformed streams).
	Status int
	// Header holds extra response headers, set on any reply under this fault
	// (for example retry-after or anthropic-ratelimit-unified-reset). They
	// win over the unified headers the fake reports for OAuth requests.
	Header http.Header
	// Body replaces the generated error body (or the success body with
	// Status 200).
	Body string
	// FirstByteDelay is slept before anything is written; it ends early when
	// the request context ends.
	FirstByteDelay time.Duration
	// CutAfterEvents, when > 0, closes the connection abruptly after that
	// many SSE events of a 200 stream have been written (ping counts as an
	// event; message_start is event 1). On a non-stream 200 reply it cuts
	// after half of the JSON body. A count past the end of the stream has no
	// effect.
	CutAfterEvents int
	// ErrorEventAfter, when > 0, writes an `event: error` after that many SSE
	// events of a 200 stream and then ends the stream normally, as the real
	// API does when it overloads mid-answer. 0 is off.
	ErrorEventAfter int
	// ErrorEventType is the error.type of that event (default
	// "overloaded_error").
	ErrorEventType string
	// Gzip compresses the response body with Content-Encoding: gzip whatever
	// the request's Accept-Encoding said, as some misbehaving proxies do.
	Gzip bool
	// Hang never answers; the handler returns only when the request context
	// ends or the fake is closed.
	Hang bool
}

// Request is one request as the fake received it.
type Request struct {
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	// Body is the request body, truncated to 1 MiB.
	Body []byte
	// Time is when the request arrived.
	Time time.Time
}

// Anthropic is a fake of the Anthropic Messages API. It implements
// http.Handler, so it can be mounted on any listener; StartAnthropic also
// runs it on a local test server. All methods are safe for concurrent use.
type Anthropic struct {
	opts Options

	// closed is closed by Close so hanging and delayed handlers return even
	// when a client never cancels; otherwise httptest.Server.Close would wait
	// for them forever.
	closed    chan struct{}
	closeOnce sync.Once

	// ledger counts /v1/messages requests and hands them their faults.
	ledger[Fault]

	mu     sync.Mutex
	server *httptest.Server
	seq    uint64
	quota  quota
}

// NewAnthropic returns the fake as a bare handler, for callers that serve it
// on their own listener (bench, cmd/fakeanthropic).
func NewAnthropic(opts Options) *Anthropic {
	if opts.Deltas <= 0 {
		opts.Deltas = 5
	}
	if opts.Usage == (Usage{}) {
		opts.Usage = DefaultUsage()
	}
	opts.APIKeys = append([]string(nil), opts.APIKeys...)
	return &Anthropic{opts: opts, closed: make(chan struct{}), quota: newQuota(time.Now())}
}

// StartAnthropic runs a new fake on an httptest server on 127.0.0.1 and
// closes it when the test ends.
func StartAnthropic(tb testing.TB, opts Options) *Anthropic {
	tb.Helper()
	a := NewAnthropic(opts)
	srv := httptest.NewServer(a)
	a.mu.Lock()
	a.server = srv
	a.mu.Unlock()
	tb.Cleanup(a.Close)
	return a
}

// URL is the API root (without /v1) of a fake started by StartAnthropic, to
// be used as a base URL; it is empty for a bare handler.
func (a *Anthropic) URL() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.server == nil {
		return ""
	}
	return a.server.URL
}

// Close releases every hanging or delayed request and, for a started fake,
// shuts its server down. It is idempotent.
func (a *Anthropic) Close() {
	a.closeOnce.Do(func() { close(a.closed) })
	a.mu.Lock()
	srv := a.server
	a.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Reset forgets recorded requests, the /v1/messages count and queued
// faults. The default fault and the subscription quota stay.
func (a *Anthropic) Reset() {
	a.resetLedger()
}

// MessageCount is the number of /v1/messages requests received, whatever
// their outcome.
func (a *Anthropic) MessageCount() int { return a.counted() }

// nextSeq numbers replies, for message and request ids.
func (a *Anthropic) nextSeq() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seq++
	return a.seq
}

func (f Fault) clone() Fault {
	f.Header = f.Header.Clone()
	return f
}
