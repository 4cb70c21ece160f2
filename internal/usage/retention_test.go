package usage

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/sqlite"
)

// TestRetain runs retention passes against a real store: records older
// than the retention go, newer ones and the rollups stay, 0 days keeps
// everything, and the pass says what it removed.
func TestRetain(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2025, time.June, 30, 12, 34, 56, 0, time.UTC)
	clock := func() time.Time { return now }
	// Ages in hours; the cutoff of 10 days is 240 h ago, cut down to the
	// hour: 12:00 on June 20th. The record 240 h 20 min old is after it.
	ages := map[string]time.Duration{
		"new": time.Hour, "day": 24 * time.Hour, "just-kept": 240*time.Hour + 20*time.Minute,
		"just-gone": 240*time.Hour + 35*time.Minute, "month": 30 * 24 * time.Hour, "year": 365 * 24 * time.Hour,
	}
	var recs []store.UsageRecord
	for id, age := range ages {
		recs = append(recs, store.UsageRecord{RequestID: id, KeyID: "k", AccountID: "a", Model: "m",
			Input: 1, CreatedAt: now.Add(-age)})
	}
	if _, err := st.InsertUsage(ctx, recs); err != nil {
		t.Fatal(err)
	}
	stored := func() []string {
		got, err := st.ListUsage(ctx, store.UsageFilter{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range got {
			ids = append(ids, r.RequestID)
		}
		slices.Sort(ids)
		return ids
	}

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if n, err := Retain(ctx, st, 0, clock, log); err != nil || n != 0 {
		t.Fatalf("Retain(0 days) = %d, %v; want 0, nil", n, err)
	}
	if got := len(stored()); got != len(ages) {
		t.Fatalf("0 days kept %d records, want all %d", got, len(ages))
	}

	n, err := Retain(ctx, st, 10, clock, log)
	if err != nil || n != 3 {
		t.Fatalf("Retain(10 days) = %d, %v; want 3, nil", n, err)
	}
	if got, want := stored(), []string{"day", "just-kept", "new"}; !slices.Equal(got, want) {
		t.Errorf("after 10 days' retention: %v, want %v", got, want)
	}
	if !strings.Contains(logs.String(), "removed=3") || !strings.Contains(logs.String(), "level=INFO") {
		t.Errorf("log does not report the 3 removed at info:\n%s", logs.String())
	}
	sum, err := st.SummarizeUsage(ctx, store.UsageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Keys) != 1 || sum.Keys[0].Requests != int64(len(ages)) {
		t.Errorf("all-time summary after retention = %+v, want %d requests (rollups stay)", sum.Keys, len(ages))
	}

	if n, err := Retain(ctx, st, 10, clock, log); err != nil || n != 0 {
		t.Errorf("second pass = %d, %v; want 0, nil", n, err)
	}
}

// failing is a store whose PurgeUsage fails.
type failing struct{ store.Usage }

func (failing) PurgeUsage(context.Context, time.Time) (int, error) {
	return 0, fmt.Errorf("disk on fire")
}

func TestRetainReportsFailure(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	_, err := Retain(t.Context(), failing{}, 90, time.Now, log)
	if err == nil || !strings.Contains(logs.String(), "disk on fire") {
		t.Errorf("Retain = %v, log %q; want the error returned and logged", err, logs.String())
	}
}
