package fakeupstream

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func postToken(t *testing.T, o *OAuth, contentType, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequestWithContext(testCtx(t), http.MethodPost, o.TokenURL(), strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m
}

func s256(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func exchangeBody(code, verifier, state string) string {
	b, _ := json.Marshal(map[string]string{"grant_type": "authorization_code", "client_id": OAuthClientID,
		"code": code, "redirect_uri": OAuthRedirectURI, "code_verifier": verifier, "state": state})
	return string(b)
}

func TestOAuthTokenEnforcement(t *testing.T) {
	o := StartOAuth(t)
	const verifier = "verifier-verifier-verifier-verifier-1234567"
	for _, tc := range []struct {
		name        string
		contentType string
		body        func(code string) string
		status      int
		errCode     string
	}{
		{"form encoded", "application/x-www-form-urlencoded", func(c string) string {
			return "grant_type=authorization_code&code=" + c
		}, 400, "invalid_request"},
		{"not json", "application/json", func(string) string { return "{" }, 400, "invalid_request"},
		{"wrong client", "application/json", func(c string) string {
			return strings.Replace(exchangeBody(c, verifier, "st"), OAuthClientID, "other", 1)
		}, 401, "invalid_client"},
		{"wrong redirect", "application/json", func(c string) string {
			return strings.Replace(exchangeBody(c, verifier, "st"), "platform.claude.com", "evil.example", 1)
		}, 400, "invalid_grant"},
		{"wrong grant", "application/json", func(string) string {
			return `{"grant_type":"password","client_id":"` + OAuthClientID + `"}`
		}, 400, "unsupported_grant_type"},
		{"unknown code", "application/json", func(string) string { return exchangeBody("nope-nope-nope", verifier, "st") }, 400, "invalid_grant"},
		{"wrong verifier", "application/json", func(c string) string { return exchangeBody(c, verifier+"x", "st") }, 400, "invalid_grant"},
		{"wrong state", "application/json", func(c string) string { return exchangeBody(c, verifier, "other") }, 400, "invalid_grant"},
		{"ok with charset", "application/json; charset=utf-8", func(c string) string { return exchangeBody(c, verifier, "st") }, 200, ""},
	} {
		code := o.IssueCode(s256(verifier), "st")
		status, m := postToken(t, o, tc.contentType, tc.body(code))
		if status != tc.status || (tc.errCode != "" && m["error"] != tc.errCode) {
			t.Errorf("%s: %d %v, want %d %s", tc.name, status, m, tc.status, tc.errCode)
		}
		if status == 200 {
			if m["refresh_token"] == nil || m["access_token"] == nil || m["expires_in"].(float64) != 28800 || m["scope"] != OAuthFullScope {
				t.Errorf("%s: response %v", tc.name, m)
			}
			if acct, _ := m["account"].(map[string]any); acct["uuid"] != OAuthAccountUUID || acct["email_address"] != OAuthEmail {
				t.Errorf("account %v", m["account"])
			}
			// Single use.
			if status, m := postToken(t, o, "application/json", tc.body(code)); status != 400 || m["error"] != "invalid_grant" {
				t.Errorf("code reuse: %d %v", status, m)
			}
		}
	}
	if n := o.ExchangeCalls(); n != 7 { // form, non-JSON and password grants are not exchanges
		t.Errorf("exchange calls %d", n)
	}
}

func TestOAuthRefreshSingleUse(t *testing.T) {
	o := StartOAuth(t)
	const verifier = "another-verifier-another-verifier-123456789"
	_, m := postToken(t, o, "application/json", exchangeBody(o.IssueCode(s256(verifier), "s"), verifier, "s"))
	rt := m["refresh_token"].(string)
	body := func(rt string) string {
		return `{"grant_type":"refresh_token","client_id":"` + OAuthClientID + `","refresh_token":"` + rt + `"}`
	}
	status, m2 := postToken(t, o, "application/json", body(rt))
	if status != 200 || m2["refresh_token"] == rt || !o.AccessTokenValid(m2["access_token"].(string)) {
		t.Fatalf("refresh: %d %v", status, m2)
	}
	status, m3 := postToken(t, o, "application/json", body(rt))
	if status != 400 || m3["error"] != "invalid_grant" || m3["error_description"] != "Refresh token not found or invalid" {
		t.Errorf("reuse: %d %v", status, m3)
	}
	o.FailNext(503, "")
	if status, m := postToken(t, o, "application/json", body(m2["refresh_token"].(string))); status != 503 || m["error"] != "server_error" {
		t.Errorf("fault: %d %v", status, m)
	}
	if status, _ := postToken(t, o, "application/json", body(m2["refresh_token"].(string))); status != 200 {
		t.Errorf("token consumed by a fault: %d", status)
	}
	if n := o.RefreshCalls(); n != 4 {
		t.Errorf("refresh calls %d, want 4", n)
	}
	if len(o.TokenRequests()) != 5 {
		t.Errorf("recorded %d", len(o.TokenRequests()))
	}
}

func TestOAuthAuthorizeEndpoint(t *testing.T) {
	o := StartOAuth(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	good := url.Values{"code": {"true"}, "client_id": {OAuthClientID}, "response_type": {"code"}, "redirect_uri": {OAuthRedirectURI},
		"scope": {"user:inference"}, "code_challenge": {s256("v")}, "code_challenge_method": {"S256"}, "state": {"st"}}
	for _, tc := range []struct {
		field, value string
		status       int
	}{
		{"", "", 302},
		{"client_id", "x", 400},
		{"redirect_uri", "http://localhost/cb", 400},
		{"code_challenge_method", "plain", 400},
		{"state", "", 400},
	} {
		q := url.Values{}
		for k, v := range good {
			q[k] = v
		}
		if tc.field != "" {
			q.Set(tc.field, tc.value)
		}
		resp, err := noRedirect.Get(o.AuthorizeURL() + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s=%q: %d, want %d", tc.field, tc.value, resp.StatusCode, tc.status)
		}
		if tc.status == 302 {
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if !strings.HasPrefix(loc.String(), OAuthRedirectURI+"?") || loc.Query().Get("state") != "st" || len(loc.Query().Get("code")) < 40 {
				t.Errorf("redirect %s", loc)
			}
		}
	}
}

func TestOAuthBearerChecks(t *testing.T) {
	o := StartOAuth(t)
	get := func(u, auth, beta string) int {
		req, _ := http.NewRequestWithContext(testCtx(t), http.MethodGet, u, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if beta != "" {
			req.Header.Set("anthropic-beta", beta)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	const verifier = "third-verifier-third-verifier-third-verifier"
	_, m := postToken(t, o, "application/json", exchangeBody(o.IssueCode(s256(verifier), "s"), verifier, "s"))
	at := "Bearer " + m["access_token"].(string)
	for _, tc := range []struct {
		name, url, auth, beta string
		want                  int
	}{
		{"profile ok", o.ProfileURL(), at, "", 200},
		{"profile no token", o.ProfileURL(), "", "", 401},
		{"profile unknown token", o.ProfileURL(), "Bearer sk-ant-oat01-x", "", 401},
		{"usage ok", o.UsageURL(), at, "claude-code-20250219, oauth-2025-04-20", 200},
		{"usage no beta", o.UsageURL(), at, "", 401},
		{"other path", o.URL() + "/v1/messages", at, "", 404},
	} {
		if got := get(tc.url, tc.auth, tc.beta); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestAnthropicAcceptsOnlyLiveOAuthTokensWithTheBeta: with Options.OAuth the
// fake Messages API takes a valid access token only together with the
// OAuth beta, and refuses an expired or unknown one with the real text.
func TestAnthropicAcceptsOnlyLiveOAuthTokensWithTheBeta(t *testing.T) {
	o := StartOAuth(t)
	a := StartAnthropic(t, Options{OAuth: o, APIKeys: []string{"sk-ant-api"}})
	tok := issueTestToken(t, o)
	send := func(token, beta string) (int, string) {
		req, _ := http.NewRequest("POST", a.URL()+"/v1/messages", strings.NewReader(`{"model":"m","max_tokens":5,"messages":[]}`))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Anthropic-Version", "2023-06-01")
		req.Header.Set("Content-Type", "application/json")
		if beta != "" {
			req.Header.Set("Anthropic-Beta", beta)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := send(tok, "claude-code-20250219,oauth-2025-04-20"); code != 200 {
		t.Fatalf("valid token with beta: %d %s", code, body)
	}
	if code, body := send(tok, "claude-code-20250219"); code != 401 || !strings.Contains(body, "OAuth authentication is currently not supported") {
		t.Fatalf("without the beta: %d %s", code, body)
	}
	if code, body := send("sk-ant-oat01-unknown", "oauth-2025-04-20"); code != 401 || !strings.Contains(body, "OAuth token has expired") {
		t.Fatalf("unknown token: %d %s", code, body)
	}
	if code, _ := send("sk-ant-api", ""); code != 200 {
		t.Fatalf("api key as bearer: %d", code)
	}
}

// issueTestToken runs the code exchange against o and returns an access token.
func issueTestToken(t *testing.T, o *OAuth) string {
	t.Helper()
	const verifier = "verifier-verifier-verifier-verifier-7654321"
	code := o.IssueCode(s256(verifier), "st")
	status, m := postToken(t, o, "application/json", exchangeBody(code, verifier, "st"))
	tok, _ := m["access_token"].(string)
	if status != 200 || tok == "" {
		t.Fatalf("exchange: %d %v", status, m)
	}
	return tok
}
