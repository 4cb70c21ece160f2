package fakeupstream

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func httptestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func oaiS256(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// postOpenAIToken sends a token request and decodes the JSON answer.
func postOpenAIToken(t *testing.T, oa *OpenAIOAuth, contentType, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequestWithContext(oaiCtx(t), http.MethodPost, oa.TokenURL(), strings.NewReader(body))
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

// codexExchangeForm is the Codex CLI's code exchange body.
func codexExchangeForm(code, verifier string) string {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {OpenAIRedirectURI},
		"client_id": {OpenAIClientID}, "code_verifier": {verifier}}.Encode()
}

const formType = "application/x-www-form-urlencoded"

// codexTokens is one login's tokens.
type codexTokens struct {
	access, refresh, id, account string
}

// header is what the Codex backend needs from them.
func (c codexTokens) header() map[string]string {
	return map[string]string{"Authorization": "Bearer " + c.access, "ChatGPT-Account-ID": c.account}
}

// codexLogin runs the code exchange against oa for its current identity.
func codexLogin(t *testing.T, oa *OpenAIOAuth) codexTokens {
	t.Helper()
	const verifier = "codex-verifier-codex-verifier-codex-verifier-0123"
	status, m := postOpenAIToken(t, oa, formType, codexExchangeForm(oa.IssueCode(oaiS256(verifier), "st"), verifier))
	if status != 200 {
		t.Fatalf("exchange: %d %v", status, m)
	}
	tok := codexTokens{access: m["access_token"].(string), refresh: m["refresh_token"].(string), id: m["id_token"].(string)}
	auth, _ := jwtClaims(t, tok.id)[OpenAIAuthClaim].(map[string]any)
	tok.account, _ = auth["chatgpt_account_id"].(string)
	return tok
}

// jwtClaims decodes a JWT's payload without verifying it, as Codex does.
func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("%q is not a JWT", tok)
	}
	head, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	payload, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	var h, claims map[string]any
	if err1 != nil || err2 != nil || json.Unmarshal(head, &h) != nil || json.Unmarshal(payload, &claims) != nil || h["alg"] != "HS256" {
		t.Fatalf("JWT %q does not decode", tok)
	}
	return claims
}

func TestOpenAIOAuthExchange(t *testing.T) {
	oa := StartOpenAIOAuth(t)
	const verifier = "exchange-verifier-exchange-verifier-0123456789"
	code := oa.IssueCode(oaiS256(verifier), "st")
	before := time.Now()
	status, m := postOpenAIToken(t, oa, formType, codexExchangeForm(code, verifier))
	if status != 200 || m["token_type"] != "Bearer" || m["expires_in"] != 864000.0 || m["scope"] != OpenAIScope ||
		!strings.HasPrefix(m["refresh_token"].(string), "rt_") {
		t.Fatalf("exchange: %d %v", status, m)
	}

	id := jwtClaims(t, m["id_token"].(string))
	auth, _ := id[OpenAIAuthClaim].(map[string]any)
	aud, _ := id["aud"].([]any)
	if auth["chatgpt_account_id"] != OpenAIAccountID || auth["chatgpt_plan_type"] != "plus" || auth["chatgpt_user_id"] != OpenAIUserID ||
		id["email"] != OpenAIEmail || id["iss"] != OpenAIIssuer || len(aud) != 1 || aud[0] != OpenAIClientID {
		t.Errorf("id_token claims = %v", id)
	}
	access := m["access_token"].(string)
	ac := jwtClaims(t, access)
	exp := time.Unix(int64(ac["exp"].(float64)), 0)
	if aa, _ := ac[OpenAIAuthClaim].(map[string]any); aa["chatgpt_account_id"] != OpenAIAccountID ||
		exp.Sub(before.Add(openaiDefaultAccessTTL)).Abs() > 5*time.Second {
		t.Errorf("access token claims = %v", ac)
	}
	if !oa.AccessTokenValid(access) || oa.AccessTokenValid(access+"x") {
		t.Errorf("AccessTokenValid is wrong about the issued token")
	}
	// Codes are single use.
	if status, m := postOpenAIToken(t, oa, formType, codexExchangeForm(code, verifier)); status != 400 || m["error"] != "invalid_grant" {
		t.Errorf("code reuse: %d %v", status, m)
	}
	if n := oa.ExchangeCalls(); n != 2 {
		t.Errorf("ExchangeCalls = %d, want 2", n)
	}
}

func TestOpenAIOAuthTokenEnforcement(t *testing.T) {
	oa := StartOpenAIOAuth(t)
	const verifier = "enforce-verifier-enforce-verifier-0123456789"
	jsonBody := func(code string, edit func(map[string]string)) string {
		m := map[string]string{"grant_type": "authorization_code", "client_id": OpenAIClientID, "code": code,
			"redirect_uri": OpenAIRedirectURI, "code_verifier": verifier}
		if edit != nil {
			edit(m)
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	for _, tc := range []struct {
		name, contentType string
		body              func(code string) string
		status            int
		errCode           string
	}{
		{"form", formType, func(c string) string { return codexExchangeForm(c, verifier) }, 200, ""},
		{"json", "application/json", func(c string) string { return jsonBody(c, nil) }, 200, ""},
		{"same state may be sent", "application/json", func(c string) string { return jsonBody(c, func(m map[string]string) { m["state"] = "st" }) }, 200, ""},
		{"other state", "application/json", func(c string) string { return jsonBody(c, func(m map[string]string) { m["state"] = "other" }) }, 400, "invalid_grant"},
		{"text body", "text/plain", func(c string) string { return codexExchangeForm(c, verifier) }, 400, "invalid_request"},
		{"broken json", "application/json", func(string) string { return "{" }, 400, "invalid_request"},
		{"claude's client", formType, func(c string) string {
			return strings.Replace(codexExchangeForm(c, verifier), OpenAIClientID, OAuthClientID, 1)
		}, 401, "invalid_client"},
		{"fallback port redirect", "application/json", func(c string) string {
			return jsonBody(c, func(m map[string]string) { m["redirect_uri"] = "http://localhost:1457/auth/callback" })
		}, 400, "invalid_grant"},
		{"unknown code", formType, func(string) string { return codexExchangeForm("ac_nope", verifier) }, 400, "invalid_grant"},
		{"wrong verifier", formType, func(c string) string { return codexExchangeForm(c, verifier+"x") }, 400, "invalid_grant"},
		{"password grant", "application/json", func(string) string {
			return `{"grant_type":"password","client_id":"` + OpenAIClientID + `"}`
		}, 400, "unsupported_grant_type"},
	} {
		code := oa.IssueCode(oaiS256(verifier), "st")
		status, m := postOpenAIToken(t, oa, tc.contentType, tc.body(code))
		if status != tc.status || (tc.errCode != "" && m["error"] != tc.errCode) {
			t.Errorf("%s: %d %v, want %d %s", tc.name, status, m, tc.status, tc.errCode)
		}
		if tc.status != 200 && m["error_description"] == "" {
			t.Errorf("%s: no error_description", tc.name)
		}
	}
}

// TestOpenAIOAuthRefreshRotation: refresh tokens are single use; both the
// Codex CLI's JSON refresh and a form refresh rotate them; a reused one
// gets invalid_grant; FailNext consumes nothing.
func TestOpenAIOAuthRefreshRotation(t *testing.T) {
	oa := StartOpenAIOAuth(t)
	first := codexLogin(t, oa)
	jsonRefresh := func(rt string) string {
		return `{"client_id":"` + OpenAIClientID + `","grant_type":"refresh_token","refresh_token":"` + rt + `","scope":"openid profile email"}`
	}
	status, m := postOpenAIToken(t, oa, "application/json", jsonRefresh(first.refresh))
	second, _ := m["refresh_token"].(string)
	if status != 200 || second == "" || second == first.refresh || m["id_token"] == nil || !oa.AccessTokenValid(m["access_token"].(string)) {
		t.Fatalf("json refresh: %d %v", status, m)
	}
	status, m = postOpenAIToken(t, oa, "application/json", jsonRefresh(first.refresh))
	if status != 400 || m["error"] != "invalid_grant" || !strings.Contains(m["error_description"].(string), "already been used") {
		t.Errorf("reuse: %d %v", status, m)
	}

	oa.FailNext(503, "")
	form := url.Values{"grant_type": {"refresh_token"}, "client_id": {OpenAIClientID}, "refresh_token": {second}}.Encode()
	if status, m := postOpenAIToken(t, oa, formType, form); status != 503 || m["error"] != "server_error" {
		t.Errorf("fault: %d %v", status, m)
	}
	status, m = postOpenAIToken(t, oa, formType, form)
	third, _ := m["refresh_token"].(string)
	if status != 200 || third == "" || third == second {
		t.Fatalf("form refresh after a fault: %d %v", status, m)
	}
	if status, m := postOpenAIToken(t, oa, formType, url.Values{"grant_type": {"refresh_token"}, "client_id": {OpenAIClientID}, "refresh_token": {"rt_unknown"}}.Encode()); status != 400 || m["error"] != "invalid_grant" {
		t.Errorf("unknown refresh token: %d %v", status, m)
	}
	if n := oa.RefreshCalls(); n != 5 {
		t.Errorf("RefreshCalls = %d, want 5", n)
	}
	if n := len(oa.TokenRequests()); n != 6 { // the login's exchange too
		t.Errorf("TokenRequests = %d, want 6", n)
	}
}

// TestOpenAIOAuthRevoke: revoking a grant kills its refresh tokens and its
// access tokens, also on the Codex backend; other grants live on.
func TestOpenAIOAuthRevoke(t *testing.T) {
	oa := StartOpenAIOAuth(t)
	o := StartOpenAI(t, OpenAIOptions{OAuth: oa})
	doomed, other := codexLogin(t, oa), codexLogin(t, oa)
	oa.Revoke(doomed.refresh)
	if oa.AccessTokenValid(doomed.access) || !oa.AccessTokenValid(other.access) {
		t.Errorf("after Revoke: doomed valid %v, other valid %v", oa.AccessTokenValid(doomed.access), oa.AccessTokenValid(other.access))
	}
	body := url.Values{"grant_type": {"refresh_token"}, "client_id": {OpenAIClientID}, "refresh_token": {doomed.refresh}}.Encode()
	if status, m := postOpenAIToken(t, oa, formType, body); status != 400 || m["error"] != "invalid_grant" {
		t.Errorf("refresh of a revoked grant: %d %v", status, m)
	}
	if resp := oaiDo(t, oaiCtx(t), http.MethodPost, o.CodexURL()+"/responses", codexBody, doomed.header()); resp.StatusCode != 401 {
		t.Errorf("revoked token on the Codex backend: %d", resp.StatusCode)
	}
	if resp := oaiDo(t, oaiCtx(t), http.MethodPost, o.CodexURL()+"/responses", codexBody, other.header()); resp.StatusCode != 200 {
		t.Errorf("other grant on the Codex backend: %d", resp.StatusCode)
	}
}

// TestOpenAIOAuthIdentities: one fake onboards two ChatGPT accounts; each
// token works on the Codex backend only with its own account id.
func TestOpenAIOAuthIdentities(t *testing.T) {
	oa := StartOpenAIOAuth(t)
	o := StartOpenAI(t, OpenAIOptions{OAuth: oa})
	plus := codexLogin(t, oa)
	oa.SetIdentity(OpenAIIdentity{AccountID: "acct-second", UserID: "user-second", Email: "second@example.com", Plan: "pro"})
	pro := codexLogin(t, oa)
	if plus.account != OpenAIAccountID || pro.account != "acct-second" {
		t.Fatalf("accounts %q and %q", plus.account, pro.account)
	}
	if c := jwtClaims(t, pro.id); c["email"] != "second@example.com" || c[OpenAIAuthClaim].(map[string]any)["chatgpt_plan_type"] != "pro" {
		t.Errorf("second id_token = %v", c)
	}
	resp := oaiDo(t, oaiCtx(t), http.MethodPost, o.CodexURL()+"/responses", codexBody, pro.header())
	if resp.StatusCode != 200 || resp.Header.Get(hdrCodexPlanType) != "pro" {
		t.Errorf("pro account: %d plan header %q", resp.StatusCode, resp.Header.Get(hdrCodexPlanType))
	}
	crossed := pro.header()
	crossed["ChatGPT-Account-ID"] = plus.account
	if resp := oaiDo(t, oaiCtx(t), http.MethodPost, o.CodexURL()+"/responses", codexBody, crossed); resp.StatusCode != 403 {
		t.Errorf("token with another account's id: %d, want 403", resp.StatusCode)
	}
}

func TestOpenAIOAuthAuthorize(t *testing.T) {
	oa := StartOpenAIOAuth(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	const verifier = "authorize-verifier-authorize-verifier-0123456"
	good := url.Values{"response_type": {"code"}, "client_id": {OpenAIClientID}, "redirect_uri": {OpenAIRedirectURI},
		"scope": {OpenAIScope}, "code_challenge": {oaiS256(verifier)}, "code_challenge_method": {"S256"}, "state": {"st-1"},
		"id_token_add_organizations": {"true"}, "codex_cli_simplified_flow": {"true"}}
	for _, tc := range []struct {
		field, value string
		status       int
	}{
		{"", "", 302},
		{"client_id", OAuthClientID, 400},
		{"redirect_uri", "http://localhost:1455/other", 400},
		{"response_type", "token", 400},
		{"code_challenge_method", "plain", 400},
		{"code_challenge", "", 400},
		{"state", "", 400},
		{"scope", "profile email", 400},
	} {
		q := url.Values{}
		for k, v := range good {
			q[k] = v
		}
		if tc.field != "" {
			q.Set(tc.field, tc.value)
		}
		req, _ := http.NewRequestWithContext(oaiCtx(t), http.MethodGet, oa.AuthorizeURL()+"?"+q.Encode(), nil)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s=%q: %d, want %d", tc.field, tc.value, resp.StatusCode, tc.status)
			continue
		}
		if tc.status != 302 {
			continue
		}
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if !strings.HasPrefix(loc.String(), OpenAIRedirectURI+"?") || loc.Query().Get("state") != "st-1" {
			t.Fatalf("redirect %s", loc)
		}
		// The code from the redirect exchanges like one from IssueCode.
		if status, m := postOpenAIToken(t, oa, formType, codexExchangeForm(loc.Query().Get("code"), verifier)); status != 200 {
			t.Errorf("exchange of the redirect's code: %d %v", status, m)
		}
	}
}

// TestCodexLoginThenStream is the whole path a relay takes for a Codex
// account: exchange, read the account from the id_token, stream on the
// backend, refresh, stream with the new token.
func TestCodexLoginThenStream(t *testing.T) {
	oa := StartOpenAIOAuth(t)
	o := StartOpenAI(t, OpenAIOptions{OAuth: oa, Name: "codex"})
	tok := codexLogin(t, oa)
	resp := oaiDo(t, oaiCtx(t), http.MethodPost, o.CodexURL()+"/responses", codexBody, tok.header())
	events, _, err := readEvents(t, resp.Body)
	if err != nil || resp.StatusCode != 200 || len(events) == 0 {
		t.Fatalf("stream: %d %v", resp.StatusCode, err)
	}
	last := events[len(events)-1]["response"].(map[string]any)
	if !strings.HasPrefix(last["id"].(string), "resp_codex_") || outputText(last) != ReplyText(5) || last["store"] != false {
		t.Errorf("completed = %v", last)
	}
	checkUsageJSON(t, last["usage"], DefaultOpenAIUsage())

	status, m := postOpenAIToken(t, oa, formType, url.Values{"grant_type": {"refresh_token"}, "client_id": {OpenAIClientID},
		"refresh_token": {tok.refresh}, "scope": {"openid profile email"}}.Encode())
	if status != 200 {
		t.Fatalf("refresh: %d %v", status, m)
	}
	tok.access = m["access_token"].(string)
	if resp := oaiDo(t, oaiCtx(t), http.MethodPost, o.CodexURL()+"/responses", codexBody, tok.header()); resp.StatusCode != 200 {
		t.Errorf("stream with the refreshed token: %d", resp.StatusCode)
	}
}
