package main

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// keyNamesIn lists the key names `crs keys list` shows for dir.
func keyNamesIn(t *testing.T, dir string) string {
	t.Helper()
	return cliRun(t, dir, "", "keys", "list")
}

// TestBackupWhileServingAndRestore backs up a DATA_DIR while its server
// runs, is refused a restore until the server stops, then restores and
// finds the data as it was at the backup, with the replaced database kept.
func TestBackupWhileServingAndRestore(t *testing.T) {
	t.Parallel()
	isolate(t)
	dir := newDataDir(t)
	createKey(t, dir, "before-backup")
	s := startRelay(t, dir, nil)
	backup := filepath.Join(t.TempDir(), "crs-backup.db")

	out := ok(t, "", "backup", backup, "--data-dir", dir)
	for _, want := range []string{"backed up " + filepath.Join(dir, "crs.db") + " to " + backup, "schema v", filepath.Join(dir, "encryption.key")} {
		if !strings.Contains(out, want) {
			t.Errorf("backup output %q lacks %q", out, want)
		}
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", fi, err)
	}
	createKey(t, dir, "after-backup")

	fails(t, 1, "stop it first", "restore", backup, "--data-dir", dir)
	fails(t, 1, "pid "+strconv.Itoa(os.Getpid()), "restore", backup, "--data-dir", dir)
	if !strings.Contains(keyNamesIn(t, dir), "after-backup") {
		t.Fatal("a refused restore changed the database")
	}

	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	out = ok(t, "", "restore", backup, "--data-dir", dir)
	if !strings.Contains(out, "restored "+backup) || !strings.Contains(out, "crs.db.bak") || !strings.Contains(out, "crs doctor") {
		t.Errorf("restore output %q", out)
	}
	keys := keyNamesIn(t, dir)
	if !strings.Contains(keys, "before-backup") || strings.Contains(keys, "after-backup") {
		t.Errorf("after restore, keys:\n%s\nwant before-backup only", keys)
	}
	// The replaced database is the .bak; restoring it undoes the restore.
	ok(t, "", "restore", filepath.Join(dir, "crs.db.bak"), "--data-dir", dir)
	if !strings.Contains(keyNamesIn(t, dir), "after-backup") {
		t.Error("restoring crs.db.bak did not bring back the replaced database")
	}
	// And the server starts on a restored DATA_DIR.
	ok(t, "", "restore", backup, "--data-dir", dir)
	s = startRelay(t, dir, nil)
	ok(t, "", "healthcheck", "--url", s.url)
}

func TestBackupRestoreRefusals(t *testing.T) {
	t.Parallel()
	isolate(t)
	empty := t.TempDir()
	fails(t, 1, "no database at", "backup", filepath.Join(t.TempDir(), "b.db"), "--data-dir", empty)
	fails(t, 2, "want one FILE", "backup", "--data-dir", empty)
	fails(t, 2, "want one FILE", "restore", "--data-dir", empty)

	dir := newDataDir(t)
	createKey(t, dir, "k")
	fails(t, 2, "is the live database", "backup", filepath.Join(dir, "crs.db"), "--data-dir", dir)
	fails(t, 2, "is the live database", "backup", filepath.Join(dir, ".", "crs.db-wal"), "--data-dir", dir)

	junk := filepath.Join(t.TempDir(), "junk.db")
	if err := os.WriteFile(junk, []byte(strings.Repeat("junk", 1024)), 0o600); err != nil {
		t.Fatal(err)
	}
	fails(t, 1, "not a readable SQLite database", "restore", junk, "--data-dir", dir)
	fails(t, 1, "no such file", "restore", filepath.Join(t.TempDir(), "missing.db"), "--data-dir", dir)
	if _, err := os.Stat(filepath.Join(dir, "crs.db.bak")); !os.IsNotExist(err) {
		t.Errorf("a refused restore left a .bak: %v", err)
	}
	if !strings.Contains(keyNamesIn(t, dir), "k") {
		t.Error("a refused restore lost the key")
	}
}

// TestRestoreOntoANewMachine restores into a DATA_DIR that does not exist
// yet, as on a fresh machine.
func TestRestoreOntoANewMachine(t *testing.T) {
	t.Parallel()
	isolate(t)
	old := newDataDir(t)
	createKey(t, old, "moved")
	backup := filepath.Join(t.TempDir(), "b.db")
	ok(t, "", "backup", backup, "--data-dir", old)

	fresh := filepath.Join(t.TempDir(), "new", "data")
	out := ok(t, "", "restore", backup, "--data-dir", fresh)
	if strings.Contains(out, ".bak") {
		t.Errorf("restore onto nothing mentions a .bak: %q", out)
	}
	if !strings.Contains(keyNamesIn(t, fresh), "moved") {
		t.Error("restored DATA_DIR lacks the key")
	}
}

// TestRestoreAsRootKeepsTheOwner runs as root only: a restore by root into
// a DATA_DIR that belongs to the service's user leaves files that user can
// open.
func TestRestoreAsRootKeepsTheOwner(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	isolate(t)
	src := newDataDir(t)
	createKey(t, src, "k")
	backup := filepath.Join(t.TempDir(), "b.db")
	ok(t, "", "backup", backup, "--data-dir", src)

	dir := t.TempDir()
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	ok(t, "", "restore", backup, "--data-dir", dir)
	for _, n := range []string{"crs.db", "crs.pid"} {
		if u, _, ok := fileOwner(filepath.Join(dir, n)); !ok || u != uid {
			t.Errorf("%s owned by %d, want nobody (%d)", n, u, uid)
		}
	}
}

func TestByteSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 123456: "123.5 kB", 12_300_000: "12.3 MB", 5e9: "5.0 GB"} {
		if got := byteSize(n); got != want {
			t.Errorf("byteSize(%d) = %q, want %q", n, got, want)
		}
	}
}
