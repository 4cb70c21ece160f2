// Package clitest installs and drives real vendor command-line clients (today:
// Claude Code) so that tests elsewhere can prove crs works with the programs
// people actually run, not only with our own idea of the protocol.
//
// The clients come from npm and are big (Claude Code is a ~400 MB native
// binary), so they are installed once into a per-user cache outside the
// repository and reused by every test package. When npm is missing or the
// install fails, tests skip with the reason, except in CI (CI=true), where a
// silently skipped client test would hide a regression, so they fail.
package clitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// ClaudeCodeVersion is the Claude Code release the tests pin. Request shapes
// and failure behaviour change between releases (see docs/claude-code.md), so
// moving it is a deliberate act that should come with a re-run of the research.
const ClaudeCodeVersion = "2.1.332"

// claudeCodePackage is the npm wrapper package; the real program is a native
// binary in a per-platform optional dependency that its postinstall links
// over bin/claude.exe.
const claudeCodePackage = "@anthropic-ai/claude-code"

// installTimeout bounds a cold npm install; the download is ~150 MB compressed.
const installTimeout = 10 * time.Minute

// CacheRootEnv names the environment variable that overrides the cache root
// (default: os.UserCacheDir()/crs-test). Installs live in versioned folders
// below it, so several pinned versions can coexist.
const CacheRootEnv = "CRS_TEST_CACHE"

// InstallClaudeCode returns the path of a working Claude Code binary of
// ClaudeCodeVersion, installing it with npm on first use. The install is
// guarded by a file lock, so test packages running in parallel neither race
// nor install twice; a finished install is recognised by a marker file and
// reused. If node or npm is missing, or the install fails, the test is skipped
// with the reason (or failed when CI=true).
func InstallClaudeCode(tb testing.TB) (binPath string) {
	tb.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(tb, "clitest: %s not found in PATH: %v", tool, err)
		}
	}
	root, err := cacheRoot()
	if err != nil {
		unavailable(tb, "clitest: no cache folder: %v", err)
	}
	dir := filepath.Join(root, "claude-code-"+ClaudeCodeVersion)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		unavailable(tb, "clitest: %v", err)
	}

	ctx, cancel := context.WithTimeout(tb.Context(), installTimeout)
	defer cancel()
	unlock, err := lockFile(ctx, dir+".lock")
	if err != nil {
		unavailable(tb, "clitest: lock %s.lock: %v", dir, err)
	}
	defer unlock()

	marker := filepath.Join(dir, ".crs-installed")
	if b, err := os.ReadFile(marker); err == nil {
		bin := strings.TrimSpace(string(b))
		if checkVersion(ctx, bin) == nil {
			return bin
		}
		// The marker points at a binary that no longer works (a cache
		// cleaner, a half-deleted folder): fall through and reinstall.
		_ = os.Remove(marker)
	}

	start := time.Now()
	cmd := exec.CommandContext(ctx, "npm", "install",
		"--no-save", "--no-audit", "--no-fund", "--engine-strict=false",
		"--prefix", dir, claudeCodePackage+"@"+ClaudeCodeVersion)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		unavailable(tb, "clitest: npm install %s@%s failed after %s: %v\n%s",
			claudeCodePackage, ClaudeCodeVersion, time.Since(start).Round(time.Millisecond), err, tail(out, 2000))
	}
	bin, err := findClaudeBinary(ctx, dir)
	if err != nil {
		unavailable(tb, "clitest: installed %s@%s but found no working binary: %v\nnpm output:\n%s",
			claudeCodePackage, ClaudeCodeVersion, err, tail(out, 2000))
	}
	if err := os.WriteFile(marker, []byte(bin+"\n"), 0o644); err != nil {
		tb.Fatalf("clitest: write %s: %v", marker, err)
	}
	tb.Logf("clitest: installed %s@%s into %s in %s", claudeCodePackage, ClaudeCodeVersion, dir, time.Since(start).Round(time.Millisecond))
	return bin
}

// findClaudeBinary prefers the wrapper's bin/claude.exe, which the postinstall
// replaces with the native binary. npm versions that hold back install scripts
// leave a stub there, so the per-platform package's binary is the fallback.
func findClaudeBinary(ctx context.Context, dir string) (string, error) {
	nm := filepath.Join(dir, "node_modules", "@anthropic-ai")
	candidates := []string{filepath.Join(nm, "claude-code", "bin", "claude.exe")}
	platform, _ := filepath.Glob(filepath.Join(nm, "claude-code-"+runtime.GOOS+"-*", "claude"))
	candidates = append(candidates, platform...)
	var errs []error
	for _, c := range candidates {
		err := checkVersion(ctx, c)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}

// checkVersion runs `bin --version` and insists on the pinned version, so a
// stale or foreign binary in the cache is never mistaken for the pinned one.
func checkVersion(ctx context.Context, bin string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--version")
	cmd.Env = baseEnv(os.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s --version: %w: %s", bin, err, tail(out, 300))
	}
	if !bytes.Contains(out, []byte(ClaudeCodeVersion)) {
		return fmt.Errorf("%s --version = %q, want %s", bin, strings.TrimSpace(string(out)), ClaudeCodeVersion)
	}
	return nil
}

func cacheRoot() (string, error) {
	if v := os.Getenv(CacheRootEnv); v != "" {
		return filepath.Abs(v)
	}
	base, err := os.UserCacheDir() // $XDG_CACHE_HOME or ~/.cache on Linux
	if err != nil {
		return "", err
	}
	return filepath.Join(base, "crs-test"), nil
}

// unavailable skips the test, or fails it in CI, where the client is expected
// to be installable and a skip would quietly drop coverage.
func unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf(format, args...)
	}
	tb.Skipf(format, args...)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
