// Package testkit holds what the end-to-end tests share, whether they run
// crs in-process (cmd/crs) or as the built binary (test/e2e): the official
// SDK client set up for the relay, the JSON shapes of the CLI's output, and
// small waiting helpers. It is imported only by tests.
package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/crs-relay/crs/internal/fakeupstream"
)

// SyncBuffer collects a server's output while a test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// MustJSON decodes s into v or fails the test.
func MustJSON(t testing.TB, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
}

// CLI runs one crs command line against a test's DATA_DIR and returns its
// stdout, failing the test on a non-zero exit.
type CLI func(t testing.TB, stdin string, args ...string) string

// AddAccount adds a Claude API-key account at baseURL ("" leaves the base
// URL to CLAUDE_API_URL) with the secret "sk-ant-NAME" on stdin, and
// returns its id.
func AddAccount(t testing.TB, cli CLI, baseURL, name string, priority int, extra ...string) string {
	t.Helper()
	args := []string{"accounts", "add", "--platform", "claude", "--type", "api-key", "--name", name,
		"--api-key", "-", "--priority", strconv.Itoa(priority), "--json"}
	if baseURL != "" {
		args = append(args, "--base-url", baseURL)
	}
	var v struct {
		ID string `json:"id"`
	}
	MustJSON(t, cli(t, "sk-ant-"+name+"\n", append(args, extra...)...), &v)
	if v.ID == "" {
		t.Fatal("accounts add --json printed no id")
	}
	return v.ID
}

// CreateKey makes a relay key and returns its id and the key.
func CreateKey(t testing.TB, cli CLI, name string) (id, key string) {
	t.Helper()
	var v struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	MustJSON(t, cli(t, "", "keys", "create", "--name", name, "--json"), &v)
	if v.ID == "" || len(v.Key) != 67 {
		t.Fatalf("keys create --json = %+v", v)
	}
	return v.ID, v.Key
}

// UsageRow is one row of `crs usage --json`.
type UsageRow struct {
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

// Tokens are the five token classes of a row, for exact comparisons.
func (r UsageRow) Tokens() fakeupstream.Usage {
	return fakeupstream.Usage{Input: r.Input, Output: r.Output, CacheWrite5m: r.CW5m, CacheWrite1h: r.CW1h, CacheRead: r.CR}
}

// UsageReport is the whole output of `crs usage --json`.
type UsageReport struct {
	Keys     []UsageRow `json:"keys"`
	Accounts []UsageRow `json:"accounts"`
	Models   []UsageRow `json:"models"`
}

// TotalRequests sums the requests of the per-key rows.
func (u UsageReport) TotalRequests() int64 {
	var n int64
	for _, k := range u.Keys {
		n += k.Requests
	}
	return n
}

// Usage runs `crs usage --json` (plus args).
func Usage(t testing.TB, cli CLI, args ...string) UsageReport {
	t.Helper()
	var u UsageReport
	MustJSON(t, cli(t, "", append([]string{"usage", "--json"}, args...)...), &u)
	return u
}

// AccountState is one entry of `crs accounts list --json`.
type AccountState struct {
	ID            string  `json:"id"`
	Name          string  `json:"name"`
	Status        string  `json:"status"`
	CooldownUntil *string `json:"cooldown_until"`
}

// Account finds the account id in `crs accounts list --json`.
func Account(t testing.TB, cli CLI, id string) AccountState {
	t.Helper()
	var list []AccountState
	MustJSON(t, cli(t, "", "accounts", "list", "--json"), &list)
	for _, a := range list {
		if a.ID == id {
			return a
		}
	}
	t.Fatalf("account %s not in accounts list", id)
	return AccountState{}
}

// SDK is the official Anthropic Go SDK pointed at base, retries off and
// blind to the machine's ANTHROPIC_* variables.
func SDK(base, key string, opts ...option.RequestOption) anthropic.Client {
	return anthropic.NewClient(append([]option.RequestOption{
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(base),
		option.WithAPIKey(key),
		option.WithMaxRetries(0),
	}, opts...)...)
}

// Params is a small Messages request saying text.
func Params(text string) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model:     "claude-sonnet-4-5",
		MaxTokens: 256,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(text))},
	}
}

// Stream runs a streaming call and returns the accumulated message.
func Stream(ctx context.Context, c anthropic.Client, p anthropic.MessageNewParams, opts ...option.RequestOption) (anthropic.Message, error) {
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

// Ctx is a context ending after d or with the test.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// WaitFor polls cond every 50 ms and fails the test if it is not true
// within d.
func WaitFor(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
