package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// testSetAccountQuota sets a quota, replaces it with one that shares no
// family, and clears it. Each write must replace the whole quota (a family
// limit that is no longer reported is gone), leave every other field of
// the account alone (UpdatedAt included: a report is not an edit), leave
// other accounts alone, and change ChangeVersion.
func testSetAccountQuota(t *testing.T, s store.Store) {
	ctx := t.Context()
	orig := newAccount("q", at(0))
	orig.SealedProxy = []byte("proxy")
	orig.BaseURL = "https://api.example.test"
	orig.Plan = "max"
	orig.Options = store.AccountOptions{Models: map[string]string{"claude-opus-4-1": ""}, InterceptWarmup: true}
	orig.CooldownUntil = ptr(at(time.Hour))
	orig.CooldownKind = store.CooldownTransient
	orig.CooldownReason = "529"
	orig.LastUsedAt = ptr(at(time.Minute))
	orig.UpdatedAt = at(time.Second)
	other := newAccount("q-other", at(time.Second))
	other.Quota = store.Quota{Window5h: store.Window{Start: at(0), End: at(5 * time.Hour), Status: store.WindowAllowed}}
	must(t, s.CreateAccount(ctx, orig))
	must(t, s.CreateAccount(ctx, other))

	quotas := []store.Quota{
		{
			Window5h: store.Window{
				Start:  at(-time.Hour).In(Zone()),
				End:    at(4*time.Hour + 7*time.Millisecond),
				Status: store.WindowAllowed,
			},
			FamilyLimits: map[string]time.Time{
				"opus":  at(30*time.Minute + time.Millisecond),
				"haiku": at(time.Hour).In(Zone()),
			},
		},
		{
			Window5h:     store.Window{Start: at(time.Hour), End: at(6 * time.Hour), Status: store.WindowWarning},
			FamilyLimits: map[string]time.Time{"sonnet": at(2 * time.Hour)},
		},
		{}, // cleared
	}
	for i, q := range quotas {
		v0, err := s.ChangeVersion(ctx)
		must(t, err)
		must(t, s.SetAccountQuota(ctx, orig.ID, q))
		v1, err := s.ChangeVersion(ctx)
		must(t, err)
		if v1 == v0 {
			t.Errorf("quota %d: ChangeVersion stayed %d", i, v0)
		}
		got, err := s.GetAccount(ctx, orig.ID)
		must(t, err)
		want := orig
		want.Quota = q
		sameAccount(t, fmt.Sprintf("after SetAccountQuota %d", i), got, want)
	}
	got, err := s.GetAccount(ctx, other.ID)
	must(t, err)
	sameAccount(t, "another account", got, other)
}

// testSetAccountQuotaNotFound checks that a quota reported for an account
// deleted meanwhile is refused, and does not bring the account back.
func testSetAccountQuotaNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	gone := newAccount("q-gone", at(0))
	must(t, s.CreateAccount(ctx, gone))
	must(t, s.DeleteAccount(ctx, gone.ID))
	q := store.Quota{Window5h: store.Window{Start: at(0), End: at(5 * time.Hour), Status: store.WindowRejected}}
	for _, id := range []store.AccountID{gone.ID, "acct-never"} {
		wantErr(t, "SetAccountQuota of "+string(id), s.SetAccountQuota(ctx, id, q), store.ErrNotFound)
		_, err := s.GetAccount(ctx, id)
		wantErr(t, "GetAccount after SetAccountQuota of "+string(id), err, store.ErrNotFound)
	}
	accts, err := s.ListAccounts(ctx)
	must(t, err)
	if len(accts) != 0 {
		t.Errorf("ListAccounts after SetAccountQuota of missing accounts = %v", accts)
	}
}
