// Package scheduler chooses the upstream account for a request: the
// conversation's sticky account when it can still serve, else the enabled,
// schedulable, resting-free account with the lowest priority number, least
// recently used first. It keeps a snapshot of the accounts in memory
// (reloaded when the store's change version moves) so a choice costs no
// store round trip, and it writes cooldowns through to the store so the
// CLI and other instances see them.
package scheduler

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// NoAccountError says no enabled account exists for the pool and model.
type NoAccountError struct {
	Platform store.Platform
	Model    string
}

func (e *NoAccountError) Error() string {
	return fmt.Sprintf("no enabled %s account can serve model %q", e.Platform, e.Model)
}

// CoolingError says every account that could serve is resting.
type CoolingError struct {
	Platform store.Platform
	Accounts int
	Until    time.Time // earliest recovery
}

func (e *CoolingError) Error() string {
	return fmt.Sprintf("all %d %s accounts are cooling down; the first recovers at %s",
		e.Accounts, e.Platform, e.Until.UTC().Format(time.RFC3339))
}

// Request describes what to pick for.
type Request struct {
	Platform store.Platform
	Model    string
	// Session is the sticky key (relay key, platform and conversation
	// id); empty means no stickiness.
	Session string
	// Exclude holds accounts already tried for this request.
	Exclude map[store.AccountID]bool
}

// Options tune a Scheduler.
type Options struct {
	StickyTTL time.Duration    // default 1h
	Now       func() time.Time // default time.Now
}

// Scheduler picks accounts. Safe for concurrent use.
type Scheduler struct {
	st        store.Store
	stickyTTL time.Duration
	now       func() time.Time

	mu       sync.Mutex
	accounts []store.Account
	lastUsed map[store.AccountID]time.Time
	touched  map[store.AccountID]time.Time
}

// New returns a Scheduler; call Reload before the first Pick.
func New(st store.Store, opts Options) *Scheduler {
	if opts.StickyTTL <= 0 {
		opts.StickyTTL = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Scheduler{
		st:        st,
		stickyTTL: opts.StickyTTL,
		now:       opts.Now,
		lastUsed:  map[store.AccountID]time.Time{},
		touched:   map[store.AccountID]time.Time{},
	}
}

// Reload replaces the snapshot with the store's accounts.
func (s *Scheduler) Reload(ctx context.Context) error {
	accts, err := s.st.ListAccounts(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accounts = accts
	for _, a := range accts {
		if a.LastUsedAt != nil && a.LastUsedAt.After(s.lastUsed[a.ID]) {
			s.lastUsed[a.ID] = *a.LastUsedAt
		}
	}
	return nil
}

// Pick chooses an account for req, or explains why none can serve with a
// *NoAccountError or *CoolingError.
func (s *Scheduler) Pick(ctx context.Context, req Request) (store.Account, error) {
	now := s.now()
	if req.Session != "" {
		id, ok, err := s.st.GetSticky(ctx, req.Session)
		if err != nil {
			return store.Account{}, err
		}
		if ok {
			if a, found := s.usable(id, req, now); found {
				s.markUsed(a.ID, now)
				return a, s.st.SetSticky(ctx, req.Session, a.ID, s.stickyTTL)
			}
			// The bound account cannot serve: drop the binding so the
			// conversation moves on instead of failing.
			if err := s.st.DeleteSticky(ctx, req.Session); err != nil {
				return store.Account{}, err
			}
		}
	}
	a, err := s.choose(req, now)
	if err != nil {
		return store.Account{}, err
	}
	s.markUsed(a.ID, now)
	if req.Session != "" {
		if err := s.st.SetSticky(ctx, req.Session, a.ID, s.stickyTTL); err != nil {
			return store.Account{}, err
		}
	}
	return a, nil
}

func (s *Scheduler) usable(id store.AccountID, req Request, now time.Time) (store.Account, bool) {
	if req.Exclude[id] {
		return store.Account{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.accounts {
		if a.ID == id {
			return a, a.Platform == req.Platform && a.Available(now)
		}
	}
	return store.Account{}, false
}

func (s *Scheduler) choose(req Request, now time.Time) (store.Account, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best *store.Account
	var enabled int
	var earliest time.Time
	for i := range s.accounts {
		a := &s.accounts[i]
		if a.Platform != req.Platform || a.Disabled || a.Unschedulable {
			continue
		}
		enabled++
		if req.Exclude[a.ID] {
			continue
		}
		if !a.Available(now) {
			if a.CooldownUntil != nil && (earliest.IsZero() || a.CooldownUntil.Before(earliest)) {
				earliest = *a.CooldownUntil
			}
			continue
		}
		if best == nil || s.less(a, best) {
			best = a
		}
	}
	switch {
	case best != nil:
		return *best, nil
	case enabled == 0:
		return store.Account{}, &NoAccountError{Platform: req.Platform, Model: req.Model}
	case earliest.IsZero():
		// Every enabled account was tried already in this request.
		return store.Account{}, &CoolingError{Platform: req.Platform, Accounts: enabled, Until: now.Add(time.Second)}
	}
	return store.Account{}, &CoolingError{Platform: req.Platform, Accounts: enabled, Until: earliest}
}

// less orders by priority, then least recently used, then creation.
func (s *Scheduler) less(a, b *store.Account) bool {
	if c := cmp.Compare(a.Priority, b.Priority); c != 0 {
		return c < 0
	}
	la, lb := s.lastUsed[a.ID], s.lastUsed[b.ID]
	if !la.Equal(lb) {
		return la.Before(lb)
	}
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.Before(b.CreatedAt)
	}
	return a.ID < b.ID
}

func (s *Scheduler) markUsed(id store.AccountID, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Strictly increasing, so two picks in one clock tick still rotate.
	if last := s.lastUsed[id]; !now.After(last) {
		now = last.Add(time.Nanosecond)
	}
	s.lastUsed[id] = now
	s.touched[id] = now
}

// Rest records a cooldown for the account (kind CooldownNone clears it),
// in the snapshot at once and in the store for everyone else.
func (s *Scheduler) Rest(ctx context.Context, id store.AccountID, kind store.CooldownKind, until time.Time, reason string) error {
	s.mu.Lock()
	for i := range s.accounts {
		if s.accounts[i].ID == id {
			a := &s.accounts[i]
			a.CooldownKind, a.CooldownReason = kind, reason
			if kind == store.CooldownNone {
				a.CooldownUntil = nil
			} else {
				u := until
				a.CooldownUntil = &u
			}
		}
	}
	s.mu.Unlock()
	return s.st.SetCooldown(ctx, id, kind, until, reason)
}

// Recovery reports the earliest end of a cooldown when every enabled,
// schedulable account of the platform is resting; ok is false when one of
// them can serve now or none exists.
func (s *Scheduler) Recovery(p store.Platform) (until time.Time, ok bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.accounts {
		if a.Platform != p || a.Disabled || a.Unschedulable {
			continue
		}
		if a.Available(now) || a.CooldownUntil == nil {
			return time.Time{}, false
		}
		if until.IsZero() || a.CooldownUntil.Before(until) {
			until = *a.CooldownUntil
		}
	}
	return until, !until.IsZero()
}

// FlushTouches writes the last-used times gathered since the previous flush.
func (s *Scheduler) FlushTouches(ctx context.Context) error {
	s.mu.Lock()
	if len(s.touched) == 0 {
		s.mu.Unlock()
		return nil
	}
	t := s.touched
	s.touched = map[store.AccountID]time.Time{}
	s.mu.Unlock()
	return s.st.TouchAccounts(ctx, t)
}
