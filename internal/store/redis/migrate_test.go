package redis

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/redis/redistest"
	"github.com/crs-relay/crs/internal/store/storetest"
)

// downgrade puts the usage under s's prefix back to layout 1: the account
// and key-totals families' hashes of every period deleted, the version 1.
func downgrade(t testing.TB, s *Store) {
	t.Helper()
	ctx := t.Context()
	for _, g := range [...]store.Granularity{store.Hourly, store.Daily} {
		periods, err := s.rdb.ZRange(ctx, s.rollupPeriods(g), 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		pipe := s.rdb.Pipeline()
		for _, p := range periods {
			pipe.Del(ctx, s.rollupBase(g, famAcct())+p, s.rollupBase(g, famKeyTotals())+p)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	setSchema(t, s, 1)
}

// setSchema writes layout version v under s's prefix, and nothing else.
func setSchema(t testing.TB, s *Store, v int) {
	t.Helper()
	if err := s.rdb.Set(t.Context(), s.cfgKey("schema"), v, 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// reopen opens another instance on s's client and prefix.
func reopen(t testing.TB, s *Store) *Store {
	t.Helper()
	s2, err := Open(t.Context(), Options{Client: s.rdb, Prefix: s.prefix, Location: s.loc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	return s2
}

// checkSchema fails t unless the layout version under s's prefix is want.
func checkSchema(t *testing.T, s *Store, want int) {
	t.Helper()
	if v, err := s.rdb.Get(t.Context(), s.cfgKey("schema")).Int(); err != nil || v != want {
		t.Errorf("schema version = %d, %v; want %d", v, err, want)
	}
}

// TestMigrateDerivedRollups: a store at layout 1 (no account and no
// key-totals family) is brought to layout 2 by Open, and ModelTotals,
// Trend and SummarizeUsage are then exact; so again when the families
// are there already (an instance died before it raised the version), and
// when two instances migrate at once while a third inserts.
func TestMigrateDerivedRollups(t *testing.T) {
	clients := []struct {
		name string
		rdb  func(t *testing.T) goredis.UniversalClient
	}{
		{"single", func(t *testing.T) goredis.UniversalClient { return redistest.Client(t) }},
		{"cluster", func(t *testing.T) goredis.UniversalClient {
			if testing.Short() {
				t.Skip("starts a 3-node cluster")
			}
			return redistest.ClusterClient(t, redistest.Cluster(t))
		}},
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			s := openOn(t, c.rdb(t))
			checkSchema(t, s, schemaVersion)
			rng := rand.New(rand.NewPCG(31, 32))
			recs := randomRecords(rng, "mig", 600)
			for i := 0; i < 400; i += 100 {
				if _, err := s.InsertUsage(t.Context(), recs[i:i+100]); err != nil {
					t.Fatal(err)
				}
			}
			stored := recs[:400]
			checkTotals(t, s, stored)

			downgrade(t, s)
			// The families are gone: all time is whole days of them.
			if rows, err := s.ModelTotals(t.Context(), store.UsageFilter{}); err != nil || len(rows) != 0 {
				t.Fatalf("ModelTotals after the downgrade = %+v, %v; want nothing", rows, err)
			}
			if sum, err := s.SummarizeUsage(t.Context(), store.UsageFilter{}); err != nil ||
				len(sum.Keys)+len(sum.Accounts)+len(sum.Models) != 0 {
				t.Fatalf("SummarizeUsage after the downgrade = %+v, %v; want nothing", sum, err)
			}
			checkTotals(t, reopen(t, s), stored)
			checkSchema(t, s, 2)
			checkSchema(t, reopen(t, s), 2) // a second Open finds nothing to do
			// The rebuild replaces what it finds, so running it again
			// over whole families counts nothing twice.
			setSchema(t, s, 1)
			checkTotals(t, reopen(t, s), stored)
			checkSchema(t, s, 2)

			// Two instances migrate while a third, already new, inserts
			// into the periods they rebuild.
			downgrade(t, s)
			var wg sync.WaitGroup
			for range 2 {
				wg.Go(func() {
					s2, err := Open(t.Context(), Options{Client: s.rdb, Prefix: s.prefix, Location: s.loc})
					if err != nil {
						t.Error(err)
						return
					}
					s2.Close()
				})
			}
			wg.Go(func() {
				for i := 400; i < len(recs); i += 20 {
					if _, err := s.InsertUsage(t.Context(), recs[i:i+20]); err != nil {
						t.Error(err)
						return
					}
				}
			})
			wg.Wait()
			checkTotals(t, s, recs)
			checkSchema(t, s, 2)
		})
	}
}

// TestMigrateKeepsNewerVersion: the version is only ever raised, and a
// newer layout is refused.
func TestMigrateKeepsNewerVersion(t *testing.T) {
	s := openOn(t, redistest.Client(t))
	ctx := t.Context()
	if err := raiseSchemaScript.Run(ctx, s.rdb, []string{s.cfgKey("schema")}, 1).Err(); err != nil {
		t.Fatal(err)
	}
	checkSchema(t, s, 2)
	if err := s.rdb.Set(ctx, s.cfgKey("schema"), schemaVersion+1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if s2, err := Open(ctx, Options{Client: s.rdb, Prefix: s.prefix, Location: s.loc}); err == nil {
		s2.Close()
		t.Fatalf("Open of layout %d succeeded", schemaVersion+1)
	}
	checkSchema(t, s, schemaVersion+1)
}

// BenchmarkMigrateDerivedRollups times Open's migration to layout 2 of a
// year of hourly and daily rollups of all records, each period holding
// the rows of 50 keys × 2 accounts × 4 models (CRS_BENCH_PERIOD_ROWS
// changes the 400), written directly as layout 1 would have.
func BenchmarkMigrateDerivedRollups(b *testing.B) {
	perPeriod := 400
	if v := os.Getenv("CRS_BENCH_PERIOD_ROWS"); v != "" {
		var err error
		if perPeriod, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	rdb := redistest.Client(b)
	s, err := Open(b.Context(), Options{Client: rdb, Prefix: redistest.Prefix(b, rdb), Location: storetest.Zone()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := b.Context()
	row := packCounters(store.Counters{Requests: 3, Input: 1 << 20, Output: 1 << 12, CostPico: 1 << 40, RatedPico: 1 << 41})
	start := time.Date(2024, time.January, 1, 0, 0, 0, 0, time.UTC)
	write := func(g store.Granularity, periods []int64) {
		for i := 0; i < len(periods); i += 100 {
			pipe := rdb.Pipeline()
			for _, p := range periods[i:min(i+100, len(periods))] {
				ps := strconv.FormatInt(p, 10)
				fields := make([]any, 0, 2*perPeriod)
				for j := range perPeriod {
					fields = append(fields, dimsOf(store.KeyID(fmt.Sprint("key_", j/8)),
						store.AccountID(fmt.Sprint("acc_", j/4%2)), fmt.Sprint("model-", j%4)), row)
				}
				pipe.HSet(ctx, s.rollupBase(g, famAll())+ps, fields...)
				pipe.ZAdd(ctx, s.rollupPeriods(g), goredis.Z{Score: float64(p), Member: ps})
			}
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	var hours, days []int64
	for h := range 365 * 24 {
		hours = append(hours, start.Add(time.Duration(h)*time.Hour).UnixMilli())
	}
	for d := range 365 {
		days = append(days, store.FloorDay(start.AddDate(0, 0, d).UnixMilli(), s.loc))
	}
	write(store.Hourly, hours)
	write(store.Daily, days)
	for b.Loop() {
		b.StopTimer()
		downgrade(b, s)
		b.StartTimer()
		s2, err := Open(ctx, Options{Client: rdb, Prefix: s.prefix, Location: s.loc})
		if err != nil {
			b.Fatal(err)
		}
		s2.Close()
	}
	b.ReportMetric(float64(len(hours)+len(days)), "periods")
	for _, c := range []struct {
		fam  string
		want int
	}{{famAcct(), min(perPeriod, 8)}, {famKeyTotals(), (perPeriod + 7) / 8}} {
		hash := s.rollupBase(store.Hourly, c.fam) + strconv.FormatInt(hours[0], 10)
		if n, err := rdb.HLen(ctx, hash).Result(); err != nil || n != int64(c.want) {
			b.Errorf("HLEN %s = %d, %v; want %d", hash, n, err, c.want)
		}
	}
}
