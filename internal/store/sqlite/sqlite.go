// Package sqlite is the embedded store backend: one SQLite file in DATA_DIR,
// opened through the pure-Go driver modernc.org/sqlite, so `crs serve` needs
// no other service. The CLI opens the same file while the server runs; every
// cross-process concern (cache invalidation, write locking) is therefore
// solved inside the database file, not in this process's memory. The one
// exception is sticky sessions, which only the serving process needs.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/memcounters"
)

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// Location is the zone whose midnights bound the daily rollups (the
	// TIMEZONE setting). Nil means time.Local.
	Location *time.Location
	// Now is the clock for sticky-binding and admin-session expiry. Nil
	// means time.Now; tests inject a fake clock.
	Now func() time.Time
}

// Store is the SQLite implementation of store.Store. It is safe for
// concurrent use, and several Stores (in one or several processes) may open
// the same file at once.
type Store struct {
	// write has exactly one connection, and its transactions begin with
	// BEGIN IMMEDIATE. One connection serialises this process's writers
	// in database/sql's pool instead of in SQLite's lock, and IMMEDIATE
	// takes the write lock up front, so a transaction never has to upgrade
	// a read lock to a write lock — the upgrade is the case where SQLite
	// returns SQLITE_BUSY at once instead of waiting busy_timeout. Writers
	// in other processes (the CLI) then simply wait up to busy_timeout.
	write *sql.DB
	// read is a pool of query-only connections. In WAL mode readers never
	// block the writer nor wait for it.
	read *sql.DB

	loc    *time.Location
	now    func() time.Time
	sticky *stickyMap
	// counters are the limit counters: in this process, since one server
	// runs per data directory (the lockfile).
	counters *memcounters.Counters

	// Hot-path statements, prepared once (usageStatements).
	stmtMu sync.Mutex
	stmts  *usageStmts
}

var _ store.Store = (*Store)(nil)

// busyTimeout is how long a connection waits for another connection's (or
// process's) lock before giving up with "database is locked".
const busyTimeout = 5 * time.Second

// Open opens the database at path, creating it if missing, and migrates its
// schema to the version this binary knows. A file written by a newer binary
// (a higher schema version) is refused rather than misread.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if path == "" || path == ":memory:" {
		// Two pools on one in-memory database would see two databases.
		return nil, errors.New("sqlite: a file path is required")
	}
	// The database holds key hashes, sealed credentials and everyone's
	// usage: create it readable by its owner only. SQLite gives the -wal
	// and -shm files the database file's permissions.
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600); err == nil {
		f.Close()
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	s := &Store{
		loc:      opts.Location,
		now:      opts.Now,
		sticky:   newStickyMap(),
		counters: memcounters.New(nil),
	}
	if s.loc == nil {
		s.loc = time.Local
	}
	if s.now == nil {
		s.now = time.Now
	}

	s.write, err = sql.Open("sqlite", dsn(abs, false))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	s.write.SetMaxOpenConns(1)
	s.write.SetMaxIdleConns(1)
	s.write.SetConnMaxLifetime(0)
	s.write.SetConnMaxIdleTime(0)

	// The writer goes first: it switches the file to WAL (a persistent,
	// one-time change) and migrates, so readers open a ready schema.
	if err := s.migrate(ctx); err != nil {
		s.write.Close()
		return nil, err
	}

	s.read, err = sql.Open("sqlite", dsn(abs, true))
	if err != nil {
		s.write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	s.read.SetMaxOpenConns(n)
	s.read.SetMaxIdleConns(n)
	if err := s.read.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	return s, nil
}

// dsn builds the driver's URI for path. The pragmas run on every new
// connection:
//
//   - journal_mode=WAL: readers and the writer do not block each other.
//   - synchronous=NORMAL: in WAL mode a commit is appended to the WAL
//     without an fsync; the WAL is synced at checkpoints. A killed process
//     (kill -9) loses nothing that committed, because the WAL is already in
//     the OS page cache; only a power loss or OS crash can drop the last
//     commits, and even then the database stays consistent.
//   - busy_timeout: wait for other connections' locks instead of failing.
//   - foreign_keys=ON: SQLite leaves them off unless asked, per connection.
//
// The writer's transactions begin IMMEDIATE (see Store.write); readers are
// query_only, so a bug cannot write around the single-writer discipline.
func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: q.Encode()}
	if u.Path != "" && u.Path[0] != '/' {
		// Windows drive paths need the form file:///C:/dir/db.
		u.Path = "/" + u.Path
	}
	return u.String()
}

// Backend names the implementation.
func (s *Store) Backend() string { return "sqlite" }

// Changes is nil: another process's change (the CLI) can only be seen by
// polling ChangeVersion.
func (s *Store) Changes() <-chan struct{} { return nil }

// Counters returns the in-process limit counters. Spend counters are
// re-seeded from usage records after a restart (package policy).
func (s *Store) Counters() store.LimitCounters { return s.counters }

// Ping checks that the file answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.read.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	return nil
}

// ChangeVersion reads the counter that triggers bump on every change to
// keys, accounts, groups and the admin row. Triggers live in the file, so changes
// made by another process (the CLI) bump it as well.
func (s *Store) ChangeVersion(ctx context.Context) (uint64, error) {
	var v int64
	err := s.read.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = 'change_version'`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("sqlite: change version: %w", err)
	}
	return uint64(v), nil
}

// Close closes both connection pools. The last connection to close
// checkpoints the WAL into the main file.
func (s *Store) Close() error {
	var errs []error
	s.stmtMu.Lock()
	if s.stmts != nil {
		for _, st := range s.stmts.all() {
			errs = append(errs, st.Close())
		}
	}
	s.stmtMu.Unlock()
	if s.read != nil {
		errs = append(errs, s.read.Close())
	}
	if s.write != nil {
		errs = append(errs, s.write.Close())
	}
	return errors.Join(errs...)
}

// isUnique reports whether err is a violated UNIQUE or PRIMARY KEY
// constraint, which the store reports as store.ErrConflict.
func isUnique(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return true
	}
	return false
}

// writeTx runs fn in one IMMEDIATE transaction on the writer connection,
// committing if fn returns nil.
func (s *Store) writeTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// readTx runs fn in one read-only transaction on the reader pool, so the
// several queries of one answer see the same snapshot of the file.
func (s *Store) readTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // read-only: nothing to undo
	return fn(tx)
}

// ms converts a time to the stored form: unix milliseconds.
func ms(t time.Time) int64 { return t.UnixMilli() }

// msPtr converts an optional time to unix milliseconds or NULL.
func msPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMilli()
}

// fromMs converts stored unix milliseconds back to a UTC time.
func fromMs(v int64) time.Time { return time.UnixMilli(v).UTC() }

// fromNullMs converts a nullable stored time back to an optional time.
func fromNullMs(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMs(v.Int64)
	return &t
}

// boolInt stores a bool as 0 or 1.
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// rowsAffectedOrNotFound turns an UPDATE or DELETE that matched nothing into
// store.ErrNotFound.
func rowsAffectedOrNotFound(res sql.Result, what string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("sqlite: %s: %w", what, store.ErrNotFound)
	}
	return nil
}
