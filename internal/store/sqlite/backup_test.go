package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// addKey stores a key named name (also its id and hash).
func addKey(t testing.TB, s *Store, name string) {
	t.Helper()
	must(t, s.CreateKey(context.Background(), store.Key{
		ID: store.KeyID(name), Name: name, Hash: "h-" + name, Hint: "abcd", CreatedAt: time.UnixMilli(1),
	}))
}

// keyNames lists the key names in the crs database at path, opened the way
// the server would open it.
func keyNames(t *testing.T, path string) map[string]bool {
	t.Helper()
	s, err := Open(t.Context(), path, Options{})
	must(t, err)
	defer s.Close()
	keys, err := s.ListKeys(t.Context(), true)
	must(t, err)
	names := map[string]bool{}
	for _, k := range keys {
		names[k.Name] = true
	}
	return names
}

// leftovers lists the temporary files a copy left in dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	var tmp []string
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			tmp = append(tmp, e.Name())
		}
	}
	return tmp
}

// TestBackupWhileWriting takes a backup while another Store (another
// process, as the server would be) commits keys as fast as it can. The
// backup must be a complete, undamaged database holding at least every key
// committed before it started — including commits still in the WAL, which
// a copy of crs.db alone would miss — and be private to its owner.
func TestBackupWhileWriting(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	path := filepath.Join(dir, "crs.db")
	server := openAt(t, path, Options{})
	cli := openAt(t, path, Options{})
	for i := range 50 {
		addKey(t, server, fmt.Sprintf("before-%d", i))
	}
	if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("the test needs commits in the WAL: %v", err)
	}

	stop := make(chan struct{})
	var wrote atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			addKey(t, server, fmt.Sprintf("during-%d", i))
			wrote.Add(1)
		}
	})
	for wrote.Load() < 5 {
		time.Sleep(time.Millisecond)
	}
	dest := filepath.Join(dir, "backup.db")
	err := cli.Backup(ctx, dest)
	close(stop)
	wg.Wait()
	must(t, err)

	if v, err := CheckFile(ctx, dest); err != nil || v != schemaVersion {
		t.Fatalf("CheckFile(backup) = %d, %v; want %d", v, err, schemaVersion)
	}
	fi, err := os.Stat(dest)
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("backup mode %v, want 0600", fi.Mode().Perm())
	}
	names := keyNames(t, dest)
	for i := range 50 {
		if !names[fmt.Sprintf("before-%d", i)] {
			t.Fatalf("backup lacks before-%d (of %d keys)", i, len(names))
		}
	}
	if len(names) >= 50+int(wrote.Load()) {
		t.Logf("note: the backup saw every concurrent write (%d)", wrote.Load())
	}
	if tmp := leftovers(t, dir); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}

	// A second backup to the same name replaces the first.
	addKey(t, server, "after")
	must(t, cli.Backup(ctx, dest))
	if !keyNames(t, dest)["after"] {
		t.Error("a second backup did not replace the first")
	}
}

// TestCopiesLeaveNoCompanionFiles backs up and checks a WAL-mode database
// nothing else has open: its -wal and -shm files must be gone afterwards,
// as after any other command, not left for whoever runs next (possibly as
// another user) to trip over.
func TestCopiesLeaveNoCompanionFiles(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	path := filepath.Join(dir, "crs.db")
	s, err := Open(ctx, path, Options{})
	must(t, err)
	addKey(t, s, "k")
	must(t, s.Close())
	must(t, BackupFile(ctx, path, filepath.Join(t.TempDir(), "b.db")))
	_, err = CheckFile(ctx, path)
	must(t, err)
	for _, f := range []string{path + "-wal", path + "-shm"} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", filepath.Base(f), err)
		}
	}
}

// TestBackupFailureKeepsOldFile checks that a backup that fails leaves an
// existing file of that name as it was, and no temporary file behind.
func TestBackupFailureKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, filepath.Join(dir, "crs.db"), Options{})
	dest := filepath.Join(dir, "backup.db")
	must(t, os.WriteFile(dest, []byte("last night's backup"), 0o600))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Backup(ctx, dest); err == nil {
		t.Fatal("Backup with a cancelled context succeeded")
	}
	if b, _ := os.ReadFile(dest); string(b) != "last night's backup" {
		t.Errorf("old backup changed to %q", b)
	}
	if tmp := leftovers(t, dir); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
	if err := s.Backup(t.Context(), filepath.Join(dir, "no-such-dir", "b.db")); err == nil {
		t.Error("Backup into a missing directory succeeded")
	}
	if err := BackupFile(t.Context(), filepath.Join(dir, "missing.db"), dest); err == nil {
		t.Error("BackupFile of a missing database succeeded")
	}
	if b, _ := os.ReadFile(dest); string(b) != "last night's backup" {
		t.Errorf("old backup changed to %q", b)
	}
	if tmp := leftovers(t, dir); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); !os.IsNotExist(err) {
		t.Errorf("BackupFile created the database it was to copy: %v", err)
	}
}

func TestCheckFile(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	s, err := Open(ctx, good, Options{})
	must(t, err)
	must(t, s.Close()) // the last close checkpoints: the file alone is whole

	plain := filepath.Join(dir, "plain.db") // SQLite, but not crs's
	db, err := sql.Open("sqlite", dsn(plain, false))
	must(t, err)
	_, err = db.Exec("CREATE TABLE notes (x TEXT); PRAGMA user_version = 3")
	must(t, err)
	must(t, db.Close())

	newer := filepath.Join(dir, "newer.db")
	copyFile(t, good, newer)
	db, err = sql.Open("sqlite", dsn(newer, false))
	must(t, err)
	_, err = db.Exec(fmt.Sprintf("PRAGMA user_version = %d", schemaVersion+1))
	must(t, err)
	must(t, db.Close())

	junk := filepath.Join(dir, "junk.db")
	must(t, os.WriteFile(junk, []byte(strings.Repeat("not a database ", 100)), 0o600))

	if v, err := CheckFile(ctx, good); err != nil || v != schemaVersion {
		t.Errorf("CheckFile(good) = %d, %v", v, err)
	}
	for _, c := range []struct{ path, want string }{
		{filepath.Join(dir, "missing.db"), "no such file"},
		{dir, "is a directory"},
		{junk, "not a readable SQLite database"},
		{plain, "not one crs wrote"},
		{newer, "use a newer crs"},
	} {
		if _, err := CheckFile(ctx, c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckFile(%s) = %v, want an error saying %q", filepath.Base(c.path), err, c.want)
		}
	}
}

// copyFile copies a closed database file byte for byte.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	must(t, err)
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	must(t, err)
	_, err = io.Copy(out, in)
	must(t, err)
	must(t, out.Close())
}

// TestRestore restores a backup over a database, keeps the replaced one as
// .bak, swaps them back by restoring the .bak, and refuses a bad source
// without touching anything.
func TestRestore(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	live := filepath.Join(dir, "crs.db")
	backup := filepath.Join(dir, "monday.db")
	s, err := Open(ctx, live, Options{})
	must(t, err)
	addKey(t, s, "monday")
	must(t, s.Backup(ctx, backup))
	addKey(t, s, "tuesday")
	must(t, s.Close())

	v, err := Restore(ctx, backup, live)
	if err != nil || v != schemaVersion {
		t.Fatalf("Restore = %d, %v", v, err)
	}
	if got := keyNames(t, live); !got["monday"] || got["tuesday"] {
		t.Errorf("restored database has keys %v, want monday only", got)
	}
	if got := keyNames(t, live+".bak"); !got["tuesday"] {
		t.Errorf(".bak has keys %v, want the replaced database with tuesday", got)
	}

	// Restoring the .bak undoes the restore.
	_, err = Restore(ctx, live+".bak", live)
	must(t, err)
	if got := keyNames(t, live); !got["tuesday"] {
		t.Errorf("after restoring the .bak: keys %v, want tuesday back", got)
	}
	if got := keyNames(t, live+".bak"); got["tuesday"] || !got["monday"] {
		t.Errorf("after restoring the .bak, .bak has %v, want monday only", got)
	}

	// A bad source moves nothing.
	junk := filepath.Join(dir, "junk.db")
	must(t, os.WriteFile(junk, []byte(strings.Repeat("x", 4096)), 0o600))
	before, _ := os.ReadFile(live)
	bakBefore, _ := os.ReadFile(live + ".bak")
	if _, err := Restore(ctx, junk, live); err == nil {
		t.Fatal("Restore from junk succeeded")
	}
	after, _ := os.ReadFile(live)
	bakAfter, _ := os.ReadFile(live + ".bak")
	if string(before) != string(after) || string(bakBefore) != string(bakAfter) {
		t.Error("a refused restore changed the database or its .bak")
	}

	// Onto a DATA_DIR without a database yet: no .bak.
	fresh := filepath.Join(t.TempDir(), "crs.db")
	_, err = Restore(ctx, backup, fresh)
	must(t, err)
	if _, err := os.Stat(fresh + ".bak"); !os.IsNotExist(err) {
		t.Errorf("restore onto nothing made a .bak: %v", err)
	}
	if !keyNames(t, fresh)["monday"] {
		t.Error("restore onto nothing lost the keys")
	}
	if tmp := append(leftovers(t, dir), leftovers(t, filepath.Dir(fresh))...); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

// TestRestoreKeepsAStrandedWAL restores over a database whose last commits
// are still in its WAL (as after a crash) and from a raw WAL-mode crs.db:
// the .bak must keep those commits, and a raw file must be accepted.
func TestRestoreKeepsAStrandedWAL(t *testing.T) {
	ctx := t.Context()
	running := filepath.Join(t.TempDir(), "crs.db")
	s := openAt(t, running, Options{})
	addKey(t, s, "in-the-wal")
	// Copy the files of the open database: crs.db without the commit,
	// crs.db-wal with it, as a crash would leave them.
	dir := t.TempDir()
	live := filepath.Join(dir, "crs.db")
	copyFile(t, running, live)
	copyFile(t, running+"-wal", live+"-wal")

	raw := filepath.Join(t.TempDir(), "crs.db") // a WAL-mode file, closed
	r, err := Open(ctx, raw, Options{})
	must(t, err)
	addKey(t, r, "raw")
	must(t, r.Close())

	_, err = Restore(ctx, raw, live)
	must(t, err)
	if _, err := os.Stat(live + "-wal"); !os.IsNotExist(err) {
		t.Errorf("the old WAL stayed beside the restored database: %v", err)
	}
	if !keyNames(t, live)["raw"] {
		t.Error("restore from a raw crs.db lost its key")
	}
	if !keyNames(t, live+".bak")["in-the-wal"] {
		t.Error("the .bak lost the commit that was in the old WAL")
	}
}

// writeVersion2 makes a database at path as a binary with the first two
// migrations left it, with one key.
func writeVersion2(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", dsn(path, false))
	must(t, err)
	for _, m := range migrations[:2] {
		_, err = db.Exec(m)
		must(t, err)
	}
	_, err = db.Exec(`PRAGMA user_version = 2;
		INSERT INTO keys (id, name, hash, hint, tags, created_at) VALUES ('k', 'old key', 'h', 'abcd', '[]', 1)`)
	must(t, err)
	must(t, db.Close())
}

// TestSaveBeforeMigrating opens files that need migrating and checks the
// copy taken first: present, at the old version, with the old data; not
// taken for a new or current file; and never overwritten.
func TestSaveBeforeMigrating(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	path := filepath.Join(dir, "crs.db")
	writeVersion2(t, path)
	saved := fmt.Sprintf("%s.pre-v%d", path, schemaVersion)

	s, err := Open(ctx, path, Options{})
	must(t, err)
	must(t, s.Close())
	if v, err := headerVersion(saved); err != nil || v != 2 {
		t.Fatalf("pre-migration copy version = %d, %v; want 2", v, err)
	}
	if v, err := CheckFile(ctx, saved); err != nil || v != 2 {
		t.Fatalf("CheckFile(pre-migration copy) = %d, %v", v, err)
	}
	db, err := sql.Open("sqlite", sourceDSN(saved))
	must(t, err)
	var name string
	must(t, db.QueryRow(`SELECT name FROM keys WHERE id = 'k'`).Scan(&name))
	must(t, db.Close())
	if name != "old key" {
		t.Errorf("pre-migration copy key = %q", name)
	}
	fi, err := os.Stat(saved)
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("pre-migration copy mode %v, want 0600", fi.Mode().Perm())
	}

	// Opening the migrated file again takes no copy and keeps the first.
	must(t, os.Remove(saved))
	openAt(t, path, Options{})
	if _, err := os.Stat(saved); !os.IsNotExist(err) {
		t.Errorf("a current file got a pre-migration copy: %v", err)
	}

	// A second old file whose copy exists already keeps that copy.
	dir2 := t.TempDir()
	path2 := filepath.Join(dir2, "crs.db")
	writeVersion2(t, path2)
	saved2 := fmt.Sprintf("%s.pre-v%d", path2, schemaVersion)
	must(t, os.WriteFile(saved2, []byte("the first copy"), 0o600))
	openAt(t, path2, Options{})
	if b, _ := os.ReadFile(saved2); string(b) != "the first copy" {
		t.Errorf("an existing pre-migration copy was replaced")
	}

	// A new file has nothing to save.
	dir3 := t.TempDir()
	openAt(t, filepath.Join(dir3, "crs.db"), Options{})
	ents, _ := os.ReadDir(dir3)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".pre-v") || strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("a new database left %s", e.Name())
		}
	}
	if tmp := append(leftovers(t, dir), leftovers(t, dir2)...); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}
