package main

import (
	"context"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// TestServeRemovesOldUsage: the running server's leader removes usage
// records older than USAGE_RETENTION_DAYS at start, and keeps newer ones
// and the totals.
func TestServeRemovesOldUsage(t *testing.T) {
	t.Parallel()
	dir := newDataDir(t)
	ctx := context.Background()
	e, err := openEnv(ctx, dir, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := e.Store.InsertUsage(ctx, []store.UsageRecord{
		{RequestID: "old", KeyID: "k", AccountID: "a", Model: "m", Input: 7, Status: 200, CreatedAt: now.Add(-72 * time.Hour)},
		{RequestID: "new", KeyID: "k", AccountID: "a", Model: "m", Input: 5, Status: 200, CreatedAt: now.Add(-time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	e.Close()
	startRelay(t, dir, map[string]string{"USAGE_RETENTION_DAYS": "1"})
	deadline := time.Now().Add(10 * time.Second)
	for {
		e, err := openEnv(ctx, dir, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		recs, err := e.Store.ListUsage(ctx, store.UsageFilter{}, 10)
		sum, serr := e.Store.SummarizeUsage(ctx, store.UsageFilter{})
		e.Close()
		if err != nil || serr != nil {
			t.Fatal(err, serr)
		}
		if len(recs) == 1 && recs[0].RequestID == "new" {
			if len(sum.Keys) != 1 || sum.Keys[0].Requests != 2 || sum.Keys[0].Input != 12 {
				t.Errorf("totals after retention %+v; want both records still counted", sum.Keys)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("records after 10 s: %d, want only the new one", len(recs))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
