// Package leader runs background jobs on one instance at a time. Instances
// that share a store compete for a lease (store.Locks); the holder runs the
// job and renews the lease, the others wait to take over when it lapses —
// at most one lease time after the holder died.
package leader

import (
	"context"
	"log/slog"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// Run calls job whenever this instance holds the lease name, and returns
// when ctx ends (releasing a held lease). job's context ends when ctx ends
// or the lease is lost; job should return then. ttl is the lease: another
// instance takes over within ttl of this one's death. A nil log discards.
func Run(ctx context.Context, locks store.Locks, name string, ttl time.Duration, job func(ctx context.Context), log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	every := max(ttl/3, time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		token, ok, err := locks.TryLock(ctx, name, ttl)
		if err != nil && ctx.Err() == nil {
			log.Warn("leader election", "lease", name, "err", err)
		}
		if ok {
			log.Debug("leading", "lease", name)
			lead(ctx, locks, name, token, ttl, every, job, log)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// lead runs job while the lease renews, then stops it and gives the lease
// up (so a clean shutdown hands over at once, not after ttl).
func lead(ctx context.Context, locks store.Locks, name, token string, ttl, every time.Duration, job func(context.Context), log *slog.Logger) {
	jobCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		job(jobCtx)
	}()
	defer func() {
		stop()
		<-done
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = locks.Unlock(uctx, name, token)
	}()
	t := time.NewTicker(every)
	defer t.Stop()
	renewed := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-t.C:
		}
		ok, err := locks.RenewLock(ctx, name, token, ttl)
		switch {
		case err == nil && ok:
			renewed = time.Now()
		case err == nil:
			log.Warn("leadership lost", "lease", name)
			return
		case time.Since(renewed) >= ttl-every:
			// The store did not answer for nearly a whole lease: another
			// instance may lead soon, so stop before two do.
			log.Warn("leadership given up: the store does not answer", "lease", name, "err", err)
			return
		}
	}
}
