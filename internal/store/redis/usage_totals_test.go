package redis

import (
	"fmt"
	"maps"
	"reflect"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/redis/redistest"
)

// totals is what ModelTotals and Trend answer for one filter: totals per
// model, and per hour and per day by the period's start in ms.
type totals struct {
	models      map[string]store.Counters
	hours, days map[int64]store.Counters
}

// readTotals asks s.
func readTotals(t *testing.T, s *Store, f store.UsageFilter) totals {
	t.Helper()
	tot := totals{map[string]store.Counters{}, map[int64]store.Counters{}, map[int64]store.Counters{}}
	models, err := s.ModelTotals(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range models {
		tot.models[r.Model] = r.Counters
	}
	for g, into := range map[store.Granularity]map[int64]store.Counters{store.Hourly: tot.hours, store.Daily: tot.days} {
		rows, err := s.Trend(t.Context(), g, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			into[r.Period.UnixMilli()] = r.Counters
		}
	}
	return tot
}

// bruteTotals sums recs the slow, obvious way: the records in [From, To)
// per model, and those whose period starts in it per period.
func bruteTotals(s *Store, recs []store.UsageRecord, f store.UsageFilter) totals {
	tot := totals{map[string]store.Counters{}, map[int64]store.Counters{}, map[int64]store.Counters{}}
	in := func(ms int64) bool {
		return (f.From.IsZero() || ms >= f.From.UnixMilli()) && (f.To.IsZero() || ms < f.To.UnixMilli())
	}
	add := func(m map[int64]store.Counters, p int64, r store.UsageRecord) {
		c := m[p]
		c.Add(r)
		m[p] = c
	}
	for _, r := range recs {
		if (f.KeyID != "" && r.KeyID != f.KeyID) || (f.AccountID != "" && r.AccountID != f.AccountID) ||
			(f.Model != "" && r.Model != f.Model) {
			continue
		}
		if in(r.CreatedAt.UnixMilli()) {
			c := tot.models[r.Model]
			c.Add(r)
			tot.models[r.Model] = c
		}
		if h := store.FloorHour(r.CreatedAt.UnixMilli()); in(h) {
			add(tot.hours, h, r)
		}
		if d := store.FloorDay(r.CreatedAt.UnixMilli(), s.loc); in(d) {
			add(tot.days, d, r)
		}
	}
	return tot
}

func (a totals) equal(b totals) bool {
	return maps.Equal(a.models, b.models) && maps.Equal(a.hours, b.hours) && maps.Equal(a.days, b.days)
}

func (a totals) String() string {
	return fmt.Sprintf("models %v\nhours %v\ndays %v", a.models, a.hours, a.days)
}

// totalsFilters are the filters the account family is checked with, over
// randomRecords: none, account and model alone and together, a span that
// cuts hours and days, and a key (read from the key's family).
func totalsFilters() []store.UsageFilter {
	return []store.UsageFilter{
		{},
		{AccountID: "acct|1"},
		{Model: "model-0"},
		{AccountID: "acct|2", Model: "model-1"},
		{From: usageBase.Add(30*time.Hour + 17*time.Minute), To: usageBase.Add(6*24*time.Hour + 5*time.Second)},
		{AccountID: "acct|0", From: usageBase.Add(50 * time.Hour)},
		{KeyID: "key:1", Model: "model-1"},
	}
}

// checkTotals compares ModelTotals, Trend and SummarizeUsage with the
// totals of recs for every filter of totalsFilters.
func checkTotals(t *testing.T, s *Store, recs []store.UsageRecord) {
	t.Helper()
	for _, f := range totalsFilters() {
		checkFilter(t, s, recs, f)
	}
}

// checkFilter compares ModelTotals, Trend and SummarizeUsage with the
// totals of recs for f.
func checkFilter(t *testing.T, s *Store, recs []store.UsageRecord, f store.UsageFilter) {
	t.Helper()
	if got, want := readTotals(t, s, f), bruteTotals(s, recs, f); !got.equal(want) {
		t.Errorf("filter %+v:\n got %v\nwant %v", f, got, want)
	}
	got, err := s.SummarizeUsage(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	if want := bruteSummary(recs, f); !reflect.DeepEqual(got, want) {
		t.Errorf("summary of filter %+v:\n got %+v\nwant %+v", f, got, want)
	}
}

// TestDerivedFamilySize: records of 20 keys × 2 accounts × 2 models in
// one hour make 80 rows of all records but 4 in the account family and
// 20 in the key-totals family, in the hour's and the day's hash, which
// ModelTotals, Trend and SummarizeUsage read.
func TestDerivedFamilySize(t *testing.T) {
	s := openOn(t, redistest.Client(t))
	ctx := t.Context()
	var recs []store.UsageRecord
	for k := range 20 {
		for a := range 2 {
			for m := range 2 {
				for i := range 2 {
					recs = append(recs, store.UsageRecord{
						RequestID: fmt.Sprintf("%d-%d-%d-%d", k, a, m, i),
						KeyID:     store.KeyID(fmt.Sprint("key-", k)), AccountID: store.AccountID(fmt.Sprint("acct-", a)),
						Model: fmt.Sprint("model-", m), Input: int64(k + 1), CostPico: int64(1000 * (a + 1)),
						CreatedAt: usageBase.Add(time.Duration(k*a+m+i) * time.Second),
					})
				}
			}
		}
	}
	for i := 0; i < len(recs); i += 50 {
		if _, err := s.InsertUsage(ctx, recs[i:min(i+50, len(recs))]); err != nil {
			t.Fatal(err)
		}
	}
	hour, day := store.FloorHour(usageBase.UnixMilli()), store.FloorDay(usageBase.UnixMilli(), s.loc)
	for _, c := range []struct {
		hash string
		want int64
	}{
		{s.rollupBase(store.Hourly, famAll()) + fmt.Sprint(hour), 80},
		{s.rollupBase(store.Hourly, famAcct()) + fmt.Sprint(hour), 4},
		{s.rollupBase(store.Daily, famAcct()) + fmt.Sprint(day), 4},
		{s.rollupBase(store.Hourly, famKeyTotals()) + fmt.Sprint(hour), 20},
		{s.rollupBase(store.Daily, famKeyTotals()) + fmt.Sprint(day), 20},
	} {
		if n, err := s.rdb.HLen(ctx, c.hash).Result(); err != nil || n != c.want {
			t.Errorf("HLEN %s = %d, %v; want %d", c.hash, n, err, c.want)
		}
	}
	for _, f := range []store.UsageFilter{{}, {AccountID: "acct-1"}, {Model: "model-0"}, {KeyID: "key-7"},
		{From: usageBase.Add(5 * time.Second), To: usageBase.Add(time.Hour)}} {
		checkFilter(t, s, recs, f)
	}
}
