// Package clitest installs and drives real vendor command-line clients
// (Claude Code, Codex CLI and Gemini CLI) so that tests elsewhere can prove
// crs works with the programs people actually run, not only with our own
// idea of the protocol.
//
// The clients come from npm and are big (Claude Code and Codex are ~400 MB
// native binaries), so they are installed once into a per-user cache outside the
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

// CodexVersion is the Codex CLI release the tests pin. Codex changes its
// config keys and request shape between releases (0.169 dropped
// wire_api = "chat"), so moving it goes with a re-run of the research in
// docs/clients.md.
const CodexVersion = "0.169.0"

// GeminiCLIVersion is the Gemini CLI release the tests pin; its auth
// selection and Code Assist start-up calls are what docs/clients.md
// describes for this version.
const GeminiCLIVersion = "0.61.0"

// npmClient is one vendor CLI distributed through npm: which package and
// version to install, the cache folder it lives in, and where the program
// to run ends up inside that folder.
type npmClient struct {
	pkg, version string
	// dir is the folder below the cache root; the version is part of it so
	// several pinned versions can coexist.
	dir string
	// candidates lists, best first, the files that may be the program in an
	// install folder.
	candidates func(dir string) []string
}

var (
	claudeCode = npmClient{pkg: claudeCodePackage, version: ClaudeCodeVersion, dir: "claude-code-" + ClaudeCodeVersion,
		candidates: claudeCandidates}
	// codex runs through its npm shim (a small node script), as `codex` on
	// a user's PATH does: the shim picks the per-platform native binary and
	// puts the bundled ripgrep on PATH.
	codex = npmClient{pkg: "@openai/codex", version: CodexVersion, dir: "codex-" + CodexVersion,
		candidates: binLink("codex")}
	// geminiCLI is a pure JavaScript bundle that node runs.
	geminiCLI = npmClient{pkg: "@google/gemini-cli", version: GeminiCLIVersion, dir: "gemini-cli-" + GeminiCLIVersion,
		candidates: binLink("gemini")}
)

// InstallClaudeCode returns the path of a working Claude Code binary of
// ClaudeCodeVersion, installing it with npm on first use. The install is
// guarded by a file lock, so test packages running in parallel neither race
// nor install twice; a finished install is recognised by a marker file and
// reused. If node or npm is missing, or the install fails, the test is skipped
// with the reason (or failed when CI=true).
func InstallClaudeCode(tb testing.TB) (binPath string) {
	tb.Helper()
	return install(tb, claudeCode)
}

// InstallCodex returns the path of a working `codex` of CodexVersion (the
// npm shim, which needs node on PATH at run time), installing it the way
// InstallClaudeCode installs Claude Code: once per cache, under a file
// lock, skipping or (with CI=true) failing the test when that is not
// possible.
func InstallCodex(tb testing.TB) (binPath string) {
	tb.Helper()
	return install(tb, codex)
}

// InstallGemini returns the path of a working `gemini` of GeminiCLIVersion
// (a node script), installed as InstallClaudeCode installs Claude Code.
func InstallGemini(tb testing.TB) (binPath string) {
	tb.Helper()
	return install(tb, geminiCLI)
}

// install makes c available in the cache and returns its program.
func install(tb testing.TB, c npmClient) string {
	tb.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(tb, "clitest: %s not found in PATH (needed for %s): %v", tool, c.pkg, err)
		}
	}
	root, err := cacheRoot()
	if err != nil {
		unavailable(tb, "clitest: no cache folder: %v", err)
	}
	dir := filepath.Join(root, c.dir)
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
		if checkVersion(ctx, bin, c.version) == nil {
			return bin
		}
		// The marker points at a program that no longer works (a cache
		// cleaner, a half-deleted folder): fall through and reinstall.
		_ = os.Remove(marker)
	}

	start := time.Now()
	cmd := exec.CommandContext(ctx, "npm", "install",
		"--no-save", "--no-audit", "--no-fund", "--engine-strict=false",
		"--prefix", dir, c.pkg+"@"+c.version)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		unavailable(tb, "clitest: npm install %s@%s failed after %s: %v\n%s",
			c.pkg, c.version, time.Since(start).Round(time.Millisecond), err, tail(out, 2000))
	}
	bin, err := findProgram(ctx, c, dir)
	if err != nil {
		unavailable(tb, "clitest: installed %s@%s but found no working program: %v\nnpm output:\n%s",
			c.pkg, c.version, err, tail(out, 2000))
	}
	if err := os.WriteFile(marker, []byte(bin+"\n"), 0o644); err != nil {
		tb.Fatalf("clitest: write %s: %v", marker, err)
	}
	tb.Logf("clitest: installed %s@%s into %s in %s", c.pkg, c.version, dir, time.Since(start).Round(time.Millisecond))
	return bin
}

// findProgram returns the first of c's candidates in dir that runs and
// reports the pinned version.
func findProgram(ctx context.Context, c npmClient, dir string) (string, error) {
	var errs []error
	for _, cand := range c.candidates(dir) {
		err := checkVersion(ctx, cand, c.version)
		if err == nil {
			return cand, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return "", fmt.Errorf("no candidate program in %s", dir)
	}
	return "", errors.Join(errs...)
}

// claudeCandidates prefers the wrapper's bin/claude.exe, which the
// postinstall replaces with the native binary. npm versions that hold back
// install scripts leave a stub there, so the per-platform package's binary
// is the fallback.
func claudeCandidates(dir string) []string {
	nm := filepath.Join(dir, "node_modules", "@anthropic-ai")
	candidates := []string{filepath.Join(nm, "claude-code", "bin", "claude.exe")}
	platform, _ := filepath.Glob(filepath.Join(nm, "claude-code-"+runtime.GOOS+"-*", "claude"))
	return append(candidates, platform...)
}

// binLink is the program npm links into node_modules/.bin for a package's
// "bin" entry: what `npx name` would run.
func binLink(name string) func(dir string) []string {
	return func(dir string) []string {
		return []string{filepath.Join(dir, "node_modules", ".bin", name)}
	}
}

// checkVersion runs `bin --version` and insists on the wanted version, so a
// stale or foreign program in the cache is never mistaken for the pinned
// one. It runs with a throwaway HOME: some CLIs write state there even for
// --version.
func checkVersion(ctx context.Context, bin, want string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	home, err := os.MkdirTemp("", "crs-clitest-version-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(home)
	cmd := exec.CommandContext(ctx, bin, "--version")
	cmd.Env = baseEnv(home, home)
	cmd.Dir = home
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s --version: %w: %s", bin, err, tail(out, 300))
	}
	if !bytes.Contains(out, []byte(want)) {
		return fmt.Errorf("%s --version = %q, want %s", bin, strings.TrimSpace(string(out)), want)
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
