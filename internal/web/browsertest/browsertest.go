// Package browsertest drives a real browser from Go tests: Debian's headless
// Chromium through chromedp, started the way package shots starts it.
//
// A page test reads like what a user does:
//
//	b := browsertest.New(t)
//	b.Open(srv.URL + "/web/login")
//	b.Fill(`input[name="username"]`, "admin")
//	b.Fill(`input[name="password"]`, "secret")
//	if status := b.Submit("form"); status != http.StatusOK { ... }
//	if got := b.Text("h1"); got != "Dashboard" { ... }
//
// Every helper runs from the test's goroutine, is bounded by ActionTimeout,
// and ends the test with t.Fatal when the browser fails; selectors are CSS.
// Helpers act through chromedp's own evaluation and the DevTools protocol,
// never by adding a script to the page, so they work on pages whose Content
// Security Policy allows no inline script.
//
// The console is watched from the start: an uncaught exception, a
// console.error call or a Content Security Policy violation fails the test
// when it ends (shots.IsPageError is the rule). A test that provokes an error
// on purpose takes it with TakeErrors and asserts on it.
//
// Without Chromium the tests skip, except with CI=true, where they fail:
// .ci/run installs Chromium, so CI always runs them.
package browsertest

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/crs-relay/crs/internal/web/shots"
)

// ActionTimeout bounds every helper: a navigation with its load, a wait, a
// form post. It is long enough for a page under the race detector on a
// loaded two-core machine, and short enough that a hung wait fails the test
// instead of the package's test timeout.
const ActionTimeout = 30 * time.Second

// Browser is one headless Chromium with one tab, for one test.
type Browser struct {
	t       testing.TB
	tab     context.Context
	console *shots.Console
}

// New starts Chromium with a new profile in t.TempDir() and a 1280×800
// viewport, and stops it when the test ends, after checking the console for
// page errors. It skips the test when Chromium is missing, unless CI=true.
func New(t testing.TB) *Browser {
	t.Helper()
	if _, err := os.Stat(shots.DefaultExecPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("browsertest: CI=true but %s is missing; .ci/run installs it", shots.DefaultExecPath)
		}
		t.Skipf("browsertest: %s is missing (apt-get install chromium)", shots.DefaultExecPath)
	}

	// chromedp may report a protocol problem from its own goroutines; once
	// the test has ended, t.Logf would panic, so a closed flag guards it.
	var logMu sync.Mutex
	logOpen := true
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		if logOpen {
			t.Logf("chromedp: "+format, args...)
		}
	}

	// The profile directory comes first so that its removal, a cleanup of
	// t.TempDir, runs after the browser has stopped.
	profile := t.TempDir()
	tab, stop, err := shots.Launch(context.Background(), shots.LaunchOptions{
		UserDataDir: profile,
		Logf:        logf,
	})
	if err != nil {
		t.Fatalf("browsertest: %v", err)
	}
	b := &Browser{t: t, tab: tab, console: shots.WatchConsole(tab)}
	t.Cleanup(func() {
		b.checkConsole()
		stop()
		logMu.Lock()
		logOpen = false
		logMu.Unlock()
	})
	if err := b.do(chromedp.EmulateViewport(shots.DefaultWidth, shots.DefaultHeight)); err != nil {
		t.Fatalf("browsertest: setting the viewport: %v", err)
	}
	return b
}

// checkConsole fails the test for each page error left in the console.
func (b *Browser) checkConsole() {
	ctx, cancel := context.WithTimeout(b.tab, ActionTimeout)
	defer cancel()
	if err := b.console.Sync(ctx); err != nil {
		b.t.Errorf("browsertest: %v", err)
	}
	if errs := b.console.TakeErrors(); len(errs) > 0 {
		b.t.Errorf("browsertest: the page wrote errors to the console:%s", shots.FormatMessages(errs))
	}
}

// Context returns the tab's context, for chromedp actions the helpers do not
// cover. It has no deadline: derive one with context.WithTimeout.
func (b *Browser) Context() context.Context { return b.tab }

func (b *Browser) do(actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.tab, ActionTimeout)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

func run[T any](b *Browser, action chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(b.tab, ActionTimeout)
	defer cancel()
	return chromedp.Run(ctx, action)
}

func (b *Browser) fatalf(format string, args ...any) {
	b.t.Helper()
	b.t.Fatalf("browsertest: "+format, args...)
}

// Open navigates to url, waits for the page to load, and returns the HTTP
// status of the document. An error status is returned, not a failure: tests
// of error pages open them on purpose.
func (b *Browser) Open(url string) int {
	b.t.Helper()
	resp, err := run(b, chromedp.NavigateResponse(url))
	if err != nil {
		b.fatalf("opening %s: %v", url, err)
	}
	return int(resp.Status)
}

// Location returns the URL of the page.
func (b *Browser) Location() string {
	b.t.Helper()
	loc, err := run(b, chromedp.Location())
	if err != nil {
		b.fatalf("reading the location: %v", err)
	}
	return loc
}

// Click clicks the first element matching sel, once it is visible. It does
// not wait for what the click causes; use ClickAndWait for a link or button
// that loads a page, or WaitVisible for a change in this page.
func (b *Browser) Click(sel string) {
	b.t.Helper()
	if err := b.do(chromedp.Click(chromedp.CSS(sel))); err != nil {
		b.fatalf("clicking %s: %v", sel, err)
	}
}

// ClickAndWait clicks the first element matching sel and waits for the page
// it loads, returning that document's HTTP status.
func (b *Browser) ClickAndWait(sel string) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.tab, ActionTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		b.fatalf("clicking %s and waiting for the next page: %v", sel, err)
	}
	return int(resp.Status)
}

// Fill replaces the value of the input or textarea matching sel with text,
// typed key by key so that the page's input listeners see it as a user's.
func (b *Browser) Fill(sel, text string) {
	b.t.Helper()
	if err := b.do(shots.Fill(sel, text)); err != nil {
		b.fatalf("filling %s: %v", sel, err)
	}
}

// Submit submits the form matching sel (or the form of the element matching
// sel) as its submit button would, running its validation and submit
// listeners, and waits for the page the post loads, returning that
// document's HTTP status. The form posts its hidden fields, such as the CSRF
// token, as a browser does.
func (b *Browser) Submit(sel string) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.tab, ActionTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx,
		chromedp.WaitReady(chromedp.CSS(sel)),
		shots.RequestSubmit(sel),
	)
	if err != nil {
		b.fatalf("submitting %s: %v", sel, err)
	}
	return int(resp.Status)
}

// Text returns the rendered text (innerText) of the first element matching
// sel, waiting for it to exist.
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	text, err := run(b, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.fatalf("reading the text of %s: %v", sel, err)
	}
	return text
}

// Value returns the current value of the input, select or textarea matching
// sel, waiting for it to exist.
func (b *Browser) Value(sel string) string {
	b.t.Helper()
	v, err := run(b, chromedp.Value(chromedp.CSS(sel)))
	if err != nil {
		b.fatalf("reading the value of %s: %v", sel, err)
	}
	return v
}

// Count returns how many elements match sel now, without waiting; it is how
// a test asserts that something is absent.
func (b *Browser) Count(sel string) int {
	b.t.Helper()
	var n int
	b.Eval("document.querySelectorAll("+jsString(sel)+").length", &n)
	return n
}

// WaitVisible waits until the first element matching sel is visible.
func (b *Browser) WaitVisible(sel string) {
	b.t.Helper()
	if err := b.do(chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
		b.fatalf("waiting for %s to be visible: %v", sel, err)
	}
}

// Eval evaluates the JavaScript expression js in the page through chromedp
// (the page's Content Security Policy does not apply to it), awaiting it when
// it is a promise, and decodes its JSON value into out, which may be nil to
// ignore it. An exception fails the test.
func (b *Browser) Eval(js string, out any) {
	b.t.Helper()
	raw, err := run(b, chromedp.Evaluate[[]byte](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.fatalf("evaluating %q: %v", js, err)
	}
	if out == nil {
		return
	}
	if raw == nil {
		b.fatalf("evaluating %q: the result is undefined", js)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		b.fatalf("evaluating %q: decoding %s: %v", js, raw, err)
	}
}

// Screenshot writes a PNG of the whole page, beyond the viewport, to path,
// creating its directory.
func (b *Browser) Screenshot(path string) {
	b.t.Helper()
	png, err := run(b, chromedp.FullScreenshot(100))
	if err != nil {
		b.fatalf("taking a screenshot: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.fatalf("%v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.fatalf("%v", err)
	}
}

// SetCookie stores c in the browser as if the server at url had set it. An
// empty Path means "/"; Domain, Secure, HttpOnly, SameSite and Expires are
// kept when set (no Expires makes a session cookie).
func (b *Browser) SetCookie(url string, c *http.Cookie) {
	b.t.Helper()
	p := network.SetCookieParams{
		Name: c.Name, Value: c.Value, URL: url, Domain: c.Domain, Path: c.Path,
		Secure: &c.Secure, HTTPOnly: &c.HttpOnly,
	}
	if p.Path == "" {
		p.Path = "/"
	}
	switch c.SameSite {
	case http.SameSiteLaxMode:
		p.SameSite = network.CookieSameSiteLax
	case http.SameSiteStrictMode:
		p.SameSite = network.CookieSameSiteStrict
	case http.SameSiteNoneMode:
		p.SameSite = network.CookieSameSiteNone
	}
	if !c.Expires.IsZero() {
		p.Expires = cdp.TimeSinceEpoch(float64(c.Expires.UnixNano()) / 1e9)
	}
	err := b.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, network.SetCookie, p)
		return err
	}))
	if err != nil {
		b.fatalf("setting cookie %s: %v", c.Name, err)
	}
}

// Cookies returns the cookies the browser would send to the page's URL,
// HttpOnly ones included, with their attributes: a test asserts on a
// session cookie's HttpOnly, Secure and SameSite here.
func (b *Browser) Cookies() []*http.Cookie {
	b.t.Helper()
	res, err := run(b, func(ctx context.Context, t *chromedp.Target) (network.GetCookiesResult, error) {
		return cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{})
	})
	if err != nil {
		b.fatalf("reading cookies: %v", err)
	}
	cookies := make([]*http.Cookie, 0, len(res.Cookies))
	for _, c := range res.Cookies {
		hc := &http.Cookie{
			Name: c.Name, Value: c.Value, Domain: c.Domain, Path: c.Path,
			Secure: c.Secure, HttpOnly: c.HTTPOnly,
		}
		switch c.SameSite {
		case network.CookieSameSiteLax:
			hc.SameSite = http.SameSiteLaxMode
		case network.CookieSameSiteStrict:
			hc.SameSite = http.SameSiteStrictMode
		case network.CookieSameSiteNone:
			hc.SameSite = http.SameSiteNoneMode
		}
		if !c.Session && c.Expires > 0 {
			sec, frac := math.Modf(c.Expires)
			hc.Expires = time.Unix(int64(sec), int64(frac*1e9))
		}
		cookies = append(cookies, hc)
	}
	return cookies
}

// Cookie returns the cookie named name that the browser would send to the
// page's URL, or nil.
func (b *Browser) Cookie(name string) *http.Cookie {
	b.t.Helper()
	for _, c := range b.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// TakeErrors returns the page errors written to the console so far
// (exceptions, console.error calls, Content Security Policy violations; see
// shots.IsPageError) and forgets them, so that they do not fail the test;
// the other messages stay for Console.
// Every message written before the call is in: TakeErrors waits for the
// console to catch up.
func (b *Browser) TakeErrors() []chromedp.ConsoleMessage {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.tab, ActionTimeout)
	defer cancel()
	if err := b.console.Sync(ctx); err != nil {
		b.fatalf("%v", err)
	}
	return b.console.TakeErrors()
}

// Console returns every message written to the console so far, oldest
// first, including failed loads (which are not page errors) and less the
// errors TakeErrors took.
func (b *Browser) Console() []chromedp.ConsoleMessage {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.tab, ActionTimeout)
	defer cancel()
	if err := b.console.Sync(ctx); err != nil {
		b.fatalf("%v", err)
	}
	return b.console.Messages()
}

// ErrorText joins the texts of console messages, one per line, for a test's
// assertion or failure message.
func ErrorText(msgs []chromedp.ConsoleMessage) string {
	return shots.FormatMessages(msgs)
}

func jsString(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}
