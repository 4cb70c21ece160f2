package sqlite

import (
	"context"
	"sync"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// stickySweepEvery bounds how often SetSticky scans the map for expired
// bindings. Lookups ignore expired entries anyway; the sweep only keeps
// memory from growing with sessions that never come back.
const stickySweepEvery = time.Minute

// stickyMap holds session → account bindings in memory. Embedded mode
// serves from one process, and bindings are read on every request and need
// not survive a restart (a lost binding costs one prompt-cache miss), so
// they never touch the disk. Expired entries are pruned lazily, without a
// goroutine, so there is nothing to stop on Close.
type stickyMap struct {
	mu        sync.Mutex
	m         map[string]stickyEntry
	lastSweep time.Time
}

type stickyEntry struct {
	id      store.AccountID
	expires time.Time
}

func newStickyMap() *stickyMap {
	return &stickyMap{m: make(map[string]stickyEntry)}
}

// GetSticky returns the account bound to session, if the binding lives,
// extending a live one to renew from now when renew > 0.
func (s *Store) GetSticky(ctx context.Context, session string, renew time.Duration) (store.AccountID, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	now := s.now()
	sm := s.sticky
	sm.mu.Lock()
	defer sm.mu.Unlock()
	e, ok := sm.m[session]
	if !ok {
		return "", false, nil
	}
	if !now.Before(e.expires) {
		delete(sm.m, session)
		return "", false, nil
	}
	if renew > 0 {
		sm.m[session] = stickyEntry{id: e.id, expires: now.Add(renew)}
	}
	return e.id, true, nil
}

// SetSticky binds session to id for ttl, replacing any binding. A ttl <= 0
// removes the binding, since it would be dead at once.
func (s *Store) SetSticky(ctx context.Context, session string, id store.AccountID, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.now()
	sm := s.sticky
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if ttl <= 0 {
		delete(sm.m, session)
		return nil
	}
	sm.m[session] = stickyEntry{id: id, expires: now.Add(ttl)}
	if now.Sub(sm.lastSweep) >= stickySweepEvery {
		sm.lastSweep = now
		for k, e := range sm.m {
			if !now.Before(e.expires) {
				delete(sm.m, k)
			}
		}
	}
	return nil
}

// DeleteSticky removes the binding of session, if any.
func (s *Store) DeleteSticky(ctx context.Context, session string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sm := s.sticky
	sm.mu.Lock()
	defer sm.mu.Unlock()
	delete(sm.m, session)
	return nil
}
