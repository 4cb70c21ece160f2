package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/metrics/metricstest"
	"github.com/crs-relay/crs/internal/pricing"
)

// priceTable is a replacement table that prices claude-sonnet-4-5 far
// above the embedded table, so a request priced with it is told apart.
func priceTable(version string) string {
	return `{
  "version": "` + version + `",
  "source": "crs tests",
  "as_of": "2027-01-15",
  "models": [
    {"id": "claude-sonnet-4-5", "input": 1000, "output": 2000, "cache_write_5m": 3000, "cache_write_1h": 4000, "cache_read": 500},
    {"id": "gpt-5", "input": 1, "output": 2}
  ]
}
`
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// pricesLine runs `crs version` on dir and returns its price line.
func pricesLine(t *testing.T, dir string) string {
	t.Helper()
	out := ok(t, "", "version", "--data-dir", dir)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "crs ") || !strings.HasPrefix(lines[1], "prices ") {
		t.Fatalf("crs version printed %q", out)
	}
	return lines[1]
}

func pricesInfo(t *testing.T, dir string) pricing.Info {
	t.Helper()
	var i pricing.Info
	if err := json.Unmarshal([]byte(ok(t, "", "prices", "show", "--json", "--data-dir", dir)), &i); err != nil {
		t.Fatal(err)
	}
	return i
}

// TestPricesUpdateFromFile: a good file becomes the table `crs version`
// and `crs prices show` report; bad files are refused with their reason
// and the table in use stays; reset goes back to the embedded table.
func TestPricesUpdateFromFile(t *testing.T) {
	isolate(t)
	t.Setenv("PRICES_URL", "")
	dir := t.TempDir()
	embedded := pricing.Default().Info()
	if got, want := pricesLine(t, dir), "prices "+embedded.Version+", as of "+embedded.AsOf+" (embedded)"; got != want {
		t.Fatalf("fresh DATA_DIR: %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, DBFile)); !os.IsNotExist(err) {
		t.Fatalf("crs version created the database (%v)", err)
	}

	good := writeFile(t, "prices.json", priceTable("test-2027.01"))
	out := ok(t, "", "prices", "update", "--file", good, "--data-dir", dir)
	if !strings.Contains(out, "test-2027.01") || !strings.Contains(out, embedded.Version) {
		t.Fatalf("update printed %q", out)
	}
	line := pricesLine(t, dir)
	if !strings.HasPrefix(line, "prices test-2027.01, as of 2027-01-15 ("+good+", stored ") {
		t.Fatalf("after the update crs version says %q", line)
	}
	if i := pricesInfo(t, dir); i.Version != "test-2027.01" || i.AsOf != "2027-01-15" || i.Origin != good || i.Models != 2 ||
		i.Source != "crs tests" || time.Since(i.UpdatedAt) > time.Minute {
		t.Fatalf("prices show: %+v", i)
	}

	bad := []struct{ name, content, want string }{
		{"empty", "", "empty"},
		{"truncated", priceTable("x")[:80], "unexpected EOF"},
		{"no models", `{"as_of": "2027-02-01", "models": []}`, "no models"},
		{"no date", `{"models": [{"id": "m", "input": 1, "output": 2}]}`, "as_of"},
		{"typo", `{"as_of": "2027-02-01", "models": [{"id": "m", "input": 1, "outptu": 2}]}`, "unknown field"},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			f := writeFile(t, "bad.json", b.content)
			fails(t, 1, b.want, "prices", "update", "--file", f, "--data-dir", dir)
			fails(t, 1, "unchanged (test-2027.01)", "prices", "update", "--file", f, "--data-dir", dir)
			if got := pricesLine(t, dir); !strings.HasPrefix(got, "prices test-2027.01,") {
				t.Fatalf("a refused file changed the table: %q", got)
			}
		})
	}
	fails(t, 1, "no such file", "prices", "update", "--file", filepath.Join(dir, "missing.json"), "--data-dir", dir)

	// Standard input works too.
	ok(t, priceTable("from-stdin"), "prices", "update", "--file", "-", "--data-dir", dir)
	if i := pricesInfo(t, dir); i.Version != "from-stdin" || i.Origin != "standard input" {
		t.Fatalf("from standard input: %+v", i)
	}

	fails(t, 2, "give --file FILE or --url URL, or set PRICES_URL", "prices", "update", "--data-dir", dir)
	fails(t, 2, "not both", "prices", "update", "--file", good, "--url", "http://127.0.0.1:1/x", "--data-dir", dir)

	ok(t, "", "prices", "reset", "--data-dir", dir)
	if got := pricesLine(t, dir); got != "prices "+embedded.Version+", as of "+embedded.AsOf+" (embedded)" {
		t.Fatalf("after reset: %q", got)
	}
}

// TestPricesUpdateFromURL fetches tables from a loopback server: by --url
// and by PRICES_URL. The URL's query (a token) is neither stored nor
// printed; an error status or a page that is not a table is refused.
func TestPricesUpdateFromURL(t *testing.T) {
	isolate(t)
	var mu sync.Mutex
	var agents []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		agents = append(agents, r.UserAgent())
		mu.Unlock()
		if r.URL.Query().Get("token") != "s3cret" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		switch r.URL.Path {
		case "/prices.json":
			w.Write([]byte(priceTable("url-1")))
		case "/nightly.json":
			w.Write([]byte(priceTable("url-2")))
		case "/html":
			w.Write([]byte("<html><body>maintenance</body></html>"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	dir := t.TempDir()

	out := ok(t, "", "prices", "update", "--url", srv.URL+"/prices.json?token=s3cret", "--data-dir", dir)
	i := pricesInfo(t, dir)
	if i.Version != "url-1" || i.Origin != srv.URL+"/prices.json" || strings.Contains(out, "s3cret") {
		t.Fatalf("--url: %+v, printed %q", i, out)
	}

	t.Setenv("PRICES_URL", srv.URL+"/nightly.json?token=s3cret")
	ok(t, "", "prices", "update", "--data-dir", dir)
	if i := pricesInfo(t, dir); i.Version != "url-2" || i.Origin != srv.URL+"/nightly.json" {
		t.Fatalf("PRICES_URL: %+v", i)
	}

	for path, want := range map[string]string{
		"/gone.json?token=s3cret": "404 Not Found",
		"/prices.json?token=nope": "403 Forbidden",
		"/html?token=s3cret":      "invalid character",
	} {
		code, _, errs := crs(t, "", "prices", "update", "--url", srv.URL+path, "--data-dir", dir)
		if code != 1 || !strings.Contains(errs, want) || !strings.Contains(errs, "unchanged (url-2)") || strings.Contains(errs, "s3cret") {
			t.Errorf("%s: exit %d, stderr %q; want exit 1 naming %q without the token", path, code, errs, want)
		}
	}
	fails(t, 1, "connection refused", "prices", "update", "--url", "http://127.0.0.1:1/prices.json", "--data-dir", dir)
	fails(t, 1, "http:// or https://", "prices", "update", "--url", "file:///etc/passwd", "--data-dir", dir)
	if got := pricesInfo(t, dir).Version; got != "url-2" {
		t.Fatalf("refused downloads changed the table to %q", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(agents) == 0 || !strings.HasPrefix(agents[0], "crs/") {
		t.Fatalf("user agents %q", agents)
	}
}

// costUSD totals the cost of every model in `crs usage`.
func costUSD(t *testing.T, dir string) decimal.Decimal {
	t.Helper()
	total := decimal.Zero
	for _, m := range usageJSON(t, dir).Models {
		var d decimal.Decimal
		if err := json.Unmarshal(m.Cost, &d); err != nil {
			t.Fatalf("cost %s: %v", m.Cost, err)
		}
		total = total.Add(d)
	}
	return total
}

// TestRunningServerUsesUpdatedPrices: a table stored by `crs prices
// update` while the server runs prices the next request, without a
// restart, and /metrics names it.
func TestRunningServerUsesUpdatedPrices(t *testing.T) {
	t.Parallel()
	fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{})
	dir := newDataDir(t)
	addAccount(t, dir, fake, "main", 50)
	_, key := createKey(t, dir, "alice")
	srv := startRelay(t, dir, nil)
	u := fakeupstream.DefaultUsage()
	tk := pricing.Tokens{Input: u.Input, Output: u.Output, CacheWrite5m: u.CacheWrite5m, CacheWrite1h: u.CacheWrite1h, CacheRead: u.CacheRead}
	const model = "claude-sonnet-4-5"

	if a := send(t, srv.url, key, "/api/v1/messages", messagesBody(model, "one")); a.status != 200 {
		t.Fatalf("first request: %d %s", a.status, a.body)
	}
	before := costUSD(t, dir)
	if want := pricing.Default().Cost(model, tk); !before.Equal(want) {
		t.Fatalf("first request cost %s, want %s at the embedded prices", before, want)
	}

	ok(t, "", "prices", "update", "--file", writeFile(t, "p.json", priceTable("live-1")), "--data-dir", dir)
	deadline := time.Now().Add(5 * time.Second)
	for !metricstest.Scrape(t, srv.url+"/metrics", "").Has("crs_price_table_info", "version", "live-1", "as_of", "2027-01-15") {
		if time.Now().After(deadline) {
			t.Fatal("the server did not load the stored table within 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a := send(t, srv.url, key, "/api/v1/messages", messagesBody(model, "two")); a.status != 200 {
		t.Fatalf("second request: %d %s", a.status, a.body)
	}
	updated, err := pricing.Parse([]byte(priceTable("live-1")))
	if err != nil {
		t.Fatal(err)
	}
	got, want := costUSD(t, dir).Sub(before), updated.Cost(model, tk)
	if !got.Equal(want) || want.Equal(pricing.Default().Cost(model, tk)) {
		t.Fatalf("second request cost %s, want %s at the updated prices", got, want)
	}
}

// TestQueueWaitIsNotOverhead: a key limited to one request at a time, a
// slow upstream, and two requests at once. The second waits in the key's
// queue for most of the first one's time; /metrics shows it queued while
// it waits and its wait afterwards, and neither its x-crs-overhead-ms nor
// crs_relay_overhead_seconds counts the wait.
func TestQueueWaitIsNotOverhead(t *testing.T) {
	const slow = 600 * time.Millisecond
	up := fakeupstream.StartAnthropic(t, fakeupstream.Options{})
	up.SetDefault(fakeupstream.Fault{FirstByteDelay: slow})
	dir := newDataDir(t)
	addAccount(t, dir, up, "a", 50)
	k := policyKey(t, dir, "one-at-a-time", "--concurrency", "1", "--queue")
	srv := startRelay(t, dir, nil)
	scrape := func() metricstest.Samples { return metricstest.Scrape(t, srv.url+"/metrics", "") }

	type result struct {
		a    answer
		took time.Duration
	}
	results := make(chan result, 2)
	post := func(text string) {
		go func() {
			start := time.Now()
			a := send(t, srv.url, k.Key, "/api/v1/messages", messagesBody("claude-sonnet-4-5", text))
			results <- result{a, time.Since(start)}
		}()
	}
	post("first")
	for deadline := time.Now().Add(5 * time.Second); up.MaxInFlight() < 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first request did not reach the upstream")
		}
	}
	post("second")
	queuedSeen := false
	for deadline := time.Now().Add(slow / 2); !queuedSeen && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		queuedSeen = scrape().Sum("crs_key_queue_depth") == 1
	}
	if !queuedSeen {
		t.Error("crs_key_queue_depth never showed the waiting request")
	}

	var second result
	for range 2 {
		r := <-results
		if r.a.status != 200 {
			t.Fatalf("status %d: %s", r.a.status, r.a.body)
		}
		if r.took > second.took {
			second = r
		}
	}
	overhead, err := strconv.ParseFloat(second.a.header.Get("X-Crs-Overhead-Ms"), 64)
	if err != nil {
		t.Fatalf("x-crs-overhead-ms = %q", second.a.header.Get("X-Crs-Overhead-Ms"))
	}
	// The second request took its own upstream time plus most of the
	// first one's in the queue; none of that is crs's overhead.
	if second.took < slow+slow/2 || overhead > 200 {
		t.Fatalf("second request took %v with x-crs-overhead-ms %v; the queue wait must not count", second.took, overhead)
	}
	if up.MaxInFlight() != 1 {
		t.Fatalf("the upstream saw %d requests at once from a key limited to 1", up.MaxInFlight())
	}

	s := scrape()
	waits, waited := s.Sum("crs_key_queue_wait_seconds_count", "outcome", "served"), s.Sum("crs_key_queue_wait_seconds_sum", "outcome", "served")
	if waits != 1 || waited < (slow/2).Seconds() || waited > second.took.Seconds() {
		t.Errorf("crs_key_queue_wait_seconds{outcome=served}: %v waits, %vs in all", waits, waited)
	}
	if s.Sum("crs_key_queue_depth") != 0 || !s.Has("crs_usage_queue_depth") || s.Sum("crs_usage_queue_depth") != 0 {
		t.Errorf("queue gauges after the requests: key %v, usage %v (present %v)",
			s.Sum("crs_key_queue_depth"), s.Sum("crs_usage_queue_depth"), s.Has("crs_usage_queue_depth"))
	}
	if n, sum := s.Sum("crs_relay_overhead_seconds_count"), s.Sum("crs_relay_overhead_seconds_sum"); n != 2 || sum > 0.3 {
		t.Errorf("crs_relay_overhead_seconds: %v observations summing %vs; the wait must not be in it", n, sum)
	}
}
