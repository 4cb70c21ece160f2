package policy

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

const (
	// queuePoll is how often a queued request looks for a slot freed
	// where it cannot hear it: by another instance, or by an ended lease.
	// Slots released in this process wake their waiters at once.
	queuePoll = 50 * time.Millisecond
	// queueLeaseSlack keeps a crashed waiter's place in the queue a little
	// past its timeout, then frees it.
	queueLeaseSlack = time.Minute
	// releaseTimeout bounds the Release of a slot; past it the slot's
	// lease frees it.
	releaseTimeout = 5 * time.Second
	// waitHistory is how many recent queue waits judge a queue's health,
	// and minWaits how many it takes before one is judged at all.
	waitHistory = 20
	minWaits    = 10
	// unhealthyShare: a queue whose p90 wait reaches this share of the
	// timeout, and which is over half full, refuses new waiters at once
	// instead of letting them wait only to time out.
	unhealthyShare = 0.8
)

func slotName(id store.KeyID) string  { return fmt.Sprintf("policy:%s:slots", id) }
func queueName(id store.KeyID) string { return fmt.Sprintf("policy:%s:queue", id) }

// holder names one request's slot, unique across requests and instances.
func (e *Engine) holder(requestID string) string {
	return fmt.Sprintf("%s@%s#%d", requestID, e.instance, e.seq.Add(1))
}

func noRelease() {}

// QueueObserver hears of requests waiting in keys' concurrency queues.
// Both methods run on the waiting request's goroutine, with its context,
// and must return at once. Every QueueEntered is followed by exactly one
// QueueLeft.
type QueueObserver interface {
	// QueueEntered: a request took a place in its key's queue.
	QueueEntered(ctx context.Context)
	// QueueLeft: the request left the queue after waiting for waited,
	// with a slot (QueueServed) or without one.
	QueueLeft(ctx context.Context, waited time.Duration, outcome QueueOutcome)
}

// QueueOutcome is how a wait in a key's queue ended.
type QueueOutcome string

const (
	QueueServed   QueueOutcome = "served"   // a slot came free
	QueueTimedOut QueueOutcome = "timeout"  // the queue timeout passed first (429 queue_timeout)
	QueueCanceled QueueOutcome = "canceled" // the request ended while it waited
	QueueFailed   QueueOutcome = "error"    // the counters failed (503)
)

// Acquire takes one of the key's concurrency slots for the request. When
// all are taken it queues the request if the key's queue is on (its own
// Policy.Queue, or else Options.Queue) and waits up to the queue timeout;
// otherwise it refuses at once. count_tokens requests and keys without a
// limit take no slot.
//
// release is never nil, also with a Denial, so `defer release()` is always
// safe; it frees the slot once however often it is called, and must be
// called on every path (the slot's lease frees it only after SlotLease).
// The slot is renewed while held, so a stream longer than the lease keeps
// it.
func (e *Engine) Acquire(ctx context.Context, key store.Key, req Request) (release func(), d *Denial) {
	limit := key.Policy.Concurrency
	if limit <= 0 || req.CountTokens {
		return noRelease, nil
	}
	slots, holder := slotName(key.ID), e.holder(req.RequestID)
	ok, err := e.counters.Acquire(ctx, slots, holder, limit, e.slotLease)
	if err != nil {
		return noRelease, unavailable("concurrency", err)
	}
	if ok {
		return e.hold(key.ID, slots, holder, limit), nil
	}
	if !e.queueOn(key) {
		return noRelease, concurrencyExceeded(fmt.Sprintf("all %d are in use", limit))
	}
	return e.wait(ctx, key.ID, slots, holder, limit)
}

func (e *Engine) queueOn(key store.Key) bool {
	if key.Policy.Queue != nil {
		return *key.Policy.Queue
	}
	return e.queue
}

func concurrencyExceeded(why string) *Denial {
	return &Denial{
		Status:     http.StatusTooManyRequests,
		Type:       TypeRateLimit,
		Code:       CodeConcurrencyExceeded,
		Message:    "this key has too many requests in flight: " + why + "; retry shortly",
		RetryAfter: time.Second,
	}
}

// wait queues the request for a slot.
func (e *Engine) wait(ctx context.Context, id store.KeyID, slots, holder string, limit int) (func(), *Denial) {
	q := e.queueOf(id)
	size := e.queueFactor * limit
	queue := queueName(id)
	queued, err := e.counters.InUse(ctx, queue)
	if err != nil {
		return noRelease, unavailable("queue", err)
	}
	if 2*queued > size && q.unhealthy(e.queueTimeout) {
		return noRelease, concurrencyExceeded(fmt.Sprintf(
			"all %d are in use and its queue is not moving (recent waits near the %s timeout)", limit, e.queueTimeout))
	}
	ok, err := e.counters.Acquire(ctx, queue, holder, size, e.queueTimeout+queueLeaseSlack)
	if err != nil {
		return noRelease, unavailable("queue", err)
	}
	if !ok {
		return noRelease, concurrencyExceeded(fmt.Sprintf("all %d are in use and its queue of %d is full", limit, size))
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		_ = e.counters.Release(rctx, queue, holder) // the lease frees it otherwise
	}()

	began := time.Now()
	outcome := QueueFailed
	if e.observer != nil {
		e.observer.QueueEntered(ctx)
		defer func() { e.observer.QueueLeft(ctx, time.Since(began), outcome) }()
	}
	timeout := time.NewTimer(e.queueTimeout)
	defer timeout.Stop()
	poll := time.NewTicker(queuePoll)
	defer poll.Stop()
	for {
		// Take the wake-up channel before trying, so a release between the
		// try and the select is not missed.
		wake := q.wakeChan()
		ok, err := e.counters.Acquire(ctx, slots, holder, limit, e.slotLease)
		if err != nil {
			return noRelease, unavailable("concurrency", err)
		}
		if ok {
			outcome = QueueServed
			q.observe(time.Since(began))
			return e.hold(id, slots, holder, limit), nil
		}
		select {
		case <-wake:
		case <-poll.C:
		case <-timeout.C:
			outcome = QueueTimedOut
			q.observe(e.queueTimeout)
			return noRelease, &Denial{
				Status:     http.StatusTooManyRequests,
				Type:       TypeRateLimit,
				Code:       CodeQueueTimeout,
				Message:    fmt.Sprintf("this key's %d concurrent requests stayed busy for the whole %s this request waited; retry shortly", limit, e.queueTimeout),
				RetryAfter: time.Second,
			}
		case <-ctx.Done():
			outcome = QueueCanceled
			return noRelease, &Denial{
				Status:  StatusClientClosed,
				Type:    TypeAPI,
				Code:    CodeCanceled,
				Message: "the request ended while it waited for a slot: " + ctx.Err().Error(),
			}
		}
	}
}

// hold returns the release of a held slot and keeps the slot's lease
// renewed until then.
func (e *Engine) hold(id store.KeyID, slots, holder string, limit int) func() {
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(max(e.slotLease/3, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				// Acquiring again renews the holder's lease; a failure is
				// retried at the next tick, well before the lease ends.
				ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
				_, _ = e.counters.Acquire(ctx, slots, holder, limit, e.slotLease)
				cancel()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
			defer cancel()
			_ = e.counters.Release(ctx, slots, holder) // the lease frees it otherwise
			e.queueOf(id).wakeAll()
		})
	}
}

// keyQueue is the in-process side of a key's queue: a wake-up for waiters
// when a slot is released here, and the recent waits that judge the
// queue's health. Both are local by nature: other instances' waiters poll,
// and a health judgement from this instance's waits is good enough to
// stop piling requests onto a queue that does not move.
type keyQueue struct {
	mu    sync.Mutex
	wake  chan struct{} // closed and replaced at each release
	waits []time.Duration
	next  int
}

func (e *Engine) queueOf(id store.KeyID) *keyQueue {
	e.queueMu.Lock()
	defer e.queueMu.Unlock()
	q, ok := e.queues[id]
	if !ok {
		q = &keyQueue{wake: make(chan struct{})}
		e.queues[id] = q
	}
	return q
}

func (q *keyQueue) wakeChan() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.wake
}

func (q *keyQueue) wakeAll() {
	q.mu.Lock()
	defer q.mu.Unlock()
	close(q.wake)
	q.wake = make(chan struct{})
}

// observe remembers one finished wait (a timeout counts as the full
// timeout).
func (q *keyQueue) observe(d time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.waits) < waitHistory {
		q.waits = append(q.waits, d)
		return
	}
	q.waits[q.next] = d
	q.next = (q.next + 1) % waitHistory
}

// unhealthy reports whether the p90 of the recent waits is near timeout.
func (q *keyQueue) unhealthy(timeout time.Duration) bool {
	q.mu.Lock()
	waits := slices.Clone(q.waits)
	q.mu.Unlock()
	if len(waits) < minWaits {
		return false
	}
	slices.Sort(waits)
	p90 := waits[(len(waits)*9+9)/10-1]
	return float64(p90) >= unhealthyShare*float64(timeout)
}
