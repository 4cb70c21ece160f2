package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/testkit"
)

// relayServer is `crs serve` running in-process on a loopback port, with
// its own DATA_DIR. Accounts and keys are added through the real CLI code.
type relayServer struct {
	t       *testing.T
	dir     string
	url     string // http://127.0.0.1:PORT
	stdout  *testkit.SyncBuffer
	stderr  *testkit.SyncBuffer
	stop    context.CancelFunc
	done    chan error
	stopped bool
}

// newDataDir prepares a DATA_DIR; setup runs CLI commands on it before the
// server starts.
func newDataDir(t *testing.T) string {
	t.Helper()
	return t.TempDir()
}

// startRelay starts `crs serve` on dir with env (HOST and PORT default to
// 127.0.0.1 and a free port).
func startRelay(t *testing.T, dir string, env map[string]string) *relayServer {
	t.Helper()
	vars := map[string]string{"HOST": "127.0.0.1", "PORT": "0", "DATA_DIR": dir, "LOG_LEVEL": "warn"}
	for k, v := range env {
		vars[k] = v
	}
	getenv := func(k string) string { return vars[k] }
	ctx, cancel := context.WithCancel(context.Background())
	s := &relayServer{t: t, dir: dir, stdout: &testkit.SyncBuffer{}, stderr: &testkit.SyncBuffer{}, stop: cancel, done: make(chan error, 1)}
	ready := make(chan string, 1)
	go func() { s.done <- serve(ctx, nil, s.stdout, s.stderr, getenv, func(a string) { ready <- a }) }()
	select {
	case addr := <-ready:
		s.url = "http://" + addr
	case err := <-s.done:
		cancel()
		t.Fatalf("serve failed to start: %v\nstderr: %s", err, s.stderr.String())
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("serve did not start in 20s")
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// Stop shuts the server down (SIGTERM's path) and waits.
func (s *relayServer) Stop() error {
	if s.stopped {
		return nil
	}
	s.stopped = true
	s.stop()
	select {
	case err := <-s.done:
		return err
	case <-time.After(60 * time.Second):
		s.t.Error("serve did not stop in 60s")
		return nil
	}
}

// cliRun runs a crs command in-process against dir and returns stdout.
func cliRun(t *testing.T, dir string, stdin string, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append(args, "--data-dir", dir)
	if code := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut); code != 0 {
		t.Fatalf("crs %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
	}
	return out.String()
}

// addAccount adds a Claude API-key account pointing at the fake.
func addAccount(t *testing.T, dir string, fake interface{ URL() string }, name string, priority int, extra ...string) string {
	return testkit.AddAccount(t, cliFor(dir), fake.URL(), name, priority, extra...)
}

// cliFor runs crs commands in-process against dir.
func cliFor(dir string) testkit.CLI {
	return func(t testing.TB, stdin string, args ...string) string {
		t.Helper()
		return cliRun(t.(*testing.T), dir, stdin, args...)
	}
}

// createKey makes a relay key and returns (id, key).
func createKey(t *testing.T, dir, name string) (string, string) {
	return testkit.CreateKey(t, cliFor(dir), name)
}

func usageJSON(t *testing.T, dir string, args ...string) testkit.UsageReport {
	return testkit.Usage(t, cliFor(dir), args...)
}

func accountStatus(t *testing.T, dir, id string) (status string, until *string) {
	a := testkit.Account(t, cliFor(dir), id)
	return a.Status, a.CooldownUntil
}

// rawPost sends body to the relay with a relay key and returns the response.
func rawPost(t *testing.T, url, key, body string, hdr ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Anthropic-Version", "2023-06-01")
	if key != "" {
		req.Header.Set("X-Api-Key", key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// cliVars are the variables the CLI reads that the machine running the
// tests may have set.
var cliVars = []string{"DATA_DIR", "ENCRYPTION_KEY", "JWT_SECRET", "PORT", "HOST", "LOG_LEVEL", "TIMEZONE",
	"TRUST_PROXY", "CLAUDE_API_URL", "ADMIN_USERNAME", "ADMIN_PASSWORD", "REQUEST_MAX_SIZE_MB"}

func TestMain(m *testing.M) {
	// The CLI reads the environment; keep the machine's out of the tests.
	// A test that needs a variable sets it with t.Setenv, which restores it
	// when the test ends and keeps that test serial, so the parallel tests,
	// which run after every serial one, all see this cleared environment.
	for _, k := range cliVars {
		os.Unsetenv(k)
	}
	os.Exit(m.Run())
}
