// Package notifytest holds loopback receivers for alert tests: an HTTP
// webhook receiver that records every request and answers as told
// (success, errors, hanging), and a minimal SMTP server that records
// every message. Both run on 127.0.0.1 and stop with the test.
package notifytest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Request is one request the Receiver got.
type Request struct {
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	Body     []byte
	Time     time.Time
}

// Reply is how the Receiver answers one request.
type Reply struct {
	// Status defaults to 200.
	Status int
	// Body defaults to {"ok":true,"errcode":0,"code":0}.
	Body string
	// Hang never answers: the handler returns when the client gives up
	// or the receiver closes.
	Hang bool
}

// DefaultBody is what the Receiver answers by default: it satisfies every
// provider's success check but Bark's (which wants code 200; use
// BarkOK).
const DefaultBody = `{"ok":true,"errcode":0,"errmsg":"ok","code":0,"msg":"success"}`

// BarkOK is a Bark server's success answer.
const BarkOK = `{"code":200,"message":"success"}`

// Receiver is a loopback webhook endpoint. All methods are safe for
// concurrent use.
type Receiver struct {
	srv    *httptest.Server
	closed chan struct{}

	mu      sync.Mutex
	reqs    []Request
	replies []Reply
	def     Reply
	arrived chan struct{}
}

// NewReceiver starts a Receiver that closes when tb ends.
func NewReceiver(tb testing.TB) *Receiver {
	r := &Receiver{closed: make(chan struct{}), arrived: make(chan struct{}, 1)}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	tb.Cleanup(r.Close)
	return r
}

// URL is the receiver's base URL; any path is accepted.
func (r *Receiver) URL() string { return r.srv.URL }

// Close stops the receiver, releasing hanging handlers.
func (r *Receiver) Close() {
	select {
	case <-r.closed:
	default:
		close(r.closed)
	}
	r.srv.Close()
}

// Push queues replies for the next requests, in order; after them the
// default reply answers.
func (r *Receiver) Push(rep ...Reply) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.replies = append(r.replies, rep...)
}

// SetDefault sets the reply used when none is queued.
func (r *Receiver) SetDefault(rep Reply) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.def = rep
}

// Requests returns every request so far.
func (r *Receiver) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.reqs...)
}

// Wait waits until at least n requests arrived, or fails the test after
// timeout, and returns them all.
func (r *Receiver) Wait(tb testing.TB, n int, timeout time.Duration) []Request {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if got := r.Requests(); len(got) >= n {
			return got
		}
		select {
		case <-r.arrived:
		case <-deadline.C:
			got := r.Requests()
			tb.Fatalf("webhook receiver: %d requests after %v, want %d", len(got), timeout, n)
			return got
		}
	}
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.reqs = append(r.reqs, Request{Method: req.Method, Path: req.URL.Path, RawQuery: req.URL.RawQuery,
		Header: req.Header.Clone(), Body: body, Time: time.Now()})
	rep := r.def
	if len(r.replies) > 0 {
		rep, r.replies = r.replies[0], r.replies[1:]
	}
	r.mu.Unlock()
	select {
	case r.arrived <- struct{}{}:
	default:
	}
	if rep.Hang {
		select {
		case <-req.Context().Done():
		case <-r.closed:
		}
		return
	}
	if rep.Status == 0 {
		rep.Status = http.StatusOK
	}
	if rep.Body == "" {
		rep.Body = DefaultBody
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.Status)
	io.WriteString(w, rep.Body)
}
