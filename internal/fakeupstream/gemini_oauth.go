package fakeupstream

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// The Gemini CLI's OAuth client, which the fake Google OAuth server accepts
// (and no other). Google ships installed-app clients' secrets in the app and
// does not treat them as secret; Gemini CLI publishes this one in its
// source. Repeated here instead of imported so this package stays a leaf.
const (
	GoogleOAuthClientID     = "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com"
	GoogleOAuthClientSecret = "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"
	// GoogleOAuthRedirectURI is the copy-the-code page Gemini CLI uses when
	// it cannot open a browser, the flow a relay's admin goes through.
	// Loopback redirects (http://localhost:PORT/…, http://127.0.0.1:PORT/…)
	// are accepted as well, as Google does for installed apps.
	GoogleOAuthRedirectURI = "https://codeassist.google.com/authcode"
	// GoogleOAuthScope is what IssueCode grants: Gemini CLI's scopes.
	GoogleOAuthScope = "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile"
	// GoogleOAuthEmail and GoogleOAuthSubject identify the one user the
	// fake knows (the id token's email and sub, userinfo's email and id).
	GoogleOAuthEmail   = "owner@example.com"
	GoogleOAuthSubject = "104857600000000000001"
)

// googleCloudPlatformScope is the scope Code Assist requires.
const googleCloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform"

// Paths the fake serves: Google's authorize page
// (accounts.google.com/o/oauth2/v2/auth), token endpoint
// (oauth2.googleapis.com/token), revocation endpoint and the userinfo API
// (www.googleapis.com/oauth2/v2/userinfo).
const (
	googleAuthorizePath = "/o/oauth2/v2/auth"
	googleTokenPath     = "/token"
	googleRevokePath    = "/revoke"
	googleUserinfoPath  = "/oauth2/v2/userinfo"
)

// googleDefaultAccessTTL is what Google gives access tokens (expires_in
// 3599).
const googleDefaultAccessTTL = 3599 * time.Second

// GoogleOAuth is a fake of Google's OAuth 2.0 server for Gemini CLI's
// client. It enforces what a relay can get wrong: the client id and secret,
// a registered redirect URI that matches between authorize and token,
// single-use codes bound to their PKCE challenge (PKCE is optional, as on
// Google), and access tokens that expire. Unlike Claude's server, Google
// does not rotate refresh tokens: a refresh answers no refresh_token and
// the old one stays valid until revoked. All methods are safe for
// concurrent use.
type GoogleOAuth struct {
	// tokenDesk guards every field below with its mu.
	tokenDesk

	accessTTL time.Duration
	codes     map[string]*googleCode
	refresh   map[string]googleGrant // live refresh tokens
	access    map[string]googleAccess
	revoked   map[int]bool // grant ids
	grants    int
}

type googleCode struct {
	challenge, method, redirect, scope string
	offline, used                      bool
}

type googleGrant struct {
	id    int
	scope string
}

type googleAccess struct {
	grant   int
	scope   string
	expires time.Time
}

// googleTokenState is what a presented access token is.
type googleTokenState int

const (
	googleTokenUnknown googleTokenState = iota
	googleTokenExpired
	googleTokenLive
)

// NewGoogleOAuth returns the fake as a bare handler (for cmd/fakegemini and
// bench).
func NewGoogleOAuth() *GoogleOAuth {
	return &GoogleOAuth{
		tokenDesk: tokenDesk{failBody: `{"error":"internal_failure"}`, failType: "application/json; charset=utf-8"},
		accessTTL: googleDefaultAccessTTL,
		codes:     map[string]*googleCode{},
		refresh:   map[string]googleGrant{},
		access:    map[string]googleAccess{},
		revoked:   map[int]bool{},
	}
}

// StartGoogleOAuth runs a new fake on an httptest server on 127.0.0.1 and
// closes it when the test ends.
func StartGoogleOAuth(tb testing.TB) *GoogleOAuth {
	tb.Helper()
	o := NewGoogleOAuth()
	o.start(tb, o)
	return o
}

// AuthorizeURL is the fake's authorize endpoint (the consent page).
func (o *GoogleOAuth) AuthorizeURL() string { return o.URL() + googleAuthorizePath }

// TokenURL is the fake's token endpoint.
func (o *GoogleOAuth) TokenURL() string { return o.URL() + googleTokenPath }

// RevokeURL is the fake's revocation endpoint.
func (o *GoogleOAuth) RevokeURL() string { return o.URL() + googleRevokePath }

// UserinfoURL is the fake's userinfo endpoint (Gemini CLI calls it in Code
// Assist mode to learn the account's email).
func (o *GoogleOAuth) UserinfoURL() string { return o.URL() + googleUserinfoPath }

// IssueCode does what the user's consent does: it mints a code for
// GoogleOAuthRedirectURI with GoogleOAuthScope and offline access (so the
// exchange returns a refresh token), bound to the S256 PKCE challenge; an
// empty challenge makes a code without PKCE. (GET on AuthorizeURL does the
// same honouring the URL's parameters.)
func (o *GoogleOAuth) IssueCode(challenge string) string {
	method := ""
	if challenge != "" {
		method = "S256"
	}
	return o.issueCode(&googleCode{challenge: challenge, method: method, redirect: GoogleOAuthRedirectURI,
		scope: GoogleOAuthScope, offline: true})
}

func (o *GoogleOAuth) issueCode(c *googleCode) string {
	code := "4/0A" + oauthRandom()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.codes[code] = c
	return code
}

// SetAccessTTL sets the lifetime of access tokens issued from now on
// (default 3599 s, as Google's).
func (o *GoogleOAuth) SetAccessTTL(d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.accessTTL = d
}

// ExpireAccessTokens makes every access token issued so far expired, as if
// their hour had passed, while the relay may still think them valid; the
// refresh tokens stay good.
func (o *GoogleOAuth) ExpireAccessTokens() {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	for tok, a := range o.access {
		if a.expires.After(now) {
			a.expires = now
			o.access[tok] = a
		}
	}
}

// Revoke kills the grant a refresh token belongs to, as the user removing
// the app's access does: the refresh token and every access token of the
// grant stop working, and refresh answers invalid_grant.
func (o *GoogleOAuth) Revoke(refreshToken string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if g, ok := o.refresh[refreshToken]; ok {
		o.revoked[g.id] = true
	}
}

// AccessTokenValid reports whether tok was issued, is not expired and was
// not revoked.
func (o *GoogleOAuth) AccessTokenValid(tok string) bool {
	_, st := o.accessState(tok)
	return st == googleTokenLive
}

// accessState looks an access token up for the fake Code Assist.
func (o *GoogleOAuth) accessState(tok string) (scope string, st googleTokenState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	a, ok := o.access[tok]
	switch {
	case !ok || o.revoked[a.grant]:
		return "", googleTokenUnknown
	case !time.Now().Before(a.expires):
		return a.scope, googleTokenExpired
	}
	return a.scope, googleTokenLive
}

// ServeHTTP routes to the authorize, token, revoke and userinfo endpoints.
func (o *GoogleOAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case googleAuthorizePath:
		o.serveAuthorize(w, r)
	case googleTokenPath:
		o.serveToken(w, r)
	case googleRevokePath:
		o.serveRevoke(w, r)
	case googleUserinfoPath:
		o.serveUserinfo(w, r)
	default:
		http.NotFound(w, r)
	}
}

// googleRedirectAllowed accepts the registered redirects of an installed
// app: the code-copy page and any loopback address.
func googleRedirectAllowed(raw string) bool {
	if raw == GoogleOAuthRedirectURI {
		return true
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// serveAuthorize checks the authorize parameters and redirects to the
// redirect URI with a code, as Google does once the user consents. Errors
// are pages for the user, as Google's are, not redirects.
func (o *GoogleOAuth) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	method := q.Get("code_challenge_method")
	if q.Get("code_challenge") != "" && method == "" {
		method = "plain" // the RFC 7636 default
	}
	switch {
	case r.Method != http.MethodGet:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	case q.Get("client_id") != GoogleOAuthClientID:
		http.Error(w, "Error 401: invalid_client. The OAuth client was not found.", http.StatusUnauthorized)
	case !googleRedirectAllowed(q.Get("redirect_uri")):
		http.Error(w, "Error 400: redirect_uri_mismatch", http.StatusBadRequest)
	case q.Get("response_type") != "code":
		http.Error(w, "Error 400: invalid_request. Invalid response_type", http.StatusBadRequest)
	case q.Get("scope") == "":
		http.Error(w, "Error 400: invalid_request. Missing required parameter: scope", http.StatusBadRequest)
	case method != "" && method != "S256" && method != "plain":
		http.Error(w, "Error 400: invalid_request. Invalid code_challenge_method", http.StatusBadRequest)
	default:
		code := o.issueCode(&googleCode{challenge: q.Get("code_challenge"), method: method,
			redirect: q.Get("redirect_uri"), scope: q.Get("scope"), offline: q.Get("access_type") == "offline"})
		cb, _ := url.Parse(q.Get("redirect_uri"))
		v := cb.Query()
		if s := q.Get("state"); s != "" {
			v.Set("state", s)
		}
		v.Set("code", code)
		v.Set("scope", q.Get("scope"))
		cb.RawQuery = v.Encode()
		http.Redirect(w, r, cb.String(), http.StatusFound)
	}
}

func googleOAuthError(w http.ResponseWriter, status int, code, desc string) {
	oauthJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// googleTokenForm reads a token or revoke request's parameters from a
// form-encoded body (what google-auth-library sends) or a JSON object
// (which Google also takes).
func googleTokenForm(r *http.Request, raw []byte) (url.Values, bool) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/x-www-form-urlencoded":
		v, err := url.ParseQuery(string(raw))
		return v, err == nil
	case "application/json":
		var m map[string]any
		if json.Unmarshal(raw, &m) != nil {
			return nil, false
		}
		v := url.Values{}
		for k, x := range m {
			if s, ok := x.(string); ok {
				v.Set(k, s)
			}
		}
		return v, true
	}
	return nil, false
}

func (o *GoogleOAuth) serveToken(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxRecordedBody))
	if err != nil {
		return
	}
	form, formOK := googleTokenForm(r, raw)
	grant := form.Get("grant_type")

	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.admitLocked(w, r, raw, grant) {
		return
	}
	if r.Method != http.MethodPost {
		googleOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "POST required")
		return
	}
	if !formOK {
		googleOAuthError(w, http.StatusBadRequest, "invalid_request", "Invalid request body")
		return
	}
	// Client authentication: in the body or as HTTP Basic, as Google takes
	// either.
	id, secret := form.Get("client_id"), form.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		id, secret = u, p
	}
	if id != GoogleOAuthClientID {
		googleOAuthError(w, http.StatusUnauthorized, "invalid_client", "The OAuth client was not found.")
		return
	}
	if secret != GoogleOAuthClientSecret {
		googleOAuthError(w, http.StatusUnauthorized, "invalid_client", "Unauthorized")
		return
	}
	switch gt := form.Get("grant_type"); gt {
	case "authorization_code":
		o.exchangeLocked(w, form)
	case "refresh_token":
		o.refreshLocked(w, form)
	default:
		googleOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type: "+gt)
	}
}

func (o *GoogleOAuth) exchangeLocked(w http.ResponseWriter, form url.Values) {
	c, ok := o.codes[form.Get("code")]
	if !ok {
		googleOAuthError(w, http.StatusBadRequest, "invalid_grant", "Malformed auth code.")
		return
	}
	if c.used {
		googleOAuthError(w, http.StatusBadRequest, "invalid_grant", "Bad Request")
		return
	}
	// A presented code is burnt whatever happens next, so a leaked code
	// cannot be tried against many verifiers.
	c.used = true
	if form.Get("redirect_uri") != c.redirect {
		googleOAuthError(w, http.StatusBadRequest, "redirect_uri_mismatch", "Bad Request")
		return
	}
	if c.challenge != "" {
		v := form.Get("code_verifier")
		if v == "" {
			googleOAuthError(w, http.StatusBadRequest, "invalid_grant", "Missing code verifier.")
			return
		}
		want := v
		if c.method == "S256" {
			sum := sha256.Sum256([]byte(v))
			want = base64.RawURLEncoding.EncodeToString(sum[:])
		}
		if want != c.challenge {
			googleOAuthError(w, http.StatusBadRequest, "invalid_grant", "Invalid code verifier.")
			return
		}
	}
	o.grants++
	g := googleGrant{id: o.grants, scope: c.scope}
	rt := ""
	if c.offline {
		rt = "1//0g" + oauthRandom()
		o.refresh[rt] = g
	}
	o.issueLocked(w, g, rt)
}

func (o *GoogleOAuth) refreshLocked(w http.ResponseWriter, form url.Values) {
	g, ok := o.refresh[form.Get("refresh_token")]
	if !ok || o.revoked[g.id] {
		googleOAuthError(w, http.StatusBadRequest, "invalid_grant", "Token has been expired or revoked.")
		return
	}
	// Google keeps the refresh token: the answer carries none.
	o.issueLocked(w, g, "")
}

// googleTokenJSON is the token response, in Google's field order.
type googleTokenJSON struct {
	AccessToken  string `json:"access_token"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
	TokenType    string `json:"token_type"`
	IDToken      string `json:"id_token,omitempty"`
}

// issueLocked mints an access token (and an id token when the grant has an
// identity scope) and answers; refreshToken is sent only when non-empty.
func (o *GoogleOAuth) issueLocked(w http.ResponseWriter, g googleGrant, refreshToken string) {
	now := time.Now()
	ttl := o.accessTTL
	access := "ya29.a0" + oauthRandom()
	o.access[access] = googleAccess{grant: g.id, scope: g.scope, expires: now.Add(ttl)}
	resp := googleTokenJSON{
		AccessToken:  access,
		ExpiresIn:    max(int64((ttl+time.Second-1)/time.Second), 1),
		RefreshToken: refreshToken,
		Scope:        g.scope,
		TokenType:    "Bearer",
	}
	if hasGoogleScope(g.scope, "openid") || hasGoogleScope(g.scope, "email") ||
		hasGoogleScope(g.scope, "https://www.googleapis.com/auth/userinfo.email") {
		resp.IDToken = googleIDToken(now, ttl)
	}
	w.Header().Set("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate")
	oauthJSON(w, http.StatusOK, resp)
}

// googleIDToken is a JWT with the claims a relay reads (iss, aud, sub,
// email). Its signature is random bytes: relays decode the id token they got
// straight from the token endpoint over TLS and must not need Google's keys.
func googleIDToken(now time.Time, ttl time.Duration) string {
	enc := base64.RawURLEncoding
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": "fake", "typ": "JWT"})
	claims, _ := json.Marshal(map[string]any{
		"iss": "https://accounts.google.com", "azp": GoogleOAuthClientID, "aud": GoogleOAuthClientID,
		"sub": GoogleOAuthSubject, "email": GoogleOAuthEmail, "email_verified": true,
		"iat": now.Unix(), "exp": now.Add(ttl).Unix(),
	})
	sig := make([]byte, 64)
	_, _ = rand.Read(sig)
	return enc.EncodeToString(header) + "." + enc.EncodeToString(claims) + "." + enc.EncodeToString(sig)
}

// hasGoogleScope reports whether the space-separated scope list has want.
func hasGoogleScope(scope, want string) bool {
	return slices.Contains(strings.Fields(scope), want)
}

// serveRevoke revokes the grant of a refresh or access token passed as the
// token parameter (query or form), as Google's revocation endpoint does.
func (o *GoogleOAuth) serveRevoke(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("token")
	if tok == "" && r.Method == http.MethodPost {
		raw, err := io.ReadAll(io.LimitReader(r.Body, maxRecordedBody))
		if err != nil {
			return
		}
		if form, ok := googleTokenForm(r, raw); ok {
			tok = form.Get("token")
		}
	}
	if r.Method != http.MethodPost {
		googleOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "POST required")
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	id := 0
	if g, ok := o.refresh[tok]; ok {
		id = g.id
	} else if a, ok := o.access[tok]; ok {
		id = a.grant
	}
	if id == 0 || o.revoked[id] {
		googleOAuthError(w, http.StatusBadRequest, "invalid_token", "Token expired or revoked")
		return
	}
	o.revoked[id] = true
	oauthJSON(w, http.StatusOK, map[string]any{})
}

// serveUserinfo answers the userinfo API for a live bearer token with an
// email scope.
func (o *GoogleOAuth) serveUserinfo(w http.ResponseWriter, r *http.Request) {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	scope, st := o.accessState(tok)
	if st != googleTokenLive {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/", error="invalid_token"`)
		oauthJSON(w, http.StatusUnauthorized, googleErrorJSON{Error: googleErrorStatus{Code: http.StatusUnauthorized,
			Message: "Request had invalid authentication credentials.", Status: "UNAUTHENTICATED"}})
		return
	}
	info := map[string]any{"id": GoogleOAuthSubject, "picture": "https://example.com/owner.png"}
	if hasGoogleScope(scope, "https://www.googleapis.com/auth/userinfo.email") || hasGoogleScope(scope, "email") {
		info["email"] = GoogleOAuthEmail
		info["verified_email"] = true
	}
	if hasGoogleScope(scope, "https://www.googleapis.com/auth/userinfo.profile") || hasGoogleScope(scope, "profile") {
		info["name"] = "Owner"
	}
	oauthJSON(w, http.StatusOK, info)
}
