package relay

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// errQueueTimeout says an account's serial queue did not free up in time.
var errQueueTimeout = errors.New("the account's user-message queue did not free up in time")

// serialLease bounds how long a crashed instance can hold an account's
// queue: longer than any wait for response headers, short enough that the
// account comes back on its own.
const serialLease = 5 * time.Minute

// serialQueue lets at most one user turn at a time reach an account, with
// a minimum gap between turns: a person types one message at a time, and a
// subscription seeing several at once from one login is the pattern bans
// follow. Only accounts with the serial_queue option use it, and only for
// real user turns (tool results are the agent loop and pass freely).
//
// Within one process waiters line up on a per-account channel; across
// instances the holder also owns a store lease, so a shared deployment
// serialises too. The turn is released when the upstream's response
// headers arrive (Anthropic counts a request when it is sent), after gap.
type serialQueue struct {
	locks   store.Locks // nil: this process only
	gap     time.Duration
	timeout time.Duration

	mu    sync.Mutex
	slots map[store.AccountID]chan struct{}
}

func newSerialQueue(locks store.Locks, gap, timeout time.Duration) *serialQueue {
	return &serialQueue{locks: locks, gap: gap, timeout: timeout, slots: map[store.AccountID]chan struct{}{}}
}

func (q *serialQueue) slot(id store.AccountID) chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	ch := q.slots[id]
	if ch == nil {
		ch = make(chan struct{}, 1)
		q.slots[id] = ch
	}
	return ch
}

// acquire waits for the account's turn, at most q.timeout. The returned
// release must be called exactly once; it frees the turn after the gap.
func (q *serialQueue) acquire(ctx context.Context, id store.AccountID) (release func(), err error) {
	ctx, cancel := context.WithTimeoutCause(ctx, q.timeout, errQueueTimeout)
	defer cancel()
	ch := q.slot(id)
	select {
	case ch <- struct{}{}:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	token, err := q.lease(ctx, id)
	if err != nil {
		<-ch
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			time.AfterFunc(q.gap, func() {
				if q.locks != nil {
					// On an error the lease simply runs out by itself.
					q.locks.Unlock(context.Background(), serialLockName(id), token)
				}
				<-ch
			})
		})
	}, nil
}

// lease takes the cross-instance lease, polling while another instance
// holds it.
func (q *serialQueue) lease(ctx context.Context, id store.AccountID) (string, error) {
	if q.locks == nil {
		return "", nil
	}
	tick := 20 * time.Millisecond
	for {
		token, ok, err := q.locks.TryLock(ctx, serialLockName(id), serialLease)
		if err != nil {
			if ctx.Err() != nil {
				return "", context.Cause(ctx)
			}
			return "", err
		}
		if ok {
			return token, nil
		}
		select {
		case <-time.After(tick):
			tick = min(2*tick, 200*time.Millisecond)
		case <-ctx.Done():
			return "", context.Cause(ctx)
		}
	}
}

func serialLockName(id store.AccountID) string { return "serial:" + string(id) }
