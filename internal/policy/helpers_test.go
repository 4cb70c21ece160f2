package policy

import (
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/memcounters"
	"github.com/crs-relay/crs/internal/store/sqlite"
)

// shanghai is the store zone of most tests: not UTC, so a day or week
// computed in the wrong zone shows.
var shanghai = time.FixedZone("UTC+8", 8*3600)

// t0 is Wednesday 2026-03-04 10:00 in shanghai.
var t0 = time.Date(2026, time.March, 4, 10, 0, 0, 0, shanghai)

// clock is a fake clock shared by the engine and its counters.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock(at time.Time) *clock { return &clock{now: at} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *clock) Set(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = at
}

// newEngine returns an engine on fresh in-memory counters and the fake
// clock; tweak adjusts the options first.
func newEngine(c *clock, tweak func(*Options)) *Engine {
	o := Options{Counters: memcounters.New(c.Now), Now: c.Now, Location: shanghai}
	if tweak != nil {
		tweak(&o)
	}
	return New(o)
}

// openStore opens a real SQLite store in the test's temp dir.
func openStore(t *testing.T, dir string, c *clock) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "crs.db"), sqlite.Options{Location: shanghai, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Headers of the real clients, from shared/reference/clients.md.
func claudeCodeHeader() http.Header {
	return http.Header{
		"User-Agent":               {"claude-cli/2.1.332 (external, sdk-cli)"},
		"X-App":                    {"cli"},
		"Anthropic-Version":        {"2023-06-01"},
		"Anthropic-Beta":           {"claude-code-20250219,interleaved-thinking-2025-05-14"},
		"X-Claude-Code-Session-Id": {"6f1c1f43-54a4-4e0b-8a59-7c6c1f7f8a11"},
	}
}

func codexHeader() http.Header {
	return http.Header{
		"User-Agent":          {"codex_exec/0.169.0 (Debian 12.0.0; x86_64) dumb (codex_exec; 0.169.0)"},
		"Originator":          {"codex_exec"},
		"Session-Id":          {"0197f0a4-6b7e-7c3d-9f1a-2b3c4d5e6f70"},
		"Thread-Id":           {"0197f0a4-6b7e-7c3d-9f1a-2b3c4d5e6f70"},
		"X-Client-Request-Id": {"0197f0a4-6b7e-7c3d-9f1a-2b3c4d5e6f70"},
	}
}

func geminiHeader() http.Header {
	return http.Header{
		"User-Agent":        {"GeminiCLI-tui/0.61.0/gemini-3.1-pro-preview (linux; x64; terminal)"},
		"X-Goog-Api-Client": {"google-genai-sdk/1.30.0 gl-node/v20.20.2"},
	}
}

// messages is Claude Code's ordinary request.
func messages() Request {
	return Request{Platform: store.PlatformClaude, Path: "/api/v1/messages", Model: "claude-sonnet-4-5",
		Header: claudeCodeHeader(), ClaudeCodeBody: true, RequestID: "req"}
}

// admit runs the relay's order: Check, then Enter (Admit and Acquire in
// one batch). The slot, if any, is released when the test ends.
func admit(t *testing.T, e *Engine, key store.Key, req Request) *Denial {
	t.Helper()
	ctx := t.Context()
	if d := e.Check(ctx, key, req); d != nil {
		return d
	}
	release, d := e.Enter(ctx, key, req)
	t.Cleanup(release)
	return d
}

// mustAdmit fails the test unless the whole pipeline admits req.
func mustAdmit(t *testing.T, e *Engine, key store.Key, req Request) {
	t.Helper()
	if d := admit(t, e, key, req); d != nil {
		t.Fatalf("refused: %v", d)
	}
}

// record records usage as the relay does after a response.
func record(t *testing.T, e *Engine, key store.Key, rec store.UsageRecord) {
	t.Helper()
	if err := e.Record(context.WithoutCancel(t.Context()), key, rec); err != nil {
		t.Fatal(err)
	}
}

// retryAfter is the Retry-After header the relay writes for d: whole
// seconds rounded up, absent when d has none.
func retryAfter(d *Denial) string {
	if d == nil || d.RetryAfter <= 0 {
		return ""
	}
	return strconv.FormatInt(int64((d.RetryAfter+time.Second-1)/time.Second), 10)
}

// usdPico converts dollars to picodollars.
func usdPico(dollars float64) int64 { return int64(dollars * 1e12) }
