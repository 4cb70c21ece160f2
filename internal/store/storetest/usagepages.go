package storetest

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// pageRecords returns n records of 3 keys, 3 accounts, 3 models and 4
// statuses, on only 40 distinct instants over two hours, so most pages
// start or end among records of the same millisecond.
func pageRecords(rng *rand.Rand, prefix string, n int) []store.UsageRecord {
	statuses := []int{200, 200, 200, 429, 500, 529}
	recs := make([]store.UsageRecord, n)
	for i := range recs {
		recs[i] = store.UsageRecord{
			RequestID: fmt.Sprintf("%s-%d", prefix, i),
			KeyID:     store.KeyID(fmt.Sprintf("key-%d", rng.IntN(3))),
			AccountID: store.AccountID(fmt.Sprintf("acct-%d", rng.IntN(3))),
			Model:     fmt.Sprintf("model-%d", rng.IntN(3)),
			Status:    statuses[rng.IntN(len(statuses))],
			Input:     rng.Int64N(1000),
			CreatedAt: at(time.Duration(rng.IntN(40)) * 3 * time.Minute),
		}
	}
	return recs
}

// insertShuffled stores recs in batches of random size, in the order
// given, and returns them with the Seq the store gave each, after
// checking through ListUsage that Seq increases in insertion order.
func insertShuffled(t *testing.T, s store.Store, rng *rand.Rand, recs []store.UsageRecord) []store.UsageRecord {
	t.Helper()
	for i := 0; i < len(recs); {
		n := 1 + rng.IntN(60)
		_, err := s.InsertUsage(t.Context(), recs[i:min(i+n, len(recs))])
		must(t, err)
		i += n
	}
	order := map[string]int{}
	for i, r := range recs {
		order[r.RequestID] = i
	}
	stored := listAll(t, s)
	if len(stored) != len(recs) {
		t.Fatalf("%d records stored, want %d", len(stored), len(recs))
	}
	byInsertion := slices.Clone(stored)
	slices.SortFunc(byInsertion, func(a, b store.UsageRecord) int {
		return cmp.Compare(order[a.RequestID], order[b.RequestID])
	})
	for i := 1; i < len(byInsertion); i++ {
		if a, b := byInsertion[i-1], byInsertion[i]; a.Seq <= 0 || b.Seq <= a.Seq {
			t.Fatalf("Seq of %s (inserted before %s) = %d, of %s = %d: want positive and increasing",
				a.RequestID, b.RequestID, a.Seq, b.RequestID, b.Seq)
		}
	}
	return byInsertion
}

// newestFirst is the contract's order: time descending, then Seq.
func newestFirst(a, b store.UsageRecord) int {
	return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(b.Seq, a.Seq))
}

// afterCursor reports whether r comes after c in the newest-first order.
func afterCursor(r store.UsageRecord, c *store.UsageCursor) bool {
	if c == nil {
		return true
	}
	return r.CreatedAt.UnixMilli() < c.CreatedAt.UnixMilli() ||
		(r.CreatedAt.UnixMilli() == c.CreatedAt.UnixMilli() && r.Seq < c.Seq)
}

// isCandidate reports whether r is a ScanUsage candidate of f: in its
// key, account, time range and after its cursor.
func isCandidate(r store.UsageRecord, f store.UsageFilter) bool {
	return (f.KeyID == "" || r.KeyID == f.KeyID) &&
		(f.AccountID == "" || r.AccountID == f.AccountID) &&
		(f.From.IsZero() || !r.CreatedAt.Before(f.From)) &&
		(f.To.IsZero() || r.CreatedAt.Before(f.To)) &&
		afterCursor(r, f.Before)
}

// matches reports whether r is in f, as the contract defines it.
func matches(r store.UsageRecord, f store.UsageFilter) bool {
	return isCandidate(r, f) && (f.Model == "" || r.Model == f.Model) && (f.Status == 0 || r.Status == f.Status)
}

// want returns the records of all in f, newest first.
func wantPage(all []store.UsageRecord, f store.UsageFilter) []store.UsageRecord {
	var out []store.UsageRecord
	for _, r := range all {
		if matches(r, f) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, newestFirst)
	return out
}

func requestIDs(recs []store.UsageRecord) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.RequestID
	}
	return out
}

// pageFilters are the filters the page tests walk: every field alone and
// in combinations, ranges that cut through instants with many records.
func pageFilters() []store.UsageFilter {
	return []store.UsageFilter{
		{},
		{KeyID: "key-1"},
		{AccountID: "acct-2"},
		{KeyID: "key-0", AccountID: "acct-1"},
		{Model: "model-2"},
		{Status: 500},
		{KeyID: "key-2", Model: "model-0"},
		{AccountID: "acct-0", Status: 200},
		{Model: "model-1", Status: 529},
		{KeyID: "key-1", AccountID: "acct-1", Model: "model-1", Status: 200},
		{From: at(30 * time.Minute), To: at(90 * time.Minute)},
		{KeyID: "key-0", Model: "model-2", From: at(15 * time.Minute)},
		{Status: 429, To: at(60 * time.Minute)},
		{Model: "no-such-model"},
		{KeyID: "nobody"},
	}
}

// testUsagePages walks every filter page by page, with ListUsage and
// with ScanUsage under several scan budgets, following the cursors, and
// compares the pages with the records worked out by hand.
func testUsagePages(t *testing.T, s store.Store) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(7, 8))
	all := insertShuffled(t, s, rng, pageRecords(rng, "pg", 200))

	for _, f := range pageFilters() {
		ref := wantPage(all, f)
		t.Run(fmt.Sprintf("%+v", f), func(t *testing.T) {
			got, err := s.ListUsage(ctx, f, 0)
			must(t, err)
			if !slices.Equal(requestIDs(got), requestIDs(ref)) {
				t.Fatalf("ListUsage(no limit) = %v\nwant %v", requestIDs(got), requestIDs(ref))
			}
			for _, limit := range []int{3, 50} {
				// ListUsage: full pages until the last.
				var walked []store.UsageRecord
				pf := f
				for calls := 0; ; calls++ {
					if calls > len(all)+1 {
						t.Fatalf("ListUsage pages of %d make no progress from %+v", limit, *pf.Before)
					}
					page, err := s.ListUsage(ctx, pf, limit)
					must(t, err)
					walked = append(walked, page...)
					if len(page) < limit {
						break
					}
					pf.Before = page[len(page)-1].Cursor()
				}
				if !slices.Equal(requestIDs(walked), requestIDs(ref)) {
					t.Errorf("ListUsage pages of %d = %v\nwant %v", limit, requestIDs(walked), requestIDs(ref))
				}
			}
			for _, ls := range [][2]int{{3, 0}, {4, 1}, {7, 10}, {50, 40}} {
				walkScan(t, s, all, f, ls[0], ls[1], ref)
			}
		})
	}
}

// walkScan pages through f with ScanUsage and checks each page against
// the contract: the matches in order, at most limit, no more candidates
// looked at than the budget, and a nil Next only at the end.
func walkScan(t *testing.T, s store.Store, all []store.UsageRecord, f store.UsageFilter, limit, scan int, ref []store.UsageRecord) {
	t.Helper()
	budget := scan
	if budget <= 0 {
		budget = store.DefaultUsageScan
	}
	budget = max(budget, limit)
	var cands []store.UsageRecord // f's candidates, newest first
	for _, r := range all {
		if isCandidate(r, f) {
			cands = append(cands, r)
		}
	}
	slices.SortFunc(cands, newestFirst)
	var walked []store.UsageRecord
	pf, pos := f, 0 // the candidates before pos were looked at
	for calls := 0; ; calls++ {
		if calls > len(all)+2 {
			t.Fatalf("ScanUsage(limit %d, scan %d) makes no progress from %+v", limit, scan, pf.Before)
		}
		page, err := s.ScanUsage(t.Context(), pf, limit, scan)
		must(t, err)
		if len(page.Records) > limit {
			t.Fatalf("ScanUsage(limit %d) returned %d records", limit, len(page.Records))
		}
		walked = append(walked, page.Records...)
		// The page must hold exactly the matches up to Next (to the end
		// when Next is nil), and Next be no further than the budget.
		end := len(cands)
		if page.Next != nil {
			end = pos
			for end < len(cands) && !afterCursor(cands[end], page.Next) {
				end++
			}
			if end-pos > budget {
				t.Fatalf("ScanUsage(limit %d, scan %d) from %+v moved past %d candidates", limit, scan, pf.Before, end-pos)
			}
		}
		var between []store.UsageRecord
		for _, r := range cands[pos:end] {
			if matches(r, f) {
				between = append(between, r)
			}
		}
		if !slices.Equal(requestIDs(between), requestIDs(page.Records)) {
			t.Fatalf("ScanUsage(limit %d, scan %d) from %+v returned %v, next %+v; the matches up to there are %v",
				limit, scan, pf.Before, requestIDs(page.Records), page.Next, requestIDs(between))
		}
		if page.Next == nil {
			break
		}
		pos = end
		pf.Before = page.Next
	}
	if !slices.Equal(requestIDs(walked), requestIDs(ref)) {
		t.Errorf("ScanUsage pages (limit %d, scan %d) = %v\nwant %v", limit, scan, requestIDs(walked), requestIDs(ref))
	}
}

// testUsageCursorAnywhere: a cursor need not be a stored record's, nor
// one of the filter: the page starts where the cursor would sit.
func testUsageCursorAnywhere(t *testing.T, s store.Store) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(9, 10))
	all := insertShuffled(t, s, rng, pageRecords(rng, "cur", 120))
	maxSeq := slices.MaxFunc(all, func(a, b store.UsageRecord) int { return cmp.Compare(a.Seq, b.Seq) }).Seq
	mid := all[len(all)/2]
	for _, c := range []store.UsageCursor{
		{CreatedAt: mid.CreatedAt, Seq: 0},          // before every record of its instant
		{CreatedAt: mid.CreatedAt, Seq: maxSeq + 1}, // after every record of its instant
		{CreatedAt: mid.CreatedAt, Seq: mid.Seq},
		{CreatedAt: mid.CreatedAt.Add(time.Millisecond), Seq: 1}, // an instant without records
		{CreatedAt: at(-time.Hour), Seq: maxSeq},                 // before everything
		{CreatedAt: at(24 * time.Hour), Seq: 1},                  // after everything
	} {
		for _, f := range []store.UsageFilter{{}, {KeyID: mid.KeyID}, {Model: mid.Model}, {To: mid.CreatedAt}} {
			f.Before = &c
			ref := wantPage(all, f)
			got, err := s.ListUsage(ctx, f, 0)
			must(t, err)
			if !slices.Equal(requestIDs(got), requestIDs(ref)) {
				t.Errorf("ListUsage(%+v, before %+v) = %v\nwant %v", f, c, requestIDs(got), requestIDs(ref))
			}
			page, err := s.ScanUsage(ctx, f, len(all), 0)
			must(t, err)
			if !slices.Equal(requestIDs(page.Records), requestIDs(ref)) || page.Next != nil {
				t.Errorf("ScanUsage(%+v, before %+v) = %v, next %+v\nwant %v, no next", f, c, requestIDs(page.Records), page.Next, requestIDs(ref))
			}
		}
	}
	if _, err := s.ScanUsage(ctx, store.UsageFilter{}, 0, 10); err == nil {
		t.Error("ScanUsage with limit 0 succeeded")
	}
}

// testSummarizeUsageFilters: SummarizeUsage honours Model and refuses
// what rollups cannot answer.
func testSummarizeUsageFilters(t *testing.T, s store.Store) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(11, 12))
	all := insertShuffled(t, s, rng, pageRecords(rng, "sf", 200))
	for _, f := range []store.UsageFilter{
		{Model: "model-1"},
		{Model: "model-0", KeyID: "key-2"},
		{Model: "model-2", AccountID: "acct-1", From: at(20 * time.Minute), To: at(100 * time.Minute)},
	} {
		var wantTotal store.Counters
		wantModels := map[string]bool{}
		for _, r := range all {
			if matches(r, f) {
				wantTotal.Add(r)
				wantModels[r.Model] = true
			}
		}
		sum, err := s.SummarizeUsage(ctx, f)
		must(t, err)
		var got store.Counters
		for _, row := range sum.Models {
			got.Merge(row.Counters)
			if !wantModels[row.Model] {
				t.Errorf("SummarizeUsage(%+v) lists model %q", f, row.Model)
			}
		}
		if got != wantTotal {
			t.Errorf("SummarizeUsage(%+v) totals %+v, want %+v", f, got, wantTotal)
		}
	}
	for _, f := range []store.UsageFilter{{Status: 500}, {Before: all[0].Cursor()}} {
		if _, err := s.SummarizeUsage(ctx, f); !errors.Is(err, store.ErrFilterUnsupported) {
			t.Errorf("SummarizeUsage(%+v) = %v, want ErrFilterUnsupported", f, err)
		}
	}
}

// testPurgeUsage removes the records before a cutoff, more than one batch
// of them, and checks what stays: the newer records under every filter
// and index, the rollups, and the summaries of whole days. A purged
// record's identity is free again.
func testPurgeUsage(t *testing.T, s store.Store) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(13, 14))
	const old, kept = 2100, 150
	cut := dayOf(base).AddDate(0, 0, 3) // midnight in the store's zone
	recs := make([]store.UsageRecord, 0, old+kept)
	for i := range old + kept {
		r := store.UsageRecord{
			RequestID: fmt.Sprintf("pu-%d", i),
			Attempt:   rng.IntN(2),
			KeyID:     store.KeyID(fmt.Sprintf("key-%d", rng.IntN(3))),
			AccountID: store.AccountID(fmt.Sprintf("acct-%d", rng.IntN(3))),
			Model:     fmt.Sprintf("model-%d", rng.IntN(2)),
			Status:    200,
			Input:     rng.Int64N(1000),
			CostPico:  rng.Int64N(1e9),
		}
		if i < old {
			r.CreatedAt = cut.Add(-time.Duration(1+rng.Int64N(int64(48*time.Hour/time.Millisecond))) * time.Millisecond)
		} else {
			r.CreatedAt = cut.Add(time.Duration(rng.Int64N(int64(24*time.Hour/time.Millisecond))) * time.Millisecond)
		}
		recs = append(recs, r)
	}
	recs[old].CreatedAt = cut // exactly at the cutoff: kept
	rng.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	insertBatches(t, s, recs, 500)
	rollups := func() map[store.Granularity][]store.Rollup {
		out := map[store.Granularity][]store.Rollup{}
		for _, g := range []store.Granularity{store.Hourly, store.Daily} {
			rows, err := s.Rollups(ctx, g, time.Time{}, time.Time{})
			must(t, err)
			slices.SortFunc(rows, func(a, b store.Rollup) int {
				return cmp.Or(a.Period.Compare(b.Period), cmp.Compare(a.KeyID, b.KeyID),
					cmp.Compare(a.AccountID, b.AccountID), cmp.Compare(a.Model, b.Model))
			})
			out[g] = rows
		}
		return out
	}
	summaries := func() []string {
		var out []string
		for _, f := range []store.UsageFilter{{}, {KeyID: "key-1"}, {AccountID: "acct-2", Model: "model-1"},
			{From: cut.AddDate(0, 0, -1), To: cut.AddDate(0, 0, 1)}} {
			sum, err := s.SummarizeUsage(ctx, f)
			must(t, err)
			models, err := s.ModelTotals(ctx, f)
			must(t, err)
			days, err := s.Trend(ctx, store.Daily, f)
			must(t, err)
			hours, err := s.Trend(ctx, store.Hourly, f)
			must(t, err)
			out = append(out, fmt.Sprintf("summary %+v\nmodels %+v\ndays %+v\nhours %+v", sum, models, days, hours))
		}
		return out
	}
	rollupsBefore, sumsBefore := rollups(), summaries()

	n, err := s.PurgeUsage(ctx, cut)
	must(t, err)
	if n != old {
		t.Errorf("PurgeUsage = %d, want %d", n, old)
	}
	var stay []store.UsageRecord
	for _, r := range listAll(t, s) {
		stay = append(stay, r)
		if r.CreatedAt.Before(cut) {
			t.Errorf("record %s of %v outlived the purge before %v", r.RequestID, r.CreatedAt, cut)
		}
	}
	if len(stay) != kept {
		t.Errorf("%d records stay, want %d", len(stay), kept)
	}
	// Every index holds only what stays: a scan with a budget of one more
	// than the candidates that stay finds the end of its index.
	for _, f := range []store.UsageFilter{{}, {KeyID: "key-0"}, {AccountID: "acct-1"},
		{KeyID: "key-2", AccountID: "acct-2"}, {Model: "model-1"}} {
		ref := wantPage(stay, f)
		cands := 0
		for _, r := range stay {
			if isCandidate(r, f) {
				cands++
			}
		}
		page, err := s.ScanUsage(ctx, f, len(ref)+1, cands+1)
		must(t, err)
		if !slices.Equal(requestIDs(page.Records), requestIDs(ref)) || page.Next != nil {
			t.Errorf("after the purge, ScanUsage(%+v) = %d records, next %+v; want %d, no next",
				f, len(page.Records), page.Next, len(ref))
		}
	}
	if after := rollups(); !slicesEqualRollups(after, rollupsBefore) {
		t.Error("PurgeUsage changed the rollups")
	}
	for i, sum := range summaries() {
		if sum != sumsBefore[i] {
			t.Errorf("totals %d after the purge:\n%s\nwant\n%s\n(whole days and hours come from rollups)", i, sum, sumsBefore[i])
		}
	}
	n, err = s.PurgeUsage(ctx, cut)
	must(t, err)
	if n != 0 {
		t.Errorf("second PurgeUsage = %d, want 0", n)
	}
	// A purged identity can be stored again.
	var gone store.UsageRecord
	for _, r := range recs {
		if r.CreatedAt.Before(cut) {
			gone = r
			break
		}
	}
	n, err = s.InsertUsage(ctx, []store.UsageRecord{gone})
	must(t, err)
	if n != 1 {
		t.Errorf("InsertUsage of a purged record = %d, want 1", n)
	}
}

func slicesEqualRollups(a, b map[store.Granularity][]store.Rollup) bool {
	for _, g := range []store.Granularity{store.Hourly, store.Daily} {
		if len(a[g]) != len(b[g]) {
			return false
		}
		for i := range a[g] {
			x, y := a[g][i], b[g][i]
			if !x.Period.Equal(y.Period) || x.KeyID != y.KeyID || x.AccountID != y.AccountID ||
				x.Model != y.Model || x.Counters != y.Counters {
				return false
			}
		}
	}
	return true
}
