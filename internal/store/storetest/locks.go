package storetest

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

func testLocks(t *testing.T, s store.Store) {
	ctx := t.Context()
	tok, ok, err := s.TryLock(ctx, "refresh:a", time.Minute)
	must(t, err)
	if !ok || tok == "" {
		t.Fatalf("TryLock of a free lease = %q, %v", tok, ok)
	}
	if tok2, ok, err := s.TryLock(ctx, "refresh:a", time.Minute); err != nil || ok {
		t.Errorf("TryLock while held = %q, %v, %v; want not ok", tok2, ok, err)
	}
	// Another name is independent.
	tokB, ok, err := s.TryLock(ctx, "refresh:b", time.Minute)
	must(t, err)
	if !ok {
		t.Error("a held lease blocked a lease of another name")
	}
	// A wrong token releases nothing.
	must(t, s.Unlock(ctx, "refresh:a", "not-the-token"))
	if _, ok, err := s.TryLock(ctx, "refresh:a", time.Minute); err != nil || ok {
		t.Errorf("TryLock after Unlock with a wrong token: ok %v, %v", ok, err)
	}
	must(t, s.Unlock(ctx, "refresh:a", tok))
	tok3, ok, err := s.TryLock(ctx, "refresh:a", time.Minute)
	must(t, err)
	if !ok {
		t.Fatal("TryLock after Unlock: not ok")
	}
	if tok3 == tok {
		t.Error("a new lease reused the old token")
	}
	must(t, s.Unlock(ctx, "refresh:a", tok3))
	must(t, s.Unlock(ctx, "refresh:b", tokB))
	// Unlocking twice, or an unknown lease, is harmless.
	must(t, s.Unlock(ctx, "refresh:b", tokB))
	must(t, s.Unlock(ctx, "never-locked", "x"))
}

func testLockExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	old, ok, err := s.TryLock(ctx, "lease", 50*time.Millisecond)
	must(t, err)
	if !ok {
		t.Fatal("TryLock of a free lease: not ok")
	}
	time.Sleep(80 * time.Millisecond)
	cur, ok, err := s.TryLock(ctx, "lease", time.Minute)
	must(t, err)
	if !ok {
		t.Fatal("TryLock of an expired lease: not ok")
	}
	if cur == old {
		t.Fatal("the new owner got the expired owner's token")
	}
	// The old owner finishing late must not free the new owner's lease.
	must(t, s.Unlock(ctx, "lease", old))
	if _, ok, err := s.TryLock(ctx, "lease", time.Minute); err != nil || ok {
		t.Errorf("TryLock after the expired owner's Unlock: ok %v, %v; want held", ok, err)
	}
	must(t, s.Unlock(ctx, "lease", cur))
	if _, ok, err := s.TryLock(ctx, "lease", time.Minute); err != nil || !ok {
		t.Errorf("TryLock after the owner's Unlock: ok %v, %v", ok, err)
	}
}

func testLockRace(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 16
	var (
		wg     sync.WaitGroup
		start  = make(chan struct{})
		owners atomic.Int32
		errs   = make(chan error, n)
	)
	for range n {
		wg.Go(func() {
			<-start
			_, ok, err := s.TryLock(ctx, "contended", time.Minute)
			if err != nil {
				errs <- err
				return
			}
			if ok {
				owners.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := owners.Load(); got != 1 {
		t.Errorf("%d of %d racing TryLocks own the lease, want exactly 1", got, n)
	}
}

func testRenewLock(t *testing.T, s store.Store) {
	ctx := t.Context()
	tok, ok, err := s.TryLock(ctx, "leader", 200*time.Millisecond)
	must(t, err)
	if !ok {
		t.Fatal("TryLock of a free lease: not ok")
	}
	if ok, err := s.RenewLock(ctx, "leader", "not-the-token", time.Hour); err != nil || ok {
		t.Errorf("RenewLock with a wrong token = %v, %v; want false", ok, err)
	}
	// Renewed past its first ttl, the lease stays held.
	time.Sleep(100 * time.Millisecond)
	if ok, err := s.RenewLock(ctx, "leader", tok, time.Second); err != nil || !ok {
		t.Fatalf("RenewLock by the owner = %v, %v", ok, err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, ok, err := s.TryLock(ctx, "leader", time.Minute); err != nil || ok {
		t.Errorf("TryLock of a renewed lease: ok %v, %v; want held", ok, err)
	}
	// Once it lapsed and another took it, the old owner cannot renew.
	short, ok, err := s.TryLock(ctx, "short", 50*time.Millisecond)
	must(t, err)
	if !ok {
		t.Fatal("TryLock short: not ok")
	}
	time.Sleep(80 * time.Millisecond)
	if ok, err := s.RenewLock(ctx, "short", short, time.Minute); err != nil || ok {
		t.Errorf("RenewLock of a lapsed lease = %v, %v; want false", ok, err)
	}
	other, ok, err := s.TryLock(ctx, "short", time.Minute)
	must(t, err)
	if !ok || other == short {
		t.Fatalf("TryLock after lapse = %q, %v", other, ok)
	}
	if ok, err := s.RenewLock(ctx, "short", short, time.Minute); err != nil || ok {
		t.Errorf("RenewLock by the old owner after a takeover = %v, %v; want false", ok, err)
	}
	if _, err := s.RenewLock(ctx, "short", other, 0); err == nil {
		t.Error("RenewLock with ttl 0: no error")
	}
	must(t, s.Unlock(ctx, "leader", tok))
	must(t, s.Unlock(ctx, "short", other))
}
