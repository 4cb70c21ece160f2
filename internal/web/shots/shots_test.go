package shots

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"image"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// requireChromium skips the test when Chromium is missing, except in CI,
// where the browser tests must run (.ci/run installs Chromium).
func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(DefaultExecPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %s is missing: .ci/run installs it", DefaultExecPath)
		}
		t.Skipf("%s is missing (apt-get install chromium)", DefaultExecPath)
	}
}

// fakeConsole mimics what Capture relies on in the real console: a login form
// at /web/login with a csrf hidden input bound to a cookie, a session cookie,
// pages that send an anonymous browser to the login form, themes and
// languages from the crs_theme and crs_lang cookies, and a strict Content
// Security Policy with the page's script and style in external files.
type fakeConsole struct {
	user, password string

	mu       sync.Mutex
	sessions map[string]bool
	seen     []string // "path theme lang" of each page served to a session
	rejected []string // why each refused login post was refused
}

const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'"

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="{{.Lang}}" data-theme="{{.Theme}}">
<head><meta charset="utf-8"><title>{{.Title}}</title>
<link rel="stylesheet" href="/static/app.css"><script src="/static/app.js" defer></script></head>
<body class="{{.Class}}">
{{if .Login}}<form method="post" action="/web/login">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<input name="username" value="previous-user"><input name="password" type="password"><button>{{.Title}}</button></form>
{{else}}<h1>{{.Title}}</h1>{{end}}
</body></html>`))

const appCSS = `html[data-theme="light"] body { background: #ffffff; color: #000000; }
html[data-theme="dark"] body { background: #101010; color: #ffffff; }
body, h1 { margin: 0; }
body.tall { height: 2000px; }`

func newFakeConsole(user, password string) *fakeConsole {
	return &fakeConsole{user: user, password: password, sessions: make(map[string]bool)}
}

func randomHex() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func cookie(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil {
		return ""
	}
	return c.Value
}

func (f *fakeConsole) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", csp)
	theme, lang := cookie(r, ThemeCookie), cookie(r, LangCookie)
	render := func(title, class string, login bool, csrf string) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if lang == "zh-CN" {
			title = "中文 " + title
		}
		pageTmpl.Execute(w, map[string]any{"Lang": lang, "Theme": theme, "Title": title, "Class": class, "Login": login, "CSRF": csrf})
	}
	f.mu.Lock()
	loggedIn := f.sessions[cookie(r, "session")]
	f.mu.Unlock()

	switch r.URL.Path {
	case "/static/app.css":
		w.Header().Set("Content-Type", "text/css")
		fmt.Fprint(w, appCSS)
	case "/static/app.js":
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprint(w, `document.documentElement.dataset.js = "on";`)
	case "/static/broken.js":
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprint(w, `throw new Error("broken page script");`)
	case "/favicon.ico":
		w.WriteHeader(http.StatusNoContent)
	case "/web/login":
		if r.Method == http.MethodPost {
			f.postLogin(w, r)
			return
		}
		token := randomHex()
		http.SetCookie(w, &http.Cookie{Name: "csrf", Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		render("Login", "", true, token)
	default:
		if !loggedIn {
			http.Redirect(w, r, "/web/login", http.StatusSeeOther)
			return
		}
		switch r.URL.Path {
		case "/web/", "/web/accounts":
		case "/web/broken":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, `<!doctype html><script src="/static/broken.js"></script><p>broken</p>`)
			return
		case "/web/expired":
			http.Redirect(w, r, "/web/login", http.StatusSeeOther)
			return
		default:
			http.NotFound(w, r)
			return
		}
		f.mu.Lock()
		f.seen = append(f.seen, r.URL.Path+" "+theme+" "+lang)
		f.mu.Unlock()
		class := ""
		if r.URL.Path == "/web/" {
			class = "tall"
		}
		render(strings.TrimPrefix(r.URL.Path, "/web/"), class, false, "")
	}
}

func (f *fakeConsole) postLogin(w http.ResponseWriter, r *http.Request) {
	reject := func(why string, status int) {
		f.mu.Lock()
		f.rejected = append(f.rejected, why)
		f.mu.Unlock()
		http.Error(w, why, status)
	}
	if want := cookie(r, "csrf"); want == "" || r.PostFormValue("csrf") != want {
		reject("csrf", http.StatusForbidden)
		return
	}
	if r.PostFormValue("username") != f.user || r.PostFormValue("password") != f.password {
		// Like most login forms: the form again, with a message, status 200.
		f.mu.Lock()
		f.rejected = append(f.rejected, "password")
		f.mu.Unlock()
		http.Redirect(w, r, "/web/login", http.StatusSeeOther)
		return
	}
	token := randomHex()
	f.mu.Lock()
	f.sessions[token] = true
	f.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "session", Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/web/", http.StatusSeeOther)
}

func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

func brightness(img image.Image, x, y int) uint32 {
	r, g, b, _ := img.At(x, y).RGBA()
	return (r + g + b) / 3 >> 8
}

func TestCaptureEveryPageInEveryThemeAndLanguage(t *testing.T) {
	requireChromium(t)
	fake := newFakeConsole("admin", "s3cret pass")
	srv := httptest.NewServer(fake)
	defer srv.Close()
	dir := filepath.Join(t.TempDir(), "console")

	files, err := Capture(context.Background(), Options{
		BaseURL:  srv.URL,
		Username: "admin",
		Password: "s3cret pass",
		Pages: []Page{
			{Name: "dashboard", Path: "/web/"},
			{Name: "accounts", Path: "/web/accounts"},
			{Name: "login", Path: "/web/login", Anonymous: true},
		},
		Dir:    dir,
		Launch: LaunchOptions{UserDataDir: t.TempDir()},
		Logf:   t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}

	var want []string
	for _, name := range []string{"login", "dashboard", "accounts"} { // anonymous first
		for _, theme := range []string{"light", "dark"} {
			for _, lang := range []string{"zh-CN", "en"} {
				want = append(want, filepath.Join(dir, name+"-"+theme+"-"+lang+".png"))
			}
		}
	}
	if !slices.Equal(files, want) {
		t.Fatalf("files:\n got %q\nwant %q", files, want)
	}
	for _, path := range files {
		img := decodePNG(t, path)
		b := img.Bounds()
		if b.Dx() != DefaultWidth || b.Dy() < DefaultHeight {
			t.Errorf("%s is %dx%d, want %d wide and at least %d high", path, b.Dx(), b.Dy(), DefaultWidth, DefaultHeight)
		}
		// The theme cookie reached the page: light pages are white, dark
		// ones nearly black.
		light, lum := strings.Contains(path, "-light-"), brightness(img, 5, b.Dy()-5)
		if light && lum < 240 || !light && lum > 40 {
			t.Errorf("%s: background brightness %d does not match its theme", path, lum)
		}
	}
	// The dashboard is 2000px tall: the screenshot is of the full page, not
	// of the 800px viewport.
	if img := decodePNG(t, filepath.Join(dir, "dashboard-dark-en.png")); img.Bounds().Dy() != 2000 {
		t.Errorf("dashboard screenshot is %d high, want the full 2000", img.Bounds().Dy())
	}

	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.rejected) != 0 {
		t.Errorf("the server refused logins: %q (the csrf field must be posted)", fake.rejected)
	}
	wantSeen := []string{
		"/web/ dark en", // where the login form sends the browser, with the last anonymous page's cookies
		"/web/ light zh-CN", "/web/ light en", "/web/ dark zh-CN", "/web/ dark en",
		"/web/accounts light zh-CN", "/web/accounts light en", "/web/accounts dark zh-CN", "/web/accounts dark en",
	}
	if !slices.Equal(fake.seen, wantSeen) {
		t.Errorf("pages served to the session:\n got %q\nwant %q", fake.seen, wantSeen)
	}
}

func TestCaptureWrongPasswordFails(t *testing.T) {
	requireChromium(t)
	srv := httptest.NewServer(newFakeConsole("admin", "right"))
	defer srv.Close()
	dir := t.TempDir()
	files, err := Capture(context.Background(), Options{
		BaseURL: srv.URL, Username: "admin", Password: "wrong",
		Pages:  []Page{{Name: "dashboard", Path: "/web/"}},
		Dir:    dir,
		Launch: LaunchOptions{UserDataDir: t.TempDir()},
	})
	if err == nil || !strings.Contains(err.Error(), "login form came back") {
		t.Fatalf("err = %v, want the login form came back", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("the error shows the password: %v", err)
	}
	if len(files) != 0 {
		t.Errorf("files = %q, want none", files)
	}
}

func TestCaptureFailsOnBrokenPagesAndKeepsTheRest(t *testing.T) {
	requireChromium(t)
	srv := httptest.NewServer(newFakeConsole("admin", "pw"))
	defer srv.Close()
	dir := t.TempDir()
	files, err := Capture(context.Background(), Options{
		BaseURL: srv.URL, Username: "admin", Password: "pw",
		Pages: []Page{
			{Name: "broken", Path: "/web/broken"},
			{Name: "expired", Path: "/web/expired"},
			{Name: "missing", Path: "/web/missing"},
			{Name: "accounts", Path: "/web/accounts"},
		},
		Themes: []string{"dark"}, Langs: []string{"en"},
		Dir:    dir,
		Launch: LaunchOptions{UserDataDir: t.TempDir()},
	})
	if err == nil {
		t.Fatal("Capture succeeded on broken pages")
	}
	for _, want := range []string{
		"broken-dark-en.png: the page wrote errors to the console",
		"Uncaught Error: broken page script",
		"expired-dark-en.png:", "session did not hold",
		"missing-dark-en.png:", "answered 404",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if want := []string{filepath.Join(dir, "accounts-dark-en.png")}; !slices.Equal(files, want) {
		t.Errorf("files = %q, want %q", files, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "broken-dark-en.png")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the broken page's screenshot was written (stat: %v)", err)
	}
}

func TestCaptureChecksOptions(t *testing.T) {
	ok := Options{BaseURL: "http://127.0.0.1:1", Username: "u", Dir: t.TempDir(), Pages: []Page{{Name: "a", Path: "/web/"}}}
	for _, tc := range []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"no scheme", func(o *Options) { o.BaseURL = "127.0.0.1:8080" }, "BaseURL"},
		{"ftp", func(o *Options) { o.BaseURL = "ftp://host/" }, "BaseURL"},
		{"no dir", func(o *Options) { o.Dir = "" }, "Dir"},
		{"no pages", func(o *Options) { o.Pages = nil }, "Pages"},
		{"slash in name", func(o *Options) { o.Pages = []Page{{Name: "../x", Path: "/web/"}} }, "plain file name"},
		{"twice", func(o *Options) { o.Pages = append(o.Pages, o.Pages[0]) }, "twice"},
		{"relative path", func(o *Options) { o.Pages = []Page{{Name: "a", Path: "web/"}} }, "does not start with /"},
		{"no user", func(o *Options) { o.Username = "" }, "Username"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			o.Pages = slices.Clone(ok.Pages)
			tc.change(&o)
			_, err := Capture(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func TestLaunchWithoutChromium(t *testing.T) {
	_, _, err := Launch(context.Background(), LaunchOptions{ExecPath: filepath.Join(t.TempDir(), "no-chromium")})
	if !errors.Is(err, ErrNoChromium) {
		t.Fatalf("err = %v, want ErrNoChromium", err)
	}
}
