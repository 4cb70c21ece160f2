package storetest

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// testConcurrent runs 8 usage writers whose batches overlap (every record
// is offered by every writer) beside writers that update, cool down and
// touch accounts and keys, as the server does under load. Every record
// must be stored and counted exactly once, and no call may fail.
func testConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	const (
		writers  = 8
		distinct = 160
		batch    = 10
		sideOps  = 40 // per side writer; bounded so they cannot starve the usage writers
	)
	k := newKey("conc", at(0))
	a := newAccount("conc", at(0))
	must(t, s.CreateKey(ctx, k))
	must(t, s.CreateAccount(ctx, a))
	recs := genRecords(rand.New(rand.NewPCG(5, 6)), "conc", distinct)

	var (
		wg       sync.WaitGroup
		inserted atomic.Int64
		errs     = make(chan error, writers+3)
	)
	for w := range writers {
		wg.Go(func() {
			order := append([]store.UsageRecord(nil), recs...)
			rand.New(rand.NewPCG(uint64(w), 7)).Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			for i := 0; i < len(order); i += batch {
				n, err := s.InsertUsage(ctx, order[i:i+batch])
				if err != nil {
					errs <- fmt.Errorf("writer %d: InsertUsage: %w", w, err)
					return
				}
				inserted.Add(int64(n))
			}
		})
	}
	var side sync.WaitGroup
	side.Go(func() {
		acct := a
		for i := range sideOps {
			acct.Priority = 1 + i%100
			acct.UpdatedAt = at(time.Duration(i) * time.Second)
			if err := s.UpdateAccount(ctx, acct); err != nil {
				errs <- fmt.Errorf("UpdateAccount: %w", err)
				return
			}
			if err := s.SetCooldown(ctx, a.ID, store.CooldownTransient, at(time.Minute), "529"); err != nil {
				errs <- fmt.Errorf("SetCooldown: %w", err)
				return
			}
		}
	})
	side.Go(func() {
		for i := range sideOps {
			when := at(time.Duration(i) * time.Millisecond)
			if err := s.TouchAccounts(ctx, map[store.AccountID]time.Time{a.ID: when}); err != nil {
				errs <- fmt.Errorf("TouchAccounts: %w", err)
				return
			}
			if err := s.TouchKeys(ctx, map[store.KeyID]time.Time{k.ID: when}); err != nil {
				errs <- fmt.Errorf("TouchKeys: %w", err)
				return
			}
		}
	})
	side.Go(func() {
		for range sideOps / 4 {
			if _, err := s.SummarizeUsage(ctx, store.UsageFilter{}); err != nil {
				errs <- fmt.Errorf("SummarizeUsage: %w", err)
				return
			}
			if _, err := s.ListAccounts(ctx); err != nil {
				errs <- fmt.Errorf("ListAccounts: %w", err)
				return
			}
		}
	})
	wg.Wait()
	side.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	if got := inserted.Load(); got != distinct {
		t.Errorf("InsertUsage reported %d new records in total, want %d", got, distinct)
	}
	stored := listAll(t, s)
	if len(stored) != distinct {
		t.Errorf("%d records stored, want %d", len(stored), distinct)
	}
	checkRollups(t, s, stored)
}
