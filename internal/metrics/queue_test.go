package metrics

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/policy"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/memcounters"
	"github.com/crs-relay/crs/internal/store/sqlite"
	"github.com/crs-relay/crs/internal/usage"
)

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestKeyQueueMetrics runs a real policy engine with the Metrics as its
// queue observer: a request queued behind a key's only slot shows in
// crs_key_queue_depth while it waits, its wait lands in
// crs_key_queue_wait_seconds{outcome="served"}, and the wait is not part
// of its overhead. A wait that times out is counted as such.
func TestKeyQueueMetrics(t *testing.T) {
	m := New(Options{})
	yes := true
	e := policy.New(policy.Options{Counters: memcounters.New(time.Now), QueueObserver: m, QueueTimeout: 400 * time.Millisecond})
	key := store.Key{ID: "k", Policy: store.KeyPolicy{Concurrency: 1, Queue: &yes}}
	req := policy.Request{Platform: store.PlatformClaude, Path: "/api/v1/messages", RequestID: "r"}
	hold, d := e.Acquire(t.Context(), key, req)
	if d != nil {
		t.Fatal(d)
	}

	x := NewExchange(time.Now())
	ctx := WithExchange(t.Context(), x)
	done := make(chan *policy.Denial, 1)
	var release func()
	go func() {
		var d *policy.Denial
		release, d = e.Acquire(ctx, key, req)
		done <- d
	}()
	waitUntil(t, "the request to queue", func() bool { return scrape(t, m).Sum("crs_key_queue_depth") == 1 })
	const held = 250 * time.Millisecond
	time.Sleep(held)
	hold()
	if d := <-done; d != nil {
		t.Fatal(d)
	}
	sum := x.Summary(time.Now())
	release()
	if sum.Queued < held || sum.Overhead > 50*time.Millisecond || sum.Overhead+sum.Queued > sum.Total+time.Millisecond {
		t.Fatalf("queued %v, overhead %v, total %v: the wait must count as queued, not as overhead", sum.Queued, sum.Overhead, sum.Total)
	}
	s := scrape(t, m)
	if depth := s.Sum("crs_key_queue_depth"); depth != 0 {
		t.Fatalf("depth %v after the wait", depth)
	}
	if n, w := s.Sum("crs_key_queue_wait_seconds_count", "outcome", "served"), s.Sum("crs_key_queue_wait_seconds_sum", "outcome", "served"); n != 1 ||
		w < held.Seconds() || w > sum.Total.Seconds() {
		t.Fatalf("served waits: %v observations summing %vs", n, w)
	}

	// A wait that runs out its timeout.
	hold, _ = e.Acquire(t.Context(), key, req)
	if _, d := e.Acquire(t.Context(), key, req); d == nil || d.Code != policy.CodeQueueTimeout {
		t.Fatalf("want a queue timeout, got %v", d)
	}
	hold()
	if n := scrape(t, m).Sum("crs_key_queue_wait_seconds_count", "outcome", "timeout"); n != 1 {
		t.Fatalf("timeouts: %v", n)
	}
}

// stalled is a real store whose usage commits wait until released.
type stalled struct {
	store.Store
	calls chan struct{}
	gate  chan struct{}
}

func (s *stalled) InsertUsage(ctx context.Context, recs []store.UsageRecord) (int, error) {
	s.calls <- struct{}{}
	<-s.gate
	return s.Store.InsertUsage(ctx, recs)
}

// TestUsageQueueDepthMetric: with the store stalled, records pile up in a
// real Recorder's queue and crs_usage_queue_depth says how many; once the
// store answers the gauge goes back to 0.
func TestUsageQueueDepthMetric(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	slow := &stalled{Store: st, calls: make(chan struct{}, 100), gate: make(chan struct{})}
	rec := usage.NewRecorder(slow, usage.Options{SpoolDir: t.TempDir(), MaxWait: 10 * time.Second, Linger: -1})
	rec.Start()
	defer rec.Close(context.Background())
	m := New(Options{UsageQueueDepth: rec.QueueDepth})
	if got := scrape(t, m).Sum("crs_usage_queue_depth"); got != 0 || !scrape(t, m).Has("crs_usage_queue_depth") {
		t.Fatalf("idle depth %v", got)
	}

	var wg sync.WaitGroup
	record := func(id string) {
		wg.Go(func() {
			r := store.UsageRecord{RequestID: id, Attempt: 1, KeyID: "k", AccountID: "a", Model: "m", Input: 1, CreatedAt: time.Now()}
			if err := rec.Record(context.Background(), r); err != nil {
				t.Error(err)
			}
		})
	}
	record("first")
	<-slow.calls // the first record's commit is stalled
	for i := range 12 {
		record(fmt.Sprint("r", i))
	}
	waitUntil(t, "12 queued records", func() bool { return rec.QueueDepth() == 12 })
	if got := scrape(t, m).Sum("crs_usage_queue_depth"); got != 12 {
		t.Fatalf("crs_usage_queue_depth = %v, want 12", got)
	}
	close(slow.gate)
	wg.Wait()
	if got := scrape(t, m).Sum("crs_usage_queue_depth"); got != 0 {
		t.Fatalf("after the commits: %v", got)
	}
}

// TestPriceTableInfo: crs_price_table_info names the table in use, and
// follows a Live table when a new one is stored and reloaded.
func TestPriceTableInfo(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	live := pricing.NewLive(st)
	m := New(Options{Prices: live})
	emb := pricing.Default().Info()
	if s := scrape(t, m); s.Sum("crs_price_table_info", "version", emb.Version, "as_of", emb.AsOf, "origin", "embedded") != 1 {
		t.Fatalf("embedded table not shown: %v", s)
	}
	table := `{"version": "2027.01", "as_of": "2027-01-15", "models": [{"id": "m", "input": 1, "output": 2}]}`
	if _, err := pricing.Save(ctx, st, []byte(table), "https://prices.example/crs.json", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := live.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	s := scrape(t, m)
	if s.Sum("crs_price_table_info", "version", "2027.01", "as_of", "2027-01-15", "origin", "https://prices.example/crs.json") != 1 ||
		s.Has("crs_price_table_info", "version", emb.Version) {
		t.Fatal("the reloaded table is not what crs_price_table_info shows")
	}
}
