package leader

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store/sqlite"
)

// TestOneLeaderAtATime runs three instances on one store: the job never runs
// twice at once, and when the leader stops another takes over within the
// lease.
func TestOneLeaderAtATime(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const ttl = 300 * time.Millisecond
	var running, maxRunning, started atomic.Int32
	leaderOf := make(chan int, 16)
	job := func(i int) func(context.Context) {
		return func(ctx context.Context) {
			n := running.Add(1)
			for {
				m := maxRunning.Load()
				if n <= m || maxRunning.CompareAndSwap(m, n) {
					break
				}
			}
			started.Add(1)
			leaderOf <- i
			<-ctx.Done()
			running.Add(-1)
		}
	}
	ctxs := make([]context.CancelFunc, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		ctx, cancel := context.WithCancel(t.Context())
		ctxs[i] = cancel
		wg.Add(1)
		go func() {
			defer wg.Done()
			Run(ctx, st, "leader:test", ttl, job(i), nil)
		}()
	}
	defer func() {
		for _, c := range ctxs {
			c()
		}
		wg.Wait()
	}()
	first := waitLeader(t, leaderOf, 2*ttl)
	// Stay a while: nobody else starts while the leader renews.
	time.Sleep(3 * ttl)
	if n := started.Load(); n != 1 {
		t.Fatalf("%d jobs started while one leader renewed", n)
	}
	ctxs[first]()
	stopped := time.Now()
	second := waitLeader(t, leaderOf, 2*ttl)
	if second == first {
		t.Fatal("the stopped instance led again")
	}
	t.Logf("handover after a clean stop took %v", time.Since(stopped))
	if m := maxRunning.Load(); m != 1 {
		t.Errorf("up to %d jobs ran at once", m)
	}
}

// TestTakeoverAfterDeath: a leader that dies without unlocking (its lease
// simply stops being renewed) is replaced within one lease time.
func TestTakeoverAfterDeath(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const ttl = 400 * time.Millisecond
	// A dead instance's lease: taken and never renewed.
	if _, ok, err := st.TryLock(t.Context(), "leader:test", ttl); err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}
	died := time.Now()
	ran := make(chan time.Time, 1)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, st, "leader:test", ttl, func(ctx context.Context) {
			ran <- time.Now()
			<-ctx.Done()
		}, nil)
	}()
	select {
	case at := <-ran:
		if d := at.Sub(died); d < ttl-50*time.Millisecond || d > ttl+ttl/3+200*time.Millisecond {
			t.Errorf("took over after %v; want about the lease, %v", d, ttl)
		}
	case <-time.After(5 * ttl):
		t.Fatal("no takeover")
	}
	cancel()
	<-done
	// Stopping released the lease at once.
	if _, ok, err := st.TryLock(t.Context(), "leader:test", time.Minute); err != nil || !ok {
		t.Errorf("lease still held after Run returned: %v, %v", ok, err)
	}
}

func waitLeader(t *testing.T, c <-chan int, within time.Duration) int {
	t.Helper()
	select {
	case i := <-c:
		return i
	case <-time.After(within + time.Second):
		t.Fatal("no leader")
		return -1
	}
}
