package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// newAccount returns a minimal valid account named n.
func newAccount(n string, created time.Time) store.Account {
	return store.Account{
		ID:           store.AccountID("acct-" + n),
		Name:         "account " + n,
		Platform:     store.PlatformClaude,
		Type:         store.TypeOAuth,
		Priority:     50,
		SealedSecret: []byte{1, 0, 0xff, 'n', 0, 7},
		CreatedAt:    created,
		UpdatedAt:    created,
	}
}

func testAccountRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	minimal := newAccount("minimal", at(0))
	minimal.SealedSecret = nil

	full := store.Account{
		ID:             "acct-full",
		Name:           "全部 fields",
		Platform:       store.PlatformOpenAI,
		Type:           store.TypeAPIKey,
		Priority:       1,
		Disabled:       true,
		Unschedulable:  true,
		BaseURL:        "https://api.example.test/v1",
		SealedSecret:   []byte{0, 1, 2, 3, 0, 255},
		SealedProxy:    []byte("\x01sealed proxy\x00"),
		CooldownUntil:  ptr(at(10*time.Minute + 3*time.Millisecond)),
		CooldownKind:   store.CooldownRateLimited,
		CooldownReason: "429 until reset",
		LastUsedAt:     ptr(at(time.Minute)),
		CreatedAt:      at(0),
		UpdatedAt:      at(time.Second),
	}
	zoned := newAccount("zoned", at(0).In(Zone()))
	zoned.UpdatedAt = at(time.Hour).In(Zone())

	for _, a := range []store.Account{minimal, full, zoned} {
		t.Run(string(a.ID), func(t *testing.T) {
			must(t, s.CreateAccount(ctx, a))
			got, err := s.GetAccount(ctx, a.ID)
			must(t, err)
			sameAccount(t, "GetAccount", got, a)
		})
	}
}

func testAccountConflict(t *testing.T, s store.Store) {
	ctx := t.Context()
	orig := newAccount("a", at(0))
	must(t, s.CreateAccount(ctx, orig))
	dup := newAccount("b", at(time.Second))
	dup.ID = orig.ID
	wantErr(t, "CreateAccount with a taken ID", s.CreateAccount(ctx, dup), store.ErrConflict)
	got, err := s.GetAccount(ctx, orig.ID)
	must(t, err)
	sameAccount(t, "account after conflict", got, orig)
}

func testAccountNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, s.CreateAccount(ctx, newAccount("present", at(0))))
	missing := newAccount("missing", at(0))
	_, err := s.GetAccount(ctx, missing.ID)
	wantErr(t, "GetAccount", err, store.ErrNotFound)
	wantErr(t, "UpdateAccount", s.UpdateAccount(ctx, missing), store.ErrNotFound)
	wantErr(t, "DeleteAccount", s.DeleteAccount(ctx, missing.ID), store.ErrNotFound)
	wantErr(t, "SetCooldown", s.SetCooldown(ctx, missing.ID, store.CooldownTransient, at(time.Hour), "x"), store.ErrNotFound)
	if _, err := s.GetAccount(ctx, missing.ID); err == nil {
		t.Error("an operation on a missing account created it")
	}
}

func testListAccounts(t *testing.T, s store.Store) {
	ctx := t.Context()
	accts, err := s.ListAccounts(ctx)
	must(t, err)
	if len(accts) != 0 {
		t.Fatalf("empty store lists %d accounts", len(accts))
	}
	c := newAccount("c", at(3*time.Hour))
	a := newAccount("a", at(1*time.Hour))
	b := newAccount("b", at(2*time.Hour))
	for _, x := range []store.Account{c, a, b} {
		must(t, s.CreateAccount(ctx, x))
	}
	accts, err = s.ListAccounts(ctx)
	must(t, err)
	var ids []store.AccountID
	for _, x := range accts {
		ids = append(ids, x.ID)
	}
	if want := []store.AccountID{a.ID, b.ID, c.ID}; fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Fatalf("ListAccounts = %v, want %v", ids, want)
	}
	sameAccount(t, "listed account", accts[1], b)
}

func testUpdateAccount(t *testing.T, s store.Store) {
	ctx := t.Context()
	orig := newAccount("u", at(0))
	orig.SealedProxy = []byte("proxy")
	orig.CooldownUntil = ptr(at(time.Hour))
	orig.CooldownKind = store.CooldownTransient
	orig.CooldownReason = "529"
	orig.Plan = "pro"
	orig.Options = store.AccountOptions{Models: map[string]string{"claude-sonnet-4-5": ""}, SerialQueue: true}
	orig.Quota = store.Quota{
		Window5h:     store.Window{Start: at(-time.Hour), End: at(4 * time.Hour), Status: store.WindowAllowed},
		FamilyLimits: map[string]time.Time{"opus": at(2 * time.Hour)},
	}
	orig.LastUsedAt = ptr(at(time.Minute))
	must(t, s.CreateAccount(ctx, orig))

	// Every field an admin edits changes (the proxy, the plan and the
	// model map are cleared); the cooldown, quota, last use and creation
	// time are set to other values that must be ignored.
	upd := store.Account{
		ID:            orig.ID,
		Name:          "renamed",
		Platform:      store.PlatformGemini,
		Type:          store.TypeSetupToken,
		Priority:      100,
		Disabled:      true,
		Unschedulable: true,
		BaseURL:       "http://127.0.0.1:9/x",
		SealedSecret:  []byte("new secret"),
		SealedProxy:   nil, // cleared
		Plan:          "",  // cleared
		Options: store.AccountOptions{
			AutoPauseOnWarning: true, UnifiedUserAgent: true, InterceptWarmup: true,
		},
		CooldownUntil: nil,           // must not clear the cooldown
		Quota:         store.Quota{}, // must not clear the quota
		LastUsedAt:    ptr(at(2 * time.Minute)),
		CreatedAt:     at(77 * time.Hour),
		UpdatedAt:     at(3 * time.Hour),
	}
	must(t, s.UpdateAccount(ctx, upd))
	want := upd
	want.CreatedAt = orig.CreatedAt
	want.CooldownUntil, want.CooldownKind, want.CooldownReason = orig.CooldownUntil, orig.CooldownKind, orig.CooldownReason
	want.Quota = orig.Quota
	want.LastUsedAt = orig.LastUsedAt
	got, err := s.GetAccount(ctx, orig.ID)
	must(t, err)
	sameAccount(t, "after UpdateAccount", got, want)

	// And back: proxy, plan and model map set again, while the cooldown
	// and quota in the edit differ from the stored ones the other way.
	upd2 := want
	upd2.SealedProxy = []byte("proxy 2")
	upd2.Plan = "max"
	upd2.Options = store.AccountOptions{Models: map[string]string{"claude-opus-4-1": "claude-opus-4-1-20250805"}}
	upd2.CooldownUntil, upd2.CooldownKind, upd2.CooldownReason = ptr(at(5*time.Hour)), store.CooldownRateLimited, "429"
	upd2.Quota = store.Quota{Window5h: store.Window{Status: store.WindowRejected}}
	upd2.LastUsedAt = nil
	upd2.UpdatedAt = at(4 * time.Hour)
	must(t, s.UpdateAccount(ctx, upd2))
	want2 := upd2
	want2.CooldownUntil, want2.CooldownKind, want2.CooldownReason = want.CooldownUntil, want.CooldownKind, want.CooldownReason
	want2.Quota = want.Quota
	want2.LastUsedAt = want.LastUsedAt
	got, err = s.GetAccount(ctx, orig.ID)
	must(t, err)
	sameAccount(t, "after second UpdateAccount", got, want2)
}

// testUpdateAccountKeepsRelayState is the race UpdateAccount's contract
// exists for: an admin edit built from an account read before the relay
// set a cooldown, recorded a quota and touched the account keeps all
// three, and a cooldown cleared after the read stays cleared.
func testUpdateAccountKeepsRelayState(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := newAccount("stale", at(0))
	must(t, s.CreateAccount(ctx, a))
	stale, err := s.GetAccount(ctx, a.ID)
	must(t, err)

	until := nowMs().Add(time.Hour)
	must(t, s.SetCooldown(ctx, a.ID, store.CooldownRateLimited, until, "429"))
	q := store.Quota{
		Window5h:     store.Window{Start: at(0), End: at(5 * time.Hour), Status: store.WindowWarning},
		FamilyLimits: map[string]time.Time{"opus": until},
	}
	must(t, s.SetAccountQuota(ctx, a.ID, q))
	used := at(5 * time.Minute)
	must(t, s.TouchAccounts(ctx, map[store.AccountID]time.Time{a.ID: used}))

	stale.Name, stale.Priority, stale.UpdatedAt = "edited", 3, at(time.Hour)
	must(t, s.UpdateAccount(ctx, stale))
	got, err := s.GetAccount(ctx, a.ID)
	must(t, err)
	want := stale
	want.CooldownUntil, want.CooldownKind, want.CooldownReason = &until, store.CooldownRateLimited, "429"
	want.Quota = q
	want.LastUsedAt = &used
	sameAccount(t, "after an edit from a stale read", got, want)
	if got.Available(time.Now()) {
		t.Error("an edit from a stale read put a rate-limited account back in service")
	}

	stale = got
	must(t, s.SetCooldown(ctx, a.ID, store.CooldownNone, time.Time{}, ""))
	stale.Name = "edited again"
	must(t, s.UpdateAccount(ctx, stale))
	got, err = s.GetAccount(ctx, a.ID)
	must(t, err)
	if got.CooldownKind != store.CooldownNone || got.CooldownUntil != nil || got.CooldownReason != "" {
		t.Errorf("an edit from a stale read restored a cleared cooldown: %v until %v (%q)",
			got.CooldownKind, got.CooldownUntil, got.CooldownReason)
	}
	if got.Name != "edited again" {
		t.Errorf("Name = %q, want the edit", got.Name)
	}
}

// testAccountPlanOptionsQuota round-trips the plan, the admin's options
// and the quota through CreateAccount, GetAccount and ListAccounts: every
// option on its own (so two switches stored in each other's place fail),
// model maps with and without a target name, quota times in another zone
// and off the second, windows with only some parts reported, and empty
// maps, which read back as equal to none.
func testAccountPlanOptionsQuota(t *testing.T, s store.Store) {
	ctx := t.Context()
	full := newAccount("pq-full", at(0))
	full.Plan = "max"
	full.Options = store.AccountOptions{
		Models: map[string]string{
			"claude-sonnet-4-5": "",
			"claude-opus-4-1":   "claude-opus-4-1-20250805",
			"模型 \"quoted\"":     "x",
		},
		AutoPauseOnWarning: true,
		SerialQueue:        true,
		UnifiedUserAgent:   true,
		InterceptWarmup:    true,
	}
	full.Quota = store.Quota{
		Window5h: store.Window{
			Start:  at(-2*time.Hour + time.Millisecond).In(Zone()),
			End:    at(3*time.Hour - time.Millisecond),
			Status: store.WindowWarning,
		},
		FamilyLimits: map[string]time.Time{
			"opus":   at(90*time.Minute + 250*time.Millisecond).In(Zone()),
			"sonnet": at(-time.Hour),
		},
	}
	accts := []store.Account{full}
	for i, o := range []store.AccountOptions{
		{Models: map[string]string{"only": ""}},
		{AutoPauseOnWarning: true},
		{SerialQueue: true},
		{UnifiedUserAgent: true},
		{InterceptWarmup: true},
	} {
		a := newAccount(fmt.Sprintf("pq-opt%d", i), at(time.Duration(i+1)*time.Second))
		a.Options = o
		accts = append(accts, a)
	}
	statusOnly := newAccount("pq-status", at(time.Minute))
	statusOnly.Plan = "free"
	statusOnly.Quota.Window5h.Status = store.WindowRejected
	endOnly := newAccount("pq-end", at(2*time.Minute))
	endOnly.Plan = "pro"
	endOnly.Quota.Window5h.End = at(time.Hour)
	empty := newAccount("pq-empty", at(3*time.Minute))
	empty.Options.Models = map[string]string{}
	empty.Quota.FamilyLimits = map[string]time.Time{}
	zero := newAccount("pq-zero", at(4*time.Minute))
	accts = append(accts, statusOnly, endOnly, empty, zero)

	for _, a := range accts {
		must(t, s.CreateAccount(ctx, a))
		got, err := s.GetAccount(ctx, a.ID)
		must(t, err)
		sameAccount(t, "GetAccount "+string(a.ID), got, a)
	}
	listed, err := s.ListAccounts(ctx)
	must(t, err)
	if len(listed) != len(accts) {
		t.Fatalf("ListAccounts: %d accounts, want %d", len(listed), len(accts))
	}
	for i, a := range accts {
		sameAccount(t, "listed "+string(a.ID), listed[i], a)
	}
	if until, limited := listed[0].Quota.FamilyLimited("opus", at(time.Hour)); !limited ||
		!until.Equal(full.Quota.FamilyLimits["opus"]) {
		t.Errorf("stored opus limit: FamilyLimited = %v, %v", until, limited)
	}
}

func testSetCooldown(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := newAccount("cd", at(0))
	must(t, s.CreateAccount(ctx, a))
	until := nowMs().Add(time.Hour)
	for _, kind := range []store.CooldownKind{
		store.CooldownTransient, store.CooldownRateLimited,
		store.CooldownCredentialDead, store.CooldownBlocked,
	} {
		must(t, s.SetCooldown(ctx, a.ID, kind, until, "because "+string(kind)))
		got, err := s.GetAccount(ctx, a.ID)
		must(t, err)
		want := a
		want.CooldownKind, want.CooldownUntil, want.CooldownReason = kind, &until, "because "+string(kind)
		sameAccount(t, "after SetCooldown "+string(kind), got, want)
		if st := got.Status(time.Now()); st != string(kind) {
			t.Errorf("Status = %q, want %q", st, kind)
		}
	}
	must(t, s.SetCooldown(ctx, a.ID, store.CooldownNone, time.Time{}, ""))
	got, err := s.GetAccount(ctx, a.ID)
	must(t, err)
	sameAccount(t, "after clearing the cooldown", got, a)
	if !got.Available(time.Now()) {
		t.Error("account not available after its cooldown was cleared")
	}
}

func testTouchAccounts(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b := newAccount("a", at(0)), newAccount("b", at(0))
	must(t, s.CreateAccount(ctx, a))
	must(t, s.CreateAccount(ctx, b))
	must(t, s.TouchAccounts(ctx, nil))
	ta := at(time.Hour + 5*time.Millisecond)
	ghost := store.AccountID("acct-ghost")
	must(t, s.TouchAccounts(ctx, map[store.AccountID]time.Time{a.ID: ta, ghost: ta}))
	got, err := s.GetAccount(ctx, a.ID)
	must(t, err)
	want := a
	want.LastUsedAt = &ta
	sameAccount(t, "touched account", got, want)
	got, err = s.GetAccount(ctx, b.ID)
	must(t, err)
	sameAccount(t, "untouched account", got, b)
	_, err = s.GetAccount(ctx, ghost)
	wantErr(t, "GetAccount of a touched unknown account", err, store.ErrNotFound)
}

func testDeleteAccount(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b := newAccount("a", at(0)), newAccount("b", at(time.Second))
	must(t, s.CreateAccount(ctx, a))
	must(t, s.CreateAccount(ctx, b))
	must(t, s.DeleteAccount(ctx, a.ID))
	_, err := s.GetAccount(ctx, a.ID)
	wantErr(t, "GetAccount after delete", err, store.ErrNotFound)
	accts, err := s.ListAccounts(ctx)
	must(t, err)
	if len(accts) != 1 || accts[0].ID != b.ID {
		t.Errorf("ListAccounts after delete = %v, want only %s", accts, b.ID)
	}
	wantErr(t, "second DeleteAccount", s.DeleteAccount(ctx, a.ID), store.ErrNotFound)
	must(t, s.CreateAccount(ctx, a)) // the ID is free again
}
