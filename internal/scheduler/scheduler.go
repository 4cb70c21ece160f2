// Package scheduler chooses the upstream account for a request: the
// conversation's sticky account when it can still serve, else the enabled,
// schedulable, resting-free account with the lowest priority number, least
// recently used first. An account can rest as a whole (a cooldown) or for
// one model family only (a family rate limit), so an Opus limit leaves the
// account routable for Sonnet. It keeps a snapshot of the accounts in memory
// (reloaded when the store's change version moves) so a choice costs no
// store round trip, and it writes cooldowns through to the store so the
// CLI and other instances see them.
package scheduler

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// NoAccountError says no enabled account exists for the pool and model.
type NoAccountError struct {
	Platform store.Platform
	Model    string
	Binding  string // the key's binding, "" for the pool
}

func (e *NoAccountError) Error() string {
	if e.Binding != "" {
		return fmt.Sprintf("no enabled %s account of the key's binding %s can serve model %q", e.Platform, e.Binding, e.Model)
	}
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
	// Family is the model family ("opus", "sonnet", …); an account whose
	// quota limits that family rests for this request. "" skips the check.
	Family string
	// Serves, when set, says whether an account can serve the request at
	// all (model allow-list, plan, client). Accounts it refuses do not
	// count: if none is left the answer is a *NoAccountError.
	Serves func(store.Account) bool
	// Binding limits the choice to one account ("acc_…") or the members
	// of a group ("group:grp_…"); empty means the whole pool.
	Binding string
	// Exclude holds accounts already tried for this request.
	Exclude map[store.AccountID]bool
}

// serves reports whether a can ever serve req (resting or not); members
// is the bound group's membership (nil when the binding is not a group).
func (req Request) serves(a *store.Account, members map[store.AccountID]bool) bool {
	if req.Binding != "" {
		if members != nil {
			if !members[a.ID] {
				return false
			}
		} else if string(a.ID) != req.Binding {
			return false
		}
	}
	return a.Platform == req.Platform && !a.Disabled && !a.Unschedulable &&
		(req.Serves == nil || req.Serves(*a))
}

// GroupPrefix marks a binding to an account group.
const GroupPrefix = "group:"

// members returns the membership of the request's bound group: an empty
// (non-nil) set when the group does not exist, nil without a group
// binding. Called with s.mu held.
func (s *Scheduler) members(req Request) map[store.AccountID]bool {
	id, ok := strings.CutPrefix(req.Binding, GroupPrefix)
	if !ok {
		return nil
	}
	if m := s.groups[store.GroupID(id)]; m != nil {
		return m
	}
	return map[store.AccountID]bool{}
}

// restsUntil reports whether a cannot serve req at now because it rests,
// as a whole or for the request's model family, and until when (zero when
// the rest has no end known).
func (req Request) restsUntil(a *store.Account, now time.Time) (time.Time, bool) {
	var until time.Time
	resting := false
	if !a.Available(now) {
		resting = true
		if a.CooldownUntil != nil {
			until = *a.CooldownUntil
		}
	}
	if req.Family != "" {
		if t, limited := a.Quota.FamilyLimited(req.Family, now); limited {
			resting = true
			until = later(until, t)
		}
	}
	return until, resting
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
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

	// quotaMu orders quota writes, so the store ends with the last one.
	quotaMu sync.Mutex

	mu       sync.Mutex
	accounts []store.Account
	groups   map[store.GroupID]map[store.AccountID]bool
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
	gs, err := s.st.ListGroups(ctx)
	if err != nil {
		return err
	}
	groups := make(map[store.GroupID]map[store.AccountID]bool, len(gs))
	for _, g := range gs {
		m := make(map[store.AccountID]bool, len(g.Members))
		for _, id := range g.Members {
			m[id] = true
		}
		groups[g.ID] = m
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accounts = accts
	s.groups = groups
	for _, a := range accts {
		if a.LastUsedAt != nil && a.LastUsedAt.After(s.lastUsed[a.ID]) {
			s.lastUsed[a.ID] = *a.LastUsedAt
		}
	}
	return nil
}

// Account reads one account from the store, not the snapshot: a caller
// acting on one named account (the console's live test) must see an edit
// or a refreshed token saved a moment ago.
func (s *Scheduler) Account(ctx context.Context, id store.AccountID) (store.Account, error) {
	return s.st.GetAccount(ctx, id)
}

// Pick chooses an account for req, or explains why none can serve with a
// *NoAccountError or *CoolingError.
func (s *Scheduler) Pick(ctx context.Context, req Request) (store.Account, error) {
	now := s.now()
	if req.Session != "" {
		id, ok, err := s.st.GetSticky(ctx, req.Session, s.stickyTTL)
		if err != nil {
			return store.Account{}, err
		}
		if ok {
			if a, found := s.usable(id, req, now); found {
				s.markUsed(a.ID, now) // GetSticky renewed the binding
				return a, nil
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
	members := s.members(req)
	for i := range s.accounts {
		if a := &s.accounts[i]; a.ID == id {
			_, resting := req.restsUntil(a, now)
			return *a, req.serves(a, members) && !resting
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
	members := s.members(req)
	for i := range s.accounts {
		a := &s.accounts[i]
		if !req.serves(a, members) {
			continue
		}
		enabled++
		if req.Exclude[a.ID] {
			continue
		}
		if until, resting := req.restsUntil(a, now); resting {
			if !until.IsZero() && (earliest.IsZero() || until.Before(earliest)) {
				earliest = until
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
		return store.Account{}, &NoAccountError{Platform: req.Platform, Model: req.Model, Binding: req.Binding}
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

// Recovery reports the earliest end of a rest when every account that
// could serve req (Exclude aside) is resting; ok is false when one of them
// can serve now or none exists.
func (s *Scheduler) Recovery(req Request) (until time.Time, ok bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	members := s.members(req)
	for i := range s.accounts {
		a := &s.accounts[i]
		if !req.serves(a, members) {
			continue
		}
		t, resting := req.restsUntil(a, now)
		if !resting || t.IsZero() {
			return time.Time{}, false
		}
		if until.IsZero() || t.Before(until) {
			until = t
		}
	}
	return until, !until.IsZero()
}

// LimitFamily rests the account for one model family until the given
// time: requests for other families may still go there.
func (s *Scheduler) LimitFamily(ctx context.Context, id store.AccountID, family string, until time.Time) error {
	return s.updateQuota(ctx, id, func(q *store.Quota) bool {
		if old, ok := q.FamilyLimits[family]; ok && old.Equal(until) {
			return false
		}
		limits := make(map[string]time.Time, len(q.FamilyLimits)+1)
		now := s.now()
		for f, t := range q.FamilyLimits {
			if now.Before(t) { // ended limits are dropped on the way
				limits[f] = t
			}
		}
		limits[family] = until
		q.FamilyLimits = limits
		return true
	})
}

// ObserveWindow records the account's current 5-hour window as the
// upstream reported it. The store is written only when the window or its
// status changed, not on every response.
func (s *Scheduler) ObserveWindow(ctx context.Context, id store.AccountID, w store.Window) error {
	return s.updateQuota(ctx, id, func(q *store.Quota) bool {
		if q.Window5h.Start.Equal(w.Start) && q.Window5h.End.Equal(w.End) && q.Window5h.Status == w.Status {
			return false
		}
		q.Window5h = w
		return true
	})
}

// updateQuota applies change to the account's quota in the snapshot and,
// when change reports a difference, writes it through to the store.
func (s *Scheduler) updateQuota(ctx context.Context, id store.AccountID, change func(*store.Quota) bool) error {
	s.quotaMu.Lock()
	defer s.quotaMu.Unlock()
	s.mu.Lock()
	var q store.Quota
	found := false
	for i := range s.accounts {
		if a := &s.accounts[i]; a.ID == id {
			found = change(&a.Quota)
			q = a.Quota
			break
		}
	}
	s.mu.Unlock()
	if !found {
		return nil
	}
	return s.st.SetAccountQuota(ctx, id, q)
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
