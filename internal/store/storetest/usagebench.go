package storetest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// The usage page benchmark: how long the console's page of 50 records
// takes with 1 000 and with 1 000 000 records stored, first and deep.
// It is a test gated by CRS_BENCH_USAGE=1, not a Go benchmark: filling a
// million records takes a minute or more, once, and the figures are page
// times, not a loop. Each backend's package runs it against a store of
// its own (see RunUsagePageBench).

// UsageBenchEnd is the newest record time of the benchmark's records: a
// page timed "now" shows them in its trend when its clock says this.
var UsageBenchEnd = time.Date(2025, time.March, 10, 12, 0, 0, 0, time.UTC)

// UsageBenchRecords returns records from to to (exclusive) of a set of
// total: 50 keys, each mostly on one of 10 accounts (sticky sessions), 4
// models, 1 in 50 a failure status, spread over the 7 days before
// UsageBenchEnd in time order, as a relay writes them.
func UsageBenchRecords(rng *rand.Rand, from, to, total int) []store.UsageRecord {
	const week = int64(7 * 24 * time.Hour)
	recs := make([]store.UsageRecord, 0, to-from)
	for i := from; i < to; i++ {
		key := rng.IntN(50)
		acct := key % 10
		if rng.IntN(10) == 0 {
			acct = rng.IntN(10)
		}
		status := 200
		if rng.IntN(50) == 0 {
			status = []int{429, 500, 529}[rng.IntN(3)]
		}
		recs = append(recs, store.UsageRecord{
			RequestID: fmt.Sprintf("bench-%d", i),
			KeyID:     store.KeyID(fmt.Sprintf("key_%02d", key)),
			AccountID: store.AccountID(fmt.Sprintf("acc_%02d", acct)),
			Model:     fmt.Sprintf("claude-model-%d", rng.IntN(4)),
			Input:     rng.Int64N(100_000), Output: rng.Int64N(10_000), CacheRead: rng.Int64N(200_000),
			CostPico: rng.Int64N(1e12), RatedCostPico: rng.Int64N(1e12),
			Stream: true, Status: status, LatencyMs: rng.Int64N(60_000), FirstByteMs: rng.Int64N(2_000),
			CreatedAt: UsageBenchEnd.Add(-time.Duration(week - week/int64(total)*int64(i))),
		})
	}
	return recs
}

// PageTiming is one measured page: the median of several calls.
type PageTiming struct {
	Filter  string
	Deep    bool          // the 20th page (or the last, when fewer)
	Page    int           // which page it is, from 1
	Records int           // records the page returned
	Took    time.Duration // median of the calls
}

// usageBenchFilter is a filter the benchmark times, with the scan budget
// its pages get (0: the default).
type usageBenchFilter struct {
	name string
	f    store.UsageFilter
	scan int
}

// usageBenchFilters are the console's filters the benchmark times. The
// last row is one call's worth of a sparse filter's scan: the longest a
// page request keeps the store busy at once.
func usageBenchFilters() []usageBenchFilter {
	day := UsageBenchEnd.Add(-72 * time.Hour)
	return []usageBenchFilter{
		{"none", store.UsageFilter{}, 0},
		{"key", store.UsageFilter{KeyID: "key_07"}, 0},
		{"account", store.UsageFilter{AccountID: "acc_03"}, 0},
		{"model", store.UsageFilter{Model: "claude-model-2"}, 0},
		{"key+model", store.UsageFilter{KeyID: "key_07", Model: "claude-model-2"}, 0},
		{"time range (1 day)", store.UsageFilter{From: day, To: day.Add(24 * time.Hour)}, 0},
		{"status 500", store.UsageFilter{Status: 500}, 0},
		{"status 500, scan 1000", store.UsageFilter{Status: 500}, 1000},
	}
}

// BenchUsagePages times pages of 50 with ScanUsage on s, which must hold
// the benchmark's records: for each filter the first page and the 20th,
// reached by following Next. Each page is called reps times and the
// median kept.
func BenchUsagePages(t *testing.T, s store.Store, reps int) []PageTiming {
	var out []PageTiming
	for _, bf := range usageBenchFilters() {
		out = append(out, benchFilter(t, s, bf, reps)...)
	}
	return out
}

// benchFilter times the first and the 20th page of bf.
func benchFilter(t *testing.T, s store.Store, bf usageBenchFilter, reps int) []PageTiming {
	ctx := t.Context()
	var out []PageTiming
	timeIt := func(f store.UsageFilter) (int, time.Duration) {
		took := make([]time.Duration, reps)
		n := 0
		for i := range took {
			start := time.Now()
			page, err := s.ScanUsage(ctx, f, 50, bf.scan)
			took[i] = time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			n = len(page.Records)
		}
		slices.Sort(took)
		return n, took[len(took)/2]
	}
	n, d := timeIt(bf.f)
	out = append(out, PageTiming{Filter: bf.name, Page: 1, Records: n, Took: d})
	f := bf.f
	page := 1
	for ; page < 20; page++ {
		p, err := s.ScanUsage(ctx, f, 50, bf.scan)
		if err != nil {
			t.Fatal(err)
		}
		if p.Next == nil {
			break
		}
		f.Before = p.Next
	}
	n, d = timeIt(f)
	return append(out, PageTiming{Filter: bf.name, Deep: true, Page: page, Records: n, Took: d})
}

// FillUsage stores the benchmark's records [have, n) in s, batch records
// per InsertUsage, and logs the rate.
func FillUsage(t *testing.T, s store.Store, have, n, batch int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(have), 21))
	start := time.Now()
	for i := have; i < n; i += batch {
		if _, err := s.InsertUsage(t.Context(), UsageBenchRecords(rng, i, min(i+batch, n), n)); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); n > have {
		t.Logf("stored records %d to %d in %v (%.0f records/s)", have, n, d.Round(time.Millisecond),
			float64(n-have)/d.Seconds())
	}
}

// RunUsagePageBench is the benchmark a backend's test calls. It runs only
// with CRS_BENCH_USAGE=1. open returns an empty store that lives until the
// test ends; the sizes are CRS_BENCH_USAGE_SIZES (default
// "1000,100000,1000000"), each filled on top of the one before, and batch
// is the records per InsertUsage. It logs a table of page times per size
// (with the records each page returned and which page it was), and the
// ratios of the largest size to the smallest and to the one before; then
// it purges the older half of the records and logs how fast.
func RunUsagePageBench(t *testing.T, open func(t *testing.T) store.Store, batch int) {
	if os.Getenv("CRS_BENCH_USAGE") != "1" {
		t.Skip("set CRS_BENCH_USAGE=1 to run the usage page benchmark (fills 1 000 000 records)")
	}
	sizes := []int{1000, 100_000, 1_000_000}
	if v := os.Getenv("CRS_BENCH_USAGE_SIZES"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				t.Fatalf("CRS_BENCH_USAGE_SIZES: %q is not a positive number", f)
			}
			sizes = append(sizes, n)
		}
		slices.Sort(sizes)
	}
	s := open(t)
	results := make([][]PageTiming, len(sizes))
	have := 0
	for i, n := range sizes {
		FillUsage(t, s, have, n, batch)
		have = n
		results[i] = BenchUsagePages(t, s, 21)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| filter | page |")
	for _, n := range sizes {
		fmt.Fprintf(&b, " %d records |", n)
	}
	last := len(sizes) - 1
	if last >= 1 {
		fmt.Fprintf(&b, " %d / %d |", sizes[last], sizes[0])
	}
	if last >= 2 {
		fmt.Fprintf(&b, " %d / %d |", sizes[last], sizes[last-1])
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---:|", len(sizes)+min(last, 2)) + "\n")
	ratio := func(a, b PageTiming) string {
		return fmt.Sprintf(" %.1f× |", float64(a.Took)/float64(max(b.Took, time.Microsecond)))
	}
	for j, first := range results[0] {
		page := "first"
		if first.Deep {
			page = "20th"
		}
		fmt.Fprintf(&b, "| %s | %s |", first.Filter, page)
		for i := range sizes {
			r := results[i][j]
			note := ""
			if r.Records < 50 || r.Page != first.Page && !first.Deep || first.Deep && r.Page < 20 {
				note = fmt.Sprintf(" (%d, p%d)", r.Records, r.Page)
			}
			fmt.Fprintf(&b, " %.2f ms%s |", float64(r.Took.Microseconds())/1000, note)
		}
		if last >= 1 {
			b.WriteString(ratio(results[last][j], first))
		}
		if last >= 2 {
			b.WriteString(ratio(results[last][j], results[last-1][j]))
		}
		b.WriteString("\n")
	}
	t.Log(b.String())

	// Retention of the older half, as USAGE_RETENTION_DAYS would remove it.
	start := time.Now()
	n, err := s.PurgeUsage(t.Context(), UsageBenchEnd.Add(-84*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	t.Logf("purged %d of %d records in %v (%.0f records/s)", n, have, d.Round(time.Millisecond), float64(n)/d.Seconds())
}
