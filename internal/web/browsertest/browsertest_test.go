package browsertest

import (
	"bytes"
	"fmt"
	"html"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
)

// The test site serves its pages under a Content Security Policy that allows
// no inline script or style, as the console does; its behaviour comes from
// /app.js.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'"

const appJS = `document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("status");
  if (status) status.textContent = "script ran";
  const reveal = document.getElementById("reveal");
  if (reveal) reveal.addEventListener("click", () => { document.getElementById("hidden").hidden = false; });
  const form = document.querySelector("form");
  if (form) form.addEventListener("submit", () => { document.getElementById("touched").value = "yes"; });
});`

type site struct {
	mu      sync.Mutex
	posts   []string // "csrf-ok note touched" or "csrf-bad"
	srv     *httptest.Server
	pageCSS string
}

func newSite(t *testing.T) *site {
	s := &site{}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *site) url(path string) string { return s.srv.URL + path }

func page(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Security-Policy", csp)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<!doctype html><html><head><meta charset="utf-8"><title>t</title>
<link rel="stylesheet" href="/app.css"><script src="/app.js" defer></script></head><body>%s</body></html>`, body)
}

func (s *site) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/app.js":
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprint(w, appJS)
	case "/throws.js":
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprint(w, `throw new Error("kaboom");`)
	case "/console-error.js":
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprint(w, `console.error("console says no");`)
	case "/app.css":
		w.Header().Set("Content-Type", "text/css")
		fmt.Fprint(w, `body { margin: 0; font: 16px sans-serif; } .tall { height: 1500px; background: #204080; }`)
	case "/favicon.ico":
		w.WriteHeader(http.StatusNoContent)
	case "/":
		page(w, `<p id="status">no script</p><button id="reveal">show</button><p id="hidden" hidden>now you see me</p>
<ul><li class="item">a</li><li class="item">b</li><li class="item">c</li></ul><a id="next" href="/cookies">next</a>`)
	case "/tall":
		page(w, `<div class="tall">tall</div>`)
	case "/cookies":
		var names []string
		for _, c := range r.Cookies() {
			names = append(names, c.Name+"="+c.Value)
		}
		page(w, `<p id="cookies">`+html.EscapeString(strings.Join(names, ";"))+`</p>`)
	case "/form":
		if r.Method == http.MethodPost {
			s.post(w, r)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "csrf", Value: "tok-123", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		page(w, `<form method="post" action="/form"><input type="hidden" name="csrf" value="tok-123">
<input type="hidden" name="touched" id="touched" value="no">
<input name="note" value="draft"><button type="submit">save</button></form>`)
	case "/inline":
		page(w, `<script>document.title = "inline ran";</script><p>inline</p>`)
	case "/throws":
		page(w, `<script src="/throws.js"></script><p>throws</p>`)
	case "/console-error":
		page(w, `<script src="/console-error.js"></script><p>console error</p>`)
	case "/missing-image":
		page(w, `<img src="/nope.png" alt=""><p>missing image</p>`)
	default:
		http.NotFound(w, r)
	}
}

func (s *site) post(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie("csrf")
	if err != nil || r.PostFormValue("csrf") != c.Value {
		s.mu.Lock()
		s.posts = append(s.posts, "csrf-bad")
		s.mu.Unlock()
		http.Error(w, "bad csrf", http.StatusForbidden)
		return
	}
	note := r.PostFormValue("note")
	s.mu.Lock()
	s.posts = append(s.posts, "csrf-ok "+note+" "+r.PostFormValue("touched"))
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "session", Value: "s-1", Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	page(w, `<p id="saved">`+html.EscapeString(note)+`</p>`)
}

func (s *site) takePosts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.posts
	s.posts = nil
	return p
}

func TestNavigateClickAndScriptUnderStrictCSP(t *testing.T) {
	s := newSite(t)
	b := New(t)

	if status := b.Open(s.url("/")); status != http.StatusOK {
		t.Fatalf("Open = %d", status)
	}
	// The page's external script ran under the policy.
	if got := b.Text("#status"); got != "script ran" {
		t.Errorf("#status = %q, want the external script's text", got)
	}
	if n := b.Count("#hidden:not([hidden])"); n != 0 {
		t.Fatalf("#hidden is shown before the click")
	}
	b.Click("#reveal")
	b.WaitVisible("#hidden")
	if got := b.Text("#hidden"); got != "now you see me" {
		t.Errorf("#hidden = %q", got)
	}
	if n := b.Count(".item"); n != 3 {
		t.Errorf("Count(.item) = %d, want 3", n)
	}
	if n := b.Count("#nothing"); n != 0 {
		t.Errorf("Count(#nothing) = %d, want 0", n)
	}

	var sum int
	b.Eval("1 + 2", &sum)
	var items []string
	b.Eval(`Promise.resolve([...document.querySelectorAll(".item")].map(e => e.textContent))`, &items)
	if sum != 3 || strings.Join(items, ",") != "a,b,c" {
		t.Errorf("Eval gave %d and %q", sum, items)
	}

	if status := b.ClickAndWait("#next"); status != http.StatusOK {
		t.Errorf("ClickAndWait = %d", status)
	}
	if loc := b.Location(); loc != s.url("/cookies") {
		t.Errorf("Location = %q, want %q", loc, s.url("/cookies"))
	}
	if status := b.Open(s.url("/no-such-page")); status != http.StatusNotFound {
		t.Errorf("Open(missing) = %d, want 404 returned, not a failure", status)
	}
}

func TestFormPostCarriesCSRFAndSetsCookies(t *testing.T) {
	s := newSite(t)
	b := New(t)

	b.Open(s.url("/form"))
	b.Fill(`input[name="note"]`, "hello 世界")
	if got := b.Value(`input[name="note"]`); got != "hello 世界" {
		t.Errorf("after Fill the input holds %q, want the draft replaced", got)
	}
	if status := b.Submit("form"); status != http.StatusOK {
		t.Fatalf("Submit = %d", status)
	}
	if got := b.Text("#saved"); got != "hello 世界" {
		t.Errorf("#saved = %q", got)
	}
	// The hidden csrf field went with the post, and the form's submit
	// listener ran (Submit acts as the submit button does).
	if posts := s.takePosts(); len(posts) != 1 || posts[0] != "csrf-ok hello 世界 yes" {
		t.Errorf("posts = %q", posts)
	}

	session, csrf := b.Cookie("session"), b.Cookie("csrf")
	if session == nil || csrf == nil {
		t.Fatalf("cookies = %v, want session and csrf", b.Cookies())
	}
	if session.Value != "s-1" || !session.HttpOnly || session.SameSite != http.SameSiteLaxMode || session.Path != "/" {
		t.Errorf("session cookie = %+v, want s-1, HttpOnly, SameSite=Lax, Path=/", session)
	}
	if !csrf.HttpOnly || csrf.SameSite != http.SameSiteStrictMode {
		t.Errorf("csrf cookie = %+v, want HttpOnly and SameSite=Strict", csrf)
	}

	// A forged cookie no longer matches the form's token: the server
	// refuses, and Submit returns the status instead of failing.
	b.Open(s.url("/form"))
	b.SetCookie(s.url("/"), &http.Cookie{Name: "csrf", Value: "forged", HttpOnly: true})
	if status := b.Submit(`input[name="note"]`); status != http.StatusForbidden {
		t.Errorf("Submit with a forged csrf cookie = %d, want 403", status)
	}
	if posts := s.takePosts(); len(posts) != 1 || posts[0] != "csrf-bad" {
		t.Errorf("posts = %q", posts)
	}
}

func TestSetCookieReachesTheServer(t *testing.T) {
	s := newSite(t)
	b := New(t)

	b.SetCookie(s.url("/"), &http.Cookie{Name: "crs_theme", Value: "dark"})
	b.SetCookie(s.url("/"), &http.Cookie{Name: "crs_lang", Value: "zh-CN"})
	b.Open(s.url("/cookies"))
	got := b.Text("#cookies")
	if !strings.Contains(got, "crs_theme=dark") || !strings.Contains(got, "crs_lang=zh-CN") {
		t.Errorf("the server saw cookies %q", got)
	}
	if c := b.Cookie("crs_theme"); c == nil || c.Value != "dark" || c.HttpOnly {
		t.Errorf("Cookie(crs_theme) = %+v", c)
	}
}

func TestScreenshotIsTheFullPage(t *testing.T) {
	s := newSite(t)
	b := New(t)

	b.Open(s.url("/tall"))
	path := filepath.Join(t.TempDir(), "sub", "tall.png")
	b.Screenshot(path)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if got := img.Bounds(); got.Dx() != 1280 || got.Dy() != 1500 {
		t.Errorf("screenshot is %dx%d, want 1280x1500 (the whole page)", got.Dx(), got.Dy())
	}
	// The page's own stylesheet applied: the tall block is blue.
	r, g, bl, _ := img.At(100, 1400).RGBA()
	if r>>8 != 0x20 || g>>8 != 0x40 || bl>>8 != 0x80 {
		t.Errorf("pixel at (100,1400) = %02x%02x%02x, want 204080", r>>8, g>>8, bl>>8)
	}
}

func TestConsoleErrorsAreCaught(t *testing.T) {
	s := newSite(t)
	b := New(t)

	for _, tc := range []struct {
		path, want string
	}{
		{"/inline", "Content Security Policy"},
		{"/throws", "Uncaught Error: kaboom"},
		{"/console-error", "console says no"},
	} {
		b.Open(s.url(tc.path))
		errs := b.TakeErrors()
		if len(errs) != 1 || !strings.Contains(errs[0].Text, tc.want) {
			t.Errorf("%s: errors%s\nwant one with %q", tc.path, ErrorText(errs), tc.want)
		}
		if again := b.TakeErrors(); len(again) != 0 {
			t.Errorf("%s: TakeErrors did not forget:%s", tc.path, ErrorText(again))
		}
	}

	// The CSP violation blocked the inline script for real.
	b.Open(s.url("/inline"))
	var title string
	b.Eval("document.title", &title)
	if title != "t" {
		t.Errorf("title = %q: the inline script ran", title)
	}
	b.TakeErrors()

	// A failed load is in the console but is not a page error.
	b.Open(s.url("/missing-image"))
	if errs := b.TakeErrors(); len(errs) != 0 {
		t.Errorf("a missing image counted as a page error:%s", ErrorText(errs))
	}
	var sawNetwork bool
	for _, m := range b.Console() {
		sawNetwork = sawNetwork || (m.Source == "network" && strings.Contains(m.URL, "/nope.png"))
	}
	if !sawNetwork {
		t.Errorf("the console lacks the failed load of /nope.png:%s", ErrorText(b.Console()))
	}
}

// recordingTB stands in for a test so that a test can watch what New does
// to it when the test ends.
type recordingTB struct {
	testing.TB
	mu       sync.Mutex
	errors   []string
	cleanups []func()
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recordingTB) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

// end runs the cleanups as the testing package does, last first.
func (r *recordingTB) end() []string {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errors
}

func TestAnErrorLeftInTheConsoleFailsTheTest(t *testing.T) {
	s := newSite(t)

	for _, tc := range []struct {
		path string
		want []string // substrings of the one failure; none for a clean page
	}{
		{"/throws", []string{"the page wrote errors to the console", "Uncaught Error: kaboom", "/throws.js"}},
		{"/inline", []string{"Content Security Policy"}},
		{"/", nil},
		{"/missing-image", nil},
	} {
		name := strings.TrimPrefix(tc.path, "/")
		if name == "" {
			name = "index"
		}
		t.Run(name, func(t *testing.T) {
			rec := &recordingTB{TB: t}
			b := New(rec)
			b.Open(s.url(tc.path))
			failures := rec.end()
			if tc.want == nil {
				if len(failures) != 0 {
					t.Errorf("a clean page failed the test: %q", failures)
				}
				return
			}
			if len(failures) != 1 {
				t.Fatalf("failures = %q, want one", failures)
			}
			for _, w := range tc.want {
				if !strings.Contains(failures[0], w) {
					t.Errorf("failure %q lacks %q", failures[0], w)
				}
			}
		})
	}
}

// The console messages are chromedp's own type, so a test can look at every
// field; this keeps the import honest.
var _ = chromedp.ConsoleException
