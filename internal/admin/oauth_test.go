package admin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/netx"
	"github.com/crs-relay/crs/internal/oauth"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/sqlite"
)

// oauthTrace records which proxy each OAuth request was sent through, so a
// test can tell the exchange used the account's proxy and whether the
// profile was read.
type oauthTrace struct {
	mu   sync.Mutex
	reqs []string // "proxy path"
}

func (tr *oauthTrace) deps(eps oauth.Endpoints) OAuthDeps {
	pool := netx.NewPool(netx.Options{})
	return OAuthDeps{Endpoints: eps, HTTPClient: func(proxy string) (*http.Client, error) {
		// The tests' "proxies" are names only; every request really goes
		// direct to the fake on loopback.
		rt, err := pool.Transport("")
		if err != nil {
			return nil, err
		}
		return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			tr.mu.Lock()
			tr.reqs = append(tr.reqs, proxy+" "+r.URL.Path)
			tr.mu.Unlock()
			return rt.RoundTrip(r)
		})}, nil
	}}
}

func (tr *oauthTrace) list() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return strings.Join(tr.reqs, ",")
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func fakeEndpoints(f *fakeupstream.OAuth) oauth.Endpoints {
	return oauth.Endpoints{AuthorizeURL: f.AuthorizeURL(), TokenURL: f.TokenURL(), ProfileURL: f.ProfileURL(), UsageURL: f.UsageURL()}
}

// newOAuthEnv is newTestEnv with the service pointed at a fake OAuth server.
func newOAuthEnv(t *testing.T) (*testEnv, *fakeupstream.OAuth, *oauthTrace) {
	t.Helper()
	e := newTestEnv(t)
	fake := fakeupstream.StartOAuth(t)
	tr := &oauthTrace{}
	e.svc.OAuth = tr.deps(fakeEndpoints(fake))
	return e, fake, tr
}

// approve does the browser's part: it checks the auth URL and returns a
// code the fake issued for its challenge and state.
func approve(t *testing.T, fake *fakeupstream.OAuth, authURL string) string {
	t.Helper()
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if base, _, _ := strings.Cut(authURL, "?"); base != fake.AuthorizeURL() {
		t.Fatalf("auth URL %s does not start with the fake's authorize URL %s", authURL, fake.AuthorizeURL())
	}
	if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 || len(q.Get("state")) != 43 {
		t.Fatalf("auth URL lacks an S256 challenge and state: %s", authURL)
	}
	return fake.IssueCode(q.Get("code_challenge"), q.Get("state"))
}

// approveViaAuthorize follows the auth URL itself (one GET, no redirect
// following), so the fake honours the scope the URL asked for, and returns
// the callback URL the browser would land on.
func approveViaAuthorize(t *testing.T, authURL string) string {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %d", res.StatusCode)
	}
	return res.Header.Get("Location")
}

func dbBytes(t *testing.T, dir string) []byte {
	t.Helper()
	var all []byte
	for _, f := range []string{"crs.db", "crs.db-wal"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

func TestOAuthBrowserFlowStoresSealedCredentialWithPlan(t *testing.T) {
	e, fake, tr := newOAuthEnv(t)
	ctx := context.Background()
	proxy := "http://user:pw@127.0.0.1:3128"
	st, err := e.svc.StartOAuth(ctx, OAuthStart{Kind: "oauth", Proxy: proxy})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(st.SessionID, "oas_") || st.Kind != "oauth" || !st.ExpiresAt.Equal(e.clock.Now().Add(oauth.PendingTTL).UTC()) {
		t.Fatalf("started: %+v", st)
	}
	code := approve(t, fake, st.AuthURL)

	v, err := e.svc.FinishOAuth(ctx, st.SessionID, OAuthFinish{Code: code, Name: "max one", Priority: 7})
	if err != nil {
		t.Fatal(err)
	}
	if v.Type != store.TypeOAuth || v.Platform != store.PlatformClaude || v.Plan != "max" || v.Status != "active" ||
		v.Priority != 7 || v.Name != "max one" || !v.HasSecret || v.Proxy != "http://user:***@127.0.0.1:3128" {
		t.Fatalf("view: %+v", v)
	}
	// Both the exchange and the profile read went through the account's proxy.
	if got := tr.list(); got != proxy+" /v1/oauth/token,"+proxy+" /api/oauth/profile" {
		t.Fatalf("requests = %s", got)
	}

	list, err := e.svc.ListAccounts(ctx)
	if err != nil || len(list) != 1 || list[0].Plan != "max" || list[0].Type != store.TypeOAuth {
		t.Fatalf("list: %+v %v", list, err)
	}

	a, err := e.st.GetAccount(ctx, v.ID)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := oauth.OpenCredential(e.svc.Box, a.SealedSecret)
	if err != nil {
		t.Fatal(err)
	}
	if !fake.AccessTokenValid(cred.AccessToken) || cred.RefreshToken == "" || cred.Plan != "max" ||
		cred.Email != fakeupstream.OAuthEmail || cred.AccountUUID != fakeupstream.OAuthAccountUUID ||
		!cred.ExpiresAt.After(time.Now().Add(7*time.Hour)) {
		t.Fatalf("credential: %v", cred)
	}
	p, err := e.svc.Box.Open(a.SealedProxy)
	if err != nil || string(p) != proxy {
		t.Fatalf("proxy: %q %v", p, err)
	}
	db := dbBytes(t, e.dataDir)
	for _, s := range []string{cred.AccessToken, cred.RefreshToken, "user:pw"} {
		if bytes.Contains(db, []byte(s)) {
			t.Fatalf("plaintext secret %.12s… found in the database file", s)
		}
	}

	// The session is single use.
	_, err = e.svc.FinishOAuth(ctx, st.SessionID, OAuthFinish{Code: code, Name: "again", Priority: 7})
	if !IsInvalid(err) || !strings.Contains(err.Error(), "session_id") {
		t.Fatalf("second finish: %v", err)
	}
	if n := fake.ExchangeCalls(); n != 1 {
		t.Fatalf("exchange calls = %d, want 1", n)
	}
}

func TestOAuthFinishAcceptsCallbackURLAndSurvivesTypos(t *testing.T) {
	e, fake, _ := newOAuthEnv(t)
	fake.SetPlan("pro")
	ctx := context.Background()
	st, err := e.svc.StartOAuth(ctx, OAuthStart{})
	if err != nil {
		t.Fatal(err)
	}
	cb := approveViaAuthorize(t, st.AuthURL)
	if !strings.HasPrefix(cb, oauth.ClaudeRedirectURI+"?code=") {
		t.Fatalf("callback %s", cb)
	}
	// Bad input is refused before the session is taken.
	for _, bad := range []OAuthFinish{
		{Code: "short", Name: "n", Priority: 1},
		{Code: cb, Name: "bad\x01name", Priority: 1},
		{Code: cb, Name: "n", Priority: 0},
	} {
		if _, err := e.svc.FinishOAuth(ctx, st.SessionID, bad); !IsInvalid(err) {
			t.Fatalf("%+v: %v", bad, err)
		}
	}
	v, err := e.svc.FinishOAuth(ctx, st.SessionID, OAuthFinish{Code: cb, Name: "pro", Priority: 50})
	if err != nil {
		t.Fatal(err)
	}
	if v.Plan != "pro" || v.Type != store.TypeOAuth || v.Proxy != "" {
		t.Fatalf("view: %+v", v)
	}
}

func TestOAuthExpiredOrUnknownSessionFails(t *testing.T) {
	e, fake, _ := newOAuthEnv(t)
	ctx := context.Background()
	st, err := e.svc.StartOAuth(ctx, OAuthStart{})
	if err != nil {
		t.Fatal(err)
	}
	code := approve(t, fake, st.AuthURL)
	e.clock.Advance(oauth.PendingTTL + time.Second)
	for _, id := range []string{st.SessionID, "oas_unknown", ""} {
		_, err = e.svc.FinishOAuth(ctx, id, OAuthFinish{Code: code, Name: "late", Priority: 50})
		var inv *InvalidError
		if !errors.As(err, &inv) || inv.Field != "session_id" {
			t.Fatalf("%q: %v", id, err)
		}
	}
	if fake.ExchangeCalls() != 0 {
		t.Fatal("an expired session still reached the token endpoint")
	}
}

func TestOAuthRefusedCodeIsAnOAuthError(t *testing.T) {
	e, _, _ := newOAuthEnv(t)
	ctx := context.Background()
	st, err := e.svc.StartOAuth(ctx, OAuthStart{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.FinishOAuth(ctx, st.SessionID, OAuthFinish{Code: "neverIssuedByTheServer", Name: "x", Priority: 50})
	var oe *OAuthError
	if !errors.As(err, &oe) || !oe.Refused() || strings.Contains(err.Error(), "neverIssued") {
		t.Fatalf("err = %v", err)
	}
	if as, _ := e.svc.ListAccounts(ctx); len(as) != 0 {
		t.Fatalf("an account was stored: %+v", as)
	}
}

func TestOAuthSetupTokenSkipsProfile(t *testing.T) {
	e, fake, tr := newOAuthEnv(t)
	ctx := context.Background()
	st, err := e.svc.StartOAuth(ctx, OAuthStart{Kind: "setup-token"})
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := url.Parse(st.AuthURL); u.Query().Get("scope") != oauth.ScopesSetupToken || st.Kind != "setup-token" {
		t.Fatalf("auth URL %s", st.AuthURL)
	}
	cb := approveViaAuthorize(t, st.AuthURL)
	v, err := e.svc.FinishOAuth(ctx, st.SessionID, OAuthFinish{Code: cb, Name: "ci", Priority: 50})
	if err != nil {
		t.Fatal(err)
	}
	if v.Type != store.TypeSetupToken || v.Plan != "" || v.Status != "active" {
		t.Fatalf("view: %+v", v)
	}
	if got := tr.list(); got != " /v1/oauth/token" {
		t.Fatalf("requests = %s, want only the exchange", got)
	}
	a, _ := e.st.GetAccount(ctx, v.ID)
	cred, err := oauth.OpenCredential(e.svc.Box, a.SealedSecret)
	if err != nil || cred.RefreshToken != "" || !fake.AccessTokenValid(cred.AccessToken) ||
		cred.ExpiresAt.Before(time.Now().Add(300*24*time.Hour)) {
		t.Fatalf("credential %v %v", cred, err)
	}
	if _, err := e.svc.StartOAuth(ctx, OAuthStart{Kind: "api-key"}); !IsInvalid(err) {
		t.Fatalf("kind api-key: %v", err)
	}
	if _, err := e.svc.StartOAuth(ctx, OAuthStart{Proxy: "ftp://x"}); !IsInvalid(err) {
		t.Fatalf("bad proxy: %v", err)
	}
}

func TestOAuthSecondInstanceFinishesWhatFirstStarted(t *testing.T) {
	e, fake, _ := newOAuthEnv(t)
	ctx := context.Background()
	st, err := e.svc.StartOAuth(ctx, OAuthStart{})
	if err != nil {
		t.Fatal(err)
	}
	st2, err := sqlite.Open(ctx, filepath.Join(e.dataDir, "crs.db"), sqlite.Options{Location: time.UTC, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	other := &Service{Store: st2, Box: e.svc.Box, Now: e.clock.Now, OAuth: OAuthDeps{Endpoints: fakeEndpoints(fake)}}
	v, err := other.FinishOAuth(ctx, st.SessionID, OAuthFinish{Code: approve(t, fake, st.AuthURL), Name: "elsewhere", Priority: 50})
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.GetAccount(ctx, v.ID)
	if err != nil || got.Plan != "max" {
		t.Fatalf("first instance sees %+v %v", got, err)
	}
}

func TestOAuthImportClaudeCodeCredential(t *testing.T) {
	e, fake, _ := newOAuthEnv(t)
	ctx := context.Background()
	// A real token pair from the fake, as Claude Code would have stored it.
	p, _ := oauth.NewPending(oauth.KindOAuth, time.Now())
	tok, err := (&oauth.Client{Endpoints: fakeEndpoints(fake)}).Exchange(ctx, p, fake.IssueCode(p.Challenge(), p.State))
	if err != nil {
		t.Fatal(err)
	}
	file := fmt.Sprintf(`{"claudeAiOauth":{"accessToken":%q,"refreshToken":%q,"expiresAt":%d,"scopes":["user:inference","user:profile"],"subscriptionType":"max"}}`,
		tok.AccessToken, tok.RefreshToken, tok.ExpiresAt.UnixMilli())
	v, err := e.svc.ImportOAuth(ctx, OAuthImport{JSON: []byte(file), Name: "imported", Priority: 20, Proxy: "socks5://127.0.0.1:1080"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Type != store.TypeOAuth || v.Plan != "max" || v.Priority != 20 || v.Proxy != "socks5://127.0.0.1:1080" {
		t.Fatalf("view %+v", v)
	}
	a, _ := e.st.GetAccount(ctx, v.ID)
	cred, err := oauth.OpenCredential(e.svc.Box, a.SealedSecret)
	if err != nil || cred.AccessToken != tok.AccessToken || cred.RefreshToken != tok.RefreshToken ||
		cred.ExpiresAt.UnixMilli() != tok.ExpiresAt.UnixMilli() {
		t.Fatalf("credential %v %v", cred, err)
	}

	// Unknown to the server: the profile fails, the import does not.
	bare := `{"accessToken":"sk-ant-oat01-unknown-to-the-fake","expiresAt":"1893456000000"}`
	v, err = e.svc.ImportOAuth(ctx, OAuthImport{JSON: []byte(bare), Name: "setup", Priority: 50})
	if err != nil || v.Type != store.TypeSetupToken || v.Plan != "" {
		t.Fatalf("bare: %+v %v", v, err)
	}
	for _, bad := range []string{``, `[]`, `{"claudeAiOauth":{"refreshToken":"x"}}`, `{"accessToken":"a","expiresAt":"soon"}`} {
		_, err := e.svc.ImportOAuth(ctx, OAuthImport{JSON: []byte(bad), Name: "bad", Priority: 50})
		var inv *InvalidError
		if !errors.As(err, &inv) || inv.Field != "credential" {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}

func TestOAuthAccountsKeepApiKeyPathsClosed(t *testing.T) {
	e, fake, _ := newOAuthEnv(t)
	ctx := context.Background()
	if _, err := e.svc.AddAccount(ctx, AccountInput{Platform: "claude", Type: "oauth", Name: "x", APIKey: "sk-ant-oat01-x", Priority: 50}); !IsInvalid(err) {
		t.Fatalf("AddAccount oauth: %v", err)
	}
	st, _ := e.svc.StartOAuth(ctx, OAuthStart{})
	v, err := e.svc.FinishOAuth(ctx, st.SessionID, OAuthFinish{Code: approve(t, fake, st.AuthURL), Name: "o", Priority: 50})
	if err != nil {
		t.Fatal(err)
	}
	key := "sk-ant-api03-replacement"
	if _, err := e.svc.UpdateAccount(ctx, v.ID, AccountPatch{APIKey: &key}); !IsInvalid(err) {
		t.Fatalf("UpdateAccount api_key on oauth account: %v", err)
	}
	// An unreadable credential does not break the listing.
	a, _ := e.st.GetAccount(ctx, v.ID)
	a.SealedSecret = []byte("garbage")
	if err := e.st.UpdateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	list, err := e.svc.ListAccounts(ctx)
	// The plan is stored beside the credential, not inside it.
	if err != nil || len(list) != 1 || list[0].Plan != "max" {
		t.Fatalf("list %+v %v", list, err)
	}
}

func TestOAuthAdminAPI(t *testing.T) {
	e, fake, _ := newOAuthEnv(t)
	tok := e.login()

	r := e.authed(tok, "POST", "/admin/accounts/oauth/start", map[string]any{"kind": "oauth", "proxy": ""})
	want(t, r, http.StatusOK, "")
	var st OAuthStarted
	r.json(t, &st)
	code := approve(t, fake, st.AuthURL)

	want(t, e.authed(tok, "POST", "/admin/accounts/oauth/finish", map[string]any{"session_id": st.SessionID, "code": "bad"}),
		http.StatusBadRequest, "invalid_request")
	r = e.authed(tok, "POST", "/admin/accounts/oauth/finish", map[string]any{"session_id": st.SessionID, "code": code, "name": "api", "priority": 9})
	want(t, r, http.StatusCreated, "")
	var v AccountView
	r.json(t, &v)
	if v.Plan != "max" || v.Type != store.TypeOAuth || v.Priority != 9 {
		t.Fatalf("view %+v", v)
	}
	if !bytes.Contains(r.body, []byte(`"plan":"max"`)) {
		t.Fatalf("body lacks plan: %s", r.body)
	}
	r = e.authed(tok, "POST", "/admin/accounts/oauth/finish", map[string]any{"session_id": st.SessionID, "code": code, "name": "api"})
	want(t, r, http.StatusBadRequest, "invalid_request")
	if !strings.Contains(r.errorMessage(), "session_id") {
		t.Fatalf("message %q", r.errorMessage())
	}

	// A code the server refuses is the admin's problem to redo, not a 500.
	r = e.authed(tok, "POST", "/admin/accounts/oauth/start", map[string]any{})
	r.json(t, &st)
	want(t, e.authed(tok, "POST", "/admin/accounts/oauth/finish", map[string]any{"session_id": st.SessionID, "code": "neverIssuedByTheServer", "name": "n"}),
		http.StatusBadRequest, "oauth_refused")
	fake.FailNext(http.StatusServiceUnavailable, "")
	r = e.authed(tok, "POST", "/admin/accounts/oauth/start", map[string]any{})
	r.json(t, &st)
	want(t, e.authed(tok, "POST", "/admin/accounts/oauth/finish", map[string]any{"session_id": st.SessionID, "code": approve(t, fake, st.AuthURL), "name": "n"}),
		http.StatusBadGateway, "oauth_failed")

	// Import, with the credential as an object and as a string.
	obj := `{"claudeAiOauth":{"accessToken":"sk-ant-oat01-a","refreshToken":"sk-ant-ort01-b","expiresAt":1893456000000}}`
	r = e.authed(tok, "POST", "/admin/accounts/oauth/import", `{"credential":`+obj+`,"name":"imp","proxy":"http://127.0.0.1:8080"}`)
	want(t, r, http.StatusCreated, "")
	r.json(t, &v)
	if v.Type != store.TypeOAuth || v.Priority != DefaultPriority || v.Proxy != "http://127.0.0.1:8080" {
		t.Fatalf("import view %+v", v)
	}
	r = e.authed(tok, "POST", "/admin/accounts/oauth/import", map[string]any{"credential": obj, "name": "imp2", "priority": 3})
	want(t, r, http.StatusCreated, "")
	want(t, e.authed(tok, "POST", "/admin/accounts/oauth/import", map[string]any{"name": "none"}), http.StatusBadRequest, "invalid_request")

	r = e.authed(tok, "GET", "/admin/accounts", nil)
	var list []AccountView
	r.json(t, &list)
	if len(list) != 3 || list[0].Plan != "max" || list[1].Plan != "" {
		t.Fatalf("list %+v", list)
	}
	// Without a session the new routes refuse (the route-table test checks
	// every route; this is the direct case).
	want(t, e.do("POST", "/admin/accounts/oauth/start", "{}"), http.StatusUnauthorized, "unauthorized")
}
