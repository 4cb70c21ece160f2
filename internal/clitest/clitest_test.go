package clitest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// seenRequest is what the fake kept of one request the CLI sent.
type seenRequest struct {
	at             time.Time
	method, target string
	header         http.Header
	bodyLen        int
}

// fakeAnthropic is an httptest server on 127.0.0.1 that records every request
// and answers it with respond.
type fakeAnthropic struct {
	*httptest.Server
	mu   sync.Mutex
	seen []seenRequest
}

func newFakeAnthropic(t *testing.T, respond http.HandlerFunc) *fakeAnthropic {
	t.Helper()
	f := &fakeAnthropic{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		f.mu.Lock()
		f.seen = append(f.seen, seenRequest{time.Now(), r.Method, r.URL.RequestURI(), r.Header.Clone(), int(n)})
		f.mu.Unlock()
		respond(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAnthropic) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenRequest(nil), f.seen...)
}

// pongEvents is a complete Anthropic Messages stream answering "pong" with
// 11 input and 7 output tokens, split the way the real API splits usage
// between message_start and message_delta.
var pongEvents = []string{
	`event: message_start
data: {"type":"message_start","message":{"id":"msg_crs_test","type":"message","role":"assistant","model":"claude-opus-5-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":11,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}`,
	`event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
	`event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"pong"}}`,
	`event: content_block_stop
data: {"type":"content_block_stop","index":0}`,
	`event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":7}}`,
	`event: message_stop
data: {"type":"message_stop"}`,
}

func servePong(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/messages" {
		http.Error(w, `{"type":"error","error":{"type":"not_found_error","message":"fake: no such route"}}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	flusher := w.(http.Flusher)
	for _, ev := range pongEvents {
		fmt.Fprint(w, ev+"\n\n")
		flusher.Flush()
	}
}

// badKeyMessage is what the fake relay says about the rejected key; the test
// checks the user gets to read it.
const badKeyMessage = "crs: invalid relay key"

// serveBadKey is the answer docs/claude-code.md recommends for a rejected
// relay key: 401 authentication_error in Anthropic's error shape plus
// "x-should-retry: false". Without that header Claude Code 2.1.332 retries a
// 401 for minutes; with it, it gives up after one request.
func serveBadKey(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Should-Retry", "false")
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprintf(w, `{"type":"error","error":{"type":"authentication_error","message":%q}}`, badKeyMessage)
}

// authVariants are the two ways a user hands Claude Code a relay key.
var authVariants = []struct {
	name      string
	key       string   // passed as ANTHROPIC_AUTH_TOKEN
	extraEnv  []string // or ANTHROPIC_API_KEY here
	header    string   // where the key must arrive
	wantValue string
}{
	{name: "auth_token", key: "cr_test", header: "Authorization", wantValue: "Bearer cr_test"},
	{name: "api_key", extraEnv: []string{"ANTHROPIC_API_KEY=cr_test"}, header: "X-Api-Key", wantValue: "cr_test"},
}

func TestClaudeCodePong(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real Claude Code CLI")
	}
	t.Parallel()
	bin := InstallClaudeCode(t)
	for _, tc := range authVariants {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := newFakeAnthropic(t, servePong)
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()

			res, err := RunClaudeP(ctx, bin, fake.URL, tc.key, "say pong", tc.extraEnv...)
			if err != nil {
				t.Fatalf("RunClaudeP: %v\nstdout: %s\nstderr: %s", err, res.Stdout, res.Stderr)
			}
			t.Logf("claude -p took %s", res.Elapsed.Round(time.Millisecond))
			if res.ExitCode != 0 || res.Result() != "pong" {
				t.Fatalf("exit %d, result %q, want 0 and \"pong\"\nstdout: %s\nstderr: %s", res.ExitCode, res.Result(), res.Stdout, res.Stderr)
			}
			usage, _ := res.JSON["usage"].(map[string]any)
			if usage["input_tokens"] != float64(11) || usage["output_tokens"] != float64(7) {
				t.Errorf("usage = %v, want input 11 / output 7 from the stream", usage)
			}

			reqs := fake.requests()
			if len(reqs) != 1 {
				t.Fatalf("fake saw %d requests, want 1: %+v", len(reqs), reqs)
			}
			r := reqs[0]
			if r.method != http.MethodPost || r.target != "/v1/messages?beta=true" {
				t.Errorf("request = %s %s, want POST /v1/messages?beta=true", r.method, r.target)
			}
			if got := r.header.Get(tc.header); got != tc.wantValue {
				t.Errorf("%s = %q, want %q", tc.header, got, tc.wantValue)
			}
			if ua := r.header.Get("User-Agent"); !strings.HasPrefix(ua, "claude-cli/"+ClaudeCodeVersion) {
				t.Errorf("User-Agent = %q, want claude-cli/%s…", ua, ClaudeCodeVersion)
			}
		})
	}
}

func TestClaudeCodeBadKeyStopsAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real Claude Code CLI")
	}
	t.Parallel()
	bin := InstallClaudeCode(t)
	for _, tc := range authVariants {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := newFakeAnthropic(t, serveBadKey)
			// Start-up alone can take 10+ s on a loaded machine, so the
			// overall bound is loose; the 20 s budget is measured from the
			// relay's answer, when a retrying CLI would only be getting
			// started (its backoff runs for minutes).
			ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
			defer cancel()

			res, err := RunClaudeP(ctx, bin, fake.URL, tc.key, "say pong", tc.extraEnv...)
			exited := time.Now()
			reqs := fake.requests()
			if err != nil {
				t.Fatalf("CLI did not give up: %v (requests seen: %d)", err, len(reqs))
			}
			if len(reqs) == 0 {
				t.Fatalf("CLI exited %d without calling the fake\nstdout: %s\nstderr: %s", res.ExitCode, res.Stdout, res.Stderr)
			}
			giveUp := exited.Sub(reqs[0].at)
			t.Logf("claude -p exited %s after the relay's answer (%s in all)", giveUp.Round(time.Millisecond), res.Elapsed.Round(time.Millisecond))
			if giveUp > 20*time.Second {
				t.Errorf("CLI took %s after the 401 to give up, want < 20 s", giveUp)
			}
			if res.ExitCode == 0 {
				t.Errorf("exit code 0, want non-zero for a rejected key")
			}
			if !strings.Contains(res.Result(), badKeyMessage) || !strings.Contains(res.Stdout, badKeyMessage) {
				t.Errorf("relay message %q not shown to the user\nstdout: %s\nstderr: %s", badKeyMessage, res.Stdout, res.Stderr)
			}
			if len(reqs) != 1 {
				t.Errorf("fake saw %d requests, want exactly 1 (no retries)", len(reqs))
			}
		})
	}
}

func TestParseJSONObject(t *testing.T) {
	tests := []struct {
		name, stdout string
		wantResult   any
		wantNil      bool
	}{
		{name: "plain", stdout: `{"type":"result","result":"pong"}` + "\n", wantResult: "pong"},
		{name: "noise before", stdout: "warning: something\n{\"result\":\"x\"}\n", wantResult: "x"},
		{name: "last object wins", stdout: "{\"result\":\"a\"}\n{\"result\":\"b\"}\n", wantResult: "b"},
		{name: "text mode", stdout: "pong\n", wantNil: true},
		{name: "empty", stdout: "", wantNil: true},
		{name: "array is not an object", stdout: "[1,2]", wantNil: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := parseJSONObject(tc.stdout)
			if tc.wantNil {
				if got != nil {
					t.Fatalf("parseJSONObject(%q) = %v, want nil", tc.stdout, got)
				}
				return
			}
			if got["result"] != tc.wantResult {
				t.Fatalf("parseJSONObject(%q)[result] = %v, want %v", tc.stdout, got["result"], tc.wantResult)
			}
		})
	}
}

func TestCacheRoot(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(CacheRootEnv, dir)
	got, err := cacheRoot()
	if err != nil || got != dir {
		t.Fatalf("cacheRoot() with %s=%s = %q, %v", CacheRootEnv, dir, got, err)
	}

	t.Setenv(CacheRootEnv, "")
	t.Setenv("XDG_CACHE_HOME", dir)
	got, err = cacheRoot()
	if want := filepath.Join(dir, "crs-test"); err != nil || got != want {
		t.Fatalf("cacheRoot() with XDG_CACHE_HOME=%s = %q, %v; want %q", dir, got, err, want)
	}
}
