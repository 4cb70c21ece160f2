package fakeupstream

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// The values the fake OpenAI OAuth server accepts: the real Codex CLI public
// client, whose redirect URI is the CLI's local callback server. They are
// repeated here instead of imported from internal/oauth so this package
// stays a leaf that oauth's own tests can use.
const (
	OpenAIClientID    = "app_EMoamEEZ73f0CkXaXp7hrann"
	OpenAIRedirectURI = "http://localhost:1455/auth/callback"
	// OpenAIScope is what the fake grants whatever was asked for.
	OpenAIScope = "openid profile email offline_access"
	// OpenAIIssuer is the iss claim of the tokens the fake signs.
	OpenAIIssuer = "https://auth.openai.com"
	// OpenAIAccountID, OpenAIUserID and OpenAIEmail identify the ChatGPT
	// account grants belong to unless SetIdentity says otherwise.
	OpenAIAccountID = "7c1f3a52-9b0d-4e68-a2c4-5d8e9f0a1b2c"
	OpenAIUserID    = "user-FakeCodexOwner0000000001"
	OpenAIEmail     = "codex-owner@example.com"
)

// OpenAIAuthClaim is the claim under which OpenAI's tokens carry the
// ChatGPT identity; a relay reads chatgpt_account_id from the id_token's.
const OpenAIAuthClaim = "https://api.openai.com/auth"

// Paths the fake serves, the same as auth.openai.com's.
const (
	openaiAuthorizePath = "/oauth/authorize"
	openaiTokenPath     = "/oauth/token"
)

// openaiDefaultAccessTTL is the lifetime of ChatGPT access tokens in the
// wild: about ten days (Codex refreshes after eight).
const openaiDefaultAccessTTL = 10 * 24 * time.Hour

// openaiIDTokenTTL is how long the id_token claims to be valid.
const openaiIDTokenTTL = time.Hour

// OpenAIIdentity is the ChatGPT account behind a grant, as the id_token
// reports it.
type OpenAIIdentity struct {
	// AccountID is chatgpt_account_id, which the Codex backend requires
	// back in the chatgpt-account-id header.
	AccountID string
	UserID    string
	Email     string
	// Plan is chatgpt_plan_type: "plus", "pro", "team", "free"….
	Plan string
}

// DefaultOpenAIIdentity is the account grants belong to until SetIdentity:
// OpenAIAccountID, OpenAIUserID, OpenAIEmail on the "plus" plan.
func DefaultOpenAIIdentity() OpenAIIdentity {
	return OpenAIIdentity{AccountID: OpenAIAccountID, UserID: OpenAIUserID, Email: OpenAIEmail, Plan: "plus"}
}

// OpenAIOAuth is a fake of auth.openai.com as the Codex CLI login uses it
// (authorize and token endpoints). It enforces the rules a relay can get
// wrong: the Codex client id and redirect URI, single-use codes bound to
// their PKCE challenge, single-use rotating refresh tokens, and access
// tokens that expire. Tokens are JWTs (HS256 with a key private to the
// fake) carrying the ChatGPT identity under OpenAIAuthClaim; clients read
// them without verifying, as Codex does. All methods are safe for
// concurrent use.
type OpenAIOAuth struct {
	// tokenDesk guards every field below with its mu.
	tokenDesk

	key       []byte
	accessTTL time.Duration
	identity  OpenAIIdentity
	codes     map[string]*openaiCode
	refresh   map[string]openaiGrant // unused refresh tokens
	issued    map[string]openaiGrant // every refresh token ever issued
	access    map[string]openaiAccess
	revoked   map[int]bool // grant families
	families  int
}

type openaiCode struct {
	challenge, state string
	identity         OpenAIIdentity
	used             bool
}

// openaiGrant is one login: every token refreshed from it shares the
// family, so Revoke can end them all.
type openaiGrant struct {
	family   int
	identity OpenAIIdentity
}

type openaiAccess struct {
	openaiGrant
	expires time.Time
}

// accessState is what the fake knows of a presented access token.
type accessState int

const (
	accessUnknown accessState = iota
	accessLive
	accessExpired
	accessRevoked
)

// NewOpenAIOAuth returns the fake as a bare handler (for cmd/fakeopenai and
// bench).
func NewOpenAIOAuth() *OpenAIOAuth {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &OpenAIOAuth{
		tokenDesk: tokenDesk{failBody: `{"error":"server_error"}`, failType: "application/json"},
		key:       key,
		accessTTL: openaiDefaultAccessTTL,
		identity:  DefaultOpenAIIdentity(),
		codes:     map[string]*openaiCode{},
		refresh:   map[string]openaiGrant{},
		issued:    map[string]openaiGrant{},
		access:    map[string]openaiAccess{},
		revoked:   map[int]bool{},
	}
}

// StartOpenAIOAuth runs a new fake on an httptest server on 127.0.0.1 and
// closes it when the test ends.
func StartOpenAIOAuth(tb testing.TB) *OpenAIOAuth {
	tb.Helper()
	o := NewOpenAIOAuth()
	o.start(tb, o)
	return o
}

// AuthorizeURL is the fake's authorize endpoint.
func (o *OpenAIOAuth) AuthorizeURL() string { return o.URL() + openaiAuthorizePath }

// TokenURL is the fake's token endpoint.
func (o *OpenAIOAuth) TokenURL() string { return o.URL() + openaiTokenPath }

// SetIdentity sets the ChatGPT account that codes issued from now on (and
// the grants and tokens that come from them) belong to, so one fake can
// onboard several accounts. Grants already made keep theirs.
func (o *OpenAIOAuth) SetIdentity(id OpenAIIdentity) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.identity = id
}

// IssueCode does what the user's browser approval does: it mints a code
// bound to the PKCE challenge and state for the current identity. (GET on
// AuthorizeURL does the same after checking the authorize parameters.) The
// code exchange of the real flow does not send state; a client that does
// must send the same one.
func (o *OpenAIOAuth) IssueCode(challenge, state string) string {
	code := "ac_" + oauthRandom()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.codes[code] = &openaiCode{challenge: challenge, state: state, identity: o.identity}
	return code
}

// SetAccessTTL sets the lifetime of access tokens issued from now on
// (default 10 days).
func (o *OpenAIOAuth) SetAccessTTL(d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.accessTTL = d
}

// Revoke kills the grant a refresh token belongs to, as signing out
// everywhere does: that refresh token, its successors and the access tokens
// issued with them stop working; refresh answers invalid_grant.
func (o *OpenAIOAuth) Revoke(refreshToken string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if g, ok := o.issued[refreshToken]; ok {
		o.revoked[g.family] = true
	}
}

// AccessTokenValid reports whether tok was issued, is not expired and was
// not revoked.
func (o *OpenAIOAuth) AccessTokenValid(tok string) bool {
	_, st := o.lookupAccess(tok, time.Now())
	return st == accessLive
}

// lookupAccess tells the fake OpenAI what a bearer token is.
func (o *OpenAIOAuth) lookupAccess(tok string, now time.Time) (openaiAccess, accessState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	a, ok := o.access[tok]
	switch {
	case !ok:
		return openaiAccess{}, accessUnknown
	case o.revoked[a.family]:
		return a, accessRevoked
	case !now.Before(a.expires):
		return a, accessExpired
	}
	return a, accessLive
}

// issuedAccess reports whether tok is an access token this fake minted,
// live or not.
func (o *OpenAIOAuth) issuedAccess(tok string) bool {
	_, st := o.lookupAccess(tok, time.Now())
	return st != accessUnknown
}

// ServeHTTP routes to the authorize and token endpoints.
func (o *OpenAIOAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case openaiAuthorizePath:
		o.serveAuthorize(w, r)
	case openaiTokenPath:
		o.serveToken(w, r)
	default:
		http.NotFound(w, r)
	}
}

// serveAuthorize checks the authorize parameters and redirects to the
// callback with a code, as auth.openai.com does after the user approves.
func (o *OpenAIOAuth) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch {
	case r.Method != http.MethodGet:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	case q.Get("client_id") != OpenAIClientID:
		http.Error(w, "unknown client_id", http.StatusBadRequest)
	case q.Get("redirect_uri") != OpenAIRedirectURI:
		http.Error(w, "redirect_uri is not registered for this client", http.StatusBadRequest)
	case q.Get("response_type") != "code":
		http.Error(w, "response_type must be code", http.StatusBadRequest)
	case q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "":
		http.Error(w, "PKCE S256 code_challenge required", http.StatusBadRequest)
	case q.Get("state") == "":
		http.Error(w, "state required", http.StatusBadRequest)
	case !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
		http.Error(w, "scope must include openid", http.StatusBadRequest)
	default:
		code := o.IssueCode(q.Get("code_challenge"), q.Get("state"))
		cb := url.Values{"code": {code}, "scope": {OpenAIScope}, "state": {q.Get("state")}}
		http.Redirect(w, r, OpenAIRedirectURI+"?"+cb.Encode(), http.StatusFound)
	}
}

// openaiTokenBody holds the token request's fields, from a form (the Codex
// CLI's code exchange, and CRS) or a JSON body (the Codex CLI's refresh).
type openaiTokenBody struct {
	GrantType    string `json:"grant_type"`
	ClientID     string `json:"client_id"`
	Code         string `json:"code"`
	RedirectURI  string `json:"redirect_uri"`
	CodeVerifier string `json:"code_verifier"`
	State        string `json:"state"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
}

// parseOpenAITokenBody reads the body as its content type says; ok is false
// for other types or a malformed body.
func parseOpenAITokenBody(contentType string, raw []byte) (b openaiTokenBody, ok bool) {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "application/x-www-form-urlencoded":
		q, err := url.ParseQuery(string(raw))
		if err != nil {
			return b, false
		}
		return openaiTokenBody{
			GrantType: q.Get("grant_type"), ClientID: q.Get("client_id"), Code: q.Get("code"),
			RedirectURI: q.Get("redirect_uri"), CodeVerifier: q.Get("code_verifier"), State: q.Get("state"),
			RefreshToken: q.Get("refresh_token"), Scope: q.Get("scope"),
		}, true
	case "application/json":
		return b, json.Unmarshal(raw, &b) == nil
	}
	return b, false
}

func (o *OpenAIOAuth) serveToken(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxRecordedBody))
	if err != nil {
		return
	}
	b, parsed := parseOpenAITokenBody(r.Header.Get("Content-Type"), raw)
	grant := ""
	if parsed {
		grant = b.GrantType
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.admitLocked(w, r, raw, grant) {
		return
	}
	switch {
	case r.Method != http.MethodPost:
		oauthError(w, http.StatusMethodNotAllowed, "invalid_request", "POST required")
	case !parsed:
		oauthError(w, http.StatusBadRequest, "invalid_request", "Body must be application/x-www-form-urlencoded or a JSON object")
	case b.ClientID != OpenAIClientID:
		oauthError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed")
	case b.GrantType == "authorization_code":
		o.exchangeLocked(w, b)
	case b.GrantType == "refresh_token":
		o.refreshLocked(w, b)
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant_type")
	}
}

func (o *OpenAIOAuth) exchangeLocked(w http.ResponseWriter, b openaiTokenBody) {
	if b.RedirectURI != OpenAIRedirectURI {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid redirect_uri")
		return
	}
	c, ok := o.codes[b.Code]
	if !ok || c.used {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid authorization code")
		return
	}
	// A presented code is burnt whatever happens next, as on real servers:
	// a leaked code cannot be tried against many verifiers.
	c.used = true
	if b.State != "" && b.State != c.state {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid state")
		return
	}
	sum := sha256.Sum256([]byte(b.CodeVerifier))
	if base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid code verifier")
		return
	}
	o.families++
	o.issueLocked(w, openaiGrant{family: o.families, identity: c.identity})
}

func (o *OpenAIOAuth) refreshLocked(w http.ResponseWriter, b openaiTokenBody) {
	g, unused := o.refresh[b.RefreshToken]
	_, known := o.issued[b.RefreshToken]
	switch {
	case known && o.revoked[o.issued[b.RefreshToken].family]:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Your refresh token was revoked. Please sign in again.")
	case known && !unused:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Your refresh token has already been used to generate a new access token. Please sign in again.")
	case !known:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Refresh token not found or invalid")
	default:
		delete(o.refresh, b.RefreshToken)
		o.issueLocked(w, g)
	}
}

// issueLocked mints an id token, an access token and a new refresh token
// for the grant.
func (o *OpenAIOAuth) issueLocked(w http.ResponseWriter, g openaiGrant) {
	now := time.Now()
	expires := now.Add(o.accessTTL)
	id := g.identity
	auth := map[string]any{
		"chatgpt_account_id": id.AccountID,
		"chatgpt_plan_type":  id.Plan,
		"chatgpt_user_id":    id.UserID,
		"user_id":            id.UserID,
	}
	idToken := o.signLocked(map[string]any{
		"iss":            OpenAIIssuer,
		"aud":            []string{OpenAIClientID},
		"sub":            "auth0|" + id.UserID,
		"email":          id.Email,
		"email_verified": true,
		"iat":            now.Unix(),
		"auth_time":      now.Unix(),
		"exp":            now.Add(openaiIDTokenTTL).Unix(),
		OpenAIAuthClaim:  auth,
	})
	access := o.signLocked(map[string]any{
		"iss":                            OpenAIIssuer,
		"aud":                            []string{"https://api.openai.com/v1"},
		"client_id":                      OpenAIClientID,
		"sub":                            "auth0|" + id.UserID,
		"iat":                            now.Unix(),
		"exp":                            expires.Unix(),
		"jti":                            oauthRandom(),
		"scp":                            strings.Fields(OpenAIScope),
		OpenAIAuthClaim:                  auth,
		"https://api.openai.com/profile": map[string]any{"email": id.Email, "email_verified": true},
	})
	o.access[access] = openaiAccess{openaiGrant: g, expires: expires}
	rt := "rt_" + oauthRandom()
	o.refresh[rt] = g
	o.issued[rt] = g
	oauthJSON(w, http.StatusOK, map[string]any{
		"id_token":      idToken,
		"access_token":  access,
		"refresh_token": rt,
		"token_type":    "Bearer",
		"expires_in":    max(int64((o.accessTTL+time.Second-1)/time.Second), 1),
		"scope":         OpenAIScope,
	})
}

// signLocked encodes claims as an HS256 JWT under the fake's own key.
func (o *OpenAIOAuth) signLocked(claims map[string]any) string {
	payload, err := json.Marshal(claims)
	if err != nil {
		panic("fakeupstream: marshal claims: " + err.Error()) // a bug in the fake's own claims
	}
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, o.key)
	mac.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(mac.Sum(nil))
}
