package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/redis/redistest"
	"github.com/crs-relay/crs/internal/store/sqlite"
)

// probeTarget is an upstream stand-in that records what doctor sends it
// and dates its answers with a clock off by skew.
type probeTarget struct {
	*httptest.Server
	skew atomic.Int64 // nanoseconds
	mu   sync.Mutex
	seen []*http.Request
}

func newProbeTarget(t *testing.T) *probeTarget {
	p := &probeTarget{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.seen = append(p.seen, r.Clone(context.Background()))
		p.mu.Unlock()
		w.Header().Set("Date", time.Now().Add(time.Duration(p.skew.Load())).UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusNotFound) // any answer proves the way there works
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *probeTarget) requests() []*http.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*http.Request(nil), p.seen...)
}

// pointUpstreamsAt sends every platform's default API root to url, so no
// check can leave the machine.
func pointUpstreamsAt(t *testing.T, url string) {
	for _, v := range []string{"CLAUDE_API_URL", "OPENAI_API_URL", "CODEX_API_URL", "GEMINI_API_URL", "CODE_ASSIST_API_URL"} {
		t.Setenv(v, url)
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// doctorRun runs crs doctor and returns its exit status and output.
func doctorRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return crs(t, "", append([]string{"doctor"}, args...)...)
}

func hasLine(out, level, what, text string) bool {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, level) && strings.Contains(line, what) && strings.Contains(line, text) {
			return true
		}
	}
	return false
}

// TestDoctorFindsEachProblem gives doctor a DATA_DIR with one healthy
// account and one of each network fault, and an upstream whose clock is
// ten minutes ahead. Each fault must be its own PROBLEM line in words, the
// healthy account an ok line, and no credential may leave the machine.
func TestDoctorFindsEachProblem(t *testing.T) {
	isolate(t)
	target := newProbeTarget(t)
	target.skew.Store(int64(10 * time.Minute))
	pointUpstreamsAt(t, target.URL)
	dir := newDataDir(t)
	cli := cliFor(dir)
	good := addAccount(t, dir, fakeURL(target.URL), "good", 1)
	addAccount(t, dir, fakeURL(target.URL), "proxied", 2, "--proxy", "socks5://user:hunter2@"+closedAddr(t))
	addAccount(t, dir, fakeURL("http://"+closedAddr(t)), "down", 3)
	off := addAccount(t, dir, fakeURL(target.URL), "off", 4)
	cli(t, "", "accounts", "disable", off)
	dead := addAccount(t, dir, fakeURL(target.URL), "dead", 5)
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, DBFile), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = st.SetCooldown(t.Context(), store.AccountID(dead), store.CooldownCredentialDead, time.Now().Add(time.Hour), "401 invalid x-api-key")
	st.Close()
	if err != nil {
		t.Fatal(err)
	}

	code, out, errs := doctorRun(t, "--data-dir", dir, "--timeout", "3s")
	if code != 1 || !strings.Contains(errs, "doctor found 4 problems") {
		t.Fatalf("doctor: exit %d, stderr %q\n%s", code, errs, out)
	}
	for _, c := range []struct{ level, what, text string }{
		{"ok", "config", "valid"},
		{"ok", "store", "5 accounts"},
		{"ok", "encryption key", filepath.Join(dir, "encryption.key")},
		{"note", "server", "has not run"},
		{"ok", `account "good" (` + good, "reached " + target.URL + " directly (HTTP 404"},
		{"PROBLEM", `account "proxied"`, "through socks5://user:***@"},
		{"PROBLEM", `account "proxied"`, "the proxy failed (socks5)"},
		{"PROBLEM", `account "down"`, "cannot connect: connection refused"},
		{"note", `account "off"`, "disabled"},
		{"PROBLEM", `account "dead"`, "its credential was refused (401 invalid x-api-key)"},
	} {
		if !hasLine(out, c.level, c.what, c.text) {
			t.Errorf("no %s line for %s saying %q in:\n%s", c.level, c.what, c.text, out)
		}
	}
	// The upstream's Date has whole seconds: allow a second either way.
	if !regexp.MustCompile(`(?m)^PROBLEM clock: this machine's clock is (9m59s|10m0s|10m1s) behind ` + regexp.QuoteMeta(target.URL)).MatchString(out) {
		t.Errorf("no clock problem of 10 minutes in:\n%s", out)
	}
	if strings.Contains(out, "hunter2") || strings.Contains(out, "sk-ant-") {
		t.Errorf("doctor printed a secret:\n%s", out)
	}
	reqs := target.requests()
	if len(reqs) == 0 {
		t.Fatal("doctor reached nothing")
	}
	for _, r := range reqs {
		if r.Method != http.MethodHead || r.Header.Get("X-Api-Key") != "" || r.Header.Get("Authorization") != "" ||
			!strings.HasPrefix(r.Header.Get("User-Agent"), "crs-doctor/") {
			t.Errorf("probe %s %s with headers %v: want a bare HEAD", r.Method, r.URL, r.Header)
		}
	}
}

// fakeURL adapts a fixed URL to addAccount.
type fakeURL string

func (u fakeURL) URL() string { return string(u) }

// TestDoctorHealthy: a sound DATA_DIR with a running server and a correct
// clock passes, exit 0; --offline sends nothing.
func TestDoctorHealthy(t *testing.T) {
	isolate(t)
	target := newProbeTarget(t)
	pointUpstreamsAt(t, target.URL)
	dir := newDataDir(t)
	addAccount(t, dir, fakeURL(target.URL), "good", 1)
	createKey(t, dir, "alice")
	s := startRelay(t, dir, nil)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.url, "http://"))
	t.Setenv("PORT", port)

	code, out, errs := doctorRun(t, "--data-dir", dir)
	if code != 0 || errs != "" || !strings.HasSuffix(out, "no problems found\n") {
		t.Fatalf("doctor: exit %d, stderr %q\n%s", code, errs, out)
	}
	for _, c := range []struct{ level, what, text string }{
		{"ok", "store", "1 key, 1 account"},
		{"ok", "server", "crs serve runs (pid"},
		{"ok", "clock", "within 2m0s of " + target.URL},
	} {
		if !hasLine(out, c.level, c.what, c.text) {
			t.Errorf("no %s line for %s saying %q in:\n%s", c.level, c.what, c.text, out)
		}
	}

	before := len(target.requests())
	code, out, _ = doctorRun(t, "--data-dir", dir, "--offline")
	if code != 0 || !hasLine(out, "note", "network", "--offline") || !hasLine(out, "ok", `account "good"`, "credential opens") {
		t.Errorf("doctor --offline: exit %d\n%s", code, out)
	}
	if n := len(target.requests()); n != before {
		t.Errorf("doctor --offline sent %d requests", n-before)
	}

	// The server runs on another port than doctor was told: the health
	// check fails and says so.
	t.Setenv("PORT", strings.Split(closedAddr(t), ":")[1])
	code, out, _ = doctorRun(t, "--data-dir", dir, "--offline")
	if code != 1 || !hasLine(out, "PROBLEM", "server", "unhealthy") {
		t.Errorf("doctor with the wrong PORT: exit %d\n%s", code, out)
	}
}

// TestDoctorConfigAndKeyProblems covers what breaks before the network:
// a bad variable, a missing DATA_DIR, an encryption key that does not
// open the stored credentials.
func TestDoctorConfigAndKeyProblems(t *testing.T) {
	isolate(t)
	target := newProbeTarget(t)
	pointUpstreamsAt(t, target.URL)

	t.Setenv("PORT", "eighty")
	code, out, _ := doctorRun(t, "--data-dir", t.TempDir(), "--offline")
	if code != 1 || !hasLine(out, "PROBLEM", "config", "PORT") {
		t.Errorf("bad PORT: exit %d\n%s", code, out)
	}
	t.Setenv("PORT", "")

	missing := filepath.Join(t.TempDir(), "nope")
	code, out, _ = doctorRun(t, "--data-dir", missing, "--offline")
	if code != 1 || !hasLine(out, "PROBLEM", "DATA_DIR", "does not exist") {
		t.Errorf("missing DATA_DIR: exit %d\n%s", code, out)
	}

	// A new, empty DATA_DIR is not a problem: serve fills it.
	code, out, _ = doctorRun(t, "--data-dir", t.TempDir(), "--offline")
	if code != 0 || !hasLine(out, "note", "store", "no database yet") || !hasLine(out, "note", "encryption key", "generates one") {
		t.Errorf("empty DATA_DIR: exit %d\n%s", code, out)
	}

	dir := newDataDir(t)
	addAccount(t, dir, fakeURL(target.URL), "sealed", 1, "--proxy", "http://proxy.invalid:8080")
	t.Setenv("ENCRYPTION_KEY", strings.Repeat("a different key ", 3))
	code, out, _ = doctorRun(t, "--data-dir", dir, "--offline")
	if code != 1 || !hasLine(out, "PROBLEM", `account "sealed"`, "does not open with this ENCRYPTION_KEY") {
		t.Errorf("wrong ENCRYPTION_KEY: exit %d\n%s", code, out)
	}
	fails(t, 2, "unexpected argument", "doctor", "now")
}

func TestClockSkewWords(t *testing.T) {
	for _, c := range []struct {
		skew     time.Duration
		problem  bool
		contains string
	}{
		{90 * time.Second, false, "within 2m0s of up"},
		{-90 * time.Second, false, "within"},
		{3 * time.Minute, true, "3m0s behind up's"},
		{-3 * time.Minute, true, "3m0s ahead of up's"},
	} {
		var b strings.Builder
		d := &doctor{out: &b}
		d.judgeSkew(c.skew, "up")
		if (d.problems > 0) != c.problem || !strings.Contains(b.String(), c.contains) {
			t.Errorf("skew %s: problems %d, %q", c.skew, d.problems, b.String())
		}
	}
}

// TestDoctorSharedMode: with REDIS_URL set, doctor checks the shared store
// instead of DATA_DIR's file: that Redis answers, keeps what it is told
// (append-only file, no eviction), and seals with this ENCRYPTION_KEY.
func TestDoctorSharedMode(t *testing.T) {
	isolate(t)
	target := newProbeTarget(t)
	pointUpstreamsAt(t, target.URL)
	t.Setenv("ENCRYPTION_KEY", "doctor-shared-encryption-key-0123456789")
	t.Setenv("JWT_SECRET", "doctor-shared-jwt-secret-0123456789abcdef")

	durable := redistest.Server(t, "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction")
	t.Setenv("REDIS_URL", "redis://"+durable)
	dir := t.TempDir()
	addAccount(t, dir, fakeURL(target.URL), "shared-acct", 1)
	createKey(t, dir, "alice")
	// A new instance's DATA_DIR need not exist: the state is in Redis.
	code, out, _ := doctorRun(t, "--data-dir", filepath.Join(t.TempDir(), "new"), "--offline")
	if code != 0 || !hasLine(out, "ok", "store", "shared, Redis at "+durable) || !hasLine(out, "ok", "store", "1 key, 1 account") ||
		!hasLine(out, "ok", "redis persistence", "append-only file on") || !hasLine(out, "ok", `account "shared-acct"`, "credential opens") {
		t.Fatalf("doctor on a durable shared store: exit %d\n%s", code, out)
	}

	// Another key than the one the store was sealed with is refused.
	t.Setenv("ENCRYPTION_KEY", "another-shared-encryption-key-0123456789")
	code, out, _ = doctorRun(t, "--data-dir", dir, "--offline")
	if code != 1 || !hasLine(out, "PROBLEM", "encryption key", "not the key this shared store") {
		t.Errorf("doctor with another ENCRYPTION_KEY: exit %d\n%s", code, out)
	}
	t.Setenv("ENCRYPTION_KEY", "doctor-shared-encryption-key-0123456789")

	// A Redis that would lose writes on a crash, and may evict keys.
	forgetful := redistest.Server(t, "--appendonly", "no", "--maxmemory-policy", "allkeys-lru")
	t.Setenv("REDIS_URL", "redis://"+forgetful)
	code, out, _ = doctorRun(t, "--data-dir", dir, "--offline")
	if code != 1 || !hasLine(out, "PROBLEM", "redis persistence", "appendonly is no") ||
		!hasLine(out, "PROBLEM", "redis persistence", "maxmemory-policy is allkeys-lru") {
		t.Errorf("doctor on a forgetful Redis: exit %d\n%s", code, out)
	}

	// Nothing listens.
	t.Setenv("REDIS_URL", "redis://"+closedAddr(t))
	code, out, _ = doctorRun(t, "--data-dir", dir, "--offline")
	if code != 1 || !hasLine(out, "PROBLEM", "store", "Redis at") {
		t.Errorf("doctor with Redis down: exit %d\n%s", code, out)
	}
}

// TestBackupRefusedInSharedMode: backup and restore copy the embedded file;
// with the shared store configured they say so instead of copying a crs.db
// no server uses.
func TestBackupRefusedInSharedMode(t *testing.T) {
	isolate(t)
	t.Setenv("REDIS_URL", "redis://127.0.0.1:1")
	fails(t, 1, "embedded store only", "backup", filepath.Join(t.TempDir(), "b.db"), "--data-dir", t.TempDir())
	fails(t, 1, "embedded store only", "restore", filepath.Join(t.TempDir(), "b.db"), "--data-dir", t.TempDir())
}
