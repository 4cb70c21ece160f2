package sqlite

import (
	"database/sql"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// TestMigrateFromVersion2 opens a file that a binary with migrations 1 and
// 2 wrote, with a key and an account in it, and checks that migration 3
// gives them the defaults of the new fields, keeps the change version, and
// that the new columns then work and bump the version.
func TestMigrateFromVersion2(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "crs.db")
	old, err := sql.Open("sqlite", dsn(path, false))
	must(t, err)
	for _, m := range migrations[:2] {
		_, err = old.ExecContext(ctx, m)
		must(t, err)
	}
	_, err = old.ExecContext(ctx, "PRAGMA user_version = 2")
	must(t, err)
	_, err = old.ExecContext(ctx, `INSERT INTO keys (id, name, hash, hint, tags, created_at)
		VALUES ('k', 'old key', 'h', 'abcd', '["t"]', 1)`)
	must(t, err)
	_, err = old.ExecContext(ctx, `INSERT INTO accounts (id, name, platform, type, priority, sealed_secret, created_at, updated_at)
		VALUES ('a', 'old', 'claude', 'oauth', 5, x'0001', 1, 2)`)
	must(t, err)
	var v1 int64
	must(t, old.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = 'change_version'`).Scan(&v1))
	must(t, old.Close())

	s := openAt(t, path, Options{})
	var v int
	must(t, s.read.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v))
	if v != len(migrations) || v < 3 {
		t.Errorf("user_version after migrating = %d, want %d", v, len(migrations))
	}
	if cv, err := s.ChangeVersion(ctx); err != nil || int64(cv) != v1 {
		t.Errorf("ChangeVersion after migrating = %d, %v; want %d", cv, err, v1)
	}
	k, err := s.GetKey(ctx, "k")
	if err != nil || k.Name != "old key" || k.Clients != nil || len(k.Tags) != 1 {
		t.Errorf("key after migrating: %+v, %v", k, err)
	}
	a, err := s.GetAccount(ctx, "a")
	if err != nil || a.Name != "old" || a.Plan != "" ||
		!reflect.DeepEqual(a.Options, store.AccountOptions{}) ||
		a.Quota.Window5h != (store.Window{}) || a.Quota.FamilyLimits != nil {
		t.Errorf("account after migrating: %+v, %v", a, err)
	}

	k.Clients = []string{"claude_code"}
	must(t, s.UpdateKey(ctx, k))
	q := store.Quota{FamilyLimits: map[string]time.Time{"opus": time.UnixMilli(5000).UTC()}}
	must(t, s.SetAccountQuota(ctx, "a", q))
	if cv, err := s.ChangeVersion(ctx); err != nil || int64(cv) != v1+2 {
		t.Errorf("ChangeVersion after two writes = %d, %v; want %d", cv, err, v1+2)
	}
	if k, err := s.GetKey(ctx, "k"); err != nil || len(k.Clients) != 1 || k.Clients[0] != "claude_code" {
		t.Errorf("key clients on a migrated file: %+v, %v", k, err)
	}
	if a, err := s.GetAccount(ctx, "a"); err != nil || !a.Quota.FamilyLimits["opus"].Equal(q.FamilyLimits["opus"]) {
		t.Errorf("account quota on a migrated file: %+v, %v", a, err)
	}
}

// TestTriggersCoverColumns writes every column of keys, accounts, groups
// and group memberships on its own, the way a future single-column setter
// (or the sqlite3 shell) would, and checks which writes bump
// change_version. Every column must, except last_used_at, which touches
// write on every request; and quota, which bumps only when its value
// changes. A column added later without a place in its table's trigger
// fails here.
func TestTriggersCoverColumns(t *testing.T) {
	ctx := t.Context()
	s := openAt(t, filepath.Join(t.TempDir(), "crs.db"), Options{})
	must(t, s.CreateKey(ctx, store.Key{ID: "k", Name: "n", Hash: "h", Hint: "abcd", CreatedAt: time.UnixMilli(1)}))
	must(t, s.CreateAccount(ctx, store.Account{ID: "a", Name: "n", Platform: store.PlatformClaude,
		Type: store.TypeOAuth, Priority: 1, CreatedAt: time.UnixMilli(1), UpdatedAt: time.UnixMilli(1)}))
	must(t, s.CreateGroup(ctx, store.Group{ID: "g", Name: "n", Platform: store.PlatformClaude,
		Members: []store.AccountID{"a"}, CreatedAt: time.UnixMilli(1)}))
	quiet := map[string]bool{"last_used_at": true, "quota": true}

	for _, table := range []string{"keys", "accounts", "groups", "group_members"} {
		rows, err := s.read.QueryContext(ctx, `SELECT name FROM pragma_table_info(?)`, table)
		must(t, err)
		var cols []string
		for rows.Next() {
			var c string
			must(t, rows.Scan(&c))
			cols = append(cols, c)
		}
		must(t, rows.Err())
		rows.Close()
		if len(cols) < 3 {
			t.Fatalf("%s has columns %v", table, cols)
		}
		for _, col := range cols {
			v0, err := s.ChangeVersion(ctx)
			must(t, err)
			// Column names come from our own schema, not from input.
			res, err := s.write.ExecContext(ctx, `UPDATE `+table+` SET `+col+` = `+col)
			must(t, err)
			if n, err := res.RowsAffected(); err != nil || n != 1 {
				t.Fatalf("UPDATE %s.%s: %d rows, %v", table, col, n, err)
			}
			v1, err := s.ChangeVersion(ctx)
			must(t, err)
			if bumped := v1 != v0; bumped == quiet[col] {
				t.Errorf("rewriting %s.%s: version %d → %d, want a bump %v", table, col, v0, v1, !quiet[col])
			}
		}
	}

	// The quota bumps once its value changes.
	v0, err := s.ChangeVersion(ctx)
	must(t, err)
	_, err = s.write.ExecContext(ctx, `UPDATE accounts SET quota = '{"window_5h":{"status":"rejected"}}'`)
	must(t, err)
	if v1, err := s.ChangeVersion(ctx); err != nil || v1 == v0 {
		t.Errorf("changing accounts.quota: version %d → %d, %v", v0, v1, err)
	}
}

// TestSetAccountQuotaUnchanged checks that a quota report equal to the
// stored one leaves the change version alone, whatever zone its times are
// in and in whatever order its map was built, while a different one still
// bumps it. The relay reports quotas as responses arrive; most repeat the
// last one, and must not flush every instance's caches.
func TestSetAccountQuotaUnchanged(t *testing.T) {
	ctx := t.Context()
	s := openAt(t, filepath.Join(t.TempDir(), "crs.db"), Options{})
	must(t, s.CreateAccount(ctx, store.Account{ID: "a", Name: "n", Priority: 1}))
	base := time.Date(2025, time.March, 10, 9, 15, 0, 123e6, time.UTC)
	zone := time.FixedZone("UTC-03:30", -(3*3600 + 30*60))
	q := store.Quota{
		Window5h: store.Window{Start: base, End: base.Add(5 * time.Hour), Status: store.WindowWarning},
		FamilyLimits: map[string]time.Time{
			"opus": base.Add(time.Hour), "sonnet": base.Add(2 * time.Hour), "haiku": base.Add(3 * time.Hour),
		},
	}
	same := store.Quota{
		Window5h: store.Window{
			Start: base.In(zone), End: base.Add(5*time.Hour + 400*time.Microsecond).In(zone), Status: store.WindowWarning,
		},
		FamilyLimits: map[string]time.Time{},
	}
	for _, f := range []string{"haiku", "sonnet", "opus"} {
		same.FamilyLimits[f] = q.FamilyLimits[f].In(zone)
	}
	different := q
	different.Window5h.Status = store.WindowRejected

	must(t, s.SetAccountQuota(ctx, "a", q))
	v0, err := s.ChangeVersion(ctx)
	must(t, err)
	for range 3 {
		must(t, s.SetAccountQuota(ctx, "a", same))
	}
	if v1, err := s.ChangeVersion(ctx); err != nil || v1 != v0 {
		t.Errorf("rewriting an equal quota: version %d → %d, %v", v0, v1, err)
	}
	must(t, s.SetAccountQuota(ctx, "a", different))
	if v1, err := s.ChangeVersion(ctx); err != nil || v1 == v0 {
		t.Errorf("writing a different quota: version %d → %d, %v", v0, v1, err)
	}
}

// TestMigrateFromVersion3 opens a file that a binary with migrations 1 to 3
// wrote, with a key, an account and usage in it, and checks that migration
// 4 gives them the defaults of the new fields (no policy, not activated, no
// rated cost), keeps the change version, and that the new columns and
// tables then work: rated cost adds onto rollups that predate it.
func TestMigrateFromVersion3(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "crs.db")
	old, err := sql.Open("sqlite", dsn(path, false))
	must(t, err)
	for _, m := range migrations[:3] {
		_, err = old.ExecContext(ctx, m)
		must(t, err)
	}
	_, err = old.ExecContext(ctx, "PRAGMA user_version = 3")
	must(t, err)
	_, err = old.ExecContext(ctx, `INSERT INTO keys (id, name, hash, hint, created_at, clients)
		VALUES ('k', 'old key', 'h', 'abcd', 1, '["claude_code"]')`)
	must(t, err)
	_, err = old.ExecContext(ctx, `INSERT INTO accounts (id, name, platform, type, priority, created_at, updated_at)
		VALUES ('a', 'old', 'claude', 'oauth', 5, 1, 2)`)
	must(t, err)
	// One record and its hourly rollup, as a version-3 binary wrote them.
	_, err = old.ExecContext(ctx, `INSERT INTO usage_records (request_id, attempt, key_id, account_id, model,
			input, output, cache_write_5m, cache_write_1h, cache_read, cost_pico,
			stream, status, latency_ms, first_byte_ms, client_aborted, created_at)
		VALUES ('r-old', 0, 'k', 'a', 'm', 1, 0, 0, 0, 0, 40, 0, 200, 0, 0, 0, 0)`)
	must(t, err)
	_, err = old.ExecContext(ctx, `INSERT INTO usage_rollups (granularity, period, label, key_id, account_id, model,
			requests, input, output, cache_write_5m, cache_write_1h, cache_read, cost_pico)
		VALUES ('hour', 0, '1970-01-01T00Z', 'k', 'a', 'm', 1, 1, 0, 0, 0, 0, 40)`)
	must(t, err)
	var v3 int64
	must(t, old.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = 'change_version'`).Scan(&v3))
	must(t, old.Close())

	s := openAt(t, path, Options{Location: time.UTC})
	if cv, err := s.ChangeVersion(ctx); err != nil || int64(cv) != v3 {
		t.Errorf("ChangeVersion after migrating = %d, %v; want %d", cv, err, v3)
	}
	k, err := s.GetKey(ctx, "k")
	if err != nil || k.Name != "old key" || len(k.Clients) != 1 ||
		!reflect.DeepEqual(k.Policy, store.KeyPolicy{}) || k.ActivatedAt != nil {
		t.Errorf("key after migrating: %+v, %v", k, err)
	}
	recs, err := s.ListUsage(ctx, store.UsageFilter{}, 0)
	if err != nil || len(recs) != 1 || recs[0].CostPico != 40 || recs[0].RatedCostPico != 0 {
		t.Errorf("usage after migrating: %+v, %v", recs, err)
	}

	// The new columns and tables work on the migrated file.
	k.Policy = store.KeyPolicy{DailyCost: 5}
	must(t, s.UpdateKey(ctx, k))
	if _, err := s.ActivateKey(ctx, "k", time.UnixMilli(7)); err != nil {
		t.Errorf("ActivateKey on a migrated file: %v", err)
	}
	must(t, s.CreateGroup(ctx, store.Group{ID: "g", Name: "g", Platform: store.PlatformClaude,
		Members: []store.AccountID{"a"}}))
	// The group and its member are two changes.
	if cv, err := s.ChangeVersion(ctx); err != nil || int64(cv) != v3+4 {
		t.Errorf("ChangeVersion after four changes = %d, %v; want %d", cv, err, v3+4)
	}
	k, err = s.GetKey(ctx, "k")
	if err != nil || k.Policy.DailyCost != 5 || k.ActivatedAt == nil || !k.ActivatedAt.Equal(time.UnixMilli(7)) {
		t.Errorf("key policy and activation on a migrated file: %+v, %v", k, err)
	}
	_, err = s.InsertUsage(ctx, []store.UsageRecord{{RequestID: "r-new", KeyID: "k", AccountID: "a", Model: "m",
		Input: 2, CostPico: 10, RatedCostPico: 25, CreatedAt: time.UnixMilli(5)}})
	must(t, err)
	rolls, err := s.Rollups(ctx, store.Hourly, time.UnixMilli(0), time.UnixMilli(3_600_000))
	if err != nil || len(rolls) != 1 || rolls[0].Requests != 2 || rolls[0].CostPico != 50 || rolls[0].RatedPico != 25 {
		t.Errorf("rollup of old and new usage: %+v, %v", rolls, err)
	}
	if a, err := s.GetAccount(ctx, "a"); err != nil || a.Name != "old" {
		t.Errorf("account after migrating: %+v, %v", a, err)
	}
	must(t, s.DeleteAccount(ctx, "a"))
	if g, err := s.GetGroup(ctx, "g"); err != nil || len(g.Members) != 0 {
		t.Errorf("group after deleting its account on a migrated file: %+v, %v", g, err)
	}
}

// TestMigrateFromVersion6 opens a file whose usage a version-6 binary
// wrote (rollups with keys only) and checks that migration 7 sums them
// into usage_account_rollups: the totals and trends read from those equal
// the ones read with keys, also for records PurgeUsage removed before.
func TestMigrateFromVersion6(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "crs.db")
	s := openAt(t, path, Options{Location: time.UTC})
	base := time.Date(2025, time.May, 1, 22, 10, 0, 0, time.UTC)
	var recs []store.UsageRecord
	for i := range 300 {
		recs = append(recs, store.UsageRecord{RequestID: "r" + strconv.Itoa(i),
			KeyID: store.KeyID("k" + strconv.Itoa(i%7)), AccountID: store.AccountID("a" + strconv.Itoa(i%3)),
			Model: "m" + strconv.Itoa(i%2), Input: int64(i), CostPico: int64(i) * 1e9, RatedCostPico: int64(i),
			Status: 200, CreatedAt: base.Add(time.Duration(i) * 7 * time.Minute)})
	}
	_, err := s.InsertUsage(ctx, recs)
	must(t, err)
	_, err = s.PurgeUsage(ctx, base.Add(5*time.Hour))
	must(t, err)
	// Back to what a version-6 binary leaves: no coarser rollups.
	_, err = s.write.ExecContext(ctx, "DROP TABLE usage_account_rollups; DROP TABLE usage_key_rollups; PRAGMA user_version = 6")
	must(t, err)
	must(t, s.Close())

	s = openAt(t, path, Options{Location: time.UTC})
	var v int
	must(t, s.read.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v))
	if v != len(migrations) {
		t.Fatalf("user_version after migrating = %d, want %d", v, len(migrations))
	}
	var all store.Counters
	for _, r := range recs {
		all.Add(r)
	}
	for _, f := range []store.UsageFilter{{}, {AccountID: "a1"}, {Model: "m0"}, {AccountID: "a2", Model: "m1"}} {
		sum, err := s.SummarizeUsage(ctx, f)
		must(t, err)
		models, err := s.ModelTotals(ctx, f)
		must(t, err)
		if !reflect.DeepEqual(models, sum.Models) || len(models) == 0 {
			t.Errorf("ModelTotals(%+v) after migrating = %+v, want %+v", f, models, sum.Models)
		}
		for _, g := range []store.Granularity{store.Hourly, store.Daily} {
			trend, err := s.Trend(ctx, g, f)
			must(t, err)
			var fromTrend, fromModels store.Counters
			for _, r := range trend {
				fromTrend.Merge(r.Counters)
			}
			for _, m := range models {
				fromModels.Merge(m.Counters)
			}
			if fromTrend != fromModels {
				t.Errorf("Trend(%s, %+v) after migrating totals %+v, want %+v", g, f, fromTrend, fromModels)
			}
			if f == (store.UsageFilter{}) && fromTrend != all {
				t.Errorf("Trend(%s) of everything after migrating = %+v, want %+v", g, fromTrend, all)
			}
		}
	}
	// Every key's spend comes from usage_key_rollups.
	perKey := map[store.KeyID]store.Counters{}
	for _, r := range recs {
		c := perKey[r.KeyID]
		c.Add(r)
		perKey[r.KeyID] = c
	}
	sum, err := s.SummarizeUsage(ctx, store.UsageFilter{})
	must(t, err)
	got := map[store.KeyID]store.Counters{}
	for _, k := range sum.Keys {
		got[k.KeyID] = k.Counters
	}
	if !reflect.DeepEqual(got, perKey) {
		t.Errorf("spend per key after migrating:\n got %+v\nwant %+v", got, perKey)
	}
	// New records add onto the migrated rows.
	_, err = s.InsertUsage(ctx, []store.UsageRecord{{RequestID: "new", KeyID: "k0", AccountID: "a0", Model: "m0",
		Input: 1, CreatedAt: base}})
	must(t, err)
	trend, err := s.Trend(ctx, store.Daily, store.UsageFilter{})
	must(t, err)
	var n int64
	for _, r := range trend {
		n += r.Requests
	}
	if n != int64(len(recs))+1 {
		t.Errorf("requests after one more record = %d, want %d", n, len(recs)+1)
	}
}
