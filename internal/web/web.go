// Package web is the admin console and the key holders' page, served by the
// same binary under /web: server-rendered html/template pages, a little
// hand-written JavaScript and CSS, and SVG charts drawn in Go, all embedded.
// Nothing is fetched from elsewhere, so it works on a machine without
// internet.
//
// Every page exists in Simplified Chinese and English (messages.go; a test
// proves each message has both), chosen by the crs_lang cookie, else by
// Accept-Language; light and dark themes by the crs_theme cookie, else by the
// browser's preference.
//
// Security: the admin session is an HttpOnly, SameSite=Strict cookie
// (Secure behind TLS) holding the same token the JSON API takes as a Bearer
// header; it ends after IdleTimeout without a request, at logout, and at a
// password change. Every state-changing request needs a CSRF token: derived
// from the session for signed-in pages, a double-submit cookie for the
// sign-in and key-holder forms. Pages send a CSP without inline script,
// nosniff and frame-ancestors 'none'.
package web

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/keystats"
	"github.com/crs-relay/crs/internal/policy"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
)

//go:embed templates static
var assets embed.FS

// Prefix is where the console lives.
const Prefix = "/web"

// DefaultIdleTimeout ends a session left without a request this long.
const DefaultIdleTimeout = 30 * time.Minute

// Cookie names.
const (
	cookieSession = "crs_session"
	cookieSeen    = "crs_seen"
	cookieCSRF    = "crs_csrf"
	cookieLang    = "crs_lang"
	cookieTheme   = "crs_theme"
)

// Options configure a Console.
type Options struct {
	// API signs admins in and out; its Service does the work of every
	// page. Required.
	API *admin.API
	// Store is read for dashboards and usage pages. Required.
	Store store.Store
	// Policy reports a key's limits on the key holder's page; nil shows
	// usage only.
	Policy *policy.Engine
	// Stats looks keys up for the key holders' page (the JSON route's
	// handler, so both throttle alike); nil shows the page without
	// lookups.
	Stats *keystats.Handler
	// Prices is the price table in use (settings page); nil hides it.
	Prices pricing.Source
	// Secret keys the MACs of CSRF tokens and the idle cookie
	// (JWT_SECRET). Required.
	Secret string
	// IdleTimeout ends a session after this long without a request;
	// zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// ClientIP is the address logins are throttled by (TRUST_PROXY-aware).
	ClientIP func(*http.Request) string
	// Location is the zone of "today" and of times shown.
	Location *time.Location
	// Version is shown in the footer.
	Version string
	// Now is the clock; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Console serves /web.
type Console struct {
	o     Options
	mux   *http.ServeMux
	pages *renderer
	log   *slog.Logger
	// settingsView reports the server's start-up settings
	// (SetSettingsView, settings.go); nil shows none.
	settingsView func() SettingsInfo
	// tester runs an account's live test (SetAccountTester, accounts.go);
	// nil hides the test button.
	tester AccountTester
}

// New builds the console. It panics without API, Store or Secret: a wiring
// mistake, found at start.
func New(o Options) *Console {
	if o.API == nil || o.Store == nil || o.Secret == "" {
		panic("web: Options.API, Store and Secret are required")
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ClientIP == nil {
		o.ClientIP = func(r *http.Request) string { return r.RemoteAddr }
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Console{o: o, mux: http.NewServeMux(), pages: newRenderer(o.Location), log: log}
	c.routes()
	return c
}

// ServeHTTP serves every path under Prefix, and "/" (a redirect to the key
// holders' page).
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; object-src 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	c.mux.ServeHTTP(w, r)
}

// handler is a page handler with the request's view of the console.
type handler func(w http.ResponseWriter, r *http.Request, v *view)

// view is what every page knows about its request: language, theme, the
// signed-in admin (nil on public pages) and the CSRF token of its forms.
type view struct {
	Lang    string // "en" or "zh-CN"
	Theme   string // "light", "dark" or "" (the browser decides)
	Admin   *store.AdminSession
	CSRF    string
	Path    string
	Version string
	Flash   string // a message key shown once at the top
	token   string
}

// T translates key into the view's language.
func (v *view) T(key string, args ...any) string { return translate(v.Lang, key, args...) }

// routes mounts every page. Admin pages go through c.admin (session, idle
// timeout, CSRF on writes); public ones through c.public.
func (c *Console) routes() {
	static, _ := fs.Sub(assets, "static")
	files := http.StripPrefix(Prefix+"/static/", http.FileServerFS(static))
	c.mux.Handle("GET "+Prefix+"/static/", cacheFor(time.Hour, files))
	c.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"/stats", http.StatusSeeOther)
	})
	c.mux.Handle("GET "+Prefix, c.admin(c.dashboard))
	c.mux.Handle("GET "+Prefix+"/{$}", c.admin(c.dashboard))
	c.mux.Handle("GET "+Prefix+"/login", c.public(c.loginForm))
	c.mux.Handle("POST "+Prefix+"/login", c.public(c.login))
	c.mux.Handle("POST "+Prefix+"/logout", c.admin(c.logout))
	c.mux.Handle("GET "+Prefix+"/password", c.admin(c.passwordForm))
	c.mux.Handle("POST "+Prefix+"/password", c.admin(c.changePassword))
	c.mux.Handle("GET "+Prefix+"/prefs", c.public(c.prefs))
	for _, p := range extraPages {
		if p.public {
			c.mux.Handle(p.pattern, c.public(p.h(c)))
		} else {
			c.mux.Handle(p.pattern, c.admin(p.h(c)))
		}
	}
	c.mux.HandleFunc(Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		c.notFound(w, r, c.newView(w, r))
	})
}

// extraPage registers a page from another file of the package (keys.go,
// accounts.go, …) without touching routes.
type extraPage struct {
	pattern string
	public  bool
	h       func(*Console) handler
}

var extraPages []extraPage

// page adds a page; call it from an init function.
func page(pattern string, public bool, h func(*Console) handler) {
	extraPages = append(extraPages, extraPage{pattern: pattern, public: public, h: h})
}

func cacheFor(d time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(int(d.Seconds())))
		h.ServeHTTP(w, r)
	})
}

// newView reads language and theme from cookies and Accept-Language.
func (c *Console) newView(w http.ResponseWriter, r *http.Request) *view {
	v := &view{Lang: pickLang(r), Path: r.URL.Path, Version: c.o.Version}
	if ck, err := r.Cookie(cookieTheme); err == nil && (ck.Value == "light" || ck.Value == "dark") {
		v.Theme = ck.Value
	}
	if ck, err := r.Cookie("crs_flash"); err == nil {
		if _, known := catalog[ck.Value]; known && strings.HasPrefix(ck.Value, "flash.") {
			v.Flash = ck.Value // shown, and cleared, by the next rendered page
		}
	}
	return v
}

// flash shows a message key on the next page.
func flash(w http.ResponseWriter, key string) {
	http.SetCookie(w, &http.Cookie{Name: "crs_flash", Value: key, Path: Prefix, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// public serves a page that needs no session. Its forms carry a
// double-submit CSRF token: a random cookie echoed in a hidden field.
func (c *Console) public(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := c.newView(w, r)
		tok := ""
		if ck, err := r.Cookie(cookieCSRF); err == nil && len(ck.Value) == 32 {
			tok = ck.Value
		} else {
			tok = secret.RandomHex(16)
			http.SetCookie(w, &http.Cookie{Name: cookieCSRF, Value: tok, Path: Prefix, HttpOnly: true,
				SameSite: http.SameSiteStrictMode, Secure: secure(r)})
		}
		v.CSRF = tok
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !hmac.Equal([]byte(formCSRF(r)), []byte(tok)) || tok == "" {
				c.forbidden(w, r, v)
				return
			}
		}
		h(w, r, v)
	})
}

// admin serves a page for a signed-in admin: without a live session it
// redirects to the sign-in page (or answers 401 to a script). Writes need the
// session's CSRF token.
func (c *Console) admin(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := c.newView(w, r)
		sess, token, err := c.session(r)
		if err != nil {
			if errors.Is(err, errIdle) {
				c.o.API.Logout(r.Context(), token)
				flash(w, "flash.idle")
			} else if !errors.Is(err, admin.ErrUnauthorized) {
				c.fail(w, r, v, err)
				return
			}
			clearSession(w, r)
			if r.Method == http.MethodGet {
				http.Redirect(w, r, Prefix+"/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, v.T("error.signed_out"), http.StatusUnauthorized)
			return
		}
		v.Admin, v.token = &sess, token
		v.CSRF = c.csrfFor(token)
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !hmac.Equal([]byte(formCSRF(r)), []byte(v.CSRF)) {
				c.forbidden(w, r, v)
				return
			}
		}
		c.touch(w, r)
		h(w, r, v)
	})
}

var errIdle = errors.New("signed out after inactivity")

// session returns the admin session of the request's cookie, checking the
// idle cookie first.
func (c *Console) session(r *http.Request) (store.AdminSession, string, error) {
	ck, err := r.Cookie(cookieSession)
	if err != nil || ck.Value == "" {
		return store.AdminSession{}, "", admin.ErrUnauthorized
	}
	token := ck.Value
	seen, ok := c.lastSeen(r, token)
	if !ok {
		return store.AdminSession{}, token, admin.ErrUnauthorized
	}
	if c.o.Now().Sub(seen) >= c.o.IdleTimeout {
		return store.AdminSession{}, token, errIdle
	}
	sess, err := c.o.API.Session(r.Context(), token)
	return sess, token, err
}

// The idle cookie holds the time of the session's last request, bound to the
// session by a MAC so it cannot be forged or moved to another session.
func (c *Console) seenValue(token string, at time.Time) string {
	ts := strconv.FormatInt(at.Unix(), 10)
	return ts + "." + c.mac("seen", token, ts)
}

func (c *Console) lastSeen(r *http.Request, token string) (time.Time, bool) {
	ck, err := r.Cookie(cookieSeen)
	if err != nil {
		return time.Time{}, false
	}
	ts, mac, ok := strings.Cut(ck.Value, ".")
	if !ok || !hmac.Equal([]byte(mac), []byte(c.mac("seen", token, ts))) {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

func (c *Console) touch(w http.ResponseWriter, r *http.Request) {
	ck, _ := r.Cookie(cookieSession)
	http.SetCookie(w, &http.Cookie{Name: cookieSeen, Value: c.seenValue(ck.Value, c.o.Now()), Path: Prefix,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(r)})
}

// mac is a hex HMAC-SHA256 under the console's secret, domain-separated.
func (c *Console) mac(domain string, parts ...string) string {
	m := hmac.New(sha256.New, []byte(c.o.Secret))
	m.Write([]byte("crs console " + domain + "\x00"))
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return hex.EncodeToString(m.Sum(nil))
}

// csrfFor is the CSRF token of a session's forms.
func (c *Console) csrfFor(token string) string { return c.mac("csrf", token)[:32] }

// formCSRF is the token a write sent: the csrf form field, or the
// X-CSRF-Token header of a script's fetch.
func formCSRF(r *http.Request) string {
	if h := r.Header.Get("X-CSRF-Token"); h != "" {
		return h
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		r.ParseMultipartForm(1 << 20)
	}
	return r.PostFormValue("csrf")
}

// secure says whether the browser reached us over TLS (directly, or through
// a proxy that says so), so cookies get the Secure flag.
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func setSession(w http.ResponseWriter, r *http.Request, token string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{Name: cookieSession, Value: token, Path: Prefix, Expires: expires,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(r)})
}

func clearSession(w http.ResponseWriter, r *http.Request) {
	for _, n := range []string{cookieSession, cookieSeen} {
		http.SetCookie(w, &http.Cookie{Name: n, Path: Prefix, MaxAge: -1, HttpOnly: true,
			SameSite: http.SameSiteStrictMode, Secure: secure(r)})
	}
}

// localNext keeps a post-login redirect on this console.
func localNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix
	}
	return next
}

// ctx is a request context bounded for store work.
func ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 10*time.Second)
}
