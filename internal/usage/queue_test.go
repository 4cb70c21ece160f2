package usage

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// waitFor polls cond for up to two seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestQueueDepth: while a commit stalls, records handed to Record wait in
// the queue and QueueDepth counts them; once the store answers they are
// committed and the depth is back to 0.
func TestQueueDepth(t *testing.T) {
	st := openStore(t)
	f := &flaky{Store: st, stall: make(chan struct{})}
	r := NewRecorder(f, Options{SpoolDir: t.TempDir(), MaxWait: 10 * time.Second, Linger: -1})
	r.Start()
	defer r.Close(context.Background())
	if r.QueueDepth() != 0 || r.QueueCapacity() < 1000 {
		t.Fatalf("idle: depth %d, capacity %d", r.QueueDepth(), r.QueueCapacity())
	}
	var wg sync.WaitGroup
	record := func(id string) {
		wg.Go(func() {
			if err := r.Record(context.Background(), rec(id, 1)); err != nil {
				t.Error(err)
			}
		})
	}
	record("first") // taken into a batch; its commit stalls
	waitFor(t, "the first commit", func() bool { return f.calls.Load() == 1 })
	for i := range 7 {
		record(fmt.Sprint("queued", i))
	}
	waitFor(t, "7 queued records", func() bool { return r.QueueDepth() == 7 })
	close(f.stall)
	wg.Wait()
	if d := r.QueueDepth(); d != 0 {
		t.Fatalf("depth %d after the commits", d)
	}
	if got := total(t, st).Requests; got != 8 {
		t.Fatalf("committed %d, want 8", got)
	}
}
