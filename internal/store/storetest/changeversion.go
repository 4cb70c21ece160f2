package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// testChangeVersion walks through every write the store offers, in order,
// and checks which ones change the version: changes callers cache do;
// usage, touches, sticky bindings, sessions, OAuth pending sessions and
// leases, which callers do not cache, must not flush those caches, and
// neither must writes that change nothing (activating a key already
// active, adding a member twice, removing a non-member): the relay makes
// those on the request path, from every instance.
func testChangeVersion(t *testing.T, s store.Store) {
	k := newKey("cv", at(0))
	a := newAccount("cv", at(0))
	g := newGroup("cv", at(0))
	rec := store.UsageRecord{RequestID: "req-cv", KeyID: k.ID, AccountID: a.ID, Model: "m", Input: 1, CreatedAt: at(0)}
	steps := []struct {
		name    string
		changes bool
		op      func(ctx context.Context) error
	}{
		{"CreateKey", true, func(ctx context.Context) error { return s.CreateKey(ctx, k) }},
		{"CreateAccount", true, func(ctx context.Context) error { return s.CreateAccount(ctx, a) }},
		{"TouchKeys", false, func(ctx context.Context) error {
			return s.TouchKeys(ctx, map[store.KeyID]time.Time{k.ID: at(time.Minute)})
		}},
		{"TouchAccounts", false, func(ctx context.Context) error {
			return s.TouchAccounts(ctx, map[store.AccountID]time.Time{a.ID: at(time.Minute)})
		}},
		{"InsertUsage", false, func(ctx context.Context) error {
			_, err := s.InsertUsage(ctx, []store.UsageRecord{rec})
			return err
		}},
		{"SetSticky", false, func(ctx context.Context) error { return s.SetSticky(ctx, "sess", a.ID, time.Hour) }},
		{"DeleteSticky", false, func(ctx context.Context) error { return s.DeleteSticky(ctx, "sess") }},
		{"ReadsOnly", false, func(ctx context.Context) error {
			_, err1 := s.GetKey(ctx, k.ID)
			_, err2 := s.ListAccounts(ctx)
			_, err3 := s.SummarizeUsage(ctx, store.UsageFilter{})
			_, err4 := s.Rollups(ctx, store.Hourly, time.Time{}, at(time.Hour))
			for _, err := range []error{err1, err2, err3, err4} {
				if err != nil {
					return err
				}
			}
			return nil
		}},
		{"UpdateKey", true, func(ctx context.Context) error {
			k.Name = "renamed"
			return s.UpdateKey(ctx, k)
		}},
		{"UpdateKey clients", true, func(ctx context.Context) error {
			k.Clients = []string{"claude_code"}
			return s.UpdateKey(ctx, k)
		}},
		{"UpdateKey policy", true, func(ctx context.Context) error {
			k.Policy.Concurrency = 2
			return s.UpdateKey(ctx, k)
		}},
		{"ActivateKey", true, func(ctx context.Context) error {
			_, err := s.ActivateKey(ctx, k.ID, at(time.Minute))
			return err
		}},
		{"ActivateKey again", false, func(ctx context.Context) error {
			_, err := s.ActivateKey(ctx, k.ID, at(time.Hour))
			return err
		}},
		{"UpdateKey soft delete", true, func(ctx context.Context) error {
			k.DeletedAt = ptr(at(time.Hour))
			return s.UpdateKey(ctx, k)
		}},
		{"UpdateAccount", true, func(ctx context.Context) error {
			a.Priority = 7
			return s.UpdateAccount(ctx, a)
		}},
		{"UpdateAccount plan", true, func(ctx context.Context) error {
			a.Plan = "max"
			return s.UpdateAccount(ctx, a)
		}},
		{"UpdateAccount options", true, func(ctx context.Context) error {
			a.Options.SerialQueue = true
			return s.UpdateAccount(ctx, a)
		}},
		{"SetCooldown", true, func(ctx context.Context) error {
			return s.SetCooldown(ctx, a.ID, store.CooldownTransient, at(time.Hour), "529")
		}},
		{"SetCooldown clear", true, func(ctx context.Context) error {
			return s.SetCooldown(ctx, a.ID, store.CooldownNone, time.Time{}, "")
		}},
		{"SetAccountSecret", true, func(ctx context.Context) error {
			return s.SetAccountSecret(ctx, a.ID, []byte("rotated"))
		}},
		{"SetAccountQuota", true, func(ctx context.Context) error {
			return s.SetAccountQuota(ctx, a.ID, store.Quota{FamilyLimits: map[string]time.Time{"opus": at(time.Hour)}})
		}},
		{"SetAccountQuota clear", true, func(ctx context.Context) error {
			return s.SetAccountQuota(ctx, a.ID, store.Quota{})
		}},
		{"CreateGroup", true, func(ctx context.Context) error { return s.CreateGroup(ctx, g) }},
		{"GroupReads", false, func(ctx context.Context) error {
			_, err1 := s.GetGroup(ctx, g.ID)
			_, err2 := s.ListGroups(ctx)
			if err1 != nil {
				return err1
			}
			return err2
		}},
		{"AddGroupMember", true, func(ctx context.Context) error { return s.AddGroupMember(ctx, g.ID, a.ID) }},
		{"AddGroupMember again", false, func(ctx context.Context) error { return s.AddGroupMember(ctx, g.ID, a.ID) }},
		{"RemoveGroupMember", true, func(ctx context.Context) error { return s.RemoveGroupMember(ctx, g.ID, a.ID) }},
		{"RemoveGroupMember again", false, func(ctx context.Context) error {
			return s.RemoveGroupMember(ctx, g.ID, a.ID)
		}},
		{"AddGroupMember back", true, func(ctx context.Context) error { return s.AddGroupMember(ctx, g.ID, a.ID) }},
		{"DeleteGroup", true, func(ctx context.Context) error { return s.DeleteGroup(ctx, g.ID) }},
		{"CreateGroup with a member", true, func(ctx context.Context) error {
			g.Members = []store.AccountID{a.ID}
			return s.CreateGroup(ctx, g)
		}},
		{"OAuth pending", false, func(ctx context.Context) error {
			now := time.Now()
			p := store.OAuthPending{ID: "cv", Platform: store.PlatformClaude, Kind: "oauth",
				CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
			if err := s.CreateOAuthPending(ctx, p); err != nil {
				return err
			}
			_, err := s.TakeOAuthPending(ctx, p.ID)
			return err
		}},
		{"Locks", false, func(ctx context.Context) error {
			tok, _, err := s.TryLock(ctx, "cv", time.Minute)
			if err != nil {
				return err
			}
			return s.Unlock(ctx, "cv", tok)
		}},
		{"SetAdmin", true, func(ctx context.Context) error {
			return s.SetAdmin(ctx, store.Admin{Username: "admin", PasswordHash: "h", UpdatedAt: at(0)})
		}},
		{"SetAdmin again", true, func(ctx context.Context) error {
			return s.SetAdmin(ctx, store.Admin{Username: "admin", PasswordHash: "h2", UpdatedAt: at(time.Second)})
		}},
		{"PurgeKey", true, func(ctx context.Context) error { return s.PurgeKey(ctx, k.ID) }},
		{"DeleteAccount", true, func(ctx context.Context) error { return s.DeleteAccount(ctx, a.ID) }},
	}
	ctx := t.Context()
	prev, err := s.ChangeVersion(ctx)
	must(t, err)
	for _, st := range steps {
		must(t, st.op(ctx))
		v, err := s.ChangeVersion(ctx)
		must(t, err)
		if changed := v != prev; changed != st.changes {
			t.Errorf("%s: version %d → %d, changed %v, want %v", st.name, prev, v, changed, st.changes)
		}
		prev = v
	}
}
