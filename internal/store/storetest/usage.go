package storetest

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// genRecords returns n records with distinct request ids prefix-0 …
// prefix-(n-1), spread over three days and a few keys, accounts and
// models, from a seeded generator so failures reproduce.
func genRecords(rng *rand.Rand, prefix string, n int) []store.UsageRecord {
	recs := make([]store.UsageRecord, n)
	for i := range recs {
		recs[i] = store.UsageRecord{
			RequestID:     fmt.Sprintf("%s-%d", prefix, i),
			Attempt:       rng.IntN(3),
			KeyID:         store.KeyID(fmt.Sprintf("key-%d", rng.IntN(3))),
			AccountID:     store.AccountID(fmt.Sprintf("acct-%d", rng.IntN(3))),
			Model:         fmt.Sprintf("model-%d", rng.IntN(3)),
			Input:         rng.Int64N(100_000),
			Output:        rng.Int64N(10_000),
			CacheWrite5m:  rng.Int64N(5_000),
			CacheWrite1h:  rng.Int64N(5_000),
			CacheRead:     rng.Int64N(200_000),
			CostPico:      rng.Int64N(5_000_000_000_000),
			RatedCostPico: rng.Int64N(10_000_000_000_000),
			Stream:        rng.IntN(2) == 0,
			Status:        200,
			LatencyMs:     rng.Int64N(60_000),
			FirstByteMs:   rng.Int64N(2_000),
			ClientAborted: rng.IntN(10) == 0,
			CreatedAt:     at(time.Duration(rng.Int64N(3*24*3600*1000)) * time.Millisecond),
		}
	}
	return recs
}

// insertBatches stores recs with InsertUsage, n at a time.
func insertBatches(t *testing.T, s store.Store, recs []store.UsageRecord, n int) {
	t.Helper()
	for i := 0; i < len(recs); i += n {
		_, err := s.InsertUsage(t.Context(), recs[i:min(i+n, len(recs))])
		must(t, err)
	}
}

// usageKey is a record's identity.
type usageKey struct {
	requestID string
	attempt   int
}

// listAll returns every stored record.
func listAll(t *testing.T, s store.Store) []store.UsageRecord {
	t.Helper()
	recs, err := s.ListUsage(t.Context(), store.UsageFilter{}, 1_000_000)
	must(t, err)
	return recs
}

func testUsageRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	full := store.UsageRecord{
		RequestID: "req_01ABC", Attempt: 2, KeyID: "key-1", AccountID: "acct-1",
		Model: "claude-sonnet-4-5-20250929", Input: 12, Output: 345, CacheWrite5m: 6789,
		CacheWrite1h: 10, CacheRead: 1 << 40, CostPico: 1<<62 + 5, RatedCostPico: 1<<61 + 9,
		Stream: true, Status: 529,
		LatencyMs: 65_000, FirstByteMs: 812, ClientAborted: true,
		CreatedAt: at(time.Hour + 123*time.Millisecond).In(Zone()),
	}
	zero := store.UsageRecord{RequestID: "req_zero", CreatedAt: at(0)}
	n, err := s.InsertUsage(ctx, []store.UsageRecord{full, zero})
	must(t, err)
	if n != 2 {
		t.Errorf("InsertUsage = %d, want 2", n)
	}
	n, err = s.InsertUsage(ctx, nil)
	must(t, err)
	if n != 0 {
		t.Errorf("InsertUsage(nil) = %d, want 0", n)
	}
	got := listAll(t, s)
	want := []store.UsageRecord{normRecord(full), normRecord(zero)} // newest first
	// Seq is the store's: set, and increasing in insertion order.
	if len(got) == 2 && (got[0].Seq <= 0 || got[1].Seq <= got[0].Seq) {
		t.Errorf("Seq of the records inserted first and second = %d, %d, want 0 < first < second",
			got[0].Seq, got[1].Seq)
	}
	for i := range got {
		got[i] = normRecord(got[i])
		got[i].Seq = 0
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ListUsage:\n got %+v\nwant %+v", got, want)
	}
}

func testUsageIdempotent(t *testing.T, s store.Store) {
	ctx := t.Context()
	rec := func(id string, attempt int, input int64) store.UsageRecord {
		return store.UsageRecord{RequestID: id, Attempt: attempt, KeyID: "k", AccountID: "a",
			Model: "m", Input: input, CreatedAt: at(time.Duration(input) * time.Second)}
	}
	steps := []struct {
		batch []store.UsageRecord
		want  int
	}{
		{[]store.UsageRecord{rec("a", 0, 1), rec("a", 1, 2), rec("b", 0, 3)}, 3},
		// a#0 again (with other figures: the first stored wins) and a new c#0.
		{[]store.UsageRecord{rec("a", 0, 100), rec("c", 0, 4)}, 1},
		// A duplicate inside one batch counts once.
		{[]store.UsageRecord{rec("d", 0, 5), rec("d", 0, 500)}, 1},
		{[]store.UsageRecord{rec("a", 0, 1), rec("b", 0, 3), rec("d", 0, 5)}, 0},
	}
	for i, st := range steps {
		n, err := s.InsertUsage(ctx, st.batch)
		must(t, err)
		if n != st.want {
			t.Errorf("batch %d: InsertUsage = %d, want %d", i, n, st.want)
		}
	}
	got := map[usageKey]int64{}
	for _, r := range listAll(t, s) {
		got[usageKey{r.RequestID, r.Attempt}] = r.Input
	}
	want := map[usageKey]int64{{"a", 0}: 1, {"a", 1}: 2, {"b", 0}: 3, {"c", 0}: 4, {"d", 0}: 5}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stored records (id → input) = %v, want %v", got, want)
	}
	sum, err := s.SummarizeUsage(ctx, store.UsageFilter{})
	must(t, err)
	if len(sum.Models) != 1 || sum.Models[0].Requests != 5 || sum.Models[0].Input != 15 {
		t.Errorf("summary = %+v, want 5 requests, 15 input", sum.Models)
	}
	checkRollups(t, s, listAll(t, s))
}

func testListUsage(t *testing.T, s store.Store) {
	ctx := t.Context()
	mk := func(id string, key store.KeyID, acct store.AccountID, d time.Duration) store.UsageRecord {
		return store.UsageRecord{RequestID: id, KeyID: key, AccountID: acct, Model: "m", Input: 1, CreatedAt: at(d)}
	}
	// Inserted out of time order, in two batches.
	_, err := s.InsertUsage(ctx, []store.UsageRecord{
		mk("r2", "k1", "a2", 2*time.Hour), mk("r0", "k1", "a1", 0), mk("r4", "k2", "a2", 4*time.Hour),
	})
	must(t, err)
	_, err = s.InsertUsage(ctx, []store.UsageRecord{
		mk("r1", "k2", "a1", time.Hour), mk("r3", "k1", "a1", 3*time.Hour),
	})
	must(t, err)

	ids := func(recs []store.UsageRecord) string {
		var out []string
		for _, r := range recs {
			out = append(out, r.RequestID)
		}
		return fmt.Sprint(out)
	}
	for _, tc := range []struct {
		name  string
		f     store.UsageFilter
		limit int
		want  string
	}{
		{"all", store.UsageFilter{}, 100, "[r4 r3 r2 r1 r0]"},
		{"limit", store.UsageFilter{}, 2, "[r4 r3]"},
		{"key", store.UsageFilter{KeyID: "k1"}, 100, "[r3 r2 r0]"},
		{"account", store.UsageFilter{AccountID: "a2"}, 100, "[r4 r2]"},
		{"key and account", store.UsageFilter{KeyID: "k1", AccountID: "a1"}, 100, "[r3 r0]"},
		{"from inclusive", store.UsageFilter{From: at(3 * time.Hour)}, 100, "[r4 r3]"},
		{"to exclusive", store.UsageFilter{To: at(time.Hour)}, 100, "[r0]"},
		{"range", store.UsageFilter{From: at(time.Hour), To: at(3 * time.Hour)}, 100, "[r2 r1]"},
		{"range and key with limit", store.UsageFilter{KeyID: "k1", From: at(time.Hour), To: at(5 * time.Hour)}, 1, "[r3]"},
		{"nothing", store.UsageFilter{KeyID: "nobody"}, 100, "[]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := s.ListUsage(ctx, tc.f, tc.limit)
			must(t, err)
			if got := ids(recs); got != tc.want {
				t.Errorf("ListUsage = %s, want %s", got, tc.want)
			}
		})
	}
}

func testSummarizeUsage(t *testing.T, s store.Store) {
	ctx := t.Context()
	recs := genRecords(rand.New(rand.NewPCG(1, 2)), "sum", 300)
	insertBatches(t, s, recs, 50)
	for _, f := range []store.UsageFilter{
		{},
		{KeyID: "key-1"},
		{AccountID: "acct-2"},
		{From: at(24 * time.Hour), To: at(48 * time.Hour)},
		{KeyID: "key-0", AccountID: "acct-0", From: at(12 * time.Hour)},
		{To: at(30 * time.Hour)},
		{KeyID: "nobody"},
	} {
		t.Run(fmt.Sprintf("%+v", f), func(t *testing.T) {
			type grouped = map[string]store.Counters
			wantK, wantA, wantM := grouped{}, grouped{}, grouped{}
			for _, r := range recs {
				if !inFilter(r, f) {
					continue
				}
				for _, g := range []struct {
					m    grouped
					name string
				}{{wantK, string(r.KeyID)}, {wantA, string(r.AccountID)}, {wantM, r.Model}} {
					c := g.m[g.name]
					c.Add(r)
					g.m[g.name] = c
				}
			}
			sum, err := s.SummarizeUsage(ctx, f)
			must(t, err)
			toMap := func(rows []store.UsageRow, name func(store.UsageRow) string) grouped {
				m := grouped{}
				for _, r := range rows {
					if _, dup := m[name(r)]; dup {
						t.Errorf("summary lists %q twice", name(r))
					}
					m[name(r)] = r.Counters
				}
				return m
			}
			for _, c := range []struct {
				what      string
				got, want grouped
			}{
				{"Keys", toMap(sum.Keys, func(r store.UsageRow) string { return string(r.KeyID) }), wantK},
				{"Accounts", toMap(sum.Accounts, func(r store.UsageRow) string { return string(r.AccountID) }), wantA},
				{"Models", toMap(sum.Models, func(r store.UsageRow) string { return r.Model }), wantM},
			} {
				if !reflect.DeepEqual(c.got, c.want) {
					t.Errorf("%s:\n got %+v\nwant %+v", c.what, c.got, c.want)
				}
			}
		})
	}
}

// inFilter reports whether r is in f, as the contract defines it.
func inFilter(r store.UsageRecord, f store.UsageFilter) bool {
	return (f.KeyID == "" || r.KeyID == f.KeyID) &&
		(f.AccountID == "" || r.AccountID == f.AccountID) &&
		(f.From.IsZero() || !r.CreatedAt.Before(f.From)) &&
		(f.To.IsZero() || r.CreatedAt.Before(f.To))
}

func testRollupsEqualRecords(t *testing.T, s store.Store) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(3, 4))
	recs := genRecords(rng, "roll", 300)
	want, inserted := 0, 0
	seen := map[usageKey]bool{}
	// Batches of random size that repeat earlier records (with altered
	// figures, which must not count) and repeat records inside a batch.
	for i := 0; i < len(recs); {
		n := 1 + rng.IntN(40)
		batch := append([]store.UsageRecord(nil), recs[i:min(i+n, len(recs))]...)
		i += n
		for range rng.IntN(5) {
			dup := recs[rng.IntN(i)]
			dup.Input += 1000
			batch = append(batch, dup)
		}
		rng.Shuffle(len(batch), func(a, b int) { batch[a], batch[b] = batch[b], batch[a] })
		for _, r := range batch {
			k := usageKey{r.RequestID, r.Attempt}
			if !seen[k] {
				seen[k] = true
				want++
			}
		}
		// Which copy of an in-batch duplicate is kept is unspecified;
		// checkRollups compares with whatever was stored.
		n, err := s.InsertUsage(ctx, batch)
		must(t, err)
		inserted += n
	}
	if inserted != want {
		t.Errorf("InsertUsage returned %d new in total, want %d", inserted, want)
	}
	stored := listAll(t, s)
	if len(stored) != want {
		t.Fatalf("%d records stored, want %d", len(stored), want)
	}
	checkRollups(t, s, stored)
}

// rollupID is a rollup's identity; period in unix milliseconds.
type rollupID struct {
	period  int64
	key     store.KeyID
	account store.AccountID
	model   string
}

// hourOf and dayOf are the contract's buckets: the UTC hour, and midnight
// of the day in the store's zone.
func hourOf(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

func dayOf(t time.Time) time.Time {
	y, m, d := t.In(Zone()).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, Zone())
}

// checkRollups compares both granularities with totals computed from recs,
// and each granularity's grand total with the records' total; and so the
// Trend and ModelTotals of all records.
func checkRollups(t *testing.T, s store.Store, recs []store.UsageRecord) {
	t.Helper()
	var total store.Counters
	for _, r := range recs {
		total.Add(r)
	}
	models, err := s.ModelTotals(t.Context(), store.UsageFilter{})
	must(t, err)
	got := map[string]store.Counters{}
	for _, m := range models {
		got[m.Model] = m.Counters
	}
	if want := modelTotals(recs, store.UsageFilter{}); !reflect.DeepEqual(got, want) {
		t.Errorf("ModelTotals of all records:\n got %+v\nwant %+v", got, want)
	}
	sum, err := s.SummarizeUsage(t.Context(), store.UsageFilter{})
	must(t, err)
	perKey, wantKey := map[store.KeyID]store.Counters{}, map[store.KeyID]store.Counters{}
	for _, k := range sum.Keys {
		perKey[k.KeyID] = k.Counters
	}
	for _, r := range recs {
		c := wantKey[r.KeyID]
		c.Add(r)
		wantKey[r.KeyID] = c
	}
	if !reflect.DeepEqual(perKey, wantKey) {
		t.Errorf("SummarizeUsage's Keys of all records:\n got %+v\nwant %+v", perKey, wantKey)
	}
	for _, g := range []struct {
		g      store.Granularity
		bucket func(time.Time) time.Time
	}{{store.Hourly, hourOf}, {store.Daily, dayOf}} {
		want := map[rollupID]store.Counters{}
		for _, r := range recs {
			id := rollupID{g.bucket(r.CreatedAt).UnixMilli(), r.KeyID, r.AccountID, r.Model}
			c := want[id]
			c.Add(r)
			want[id] = c
		}
		rows, err := s.Rollups(t.Context(), g.g, time.Time{}, time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC))
		must(t, err)
		got := map[rollupID]store.Counters{}
		var sum store.Counters
		for _, r := range rows {
			id := rollupID{r.Period.UnixMilli(), r.KeyID, r.AccountID, r.Model}
			if _, dup := got[id]; dup {
				t.Errorf("%s rollup %+v listed twice", g.g, id)
			}
			got[id] = r.Counters
			sum.Merge(r.Counters)
		}
		if sum != total {
			t.Errorf("%s rollups total %+v, records total %+v", g.g, sum, total)
		}
		// The rollups without keys count the same records.
		checkTrend(t, s, g.g, store.UsageFilter{}, trendTotals(recs, store.UsageFilter{}, g.bucket))
		if !reflect.DeepEqual(got, want) {
			for id, w := range want {
				if got[id] != w {
					t.Errorf("%s rollup %+v = %+v, want %+v", g.g, id, got[id], w)
				}
			}
			for id, c := range got {
				if _, ok := want[id]; !ok {
					t.Errorf("%s rollup %+v = %+v, want none", g.g, id, c)
				}
			}
		}
	}
}

func testRollupDayBoundary(t *testing.T, s store.Store) {
	ctx := t.Context()
	z := Zone()
	local := func(day, h, m int) time.Time { return time.Date(2025, time.March, day, h, m, 0, 0, z) }
	recs := []store.UsageRecord{
		{RequestID: "late", KeyID: "k", AccountID: "a", Model: "m", Input: 1, CostPico: 10, CreatedAt: local(10, 23, 30)},
		{RequestID: "early", KeyID: "k", AccountID: "a", Model: "m", Input: 2, CostPico: 20, CreatedAt: local(11, 0, 10)},
		{RequestID: "early2", KeyID: "k", AccountID: "a", Model: "m", Input: 4, CostPico: 40, CreatedAt: local(11, 0, 30)},
	}
	_, err := s.InsertUsage(ctx, recs)
	must(t, err)

	days, err := s.Rollups(ctx, store.Daily, local(1, 0, 0), local(20, 0, 0))
	must(t, err)
	if len(days) != 2 {
		t.Fatalf("%d daily rollups, want 2: %+v", len(days), days)
	}
	sortByPeriod(days)
	for i, w := range []struct {
		period   time.Time
		requests int64
		input    int64
		cost     int64
	}{{local(10, 0, 0), 1, 1, 10}, {local(11, 0, 0), 2, 6, 60}} {
		d := days[i]
		if !d.Period.Equal(w.period) || d.Requests != w.requests || d.Input != w.input || d.CostPico != w.cost {
			t.Errorf("day %d = %v %+v, want period %v, %d requests, %d input, %d cost",
				i, d.Period, d.Counters, w.period, w.requests, w.input, w.cost)
		}
	}
	// The same three records in UTC hours: 17:45, 18:25 and 18:45.
	hours, err := s.Rollups(ctx, store.Hourly, local(1, 0, 0), local(20, 0, 0))
	must(t, err)
	sortByPeriod(hours)
	if len(hours) != 2 ||
		!hours[0].Period.Equal(time.Date(2025, time.March, 10, 17, 0, 0, 0, time.UTC)) || hours[0].Requests != 1 ||
		!hours[1].Period.Equal(time.Date(2025, time.March, 10, 18, 0, 0, 0, time.UTC)) || hours[1].Requests != 2 {
		t.Errorf("hourly rollups = %+v, want 17:00Z ×1 and 18:00Z ×2", hours)
	}
}

// sortByPeriod orders rollups by period; the contract leaves the order open.
func sortByPeriod(rs []store.Rollup) {
	slices.SortFunc(rs, func(a, b store.Rollup) int { return a.Period.Compare(b.Period) })
}

func testRollupRange(t *testing.T, s store.Store) {
	ctx := t.Context()
	h := func(n int) time.Time { return hourOf(base).Add(time.Duration(n) * time.Hour) }
	var recs []store.UsageRecord
	for i := range 4 {
		recs = append(recs, store.UsageRecord{RequestID: fmt.Sprint("r", i), KeyID: "k", AccountID: "a",
			Model: "m", Input: int64(i), CreatedAt: h(i).Add(time.Minute)})
		// Days are 24 h apart, so each record also has its own day.
		recs = append(recs, store.UsageRecord{RequestID: fmt.Sprint("d", i), KeyID: "k", AccountID: "a",
			Model: "m", Input: int64(i), CreatedAt: dayOf(base).AddDate(0, 0, 10+i).Add(time.Hour)})
	}
	_, err := s.InsertUsage(ctx, recs)
	must(t, err)

	periods := func(g store.Granularity, from, to time.Time) []int64 {
		rows, err := s.Rollups(ctx, g, from, to)
		must(t, err)
		var out []int64
		for _, r := range rows {
			out = append(out, r.Period.UnixMilli())
		}
		slices.Sort(out) // the contract leaves the order open
		return out
	}
	ms := func(ts ...time.Time) []int64 {
		var out []int64
		for _, x := range ts {
			out = append(out, x.UnixMilli())
		}
		return out
	}
	day := func(n int) time.Time { return dayOf(base).AddDate(0, 0, 10+n) }
	for _, tc := range []struct {
		name     string
		g        store.Granularity
		from, to time.Time
		want     []int64
	}{
		{"hours [1,3)", store.Hourly, h(1), h(3), ms(h(1), h(2))},
		{"hours from inside an hour", store.Hourly, h(1).Add(time.Minute), h(3), ms(h(2))},
		{"hours empty", store.Hourly, h(10), h(20), nil},
		{"days [1,3)", store.Daily, day(1), day(3), ms(day(1), day(2))},
		{"days [0,4)", store.Daily, day(0), day(4), ms(day(0), day(1), day(2), day(3))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := periods(tc.g, tc.from, tc.to); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("periods = %v, want %v", got, tc.want)
			}
		})
	}
}

// testRatedCost checks the rated cost against figures worked out by hand,
// not through store.Counters.Add: stored per record, summed per key,
// account and model, and added into both rollups, within a batch and
// across batches, with a duplicate's figures ignored. Rated and real cost
// differ everywhere, and one record is rated 0 (a free platform), so a
// backend that stores one in the other's place, or derives one from the
// other, fails.
func testRatedCost(t *testing.T, s store.Store) {
	ctx := t.Context()
	rec := func(id string, key store.KeyID, model string, d time.Duration, cost, rated int64) store.UsageRecord {
		return store.UsageRecord{RequestID: id, KeyID: key, AccountID: "a", Model: model,
			CostPico: cost, RatedCostPico: rated, CreatedAt: at(d)}
	}
	r1 := rec("r1", "k1", "m1", 0, 100, 150)
	r2 := rec("r2", "k1", "m1", 10*time.Minute, 200, 0)
	r3 := rec("r3", "k2", "m2", time.Hour, 50, 125)
	r4 := rec("r4", "k1", "m1", 20*time.Minute, 1, 7)
	dup := r1
	dup.RatedCostPico = 999_999
	for _, batch := range [][]store.UsageRecord{{r1, r2}, {r3, dup}, {r4}} {
		_, err := s.InsertUsage(ctx, batch)
		must(t, err)
	}

	rated := map[string]int64{}
	for _, r := range listAll(t, s) {
		rated[r.RequestID] = r.RatedCostPico
	}
	if want := map[string]int64{"r1": 150, "r2": 0, "r3": 125, "r4": 7}; !reflect.DeepEqual(rated, want) {
		t.Errorf("ListUsage rated costs = %v, want %v", rated, want)
	}

	type figures struct{ cost, rated int64 }
	totals := func(rows []store.UsageRow, name func(store.UsageRow) string) map[string]figures {
		m := map[string]figures{}
		for _, r := range rows {
			m[name(r)] = figures{r.CostPico, r.RatedPico}
		}
		return m
	}
	sum, err := s.SummarizeUsage(ctx, store.UsageFilter{})
	must(t, err)
	for _, c := range []struct {
		what      string
		got, want map[string]figures
	}{
		{"Keys", totals(sum.Keys, func(r store.UsageRow) string { return string(r.KeyID) }),
			map[string]figures{"k1": {301, 157}, "k2": {50, 125}}},
		{"Accounts", totals(sum.Accounts, func(r store.UsageRow) string { return string(r.AccountID) }),
			map[string]figures{"a": {351, 282}}},
		{"Models", totals(sum.Models, func(r store.UsageRow) string { return r.Model }),
			map[string]figures{"m1": {301, 157}, "m2": {50, 125}}},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("SummarizeUsage %s (cost, rated) = %v, want %v", c.what, c.got, c.want)
		}
	}
	sum, err = s.SummarizeUsage(ctx, store.UsageFilter{KeyID: "k1", To: at(15 * time.Minute)})
	must(t, err)
	if len(sum.Keys) != 1 || sum.Keys[0].RatedPico != 150 {
		t.Errorf("SummarizeUsage of k1 before r4: %+v, want rated 150", sum.Keys)
	}

	// base is 09:15 UTC, 15:00 in Zone(): r1, r2 and r4 share an hour, r3
	// has the next one, and all four share a day.
	for _, g := range []store.Granularity{store.Hourly, store.Daily} {
		rows, err := s.Rollups(ctx, g, at(-48*time.Hour), at(48*time.Hour))
		must(t, err)
		got := map[store.KeyID]figures{}
		for _, r := range rows {
			got[r.KeyID] = figures{r.CostPico, r.RatedPico}
		}
		want := map[store.KeyID]figures{"k1": {301, 157}, "k2": {50, 125}}
		if len(rows) != 2 || !reflect.DeepEqual(got, want) {
			t.Errorf("%s rollups (cost, rated) = %v in %d rows, want %v in 2", g, got, len(rows), want)
		}
	}
}
