package fakeupstream

import (
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// googlePostForm posts a form-encoded token request, as google-auth-library
// does.
func googlePostForm(t *testing.T, o *GoogleOAuth, form url.Values) (int, gjson.Result) {
	t.Helper()
	return googlePostToken(t, o, "application/x-www-form-urlencoded", form.Encode(), nil)
}

func googlePostToken(t *testing.T, o *GoogleOAuth, contentType, body string, prepare func(*http.Request)) (int, gjson.Result) {
	t.Helper()
	req, _ := http.NewRequestWithContext(testCtx(t), http.MethodPost, o.TokenURL(), strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if prepare != nil {
		prepare(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, gjson.ParseBytes(b)
}

// googleExchangeForm is a valid exchange of code with verifier.
func googleExchangeForm(code, verifier string) url.Values {
	f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {GoogleOAuthRedirectURI},
		"client_id": {GoogleOAuthClientID}, "client_secret": {GoogleOAuthClientSecret}}
	if verifier != "" {
		f.Set("code_verifier", verifier)
	}
	return f
}

func googleRefreshForm(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt},
		"client_id": {GoogleOAuthClientID}, "client_secret": {GoogleOAuthClientSecret}}
}

func TestGoogleOAuthExchange(t *testing.T) {
	o := StartGoogleOAuth(t)
	const verifier = "google-verifier-google-verifier-google-verifier"
	with := func(f url.Values, key, value string) url.Values {
		f.Set(key, value)
		return f
	}
	without := func(f url.Values, key string) url.Values {
		f.Del(key)
		return f
	}
	for _, tc := range []struct {
		name        string
		contentType string
		body        func(code string) string
		basic       bool
		status      int
		errCode     string
	}{
		{"form", "application/x-www-form-urlencoded", func(c string) string { return googleExchangeForm(c, verifier).Encode() }, false, 200, ""},
		{"json", "application/json", func(c string) string {
			return `{"grant_type":"authorization_code","code":"` + c + `","redirect_uri":"` + GoogleOAuthRedirectURI +
				`","code_verifier":"` + verifier + `","client_id":"` + GoogleOAuthClientID + `","client_secret":"` + GoogleOAuthClientSecret + `"}`
		}, false, 200, ""},
		{"basic auth", "application/x-www-form-urlencoded", func(c string) string {
			return without(without(googleExchangeForm(c, verifier), "client_id"), "client_secret").Encode()
		}, true, 200, ""},
		{"plain text", "text/plain", func(c string) string { return googleExchangeForm(c, verifier).Encode() }, false, 400, "invalid_request"},
		{"claude's client", "application/x-www-form-urlencoded", func(c string) string {
			return with(googleExchangeForm(c, verifier), "client_id", OAuthClientID).Encode()
		}, false, 401, "invalid_client"},
		{"wrong secret", "application/x-www-form-urlencoded", func(c string) string {
			return with(googleExchangeForm(c, verifier), "client_secret", "GOCSPX-wrong").Encode()
		}, false, 401, "invalid_client"},
		{"no secret", "application/x-www-form-urlencoded", func(c string) string {
			return without(googleExchangeForm(c, verifier), "client_secret").Encode()
		}, false, 401, "invalid_client"},
		{"other redirect", "application/x-www-form-urlencoded", func(c string) string {
			return with(googleExchangeForm(c, verifier), "redirect_uri", "http://localhost:1/cb").Encode()
		}, false, 400, "redirect_uri_mismatch"},
		{"no verifier", "application/x-www-form-urlencoded", func(c string) string { return googleExchangeForm(c, "").Encode() }, false, 400, "invalid_grant"},
		{"wrong verifier", "application/x-www-form-urlencoded", func(c string) string { return googleExchangeForm(c, verifier+"x").Encode() }, false, 400, "invalid_grant"},
		{"unknown code", "application/x-www-form-urlencoded", func(string) string { return googleExchangeForm("4/0Anope", verifier).Encode() }, false, 400, "invalid_grant"},
		{"password grant", "application/x-www-form-urlencoded", func(c string) string {
			return with(googleExchangeForm(c, verifier), "grant_type", "password").Encode()
		}, false, 400, "unsupported_grant_type"},
	} {
		code := o.IssueCode(s256(verifier))
		var prepare func(*http.Request)
		if tc.basic {
			prepare = func(r *http.Request) { r.SetBasicAuth(GoogleOAuthClientID, GoogleOAuthClientSecret) }
		}
		status, r := googlePostToken(t, o, tc.contentType, tc.body(code), prepare)
		if status != tc.status || (tc.errCode != "" && r.Get("error").Str != tc.errCode) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, status, r.Raw, tc.status, tc.errCode)
			continue
		}
		if status != 200 {
			continue
		}
		if !strings.HasPrefix(r.Get("access_token").Str, "ya29.") || r.Get("refresh_token").Str == "" ||
			r.Get("expires_in").Int() != 3599 || r.Get("token_type").Str != "Bearer" || r.Get("scope").Str != GoogleOAuthScope {
			t.Errorf("%s: token response %s", tc.name, r.Raw)
		}
		if !o.AccessTokenValid(r.Get("access_token").Str) {
			t.Errorf("%s: issued access token is not valid", tc.name)
		}
		claims := googleIDClaims(t, r.Get("id_token").Str)
		if claims.Get("email").Str != GoogleOAuthEmail || claims.Get("aud").Str != GoogleOAuthClientID || claims.Get("sub").Str != GoogleOAuthSubject {
			t.Errorf("%s: id token claims %s", tc.name, claims.Raw)
		}
		// Codes are single use.
		if status, r := googlePostForm(t, o, googleExchangeForm(code, verifier)); status != 400 || r.Get("error").Str != "invalid_grant" {
			t.Errorf("%s: code reuse %d %s", tc.name, status, r.Raw)
		}
	}
	// Every request above but the plain-text one (unreadable) and the
	// password grant names authorization_code.
	if n := o.ExchangeCalls(); n != 13 {
		t.Errorf("ExchangeCalls %d, want 13", n)
	}
}

// googleIDClaims decodes the payload of an id token.
func googleIDClaims(t *testing.T, jwt string) gjson.Result {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("id token %q is not a JWT", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	return gjson.ParseBytes(b)
}

// TestGoogleOAuthRefreshIsNotRotated: the same refresh token works again
// and again, answers carry no new one, and only revocation ends it.
func TestGoogleOAuthRefreshIsNotRotated(t *testing.T) {
	o := StartGoogleOAuth(t)
	login := googleLogin(t, o)
	rt := login.Get("refresh_token").Str
	first := login.Get("access_token").Str

	var accesses []string
	for i := range 2 {
		status, r := googlePostForm(t, o, googleRefreshForm(rt))
		if status != 200 || r.Get("refresh_token").Exists() || r.Get("expires_in").Int() != 3599 {
			t.Fatalf("refresh %d: %d %s", i, status, r.Raw)
		}
		accesses = append(accesses, r.Get("access_token").Str)
	}
	if accesses[0] == accesses[1] || accesses[0] == first {
		t.Errorf("refresh reused an access token")
	}
	for _, a := range append(accesses, first) {
		if !o.AccessTokenValid(a) {
			t.Errorf("access token %q invalid before its hour is up", a)
		}
	}

	o.FailNext(503, "")
	if status, r := googlePostForm(t, o, googleRefreshForm(rt)); status != 503 || r.Get("error").Str != "internal_failure" {
		t.Errorf("fault: %d %s", status, r.Raw)
	}
	o.FailNext(400, `{"error":"invalid_grant","error_description":"Bad Request"}`)
	if status, r := googlePostForm(t, o, googleRefreshForm(rt)); status != 400 || r.Get("error_description").Str != "Bad Request" {
		t.Errorf("fault with body: %d %s", status, r.Raw)
	}
	if status, _ := googlePostForm(t, o, googleRefreshForm(rt)); status != 200 {
		t.Errorf("a fault consumed the refresh token: %d", status)
	}

	f := googleRefreshForm(rt)
	f.Set("client_secret", "nope")
	if status, r := googlePostForm(t, o, f); status != 401 || r.Get("error").Str != "invalid_client" {
		t.Errorf("refresh with a wrong secret: %d %s", status, r.Raw)
	}
	if status, r := googlePostForm(t, o, googleRefreshForm("1//0gunknown")); status != 400 || r.Get("error").Str != "invalid_grant" {
		t.Errorf("unknown refresh token: %d %s", status, r.Raw)
	}

	o.Revoke(rt)
	if status, r := googlePostForm(t, o, googleRefreshForm(rt)); status != 400 || r.Get("error_description").Str != "Token has been expired or revoked." {
		t.Errorf("after revoke: %d %s", status, r.Raw)
	}
	if o.AccessTokenValid(first) || o.AccessTokenValid(accesses[1]) {
		t.Error("access tokens of a revoked grant still valid")
	}
	if n := o.RefreshCalls(); n != 8 {
		t.Errorf("RefreshCalls %d, want 8", n)
	}
	if n := len(o.TokenRequests()); n != 9 {
		t.Errorf("%d token requests recorded, want 9", n)
	}
}

func TestGoogleOAuthAccessTTLAndExpiry(t *testing.T) {
	o := StartGoogleOAuth(t)
	o.SetAccessTTL(time.Nanosecond)
	login := googleLogin(t, o)
	if login.Get("expires_in").Int() != 1 || o.AccessTokenValid(login.Get("access_token").Str) {
		t.Errorf("1ns token: %s", login.Raw)
	}
	o.SetAccessTTL(time.Hour)
	_, r := googlePostForm(t, o, googleRefreshForm(login.Get("refresh_token").Str))
	if r.Get("expires_in").Int() != 3600 || !o.AccessTokenValid(r.Get("access_token").Str) {
		t.Errorf("1h token: %s", r.Raw)
	}
	o.ExpireAccessTokens()
	if o.AccessTokenValid(r.Get("access_token").Str) {
		t.Error("ExpireAccessTokens left a token valid")
	}
	if _, r2 := googlePostForm(t, o, googleRefreshForm(login.Get("refresh_token").Str)); !o.AccessTokenValid(r2.Get("access_token").Str) {
		t.Error("a token issued after ExpireAccessTokens is not valid")
	}
}

func TestGoogleOAuthAuthorize(t *testing.T) {
	o := StartGoogleOAuth(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	const verifier = "authorize-verifier-authorize-verifier-123456"
	good := func() url.Values {
		return url.Values{"client_id": {GoogleOAuthClientID}, "redirect_uri": {GoogleOAuthRedirectURI},
			"response_type": {"code"}, "scope": {GoogleOAuthScope}, "access_type": {"offline"}, "prompt": {"select_account"},
			"code_challenge": {s256(verifier)}, "code_challenge_method": {"S256"}, "state": {"st4te"}}
	}
	for _, tc := range []struct {
		name     string
		edit     func(url.Values)
		status   int
		verifier string // sent at the exchange
		refresh  bool   // a refresh token comes back
	}{
		{"codeassist redirect with PKCE", func(url.Values) {}, 302, verifier, true},
		{"loopback redirect", func(q url.Values) { q.Set("redirect_uri", "http://localhost:8085/oauth2callback") }, 302, verifier, true},
		{"no PKCE", func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, 302, "", true},
		{"plain PKCE", func(q url.Values) { q.Set("code_challenge", verifier); q.Set("code_challenge_method", "plain") }, 302, verifier, true},
		{"online access", func(q url.Values) { q.Del("access_type") }, 302, verifier, false},
		{"claude's client", func(q url.Values) { q.Set("client_id", OAuthClientID) }, 401, "", false},
		{"foreign redirect", func(q url.Values) { q.Set("redirect_uri", "https://evil.example/cb") }, 400, "", false},
		{"https loopback is not registered", func(q url.Values) { q.Set("redirect_uri", "https://localhost/cb") }, 400, "", false},
		{"token response type", func(q url.Values) { q.Set("response_type", "token") }, 400, "", false},
		{"no scope", func(q url.Values) { q.Del("scope") }, 400, "", false},
		{"unknown challenge method", func(q url.Values) { q.Set("code_challenge_method", "S512") }, 400, "", false},
	} {
		q := good()
		tc.edit(q)
		resp, err := noRedirect.Get(o.AuthorizeURL() + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.status)
			continue
		}
		if tc.status != 302 {
			continue
		}
		loc, _ := url.Parse(resp.Header.Get("Location"))
		cb := *loc
		cb.RawQuery = ""
		if cb.String() != q.Get("redirect_uri") || loc.Query().Get("state") != "st4te" || loc.Query().Get("scope") != GoogleOAuthScope {
			t.Errorf("%s: redirect %s", tc.name, loc)
		}
		f := googleExchangeForm(loc.Query().Get("code"), tc.verifier)
		f.Set("redirect_uri", q.Get("redirect_uri"))
		status, r := googlePostForm(t, o, f)
		if status != 200 || r.Get("refresh_token").Exists() != tc.refresh {
			t.Errorf("%s: exchange %d %s (refresh token expected: %v)", tc.name, status, r.Raw, tc.refresh)
		}
	}
}

func TestGoogleOAuthUserinfoAndRevokeEndpoint(t *testing.T) {
	o := StartGoogleOAuth(t)
	login := googleLogin(t, o)
	at, rt := login.Get("access_token").Str, login.Get("refresh_token").Str

	get := func(auth string) (int, gjson.Result) {
		hdr := map[string]string{}
		if auth != "" {
			hdr["Authorization"] = auth
		}
		resp, b := geminiDo(t, testCtx(t), http.MethodGet, o.UserinfoURL(), hdr, "")
		return resp.StatusCode, gjson.ParseBytes(b)
	}
	if status, r := get("Bearer " + at); status != 200 || r.Get("email").Str != GoogleOAuthEmail || r.Get("id").Str != GoogleOAuthSubject {
		t.Errorf("userinfo: %d %s", status, r.Raw)
	}
	if status, r := get(""); status != 401 || r.Get("error.status").Str != "UNAUTHENTICATED" {
		t.Errorf("userinfo without token: %d %s", status, r.Raw)
	}

	revoke := func(tok string) int {
		resp, _ := geminiDo(t, testCtx(t), http.MethodPost, o.RevokeURL()+"?token="+url.QueryEscape(tok), nil, "")
		return resp.StatusCode
	}
	if s := revoke("nope"); s != 400 {
		t.Errorf("revoke unknown: %d", s)
	}
	if s := revoke(at); s != 200 {
		t.Errorf("revoke by access token: %d", s)
	}
	if status, _ := googlePostForm(t, o, googleRefreshForm(rt)); status != 400 {
		t.Errorf("refresh after revoking its grant: %d", status)
	}
	if status, _ := get("Bearer " + at); status != 401 {
		t.Errorf("userinfo after revoke: %d", status)
	}
	if s := revoke(rt); s != 400 {
		t.Errorf("revoking twice: %d", s)
	}
}
