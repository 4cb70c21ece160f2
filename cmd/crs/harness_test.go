package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
)

// relayServer is `crs serve` running in-process on a loopback port, with
// its own DATA_DIR. Accounts and keys are added through the real CLI code.
type relayServer struct {
	t       *testing.T
	dir     string
	url     string // http://127.0.0.1:PORT
	stdout  *syncBuffer
	stderr  *syncBuffer
	stop    context.CancelFunc
	done    chan error
	stopped bool
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
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
	s := &relayServer{t: t, dir: dir, stdout: &syncBuffer{}, stderr: &syncBuffer{}, stop: cancel, done: make(chan error, 1)}
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
	t.Helper()
	args := append([]string{"accounts", "add", "--platform", "claude", "--type", "api-key", "--name", name,
		"--api-key", "-", "--base-url", fake.URL(), "--priority", strconv.Itoa(priority), "--json"}, extra...)
	var v struct{ ID string }
	mustJSON(t, cliRun(t, dir, "sk-ant-"+name+"\n", args...), &v)
	return v.ID
}

// createKey makes a relay key and returns (id, key).
func createKey(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	var v struct{ ID, Key string }
	mustJSON(t, cliRun(t, dir, "", "keys", "create", "--name", name, "--json"), &v)
	return v.ID, v.Key
}

func mustJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
}

// usageRow is one row of `crs usage --json`.
type usageRow struct {
	KeyID     string          `json:"key_id"`
	AccountID string          `json:"account_id"`
	Model     string          `json:"model"`
	Requests  int64           `json:"requests"`
	Input     int64           `json:"input_tokens"`
	Output    int64           `json:"output_tokens"`
	CW        int64           `json:"cache_creation_input_tokens"`
	CW5m      int64           `json:"cache_creation_5m_input_tokens"`
	CW1h      int64           `json:"cache_creation_1h_input_tokens"`
	CR        int64           `json:"cache_read_input_tokens"`
	Cost      json.RawMessage `json:"cost_usd"`
}

type usageOut struct {
	Keys     []usageRow `json:"keys"`
	Accounts []usageRow `json:"accounts"`
	Models   []usageRow `json:"models"`
}

func usageJSON(t *testing.T, dir string, args ...string) usageOut {
	t.Helper()
	var u usageOut
	mustJSON(t, cliRun(t, dir, "", append([]string{"usage", "--json"}, args...)...), &u)
	return u
}

func accountStatus(t *testing.T, dir, id string) (status string, until *string) {
	t.Helper()
	var list []struct {
		ID            string  `json:"id"`
		Status        string  `json:"status"`
		CooldownUntil *string `json:"cooldown_until"`
	}
	mustJSON(t, cliRun(t, dir, "", "accounts", "list", "--json"), &list)
	for _, a := range list {
		if a.ID == id {
			return a.Status, a.CooldownUntil
		}
	}
	t.Fatalf("account %s not listed", id)
	return "", nil
}

// sdk is the official Anthropic Go SDK pointed at the relay, retries off.
func sdk(base, key string, opts ...option.RequestOption) anthropic.Client {
	return anthropic.NewClient(append([]option.RequestOption{
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(base),
		option.WithAPIKey(key),
		option.WithMaxRetries(0),
	}, opts...)...)
}

func params(text string) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model:     "claude-sonnet-4-5",
		MaxTokens: 256,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(text))},
	}
}

// streamText runs a streaming call and returns the accumulated message.
func streamText(ctx context.Context, c anthropic.Client, p anthropic.MessageNewParams, opts ...option.RequestOption) (anthropic.Message, error) {
	s := c.Messages.NewStreaming(ctx, p, opts...)
	defer s.Close()
	var msg anthropic.Message
	for s.Next() {
		if err := msg.Accumulate(s.Current()); err != nil {
			return msg, err
		}
	}
	return msg, s.Err()
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
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

func TestMain(m *testing.M) {
	// The CLI reads the environment; keep the machine's out of the tests.
	for _, k := range []string{"DATA_DIR", "ENCRYPTION_KEY", "JWT_SECRET", "ADMIN_PASSWORD", "PORT", "HOST"} {
		os.Unsetenv(k)
	}
	os.Exit(m.Run())
}
