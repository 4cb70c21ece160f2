package scheduler

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/sqlite"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func setup(t *testing.T, accts ...store.Account) (*Scheduler, store.Store, *clock) {
	t.Helper()
	clk := &clock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for i, a := range accts {
		if a.Platform == "" {
			a.Platform = store.PlatformClaude
		}
		if a.Type == "" {
			a.Type = store.TypeAPIKey
		}
		if a.Priority == 0 {
			a.Priority = 50
		}
		a.CreatedAt = clk.Now().Add(time.Duration(i) * time.Second)
		a.UpdatedAt = a.CreatedAt
		if err := st.CreateAccount(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	s := New(st, Options{Now: clk.Now, StickyTTL: time.Hour})
	if err := s.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, st, clk
}

func pick(t *testing.T, s *Scheduler, req Request) store.AccountID {
	t.Helper()
	if req.Platform == "" {
		req.Platform = store.PlatformClaude
	}
	a, err := s.Pick(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return a.ID
}

func TestPriorityThenLeastRecentlyUsed(t *testing.T) {
	s, _, clk := setup(t,
		store.Account{ID: "low", Name: "low", Priority: 10},
		store.Account{ID: "a", Name: "a", Priority: 20},
		store.Account{ID: "b", Name: "b", Priority: 20},
		store.Account{ID: "gem", Name: "gem", Platform: store.PlatformGemini, Priority: 1},
	)
	ctx := context.Background()
	if got := pick(t, s, Request{}); got != "low" {
		t.Fatalf("first pick = %s, want the lowest priority number", got)
	}
	if err := s.Rest(ctx, "low", store.CooldownRateLimited, clk.Now().Add(time.Minute), "429"); err != nil {
		t.Fatal(err)
	}
	var seq []store.AccountID
	for range 4 {
		seq = append(seq, pick(t, s, Request{}))
		clk.Add(time.Millisecond)
	}
	if seq[0] == seq[1] || seq[0] != seq[2] || seq[1] != seq[3] {
		t.Fatalf("equal priorities did not rotate least-recently-used first: %v", seq)
	}
	clk.Add(2 * time.Minute)
	if got := pick(t, s, Request{}); got != "low" {
		t.Fatalf("after the cooldown ended, pick = %s, want low", got)
	}
}

func TestStickySessionAndDropWhenUnavailable(t *testing.T) {
	s, _, clk := setup(t, store.Account{ID: "a", Name: "a"}, store.Account{ID: "b", Name: "b"})
	ctx := context.Background()
	first := pick(t, s, Request{Session: "k|claude|s1"})
	for range 5 {
		clk.Add(time.Second)
		if got := pick(t, s, Request{Session: "k|claude|s1"}); got != first {
			t.Fatalf("sticky session moved from %s to %s", first, got)
		}
	}
	other := pick(t, s, Request{Session: "k|claude|s2"})
	if other == first {
		t.Fatalf("a new conversation went to the busy sticky account %s instead of the idle one", other)
	}
	if err := s.Rest(ctx, first, store.CooldownTransient, clk.Now().Add(time.Minute), "529"); err != nil {
		t.Fatal(err)
	}
	moved := pick(t, s, Request{Session: "k|claude|s1"})
	if moved == first {
		t.Fatal("sticky session stayed on a cooling account")
	}
	clk.Add(2 * time.Minute)
	if got := pick(t, s, Request{Session: "k|claude|s1"}); got != moved {
		t.Fatalf("after moving, the conversation should stay on %s, got %s", moved, got)
	}
}

func TestNoAccountAndAllCooling(t *testing.T) {
	s, _, clk := setup(t, store.Account{ID: "a", Name: "a"}, store.Account{ID: "off", Name: "off", Disabled: true})
	ctx := context.Background()
	_, err := s.Pick(ctx, Request{Platform: store.PlatformGemini, Model: "gemini-x"})
	var none *NoAccountError
	if !errors.As(err, &none) || none.Model != "gemini-x" {
		t.Fatalf("err = %v, want NoAccountError", err)
	}
	until := clk.Now().Add(90 * time.Second)
	if err := s.Rest(ctx, "a", store.CooldownRateLimited, until, "429"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Pick(ctx, Request{Platform: store.PlatformClaude})
	var cooling *CoolingError
	if !errors.As(err, &cooling) || !cooling.Until.Equal(until) {
		t.Fatalf("err = %v, want CoolingError until %v", err, until)
	}
	if got, ok := s.Recovery(Request{Platform: store.PlatformClaude}); !ok || !got.Equal(until) {
		t.Fatalf("Recovery = %v %v", got, ok)
	}
	// The cooldown reached the store, where the CLI reads it.
	a, err := s.st.GetAccount(ctx, "a")
	if err != nil || a.Status(clk.Now()) != string(store.CooldownRateLimited) || a.CooldownUntil == nil {
		t.Fatalf("stored account: %+v %v", a, err)
	}
	_, err = s.Pick(ctx, Request{Platform: store.PlatformClaude, Exclude: map[store.AccountID]bool{"a": true}})
	if !errors.As(err, &cooling) {
		t.Fatalf("all excluded: err = %v", err)
	}
}

func TestReloadSeesStoreChangesAndTouchesFlush(t *testing.T) {
	s, st, clk := setup(t, store.Account{ID: "a", Name: "a"})
	ctx := context.Background()
	if err := st.CreateAccount(ctx, store.Account{ID: "z", Name: "z", Platform: store.PlatformClaude, Type: store.TypeAPIKey, Priority: 1, CreatedAt: clk.Now(), UpdatedAt: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	if got := pick(t, s, Request{}); got != "a" {
		t.Fatalf("before reload: %s", got)
	}
	if err := s.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if got := pick(t, s, Request{}); got != "z" {
		t.Fatalf("after reload: %s, want the new priority-1 account", got)
	}
	if err := s.FlushTouches(ctx); err != nil {
		t.Fatal(err)
	}
	a, _ := st.GetAccount(ctx, "z")
	if a.LastUsedAt == nil {
		t.Fatal("last_used_at not flushed")
	}
}

func TestFamilyLimitLeavesOtherFamiliesRoutable(t *testing.T) {
	s, st, clk := setup(t, store.Account{ID: "a", Name: "a", Priority: 10}, store.Account{ID: "b", Name: "b", Priority: 20})
	ctx := context.Background()
	opus := Request{Platform: store.PlatformClaude, Model: "claude-opus-4-5", Family: "opus"}
	sonnet := Request{Platform: store.PlatformClaude, Model: "claude-sonnet-4-5", Family: "sonnet"}
	until := clk.Now().Add(time.Hour)
	if err := s.LimitFamily(ctx, "a", "opus", until); err != nil {
		t.Fatal(err)
	}
	if got := pick(t, s, opus); got != "b" {
		t.Fatalf("opus went to %s, whose opus limit runs", got)
	}
	if got := pick(t, s, sonnet); got != "a" {
		t.Fatalf("sonnet went to %s; the opus limit of a must not stop sonnet", got)
	}
	// Sticky: a conversation bound to a moves away for opus only.
	if err := st.SetSticky(ctx, "conv", "a", time.Hour); err != nil {
		t.Fatal(err)
	}
	opus.Session = "conv"
	if got := pick(t, s, opus); got != "b" {
		t.Fatalf("sticky opus request stayed on the limited account: %s", got)
	}
	// Both limited: the wait is the earliest family reset, and Recovery says so.
	if err := s.LimitFamily(ctx, "b", "opus", until.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	opus.Session = ""
	_, err := s.Pick(ctx, opus)
	var cooling *CoolingError
	if !errors.As(err, &cooling) || !cooling.Until.Equal(until) {
		t.Fatalf("all opus-limited: err = %v, want CoolingError until %v", err, until)
	}
	if got, ok := s.Recovery(opus); !ok || !got.Equal(until) {
		t.Fatalf("Recovery(opus) = %v %v", got, ok)
	}
	if _, ok := s.Recovery(sonnet); ok {
		t.Fatal("Recovery(sonnet) reported a wait although sonnet can be served")
	}
	// The limit reached the store (the CLI shows it; other instances route by it).
	a, err := st.GetAccount(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := a.Quota.FamilyLimited("opus", clk.Now()); !ok || !got.Equal(until) {
		t.Fatalf("stored quota = %+v", a.Quota)
	}
	// At the reset the family comes back by itself.
	clk.Add(time.Hour + time.Second)
	if got := pick(t, s, opus); got != "a" {
		t.Fatalf("after the reset opus went to %s, want a", got)
	}
	// A reload from the store keeps the limit of b.
	if err := s.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if got := pick(t, s, opus); got != "a" {
		t.Fatalf("after reload: %s", got)
	}
}

func TestServesFilterIsNotACooldown(t *testing.T) {
	s, _, _ := setup(t, store.Account{ID: "free", Name: "free", Priority: 1, Plan: "free"}, store.Account{ID: "max", Name: "max", Priority: 50, Plan: "max"})
	noFreeOpus := func(a store.Account) bool { return a.Plan != "free" }
	if got := pick(t, s, Request{Model: "claude-opus-4-5", Serves: noFreeOpus}); got != "max" {
		t.Fatalf("opus went to %s", got)
	}
	if got := pick(t, s, Request{Model: "claude-sonnet-4-5"}); got != "free" {
		t.Fatalf("sonnet went to %s, want the priority-1 free account", got)
	}
	_, err := s.Pick(context.Background(), Request{Platform: store.PlatformClaude, Model: "claude-opus-4-5",
		Serves: func(store.Account) bool { return false }})
	var none *NoAccountError
	if !errors.As(err, &none) {
		t.Fatalf("nothing serves: err = %v, want NoAccountError (not a cooldown)", err)
	}
}

func TestObserveWindowWritesOnlyChanges(t *testing.T) {
	s, st, clk := setup(t, store.Account{ID: "a", Name: "a"})
	ctx := context.Background()
	start := clk.Now().Truncate(time.Hour)
	w := store.Window{Start: start, End: start.Add(5 * time.Hour), Status: store.WindowAllowed}
	v0, _ := st.ChangeVersion(ctx)
	for range 3 {
		if err := s.ObserveWindow(ctx, "a", w); err != nil {
			t.Fatal(err)
		}
	}
	v1, _ := st.ChangeVersion(ctx)
	if v1 == v0 {
		t.Fatal("the first window was not written")
	}
	w.Status = store.WindowWarning
	if err := s.ObserveWindow(ctx, "a", w); err != nil {
		t.Fatal(err)
	}
	v2, _ := st.ChangeVersion(ctx)
	if v2 == v1 {
		t.Fatal("the status change was not written")
	}
	if err := s.ObserveWindow(ctx, "a", w); err != nil {
		t.Fatal(err)
	}
	if v3, _ := st.ChangeVersion(ctx); v3 != v2 {
		t.Fatalf("an unchanged window was written again (version %d → %d)", v2, v3)
	}
	a, _ := st.GetAccount(ctx, "a")
	if !a.Quota.Window5h.End.Equal(w.End) || a.Quota.Window5h.Status != store.WindowWarning {
		t.Fatalf("stored window = %+v", a.Quota.Window5h)
	}
}

func TestBindingToAccountOrGroup(t *testing.T) {
	s, st, clk := setup(t, store.Account{ID: "a", Name: "a", Priority: 1}, store.Account{ID: "b", Name: "b", Priority: 50},
		store.Account{ID: "c", Name: "c", Priority: 60})
	ctx := context.Background()
	if err := st.CreateGroup(ctx, store.Group{ID: "g1", Name: "team", Platform: store.PlatformClaude, CreatedAt: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []store.AccountID{"b", "c"} {
		if err := st.AddGroupMember(ctx, "g1", id); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if got := pick(t, s, Request{Binding: "c"}); got != "c" {
		t.Fatalf("bound to c, picked %s", got)
	}
	if got := pick(t, s, Request{Binding: "group:g1"}); got != "b" {
		t.Fatalf("bound to the group, picked %s (want its best member b, not the pool's a)", got)
	}
	if err := s.Rest(ctx, "b", store.CooldownTransient, clk.Now().Add(time.Minute), "529"); err != nil {
		t.Fatal(err)
	}
	if got := pick(t, s, Request{Binding: "group:g1"}); got != "c" {
		t.Fatalf("with b resting, picked %s", got)
	}
	if err := s.Rest(ctx, "c", store.CooldownTransient, clk.Now().Add(2*time.Minute), "529"); err != nil {
		t.Fatal(err)
	}
	_, err := s.Pick(ctx, Request{Platform: store.PlatformClaude, Binding: "group:g1"})
	var cooling *CoolingError
	if !errors.As(err, &cooling) {
		t.Fatalf("whole group resting: %v, want CoolingError (never the pool)", err)
	}
	_, err = s.Pick(ctx, Request{Platform: store.PlatformClaude, Binding: "group:nope"})
	var none *NoAccountError
	if !errors.As(err, &none) || none.Binding != "group:nope" {
		t.Fatalf("unknown group: %v", err)
	}
}
