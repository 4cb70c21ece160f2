// Package storetest is the conformance suite every store.Store backend
// must pass. It tests the contract written in internal/store (the doc
// comments of store.Store and its parts), not any backend's internals, so
// the embedded and the shared backend behave alike to everything above
// them.
//
// A backend's test calls Run with a function that opens a new, empty store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "crs.db"),
//				sqlite.Options{Location: storetest.Zone()})
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// Zone returns the time zone the stores under test must use for daily
// rollups. It is a fixed UTC+05:45 zone: not UTC, and its midnights fall
// off the hour, so a backend that derives days from UTC or from hourly
// buckets fails.
func Zone() *time.Location {
	return time.FixedZone("UTC+05:45", 5*3600+45*60)
}

// Run runs the whole suite. open must return a new, empty store for each
// call, whose daily rollups use Zone() and whose clock is the real one, and
// arrange (with t.Cleanup) to close it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Basics", testBasics},
		{"KeyRoundTrip", testKeyRoundTrip},
		{"KeyConflict", testKeyConflict},
		{"KeyNotFound", testKeyNotFound},
		{"ListKeys", testListKeys},
		{"UpdateKey", testUpdateKey},
		{"KeyClients", testKeyClients},
		{"PurgeKey", testPurgeKey},
		{"KeyPolicyRoundTrip", testKeyPolicyRoundTrip},
		{"UpdateKeyPolicy", testUpdateKeyPolicy},
		{"ActivateKey", testActivateKey},
		{"ActivateKeyRace", testActivateKeyRace},
		{"TouchKeys", testTouchKeys},
		{"AccountRoundTrip", testAccountRoundTrip},
		{"AccountConflict", testAccountConflict},
		{"AccountNotFound", testAccountNotFound},
		{"ListAccounts", testListAccounts},
		{"UpdateAccount", testUpdateAccount},
		{"UpdateAccountKeepsRelayState", testUpdateAccountKeepsRelayState},
		{"AccountPlanOptionsQuota", testAccountPlanOptionsQuota},
		{"SetAccountQuota", testSetAccountQuota},
		{"SetAccountQuotaNotFound", testSetAccountQuotaNotFound},
		{"SetCooldown", testSetCooldown},
		{"TouchAccounts", testTouchAccounts},
		{"DeleteAccount", testDeleteAccount},
		{"GroupRoundTrip", testGroupRoundTrip},
		{"GroupConflict", testGroupConflict},
		{"GroupNotFound", testGroupNotFound},
		{"ListGroups", testListGroups},
		{"GroupMembers", testGroupMembers},
		{"DeleteGroup", testDeleteGroup},
		{"DeleteAccountLeavesGroups", testDeleteAccountLeavesGroups},
		{"ChangeVersion", testChangeVersion},
		{"UsageRoundTrip", testUsageRoundTrip},
		{"UsageIdempotent", testUsageIdempotent},
		{"ListUsage", testListUsage},
		{"SummarizeUsage", testSummarizeUsage},
		{"RollupsEqualRecords", testRollupsEqualRecords},
		{"RollupDayBoundary", testRollupDayBoundary},
		{"RollupRange", testRollupRange},
		{"RatedCost", testRatedCost},
		{"UsagePages", testUsagePages},
		{"UsageCursorAnywhere", testUsageCursorAnywhere},
		{"SummarizeUsageFilters", testSummarizeUsageFilters},
		{"ModelTotals", testModelTotals},
		{"Trend", testTrend},
		{"PurgeUsage", testPurgeUsage},
		{"Sticky", testSticky},
		{"StickyTTL", testStickyTTL},
		{"StickyRenewOnGet", testStickyRenewOnGet},
		{"Admin", testAdmin},
		{"Sessions", testSessions},
		{"SessionExpiry", testSessionExpiry},
		{"SetAccountSecret", testSetAccountSecret},
		{"OAuthPending", testOAuthPending},
		{"OAuthPendingSingleUse", testOAuthPendingSingleUse},
		{"OAuthPendingExpiry", testOAuthPendingExpiry},
		{"OAuthPendingConflict", testOAuthPendingConflict},
		{"Locks", testLocks},
		{"LockExpiry", testLockExpiry},
		{"LockRace", testLockRace},
		{"RenewLock", testRenewLock},
		{"Settings", testSettings},
		{"Concurrent", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

// base is the suite's reference instant. Every time the suite stores has
// whole milliseconds, the precision the contract can rely on.
var base = time.Date(2025, time.March, 10, 9, 15, 0, 0, time.UTC)

// at returns base plus d.
func at(d time.Duration) time.Time { return base.Add(d) }

// ptr returns a pointer to t.
func ptr(t time.Time) *time.Time { return &t }

// nowMs is the real clock truncated to milliseconds.
func nowMs() time.Time { return time.Now().Truncate(time.Millisecond) }

func testBasics(t *testing.T, s store.Store) {
	ctx := t.Context()
	if s.Backend() == "" {
		t.Error("Backend() is empty")
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Ping(cancelled); err == nil {
		t.Error("Ping with a cancelled context succeeded")
	}
	if _, err := s.ChangeVersion(ctx); err != nil {
		t.Errorf("ChangeVersion: %v", err)
	}
}

// must fails the test at once on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantErr fails the test unless errors.Is(err, target).
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error %v, want %v", what, err, target)
	}
}

// utc copies an optional time into UTC, so values equal as instants
// compare equal with reflect.DeepEqual.
func utc(p *time.Time) *time.Time {
	if p == nil {
		return nil
	}
	u := p.UTC()
	return &u
}

// normKey puts a key in a canonical form for comparison: UTC times, and
// empty lists and maps (the policy's too) as nil. The contract treats an
// empty list and nil alike (both mean "none", and "every client" or
// "every pool" or "every model" where the field says so).
func normKey(k store.Key) store.Key {
	k.CreatedAt = k.CreatedAt.UTC()
	k.LastUsedAt = utc(k.LastUsedAt)
	k.ExpiresAt = utc(k.ExpiresAt)
	k.DeletedAt = utc(k.DeletedAt)
	k.ActivatedAt = utc(k.ActivatedAt)
	if len(k.Tags) == 0 {
		k.Tags = nil
	}
	if len(k.Clients) == 0 {
		k.Clients = nil
	}
	p := &k.Policy
	if len(p.Permissions) == 0 {
		p.Permissions = nil
	}
	if len(p.ModelsAllow) == 0 {
		p.ModelsAllow = nil
	}
	if len(p.ModelsDeny) == 0 {
		p.ModelsDeny = nil
	}
	if len(p.ServiceRates) == 0 {
		p.ServiceRates = nil
	}
	return k
}

// normAccount puts an account in a canonical form for comparison: UTC
// times (the quota's too), and empty maps as nil, since an empty model map
// and no map both mean "every model", and empty family limits and none
// both mean "no family limited". It copies the maps it changes, so the
// caller's account is left as it was.
func normAccount(a store.Account) store.Account {
	a.CreatedAt = a.CreatedAt.UTC()
	a.UpdatedAt = a.UpdatedAt.UTC()
	a.LastUsedAt = utc(a.LastUsedAt)
	a.CooldownUntil = utc(a.CooldownUntil)
	if len(a.SealedSecret) == 0 {
		a.SealedSecret = nil
	}
	if len(a.SealedProxy) == 0 {
		a.SealedProxy = nil
	}
	if len(a.Options.Models) == 0 {
		a.Options.Models = nil
	}
	a.Quota.Window5h.Start = a.Quota.Window5h.Start.UTC()
	a.Quota.Window5h.End = a.Quota.Window5h.End.UTC()
	if len(a.Quota.FamilyLimits) == 0 {
		a.Quota.FamilyLimits = nil
	} else {
		limits := make(map[string]time.Time, len(a.Quota.FamilyLimits))
		for family, until := range a.Quota.FamilyLimits {
			limits[family] = until.UTC()
		}
		a.Quota.FamilyLimits = limits
	}
	return a
}

// normRecord puts a usage record in a canonical form for comparison.
func normRecord(r store.UsageRecord) store.UsageRecord {
	r.CreatedAt = r.CreatedAt.UTC()
	return r
}

func sameKey(t *testing.T, what string, got, want store.Key) {
	t.Helper()
	if g, w := normKey(got), normKey(want); !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

func sameAccount(t *testing.T, what string, got, want store.Account) {
	t.Helper()
	if g, w := normAccount(got), normAccount(want); !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

// waitUntil polls cond every 5ms until it holds or 3s pass, for effects
// of the real clock (TTLs) that a backend may apply a little late.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
