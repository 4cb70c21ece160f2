package redis

import (
	"fmt"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// TestScanUsageCalls: a page under a key costs one round trip however
// deep; a sparse model or status filter spends its budget in script calls
// of at most scanCall entries, so no call keeps Redis busy long, and
// stops at the budget.
func TestScanUsageCalls(t *testing.T) {
	ctx := t.Context()
	s, log := openLogged(t)
	const n = 2*scanCall + 300
	recs := make([]store.UsageRecord, n)
	for i := range recs {
		recs[i] = store.UsageRecord{RequestID: fmt.Sprint("sc-", i), KeyID: "k", AccountID: "a", Model: "m",
			Status: 200, CreatedAt: usageBase.Add(time.Duration(i) * time.Second)}
	}
	recs[5].Status = 500 // the oldest but a few: found only at the end
	for i := 0; i < n; i += 1000 {
		if _, err := s.InsertUsage(ctx, recs[i:min(i+1000, n)]); err != nil {
			t.Fatal(err)
		}
	}
	deep := store.UsageFilter{KeyID: "k", Before: &store.UsageCursor{CreatedAt: recs[n/2].CreatedAt, Seq: 1 << 40}}
	for _, tc := range []struct {
		name      string
		f         store.UsageFilter
		scan      int
		calls     int
		records   int
		nextIsNil bool
	}{
		{"key", store.UsageFilter{KeyID: "k"}, 0, 1, 50, false},
		{"key, deep", deep, 0, 1, 50, false},
		{"status, budget of all", store.UsageFilter{Status: 500}, n + 1, 3, 1, true},
		{"status, budget of half", store.UsageFilter{Status: 500}, n / 2, 2, 0, false},
	} {
		if _, err := s.ScanUsage(ctx, tc.f, 50, tc.scan); err != nil { // loads the script
			t.Fatal(err)
		}
		var page store.UsagePage
		var err error
		sent := log.during(func() { page, err = s.ScanUsage(ctx, tc.f, 50, tc.scan) })
		if err != nil {
			t.Fatal(err)
		}
		if len(sent) != tc.calls || len(page.Records) != tc.records || (page.Next == nil) != tc.nextIsNil {
			t.Errorf("%s: %d round trips, %d records, next %+v; want %d, %d, next nil %v",
				tc.name, len(sent), len(page.Records), page.Next, tc.calls, tc.records, tc.nextIsNil)
		}
	}
}
