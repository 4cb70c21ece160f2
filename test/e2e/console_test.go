package e2e

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/testkit"
	"github.com/crs-relay/crs/internal/web/browsertest"
)

// TestConsoleJourney drives the built binary's console in Debian's chromium
// the way an admin would: sign in, add an API-key account, onboard a Claude
// subscription through the OAuth wizard against the fake OAuth server,
// create a key and read it once, use it through the relay, and find those
// requests on the dashboard, in the usage records and on the key holder's
// page; a POST without the CSRF token is refused; signing out works.
// It runs on the embedded store and on the shared one (Redis).
func TestConsoleJourney(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		consoleJourney(t, func(env ...string) *crsProc { return startCRS(t, t.TempDir(), env...) })
	})
	t.Run("shared", func(t *testing.T) {
		sh := newShared(t, false)
		consoleJourney(t, sh.start)
	})
}

func consoleJourney(t *testing.T, start func(env ...string) *crsProc) {
	o := fakeupstream.StartOAuth(t)
	api := fakeupstream.StartAnthropic(t, fakeupstream.Options{OAuth: o, APIKeys: []string{"sk-ant-console"}, Deltas: 2})
	srv := start(
		"ADMIN_USERNAME=admin", "ADMIN_PASSWORD=console-password-123",
		"CLAUDE_API_URL="+api.URL(),
		"CLAUDE_OAUTH_AUTHORIZE_URL="+o.AuthorizeURL(),
		"CLAUDE_OAUTH_TOKEN_URL="+o.TokenURL(),
		"CLAUDE_OAUTH_PROFILE_URL="+o.ProfileURL(),
		"CLAUDE_OAUTH_USAGE_URL="+o.UsageURL(),
	)
	b := browsertest.New(t)

	// Signed out, /web is the sign-in form.
	b.Open(srv.url + "/web")
	if !strings.Contains(b.Location(), "/web/login") {
		t.Fatalf("signed out /web went to %s", b.Location())
	}
	b.Fill("#username", "admin")
	b.Fill("#password", "console-password-123")
	if status := b.Submit("#login-form"); status != 200 || strings.Contains(b.Location(), "/web/login") {
		t.Fatalf("sign-in: %d at %s", status, b.Location())
	}

	// An API-key account.
	b.Open(srv.url + "/web/accounts/new")
	b.Eval(`document.querySelector("#acct-platform").value = "claude"`, nil)
	b.Fill("#acct-name", "api-main")
	b.Fill("#acct-api-key", "sk-ant-console")
	b.Fill("#acct-base-url", api.URL())
	b.Fill("#acct-priority", "10")
	if status := b.Submit("#acct-new-form"); status != 200 || !strings.HasSuffix(strings.Split(b.Location(), "?")[0], "/web/accounts") {
		t.Fatalf("add account: %d at %s: %s", status, b.Location(), b.Text("main"))
	}
	if !strings.Contains(b.Text("#accounts-table"), "api-main") {
		t.Fatal("the new account is not in the table")
	}

	// The Claude OAuth wizard: the link carries PKCE; the code the fake
	// approval gives is pasted back.
	b.Open(srv.url + "/web/accounts/oauth")
	b.Eval(`document.querySelector("#oauth-platform").value = "claude"`, nil)
	b.Fill("#oauth-name", "max-1")
	b.Fill("#oauth-priority", "50")
	b.Submit("#oauth-start-form")
	var link string
	b.Eval(`document.querySelector("#oauth-link").href`, &link)
	u, err := url.Parse(link)
	if err != nil || !strings.HasPrefix(link, o.AuthorizeURL()) || u.Query().Get("code_challenge") == "" {
		t.Fatalf("authorize link %q", link)
	}
	code := o.IssueCode(u.Query().Get("code_challenge"), u.Query().Get("state"))
	b.Fill("#oauth-code", "https://console.anthropic.com/oauth/code/callback?code="+code+"#"+u.Query().Get("state"))
	if status := b.Submit("#oauth-finish-form"); status != 200 || !strings.Contains(b.Text("#accounts-table"), "max-1") {
		t.Fatalf("OAuth finish: %d at %s: %s", status, b.Location(), b.Text("main"))
	}

	// A key, shown once.
	b.Open(srv.url + "/web/keys/new")
	b.Fill("#f-name", "friend")
	b.Submit("#key-form")
	key := strings.TrimSpace(b.Text("#new-key"))
	if !regexp.MustCompile(`^cr_[0-9a-f]{64}$`).MatchString(key) {
		t.Fatalf("new key shown as %q", key)
	}
	b.Open(srv.url + "/web/keys")
	if strings.Contains(b.Text("main"), key) || b.Count("#new-key") != 0 {
		t.Fatal("the key list shows the whole key again")
	}

	// Two requests through the relay with it.
	c := testkit.SDK(srv.url+"/api", key)
	for range 2 {
		if _, err := c.Messages.New(testkit.Ctx(t, 20*time.Second), testkit.Params("hello")); err != nil {
			t.Fatalf("request with the console's key: %v", err)
		}
	}
	// The usage queue commits within a moment; the pages read the store.
	waitFor(t, 5*time.Second, "the dashboard to count both requests", func() bool {
		b.Open(srv.url + "/web")
		return strings.TrimSpace(b.Text("#today-requests")) == "2"
	})
	b.Open(srv.url + "/web/usage")
	if n := b.Count("#usage-table tbody tr"); n != 2 {
		t.Errorf("usage records show %d rows, want 2", n)
	}
	if got := strings.TrimSpace(b.Text("#usage-total-requests")); got != "2" {
		t.Errorf("usage totals show %q requests", got)
	}

	// The key holder's page shows the same numbers.
	b.Open(srv.url + "/web/stats")
	b.Fill("#stats-key", key)
	b.Submit("#stats-form")
	today := b.Text("#stats-today")
	if !strings.Contains(today, "2") || b.Text("#stats-name") != "friend" {
		t.Errorf("key holder page: name %q, today %q", b.Text("#stats-name"), today)
	}
	if !strings.Contains(b.Text("#setup-claude"), "ANTHROPIC_BASE_URL="+srv.url+"/api") {
		t.Errorf("setup snippet: %q", b.Text("#setup-claude"))
	}

	// A POST without the CSRF token, with the browser's own session cookie.
	jarless := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodPost, srv.url+"/web/logout", strings.NewReader(""))
	for _, ck := range b.Cookies() {
		req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
	}
	resp, err := jarless.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("CSRF-less POST: %d, want 403", resp.StatusCode)
	}

	// Signing out ends the session.
	b.Open(srv.url + "/web")
	b.ClickAndWait("#logout")
	if !strings.Contains(b.Location(), "/web/login") {
		t.Fatalf("after sign-out at %s", b.Location())
	}
	b.Open(srv.url + "/web/keys")
	if !strings.Contains(b.Location(), "/web/login") {
		t.Errorf("after sign-out /web/keys is at %s", b.Location())
	}
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
