//go:build unix

package clitest

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func TestLockFileExcludesSecondHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	unlock, err := lockFile(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if u2, err := lockFile(ctx, path); err == nil {
		u2()
		t.Fatal("second lockFile succeeded while the first still held the lock")
	}
	unlock()
	u3, err := lockFile(t.Context(), path)
	if err != nil {
		t.Fatalf("lockFile after unlock: %v", err)
	}
	u3()
}
