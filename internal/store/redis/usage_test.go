package redis

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // America/New_York for the DST cases, on any machine

	goredis "github.com/redis/go-redis/v9"

	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/redis/redistest"
	"github.com/crs-relay/crs/internal/store/storetest"
)

var usageBase = time.Date(2025, time.March, 8, 21, 37, 0, 0, time.UTC)

// randomRecords spreads n records over ten days (a DST change in New York
// among them) and a few keys, accounts and models.
func randomRecords(rng *rand.Rand, prefix string, n int) []store.UsageRecord {
	recs := make([]store.UsageRecord, n)
	for i := range recs {
		recs[i] = store.UsageRecord{
			RequestID: fmt.Sprintf("%s-%d", prefix, i),
			KeyID:     store.KeyID(fmt.Sprintf("key:%d", rng.IntN(3))), // ":" as in real ids
			AccountID: store.AccountID(fmt.Sprintf("acct|%d", rng.IntN(3))),
			Model:     fmt.Sprintf("model-%d", rng.IntN(2)),
			Input:     rng.Int64N(1000), Output: rng.Int64N(100), CacheRead: rng.Int64N(10),
			CostPico: rng.Int64N(1 << 40), RatedCostPico: rng.Int64N(1 << 40),
			CreatedAt: usageBase.Add(time.Duration(rng.Int64N(10*24*3600*1000)) * time.Millisecond),
		}
	}
	return recs
}

// bruteSummary totals recs in f the slow, obvious way.
func bruteSummary(recs []store.UsageRecord, f store.UsageFilter) store.UsageSummary {
	k, a, m := map[store.KeyID]store.Counters{}, map[store.AccountID]store.Counters{}, map[string]store.Counters{}
	for _, r := range recs {
		if (f.KeyID != "" && r.KeyID != f.KeyID) || (f.AccountID != "" && r.AccountID != f.AccountID) ||
			(f.Model != "" && r.Model != f.Model) ||
			(!f.From.IsZero() && r.CreatedAt.UnixMilli() < f.From.UnixMilli()) ||
			(!f.To.IsZero() && r.CreatedAt.UnixMilli() >= f.To.UnixMilli()) {
			continue
		}
		for _, add := range []func(){
			func() { c := k[r.KeyID]; c.Add(r); k[r.KeyID] = c },
			func() { c := a[r.AccountID]; c.Add(r); a[r.AccountID] = c },
			func() { c := m[r.Model]; c.Add(r); m[r.Model] = c },
		} {
			add()
		}
	}
	var sum store.UsageSummary
	for id, c := range k {
		sum.Keys = append(sum.Keys, store.UsageRow{KeyID: id, Counters: c})
	}
	for id, c := range a {
		sum.Accounts = append(sum.Accounts, store.UsageRow{AccountID: id, Counters: c})
	}
	for id, c := range m {
		sum.Models = append(sum.Models, store.UsageRow{Model: id, Counters: c})
	}
	sortSummary(&sum)
	return sum
}

func sortSummary(s *store.UsageSummary) {
	for _, rows := range [][]store.UsageRow{s.Keys, s.Accounts, s.Models} {
		slices.SortFunc(rows, func(a, b store.UsageRow) int {
			return cmp.Or(cmp.Compare(a.KeyID, b.KeyID), cmp.Compare(a.AccountID, b.AccountID), cmp.Compare(a.Model, b.Model))
		})
	}
}

// TestSummarizeFromRollups checks the summary, which reads daily and hourly
// rollups and records only at the edges, against totals of the records
// themselves, for random filters of key, account and model (so every
// choice of rollup families) and random spans in zones whose days start
// off the UTC hour or last 23 hours. Spans start and end at random
// milliseconds, on hour and day starts, and open.
func TestSummarizeFromRollups(t *testing.T) {
	rdb := redistest.Client(t)
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	for _, loc := range []*time.Location{storetest.Zone(), ny, time.UTC} {
		t.Run(loc.String(), func(t *testing.T) {
			s, err := Open(t.Context(), Options{Client: rdb, Prefix: redistest.Prefix(t, rdb), Location: loc})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			rng := rand.New(rand.NewPCG(7, 8))
			recs := randomRecords(rng, "sum", 600)
			for i := 0; i < len(recs); i += 100 {
				if _, err := s.InsertUsage(t.Context(), recs[i:i+100]); err != nil {
					t.Fatal(err)
				}
			}
			instant := func() time.Time {
				t0 := usageBase.Add(-time.Hour).Add(time.Duration(rng.Int64N(12*24*3600*1000)) * time.Millisecond)
				switch rng.IntN(4) {
				case 0:
					return time.Time{}
				case 1:
					return t0.Truncate(time.Hour)
				case 2:
					return time.UnixMilli(store.FloorDay(t0.UnixMilli(), s.loc))
				}
				return t0
			}
			keys := []store.KeyID{"", "key:0", "key:2", "nobody"}
			accts := []store.AccountID{"", "acct|1", "acct|2"}
			models := []string{"", "", "model-1"}
			for i := range 150 {
				f := store.UsageFilter{KeyID: keys[rng.IntN(len(keys))], AccountID: accts[rng.IntN(len(accts))],
					Model: models[rng.IntN(len(models))], From: instant(), To: instant()}
				got, err := s.SummarizeUsage(t.Context(), f)
				if err != nil {
					t.Fatal(err)
				}
				if want := bruteSummary(recs, f); !reflect.DeepEqual(got, want) {
					t.Fatalf("filter %d %+v:\n got %+v\nwant %+v", i, f, got, want)
				}
			}
		})
	}
}

// TestUsageExactBeyondFloat: rollups and summaries add in 64-bit integers,
// never in Lua's doubles, which would lose the units past 2^53.
func TestUsageExactBeyondFloat(t *testing.T) {
	s := openOn(t, redistest.Client(t))
	ctx := t.Context()
	big := int64(1)<<61 + 1
	recs := []store.UsageRecord{
		{RequestID: "a", KeyID: "k", AccountID: "x", Model: "m", CostPico: big, RatedCostPico: 3, CreatedAt: usageBase},
		{RequestID: "b", KeyID: "k", AccountID: "x", Model: "m", CostPico: big, RatedCostPico: 4, CreatedAt: usageBase.Add(time.Minute)},
	}
	if _, err := s.InsertUsage(ctx, recs); err != nil {
		t.Fatal(err)
	}
	want := 2 * big
	for _, g := range []store.Granularity{store.Hourly, store.Daily} {
		rows, err := s.Rollups(ctx, g, time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || rows[0].CostPico != want || rows[0].RatedPico != 7 {
			t.Errorf("%s rollups = %+v, want one row of cost %d", g, rows, want)
		}
	}
	// Low halves that carry, and a negative figure (a refund) that borrows.
	more := []store.UsageRecord{
		{RequestID: "c", KeyID: "k", AccountID: "x", Model: "m", CostPico: 3 << 31, CreatedAt: usageBase},
		{RequestID: "d", KeyID: "k", AccountID: "x", Model: "m", CostPico: 3 << 31, CreatedAt: usageBase},
		{RequestID: "e", KeyID: "k", AccountID: "x", Model: "m", CostPico: -5, CreatedAt: usageBase},
	}
	if _, err := s.InsertUsage(ctx, more); err != nil {
		t.Fatal(err)
	}
	recs = append(recs, more...)
	want = 2*big + 3<<32 - 5
	for _, g := range []store.Granularity{store.Hourly, store.Daily} {
		rows, err := s.Rollups(ctx, g, time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || rows[0].CostPico != want || rows[0].Requests != 5 {
			t.Errorf("%s rollups = %+v, want one row of cost %d", g, rows, want)
		}
	}
	// The whole day from the daily rollups (of the key, of all keys), and
	// a span of two partial hours.
	for _, f := range []store.UsageFilter{{KeyID: "k"}, {}, {From: usageBase.Add(-time.Second), To: usageBase.Add(time.Hour)}} {
		sum, err := s.SummarizeUsage(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(sum.Keys) != 1 || sum.Keys[0].CostPico != want {
			t.Errorf("summary %+v = %+v, want cost %d", f, sum.Keys, want)
		}
	}
	// The account family sums the keys: another key's record takes the
	// account's row past any one key's. The key-totals family sums the
	// accounts and models: the key's record on another account and model
	// takes the key's row past any one of its rows of all records. So in
	// the insert script and in the migration's rebuild alike.
	more = []store.UsageRecord{
		{RequestID: "f", KeyID: "k2", AccountID: "x", Model: "m", CostPico: big + 3<<31, CreatedAt: usageBase},
		{RequestID: "g", KeyID: "k", AccountID: "y", Model: "m2", CostPico: big + 5<<31, CreatedAt: usageBase},
	}
	if _, err := s.InsertUsage(ctx, more); err != nil {
		t.Fatal(err)
	}
	recs = append(recs, more...)
	wantKey := want + big + 5<<31 // the low halves carry
	want += big + 3<<31           // the two keys' low halves carry
	checkFamily := func(s *Store) {
		t.Helper()
		models, err := s.ModelTotals(ctx, store.UsageFilter{Model: "m"})
		if err != nil {
			t.Fatal(err)
		}
		if len(models) != 1 || models[0].CostPico != want || models[0].Requests != 6 {
			t.Errorf("ModelTotals = %+v, want one model of 6 requests costing %d", models, want)
		}
		sum, err := s.SummarizeUsage(ctx, store.UsageFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(sum.Keys) != 2 || sum.Keys[0].KeyID != "k" || sum.Keys[0].CostPico != wantKey || sum.Keys[0].Requests != 6 {
			t.Errorf("summary keys = %+v, want k of 6 requests costing %d first", sum.Keys, wantKey)
		}
		for _, f := range []store.UsageFilter{{}, {AccountID: "x"}, {Model: "m2"}, {KeyID: "k"}} {
			checkFilter(t, s, recs, f)
		}
		for _, g := range []store.Granularity{store.Hourly, store.Daily} {
			rows, err := s.Trend(ctx, g, store.UsageFilter{AccountID: "x"})
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 1 || rows[0].CostPico != want {
				t.Errorf("%s trend = %+v, want one period costing %d", g, rows, want)
			}
		}
	}
	checkFamily(s)
	downgrade(t, s)
	checkFamily(reopen(t, s))
}

// TestInsertUsageOverflowWritesNothing: a batch whose rollup total would
// pass int64 fails whole, records and all, and the store stays usable.
func TestInsertUsageOverflowWritesNothing(t *testing.T) {
	s := openOn(t, redistest.Client(t))
	ctx := t.Context()
	recOn := func(key store.KeyID, acct store.AccountID, model, id string, cost int64) store.UsageRecord {
		return store.UsageRecord{RequestID: id, KeyID: key, AccountID: acct, Model: model, CostPico: cost, CreatedAt: usageBase}
	}
	recOf := func(key store.KeyID, id string, cost int64) store.UsageRecord { return recOn(key, "x", "m", id, cost) }
	rec := func(id string, cost int64) store.UsageRecord { return recOf("k", id, cost) }
	if _, err := s.InsertUsage(ctx, []store.UsageRecord{rec("max", math.MaxInt64)}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.InsertUsage(ctx, []store.UsageRecord{rec("ok", 0), rec("over", 1)}); err == nil {
		t.Fatalf("InsertUsage past MaxInt64 = %d, nil; want an error", n)
	}
	recs, err := s.ListUsage(ctx, store.UsageFilter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].RequestID != "max" {
		t.Errorf("after the failed batch ListUsage = %+v, want only max", recs)
	}
	// Neither identity was claimed: the small one stores now.
	if n, err := s.InsertUsage(ctx, []store.UsageRecord{rec("ok", 0)}); err != nil || n != 1 {
		t.Errorf("InsertUsage(ok) = %d, %v; want 1", n, err)
	}
	rows, err := s.Rollups(ctx, store.Hourly, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Requests != 2 || rows[0].CostPico != math.MaxInt64 {
		t.Errorf("rollups = %+v, want 2 requests costing MaxInt64", rows)
	}
	// Another key's rows fit, but the account family's row, which sums
	// the keys, would not: the batch fails whole as well.
	if n, err := s.InsertUsage(ctx, []store.UsageRecord{recOf("k2", "ok2", 0), recOf("k2", "over2", 1)}); err == nil {
		t.Fatalf("InsertUsage past MaxInt64 in the account family = %d, nil; want an error", n)
	}
	if recs, err := s.ListUsage(ctx, store.UsageFilter{}, 0); err != nil || len(recs) != 2 {
		t.Errorf("after the failed batch ListUsage = %d records, %v; want 2", len(recs), err)
	}
	if rows, err := s.Rollups(ctx, store.Hourly, time.Time{}, time.Time{}); err != nil || len(rows) != 1 {
		t.Errorf("after the failed batch rollups = %+v, %v; want one row", rows, err)
	}
	models, err := s.ModelTotals(ctx, store.UsageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(models) != 1 || models[0].Requests != 2 || models[0].CostPico != math.MaxInt64 {
		t.Errorf("ModelTotals = %+v, want 2 requests costing MaxInt64", models)
	}
	// The key's rows on another account and model fit, and so do the
	// account family's, but the key-totals family's row, which sums the
	// key's accounts and models, would not: the batch fails whole too.
	if n, err := s.InsertUsage(ctx, []store.UsageRecord{recOn("k", "y", "m2", "over3", 1)}); err == nil {
		t.Fatalf("InsertUsage past MaxInt64 in the key-totals family = %d, nil; want an error", n)
	}
	if recs, err := s.ListUsage(ctx, store.UsageFilter{}, 0); err != nil || len(recs) != 2 {
		t.Errorf("after the failed batch ListUsage = %d records, %v; want 2", len(recs), err)
	}
	if rows, err := s.Rollups(ctx, store.Hourly, time.Time{}, time.Time{}); err != nil || len(rows) != 1 {
		t.Errorf("after the failed batch rollups = %+v, %v; want one row", rows, err)
	}
	sum, err := s.SummarizeUsage(ctx, store.UsageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.UsageRow{{KeyID: "k", Counters: store.Counters{Requests: 2, CostPico: math.MaxInt64}}}
	if !reflect.DeepEqual(sum.Keys, want) || len(sum.Accounts) != 1 || len(sum.Models) != 1 {
		t.Errorf("summary = %+v, want k alone, of 2 requests costing MaxInt64, on x and m", sum)
	}
}

// TestInsertUsageAcrossInstances has two instances insert overlapping
// batches at once: each record is stored and counted exactly once.
func TestInsertUsageAcrossInstances(t *testing.T) {
	rdb := redistest.Client(t)
	prefix := redistest.Prefix(t, rdb)
	var stores []*Store
	for range 2 {
		s, err := Open(t.Context(), Options{Client: rdb, Prefix: prefix, Location: storetest.Zone()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	recs := randomRecords(rand.New(rand.NewPCG(1, 1)), "x", 400)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
	)
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			for range 20 {
				i := rng.IntN(len(recs) - 40)
				n, err := stores[w%2].InsertUsage(t.Context(), recs[i:i+40])
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				total += n
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// Then everything once more, so every record is stored.
	for i := 0; i < len(recs); i += 100 {
		n, err := stores[0].InsertUsage(t.Context(), recs[i:i+100])
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if total != len(recs) {
		t.Errorf("InsertUsage counted %d new in all, want %d", total, len(recs))
	}
	got, err := stores[1].SummarizeUsage(t.Context(), store.UsageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if want := bruteSummary(recs, store.UsageFilter{}); !reflect.DeepEqual(got, want) {
		t.Errorf("summary:\n got %+v\nwant %+v", got, want)
	}
	listed, err := stores[1].ListUsage(t.Context(), store.UsageFilter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != len(recs) {
		t.Errorf("ListUsage lists %d, want %d", len(listed), len(recs))
	}
}

// TestListUsageTies: records of the same millisecond list newest inserted
// first, within a batch and across batches, like the embedded store.
func TestListUsageTies(t *testing.T) {
	s := openOn(t, redistest.Client(t))
	ctx := t.Context()
	rec := func(id string) store.UsageRecord {
		return store.UsageRecord{RequestID: id, KeyID: "k", AccountID: "a", Model: "m", CreatedAt: usageBase}
	}
	for _, batch := range [][]store.UsageRecord{{rec("1"), rec("2")}, {rec("3")}, {rec("4"), rec("5")}} {
		if _, err := s.InsertUsage(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []store.UsageFilter{{}, {KeyID: "k"}, {AccountID: "a"}, {KeyID: "k", AccountID: "a"}} {
		got, err := s.ListUsage(ctx, f, 3)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range got {
			ids = append(ids, r.RequestID)
		}
		if fmt.Sprint(ids) != "[5 4 3]" {
			t.Errorf("ListUsage(%+v) = %v, want [5 4 3]", f, ids)
		}
	}
}

// TestRecordCodec round-trips extreme records and refuses damaged ones.
func TestRecordCodec(t *testing.T) {
	for _, r := range []store.UsageRecord{
		{},
		{RequestID: "r:1|\x00ü", Attempt: 7, KeyID: "k", AccountID: "a", Model: "m", Input: -1,
			Output: 1 << 62, CacheWrite5m: 3, CacheWrite1h: 4, CacheRead: 5, CostPico: -1 << 63,
			RatedCostPico: 1<<63 - 1, Stream: true, Status: 599, LatencyMs: 6, FirstByteMs: 7,
			ClientAborted: true, CreatedAt: usageBase},
	} {
		r.CreatedAt = time.UnixMilli(r.CreatedAt.UnixMilli()).UTC()
		b := encodeRecord(r)
		got, err := decodeRecord(b)
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Errorf("round trip of %+v = %+v, %v", r, got, err)
		}
		for cut := range b {
			if _, err := decodeRecord(b[:cut]); err == nil {
				t.Errorf("decoding %d of %d bytes succeeded", cut, len(b))
			}
		}
		if _, err := decodeRecord(append(b, 0)); err == nil {
			t.Error("decoding with a trailing byte succeeded")
		}
	}
}

// benchRecords makes n records of 50 keys on 10 accounts and 4 models over
// the last seven days, ids prefix-0 … prefix-(n-1). Live records come in
// time order, as a relay writes them, and a key mostly stays on one
// account (sticky sessions); scattered ones have random times and
// accounts, the worst case for the rollups, since a batch then shares
// almost no rollup row.
func benchRecords(prefix string, n int, live bool) []store.UsageRecord {
	rng := rand.New(rand.NewPCG(11, 12))
	end := time.Now().Truncate(time.Millisecond)
	const week = int64(7 * 24 * time.Hour)
	recs := make([]store.UsageRecord, n)
	for i := range recs {
		key := rng.IntN(50)
		acct := rng.IntN(10)
		ago := time.Duration(rng.Int64N(week))
		if live {
			if rng.IntN(10) != 0 {
				acct = key % 10
			}
			ago = time.Duration(week - week/int64(n)*int64(i))
		}
		recs[i] = store.UsageRecord{
			RequestID: fmt.Sprintf("%s-%d", prefix, i),
			KeyID:     store.KeyID(fmt.Sprintf("key_%02d", key)),
			AccountID: store.AccountID(fmt.Sprintf("acc_%02d", acct)),
			Model:     fmt.Sprintf("claude-model-%d", rng.IntN(4)),
			Input:     rng.Int64N(100_000), Output: rng.Int64N(10_000), CacheWrite5m: rng.Int64N(5_000),
			CacheRead: rng.Int64N(200_000), CostPico: rng.Int64N(1e12), RatedCostPico: rng.Int64N(1e12),
			Stream: true, Status: 200, LatencyMs: rng.Int64N(60_000), FirstByteMs: rng.Int64N(2_000),
			CreatedAt: end.Add(-ago),
		}
	}
	return recs
}

// insertAll stores recs in batches of 100.
func insertAll(b *testing.B, s *Store, recs []store.UsageRecord) {
	for i := 0; i < len(recs); i += 100 {
		if _, err := s.InsertUsage(b.Context(), recs[i:min(i+100, len(recs))]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInsertUsage10k stores 10 000 records in batches of 100 per
// iteration: ns/op is the time for 10 000. It reports the longest a
// batch's script ran in Redis, the time it blocks every other client.
func BenchmarkInsertUsage10k(b *testing.B) {
	for _, live := range []bool{true, false} {
		name := map[bool]string{true: "live", false: "scattered"}[live]
		b.Run(name, func(b *testing.B) {
			rdb := redistest.Client(b)
			s, err := Open(b.Context(), Options{Client: rdb, Prefix: redistest.Prefix(b, rdb), Location: storetest.Zone()})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			round := 0
			var longest time.Duration
			for b.Loop() {
				b.StopTimer()
				recs := benchRecords(fmt.Sprint("r", round), 10_000, live)
				round++
				b.StartTimer()
				for i := 0; i < len(recs); i += 100 {
					t0 := time.Now()
					if _, err := s.InsertUsage(b.Context(), recs[i:i+100]); err != nil {
						b.Fatal(err)
					}
					longest = max(longest, time.Since(t0))
				}
			}
			b.ReportMetric(float64(longest.Microseconds())/1000, "max-ms/batch")
		})
	}
}

// BenchmarkUsageReads reads from a store of 100 000 records (more with
// CRS_BENCH_RECORDS): pages of 50 under each filter, and summaries over
// the week of one key and of all. It logs the memory Redis spends per
// record.
func BenchmarkUsageReads(b *testing.B) {
	n := 100_000
	if v := os.Getenv("CRS_BENCH_RECORDS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	rdb := redistest.Client(b)
	prefix := redistest.Prefix(b, rdb)
	s, err := Open(b.Context(), Options{Client: rdb, Prefix: prefix, Location: storetest.Zone()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	recs := benchRecords("r", n, true)
	start := time.Now()
	insertAll(b, s, recs)
	b.Logf("stored %d records in %v", n, time.Since(start))
	b.Logf("Redis memory: %d bytes per record (records, indexes, rollups)", usageMemory(b, rdb, prefix)/int64(n))

	now := time.Now()
	for _, bc := range []struct {
		name string
		f    store.UsageFilter
	}{
		{"page/all", store.UsageFilter{}},
		{"page/key", store.UsageFilter{KeyID: "key_07"}},
		{"page/key+account", store.UsageFilter{KeyID: "key_07", AccountID: "acc_07"}},
		{"page/account+day", store.UsageFilter{AccountID: "acc_03", From: now.Add(-48 * time.Hour), To: now.Add(-24 * time.Hour)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				recs, err := s.ListUsage(b.Context(), bc.f, 50)
				if err != nil || len(recs) != 50 {
					b.Fatalf("ListUsage = %d records, %v", len(recs), err)
				}
			}
		})
	}
	b.Run("summary/key-week", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.SummarizeUsage(b.Context(), store.UsageFilter{KeyID: "key_07", From: now.Add(-7 * 24 * time.Hour), To: now}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("summary/all-week", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.SummarizeUsage(b.Context(), store.UsageFilter{From: now.Add(-7 * 24 * time.Hour), To: now}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("models/all-week", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.ModelTotals(b.Context(), store.UsageFilter{From: now.Add(-7 * 24 * time.Hour), To: now}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("trend/all-week", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Trend(b.Context(), store.Daily, store.UsageFilter{From: now.Add(-7 * 24 * time.Hour), To: now}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// usageMemory sums MEMORY USAGE over the usage keys under prefix.
func usageMemory(b *testing.B, rdb *goredis.Client, prefix string) int64 {
	ctx := b.Context()
	var total int64
	iter := rdb.Scan(ctx, 0, prefix+"{u}:*", 1000).Iterator()
	for iter.Next(ctx) {
		n, err := rdb.MemoryUsage(ctx, iter.Val(), 0).Result()
		if err != nil {
			b.Fatal(err)
		}
		total += n
	}
	if err := iter.Err(); err != nil {
		b.Fatal(err)
	}
	return total
}

// TestUsageAndCounterRoundTrips holds every usage and counter method to
// one round trip (after the first call has loaded its script), and none
// to SCAN or KEYS.
func TestUsageAndCounterRoundTrips(t *testing.T) {
	ctx := t.Context()
	s, log := openLogged(t)
	c := s.Counters()
	recs := randomRecords(rand.New(rand.NewPCG(5, 6)), "rt", 200)
	batch := 0
	week := store.UsageFilter{From: usageBase, To: usageBase.Add(7 * 24 * time.Hour)}
	calls := []struct {
		name string
		call func() error
	}{
		{"InsertUsage", func() error {
			_, err := s.InsertUsage(ctx, recs[batch*100:batch*100+100])
			batch++
			return err
		}},
		{"ListUsage", func() error { _, err := s.ListUsage(ctx, store.UsageFilter{KeyID: "key:1"}, 50); return err }},
		{"SummarizeUsage key", func() error {
			f := week
			f.KeyID = "key:1"
			_, err := s.SummarizeUsage(ctx, f)
			return err
		}},
		{"SummarizeUsage all", func() error { _, err := s.SummarizeUsage(ctx, week); return err }},
		{"SummarizeUsage account", func() error {
			f := week
			f.AccountID = "acct|1"
			_, err := s.SummarizeUsage(ctx, f)
			return err
		}},
		{"Rollups", func() error { _, err := s.Rollups(ctx, store.Daily, time.Time{}, time.Time{}); return err }},
		{"ModelTotals", func() error { _, err := s.ModelTotals(ctx, week); return err }},
		{"Trend", func() error { _, err := s.Trend(ctx, store.Hourly, week); return err }},
		{"Add", func() error { _, err := c.Add(ctx, "n", 1, time.Now().Add(time.Hour)); return err }},
		{"Get", func() error { _, _, err := c.Get(ctx, "n"); return err }},
		{"Acquire", func() error { _, err := c.Acquire(ctx, "slot", "h", 1, time.Minute); return err }},
		{"InUse", func() error { _, err := c.InUse(ctx, "slot"); return err }},
		{"Release", func() error { return c.Release(ctx, "slot", "h") }},
	}
	for _, cl := range calls {
		if err := cl.call(); err != nil {
			t.Fatalf("%s: %v", cl.name, err)
		}
		var err error
		sent := log.during(func() { err = cl.call() })
		if err != nil {
			t.Fatalf("%s: %v", cl.name, err)
		}
		if len(sent) != 1 {
			t.Errorf("%s: %d round trips %v, want 1", cl.name, len(sent), sent)
		}
		for _, cmd := range sent {
			if cmd == "scan" || cmd == "keys" {
				t.Errorf("%s sent %s", cl.name, cmd)
			}
		}
	}
}
