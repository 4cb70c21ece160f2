package sqlite

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // America/New_York for the DST test, on any machine

	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/storetest"
)

// openAt opens a Store on path and closes it when the test ends.
func openAt(t testing.TB, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openAt(t, filepath.Join(t.TempDir(), "crs.db"), Options{Location: storetest.Zone()})
	})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestTwoStoresOneFile stands in for the server and the CLI: two Stores
// (two sets of connections, as two processes would have) on one file.
func TestTwoStoresOneFile(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "crs.db")
	server := openAt(t, path, Options{})
	cli := openAt(t, path, Options{})

	v0, err := server.ChangeVersion(ctx)
	must(t, err)
	k := store.Key{ID: "k1", Name: "from cli", Hash: "h1", Hint: "abcd", CreatedAt: time.UnixMilli(1)}
	must(t, cli.CreateKey(ctx, k))
	v1, err := server.ChangeVersion(ctx)
	must(t, err)
	if v1 == v0 {
		t.Error("the server's ChangeVersion missed the CLI's CreateKey")
	}
	got, err := server.KeyByHash(ctx, "h1")
	must(t, err)
	if got.Name != "from cli" {
		t.Errorf("server sees key %+v", got)
	}
	// The server touches; the CLI must not see a change.
	must(t, server.TouchKeys(ctx, map[store.KeyID]time.Time{"k1": time.UnixMilli(5)}))
	v2, err := cli.ChangeVersion(ctx)
	must(t, err)
	if v2 != v1 {
		t.Errorf("a touch changed the version %d → %d", v1, v2)
	}

	// Both write at once; neither may see "database is locked".
	const rounds = 15
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i, s := range []*Store{server, cli, server, cli} {
		wg.Go(func() {
			for j := range rounds {
				recs := make([]store.UsageRecord, 8)
				for r := range recs {
					recs[r] = store.UsageRecord{RequestID: fmt.Sprintf("req-%d-%d", j, r), Attempt: i % 2,
						KeyID: "k1", Model: "m", Input: 1, CreatedAt: time.UnixMilli(int64(j))}
				}
				if _, err := s.InsertUsage(ctx, recs); err != nil {
					errs <- err
					return
				}
				if err := s.TouchKeys(ctx, map[store.KeyID]time.Time{"k1": time.UnixMilli(int64(j))}); err != nil {
					errs <- err
					return
				}
				k := k
				k.Name = fmt.Sprint("name ", i, j)
				if err := s.UpdateKey(ctx, k); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Writers 0/2 and 1/3 offer the same (request, attempt) pairs.
	sum, err := server.SummarizeUsage(ctx, store.UsageFilter{})
	must(t, err)
	if len(sum.Models) != 1 || sum.Models[0].Requests != 2*rounds*8 {
		t.Errorf("summary %+v, want %d requests", sum.Models, 2*rounds*8)
	}
}

func TestReopenKeepsData(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "crs.db")
	s, err := Open(ctx, path, Options{})
	must(t, err)
	must(t, s.CreateKey(ctx, store.Key{ID: "k", Name: "n", Hash: "h", CreatedAt: time.UnixMilli(1000)}))
	must(t, s.CreateAccount(ctx, store.Account{ID: "a", Name: "acct", SealedSecret: []byte{0, 1, 2}}))
	must(t, s.SetAdmin(ctx, store.Admin{Username: "admin", PasswordHash: "x"}))
	_, err = s.InsertUsage(ctx, []store.UsageRecord{{RequestID: "r", KeyID: "k", Input: 7, CreatedAt: time.UnixMilli(5)}})
	must(t, err)
	v, err := s.ChangeVersion(ctx)
	must(t, err)
	must(t, s.Close())

	s = openAt(t, path, Options{})
	if k, err := s.GetKey(ctx, "k"); err != nil || k.Name != "n" {
		t.Errorf("key after reopen: %+v, %v", k, err)
	}
	if a, err := s.GetAccount(ctx, "a"); err != nil || string(a.SealedSecret) != "\x00\x01\x02" {
		t.Errorf("account after reopen: %+v, %v", a, err)
	}
	if a, err := s.GetAdmin(ctx); err != nil || a.Username != "admin" {
		t.Errorf("admin after reopen: %+v, %v", a, err)
	}
	recs, err := s.ListUsage(ctx, store.UsageFilter{}, 10)
	if err != nil || len(recs) != 1 || recs[0].Input != 7 {
		t.Errorf("usage after reopen: %+v, %v", recs, err)
	}
	// The version must not restart, or a cache that saw v would miss
	// the next change.
	if v2, err := s.ChangeVersion(ctx); err != nil || v2 != v {
		t.Errorf("ChangeVersion after reopen = %d, %v; want %d", v2, err, v)
	}
}

func TestSchema(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "crs.db")
	s := openAt(t, path, Options{})
	for _, p := range []struct {
		pragma string
		db     *sql.DB
		want   string
	}{
		{"user_version", s.write, fmt.Sprint(len(migrations))},
		{"journal_mode", s.write, "wal"},
		{"synchronous", s.write, "1"}, // NORMAL
		{"foreign_keys", s.write, "1"},
		{"busy_timeout", s.write, "5000"},
		{"busy_timeout", s.read, "5000"},
		{"query_only", s.read, "1"},
		{"query_only", s.write, "0"},
	} {
		var got string
		must(t, p.db.QueryRowContext(ctx, "PRAGMA "+p.pragma).Scan(&got))
		if got != p.want {
			t.Errorf("PRAGMA %s = %s, want %s", p.pragma, got, p.want)
		}
	}

	// Opening again migrates nothing and keeps the version.
	s2 := openAt(t, path, Options{})
	var v int
	must(t, s2.read.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v))
	if v != len(migrations) {
		t.Errorf("user_version after reopen = %d", v)
	}

	// A file from a newer binary is refused.
	_, err := s.write.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1))
	must(t, err)
	if s3, err := Open(ctx, path, Options{}); err == nil {
		s3.Close()
		t.Error("Open accepted a schema newer than the binary")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open of a newer schema: %v", err)
	}
}

// TestMigrateFromVersion1 opens a file that a binary with only migration 1
// wrote, with data in it, and checks that Open brings it to the current
// schema without losing the data or the change version.
func TestMigrateFromVersion1(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "crs.db")
	old, err := sql.Open("sqlite", dsn(path, false))
	must(t, err)
	_, err = old.ExecContext(ctx, migrations[0])
	must(t, err)
	_, err = old.ExecContext(ctx, "PRAGMA user_version = 1")
	must(t, err)
	_, err = old.ExecContext(ctx, `INSERT INTO accounts (id, name, platform, type, priority, sealed_secret, created_at, updated_at)
		VALUES ('a', 'old', 'claude', 'oauth', 5, x'0001', 1, 1)`)
	must(t, err)
	var v1 int64
	must(t, old.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = 'change_version'`).Scan(&v1))
	must(t, old.Close())

	s := openAt(t, path, Options{})
	var v int
	must(t, s.read.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v))
	if v != len(migrations) || v < 2 {
		t.Errorf("user_version after migrating = %d, want %d", v, len(migrations))
	}
	if a, err := s.GetAccount(ctx, "a"); err != nil || a.Name != "old" {
		t.Errorf("account after migrating: %+v, %v", a, err)
	}
	if cv, err := s.ChangeVersion(ctx); err != nil || int64(cv) != v1 {
		t.Errorf("ChangeVersion after migrating = %d, %v; want %d", cv, err, v1)
	}
	// The new tables work.
	if _, ok, err := s.TryLock(ctx, "x", time.Minute); err != nil || !ok {
		t.Errorf("TryLock on a migrated file: %v, %v", ok, err)
	}
	now := time.Now()
	must(t, s.CreateOAuthPending(ctx, store.OAuthPending{ID: "p", Kind: "oauth", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}))
	if _, err := s.TakeOAuthPending(ctx, "p"); err != nil {
		t.Errorf("TakeOAuthPending on a migrated file: %v", err)
	}
}

// TestTwoStoresOneLock races TryLock from two Stores on one file, as a
// server and a second instance (or the CLI) would: the lease must have
// exactly one owner per round, whichever process asks.
func TestTwoStoresOneLock(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "crs.db")
	a := openAt(t, path, Options{})
	b := openAt(t, path, Options{})
	const (
		rounds  = 10
		perSide = 8
	)
	for r := range rounds {
		name := fmt.Sprint("refresh:", r)
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			owners []string
		)
		start := make(chan struct{})
		for i := range 2 * perSide {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() {
				<-start
				tok, ok, err := s.TryLock(ctx, name, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					mu.Lock()
					owners = append(owners, tok)
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		if len(owners) != 1 {
			t.Fatalf("round %d: %d owners, want 1", r, len(owners))
		}
		// The owner releases through the other Store; then it is free.
		other := b
		if r%2 == 1 {
			other = a
		}
		must(t, other.Unlock(ctx, name, owners[0]))
		if _, ok, err := a.TryLock(ctx, name, time.Minute); err != nil || !ok {
			t.Errorf("round %d: TryLock after Unlock via the other store: %v, %v", r, ok, err)
		}
	}
}

// TestLockClock checks that leases and pending sessions expire by the
// injected clock, not the wall clock.
func TestLockClock(t *testing.T) {
	ctx := t.Context()
	clock := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := openAt(t, filepath.Join(t.TempDir(), "crs.db"), Options{Now: clock.Now})
	old, ok, err := s.TryLock(ctx, "l", time.Minute)
	must(t, err)
	if !ok {
		t.Fatal("TryLock of a free lease: not ok")
	}
	clock.Advance(time.Minute - time.Millisecond)
	if _, ok, _ := s.TryLock(ctx, "l", time.Minute); ok {
		t.Error("lease taken over before its TTL")
	}
	clock.Advance(time.Millisecond)
	cur, ok, err := s.TryLock(ctx, "l", time.Minute)
	must(t, err)
	if !ok || cur == old {
		t.Errorf("TryLock at the TTL = %q, %v; want a new owner", cur, ok)
	}
	if _, _, err := s.TryLock(ctx, "l", 0); err == nil {
		t.Error("TryLock with ttl 0 succeeded")
	}

	now := clock.Now()
	must(t, s.CreateOAuthPending(ctx, store.OAuthPending{ID: "p", Kind: "oauth", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}))
	clock.Advance(time.Hour)
	if _, err := s.TakeOAuthPending(ctx, "p"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TakeOAuthPending at expiry: %v", err)
	}
	var left int
	must(t, s.read.QueryRowContext(ctx, "SELECT COUNT(*) FROM oauth_pending").Scan(&left))
	if left != 0 {
		t.Errorf("%d pending sessions left after an expired take", left)
	}
}

func TestOpenRejectsMemory(t *testing.T) {
	for _, p := range []string{"", ":memory:"} {
		if s, err := Open(t.Context(), p, Options{}); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

func TestPathWithOddCharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir?x=1#frag%20")
	must(t, os.MkdirAll(dir, 0o700))
	path := filepath.Join(dir, "crs.db")
	s := openAt(t, path, Options{})
	must(t, s.Ping(t.Context()))
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at the given path: %v", err)
	}
}

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestInjectedClock(t *testing.T) {
	ctx := t.Context()
	clock := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := openAt(t, filepath.Join(t.TempDir(), "crs.db"), Options{Now: clock.Now})

	must(t, s.SetSticky(ctx, "a", "acct", time.Minute))
	clock.Advance(time.Minute - time.Millisecond)
	if _, ok, _ := s.GetSticky(ctx, "a", 0); !ok {
		t.Error("binding gone before its TTL")
	}
	clock.Advance(time.Millisecond)
	if _, ok, _ := s.GetSticky(ctx, "a", 0); ok {
		t.Error("binding alive at its TTL")
	}

	// Sweeping: expired bindings that are never read again are dropped
	// by a later SetSticky once stickySweepEvery has passed.
	for i := range 100 {
		must(t, s.SetSticky(ctx, fmt.Sprint("old-", i), "acct", time.Second))
	}
	clock.Advance(stickySweepEvery)
	must(t, s.SetSticky(ctx, "new", "acct", time.Hour))
	s.sticky.mu.Lock()
	n := len(s.sticky.m)
	s.sticky.mu.Unlock()
	if n != 1 {
		t.Errorf("%d bindings kept after the sweep, want 1", n)
	}
	must(t, s.SetSticky(ctx, "new", "acct", 0))
	if _, ok, _ := s.GetSticky(ctx, "new", 0); ok {
		t.Error("SetSticky with ttl 0 left the binding")
	}

	now := clock.Now()
	must(t, s.CreateSession(ctx, store.AdminSession{TokenHash: "t", Username: "admin", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}))
	clock.Advance(time.Hour - time.Millisecond)
	if _, err := s.GetSession(ctx, "t"); err != nil {
		t.Errorf("session before expiry: %v", err)
	}
	clock.Advance(time.Millisecond)
	if _, err := s.GetSession(ctx, "t"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("session at expiry: %v", err)
	}
	// It was deleted, not only hidden.
	var left int
	must(t, s.read.QueryRowContext(ctx, "SELECT COUNT(*) FROM admin_sessions").Scan(&left))
	if left != 0 {
		t.Errorf("%d sessions left after expiry", left)
	}
}

// TestDailyRollupAcrossDST checks that a day in a zone with daylight
// saving starts at local midnight on the 23-hour day too.
func TestDailyRollupAcrossDST(t *testing.T) {
	ctx := t.Context()
	// New York went from UTC-5 to UTC-4 at 2025-03-09 02:00 local.
	winter := time.FixedZone("EST", -5*3600)
	loc, err := time.LoadLocation("America/New_York")
	must(t, err)
	s := openAt(t, filepath.Join(t.TempDir(), "crs.db"), Options{Location: loc})
	recs := []store.UsageRecord{
		{RequestID: "before", CreatedAt: time.Date(2025, 3, 8, 23, 59, 0, 0, winter)},
		{RequestID: "dst-day-early", CreatedAt: time.Date(2025, 3, 9, 0, 30, 0, 0, winter)},
		{RequestID: "dst-day-late", CreatedAt: time.Date(2025, 3, 9, 23, 30, 0, 0, loc)},
		{RequestID: "after", CreatedAt: time.Date(2025, 3, 10, 0, 30, 0, 0, loc)},
	}
	_, err = s.InsertUsage(ctx, recs)
	must(t, err)
	days, err := s.Rollups(ctx, store.Daily, time.Time{}, time.Time{})
	must(t, err)
	want := []struct {
		day      time.Time
		requests int64
	}{
		{time.Date(2025, 3, 8, 0, 0, 0, 0, loc), 1},
		{time.Date(2025, 3, 9, 0, 0, 0, 0, loc), 2},
		{time.Date(2025, 3, 10, 0, 0, 0, 0, loc), 1},
	}
	if len(days) != len(want) {
		t.Fatalf("daily rollups = %+v", days)
	}
	for i, w := range want {
		if !days[i].Period.Equal(w.day) || days[i].Requests != w.requests {
			t.Errorf("day %d = %v ×%d, want %v ×%d", i, days[i].Period, days[i].Requests, w.day, w.requests)
		}
	}
	if days[2].Period.Sub(days[1].Period) != 23*time.Hour {
		t.Errorf("the DST day lasts %v, want 23h", days[2].Period.Sub(days[1].Period))
	}
}

// TestSurvivesKill commits usage in a child process, kills it with
// SIGKILL right after InsertUsage returned, and checks every record is
// in the file: WAL with synchronous=NORMAL loses no commit to a process
// crash.
func TestSurvivesKill(t *testing.T) {
	const n = 200
	if path := os.Getenv("CRS_SQLITE_KILL_CHILD"); path != "" {
		s, err := Open(context.Background(), path, Options{})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		for i := range n / 20 {
			recs := make([]store.UsageRecord, 20)
			for j := range recs {
				recs[j] = store.UsageRecord{RequestID: fmt.Sprint(i, "-", j), Input: 1, CreatedAt: time.UnixMilli(int64(i))}
			}
			if _, err := s.InsertUsage(context.Background(), recs); err != nil {
				fmt.Println("error:", err)
				os.Exit(1)
			}
		}
		fmt.Println("committed")
		time.Sleep(time.Minute) // wait to be killed, connections open
		os.Exit(2)
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	path := filepath.Join(t.TempDir(), "crs.db")
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestSurvivesKill$")
	cmd.Env = append(os.Environ(), "CRS_SQLITE_KILL_CHILD="+path)
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "committed" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child said %q, %v", line, err)
	}
	must(t, cmd.Process.Kill()) // SIGKILL: no deferred Close, no checkpoint
	_ = cmd.Wait()
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Logf("no WAL file left behind (%v); the test is weaker", err)
	}

	s := openAt(t, path, Options{})
	recs, err := s.ListUsage(t.Context(), store.UsageFilter{}, 0)
	must(t, err)
	if len(recs) != n {
		t.Errorf("%d records after kill -9, want %d", len(recs), n)
	}
}

func BenchmarkInsertUsage(b *testing.B) {
	ctx := context.Background()
	s := openAt(b, filepath.Join(b.TempDir(), "crs.db"), Options{})
	const batch = 32
	recs := make([]store.UsageRecord, batch)
	now := time.Now()
	i := 0
	for b.Loop() {
		for j := range recs {
			recs[j] = store.UsageRecord{
				RequestID: fmt.Sprintf("req-%d-%d", i, j), KeyID: store.KeyID(fmt.Sprint("key-", j%8)),
				AccountID: store.AccountID(fmt.Sprint("acct-", j%4)), Model: "claude-sonnet-4-5",
				Input: 1000, Output: 200, CacheRead: 5000, CostPico: 123456789, Status: 200,
				CreatedAt: now.Add(time.Duration(i) * time.Second),
			}
		}
		n, err := s.InsertUsage(ctx, recs)
		if err != nil || n != batch {
			b.Fatalf("InsertUsage = %d, %v", n, err)
		}
		i++
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "records/s")
}

// TestConcurrentOpen opens a new file from several Stores at once, as a
// server and a CLI started together would. Migration reads the schema
// version and then writes in one transaction; only an IMMEDIATE
// transaction makes the others wait instead of failing with
// "database is locked".
func TestConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crs.db")
	const n = 6
	var wg sync.WaitGroup
	stores := make([]*Store, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = Open(t.Context(), path, Options{}) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("Open %d: %v", i, errs[i])
			continue
		}
		var v int
		must(t, stores[i].read.QueryRowContext(t.Context(), "PRAGMA user_version").Scan(&v))
		if v != len(migrations) {
			t.Errorf("store %d sees user_version %d", i, v)
		}
		must(t, stores[i].Close())
	}
}

// TestFilesAreOwnerOnly: the database and its WAL are created 0600.
func TestFilesAreOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "crs.db")
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.InsertUsage(context.Background(), []store.UsageRecord{{RequestID: "r", Attempt: 1, CreatedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"crs.db", "crs.db-wal", "crs.db-shm"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, st.Mode().Perm())
		}
	}
}
