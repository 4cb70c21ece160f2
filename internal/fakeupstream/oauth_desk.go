package fakeupstream

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// oauthFault is one queued token-endpoint failure (FailNext).
type oauthFault struct {
	status int
	body   string
}

// tokenDesk is the part of a fake OAuth server that the Claude, OpenAI and
// Google fakes keep the same way: the test server it runs on, the queue of
// token-endpoint failures, the grant counters and the recorded token
// requests. Embedding it gives each fake the same URL, FailNext,
// RefreshCalls, ExchangeCalls and TokenRequests.
//
// Its mu also guards the embedding server's own state (codes, grants,
// tokens): a token request holds it from being recorded until its answer is
// written, so a test that sees a call counted also sees its effect.
type tokenDesk struct {
	mu       sync.Mutex
	server   *httptest.Server
	faults   []oauthFault
	requests []Request

	refreshes, exchanges int

	// failBody and failType are the body and Content-Type of a FailNext
	// reply with an empty body: each provider's generic server error.
	failBody, failType string
}

// start runs h, the fake that embeds d, on an httptest server on
// 127.0.0.1 and closes it when the test ends.
func (d *tokenDesk) start(tb testing.TB, h http.Handler) {
	tb.Helper()
	srv := httptest.NewServer(h)
	d.mu.Lock()
	d.server = srv
	d.mu.Unlock()
	tb.Cleanup(srv.Close)
}

// URL is the root of a started fake (the issuer of its tokens); empty for a
// bare handler, whose endpoint URLs are then just their paths.
func (d *tokenDesk) URL() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.server == nil {
		return ""
	}
	return d.server.URL
}

// RefreshCalls counts refresh_token grant requests received, failed ones
// included.
func (d *tokenDesk) RefreshCalls() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.refreshes
}

// ExchangeCalls counts authorization_code grant requests received.
func (d *tokenDesk) ExchangeCalls() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.exchanges
}

// FailNext makes the next token-endpoint request fail with this status and
// body before anything is checked or consumed; an empty body is the
// provider's generic error ({"error":"server_error"} for Claude and OpenAI,
// {"error":"internal_failure"} for Google). Calls queue up.
func (d *tokenDesk) FailNext(status int, body string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.faults = append(d.faults, oauthFault{status: status, body: body})
}

// TokenRequests returns the token-endpoint requests received so far, for
// tests of headers and body fields.
func (d *tokenDesk) TokenRequests() []Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.requests)
}

// admitLocked books one token request — records it, counts its grant type
// ("" when the body did not parse) — and answers it with the oldest queued
// failure if there is one, in which case it reports false and the request
// is done. The caller holds d.mu.
func (d *tokenDesk) admitLocked(w http.ResponseWriter, r *http.Request, raw []byte, grantType string) bool {
	d.requests = append(d.requests, Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
		Header: r.Header.Clone(), Body: raw, Time: time.Now()})
	switch grantType {
	case "refresh_token":
		d.refreshes++
	case "authorization_code":
		d.exchanges++
	}
	if len(d.faults) == 0 {
		return true
	}
	f := d.faults[0]
	d.faults = d.faults[1:]
	if f.body == "" {
		f.body = d.failBody
	}
	w.Header().Set("Content-Type", d.failType)
	w.WriteHeader(f.status)
	_, _ = io.WriteString(w, f.body)
	return false
}
