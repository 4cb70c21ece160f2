package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
)

// InitFile is the name, inside DATA_DIR, of the file that holds the first
// admin credentials. The spec tells users to read the password there; the
// first password change removes the password from it.
const InitFile = "init.json"

// MinPasswordLen is the shortest admin password accepted by a password
// change. (ADMIN_PASSWORD on first start is taken as given: the operator
// chose it deliberately.)
const MinPasswordLen = 8

// bcryptCost is bcrypt's default work factor: ~50–100 ms per check, which
// with the login throttle makes online guessing hopeless.
const bcryptCost = bcrypt.DefaultCost

// initFile is the JSON shape of DATA_DIR/init.json. The camelCase names
// are the original project's, so its instructions still apply.
type initFile struct {
	AdminUsername string `json:"adminUsername"`
	AdminPassword string `json:"adminPassword,omitempty"`
	CreatedAt     string `json:"createdAt"`
	Note          string `json:"note,omitempty"`
}

// Bootstrap creates the admin login on first start. If the store has no
// admin yet, it takes username (default "admin") and password (random
// when empty), stores the password's bcrypt hash, writes the credentials to
// DATA_DIR/init.json (mode 0600) and prints them once to out. If an admin
// exists it does nothing and returns created == false. Instances starting
// together on one shared store take a lease first, so exactly one creates
// the login and the others find it.
func Bootstrap(ctx context.Context, st store.Store, dataDir, username, password string, out io.Writer) (created bool, err error) {
	if _, err := st.GetAdmin(ctx); err == nil {
		return false, nil
	}
	token, err := waitLock(ctx, st, bootstrapLease, 30*time.Second)
	if err != nil {
		return false, fmt.Errorf("admin: waiting for another instance to create the admin login: %w", err)
	}
	defer st.Unlock(context.WithoutCancel(ctx), bootstrapLease, token)
	return bootstrap(ctx, st, dataDir, username, password, out)
}

// bootstrapLease serialises first starts on one store.
const bootstrapLease = "admin:bootstrap"

// waitLock takes the lease name, waiting up to wait for its holder.
func waitLock(ctx context.Context, st store.Locks, name string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		token, ok, err := st.TryLock(ctx, name, wait)
		if err != nil {
			return "", err
		}
		if ok {
			return token, nil
		}
		if time.Now().After(deadline) {
			return "", errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func bootstrap(ctx context.Context, st store.Store, dataDir, username, password string, out io.Writer) (bool, error) {
	if _, err := st.GetAdmin(ctx); err == nil {
		return false, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return false, fmt.Errorf("admin: reading admin login: %w", err)
	}
	username = strings.TrimSpace(username)
	if username == "" {
		username = "admin"
	}
	if password == "" {
		password = secret.RandomHex(12)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
	if err != nil {
		// Only a password over bcrypt's 72-byte limit gets here.
		return false, fmt.Errorf("ADMIN_PASSWORD: %w", err)
	}
	now := time.Now().UTC()
	// Write the file before the store: if writing fails, the next start
	// tries again instead of leaving an admin whose password nobody saw.
	f := initFile{AdminUsername: username, AdminPassword: password, CreatedAt: now.Format(time.RFC3339)}
	if err := writeInitFile(dataDir, f); err != nil {
		return false, err
	}
	if err := st.SetAdmin(ctx, store.Admin{Username: username, PasswordHash: string(hash), UpdatedAt: now}); err != nil {
		return false, fmt.Errorf("admin: storing admin login: %w", err)
	}
	path := filepath.Join(dataDir, InitFile)
	fmt.Fprintf(out, "Admin login created (shown once; also saved in %s until the first password change):\n  username: %s\n  password: %s\n", path, username, password)
	return true, nil
}

// writeInitFile replaces DATA_DIR/init.json atomically with mode 0600.
func writeInitFile(dataDir string, f initFile) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	tmp, err := os.CreateTemp(dataDir, ".init-*.json")
	if err != nil {
		return fmt.Errorf("admin: writing %s: %w", InitFile, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("admin: writing %s: %w", InitFile, err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("admin: writing %s: %w", InitFile, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("admin: writing %s: %w", InitFile, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("admin: writing %s: %w", InitFile, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dataDir, InitFile)); err != nil {
		return fmt.Errorf("admin: writing %s: %w", InitFile, err)
	}
	return nil
}

// forgetInitPassword removes the password from init.json after a password
// change, keeping the username and saying why the password is gone. A
// missing file is fine (nothing to forget).
func forgetInitPassword(dataDir string, now time.Time) error {
	if dataDir == "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dataDir, InitFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("admin: reading %s: %w", InitFile, err)
	}
	var f initFile
	if err := json.Unmarshal(b, &f); err != nil {
		// Unreadable: replace it rather than leave a password behind.
		f = initFile{}
	}
	f.AdminPassword = ""
	f.Note = "The initial password was changed at " + now.UTC().Format(time.RFC3339) + " and removed from this file."
	return writeInitFile(dataDir, f)
}
