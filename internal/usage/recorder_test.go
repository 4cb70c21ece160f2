package usage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/sqlite"
)

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func rec(id string, attempt int) store.UsageRecord {
	return store.UsageRecord{RequestID: id, Attempt: attempt, KeyID: "k", AccountID: "a", Model: "m",
		Input: 10, Output: 5, CacheWrite5m: 3, CacheWrite1h: 2, CacheRead: 1, CostPico: 7, CreatedAt: time.Now()}
}

// flaky is the real store with InsertUsage failing or stalling on demand.
type flaky struct {
	store.Store
	fail  atomic.Bool
	stall chan struct{} // when non-nil, InsertUsage waits on it
	calls atomic.Int64
}

func (f *flaky) InsertUsage(ctx context.Context, recs []store.UsageRecord) (int, error) {
	f.calls.Add(1)
	if f.stall != nil {
		<-f.stall
	}
	if f.fail.Load() {
		return 0, errors.New("disk on fire")
	}
	return f.Store.InsertUsage(ctx, recs)
}

func total(t *testing.T, st store.Store) store.Counters {
	t.Helper()
	sum, err := st.SummarizeUsage(context.Background(), store.UsageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var c store.Counters
	for _, r := range sum.Keys {
		c.Requests += r.Requests
		c.Input += r.Input
	}
	return c
}

func TestRecordIsCommittedWhenItReturns(t *testing.T) {
	st := openStore(t)
	f := &flaky{Store: st}
	r := NewRecorder(f, Options{SpoolDir: t.TempDir()})
	r.Start()
	defer r.Close(context.Background())
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Record(context.Background(), rec(fmt.Sprint("req", i), 1)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := total(t, st).Requests; got != 200 {
		t.Fatalf("committed %d records, want 200", got)
	}
	if calls := f.calls.Load(); calls >= 200 {
		t.Fatalf("%d transactions for 200 concurrent records: no group commit", calls)
	}
	t.Logf("200 concurrent records in %d transactions", f.calls.Load())
}

func TestSlowStoreSpoolsAfterMaxWaitAndReplayIsIdempotent(t *testing.T) {
	st := openStore(t)
	f := &flaky{Store: st, stall: make(chan struct{})}
	spool := t.TempDir()
	r := NewRecorder(f, Options{SpoolDir: spool, MaxWait: 50 * time.Millisecond})
	r.Start()
	start := time.Now()
	if err := r.Record(context.Background(), rec("slow", 1)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > time.Second {
		t.Fatalf("Record returned after %v, want about MaxWait", d)
	}
	files, _ := filepath.Glob(filepath.Join(spool, "spool-*.jsonl"))
	if len(files) != 1 {
		t.Fatalf("spool files: %v", files)
	}
	close(f.stall) // the store recovers and commits the same record too
	r.Close(context.Background())
	n, err := ReplaySpool(context.Background(), st, spool)
	if err != nil {
		t.Fatal(err)
	}
	if got := total(t, st).Requests; got != 1 || n != 0 {
		t.Fatalf("after replay: %d records (replay added %d), want exactly 1", got, n)
	}
	if files, _ := filepath.Glob(filepath.Join(spool, "*")); len(files) != 0 {
		t.Fatalf("spool not removed: %v", files)
	}
}

func TestFailingStoreSpoolsAndReplayRestores(t *testing.T) {
	st := openStore(t)
	f := &flaky{Store: st}
	f.fail.Store(true)
	spool := t.TempDir()
	r := NewRecorder(f, Options{SpoolDir: spool})
	r.Start()
	for i := range 3 {
		if err := r.Record(context.Background(), rec(fmt.Sprint("r", i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	r.Close(context.Background())
	if got := total(t, st).Requests; got != 0 {
		t.Fatalf("failing store holds %d records", got)
	}
	// A torn last line (crash mid-write) must not stop the replay.
	files, _ := filepath.Glob(filepath.Join(spool, "spool-*.jsonl"))
	fh, _ := os.OpenFile(files[0], os.O_APPEND|os.O_WRONLY, 0)
	fh.WriteString(`{"RequestID":"torn","Att`)
	fh.Close()
	n, err := ReplaySpool(context.Background(), st, spool)
	if err != nil || n != 3 {
		t.Fatalf("replay added %d, err %v; want 3", n, err)
	}
	if got := total(t, st).Requests; got != 3 {
		t.Fatalf("after replay: %d", got)
	}
}

func TestRecordAfterCloseSpools(t *testing.T) {
	st := openStore(t)
	spool := t.TempDir()
	r := NewRecorder(st, Options{SpoolDir: spool})
	r.Start()
	r.Close(context.Background())
	if err := r.Record(context.Background(), rec("late", 1)); err != nil {
		t.Fatal(err)
	}
	if n, err := ReplaySpool(context.Background(), st, spool); err != nil || n != 1 {
		t.Fatalf("replay = %d, %v", n, err)
	}
}
