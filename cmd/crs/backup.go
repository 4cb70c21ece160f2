package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/crs-relay/crs/internal/config"
	"github.com/crs-relay/crs/internal/lockfile"
	"github.com/crs-relay/crs/internal/store/backend"
	"github.com/crs-relay/crs/internal/store/sqlite"
)

const (
	backupSynopsis  = "FILE [--data-dir DIR]"
	restoreSynopsis = "FILE [--data-dir DIR]"
)

// pidFile is the lockfile `crs serve` holds in DATA_DIR while it runs.
const pidFile = "crs.pid"

// backupCmd writes a consistent snapshot of DATA_DIR/crs.db to FILE. It is
// meant to run while the server runs (from cron, say): the snapshot is one
// read transaction, so the server keeps serving and writing meanwhile.
func backupCmd(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "backup", backupSynopsis)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"backup: want one FILE to write the backup to"}
	}
	if err := embeddedOnly(c.getenv, "backup"); err != nil {
		return err
	}
	dir, err := absDataDir(*dataDir, c.getenv)
	if err != nil {
		return err
	}
	db := filepath.Join(dir, DBFile)
	if _, err := os.Stat(db); err != nil {
		return fmt.Errorf("no database at %s (check --data-dir or DATA_DIR): %w", db, err)
	}
	dest, err := filepath.Abs(pos[0])
	if err != nil {
		return err
	}
	if isDatabaseFile(dest, db) {
		return usageError{fmt.Sprintf("backup: %s is the live database; write the backup somewhere else", pos[0])}
	}
	if err := sqlite.BackupFile(ctx, db, dest); err != nil {
		return err
	}
	// Reading the copy back proves it is whole, and tells its version.
	version, err := sqlite.CheckFile(ctx, dest)
	if err != nil {
		return fmt.Errorf("the backup did not check out: %w", err)
	}
	var size int64
	if fi, err := os.Stat(dest); err == nil {
		size = fi.Size()
	}
	fmt.Fprintf(c.stdout, "backed up %s to %s (%s, schema v%d)\n", db, dest, byteSize(size), version)
	fmt.Fprintf(c.stdout, "keep ENCRYPTION_KEY with it (the variable, or %s): the account credentials inside open with that key only\n",
		filepath.Join(dir, config.EncryptionKeyFile))
	return nil
}

// restoreCmd puts a backup in place of DATA_DIR/crs.db, keeping the
// replaced file as crs.db.bak. It refuses while a server holds the
// DATA_DIR lockfile, and holds the lock itself until done, so no server
// starts on a half-restored directory.
func restoreCmd(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "restore", restoreSynopsis)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"restore: want one FILE: a backup made by crs backup (or a crs.db)"}
	}
	src, err := filepath.Abs(pos[0])
	if err != nil {
		return err
	}
	if err := embeddedOnly(c.getenv, "restore"); err != nil {
		return err
	}
	dir, err := absDataDir(*dataDir, c.getenv)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("DATA_DIR: %w", err)
	}
	lock, err := lockfile.Acquire(filepath.Join(dir, pidFile))
	var held *lockfile.HeldError
	if errors.As(err, &held) {
		return fmt.Errorf("%v; stop it first (crs service stop), then restore", held)
	}
	if err != nil {
		return err
	}
	defer lock.Release()

	db := filepath.Join(dir, DBFile)
	_, statErr := os.Stat(db)
	hadOne := statErr == nil
	if _, err := sqlite.Restore(ctx, src, db); err != nil {
		return err
	}
	// Migrate now, while the lock keeps a server from starting: a backup
	// from an older crs is brought up to date (with a copy of it kept as
	// crs.db.pre-vN), and a problem shows here rather than at start.
	st, err := sqlite.Open(ctx, db, sqlite.Options{})
	if err != nil {
		return fmt.Errorf("the restored database does not open: %w", err)
	}
	if err := st.Close(); err != nil {
		return err
	}
	// Files written as root would lock out a service running as the
	// DATA_DIR's owner.
	matchOwner(dir, ownedNames(dir)...)
	version, err := sqlite.CheckFile(ctx, db)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "restored %s into %s (schema v%d)\n", src, db, version)
	if hadOne {
		fmt.Fprintf(c.stdout, "the database it replaced is %s.bak; restore that to undo\n", db)
	}
	fmt.Fprintln(c.stdout, "run crs doctor to check that ENCRYPTION_KEY opens the restored accounts' credentials")
	return nil
}

// isDatabaseFile reports whether path is the database db or one of its
// companion files, which a backup must never overwrite.
func isDatabaseFile(path, db string) bool {
	for _, f := range []string{db, db + "-wal", db + "-shm"} {
		if filepath.Clean(path) == filepath.Clean(f) {
			return true
		}
		a, errA := os.Stat(path)
		b, errB := os.Stat(f)
		if errA == nil && errB == nil && os.SameFile(a, b) {
			return true
		}
	}
	return false
}

// ownedNames lists the files in DATA_DIR that crs itself writes at top
// level: the database and its companions, the lockfile, pre-migration
// copies.
func ownedNames(dir string) []string {
	names := []string{DBFile, DBFile + "-wal", DBFile + "-shm", pidFile}
	copies, _ := filepath.Glob(filepath.Join(dir, DBFile+".pre-v*"))
	for _, p := range copies {
		names = append(names, filepath.Base(p))
	}
	return names
}

// matchOwner gives the named files in dir to dir's owner, when we are root
// and they are ours: `sudo crs restore` must not leave a database the
// service's own user cannot open. Elsewhere it does nothing.
func matchOwner(dir string, names ...string) {
	if os.Geteuid() != 0 {
		return
	}
	uid, gid, ok := fileOwner(dir)
	if !ok || uid == 0 {
		return
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		if u, _, ok := fileOwner(p); ok && u == 0 {
			_ = os.Lchown(p, uid, gid)
		}
	}
}

// byteSize renders n bytes for people: "12.3 MB".
func byteSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %sB", float64(n)/float64(div), strings.Split("k M G T P", " ")[exp])
}

// embeddedOnly refuses a command that works on the embedded file when the
// environment selects the shared store, instead of quietly copying a
// DATA_DIR/crs.db no server uses.
func embeddedOnly(getenv func(string) string, cmd string) error {
	if strings.TrimSpace(getenv("REDIS_URL")) == "" && strings.TrimSpace(getenv("REDIS_HOST")) == "" {
		return nil
	}
	return fmt.Errorf("%s: %w", cmd, backend.ErrEmbeddedOnly)
}
