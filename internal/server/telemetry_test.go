package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/metrics"
	"github.com/crs-relay/crs/internal/metrics/metricstest"
	"github.com/crs-relay/crs/internal/netx"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/relay"
	"github.com/crs-relay/crs/internal/scheduler"
	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/sqlite"
	"github.com/crs-relay/crs/internal/testkit"
	"github.com/crs-relay/crs/internal/usage"
)

const metricsToken = "scrape-me"

// stack is the whole HTTP surface (server.New over a real relay, SQLite
// store and usage recorder) with two Claude accounts on fake upstreams:
// "first" (tried first) and "second".
type stack struct {
	url           string
	key           string
	first, second *fakeupstream.Anthropic
	logs          *testkit.SyncBuffer
}

func newStack(t *testing.T) *stack {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	box, _ := secret.NewBox(strings.Repeat("x", 32))
	s := &stack{logs: &testkit.SyncBuffer{}, key: secret.NewRelayKey()}
	// Streams take a while (4 deltas 40 ms apart), so a scrape can catch
	// one in flight.
	s.first = fakeupstream.StartAnthropic(t, fakeupstream.Options{Name: "first", Deltas: 4, DeltaDelay: 40 * time.Millisecond})
	s.second = fakeupstream.StartAnthropic(t, fakeupstream.Options{Name: "second", Deltas: 2})
	now := time.Now()
	for i, f := range []*fakeupstream.Anthropic{s.first, s.second} {
		name := []string{"first", "second"}[i]
		if err := st.CreateAccount(ctx, store.Account{ID: store.AccountID("id-" + name), Name: name, Platform: store.PlatformClaude,
			Type: store.TypeAPIKey, Priority: 10 * (i + 1), BaseURL: f.URL(), SealedSecret: box.Seal([]byte("sk-ant-" + name)),
			CreatedAt: now, UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CreateKey(ctx, store.Key{ID: "k1", Name: "alice", Hash: secret.Hash(s.key), Hint: s.key[len(s.key)-4:], CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	rec := usage.NewRecorder(st, usage.Options{SpoolDir: t.TempDir()})
	rec.Start()
	t.Cleanup(func() { rec.Close(context.Background()) })
	mx := metrics.New(metrics.Options{Version: "test", Accounts: st.ListAccounts, Ping: st.Ping})
	log := slog.New(slog.NewJSONHandler(s.logs, nil))
	rl := relay.New(relay.Config{MaxBodyBytes: 1 << 20, FirstEventTimeout: 5 * time.Second}, relay.Deps{
		Keys: relay.NewKeyCache(st, nil), Scheduler: scheduler.New(st, scheduler.Options{}), Recorder: rec,
		Prices: pricing.Default(), Pool: netx.NewPool(netx.Options{}), Box: box, Metrics: mx, Logger: log,
	})
	if err := rl.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Options{Relay: rl, Store: st, Version: "test", Logger: log, Metrics: mx, MetricsToken: metricsToken}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

const prompt = "a prompt that must never be logged"

func (s *stack) message(t *testing.T, stream bool, key string) *http.Response {
	t.Helper()
	body := `{"model":"claude-sonnet-4-5","max_tokens":64,"stream":` + strconv.FormatBool(stream) +
		`,"messages":[{"role":"user","content":"` + prompt + `"}]}`
	req, _ := http.NewRequest(http.MethodPost, s.url+"/api/v1/messages", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Anthropic-Version", "2023-06-01")
	req.Header.Set("User-Agent", "claude-cli/2.0.1 (external, cli)")
	req.Header.Set("X-Api-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// drain reads the response to its end and checks status and the overhead
// header.
func drain(t *testing.T, resp *http.Response, status int) float64 {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
	return overheadOf(t, resp)
}

func overheadOf(t *testing.T, resp *http.Response) float64 {
	t.Helper()
	v := resp.Header.Get("X-Crs-Overhead-Ms")
	ms, err := strconv.ParseFloat(v, 64)
	if err != nil || ms < 0 {
		t.Fatalf("x-crs-overhead-ms = %q on %s", v, resp.Request.URL.Path)
	}
	return ms
}

func (s *stack) scrape(t *testing.T) metricstest.Samples {
	t.Helper()
	return metricstest.Scrape(t, s.url+"/metrics", metricsToken)
}

// TestMetricsMoveWithRelayedRequests sends traffic through the relay —
// two successes, a failover, a client error, a refused key — and checks
// each counter and histogram moved by exactly what that traffic implies.
func TestMetricsMoveWithRelayedRequests(t *testing.T) {
	s := newStack(t)
	before := s.scrape(t)

	drain(t, s.message(t, true, s.key), 200)
	drain(t, s.message(t, false, s.key), 200)
	s.first.Push(fakeupstream.Fault{Status: 429, Header: http.Header{"Retry-After": {"3600"}}})
	drain(t, s.message(t, true, s.key), 200) // first rate limited → second
	s.second.Push(fakeupstream.Fault{Status: 400})
	drain(t, s.message(t, false, s.key), 400) // passed through: no account does better
	drain(t, s.message(t, true, "cr_not_a_key"), 401)

	after := s.scrape(t)
	moved := func(name string, labels ...string) float64 {
		return after.Sum(name, labels...) - before.Sum(name, labels...)
	}
	const route = "POST /api/v1/messages"
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"crs_http_requests_total", []string{"route", route, "platform", "claude", "status", "200"}, 3},
		{"crs_http_requests_total", []string{"route", route, "platform", "claude", "status", "400"}, 1},
		{"crs_http_requests_total", []string{"route", route, "platform", "none", "status", "401"}, 1},
		{"crs_upstream_attempts_total", []string{"platform", "claude", "outcome", "ok"}, 3},
		{"crs_upstream_attempts_total", []string{"platform", "claude", "outcome", "rate_limited"}, 1},
		{"crs_upstream_attempts_total", []string{"platform", "claude", "outcome", "client_error"}, 1},
		{"crs_upstream_attempts_total", nil, 5},
		{"crs_upstream_failovers_total", []string{"platform", "claude", "reason", "rate_limited"}, 1},
		{"crs_upstream_failovers_total", nil, 1},
		{"crs_first_byte_seconds_count", []string{"platform", "claude"}, 3},
		{"crs_request_duration_seconds_count", []string{"platform", "claude"}, 4},
		{"crs_relay_overhead_seconds_count", []string{"platform", "claude"}, 4},
		{"crs_streams_in_flight", nil, 0},
	} {
		if got := moved(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v moved %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Three responses reported the fake's default usage.
	u := fakeupstream.DefaultUsage()
	tk := pricing.Tokens{Input: u.Input, Output: u.Output, CacheWrite5m: u.CacheWrite5m, CacheWrite1h: u.CacheWrite1h, CacheRead: u.CacheRead}
	for class, per := range map[string]int64{"input": u.Input, "output": u.Output, "cache_write_5m": u.CacheWrite5m, "cache_write_1h": u.CacheWrite1h, "cache_read": u.CacheRead} {
		if got := moved("crs_tokens_total", "platform", "claude", "model", "claude-sonnet-4-5", "class", class); got != float64(3*per) {
			t.Errorf("tokens{class=%s} moved %v, want %d", class, got, 3*per)
		}
	}
	wantCost := 3 * float64(pricing.Default().CostPico("claude-sonnet-4-5", tk)) / 1e12
	if got := moved("crs_cost_usd_total", "platform", "claude", "model", "claude-sonnet-4-5"); wantCost == 0 || math.Abs(got-wantCost) > 1e-9 {
		t.Errorf("cost moved %v, want %v", got, wantCost)
	}
	// Read at scrape time: the rate-limited account, and the store.
	if after.Sum("crs_accounts", "platform", "claude", "status", "rate_limited") != 1 ||
		after.Sum("crs_accounts", "platform", "claude", "status", "active") != 1 || after.Sum("crs_store_up") != 1 {
		t.Errorf("accounts or store gauges: %v %v %v", after.Sum("crs_accounts", "status", "rate_limited"),
			after.Sum("crs_accounts", "status", "active"), after.Sum("crs_store_up"))
	}
	// The scrapes themselves are counted as requests.
	if got := after.Sum("crs_http_requests_total", "route", "GET /metrics", "status", "200"); got != 1 {
		t.Errorf("metrics requests counted %v before this scrape, want 1", got)
	}
}

// TestStreamsInFlightGauge: a stream past its first byte shows in the
// gauge until it ends.
func TestStreamsInFlightGauge(t *testing.T) {
	s := newStack(t)
	resp := s.message(t, true, s.key)
	defer resp.Body.Close()
	// The first event is out: the stream committed.
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if got := s.scrape(t).Sum("crs_streams_in_flight", "platform", "claude"); got != 1 {
		t.Fatalf("in flight during the stream: %v", got)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	testkit.WaitFor(t, 2*time.Second, func() bool { return s.scrape(t).Sum("crs_streams_in_flight", "platform", "claude") == 0 })
}

// TestOverheadExcludesTheUpstreamWait: an upstream that takes 400 ms to
// answer makes the request slow, not crs's overhead.
func TestOverheadExcludesTheUpstreamWait(t *testing.T) {
	s := newStack(t)
	s.first.Push(fakeupstream.Fault{FirstByteDelay: 400 * time.Millisecond})
	start := time.Now()
	overhead := drain(t, s.message(t, true, s.key), 200)
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Fatalf("request took %v; the fault did not apply", took)
	}
	if overhead >= 200 {
		t.Fatalf("x-crs-overhead-ms = %v: the upstream's 400 ms wait was counted as crs's", overhead)
	}
	line := s.logLine(t, "path", "/api/v1/messages")
	if up := num(t, line, "upstream_ms"); up < 400 {
		t.Errorf("upstream_ms = %v, want ≥ 400", up)
	}
	if oh := num(t, line, "overhead_ms"); oh >= 200 || num(t, line, "ms") < 400 {
		t.Errorf("logged overhead %v of %v ms", oh, line["ms"])
	}
}

// TestEveryResponseCarriesTheOverheadHeader: relayed, refused, local,
// not found, a handler that writes nothing, and a panic.
func TestEveryResponseCarriesTheOverheadHeader(t *testing.T) {
	s := newStack(t)
	drain(t, s.message(t, true, s.key), 200)
	drain(t, s.message(t, true, "cr_wrong"), 401)
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/health", 200}, {"HEAD", "/api", 200}, {"GET", "/nowhere", 404}, {"GET", "/api/v1/models", 401},
	} {
		req, _ := http.NewRequest(c.method, s.url+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		drain(t, resp, c.status)
	}
	for name, h := range map[string]http.HandlerFunc{
		"silent": func(http.ResponseWriter, *http.Request) {},
		"panic":  func(http.ResponseWriter, *http.Request) { panic("boom") },
	} {
		log := slog.New(slog.DiscardHandler)
		srv := httptest.NewServer(withTelemetry(log, nil, ClientIPFunc(nil), withRecover(log, h)))
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		drain(t, resp, map[string]int{"silent": 200, "panic": 500}[name])
		srv.Close()
	}
}

func TestMetricsBearerToken(t *testing.T) {
	s := newStack(t)
	for _, c := range []struct {
		auth string
		want int
	}{
		{"", 401}, {"Bearer wrong", 401}, {"Basic " + metricsToken, 401}, {metricsToken, 401},
		{"Bearer " + metricsToken, 200}, {"bearer " + metricsToken, 200},
	} {
		req, _ := http.NewRequest("GET", s.url+"/metrics", nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("Authorization %q: %d, want %d", c.auth, resp.StatusCode, c.want)
		}
		if c.want == 401 && (resp.Header.Get("WWW-Authenticate") == "" || strings.Contains(string(body), "crs_")) {
			t.Errorf("Authorization %q: refused without a challenge, or with metrics: %s", c.auth, body)
		}
	}

	// Without a token /metrics is open; without Metrics there is none.
	open := httptest.NewServer(New(Options{Metrics: metrics.New(metrics.Options{})}))
	defer open.Close()
	metricstest.Scrape(t, open.URL+"/metrics", "")
	none := httptest.NewServer(New(Options{}))
	defer none.Close()
	resp, err := http.Get(none.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("/metrics without Metrics: %d", resp.StatusCode)
	}
}

// TestAccessLogLine: one JSON line per request with who and what it was,
// and neither the key nor the prompt anywhere in the log.
func TestAccessLogLine(t *testing.T) {
	s := newStack(t)
	resp := s.message(t, true, s.key)
	drain(t, resp, 200)
	id := resp.Header.Get("X-Request-Id")
	line := s.logLine(t, "request_id", id)
	for k, want := range map[string]any{
		"msg": "request", "method": "POST", "path": "/api/v1/messages", "status": 200.0,
		"key": "alice", "account": "first", "account_id": "id-first", "platform": "claude",
		"model": "claude-sonnet-4-5", "attempts": 1.0, "ua": "claude-cli/2.0.1 (external, cli)",
		"input_tokens": 11.0, "output_tokens": 7.0, "cache_write_5m_tokens": 5.0, "cache_write_1h_tokens": 2.0,
		"cache_read_tokens": 3.0, "client": "127.0.0.1",
	} {
		if line[k] != want {
			t.Errorf("%s = %#v, want %#v", k, line[k], want)
		}
	}
	if line["cost_usd"] == nil || line["cost_usd"] == "0" {
		t.Errorf("cost_usd = %v", line["cost_usd"])
	}
	// The fake streams 4 deltas 40 ms apart: at least 120 ms upstream.
	if num(t, line, "ttfb_ms") > num(t, line, "ms") || num(t, line, "upstream_ms") < 120 || num(t, line, "overhead_ms") < 0 || num(t, line, "bytes") <= 0 {
		t.Errorf("durations: %v", line)
	}
	// A line for a request the relay never saw has no relay fields.
	drain(t, mustGet(t, s.url+"/health"), 200)
	health := s.logLine(t, "path", "/health")
	for _, k := range []string{"key", "account", "model", "input_tokens"} {
		if _, ok := health[k]; ok {
			t.Errorf("/health line has %s: %v", k, health)
		}
	}
	logs := s.logs.String()
	for _, secretText := range []string{s.key, s.key[3:20], prompt, "sk-ant-first"} {
		if strings.Contains(logs, secretText) {
			t.Fatalf("log contains %q", secretText)
		}
	}
}

// num is the number in field k of a log line; the test fails without one.
func num(t *testing.T, line map[string]any, k string) float64 {
	t.Helper()
	v, ok := line[k].(float64)
	if !ok {
		t.Fatalf("no number %s in %v", k, line)
	}
	return v
}

func mustGet(t *testing.T, url string) *http.Response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// logLine returns the last access log line whose field k is v.
func (s *stack) logLine(t *testing.T, k, v string) map[string]any {
	t.Helper()
	var found map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		if m["msg"] == "request" && m[k] == v {
			found = m
		}
	}
	if found == nil {
		t.Fatalf("no access log line with %s=%s in:\n%s", k, v, s.logs.String())
	}
	return found
}

// BenchmarkTelemetry is the per-request cost of the telemetry middleware
// and the relay's hooks (log disabled): what metrics and the overhead
// header add to every request.
func BenchmarkTelemetry(b *testing.B) {
	mx := metrics.New(metrics.Options{})
	key, acct := store.Key{Name: "alice"}, store.Account{ID: "a1", Name: "main", Platform: store.PlatformClaude}
	relayed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		mx.Authenticated(ctx, key)
		mx.Serving(ctx, store.PlatformClaude, "claude-sonnet-4-5")
		mx.Sending(ctx, acct)
		mx.Committed(ctx, store.PlatformClaude, 200)
		mx.StreamOpened(store.PlatformClaude)
		w.WriteHeader(200)
		mx.Recorded(ctx, store.PlatformClaude, "claude-sonnet-4-5", pricing.Tokens{Input: 10, Output: 5}, 1000, 0)
		mx.StreamClosed(store.PlatformClaude)
		mx.UpstreamDone(ctx)
	})
	mux := http.NewServeMux()
	mux.Handle("POST /api/v1/messages", relayed)
	h := withTelemetry(slog.New(slog.DiscardHandler), mx, ClientIPFunc(nil), mux)
	req := httptest.NewRequest("POST", "/api/v1/messages", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}
