package redis

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/redis/redistest"
	"github.com/crs-relay/crs/internal/store/storetest"
)

// serverNow reads the Redis server's clock.
func serverNow(t *testing.T, rdb goredis.UniversalClient) time.Time {
	t.Helper()
	now, err := rdb.Time(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return now
}

// TestLeaseUsesServerClock skews this instance's clock by hours both ways
// and checks that a lease still ends the lease after the Redis server's
// now: the instance clock is never consulted for slots. A counter's
// expiry, an instant on the caller's clock, is by contrast measured from
// the instance's now.
func TestLeaseUsesServerClock(t *testing.T) {
	rdb := redistest.Client(t)
	const lease = 10 * time.Minute
	for _, skew := range []time.Duration{-3 * time.Hour, 3 * time.Hour} {
		t.Run(skew.String(), func(t *testing.T) {
			c := openOn(t, rdb).counters
			c.now = func() time.Time { return time.Now().Add(skew) }
			ctx := t.Context()

			before := serverNow(t, rdb)
			ok, err := c.Acquire(ctx, "slot", "h1", 1, lease)
			if err != nil || !ok {
				t.Fatalf("Acquire = %v, %v", ok, err)
			}
			after := serverNow(t, rdb)
			score, err := rdb.ZScore(ctx, c.slotKey("slot"), "h1").Result()
			if err != nil {
				t.Fatal(err)
			}
			end := time.UnixMilli(int64(score))
			// The server's clock has ms resolution in the score; allow
			// the truncation on each side.
			lo, hi := before.Add(lease).Add(-time.Millisecond), after.Add(lease).Add(time.Millisecond)
			if end.Before(lo) || end.After(hi) {
				t.Errorf("lease ends %v, want within [%v, %v] (server now + %v)", end, lo, hi, lease)
			}
			if ttl := rdb.PTTL(ctx, c.slotKey("slot")).Val(); ttl < lease-time.Second || ttl > lease {
				t.Errorf("slot key lives %v, want about the lease %v", ttl, lease)
			}

			// A window that ends an hour from the instance's (skewed) now
			// lives an hour in Redis.
			if _, err := c.Add(ctx, "window", 1, c.now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if ttl := rdb.PTTL(ctx, c.counterKey("window")).Val(); ttl < time.Hour-time.Second || ttl > time.Hour {
				t.Errorf("counter lives %v, want about 1h", ttl)
			}
		})
	}
}

// TestSlotKeyOutlivesLongestLease: a short lease taken after a long one
// does not shorten the key's life, and a set whose holders all crashed
// vanishes by itself, with no call touching it.
func TestSlotKeyOutlivesLongestLease(t *testing.T) {
	rdb := redistest.Client(t)
	c := openOn(t, rdb).counters
	ctx := t.Context()
	for _, a := range []struct {
		name, holder string
		lease        time.Duration
	}{{"long", "h1", time.Minute}, {"long", "h2", 100 * time.Millisecond}, {"short", "h1", 100 * time.Millisecond}} {
		if ok, err := c.Acquire(ctx, a.name, a.holder, 2, a.lease); err != nil || !ok {
			t.Fatalf("Acquire(%s, %s) = %v, %v", a.name, a.holder, ok, err)
		}
	}
	if ttl := rdb.PTTL(ctx, c.slotKey("long")).Val(); ttl < time.Minute-time.Second {
		t.Errorf("slot key with a 1m lease lives %v", ttl)
	}
	time.Sleep(150 * time.Millisecond)
	if n := rdb.Exists(ctx, c.slotKey("short")).Val(); n != 0 {
		t.Errorf("abandoned slot set still exists after its only lease ended")
	}
	if n, err := c.InUse(ctx, "long"); err != nil || n != 1 {
		t.Errorf("InUse(long) = %d, %v; want 1", n, err)
	}
}

// TestCounterExactBeyondFloat adds past 2^53, where a double loses units:
// spend counters in picodollars get there at $9,007.
func TestCounterExactBeyondFloat(t *testing.T) {
	c := openOn(t, redistest.Client(t)).counters
	ctx := t.Context()
	big := int64(1)<<62 + 1
	if v, err := c.Add(ctx, "spend", big, time.Time{}); err != nil || v != big {
		t.Fatalf("Add = %d, %v; want %d", v, err, big)
	}
	want := big + 2
	if v, err := c.Add(ctx, "spend", 2, time.Time{}); err != nil || v != want {
		t.Fatalf("Add = %d, %v; want %d", v, err, want)
	}
	if v, ok, err := c.Get(ctx, "spend"); err != nil || !ok || v != want {
		t.Fatalf("Get = %d, %v, %v; want %d", v, ok, err, want)
	}
	// Overflow is an error, not a wrapped value.
	if _, err := c.Add(ctx, "spend", math.MaxInt64, time.Time{}); err == nil {
		t.Error("Add past MaxInt64 succeeded")
	}
	if v, _, _ := c.Get(ctx, "spend"); v != want {
		t.Errorf("after a failed Add the counter is %d, want %d", v, want)
	}
}

// TestCounterCreatedExpired: an Add whose expiry has passed answers its
// value and leaves nothing behind, like the in-memory counters.
func TestCounterCreatedExpired(t *testing.T) {
	rdb := redistest.Client(t)
	c := openOn(t, rdb).counters
	ctx := t.Context()
	if v, err := c.Add(ctx, "late", 5, time.Now().Add(-time.Second)); err != nil || v != 5 {
		t.Fatalf("Add = %d, %v; want 5", v, err)
	}
	if _, ok, err := c.Get(ctx, "late"); err != nil || ok {
		t.Errorf("Get after an Add created expired: exists %v, %v", ok, err)
	}
}

func TestAcquireRefusesNonPositiveLease(t *testing.T) {
	c := openOn(t, redistest.Client(t)).counters
	for _, lease := range []time.Duration{0, -time.Second} {
		if _, err := c.Acquire(t.Context(), "slot", "h", 1, lease); err == nil {
			t.Errorf("Acquire with lease %v succeeded", lease)
		}
	}
	if n, err := c.InUse(t.Context(), "slot"); err != nil || n != 0 {
		t.Errorf("InUse = %d, %v; want 0", n, err)
	}
}

// TestSlotAndCounterNamesApart: one name used as a counter and as a slot
// set is two keys, never a WRONGTYPE error.
func TestSlotAndCounterNamesApart(t *testing.T) {
	c := openOn(t, redistest.Client(t)).counters
	ctx := t.Context()
	if _, err := c.Add(ctx, "same", 1, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Acquire(ctx, "same", "h", 1, time.Minute); err != nil || !ok {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	if v, ok, err := c.Get(ctx, "same"); err != nil || !ok || v != 1 {
		t.Errorf("Get = %d, %v, %v; want 1", v, ok, err)
	}
}

// openCounted opens a store on a client of its own, so that the store's
// round-trip hook counts only this test's commands, and logs what the
// client sends. keys is a client of the same server for the prefix's
// cleanup, which runs after the store closed its own client.
func openCounted(t *testing.T, rdb goredis.UniversalClient, keys goredis.UniversalClient) (*Store, *commandLog) {
	t.Helper()
	log := &commandLog{}
	rdb.AddHook(log)
	s, err := Open(t.Context(), Options{Client: rdb, OwnClient: true, Prefix: redistest.Prefix(t, keys), Location: storetest.Zone()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	// go-redis keeps pipelines on connections of their own; the first one
	// says hello, which the store counts as round trips. Dial it now.
	if _, err := rdb.Pipelined(t.Context(), func(p goredis.Pipeliner) error { return p.Ping(t.Context()).Err() }); err != nil {
		t.Fatal(err)
	}
	return s, log
}

// pipelines returns the entries of sent that are pipelines.
func pipelines(sent []string) []string {
	var p []string
	for _, s := range sent {
		if strings.Contains(s, "|") {
			p = append(p, s)
		}
	}
	return p
}

// TestBatchRoundTrips runs on a server of the test's own, which starts
// with no script cached: after Open, a batch of 8 operations is one round
// trip (Open loaded the scripts); after SCRIPT FLUSH a batch still answers
// right, by loading the scripts and sending once more what found none;
// and the next batch is one round trip again.
func TestBatchRoundTrips(t *testing.T) {
	addr := redistest.Server(t)
	keys := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { keys.Close() })
	s, log := openCounted(t, goredis.NewClient(&goredis.Options{Addr: addr}), keys)
	checkBatchRoundTrips(t, s, log, func() error { return keys.ScriptFlush(t.Context()).Err() })
}

// TestBatchRoundTripsCluster: on a cluster the batch's names live on
// several nodes; go-redis splits the pipeline among them, still one round
// trip by the store's count (the nodes are asked side by side), and SCRIPT
// FLUSH on every node is recovered from as on one server.
func TestBatchRoundTripsCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	addrs := redistest.Cluster(t)
	keys := redistest.ClusterClient(t, addrs)
	s, log := openCounted(t, redistest.ClusterClient(t, addrs), keys)
	ctx := t.Context()
	nodes := map[string]bool{}
	for _, name := range []string{"a", "b", "c", "d"} {
		node, err := keys.MasterForKey(ctx, s.counters.counterKey(name))
		if err != nil {
			t.Fatal(err)
		}
		nodes[node.String()] = true
	}
	if len(nodes) < 2 {
		t.Fatalf("the batch's counters live on %d node; the test needs several", len(nodes))
	}
	checkBatchRoundTrips(t, s, log, func() error { return keys.ScriptFlush(ctx).Err() })
}

func checkBatchRoundTrips(t *testing.T, s *Store, log *commandLog, flush func() error) {
	ctx := t.Context()
	c := s.counters
	later := time.Now().Add(time.Hour)
	eight := []store.CounterOp{
		{Kind: store.OpAdd, Name: "a", Delta: 1, Expires: later},
		{Kind: store.OpAdd, Name: "b", Delta: 2, Expires: later},
		{Kind: store.OpGet, Name: "a"},
		{Kind: store.OpGet, Name: "c"},
		{Kind: store.OpAcquire, Name: "a", Holder: "h", Limit: 1, Lease: time.Minute},
		{Kind: store.OpAcquire, Name: "d", Holder: "h", Limit: 1, Lease: time.Minute},
		{Kind: store.OpAdd, Name: "d", Delta: 3, Expires: later},
		{Kind: store.OpGet, Name: "b"},
	}
	before := s.RoundTrips()
	var err error
	sent := log.during(func() { err = c.Batch(ctx, eight) })
	if err != nil {
		t.Fatalf("Batch: %v", err)
	}
	if n := s.RoundTrips() - before; n != 1 || len(sent) != 1 {
		t.Errorf("a batch of 8 took %d round trips, sent %v; want 1", n, sent)
	}
	for i, op := range eight {
		if op.Err != nil {
			t.Errorf("op %d: %v", i, op.Err)
		}
	}
	if eight[2].Value != 1 || !eight[2].Exists || eight[3].Exists || !eight[4].Acquired || !eight[5].Acquired ||
		eight[6].Value != 3 || eight[7].Value != 2 {
		t.Errorf("batch answered %+v", eight)
	}

	if err := flush(); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	// A Get after an Add that found no script must read the Add once it
	// ran: the retry sends it again too.
	flushed := []store.CounterOp{
		{Kind: store.OpAdd, Name: "x", Delta: 1, Expires: later},
		{Kind: store.OpGet, Name: "x"},
		{Kind: store.OpAcquire, Name: "x", Holder: "h", Limit: 1, Lease: time.Minute},
		{Kind: store.OpAdd, Name: "x", Delta: 2, Expires: later},
		{Kind: store.OpGet, Name: "x"},
		{Kind: store.OpAdd, Name: "a", Delta: 1, Expires: later},
	}
	sent = log.during(func() { err = c.Batch(ctx, flushed) })
	if err != nil {
		t.Fatalf("Batch after SCRIPT FLUSH: %v", err)
	}
	for i, op := range flushed {
		if op.Err != nil {
			t.Errorf("after SCRIPT FLUSH, op %d: %v", i, op.Err)
		}
	}
	if flushed[0].Value != 1 || flushed[1].Value != 1 || !flushed[1].Exists || !flushed[2].Acquired ||
		flushed[3].Value != 3 || flushed[4].Value != 3 || flushed[5].Value != 2 {
		t.Errorf("after SCRIPT FLUSH the batch answered %+v", flushed)
	}
	if p := pipelines(sent); len(p) != 2 {
		t.Errorf("after SCRIPT FLUSH the batch sent %v; want 2 pipelines (the batch, its retry)", sent)
	}
	// Each Add ran once.
	if v, _, err := c.Get(ctx, "x"); err != nil || v != 3 {
		t.Errorf("x = %d, %v; want 3", v, err)
	}
	if v, _, err := c.Get(ctx, "a"); err != nil || v != 2 {
		t.Errorf("a = %d, %v; want 2", v, err)
	}

	before = s.RoundTrips()
	again := []store.CounterOp{{Kind: store.OpAdd, Name: "x", Delta: 1, Expires: later}, {Kind: store.OpGet, Name: "x"}}
	if err := c.Batch(ctx, again); err != nil || again[0].Err != nil || again[1].Value != 4 {
		t.Fatalf("Batch = %v, %+v", err, again)
	}
	if n := s.RoundTrips() - before; n != 1 {
		t.Errorf("the batch after the reload took %d round trips, want 1", n)
	}
}

// TestBatchServerErrorStaysPerOp: Redis refuses one operation of the
// pipeline (an Add past MaxInt64); only that one fails, the others run.
func TestBatchServerErrorStaysPerOp(t *testing.T) {
	c := openOn(t, redistest.Client(t)).counters
	ctx := t.Context()
	ops := []store.CounterOp{
		{Kind: store.OpAdd, Name: "spend", Delta: math.MaxInt64},
		{Kind: store.OpAdd, Name: "spend", Delta: 1},
		{Kind: store.OpAdd, Name: "other", Delta: 1},
		{Kind: store.OpGet, Name: "spend"},
	}
	if err := c.Batch(ctx, ops); err != nil {
		t.Fatalf("Batch: %v", err)
	}
	if ops[0].Err != nil || ops[0].Value != math.MaxInt64 {
		t.Errorf("op 0: %d, %v", ops[0].Value, ops[0].Err)
	}
	if ops[1].Err == nil {
		t.Error("an Add past MaxInt64 succeeded in a batch")
	}
	if ops[2].Err != nil || ops[2].Value != 1 || ops[3].Err != nil || ops[3].Value != math.MaxInt64 {
		t.Errorf("the operations after the refused one: %+v, %+v", ops[2], ops[3])
	}
}

// TestBatchCannotRun: a batch that cannot reach Redis says so, and fails
// every operation it sent.
func TestBatchCannotRun(t *testing.T) {
	c := openOn(t, redistest.Client(t)).counters
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ops := []store.CounterOp{
		{Kind: store.OpAdd, Name: "n", Delta: 1},
		{Kind: store.OpGet, Name: "n"},
		{Kind: store.OpAcquire, Name: "s", Holder: "h", Limit: 1, Lease: time.Minute},
	}
	err := c.Batch(ctx, ops)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Batch with a cancelled context = %v, want context.Canceled", err)
	}
	for i, op := range ops {
		if op.Err == nil || op.Acquired || op.Exists {
			t.Errorf("op %d: %+v, want a failure", i, op)
		}
	}
	if v, ok, err := c.Get(t.Context(), "n"); err != nil || ok {
		t.Errorf("n = %d, %v, %v; want absent", v, ok, err)
	}
}

// BenchmarkAdmissionOps runs the counter operations the policy sends to
// admit a request with a window, cost limits and a concurrency limit
// (an Add, five Gets, an Acquire), as one Batch and one call at a time.
func BenchmarkAdmissionOps(b *testing.B) {
	ctx := b.Context()
	rdb := redistest.Client(b)
	s, err := Open(ctx, Options{Client: rdb, Prefix: redistest.Prefix(b, rdb)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	c := s.counters
	ops := func() []store.CounterOp {
		later := time.Now().Add(time.Hour)
		return []store.CounterOp{
			{Kind: store.OpAdd, Name: "win:count", Delta: 1, Expires: later},
			{Kind: store.OpGet, Name: "win:tokens"},
			{Kind: store.OpGet, Name: "win:cost"},
			{Kind: store.OpGet, Name: "spend:daily"},
			{Kind: store.OpGet, Name: "spend:weekly"},
			{Kind: store.OpGet, Name: "spend:total"},
			{Kind: store.OpAcquire, Name: "slots", Holder: "h", Limit: 1, Lease: time.Minute},
		}
	}
	run := func(b *testing.B, lc store.LimitCounters) {
		for b.Loop() {
			o := ops()
			if err := store.RunCounterOps(ctx, lc, o); err != nil {
				b.Fatal(err)
			}
			for _, op := range o {
				if op.Err != nil {
					b.Fatal(op.Err)
				}
			}
		}
	}
	b.Run("Batch", func(b *testing.B) { run(b, c) })
	b.Run("OneAtATime", func(b *testing.B) { run(b, struct{ store.LimitCounters }{c}) })
}
