package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/redis/redistest"
	"github.com/crs-relay/crs/internal/store/storetest"
)

// commandLog records the commands a client sends, one entry per round
// trip (a pipeline is one entry, its commands joined by "|").
type commandLog struct {
	mu   sync.Mutex
	sent []string
}

func (l *commandLog) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (l *commandLog) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		l.add(cmd.Name())
		return next(ctx, cmd)
	}
}

func (l *commandLog) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		names := make([]string, len(cmds))
		for i, c := range cmds {
			names[i] = c.Name()
		}
		l.add(strings.Join(names, "|"))
		return next(ctx, cmds)
	}
}

func (l *commandLog) add(name string) {
	l.mu.Lock()
	l.sent = append(l.sent, name)
	l.mu.Unlock()
}

// during returns what fn sent.
func (l *commandLog) during(fn func()) []string {
	l.mu.Lock()
	start := len(l.sent)
	l.mu.Unlock()
	fn()
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.sent[start:])
}

// openLogged opens a store on a client of its own whose commands are
// logged.
func openLogged(t *testing.T) (*Store, *commandLog) {
	t.Helper()
	log := &commandLog{}
	rdb := goredis.NewClient(&goredis.Options{Addr: redistest.Addr(t)})
	t.Cleanup(func() { rdb.Close() })
	rdb.AddHook(log)
	return openOn(t, rdb), log
}

// TestHotPathRoundTrips holds the methods the relay calls per request, and
// the lists every instance reloads its caches with, to one round trip
// each, and keeps SCAN and KEYS off all of them. Each is called once
// before it is measured, so that the script is in Redis's cache (the first
// EVALSHA of a script after a restart costs one more trip, the EVAL).
func TestHotPathRoundTrips(t *testing.T) {
	ctx := t.Context()
	s, log := openLogged(t)
	k := store.Key{ID: "key-rt", Name: "rt", Hash: strings.Repeat("ab", 32), Hint: "abab", CreatedAt: time.Now()}
	a := store.Account{ID: "acct-rt", Name: "rt", Platform: store.PlatformClaude, Type: store.TypeOAuth,
		Priority: 50, SealedSecret: []byte("sealed"), CreatedAt: time.Now(), UpdatedAt: time.Now()}
	g := store.Group{ID: "grp-rt", Name: "rt", Platform: store.PlatformClaude, Members: []store.AccountID{a.ID}}
	if err := s.CreateKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateGroup(ctx, g); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSticky(ctx, "conv", a.ID, time.Hour); err != nil {
		t.Fatal(err)
	}

	calls := []struct {
		name string
		call func() error
	}{
		{"KeyByHash", func() error { _, err := s.KeyByHash(ctx, k.Hash); return err }},
		{"GetKey", func() error { _, err := s.GetKey(ctx, k.ID); return err }},
		{"GetAccount", func() error { _, err := s.GetAccount(ctx, a.ID); return err }},
		{"GetSticky renew", func() error {
			_, ok, err := s.GetSticky(ctx, "conv", time.Hour)
			if err == nil && !ok {
				err = fmt.Errorf("binding lost")
			}
			return err
		}},
		{"TouchKeys", func() error { return s.TouchKeys(ctx, map[store.KeyID]time.Time{k.ID: time.Now()}) }},
		{"TouchAccounts", func() error {
			return s.TouchAccounts(ctx, map[store.AccountID]time.Time{a.ID: time.Now(), "acct-gone": time.Now()})
		}},
		{"ActivateKey", func() error { _, err := s.ActivateKey(ctx, k.ID, time.Now()); return err }},
		{"ChangeVersion", func() error { _, err := s.ChangeVersion(ctx); return err }},
		{"ListKeys", func() error { _, err := s.ListKeys(ctx, true); return err }},
		{"ListAccounts", func() error { _, err := s.ListAccounts(ctx); return err }},
		{"ListGroups", func() error { _, err := s.ListGroups(ctx); return err }}, {"GetGroup", func() error { _, err := s.GetGroup(ctx, g.ID); return err }},
		{"GetSetting", func() error {
			if _, err := s.GetSetting(ctx, "unset"); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("unset setting: %v", err)
			}
			return nil
		}},
	}
	for _, c := range calls {
		if err := c.call(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var err error
		sent := log.during(func() { err = c.call() })
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(sent) != 1 {
			t.Errorf("%s: %d round trips %v, want 1", c.name, len(sent), sent)
		}
		for _, cmd := range sent {
			if cmd == "scan" || cmd == "keys" {
				t.Errorf("%s sent %s", c.name, cmd)
			}
		}
	}
}

// TestChangesAcrossInstances opens two stores on one prefix, as two crs
// instances on one Redis: a change through one moves the other's
// ChangeVersion and reaches the other's Changes channel.
func TestChangesAcrossInstances(t *testing.T) {
	ctx := t.Context()
	rdb := redistest.Client(t)
	prefix := redistest.Prefix(t, rdb)
	open := func() *Store {
		s, err := Open(ctx, Options{Client: rdb, Prefix: prefix, Location: storetest.Zone()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	writer, reader := open(), open()
	// The subscription is confirmed asynchronously; announce until the
	// reader hears one, so a message sent before it listened cannot fail
	// the test.
	hear := func(what string, change func(i int) error) {
		t.Helper()
		v0, err := reader.ChangeVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.After(3 * time.Second)
		for i := 0; ; i++ {
			if err := change(i); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			select {
			case <-reader.Changes():
				v1, err := reader.ChangeVersion(ctx)
				if err != nil || v1 == v0 {
					t.Errorf("%s: reader's ChangeVersion %d → %d, %v", what, v0, v1, err)
				}
				return
			case <-time.After(50 * time.Millisecond):
			case <-deadline:
				t.Fatalf("%s: the other instance heard nothing in 3 s", what)
			}
		}
	}
	hear("CreateKey", func(i int) error {
		return writer.CreateKey(ctx, store.Key{ID: store.KeyID(fmt.Sprint("key-", i)), Hash: fmt.Sprint("hash-", i), CreatedAt: time.Now()})
	})
	hear("SetSetting", func(i int) error { return writer.SetSetting(ctx, "console.theme", []byte(fmt.Sprint(i))) })
	hear("SetAdmin", func(i int) error {
		return writer.SetAdmin(ctx, store.Admin{Username: "admin", PasswordHash: fmt.Sprint(i), UpdatedAt: time.Now()})
	})
}

// TestListTiesInInsertionOrder creates keys, accounts and groups with one
// creation time, out of ID order: lists keep the order they were created
// in, as the embedded store does.
func TestListTiesInInsertionOrder(t *testing.T) {
	ctx := t.Context()
	s := openOn(t, redistest.Client(t))
	when := time.Date(2025, 3, 10, 9, 0, 0, 0, time.UTC)
	order := []string{"m", "c", "x", "a"}
	for _, n := range order {
		if err := s.CreateKey(ctx, store.Key{ID: store.KeyID(n), Hash: "h" + n, CreatedAt: when}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateAccount(ctx, store.Account{ID: store.AccountID(n), CreatedAt: when}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateGroup(ctx, store.Group{ID: store.GroupID(n), Name: n, CreatedAt: when}); err != nil {
			t.Fatal(err)
		}
	}
	// One created earlier, last: it goes first.
	if err := s.CreateKey(ctx, store.Key{ID: "early", Hash: "hearly", CreatedAt: when.Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	keys, err := s.ListKeys(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range keys {
		got = append(got, string(k.ID))
	}
	if want := append([]string{"early"}, order...); !slices.Equal(got, want) {
		t.Errorf("ListKeys = %v, want %v", got, want)
	}
	accts, err := s.ListAccounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, a := range accts {
		got = append(got, string(a.ID))
	}
	if !slices.Equal(got, order) {
		t.Errorf("ListAccounts = %v, want %v", got, order)
	}
	groups, err := s.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, g := range groups {
		got = append(got, string(g.ID))
	}
	if !slices.Equal(got, order) {
		t.Errorf("ListGroups = %v, want %v", got, order)
	}
}

// BenchmarkHotPath measures the per-request reads against the real Redis,
// one round trip each.
func BenchmarkHotPath(b *testing.B) {
	ctx := b.Context()
	rdb := redistest.Client(b)
	s, err := Open(ctx, Options{Client: rdb, Prefix: redistest.Prefix(b, rdb)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	k := store.Key{ID: "key-b", Name: "b", Hash: strings.Repeat("cd", 32), CreatedAt: time.Now(),
		Policy: store.KeyPolicy{Concurrency: 3, ModelsAllow: []string{"claude-sonnet-4-5"}}}
	a := store.Account{ID: "acct-b", Name: "b", Platform: store.PlatformClaude, Type: store.TypeOAuth,
		Priority: 50, SealedSecret: make([]byte, 512), CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := s.CreateKey(ctx, k); err != nil {
		b.Fatal(err)
	}
	if err := s.CreateAccount(ctx, a); err != nil {
		b.Fatal(err)
	}
	if err := s.SetSticky(ctx, "conv", a.ID, time.Hour); err != nil {
		b.Fatal(err)
	}
	for _, bm := range []struct {
		name string
		call func() error
	}{
		{"KeyByHash", func() error { _, err := s.KeyByHash(ctx, k.Hash); return err }},
		{"GetAccount", func() error { _, err := s.GetAccount(ctx, a.ID); return err }},
		{"GetStickyRenew", func() error { _, _, err := s.GetSticky(ctx, "conv", time.Hour); return err }},
		{"ChangeVersion", func() error { _, err := s.ChangeVersion(ctx); return err }},
	} {
		b.Run(bm.name, func(b *testing.B) {
			for b.Loop() {
				if err := bm.call(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
