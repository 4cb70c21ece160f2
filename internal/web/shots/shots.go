// Package shots photographs the web console in a real browser: it starts
// Debian's headless Chromium through chromedp, logs in through the console's
// own login form, and writes a full-page PNG of each page in every theme and
// language, for docs/console/.
//
// Launch and Console are the parts that the browser tests share
// (internal/web/browsertest builds on them): one way to start Chromium on
// this project's machines, and one rule for what counts as a page error.
package shots

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// The console reads its theme and language from these cookies; Capture sets
// them before loading each page.
const (
	ThemeCookie = "crs_theme"
	LangCookie  = "crs_lang"
)

// DefaultLoginPath is the console's login form.
const DefaultLoginPath = "/web/login"

// DefaultActionTimeout bounds each browser action: a navigation with its
// load, a form post, a screenshot.
const DefaultActionTimeout = 30 * time.Second

// Page is one console page to photograph.
type Page struct {
	// Name names the files: "dashboard" gives dashboard-light-en.png,
	// dashboard-dark-zh-CN.png and so on. It must be a plain file name part.
	Name string

	// Path is the page's path below the base URL, such as "/web/" or
	// "/web/accounts".
	Path string

	// Anonymous pages, such as the login page itself, are photographed
	// before logging in.
	Anonymous bool
}

// Options configure Capture.
type Options struct {
	// BaseURL is where crs serve listens, such as "http://127.0.0.1:8080".
	BaseURL string

	// Username and Password log in through the form at LoginPath. The form
	// must have inputs named username and password; the browser posts its
	// other fields (the csrf hidden input) as a user's browser would.
	// Password is never logged.
	Username, Password string

	// LoginPath is the login form's path. Empty means DefaultLoginPath.
	LoginPath string

	// Pages are photographed in order, the anonymous ones first.
	Pages []Page

	// Dir receives the PNG files; Capture creates it when missing.
	Dir string

	// Themes and Langs are the cookie values to photograph each page in.
	// Empty means "light", "dark" and "zh-CN", "en".
	Themes, Langs []string

	// Launch configures the browser; the zero value is Debian's Chromium at
	// 1280×800 in a temporary profile.
	Launch LaunchOptions

	// ActionTimeout bounds each browser action. Zero means
	// DefaultActionTimeout.
	ActionTimeout time.Duration

	// Logf, when set, is told of each file written.
	Logf func(format string, args ...any)
}

// Capture logs in to the console and writes a full-page PNG of every page in
// every theme and language to opts.Dir, named name-theme-lang.png. It returns
// the paths written, in order.
//
// A page that answers with an error status, lands on the login form (the
// session did not hold), or writes an error to its console (see IsPageError)
// fails the run: a screenshot of a broken page must not land in the docs.
// Capture still photographs the remaining pages so one run shows every
// problem, and returns the files it wrote alongside the joined error.
func Capture(ctx context.Context, opts Options) ([]string, error) {
	base, err := opts.check()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("shots: %w", err)
	}

	tab, stop, err := Launch(ctx, opts.Launch)
	if err != nil {
		return nil, err
	}
	defer stop()
	console := WatchConsole(tab)
	c := &capturer{opts: opts, base: base, tab: tab, console: console}

	width, height := opts.Launch.Width, opts.Launch.Height
	if width == 0 {
		width = DefaultWidth
	}
	if height == 0 {
		height = DefaultHeight
	}
	if err := c.do(chromedp.EmulateViewport(int64(width), int64(height))); err != nil {
		return nil, fmt.Errorf("shots: setting the viewport: %w", err)
	}

	var files []string
	var errs []error
	shoot := func(anonymous bool) {
		for _, p := range opts.Pages {
			if p.Anonymous != anonymous {
				continue
			}
			for _, theme := range opts.themes() {
				for _, lang := range opts.langs() {
					path, err := c.shoot(p, theme, lang)
					if err != nil {
						errs = append(errs, err)
						continue
					}
					files = append(files, path)
				}
			}
		}
	}
	shoot(true)
	if opts.needsLogin() {
		if err := c.login(); err != nil {
			return files, errors.Join(append(errs, err)...)
		}
		shoot(false)
	}
	return files, errors.Join(errs...)
}

func (o Options) check() (*url.URL, error) {
	base, err := url.Parse(o.BaseURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("shots: BaseURL %q is not an http(s) URL", o.BaseURL)
	}
	if o.Dir == "" {
		return nil, errors.New("shots: Dir is empty")
	}
	if len(o.Pages) == 0 {
		return nil, errors.New("shots: no Pages")
	}
	seen := make(map[string]bool)
	for _, p := range o.Pages {
		if p.Name == "" || strings.ContainsAny(p.Name, `/\`) || p.Name == "." || p.Name == ".." {
			return nil, fmt.Errorf("shots: page name %q is not a plain file name part", p.Name)
		}
		if seen[p.Name] {
			return nil, fmt.Errorf("shots: page name %q appears twice", p.Name)
		}
		seen[p.Name] = true
		if !strings.HasPrefix(p.Path, "/") {
			return nil, fmt.Errorf("shots: page %q: Path %q does not start with /", p.Name, p.Path)
		}
	}
	if o.needsLogin() && o.Username == "" {
		return nil, errors.New("shots: Username is empty")
	}
	return base, nil
}

func (o Options) needsLogin() bool {
	for _, p := range o.Pages {
		if !p.Anonymous {
			return true
		}
	}
	return false
}

func (o Options) themes() []string {
	if len(o.Themes) == 0 {
		return []string{"light", "dark"}
	}
	return o.Themes
}

func (o Options) langs() []string {
	if len(o.Langs) == 0 {
		return []string{"zh-CN", "en"}
	}
	return o.Langs
}

func (o Options) loginPath() string {
	if o.LoginPath == "" {
		return DefaultLoginPath
	}
	return o.LoginPath
}

// capturer holds one Capture run's browser tab.
type capturer struct {
	opts    Options
	base    *url.URL
	tab     context.Context
	console *Console
}

func (c *capturer) actionCtx() (context.Context, context.CancelFunc) {
	timeout := c.opts.ActionTimeout
	if timeout == 0 {
		timeout = DefaultActionTimeout
	}
	return context.WithTimeout(c.tab, timeout)
}

func (c *capturer) do(actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := c.actionCtx()
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

func (c *capturer) url(path string) string {
	return c.base.ResolveReference(&url.URL{Path: path}).String()
}

// login posts the login form as a user would: it types into the username and
// password inputs and submits the form, which carries the page's own csrf
// field.
func (c *capturer) login() error {
	loginURL := c.url(c.opts.loginPath())
	ctx, cancel := c.actionCtx()
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(loginURL))
	if err != nil {
		return fmt.Errorf("shots: opening the login page %s: %w", loginURL, err)
	}
	if resp.Status >= 400 {
		return fmt.Errorf("shots: the login page %s answered %d", loginURL, resp.Status)
	}
	if err := chromedp.Do(ctx,
		Fill(`input[name="username"]`, c.opts.Username),
		Fill(`input[name="password"]`, c.opts.Password),
	); err != nil {
		return fmt.Errorf("shots: filling the login form: %w", err)
	}
	resp, err = chromedp.RunResponse(ctx, RequestSubmit(`input[name="password"]`))
	if err != nil {
		return fmt.Errorf("shots: posting the login form: %w", err)
	}
	if resp.Status >= 400 {
		return fmt.Errorf("shots: logging in as %q: the server answered %d", c.opts.Username, resp.Status)
	}
	stillThere, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('input[name="password"]') !== null`))
	if err != nil {
		return fmt.Errorf("shots: after logging in: %w", err)
	}
	if stillThere {
		return fmt.Errorf("shots: logging in as %q failed: the login form came back", c.opts.Username)
	}
	if errs := c.pageErrors(ctx); len(errs) > 0 {
		return fmt.Errorf("shots: the login page wrote errors to the console:%s", FormatMessages(errs))
	}
	return nil
}

// shoot photographs one page in one theme and language.
func (c *capturer) shoot(p Page, theme, lang string) (string, error) {
	name := fmt.Sprintf("%s-%s-%s.png", p.Name, theme, lang)
	fail := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("shots: %s: %s", name, fmt.Sprintf(format, args...))
	}
	ctx, cancel := c.actionCtx()
	defer cancel()

	pageURL := c.url(p.Path)
	if err := chromedp.Do(ctx,
		setCookie(pageURL, ThemeCookie, theme),
		setCookie(pageURL, LangCookie, lang),
		preferColorScheme(theme),
	); err != nil {
		return fail("setting the theme and language: %v", err)
	}
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(pageURL))
	if err != nil {
		return fail("opening %s: %v", pageURL, err)
	}
	if resp.Status >= 400 {
		return fail("%s answered %d", pageURL, resp.Status)
	}
	if !p.Anonymous {
		onLogin, err := chromedp.Run(ctx, chromedp.Evaluate[bool](
			`location.pathname === `+jsString(c.opts.loginPath())))
		if err != nil {
			return fail("reading the location: %v", err)
		}
		if onLogin {
			return fail("%s sent the browser to the login page: the session did not hold", pageURL)
		}
	}
	// Web fonts and images finish after the load event in some pages; a
	// screenshot taken before them shows fallback glyphs.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](
		`document.fonts.ready.then(() => true)`, chromedp.EvalAwaitPromise)); err != nil {
		return fail("waiting for fonts: %v", err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return fail("taking the screenshot: %v", err)
	}
	if errs := c.pageErrors(ctx); len(errs) > 0 {
		return fail("the page wrote errors to the console:%s", FormatMessages(errs))
	}
	path := filepath.Join(c.opts.Dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return "", fmt.Errorf("shots: %w", err)
	}
	if c.opts.Logf != nil {
		c.opts.Logf("wrote %s (%d bytes)", path, len(png))
	}
	return path, nil
}

// pageErrors returns, and forgets, the page errors written so far.
func (c *capturer) pageErrors(ctx context.Context) []chromedp.ConsoleMessage {
	if err := c.console.Sync(ctx); err != nil {
		return []chromedp.ConsoleMessage{{Type: chromedp.ConsoleError, Text: err.Error()}}
	}
	return c.console.TakeErrors()
}

// setCookie is an action that sets a session cookie for the host of rawURL,
// on the path "/", as if that host had sent it.
func setCookie(rawURL, name, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, network.SetCookie, network.SetCookieParams{
			Name: name, Value: value, URL: rawURL, Path: "/",
		})
		return err
	})
}

// preferColorScheme makes the page's prefers-color-scheme media query match
// the theme too, so that a page that follows the system setting before the
// cookie takes effect still shows the theme asked for.
func preferColorScheme(theme string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		var features []*emulation.MediaFeature
		if theme == "light" || theme == "dark" {
			features = []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: theme}}
		}
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: features})
		return err
	})
}

// Fill is an action that waits for the input or textarea selected by the CSS
// selector sel to be visible, clears it, and types text into it key by key,
// so that the page's input listeners see a user's typing.
func Fill(sel, text string) chromedp.Action[chromedp.Void] {
	// chromedp.SetValue cannot set an empty value (it passes the empty
	// string on as undefined), so the old value is cleared by evaluation.
	clear := chromedp.Evaluate[chromedp.Void]("document.querySelector(" + jsString(sel) + ").value = ''")
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for _, a := range []chromedp.Action[chromedp.Void]{
			chromedp.WaitVisible(chromedp.CSS(sel)),
			clear,
			chromedp.SendKeys(chromedp.CSS(sel), text),
		} {
			if _, err := a(ctx, t); err != nil {
				return err
			}
		}
		return nil
	})
}

// RequestSubmit is an action that submits the form selected by the CSS
// selector sel, or the form of the element it selects, as a click on its
// submit button would: unlike chromedp.Submit it runs the form's validation
// and its submit listeners. It does not wait for the navigation; wrap it in
// chromedp.RunResponse for that.
//
// The call goes through chromedp's evaluation, not through a script in the
// page, so it works under a Content Security Policy without 'unsafe-inline'.
func RequestSubmit(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		ok, err := chromedp.Evaluate[bool](`(() => {
	const el = document.querySelector(`+jsString(sel)+`);
	const form = el && (el instanceof HTMLFormElement ? el : el.form);
	if (!form) return false;
	form.requestSubmit();
	return true;
})()`)(ctx, t)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("no form at %q", sel)
		}
		return nil
	})
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
