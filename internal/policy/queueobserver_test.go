package policy

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// queueLog is a QueueObserver that remembers what it heard.
type queueLog struct {
	mu      sync.Mutex
	waiting int
	left    []queueLeft
	entered chan struct{}
}

type queueLeft struct {
	waited  time.Duration
	outcome QueueOutcome
	ctx     context.Context
}

func (l *queueLog) QueueEntered(ctx context.Context) {
	l.mu.Lock()
	l.waiting++
	l.mu.Unlock()
	l.entered <- struct{}{}
}

func (l *queueLog) QueueLeft(ctx context.Context, waited time.Duration, o QueueOutcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.waiting--
	l.left = append(l.left, queueLeft{waited, o, ctx})
}

func (l *queueLog) last(t *testing.T) queueLeft {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.left) == 0 {
		t.Fatal("QueueLeft was not called")
	}
	return l.left[len(l.left)-1]
}

type ctxMark struct{}

// TestQueueObserver: a request that finds its key's slot taken enters the
// queue and leaves it with the time it waited and how the wait ended:
// served when the slot frees, timeout, canceled. A request that gets a
// slot at once, or is refused without a queue, never enters.
func TestQueueObserver(t *testing.T) {
	log := &queueLog{entered: make(chan struct{}, 10)}
	yes := true
	e := newEngine(newClock(t0), func(o *Options) { o.QueueTimeout = 150 * time.Millisecond; o.QueueObserver = log })
	key := store.Key{ID: "k", Policy: store.KeyPolicy{Concurrency: 1, Queue: &yes}}
	hold, d := e.Acquire(t.Context(), key, messages())
	if d != nil {
		t.Fatal(d)
	}
	select {
	case <-log.entered:
		t.Fatal("a request that got a slot at once entered the queue")
	default:
	}

	// Served: the holder releases 80 ms after the waiter queued.
	ctx := context.WithValue(t.Context(), ctxMark{}, "waiter")
	done := make(chan *Denial, 1)
	var release func()
	go func() {
		var d *Denial
		release, d = e.Acquire(ctx, key, messages())
		done <- d
	}()
	<-log.entered
	time.Sleep(80 * time.Millisecond)
	hold()
	if d := <-done; d != nil {
		t.Fatal(d)
	}
	l := log.last(t)
	if l.outcome != QueueServed || l.waited < 80*time.Millisecond || l.waited > time.Second || l.ctx.Value(ctxMark{}) != "waiter" {
		t.Fatalf("served: %+v", l)
	}

	// Timeout: the slot stays taken for the whole queue timeout.
	if _, d := e.Acquire(t.Context(), key, messages()); d == nil || d.Code != CodeQueueTimeout {
		t.Fatalf("want a queue timeout, got %v", d)
	}
	<-log.entered
	if l := log.last(t); l.outcome != QueueTimedOut || l.waited < 150*time.Millisecond {
		t.Fatalf("timeout: %+v", l)
	}

	// Canceled: the client leaves while it waits.
	cctx, cancel := context.WithCancel(t.Context())
	go func() { <-log.entered; time.Sleep(20 * time.Millisecond); cancel() }()
	if _, d := e.Acquire(cctx, key, messages()); d == nil || d.Code != CodeCanceled {
		t.Fatalf("want canceled, got %v", d)
	}
	if l := log.last(t); l.outcome != QueueCanceled {
		t.Fatalf("canceled: %+v", l)
	}
	release()

	// Without a queue the request is refused at once and never waits.
	noQueue := store.Key{ID: "n", Policy: store.KeyPolicy{Concurrency: 1}}
	h, _ := e.Acquire(t.Context(), noQueue, messages())
	if _, d := e.Acquire(t.Context(), noQueue, messages()); d == nil {
		t.Fatal("second request admitted without a queue")
	}
	h()
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.left) != 3 || log.waiting != 0 {
		t.Fatalf("%d waits heard, %d still waiting; want 3 and 0", len(log.left), log.waiting)
	}
}
