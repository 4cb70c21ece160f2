package fakeupstream

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// fault is what every fake's fault type offers the ledger: a deep copy, so
// a test that reuses one header map for several Push calls cannot change a
// fault already queued.
type fault[F any] interface {
	clone() F
}

// ledger is the bookkeeping every fake API keeps the same way: the queue of
// faults its counted requests take, every request it received, how many
// counted requests arrived and how many were in flight at once. Embedding
// it gives each fake the same Push, SetDefault, Requests, MaxInFlight and
// ResetMaxInFlight, so a test drives all three fakes alike.
//
// The ledger has its own lock: the fakes guard their other state (server,
// reply sequence, subscription quota, Code Assist user) with their own mu,
// and nothing needs both at once.
type ledger[F fault[F]] struct {
	mu       sync.Mutex
	queue    []F
	fallback F
	requests []Request
	count    int

	// inFlight and maxInFlight count the requests being answered, so a
	// test can check a concurrency limit where it matters: upstream.
	inFlight, maxInFlight atomic.Int64
}

// Push queues faults; each counted request (a fake's messages, responses or
// generate call) takes the oldest one. When the queue is empty the default
// fault (SetDefault) applies.
func (l *ledger[F]) Push(f ...F) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range f {
		l.queue = append(l.queue, x.clone())
	}
}

// SetDefault sets the fault applied when the queue is empty; the zero value
// makes the fake healthy again.
func (l *ledger[F]) SetDefault(f F) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fallback = f.clone()
}

// Requests returns a copy of every request received, in arrival order.
func (l *ledger[F]) Requests() []Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Request, len(l.requests))
	for i, r := range l.requests {
		r.Header = r.Header.Clone()
		r.Body = append([]byte(nil), r.Body...)
		out[i] = r
	}
	return out
}

// MaxInFlight is the most counted requests the fake was answering at once
// since it started (or since ResetMaxInFlight).
func (l *ledger[F]) MaxInFlight() int64 { return l.maxInFlight.Load() }

// ResetMaxInFlight starts the MaxInFlight count again.
func (l *ledger[F]) ResetMaxInFlight() { l.maxInFlight.Store(l.inFlight.Load()) }

// counted is the number of counted requests received, whatever their
// outcome; each fake exports it under its own name.
func (l *ledger[F]) counted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count
}

// resetLedger forgets recorded requests, the count and queued faults; the
// default fault stays.
func (l *ledger[F]) resetLedger() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.requests = nil
	l.queue = nil
	l.count = 0
}

// next takes the fault for one counted request and counts it.
func (l *ledger[F]) next() F {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.count++
	if len(l.queue) == 0 {
		return l.fallback
	}
	f := l.queue[0]
	l.queue = l.queue[1:]
	return f
}

// record keeps one request as it arrived, its body cut to maxRecordedBody.
func (l *ledger[F]) record(r *http.Request, body []byte, at time.Time) {
	rec := recordedRequest(r, body, at)
	l.mu.Lock()
	l.requests = append(l.requests, rec)
	l.mu.Unlock()
}

// enter counts one more request in flight and returns its leave.
func (l *ledger[F]) enter() func() {
	n := l.inFlight.Add(1)
	for {
		m := l.maxInFlight.Load()
		if n <= m || l.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	return func() { l.inFlight.Add(-1) }
}

// recordedRequest copies what a test may inspect of r, so the record stays
// intact after the handler returns and net/http reuses r.
func recordedRequest(r *http.Request, body []byte, at time.Time) Request {
	if len(body) > maxRecordedBody {
		body = body[:maxRecordedBody]
	}
	return Request{
		Method:   r.Method,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Header:   r.Header.Clone(),
		Body:     append([]byte(nil), body...),
		Time:     at,
	}
}
