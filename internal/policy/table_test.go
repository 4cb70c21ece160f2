package policy

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// TestDecisionTable is the acceptance table of docs/limits.md: each row is
// a key configuration, earlier traffic, and one request through the
// relay's order (Check, Admit, Acquire), with the answer the relay writes:
// status, error type, code and Retry-After header. Rows that break two
// rules at once pin the order of the checks.
func TestDecisionTable(t *testing.T) {
	past := t0.Add(-time.Minute)
	longAgo := t0.Add(-48 * time.Hour)
	yes := true
	sonnet := messages()
	opus := messages()
	opus.Model = "claude-opus-4-1-20250805"
	gpt := Request{Platform: store.PlatformOpenAI, Path: "/openai/responses", Model: "gpt-5-codex", Header: codexHeader()}
	countTokens := messages()
	countTokens.Path, countTokens.CountTokens = "/api/v1/messages/count_tokens", true
	countTokens.Header = http.Header{"User-Agent": {"Anthropic/JS 1.14.0"}}
	countTokens.ClaudeCodeBody = false
	sdk := messages()
	sdk.Header = http.Header{"User-Agent": {"Anthropic/JS 1.14.0"}}
	sdk.ClaudeCodeBody = false

	// Earlier traffic.
	requests := func(n int, req Request) func(*testing.T, *Engine, store.Key) {
		return func(t *testing.T, e *Engine, key store.Key) {
			for range n {
				mustAdmit(t, e, key, req)
			}
		}
	}
	spent := func(model string, rated int64, tokens int64) func(*testing.T, *Engine, store.Key) {
		return func(t *testing.T, e *Engine, key store.Key) {
			req := messages()
			req.Model = model
			finished(t, e, key, req)
			record(t, e, key, store.UsageRecord{RequestID: "earlier", KeyID: key.ID, Model: model,
				Input: tokens, CostPico: rated, RatedCostPico: rated, CreatedAt: t0})
		}
	}
	holdSlot := func(t *testing.T, e *Engine, key store.Key) {
		release, d := e.Acquire(t.Context(), key, Request{RequestID: "holder"})
		if d != nil {
			t.Fatalf("holding a slot: %v", d)
		}
		t.Cleanup(release)
	}
	both := func(fs ...func(*testing.T, *Engine, store.Key)) func(*testing.T, *Engine, store.Key) {
		return func(t *testing.T, e *Engine, key store.Key) {
			for _, f := range fs {
				f(t, e, key)
			}
		}
	}

	tests := []struct {
		name   string
		key    store.Key
		opts   func(*Options)
		before func(*testing.T, *Engine, store.Key)
		req    Request
		// Expected answer; status 0 means admitted.
		status    int
		typ, code string
		retry     string
	}{
		{name: "unrestricted key", req: sonnet},

		// Expiry.
		{name: "fixed expiry passed", key: store.Key{ExpiresAt: &past}, req: sonnet,
			status: 401, typ: TypeAuthentication, code: CodeKeyExpired},
		{name: "activation ended", key: store.Key{ActivatedAt: &longAgo, Policy: store.KeyPolicy{ActivateFor: 24 * time.Hour}}, req: sonnet,
			status: 401, typ: TypeAuthentication, code: CodeKeyExpired},
		{name: "activation running", key: store.Key{ActivatedAt: &past, Policy: store.KeyPolicy{ActivateFor: 24 * time.Hour}}, req: sonnet},

		// Permission.
		{name: "pool not permitted", key: store.Key{Policy: store.KeyPolicy{Permissions: []store.Platform{store.PlatformOpenAI}}}, req: sonnet,
			status: 403, typ: TypePermission, code: CodePermissionDenied},
		{name: "pool permitted", key: store.Key{Policy: store.KeyPolicy{Permissions: []store.Platform{store.PlatformClaude}}}, req: sonnet},

		// Models.
		{name: "model outside allow-list", key: store.Key{Policy: store.KeyPolicy{ModelsAllow: []string{"claude-sonnet-4-5"}}}, req: opus,
			status: 403, typ: TypePermission, code: CodeModelNotAllowed},
		{name: "dated variant of denied model", key: store.Key{Policy: store.KeyPolicy{ModelsDeny: []string{"claude-opus-4-1"}}}, req: opus,
			status: 403, typ: TypePermission, code: CodeModelNotAllowed},
		{name: "allowed then denied", key: store.Key{Policy: store.KeyPolicy{ModelsAllow: []string{"claude-*"}, ModelsDeny: []string{"claude-opus-4-1"}}}, req: opus,
			status: 403, typ: TypePermission, code: CodeModelNotAllowed},
		{name: "allowed and not denied", key: store.Key{Policy: store.KeyPolicy{ModelsAllow: []string{"claude-*"}, ModelsDeny: []string{"claude-opus-4"}}}, req: opus},

		// Clients.
		{name: "Claude Code on a codex-only key", key: store.Key{Clients: []string{ClientCodexCLI}}, req: sonnet,
			status: 403, typ: TypePermission, code: CodeClientNotAllowed},
		{name: "SDK on a claude_code key", key: store.Key{Clients: []string{ClientClaudeCode}}, req: sdk,
			status: 403, typ: TypePermission, code: CodeClientNotAllowed},
		{name: "Claude Code on a claude_code key", key: store.Key{Clients: []string{ClientClaudeCode}}, req: sonnet},
		{name: "count_tokens skips the client rule", key: store.Key{Clients: []string{ClientClaudeCode}}, req: countTokens},

		// The order of Check: expiry, permission, model, client.
		{name: "expired and not permitted", key: store.Key{ExpiresAt: &past, Policy: store.KeyPolicy{Permissions: []store.Platform{store.PlatformGemini}}}, req: sonnet,
			status: 401, typ: TypeAuthentication, code: CodeKeyExpired},
		{name: "not permitted and model denied", key: store.Key{Policy: store.KeyPolicy{Permissions: []store.Platform{store.PlatformGemini}, ModelsDeny: []string{"claude-sonnet-4-5"}}}, req: sonnet,
			status: 403, typ: TypePermission, code: CodePermissionDenied},
		{name: "model denied and wrong client", key: store.Key{Clients: []string{ClientGeminiCLI}, Policy: store.KeyPolicy{ModelsDeny: []string{"claude-sonnet-4-5"}}}, req: sonnet,
			status: 403, typ: TypePermission, code: CodeModelNotAllowed},

		// Rate window.
		{name: "window requests used up", key: store.Key{Policy: store.KeyPolicy{RateWindow: time.Hour, RateRequests: 2}}, before: requests(2, sonnet), req: sonnet,
			status: 429, typ: TypeRateLimit, code: CodeRateWindowExceeded, retry: "3600"},
		{name: "window requests left", key: store.Key{Policy: store.KeyPolicy{RateWindow: time.Hour, RateRequests: 2}}, before: requests(1, sonnet), req: sonnet},
		{name: "window counts count_tokens", key: store.Key{Policy: store.KeyPolicy{RateWindow: time.Hour, RateRequests: 1}}, before: requests(1, countTokens), req: sonnet,
			status: 429, typ: TypeRateLimit, code: CodeRateWindowExceeded, retry: "3600"},
		{name: "window tokens used up", key: store.Key{Policy: store.KeyPolicy{RateWindow: time.Hour, RateTokens: 1000}}, before: spent("claude-sonnet-4-5", 0, 1000), req: sonnet,
			status: 429, typ: TypeRateLimit, code: CodeRateWindowExceeded, retry: "3600"},
		{name: "window cost used up", key: store.Key{Policy: store.KeyPolicy{RateWindow: 30 * time.Minute, RateCost: usdPico(1)}}, before: spent("claude-sonnet-4-5", usdPico(1), 10), req: sonnet,
			status: 429, typ: TypeRateLimit, code: CodeRateWindowExceeded, retry: "1800"},

		// Cost limits: 402, Retry-After only where the limit resets.
		{name: "daily cost reached", key: store.Key{Policy: store.KeyPolicy{DailyCost: usdPico(5)}}, before: spent("claude-sonnet-4-5", usdPico(5), 10), req: sonnet,
			status: 402, typ: TypeBilling, code: CodeDailyCostExceeded, retry: "50400"},
		{name: "daily cost not reached", key: store.Key{Policy: store.KeyPolicy{DailyCost: usdPico(5)}}, before: spent("claude-sonnet-4-5", usdPico(4.99), 10), req: sonnet},
		{name: "total cost reached", key: store.Key{Policy: store.KeyPolicy{TotalCost: usdPico(5)}}, before: spent("claude-sonnet-4-5", usdPico(6), 10), req: sonnet,
			status: 402, typ: TypeBilling, code: CodeTotalCostExceeded},
		{name: "weekly cost reached", key: store.Key{Policy: store.KeyPolicy{WeeklyCost: usdPico(5), WeeklyResetDay: 1}}, before: spent("claude-sonnet-4-5", usdPico(5), 10), req: sonnet,
			status: 402, typ: TypeBilling, code: CodeWeeklyCostExceeded, retry: "396000"},
		{name: "weekly cost does not stop GPT", key: store.Key{Policy: store.KeyPolicy{WeeklyCost: usdPico(5), WeeklyResetDay: 1}}, before: spent("claude-sonnet-4-5", usdPico(5), 10), req: gpt},
		{name: "daily Opus reached, Opus asked", key: store.Key{Policy: store.KeyPolicy{DailyOpusCost: usdPico(2)}}, before: spent("claude-opus-4-1", usdPico(2), 10), req: opus,
			status: 402, typ: TypeBilling, code: CodeDailyOpusCostExceeded, retry: "50400"},
		{name: "daily Opus reached, Sonnet asked", key: store.Key{Policy: store.KeyPolicy{DailyOpusCost: usdPico(2)}}, before: spent("claude-opus-4-1", usdPico(2), 10), req: sonnet},
		{name: "daily Opus not reached by Sonnet spend", key: store.Key{Policy: store.KeyPolicy{DailyOpusCost: usdPico(2)}}, before: spent("claude-sonnet-4-5", usdPico(9), 10), req: opus},
		{name: "total and daily reached: total first", key: store.Key{Policy: store.KeyPolicy{TotalCost: usdPico(5), DailyCost: usdPico(5)}}, before: spent("claude-sonnet-4-5", usdPico(5), 10), req: sonnet,
			status: 402, typ: TypeBilling, code: CodeTotalCostExceeded},

		// Admit's order: window before costs; Admit before Acquire.
		{name: "window and cost reached: window first", key: store.Key{Policy: store.KeyPolicy{RateWindow: time.Hour, RateRequests: 1, DailyCost: usdPico(1)}},
			before: spent("claude-sonnet-4-5", usdPico(1), 10), req: sonnet,
			status: 429, typ: TypeRateLimit, code: CodeRateWindowExceeded, retry: "3600"},
		{name: "cost reached and slots full: cost first", key: store.Key{Policy: store.KeyPolicy{Concurrency: 1, DailyCost: usdPico(1)}},
			before: both(spent("claude-sonnet-4-5", usdPico(1), 10), holdSlot), req: sonnet,
			status: 402, typ: TypeBilling, code: CodeDailyCostExceeded, retry: "50400"},

		// Concurrency.
		{name: "slots full, no queue", key: store.Key{Policy: store.KeyPolicy{Concurrency: 1}}, before: holdSlot, req: sonnet,
			status: 429, typ: TypeRateLimit, code: CodeConcurrencyExceeded, retry: "1"},
		{name: "slots full, queue times out", key: store.Key{Policy: store.KeyPolicy{Concurrency: 1, Queue: &yes}},
			opts: func(o *Options) { o.QueueTimeout = 30 * time.Millisecond }, before: holdSlot, req: sonnet,
			status: 429, typ: TypeRateLimit, code: CodeQueueTimeout, retry: "1"},
		{name: "slots full, global queue times out", key: store.Key{Policy: store.KeyPolicy{Concurrency: 1}},
			opts: func(o *Options) { o.Queue, o.QueueTimeout = true, 30*time.Millisecond }, before: holdSlot, req: sonnet,
			status: 429, typ: TypeRateLimit, code: CodeQueueTimeout, retry: "1"},
		{name: "slots full, queue full", key: store.Key{Policy: store.KeyPolicy{Concurrency: 1, Queue: &yes}},
			opts: func(o *Options) { o.QueueFactor = 1 }, before: both(holdSlot, queueOne), req: sonnet,
			status: 429, typ: TypeRateLimit, code: CodeConcurrencyExceeded, retry: "1"},
		{name: "count_tokens takes no slot", key: store.Key{Policy: store.KeyPolicy{Concurrency: 1}}, before: holdSlot, req: countTokens},
		{name: "slot free", key: store.Key{Policy: store.KeyPolicy{Concurrency: 1}}, req: sonnet},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock(t0)
			e := newEngine(c, tc.opts)
			key := tc.key
			key.ID = store.KeyID(fmt.Sprintf("k%d", i))
			if tc.before != nil {
				tc.before(t, e, key)
			}
			d := admit(t, e, key, tc.req)
			if tc.status == 0 {
				if d != nil {
					t.Fatalf("refused: %v", d)
				}
				return
			}
			if d == nil {
				t.Fatalf("admitted; want %d %s", tc.status, tc.code)
			}
			if d.Status != tc.status || d.Type != tc.typ || d.Code != tc.code || retryAfter(d) != tc.retry {
				t.Errorf("got %d %s %s Retry-After %q; want %d %s %s Retry-After %q (%s)",
					d.Status, d.Type, d.Code, retryAfter(d), tc.status, tc.typ, tc.code, tc.retry, d.Message)
			}
			if d.Message == "" {
				t.Error("empty message")
			}
			if d.Status == 402 && (d.Current < d.Limit || d.Limit == 0) {
				t.Errorf("cost denial reports %d of %d", d.Current, d.Limit)
			}
		})
	}
}

// finished runs a request through the pipeline and releases its slot, as
// a request that has ended.
func finished(t *testing.T, e *Engine, key store.Key, req Request) {
	t.Helper()
	ctx := t.Context()
	if d := e.Check(ctx, key, req); d != nil {
		t.Fatal(d)
	}
	if d := e.Admit(ctx, key, req); d != nil {
		t.Fatal(d)
	}
	release, d := e.Acquire(ctx, key, req)
	release()
	if d != nil {
		t.Fatal(d)
	}
}

// queueOne puts one request in the key's queue and waits until it is
// there. It takes the slot when the test ends and the holder lets go.
func queueOne(t *testing.T, e *Engine, key store.Key) {
	var wg sync.WaitGroup
	wg.Go(func() {
		release, d := e.Acquire(t.Context(), key, Request{RequestID: "queued"})
		release()
		if d != nil && d.Code != CodeCanceled {
			t.Errorf("queued request: %v", d)
		}
	})
	t.Cleanup(wg.Wait) // runs after the slot holder's release (cleanups run last first)
	waitFor(t, func() bool {
		n, _ := e.counters.InUse(t.Context(), queueName(key.ID))
		return n == 1
	})
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
