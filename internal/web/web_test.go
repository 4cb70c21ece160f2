package web

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/keystats"
	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/sqlite"
)

const (
	testUser     = "root"
	testPassword = "correct horse battery"
	testSecret   = "test-console-secret-0123456789abcdef0123"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a console on a real SQLite store, served on loopback, with a
// browser-like client (cookie jar, no automatic redirects).
type env struct {
	t     *testing.T
	clock *clock
	st    *sqlite.Store
	svc   *admin.Service
	con   *Console
	srv   *httptest.Server
	jar   http.CookieJar
	hc    *http.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	clk := &clock{t: time.Now().UTC()}
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{Location: time.UTC, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	box, err := secret.NewBox(strings.Repeat("k", 40))
	if err != nil {
		t.Fatal(err)
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err := st.SetAdmin(ctx, store.Admin{Username: testUser, PasswordHash: string(hash), UpdatedAt: clk.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	svc := &admin.Service{Store: st, Box: box, Now: clk.Now}
	api := admin.NewAPI(svc, admin.APIOptions{JWTSecret: testSecret, PasswordCost: bcrypt.MinCost})
	stats := keystats.New(keystats.Options{Keys: st, Usage: st, Location: time.UTC, MinDuration: time.Millisecond, Now: clk.Now})
	con := New(Options{API: api, Store: st, Stats: stats, Secret: testSecret, Location: time.UTC, Version: "test", Now: clk.Now})
	srv := httptest.NewServer(con)
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	e := &env{t: t, clock: clk, st: st, svc: svc, con: con, srv: srv, jar: jar}
	e.hc = &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return e
}

// newClient is another browser on the same console.
func newClient(e *env) *env {
	jar, _ := cookiejar.New(nil)
	c := *e
	c.jar = jar
	c.hc = &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &c
}

// get fetches path and returns the status, the Location header and the body.
func (e *env) get(path string) (int, string, string) {
	e.t.Helper()
	resp, err := e.hc.Get(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

func (e *env) post(path string, form url.Values) (int, string, string) {
	e.t.Helper()
	resp, err := e.hc.PostForm(e.srv.URL+path, form)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// csrf is the token of the forms on page path.
func (e *env) csrf(path string) string {
	e.t.Helper()
	_, _, body := e.get(path)
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		e.t.Fatalf("no csrf field on %s:\n%.500s", path, body)
	}
	return m[1]
}

// login signs in through the form, as a browser does.
func (e *env) login() {
	e.t.Helper()
	tok := e.csrf("/web/login")
	status, loc, body := e.post("/web/login", url.Values{"username": {testUser}, "password": {testPassword}, "csrf": {tok}, "next": {"/web"}})
	if status != http.StatusSeeOther || loc != "/web" {
		e.t.Fatalf("login: %d %q %.300s", status, loc, body)
	}
}

func TestSignedOutGoesToLogin(t *testing.T) {
	e := newEnv(t)
	status, loc, _ := e.get("/web")
	if status != http.StatusSeeOther || !strings.HasPrefix(loc, "/web/login?next=") {
		t.Fatalf("GET /web signed out: %d %q", status, loc)
	}
	status, _, body := e.get("/web/login")
	if status != 200 || !strings.Contains(body, `name="username"`) || !strings.Contains(body, `name="password"`) {
		t.Fatalf("login page: %d %.300s", status, body)
	}
	// GET / sends key holders to their page.
	status, loc, _ = e.get("/")
	if status != http.StatusSeeOther || loc != "/web/stats" {
		t.Errorf("GET /: %d %q", status, loc)
	}
}

func TestLoginLogout(t *testing.T) {
	e := newEnv(t)
	tok := e.csrf("/web/login")
	status, _, body := e.post("/web/login", url.Values{"username": {testUser}, "password": {"wrong"}, "csrf": {tok}})
	if status != http.StatusUnauthorized || !strings.Contains(body, "Wrong username or password") {
		t.Fatalf("bad password: %d %.300s", status, body)
	}
	e.login()
	status, _, body = e.get("/web")
	if status != 200 || !strings.Contains(body, `id="today-requests"`) {
		t.Fatalf("dashboard after login: %d %.300s", status, body)
	}
	// The session cookie is HttpOnly and SameSite=Strict.
	fresh := newClient(e)
	_, _, page := fresh.get("/web/login")
	resp, _ := fresh.hc.PostForm(e.srv.URL+"/web/login", url.Values{"username": {testUser}, "password": {testPassword}, "csrf": {csrfField.FindStringSubmatch(page)[1]}})
	resp.Body.Close()
	sawSession := false
	for _, ck := range resp.Cookies() {
		sawSession = sawSession || ck.Name == cookieSession
		if ck.Name == cookieSession && (!ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode) {
			t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict", ck)
		}
	}
	if !sawSession {
		t.Error("login set no session cookie")
	}

	tok = e.csrf("/web")
	status, loc, _ := e.post("/web/logout", url.Values{"csrf": {tok}})
	if status != http.StatusSeeOther || loc != "/web/login" {
		t.Fatalf("logout: %d %q", status, loc)
	}
	if status, loc, _ := e.get("/web"); status != http.StatusSeeOther || !strings.HasPrefix(loc, "/web/login") {
		t.Errorf("after logout GET /web: %d %q", status, loc)
	}
	_, _, body = e.get("/web/login")
	if !strings.Contains(body, "Signed out.") {
		t.Error("no signed-out notice after logout")
	}
}

// TestCSRF: a write without the form's token is refused, signed in or not,
// and nothing happens.
func TestCSRF(t *testing.T) {
	e := newEnv(t)
	// Sign-in without the double-submit token.
	status, _, _ := e.post("/web/login", url.Values{"username": {testUser}, "password": {testPassword}})
	if status != http.StatusForbidden {
		t.Errorf("login without csrf: %d, want 403", status)
	}
	e.login()
	// A public form's double-submit token is no admin token.
	for _, tok := range []string{"", "00000000000000000000000000000000", e.csrf("/web/stats")} {
		status, _, _ := e.post("/web/logout", url.Values{"csrf": {tok}})
		if status != http.StatusForbidden {
			t.Errorf("logout with csrf %q: %d, want 403", tok, status)
		}
	}
	if status, _, _ := e.get("/web"); status != 200 {
		t.Errorf("a refused logout ended the session: %d", status)
	}
	// The header form (scripts' fetch) works.
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/web/logout", nil)
	req.Header.Set("X-CSRF-Token", e.csrf("/web"))
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("logout with the header token: %d", resp.StatusCode)
	}
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t)
	e.login()
	e.clock.Advance(DefaultIdleTimeout - time.Minute)
	if status, _, _ := e.get("/web"); status != 200 {
		t.Fatalf("active session refused: %d", status)
	}
	// Each request restarts the idle clock.
	e.clock.Advance(DefaultIdleTimeout - time.Minute)
	if status, _, _ := e.get("/web"); status != 200 {
		t.Fatalf("session refused within the idle timeout of its last request: %d", status)
	}
	e.clock.Advance(DefaultIdleTimeout)
	status, loc, _ := e.get("/web")
	if status != http.StatusSeeOther || !strings.HasPrefix(loc, "/web/login") {
		t.Fatalf("idle session: %d %q", status, loc)
	}
	_, _, body := e.get("/web/login")
	if !strings.Contains(body, "without activity") {
		t.Error("no idle notice")
	}
}

func TestChangePassword(t *testing.T) {
	e := newEnv(t)
	e.login()
	tok := e.csrf("/web/password")
	status, _, body := e.post("/web/password", url.Values{"csrf": {tok}, "current_password": {testPassword}, "new_password": {"a new password"}, "confirm_password": {"another"}})
	if status != http.StatusBadRequest || !strings.Contains(body, "differ") {
		t.Fatalf("mismatch: %d", status)
	}
	status, _, body = e.post("/web/password", url.Values{"csrf": {tok}, "current_password": {"nope"}, "new_password": {"a new password"}, "confirm_password": {"a new password"}})
	if status != http.StatusBadRequest || !strings.Contains(body, "current_password") {
		t.Fatalf("wrong current password: %d %.300s", status, body)
	}
	status, loc, _ := e.post("/web/password", url.Values{"csrf": {tok}, "current_password": {testPassword}, "new_password": {"a new password"}, "confirm_password": {"a new password"}})
	if status != http.StatusSeeOther || loc != "/web" {
		t.Fatalf("change: %d %q", status, loc)
	}
	// Still signed in (a new session), and the new password works.
	if status, _, body := e.get("/web"); status != 200 || !strings.Contains(body, "Password changed") {
		t.Fatalf("after the change: %d", status)
	}
	adm, _ := e.st.GetAdmin(context.Background())
	if bcrypt.CompareHashAndPassword([]byte(adm.PasswordHash), []byte("a new password")) != nil {
		t.Error("the stored password is not the new one")
	}
}

func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/web/login", "/web/static/app.css", "/web/nope"} {
		resp, err := http.Get(e.srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", p, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: headers %v", p, resp.Header)
		}
	}
	// No page carries inline script or inline style attributes the CSP would block.
	e.login()
	for _, p := range []string{"/web", "/web/login", "/web/password"} {
		_, _, body := e.get(p)
		if regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`).MatchString(body) || strings.Contains(body, " style=") || strings.Contains(body, "onclick=") {
			t.Errorf("%s has inline script or style", p)
		}
	}
}

func TestLanguageAndTheme(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/web/login", nil)
	req.Header.Set("Accept-Language", "zh-TW,zh;q=0.9,en;q=0.8")
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `lang="zh-CN"`) || !strings.Contains(string(b), "登录") {
		t.Errorf("Accept-Language zh: not Chinese")
	}
	// The switch sets a cookie and goes back to the page.
	status, loc, _ := e.get("/web/prefs?lang=zh-CN&back=/web/login")
	if status != http.StatusSeeOther || loc != "/web/login" {
		t.Fatalf("prefs: %d %q", status, loc)
	}
	_, _, body := e.get("/web/login")
	if !strings.Contains(body, "用户名") {
		t.Error("lang cookie not applied")
	}
	e.get("/web/prefs?theme=dark&back=/web/login")
	_, _, body = e.get("/web/login")
	if !strings.Contains(body, `data-theme="dark"`) {
		t.Error("theme cookie not applied")
	}
	// back must stay on the console.
	for _, bad := range []string{"https://evil.example/", "//evil.example/x", "/api/v1/messages"} {
		_, loc, _ := e.get("/web/prefs?lang=en&back=" + url.QueryEscape(bad))
		if loc != "/web" {
			t.Errorf("back=%q redirected to %q", bad, loc)
		}
	}
}

// TestEveryMessageHasBothLanguages: every message of the catalog has English
// and Chinese text, and every key a template or the Go code names exists.
func TestEveryMessageHasBothLanguages(t *testing.T) {
	for k, m := range catalog {
		if strings.TrimSpace(m.en) == "" || strings.TrimSpace(m.zh) == "" {
			t.Errorf("message %q lacks a language: %+v", k, m)
		}
		if strings.Count(m.en, "%") != strings.Count(m.zh, "%") {
			t.Errorf("message %q: the languages take different arguments: %q / %q", k, m.en, m.zh)
		}
	}
	used := map[string]bool{}
	tmplRE := regexp.MustCompile(`\.T "([a-z0-9_.]+)"`)
	goRE := regexp.MustCompile(`(?:\.T\(|flash\(w, |msgKey\()"([a-z0-9_.]*[a-z0-9_])"[,)]`)
	entries, _ := assets.ReadDir("templates")
	for _, en := range entries {
		b, _ := assets.ReadFile("templates/" + en.Name())
		for _, m := range tmplRE.FindAllStringSubmatch(string(b), -1) {
			used[m[1]] = true
		}
	}
	goFiles, _ := filepath.Glob("*.go")
	for _, f := range goFiles {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, _ := readFile(f)
		for _, m := range goRE.FindAllStringSubmatch(b, -1) {
			used[m[1]] = true
		}
	}
	if len(used) < 20 {
		t.Fatalf("found only %d message uses; the scan is broken", len(used))
	}
	for k := range used {
		if _, ok := catalog[k]; !ok {
			t.Errorf("message %q is used but not in the catalog", k)
		}
	}
}

// TestKeyHolderPage: a key holder pastes the key and sees its name, usage
// and setup snippets with this server's address; an unknown key is told
// so; the form needs its CSRF token.
func TestKeyHolderPage(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	kv, key, err := e.svc.CreateKey(ctx, admin.KeyInput{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.st.InsertUsage(ctx, []store.UsageRecord{{RequestID: "r1", KeyID: kv.ID, AccountID: "a1", Model: "claude-sonnet-4-5",
		Input: 1200, Output: 340, CostPico: 5_000_000_000, RatedCostPico: 5_000_000_000, Status: 200, CreatedAt: e.clock.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	tok := e.csrf("/web/stats")
	status, _, body := e.post("/web/stats", url.Values{"csrf": {tok}, "key": {key}})
	if status != 200 || !strings.Contains(body, `id="stats-name">alice<`) || !strings.Contains(body, ">1,200<") {
		t.Fatalf("lookup: %d\n%.2000s", status, body)
	}
	if !strings.Contains(body, "ANTHROPIC_BASE_URL="+e.srv.URL+"/api") || !strings.Contains(body, `base_url = "`+e.srv.URL+`/openai"`) ||
		!strings.Contains(body, "GOOGLE_GEMINI_BASE_URL="+e.srv.URL+"/gemini") {
		t.Error("setup snippets lack this server's address")
	}
	status, _, body = e.post("/web/stats", url.Values{"csrf": {tok}, "key": {"cr_" + strings.Repeat("0", 64)}})
	if status != http.StatusUnauthorized || !strings.Contains(body, "No such key") {
		t.Errorf("unknown key: %d", status)
	}
	if status, _, _ := e.post("/web/stats", url.Values{"key": {key}}); status != http.StatusForbidden {
		t.Errorf("lookup without csrf: %d, want 403", status)
	}
}
