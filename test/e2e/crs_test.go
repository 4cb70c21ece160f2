package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/testkit"
)

// crsBin is the crs binary TestMain builds once for the whole package. It
// is written before any test runs and only read afterwards.
var crsBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "crs-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	crsBin = filepath.Join(tmp, "crs")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", crsBin, "./cmd/crs")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/crs: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// repoRoot is the folder of go.mod, so the build works from any working
// directory `go test` chooses.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return filepath.Abs("../..")
	}
	return filepath.Dir(mod), nil
}

// childEnv is the environment of every crs child: just enough to run,
// nothing from the developer's shell (no DATA_DIR, ENCRYPTION_KEY, PORT…),
// then extra "K=V" entries.
func childEnv(extra ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "TMPDIR=" + os.TempDir(), "LANG=C.UTF-8"}
	return append(env, extra...)
}

// crsProc is one `crs serve` child process.
type crsProc struct {
	t      *testing.T
	dir    string
	url    string // http://127.0.0.1:PORT
	addr   string // 127.0.0.1:PORT
	cmd    *exec.Cmd
	stdout *testkit.SyncBuffer
	stderr *testkit.SyncBuffer
	exited chan struct{} // closed once cmd.Wait returned
}

var listeningRE = regexp.MustCompile(`listening on http://(\S+)`)

// startCRS runs `crs serve` on dir with HOST=127.0.0.1, PORT=0 and
// LOG_LEVEL=info, LOG_FORMAT=text (env entries "K=V" add or override; the
// tests read the text access log), waits until it
// prints its address, and kills it when the test ends if it still runs.
func startCRS(t *testing.T, dir string, env ...string) *crsProc {
	t.Helper()
	p := launchCRS(t, dir, env...)
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if m := listeningRE.FindStringSubmatch(p.stdout.String()); m != nil {
			p.addr = m[1]
			p.url = "http://" + m[1]
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("crs serve exited before listening: %v\nstdout: %s\nstderr: %s", p.cmd.ProcessState, p.stdout, p.stderr)
		case <-deadline.C:
			t.Fatalf("crs serve did not print its address within 20s\nstdout: %s\nstderr: %s", p.stdout, p.stderr)
		case <-tick.C:
		}
	}
}

// launchCRS starts `crs serve` without waiting for it to listen.
func launchCRS(t *testing.T, dir string, env ...string) *crsProc {
	t.Helper()
	p := &crsProc{t: t, dir: dir, stdout: &testkit.SyncBuffer{}, stderr: &testkit.SyncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(crsBin, "serve")
	p.cmd.Env = childEnv(append([]string{"HOST=127.0.0.1", "PORT=0", "DATA_DIR=" + dir, "LOG_LEVEL=info", "LOG_FORMAT=text"}, env...)...)
	p.cmd.Stdout = p.stdout
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start crs serve: %v", err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		p.cmd.Process.Kill()
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("crs serve pid %d did not die after SIGKILL", p.cmd.Process.Pid)
		}
	})
	return p
}

func (p *crsProc) pid() int { return p.cmd.Process.Pid }

// signal sends sig to the server.
func (p *crsProc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v to crs: %v", sig, err)
	}
}

// waitExit waits up to d for the process to end and returns its state, or
// nil if it still runs.
func (p *crsProc) waitExit(d time.Duration) *os.ProcessState {
	select {
	case <-p.exited:
		return p.cmd.ProcessState
	case <-time.After(d):
		return nil
	}
}

// stop ends the server with SIGTERM and insists on a clean exit.
func (p *crsProc) stop() {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	st := p.waitExit(35 * time.Second)
	if st == nil || st.ExitCode() != 0 {
		p.t.Fatalf("crs serve after SIGTERM: %v\nstderr: %s", st, p.stderr)
	}
}

// cliResult is one run of a crs command.
type cliResult struct {
	stdout, stderr string
	code           int
}

// crsExec runs the binary with args and stdin, bounded by 30 s.
func crsExec(t *testing.T, stdin string, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, crsBin, args...)
	cmd.Env = childEnv(env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("crs %s: no exit within 30s", strings.Join(args, " "))
	}
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("crs %s: %v", strings.Join(args, " "), err)
	}
	return cliResult{stdout: out.String(), stderr: errOut.String(), code: cmd.ProcessState.ExitCode()}
}

// crsCLI runs a management command on dir (appending --data-dir) and
// returns its stdout; a non-zero exit fails the test.
func crsCLI(t *testing.T, dir, stdin string, args ...string) string {
	t.Helper()
	args = append(args, "--data-dir", dir)
	r := crsExec(t, stdin, nil, args...)
	if r.code != 0 {
		t.Fatalf("crs %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// addAccount adds a Claude API-key account pointing at fake and returns
// its id.
func addAccount(t *testing.T, dir string, fake *fakeupstream.Anthropic, name string, priority int) string {
	return testkit.AddAccount(t, cliFor(dir), fake.URL(), name, priority)
}

// cliFor runs the crs binary's commands against dir.
func cliFor(dir string) testkit.CLI {
	return func(t testing.TB, stdin string, args ...string) string {
		t.Helper()
		return crsCLI(t.(*testing.T), dir, stdin, args...)
	}
}

// createKey makes a relay key and returns (id, key).
func createKey(t *testing.T, dir, name string) (string, string) {
	return testkit.CreateKey(t, cliFor(dir), name)
}

// usage runs `crs usage --json` (plus args) on dir.
func usage(t *testing.T, dir string, args ...string) testkit.UsageReport {
	return testkit.Usage(t, cliFor(dir), args...)
}

// times multiplies every class of u by n.
func times(u fakeupstream.Usage, n int64) fakeupstream.Usage {
	return fakeupstream.Usage{Input: u.Input * n, Output: u.Output * n, CacheWrite5m: u.CacheWrite5m * n,
		CacheWrite1h: u.CacheWrite1h * n, CacheRead: u.CacheRead * n}
}

func accountByID(t *testing.T, dir, id string) testkit.AccountState {
	return testkit.Account(t, cliFor(dir), id)
}

func textOf(m anthropic.Message) string {
	var b strings.Builder
	for _, c := range m.Content {
		b.WriteString(c.Text)
	}
	return b.String()
}

// oneLine reports whether s is exactly one non-empty line (a trailing
// newline allowed).
func oneLine(s string) bool {
	s = strings.TrimSuffix(s, "\n")
	return s != "" && !strings.Contains(s, "\n")
}
