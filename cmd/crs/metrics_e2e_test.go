package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/metrics/metricstest"
)

// TestServeMetricsAndLogFile runs `crs serve` with METRICS_TOKEN and
// LOG_DIR: a relayed request carries x-crs-overhead-ms, shows in /metrics
// (which refuses a scrape without the token), and leaves a JSON access
// line in LOG_DIR/crs.log naming the key and the account.
func TestServeMetricsAndLogFile(t *testing.T) {
	t.Parallel()
	fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{Deltas: 2})
	dir := newDataDir(t)
	acct := addAccount(t, dir, fake, "main", 50)
	_, key := createKey(t, dir, "alice")
	logDir := filepath.Join(t.TempDir(), "logs")
	srv := startRelay(t, dir, map[string]string{"LOG_LEVEL": "info", "LOG_DIR": logDir, "METRICS_TOKEN": "s3cret-scrape"})

	resp := rawPost(t, srv.url+"/api/v1/messages", key,
		`{"model":"claude-sonnet-4-5","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ms, err := strconv.ParseFloat(resp.Header.Get("X-Crs-Overhead-Ms"), 64); err != nil || ms < 0 {
		t.Fatalf("x-crs-overhead-ms = %q", resp.Header.Get("X-Crs-Overhead-Ms"))
	}

	open, err := http.Get(srv.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	open.Body.Close()
	if open.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/metrics without the token: %d", open.StatusCode)
	}
	s := metricstest.Scrape(t, srv.url+"/metrics", "s3cret-scrape")
	u := fakeupstream.DefaultUsage()
	for name, want := range map[string]float64{
		"crs_upstream_attempts_total":  1,
		"crs_first_byte_seconds_count": 1,
		"crs_tokens_total":             float64(u.Input + u.Output + u.CacheWrite5m + u.CacheWrite1h + u.CacheRead),
	} {
		if got := s.Sum(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if s.Sum("crs_http_requests_total", "route", "POST /api/v1/messages", "platform", "claude", "status", "200") != 1 ||
		s.Sum("crs_accounts", "platform", "claude", "status", "active") != 1 || s.Sum("crs_store_up") != 1 {
		t.Errorf("requests, accounts or store gauges wrong")
	}
	if !s.Has("crs_build_info") {
		t.Error("no build info")
	}

	srv.Stop() // flushes and closes the log file
	b, err := os.ReadFile(filepath.Join(logDir, "crs.log"))
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log file line is not JSON: %q", l)
		}
		if m["msg"] == "request" && m["path"] == "/api/v1/messages" {
			found = m["key"] == "alice" && m["account_id"] == acct && m["model"] == "claude-sonnet-4-5" && m["output_tokens"] == 7.0
			if !found {
				t.Errorf("access line %v", m)
			}
		}
	}
	if !found || strings.Contains(string(b), key) || strings.Contains(string(b), "s3cret-scrape") {
		t.Fatalf("log file: found %v, or a secret leaked:\n%s", found, b)
	}
}
