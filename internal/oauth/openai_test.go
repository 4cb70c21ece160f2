package oauth_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/oauth"
	"github.com/crs-relay/crs/internal/store"
)

// onboardOpenAI runs the onboarding against the fake: the admin approves,
// pastes the localhost callback URL, and the code is exchanged.
func onboardOpenAI(t *testing.T, f *fakeOpenAIOAuth) oauth.Token {
	t.Helper()
	p, err := oauth.NewPending(oauth.KindOAuth, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	callback := oauth.OpenAIRedirectURI + "?code=" + url.QueryEscape(f.IssueCode(p.Challenge())) +
		"&scope=openid+profile+email+offline_access&state=" + p.State
	code, err := oauth.ParseCodeFor(store.PlatformOpenAI, callback)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := f.client().Exchange(testCtx(t), p, code)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok
}

func TestOpenAIAuthURLParams(t *testing.T) {
	p, _ := oauth.NewPending(oauth.KindOAuth, time.Now())
	u, err := url.Parse(oauth.DefaultOpenAIEndpoints().AuthURL(p))
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Scheme + "://" + u.Host + u.Path; got != "https://auth.openai.com/oauth/authorize" {
		t.Errorf("base %q", got)
	}
	want := map[string]string{
		"response_type":              "code",
		"client_id":                  "app_EMoamEEZ73f0CkXaXp7hrann",
		"redirect_uri":               "http://localhost:1455/auth/callback",
		"scope":                      "openid profile email offline_access",
		"code_challenge":             p.Challenge(),
		"code_challenge_method":      "S256",
		"id_token_add_organizations": "true",
		"codex_cli_simplified_flow":  "true",
		"state":                      p.State,
	}
	q := u.Query()
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, q.Get(k), v)
		}
	}
	if len(q) != len(want) {
		t.Errorf("%d params, want %d: %v", len(q), len(want), q)
	}
	if strings.Contains(u.RawQuery, p.Verifier) {
		t.Error("verifier in authorize URL")
	}
	// A configured URL that already has a query keeps it.
	e := oauth.OpenAIEndpoints{AuthorizeURL: "https://auth.example/authorize?tenant=x"}
	if u, _ := url.Parse(e.AuthURL(p)); u.Query().Get("tenant") != "x" || u.Query().Get("state") != p.State {
		t.Errorf("query merge: %s", u)
	}
}

func TestDefaultOpenAIAndGoogleEndpoints(t *testing.T) {
	if got := oauth.DefaultOpenAIEndpoints(); got != (oauth.OpenAIEndpoints{
		AuthorizeURL: "https://auth.openai.com/oauth/authorize", TokenURL: "https://auth.openai.com/oauth/token",
	}) {
		t.Errorf("openai %+v", got)
	}
	if got := oauth.DefaultGoogleEndpoints(); got != (oauth.GoogleEndpoints{
		AuthorizeURL: "https://accounts.google.com/o/oauth2/v2/auth", TokenURL: "https://oauth2.googleapis.com/token",
		CodeAssistURL: "https://cloudcode-pa.googleapis.com",
	}) {
		t.Errorf("google %+v", got)
	}
	set := oauth.DefaultEndpointSet()
	if set.Claude != oauth.DefaultClaudeEndpoints() || set.OpenAI != oauth.DefaultOpenAIEndpoints() || set.Google != oauth.DefaultGoogleEndpoints() {
		t.Errorf("set %+v", set)
	}
}

func TestOpenAIExchange(t *testing.T) {
	f := startFakeOpenAIOAuth(t)
	before := time.Now()
	tok := onboardOpenAI(t, f)
	if tok.AccessToken == "" || !strings.HasPrefix(tok.RefreshToken, "oai_rt_") {
		t.Errorf("tokens %v", tok)
	}
	if d := tok.ExpiresAt.Sub(before); d < 10*24*time.Hour-time.Minute || d > 10*24*time.Hour+time.Minute {
		t.Errorf("expires in %v, want the expires_in of 10 days", d)
	}
	if tok.ChatGPTAccountID != fakeChatGPTAccount || tok.Plan != "pro" || tok.Email != fakeChatGPTEmail {
		t.Errorf("id_token claims: account %q plan %q email %q", tok.ChatGPTAccountID, tok.Plan, tok.Email)
	}
	if !tok.HasScope("offline_access") {
		t.Errorf("scopes %v", tok.Scopes)
	}
	c := oauth.CredentialFromToken(tok)
	if c.ChatGPTAccountID != fakeChatGPTAccount || c.Plan != "pro" || c.AccessToken != tok.AccessToken {
		t.Errorf("credential %v", c)
	}
	reqs := f.Requests()
	r := reqs[len(reqs)-1]
	if r.ContentType != "application/x-www-form-urlencoded" {
		t.Errorf("exchange content type %q", r.ContentType)
	}
	for k, v := range map[string]string{"grant_type": "authorization_code", "client_id": oauth.OpenAIClientID, "redirect_uri": oauth.OpenAIRedirectURI} {
		if r.Form.Get(k) != v {
			t.Errorf("form %s = %q", k, r.Form.Get(k))
		}
	}
	if r.Form.Get("code") == "" || r.Form.Get("code_verifier") == "" || len(r.Form) != 5 {
		t.Errorf("form fields %v", r.Form)
	}
}

func TestOpenAIExchangeRefusals(t *testing.T) {
	f := startFakeOpenAIOAuth(t)
	c := f.client()
	ctx := testCtx(t)
	t.Run("wrong verifier", func(t *testing.T) {
		p, _ := oauth.NewPending(oauth.KindOAuth, time.Now())
		other, _ := oauth.NewPending(oauth.KindOAuth, time.Now())
		code := f.IssueCode(other.Challenge())
		_, err := c.Exchange(ctx, p, code)
		if !errors.Is(err, oauth.ErrInvalidGrant) {
			t.Fatalf("err %v", err)
		}
		noLeak(t, err, code, p.Verifier)
	})
	t.Run("code reuse", func(t *testing.T) {
		p, _ := oauth.NewPending(oauth.KindOAuth, time.Now())
		code := f.IssueCode(p.Challenge())
		if _, err := c.Exchange(ctx, p, code); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exchange(ctx, p, code); !errors.Is(err, oauth.ErrInvalidGrant) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("expired pending", func(t *testing.T) {
		p, _ := oauth.NewPending(oauth.KindOAuth, time.Now().Add(-11*time.Minute))
		if _, err := c.Exchange(ctx, p, f.IssueCode(p.Challenge())); !errors.Is(err, oauth.ErrPendingExpired) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("setup-token kind", func(t *testing.T) {
		p, _ := oauth.NewPending(oauth.KindSetupToken, time.Now())
		if _, err := c.Exchange(ctx, p, f.IssueCode(p.Challenge())); err == nil || !strings.Contains(err.Error(), "setup-token") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("no refresh token", func(t *testing.T) {
		p, _ := oauth.NewPending(oauth.KindOAuth, time.Now())
		f.FailNext(200, `{"access_token":"at-only","expires_in":3600}`)
		if _, err := c.Exchange(ctx, p, f.IssueCode(p.Challenge())); err == nil || !strings.Contains(err.Error(), "no refresh token") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("broken id_token", func(t *testing.T) {
		p, _ := oauth.NewPending(oauth.KindOAuth, time.Now())
		f.FailNext(200, `{"access_token":"at","refresh_token":"rt-secret-value","expires_in":3600,"id_token":"not-a-jwt"}`)
		_, err := c.Exchange(ctx, p, f.IssueCode(p.Challenge()))
		if err == nil || !strings.Contains(err.Error(), "id_token") {
			t.Fatalf("err %v", err)
		}
		noLeak(t, err, "rt-secret-value", "not-a-jwt")
	})
}

func TestOpenAIRefreshRotates(t *testing.T) {
	f := startFakeOpenAIOAuth(t)
	c := f.client()
	first := onboardOpenAI(t, f)
	f.set(func(f *fakeOpenAIOAuth) { f.plan = "plus" })
	second, err := c.Refresh(testCtx(t), first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken {
		t.Fatal("refresh did not rotate both tokens")
	}
	if second.ChatGPTAccountID != fakeChatGPTAccount || second.Plan != "plus" {
		t.Errorf("refreshed claims: %q %q", second.ChatGPTAccountID, second.Plan)
	}
	reqs := f.Requests()
	r := reqs[len(reqs)-1]
	var body map[string]any
	if r.ContentType != "application/json" || json.Unmarshal(r.Body, &body) != nil {
		t.Fatalf("refresh sent %q %s", r.ContentType, r.Body)
	}
	if body["grant_type"] != "refresh_token" || body["client_id"] != oauth.OpenAIClientID ||
		body["refresh_token"] != first.RefreshToken || body["scope"] != "openid profile email" || len(body) != 4 {
		t.Errorf("refresh body %v", keys(body))
	}

	// The spent token is refused for good, with OpenAI's nested error shape.
	_, err = c.Refresh(testCtx(t), first.RefreshToken)
	var te *oauth.TokenError
	if !errors.Is(err, oauth.ErrInvalidGrant) || !errors.As(err, &te) || te.Code != "refresh_token_reused" || te.Status != 401 {
		t.Fatalf("reuse: %v", err)
	}
	noLeak(t, err, first.RefreshToken, second.RefreshToken)
	if n := f.RefreshCalls(); n != 2 {
		t.Errorf("refresh calls %d, want 2 (no retry on an HTTP answer)", n)
	}
}

func TestOpenAIRefreshThinAnswers(t *testing.T) {
	f := startFakeOpenAIOAuth(t)
	c := f.client()
	tok := onboardOpenAI(t, f)

	// No id_token: identity stays empty for the Refresher to carry on.
	f.set(func(f *fakeOpenAIOAuth) { f.omitIDToken = true })
	got, err := c.Refresh(testCtx(t), tok.RefreshToken)
	if err != nil || got.ChatGPTAccountID != "" || got.Plan != "" || got.Email != "" {
		t.Fatalf("thin refresh: %v, %v", got, err)
	}

	// No expires_in: the access token's exp claim decides.
	f.set(func(f *fakeOpenAIOAuth) { f.omitExpiries = true })
	before := time.Now()
	got, err = c.Refresh(testCtx(t), got.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if d := got.ExpiresAt.Sub(before); d < 10*24*time.Hour-time.Minute || d > 10*24*time.Hour+time.Minute {
		t.Errorf("expiry from the access token: %v", d)
	}

	// No expires_in and an opaque access token: an error, not a token
	// that would look due forever.
	f.FailNext(200, `{"access_token":"opaque","refresh_token":"next"}`)
	if _, err := c.Refresh(testCtx(t), got.RefreshToken); err == nil || !strings.Contains(err.Error(), "expires_in") {
		t.Fatalf("err %v", err)
	}

	// No refresh_token in the answer: the sent one is kept.
	f.FailNext(200, `{"access_token":"at-new","expires_in":60}`)
	kept, err := c.Refresh(testCtx(t), got.RefreshToken)
	if err != nil || kept.RefreshToken != got.RefreshToken {
		t.Fatalf("kept %v, %v", kept, err)
	}
}

func TestOpenAIRefreshErrorClassification(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		dead   bool
	}{
		{401, `{"error":{"message":"Your refresh token has expired.","type":"invalid_request_error","code":"refresh_token_expired"}}`, true},
		{401, `{"error":{"message":"revoked","type":"invalid_request_error","code":"refresh_token_invalidated"}}`, true},
		{400, `{"error":"invalid_grant","error_description":"Invalid refresh token"}`, true},
		{401, `{"error":"invalid_client"}`, false},
		{429, `{"error":{"message":"slow down","type":"rate_limit_error"}}`, false},
		{502, `<html>bad gateway</html>`, false},
	} {
		f := startFakeOpenAIOAuth(t)
		tok := onboardOpenAI(t, f)
		f.FailNext(tc.status, tc.body)
		_, err := f.client().Refresh(testCtx(t), tok.RefreshToken)
		if err == nil || errors.Is(err, oauth.ErrInvalidGrant) != tc.dead {
			t.Errorf("%d %s: err %v, want dead=%v", tc.status, tc.body, err, tc.dead)
		}
		noLeak(t, err, tok.RefreshToken)
	}
}

func TestOpenAIRefreshRetriesOnceOnConnectionError(t *testing.T) {
	f := startFakeOpenAIOAuth(t)
	tok := onboardOpenAI(t, f)
	c := f.client()
	rt := &failFirstDial{n: 1, next: http.DefaultTransport}
	c.HTTP = &http.Client{Transport: rt}
	got, err := c.Refresh(testCtx(t), tok.RefreshToken)
	if err != nil || rt.calls.Load() != 2 || f.RefreshCalls() != 1 || got.RefreshToken == tok.RefreshToken {
		t.Fatalf("err %v, round trips %d, server calls %d", err, rt.calls.Load(), f.RefreshCalls())
	}
	rt = &failFirstDial{n: 5, next: http.DefaultTransport}
	c.HTTP = &http.Client{Transport: rt}
	if _, err := c.Refresh(testCtx(t), got.RefreshToken); err == nil || rt.calls.Load() != 2 {
		t.Fatalf("err %v after %d round trips, want failure after 2", err, rt.calls.Load())
	}
}

func TestOpenAIRefreshWithoutToken(t *testing.T) {
	if _, err := (&oauth.OpenAIClient{}).Refresh(testCtx(t), ""); err == nil {
		t.Fatal("refreshed without a refresh token")
	}
}
