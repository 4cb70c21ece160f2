package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Backups, restores and the safety copy taken before a migration all copy
// the database with VACUUM INTO. It reads the source inside one read
// transaction, so the copy is a consistent snapshot even while a server in
// another process keeps writing, and it includes the commits that still sit
// in the WAL, which a plain copy of crs.db would miss. The copy is a
// self-contained file in rollback-journal mode: one file to move around,
// readable by any sqlite3 shell; Open switches it back to WAL.

// Backup writes a consistent snapshot of the database to dest, while other
// connections and processes keep reading and writing. dest is replaced only
// once the snapshot is complete and synced, so a failed backup leaves an
// older dest as it was. The snapshot is readable by its owner only, like the
// database: it holds the same key hashes and sealed credentials.
func (s *Store) Backup(ctx context.Context, dest string) error {
	src, err := mainFile(ctx, s.read)
	if err != nil {
		return err
	}
	return BackupFile(ctx, src, dest)
}

// BackupFile is Backup for the database file at src, without opening it as
// a Store: the file is only read, never migrated, so a newer crs binary can
// back up the file of an older server that is still running.
func BackupFile(ctx context.Context, src, dest string) error {
	tmp, err := snapshotTemp(ctx, src, dest)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, dest); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	syncDir(filepath.Dir(dest))
	return nil
}

// CheckFile reads the database file at path (it writes nothing) and
// returns its schema version. It fails, saying why in words an operator can act on,
// when the file is missing, is not a SQLite database, is damaged, is not a
// crs database, or was written by a newer crs than this binary.
func CheckFile(ctx context.Context, path string) (version int, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("sqlite: %w", err)
	}
	if fi.IsDir() {
		return 0, fmt.Errorf("sqlite: %s is a directory, not a database file", path)
	}
	db, err := sql.Open("sqlite", sourceDSN(path))
	if err != nil {
		return 0, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	defer db.Close()
	var check string
	if err := db.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&check); err != nil {
		return 0, fmt.Errorf("sqlite: %s is not a readable SQLite database: %w", path, err)
	}
	if check != "ok" {
		return 0, fmt.Errorf("sqlite: %s is damaged: %s", path, check)
	}
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return 0, fmt.Errorf("sqlite: %s: %w", path, err)
	}
	var changes int64
	if version == 0 || db.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = 'change_version'`).Scan(&changes) != nil {
		return 0, fmt.Errorf("sqlite: %s is a SQLite database but not one crs wrote", path)
	}
	if version > schemaVersion {
		return 0, fmt.Errorf("sqlite: %s has schema version %d, newer than this binary's %d; use a newer crs", path, version, schemaVersion)
	}
	return version, nil
}

// Restore replaces the database at dst with a consistent copy of the crs
// database at src and returns the copy's schema version (Open migrates it
// later). The replaced database is kept as dst+".bak" (with its WAL, if one
// was left behind, as dst+".bak-wal"), replacing an older .bak; restoring
// from that .bak swaps the two back. src is checked with CheckFile before
// anything is moved.
//
// Nothing may have dst open meanwhile: a server writing to the old file
// would keep writing to what becomes the .bak. Callers make sure the server
// is stopped (the DATA_DIR lockfile tells) before they call Restore.
func Restore(ctx context.Context, src, dst string) (version int, err error) {
	if version, err = CheckFile(ctx, src); err != nil {
		return 0, err
	}
	tmp, err := snapshotTemp(ctx, src, dst)
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp) // gone already once renamed into place
	bak := dst + ".bak"
	// putBack returns the old database to its place rather than leave
	// none when the new one cannot take it.
	putBack := func() {
		_ = os.Rename(bak, dst)
		_ = os.Rename(bak+"-wal", dst+"-wal")
	}
	moved, err := setAside(dst, bak)
	if err != nil {
		if moved {
			putBack()
		}
		return 0, fmt.Errorf("sqlite: restore: keeping the old database as %s: %w", bak, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		if moved {
			putBack()
		}
		return 0, fmt.Errorf("sqlite: restore: %w", err)
	}
	syncDir(filepath.Dir(dst))
	return version, nil
}

// saveBeforeMigrating copies a file that holds data and lacks migrations to
// <file>.pre-v<N>, N being the schema version it is about to be migrated
// to, so an upgrade that goes wrong can be undone by restoring that copy
// with the old binary. A new file (version 0) has nothing to save. An
// existing copy is kept: it is the older, and so the more useful, one.
func (s *Store) saveBeforeMigrating(ctx context.Context) error {
	var v int
	if err := s.write.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	if v == 0 || v >= schemaVersion {
		return nil
	}
	src, err := mainFile(ctx, s.write)
	if err != nil {
		return err
	}
	dest := fmt.Sprintf("%s.pre-v%d", src, schemaVersion)
	if _, err := os.Lstat(dest); err == nil {
		return nil
	}
	tmp, err := snapshotTemp(ctx, src, dest)
	if err != nil {
		return fmt.Errorf("%w (taken before migrating %s from schema version %d to %d; free some space and start again)", err, src, v, schemaVersion)
	}
	defer os.Remove(tmp)
	// Another process opening the file at the same moment may have
	// migrated it between our version read and the snapshot: such a copy
	// is not from before the migration, and the other process saved one.
	got, err := headerVersion(tmp)
	if err != nil {
		return err
	}
	if got >= schemaVersion {
		return nil
	}
	// Link refuses to replace, so of two processes racing here the first
	// copy wins.
	if err := os.Link(tmp, dest); err != nil && !errors.Is(err, fs.ErrExist) {
		// A file system without hard links: rename is good enough.
		if err := os.Rename(tmp, dest); err != nil {
			return fmt.Errorf("sqlite: saving %s before migrating: %w", dest, err)
		}
	}
	syncDir(filepath.Dir(dest))
	return nil
}

// mainFile returns the path of the database file db has open.
func mainFile(ctx context.Context, db *sql.DB) (string, error) {
	rows, err := db.QueryContext(ctx, "PRAGMA database_list")
	if err != nil {
		return "", fmt.Errorf("sqlite: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq int
		var name, file string
		if err := rows.Scan(&seq, &name, &file); err != nil {
			return "", fmt.Errorf("sqlite: %w", err)
		}
		if name == "main" && file != "" {
			return file, nil
		}
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("sqlite: %w", err)
	}
	return "", errors.New("sqlite: the database has no file")
}

// snapshotTemp writes a consistent snapshot of the database at src into a
// new temporary file beside dest, synced to disk, and returns its path. The
// caller moves it into place or removes it.
func snapshotTemp(ctx context.Context, src, dest string) (string, error) {
	// CreateTemp makes the file with mode 0600, and VACUUM INTO accepts
	// an empty file, keeping its mode.
	f, err := os.CreateTemp(filepath.Dir(dest), filepath.Base(dest)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("sqlite: snapshot: %w", err)
	}
	tmp := f.Name()
	f.Close()
	fail := func(err error) (string, error) {
		os.Remove(tmp)
		return "", fmt.Errorf("sqlite: snapshot of %s: %w", src, err)
	}
	// A connection of its own: a snapshot neither waits for nor holds up
	// this process's writer connection.
	db, err := sql.Open("sqlite", sourceDSN(src))
	if err != nil {
		return fail(err)
	}
	db.SetMaxOpenConns(1)
	_, err = db.ExecContext(ctx, "VACUUM INTO ?", tmp)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	if err := syncFile(tmp); err != nil {
		return fail(err)
	}
	return tmp, nil
}

// sourceDSN is the driver URI that opens the existing database at path
// for copying or checking, waiting for other processes' locks like every
// other connection does. It asks for read-write access (SQLite falls back
// to read-only where the file is write-protected) though it only reads:
// the last connection to close a WAL-mode database removes its -wal and
// -shm files only if it may write, and ones left behind by `sudo crs
// backup` would belong to root and lock the service's own user out.
func sourceDSN(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	q := url.Values{}
	q.Set("mode", "rw") // never create: a missing file is an error
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}
	if !strings.HasPrefix(u.Path, "/") {
		u.Path = "/" + u.Path // Windows: file:///C:/dir/db
	}
	return u.String()
}

// headerVersion reads the schema version (user_version) from the header
// of the SQLite file at path: four big-endian bytes at offset 60, as the
// file format defines them.
func headerVersion(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var b [4]byte
	if _, err := f.ReadAt(b[:], 60); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("sqlite: %s is too short to be a database", path)
		}
		return 0, err
	}
	return int(binary.BigEndian.Uint32(b[:])), nil
}

// setAside moves the database at path (and a WAL left beside it) to bak,
// replacing an older bak, and drops its shared-memory index, which SQLite
// rebuilds. It reports whether there was a database to move.
func setAside(path, bak string) (moved bool, err error) {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	for _, old := range []string{bak, bak + "-wal", bak + "-shm"} {
		if err := os.Remove(old); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
	}
	if err := os.Rename(path, bak); err != nil {
		return false, err
	}
	if err := os.Rename(path+"-wal", bak+"-wal"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return true, err
	}
	if err := os.Remove(path + "-shm"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return true, err
	}
	return true, nil
}

// syncFile flushes the file at path to stable storage.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncDir makes a rename in dir durable. Some systems cannot sync a
// directory, which is no reason to fail: the rename itself has happened.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
