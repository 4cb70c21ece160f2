package metrics

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/metrics/metricstest"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/provider"
	"github.com/crs-relay/crs/internal/store"
)

func scrape(t *testing.T, m *Metrics) metricstest.Samples {
	t.Helper()
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != 200 {
		t.Fatalf("scrape: %d %s", w.Code, w.Body)
	}
	s, err := metricstest.Parse(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAttemptOutcomes(t *testing.T) {
	now := time.Now()
	cases := []struct {
		o    provider.Outcome
		want string
	}{
		{provider.Outcome{Kind: provider.Failover, Cooldown: store.CooldownRateLimited}, "rate_limited"},
		{provider.Transport(now, errors.New("reset")), "cooling_down"},
		{provider.Outcome{Kind: provider.Failover, Cooldown: store.CooldownCredentialDead}, "credential_dead"},
		{provider.Outcome{Kind: provider.Failover, Cooldown: store.CooldownBlocked}, "blocked"},
		{provider.Outcome{Kind: provider.Failover, Reason: "serial queue: timeout"}, "failover"},
		{provider.Outcome{Kind: provider.ClientError}, "client_error"},
	}
	m := New(Options{})
	for _, c := range cases {
		m.Failed(store.PlatformOpenAI, c.o)
		m.FailingOver(store.PlatformOpenAI, c.o)
	}
	m.Abandoned(store.PlatformGemini)
	s := scrape(t, m)
	for _, c := range cases {
		if got := s.Sum("crs_upstream_attempts_total", "platform", "openai", "outcome", c.want); got != 1 {
			t.Errorf("attempts{outcome=%s} = %v, want 1", c.want, got)
		}
		if got := s.Sum("crs_upstream_failovers_total", "platform", "openai", "reason", c.want); got != 1 {
			t.Errorf("failovers{reason=%s} = %v, want 1", c.want, got)
		}
	}
	if got := s.Sum("crs_upstream_attempts_total", "platform", "gemini", "outcome", "canceled"); got != 1 {
		t.Errorf("canceled attempts = %v", got)
	}
}

// TestRequestsAndHistograms: a relayed request moves the request counter
// and the three histograms by one observation each, with the values the
// Exchange measured; a request no pool served moves the counter only.
func TestRequestsAndHistograms(t *testing.T) {
	m := New(Options{})
	x := NewExchange(time.Now().Add(-300 * ms))
	ctx := WithExchange(context.Background(), x)
	m.Serving(ctx, store.PlatformClaude, "claude-sonnet-4-5")
	m.Sending(ctx, store.Account{ID: "a1"})
	m.Committed(ctx, store.PlatformClaude, 200)
	m.UpstreamDone(ctx)
	sum := x.Summary(time.Now())
	m.RequestDone("POST /api/v1/messages", 200, sum)
	m.RequestDone("", 404, Summary{Total: time.Second})
	// A client error counts as such, and not as a time to first byte.
	m.Committed(ctx, store.PlatformClaude, 400)

	s := scrape(t, m)
	if got := s.Sum("crs_http_requests_total", "route", "POST /api/v1/messages", "platform", "claude", "status", "200"); got != 1 {
		t.Errorf("relayed request counted %v", got)
	}
	if got := s.Sum("crs_http_requests_total", "route", "unmatched", "platform", "none", "status", "404"); got != 1 {
		t.Errorf("unmatched request counted %v", got)
	}
	if got := s.Sum("crs_upstream_attempts_total", "outcome", "ok"); got != 1 {
		t.Errorf("ok attempts %v", got)
	}
	if got := s.Sum("crs_upstream_attempts_total", "outcome", "client_error"); got != 1 {
		t.Errorf("client_error attempts %v", got)
	}
	for name, want := range map[string]float64{
		"crs_first_byte_seconds":       sum.FirstByte.Seconds(),
		"crs_request_duration_seconds": sum.Total.Seconds(),
		"crs_relay_overhead_seconds":   sum.Overhead.Seconds(),
	} {
		if n := s.Sum(name+"_count", "platform", "claude"); n != 1 {
			t.Errorf("%s_count = %v, want 1", name, n)
		}
		if got := s.Sum(name+"_sum", "platform", "claude"); math.Abs(got-want) > 1e-9 {
			t.Errorf("%s_sum = %v, want %v", name, got, want)
		}
		if s.Has(name+"_count", "platform", "none") {
			t.Errorf("%s observed a request no pool served", name)
		}
	}
	if sum.FirstByte < 300*ms || sum.Overhead >= sum.Total {
		t.Errorf("summary %+v", sum)
	}
}

func TestTokensCostAndStreams(t *testing.T) {
	m := New(Options{})
	ctx := context.Background()
	tk := pricing.Tokens{Input: 1000, Output: 500, CacheWrite5m: 200, CacheWrite1h: 100, CacheRead: 4000}
	m.Recorded(ctx, store.PlatformClaude, "claude-sonnet-4-5", tk, 13_050_000_000, 0) // $0.01305
	m.Recorded(ctx, store.PlatformClaude, "claude-sonnet-4-5", pricing.Tokens{Input: 1}, 0, 0)
	m.StreamOpened(store.PlatformClaude)
	m.StreamOpened(store.PlatformClaude)
	m.StreamClosed(store.PlatformClaude)

	s := scrape(t, m)
	for class, want := range map[string]float64{"input": 1001, "output": 500, "cache_write_5m": 200, "cache_write_1h": 100, "cache_read": 4000} {
		if got := s.Sum("crs_tokens_total", "platform", "claude", "model", "claude-sonnet-4-5", "class", class); got != want {
			t.Errorf("tokens{class=%s} = %v, want %v", class, got, want)
		}
	}
	if got := s.Sum("crs_cost_usd_total", "model", "claude-sonnet-4-5"); math.Abs(got-0.01305) > 1e-12 {
		t.Errorf("cost = %v, want 0.01305", got)
	}
	if got := s.Sum("crs_streams_in_flight", "platform", "claude"); got != 1 {
		t.Errorf("streams in flight = %v, want 1", got)
	}
}

func TestModelLabelsAreCapped(t *testing.T) {
	m := New(Options{})
	ctx := context.Background()
	for i := range maxModels + 5 {
		m.Recorded(ctx, store.PlatformOpenAI, fmt.Sprintf("model-%d", i), pricing.Tokens{Input: 1}, 0, 0)
	}
	m.Recorded(ctx, store.PlatformOpenAI, "model-0", pricing.Tokens{Input: 1}, 0, 0) // admitted before the cap: kept
	m.Recorded(ctx, store.PlatformOpenAI, strings.Repeat("x", maxModelLen+1), pricing.Tokens{Input: 1}, 0, 0)
	m.Recorded(ctx, store.PlatformOpenAI, "", pricing.Tokens{Input: 1}, 0, 0)

	s := scrape(t, m)
	models := map[string]bool{}
	for _, x := range s {
		if x.Name == "crs_tokens_total" {
			models[x.Labels["model"]] = true
		}
	}
	if len(models) != maxModels+2 { // the admitted ones, other, unknown
		t.Errorf("%d model labels, want %d", len(models), maxModels+2)
	}
	if got := s.Sum("crs_tokens_total", "model", "other"); got != 6 {
		t.Errorf("other = %v, want 5 past the cap + 1 too long", got)
	}
	if s.Sum("crs_tokens_total", "model", "model-0") != 2 || s.Sum("crs_tokens_total", "model", "unknown") != 1 {
		t.Error("admitted or unknown model miscounted")
	}
}

// TestScrapeReadsAccountsAndStore: account statuses and store health are
// read at scrape time; a failing account listing costs that gauge only.
func TestScrapeReadsAccountsAndStore(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	later := now.Add(time.Hour)
	accts := []store.Account{
		{ID: "1", Platform: store.PlatformClaude},
		{ID: "2", Platform: store.PlatformClaude},
		{ID: "3", Platform: store.PlatformClaude, Unschedulable: true},
		{ID: "4", Platform: store.PlatformClaude, CooldownKind: store.CooldownRateLimited, CooldownUntil: &later},
		{ID: "5", Platform: store.PlatformClaude, CooldownKind: store.CooldownRateLimited, CooldownUntil: &now}, // ended: active
		{ID: "6", Platform: store.PlatformGemini, Disabled: true},
		{ID: "7", Platform: store.PlatformOpenAI, CooldownKind: store.CooldownCredentialDead, CooldownUntil: &later},
	}
	var listErr, pingErr error
	m := New(Options{
		Version:  "v1.2.3",
		Now:      func() time.Time { return now },
		Accounts: func(context.Context) ([]store.Account, error) { return accts, listErr },
		Ping: func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); !ok {
				t.Error("ping without a deadline")
			}
			return pingErr
		},
	})
	s := scrape(t, m)
	for _, c := range []struct {
		platform, status string
		want             float64
	}{
		{"claude", "active", 3}, {"claude", "unschedulable", 1}, {"claude", "rate_limited", 1},
		{"gemini", "disabled", 1}, {"openai", "credential_dead", 1},
	} {
		if got := s.Sum("crs_accounts", "platform", c.platform, "status", c.status); got != c.want {
			t.Errorf("accounts{%s,%s} = %v, want %v", c.platform, c.status, got, c.want)
		}
	}
	if s.Sum("crs_store_up") != 1 || !s.Has("crs_store_ping_seconds") || s.Sum("crs_build_info", "version", "v1.2.3") != 1 {
		t.Error("store gauges or build info missing")
	}
	if !s.Has("go_goroutines") || !s.Has("process_start_time_seconds") {
		t.Error("runtime collectors missing")
	}

	listErr, pingErr = errors.New("store down"), errors.New("store down")
	s = scrape(t, m)
	if s.Has("crs_accounts") || s.Sum("crs_store_up") != 0 || !s.Has("go_goroutines") {
		t.Errorf("with the store down: accounts %v, store_up %v", s.Has("crs_accounts"), s.Sum("crs_store_up"))
	}
}
