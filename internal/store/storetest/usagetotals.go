package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// totalsFilters are the filters ModelTotals and Trend are checked with:
// every dimension alone and together, spans that cut hours and days, and
// filters nothing matches.
func totalsFilters() []store.UsageFilter {
	return []store.UsageFilter{
		{},
		{KeyID: "key-1"},
		{AccountID: "acct-2"},
		{Model: "model-0"},
		{KeyID: "key-0", Model: "model-2"},
		{AccountID: "acct-1", Model: "model-1"},
		{KeyID: "key-2", AccountID: "acct-0"},
		{From: at(24 * time.Hour), To: at(48 * time.Hour)},
		{From: at(13*time.Hour + 17*time.Minute), To: at(50*time.Hour + 3*time.Second)},
		{AccountID: "acct-0", From: at(5*time.Hour + 30*time.Minute)},
		{Model: "model-1", To: at(30*time.Hour + 45*time.Minute)},
		{KeyID: "nobody"},
		{AccountID: "acct-1", Model: "no-such-model"},
	}
}

// modelTotals are the records of f summed per model, as the contract
// defines them.
func modelTotals(recs []store.UsageRecord, f store.UsageFilter) map[string]store.Counters {
	out := map[string]store.Counters{}
	for _, r := range recs {
		if matches(r, f) {
			c := out[r.Model]
			c.Add(r)
			out[r.Model] = c
		}
	}
	return out
}

// testModelTotals: ModelTotals equals the records' totals per model and
// SummarizeUsage's Models for every filter, ordered by model, and
// refuses what the rollups cannot answer.
func testModelTotals(t *testing.T, s store.Store) {
	ctx := t.Context()
	recs := genRecords(rand.New(rand.NewPCG(21, 22)), "mt", 400)
	insertBatches(t, s, recs, 70)
	for _, f := range totalsFilters() {
		rows, err := s.ModelTotals(ctx, f)
		must(t, err)
		got := map[string]store.Counters{}
		for i, r := range rows {
			if r.KeyID != "" || r.AccountID != "" {
				t.Errorf("ModelTotals(%+v) row %q names key %q, account %q; want neither", f, r.Model, r.KeyID, r.AccountID)
			}
			if i > 0 && rows[i-1].Model >= r.Model {
				t.Errorf("ModelTotals(%+v): %q listed after %q", f, r.Model, rows[i-1].Model)
			}
			got[r.Model] = r.Counters
		}
		if want := modelTotals(recs, f); !reflect.DeepEqual(got, want) {
			t.Errorf("ModelTotals(%+v):\n got %+v\nwant %+v", f, got, want)
		}
		sum, err := s.SummarizeUsage(ctx, f)
		must(t, err)
		if fmt.Sprint(sum.Models) != fmt.Sprint(rows) {
			t.Errorf("ModelTotals(%+v) = %+v, SummarizeUsage's Models %+v", f, rows, sum.Models)
		}
	}
	for _, f := range []store.UsageFilter{{Status: 500}, {Before: &store.UsageCursor{CreatedAt: at(time.Hour)}}} {
		if _, err := s.ModelTotals(ctx, f); !errors.Is(err, store.ErrFilterUnsupported) {
			t.Errorf("ModelTotals(%+v) = %v, want ErrFilterUnsupported", f, err)
		}
	}
}

// trendTotals are the records of f's key, account and model summed per
// period of bucket, keeping the periods that start in [f.From, f.To).
func trendTotals(recs []store.UsageRecord, f store.UsageFilter, bucket func(time.Time) time.Time) map[int64]store.Counters {
	dims := store.UsageFilter{KeyID: f.KeyID, AccountID: f.AccountID, Model: f.Model}
	out := map[int64]store.Counters{}
	for _, r := range recs {
		p := bucket(r.CreatedAt)
		if !matches(r, dims) || (!f.From.IsZero() && p.Before(f.From)) || (!f.To.IsZero() && !p.Before(f.To)) {
			continue
		}
		c := out[p.UnixMilli()]
		c.Add(r)
		out[p.UnixMilli()] = c
	}
	return out
}

// testTrend: Trend equals the records' totals per hour and per day for
// every filter, one row per period in order, echoing the filter.
func testTrend(t *testing.T, s store.Store) {
	ctx := t.Context()
	recs := genRecords(rand.New(rand.NewPCG(23, 24)), "tr", 400)
	insertBatches(t, s, recs, 90)
	for _, g := range []struct {
		g      store.Granularity
		bucket func(time.Time) time.Time
	}{{store.Hourly, hourOf}, {store.Daily, dayOf}} {
		for _, f := range totalsFilters() {
			checkTrend(t, s, g.g, f, trendTotals(recs, f, g.bucket))
		}
	}
	for _, f := range []store.UsageFilter{{Status: 200}, {Before: &store.UsageCursor{CreatedAt: at(time.Hour)}}} {
		if _, err := s.Trend(ctx, store.Daily, f); !errors.Is(err, store.ErrFilterUnsupported) {
			t.Errorf("Trend(%+v) = %v, want ErrFilterUnsupported", f, err)
		}
	}
	if _, err := s.Trend(ctx, "week", store.UsageFilter{}); err == nil {
		t.Error("Trend of an unknown granularity succeeded")
	}
}

// checkTrend compares Trend(g, f) with want, totals by period in ms.
func checkTrend(t *testing.T, s store.Store, g store.Granularity, f store.UsageFilter, want map[int64]store.Counters) {
	t.Helper()
	rows, err := s.Trend(t.Context(), g, f)
	must(t, err)
	got := map[int64]store.Counters{}
	for i, r := range rows {
		if r.KeyID != f.KeyID || r.AccountID != f.AccountID || r.Model != f.Model {
			t.Errorf("Trend(%s, %+v) row of %v names %q/%q/%q, want the filter's", g, f, r.Period, r.KeyID, r.AccountID, r.Model)
		}
		if i > 0 && !rows[i-1].Period.Before(r.Period) {
			t.Errorf("Trend(%s, %+v): %v listed after %v", g, f, r.Period, rows[i-1].Period)
		}
		got[r.Period.UnixMilli()] = r.Counters
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Trend(%s, %+v):\n got %+v\nwant %+v", g, f, got, want)
	}
}
