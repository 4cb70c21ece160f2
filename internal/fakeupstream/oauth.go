package fakeupstream

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// The values the fake OAuth server accepts: the real Claude Code public
// client. They are repeated here instead of imported from internal/oauth so
// this package stays a leaf that oauth's own tests can use; a mismatch makes
// those tests fail.
const (
	OAuthClientID    = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
	OAuthRedirectURI = "https://platform.claude.com/oauth/code/callback"
	// OAuthFullScope is what IssueCode grants: Claude Code's browser flow.
	OAuthFullScope = "org:create_api_key user:profile user:inference user:sessions:claude_code user:mcp_servers user:file_upload"
	// OAuthAccountUUID, OAuthOrgUUID and OAuthEmail identify the one user
	// the fake knows.
	OAuthAccountUUID = "4f1b6f8e-2c1a-4d3e-9a57-0c9b1e7d2a11"
	OAuthOrgUUID     = "9a0c7e55-8b6d-4f21-b3a4-5e6f7a8b9c0d"
	OAuthEmail       = "owner@example.com"
)

// Paths the fake serves, the same as the real services' paths.
const (
	oauthAuthorizePath = "/oauth/authorize"
	oauthTokenPath     = "/v1/oauth/token"
	oauthProfilePath   = "/api/oauth/profile"
	oauthUsagePath     = "/api/oauth/usage"
)

// defaultAccessTTL is what the real server gives browser-flow tokens.
const defaultAccessTTL = 8 * time.Hour

// maxTokenLifetime caps a requested expires_in at one year, as the real
// setup-token flow does.
const maxTokenLifetime = 365 * 24 * time.Hour

// OAuth is a fake of the Claude OAuth service (authorize, token, profile and
// usage). It enforces the real rules a relay can get wrong: client id and
// redirect URI, single-use codes bound to their PKCE challenge and state,
// single-use rotating refresh tokens, a JSON body, bearer tokens that expire,
// the OAuth beta on usage, and no profile/usage access for inference-only
// (setup-token) tokens. All methods are safe for concurrent use.
type OAuth struct {
	// tokenDesk guards every field below with its mu.
	tokenDesk

	accessTTL time.Duration
	codes     map[string]*oauthCode
	refresh   map[string]oauthGrant // unused refresh tokens
	issued    map[string]int        // every refresh token ever issued → family
	access    map[string]oauthAccess
	revoked   map[int]bool // grant families
	families  int
	plan      string
	usageJSON string
}

type oauthCode struct {
	challenge, state, scope string
	used                    bool
}

type oauthGrant struct {
	family int
	scope  string
}

type oauthAccess struct {
	family  int
	scope   string
	expires time.Time
}

// NewOAuth returns the fake as a bare handler (for cmd/ fakes and bench).
func NewOAuth() *OAuth {
	return &OAuth{
		tokenDesk: tokenDesk{failBody: `{"error":"server_error"}`, failType: "application/json"},
		accessTTL: defaultAccessTTL,
		codes:     map[string]*oauthCode{},
		refresh:   map[string]oauthGrant{},
		issued:    map[string]int{},
		access:    map[string]oauthAccess{},
		revoked:   map[int]bool{},
		plan:      "max",
	}
}

// StartOAuth runs a new fake on an httptest server on 127.0.0.1 and closes it
// when the test ends.
func StartOAuth(tb testing.TB) *OAuth {
	tb.Helper()
	o := NewOAuth()
	o.start(tb, o)
	return o
}

// AuthorizeURL is the fake's authorize endpoint (the claude.ai page).
func (o *OAuth) AuthorizeURL() string { return o.URL() + oauthAuthorizePath }

// TokenURL is the fake's token endpoint.
func (o *OAuth) TokenURL() string { return o.URL() + oauthTokenPath }

// ProfileURL is the fake's profile endpoint.
func (o *OAuth) ProfileURL() string { return o.URL() + oauthProfilePath }

// UsageURL is the fake's usage endpoint.
func (o *OAuth) UsageURL() string { return o.URL() + oauthUsagePath }

// IssueCode does what the user's browser approval does: it mints a code
// bound to the PKCE challenge and state, with the full browser-flow scope.
// (GET on AuthorizeURL does the same honouring the URL's scope.)
func (o *OAuth) IssueCode(challenge, state string) string {
	return o.issueCode(challenge, state, OAuthFullScope)
}

func (o *OAuth) issueCode(challenge, state, scope string) string {
	code := oauthRandom()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.codes[code] = &oauthCode{challenge: challenge, state: state, scope: scope}
	return code
}

// SetAccessTTL sets the lifetime of access tokens issued from now on
// (default 8 h). A request's own expires_in (setup tokens) still wins.
func (o *OAuth) SetAccessTTL(d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.accessTTL = d
}

// Revoke kills the grant a refresh token belongs to, as a user logging out
// everywhere does: that refresh token, its successors and the access tokens
// issued with them stop working; refresh answers invalid_grant.
func (o *OAuth) Revoke(refreshToken string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if f, ok := o.issued[refreshToken]; ok {
		o.revoked[f] = true
	}
}

// AccessTokenValid reports whether tok was issued, is not expired and was
// not revoked; the fake Anthropic API can use it to check OAuth requests.
func (o *OAuth) AccessTokenValid(tok string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	a, ok := o.access[tok]
	return ok && !o.revoked[a.family] && time.Now().Before(a.expires)
}

// SetPlan sets what the profile reports: "max", "pro", "free" or "team".
func (o *OAuth) SetPlan(plan string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.plan = plan
}

// SetUsage replaces the usage endpoint's JSON answer (default: a 5-hour,
// 7-day and 7-day-Opus window with distinct utilizations).
func (o *OAuth) SetUsage(body string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.usageJSON = body
}

// ServeHTTP routes to the four endpoints.
func (o *OAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case oauthAuthorizePath:
		o.serveAuthorize(w, r)
	case oauthTokenPath:
		o.serveToken(w, r)
	case oauthProfilePath:
		o.serveProfile(w, r)
	case oauthUsagePath:
		o.serveUsage(w, r)
	default:
		http.NotFound(w, r)
	}
}

// serveAuthorize checks the authorize parameters and redirects to the
// callback with a code, as claude.ai does after the user approves.
func (o *OAuth) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch {
	case r.Method != http.MethodGet:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	case q.Get("client_id") != OAuthClientID:
		http.Error(w, "unknown client_id", http.StatusBadRequest)
	case q.Get("redirect_uri") != OAuthRedirectURI:
		http.Error(w, "redirect_uri does not match the client", http.StatusBadRequest)
	case q.Get("response_type") != "code":
		http.Error(w, "response_type must be code", http.StatusBadRequest)
	case q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "":
		http.Error(w, "PKCE S256 code_challenge required", http.StatusBadRequest)
	case q.Get("state") == "" || q.Get("scope") == "":
		http.Error(w, "state and scope required", http.StatusBadRequest)
	default:
		code := o.issueCode(q.Get("code_challenge"), q.Get("state"), q.Get("scope"))
		cb := OAuthRedirectURI + "?code=" + url.QueryEscape(code) + "&state=" + url.QueryEscape(q.Get("state"))
		http.Redirect(w, r, cb, http.StatusFound)
	}
}

type tokenBody struct {
	GrantType    string `json:"grant_type"`
	ClientID     string `json:"client_id"`
	Code         string `json:"code"`
	RedirectURI  string `json:"redirect_uri"`
	CodeVerifier string `json:"code_verifier"`
	State        string `json:"state"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	oauthJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func oauthJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (o *OAuth) serveToken(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxRecordedBody))
	if err != nil {
		return
	}
	var b tokenBody
	jsonErr := json.Unmarshal(raw, &b)
	grant := ""
	if jsonErr == nil {
		grant = b.GrantType
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.admitLocked(w, r, raw, grant) {
		return
	}
	if r.Method != http.MethodPost {
		oauthError(w, http.StatusMethodNotAllowed, "invalid_request", "POST required")
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "Content-Type must be application/json")
		return
	}
	if jsonErr != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "Request body must be a JSON object")
		return
	}
	if b.ClientID != OAuthClientID {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed")
		return
	}
	switch b.GrantType {
	case "authorization_code":
		o.exchangeLocked(w, b)
	case "refresh_token":
		o.refreshLocked(w, b)
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant_type")
	}
}

func (o *OAuth) exchangeLocked(w http.ResponseWriter, b tokenBody) {
	if b.RedirectURI != OAuthRedirectURI {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid redirect_uri")
		return
	}
	c, ok := o.codes[b.Code]
	if !ok || c.used {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid 'code' in request.")
		return
	}
	// A presented code is burnt whatever happens next, as on real servers:
	// a leaked code cannot be tried against many verifiers.
	c.used = true
	if b.State != c.state {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid 'state' in request.")
		return
	}
	sum := sha256.Sum256([]byte(b.CodeVerifier))
	if base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid code verifier.")
		return
	}
	ttl := o.accessTTL
	if b.ExpiresIn > 0 {
		ttl = min(time.Duration(b.ExpiresIn)*time.Second, maxTokenLifetime)
	}
	o.families++
	o.issueLocked(w, oauthGrant{family: o.families, scope: c.scope}, ttl)
}

func (o *OAuth) refreshLocked(w http.ResponseWriter, b tokenBody) {
	g, ok := o.refresh[b.RefreshToken]
	if !ok || o.revoked[g.family] {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Refresh token not found or invalid")
		return
	}
	delete(o.refresh, b.RefreshToken)
	o.issueLocked(w, g, o.accessTTL)
}

// issueLocked mints an access token and, unless the grant is inference-only
// (a setup token, which is long-lived and not refreshable), a new refresh
// token.
func (o *OAuth) issueLocked(w http.ResponseWriter, g oauthGrant, ttl time.Duration) {
	access := "sk-ant-oat01-" + oauthRandom()
	o.access[access] = oauthAccess{family: g.family, scope: g.scope, expires: time.Now().Add(ttl)}
	resp := map[string]any{
		"token_type":   "Bearer",
		"access_token": access,
		"expires_in":   max(int64((ttl+time.Second-1)/time.Second), 1),
		"scope":        g.scope,
		"account":      map[string]string{"uuid": OAuthAccountUUID, "email_address": OAuthEmail},
		"organization": map[string]string{"uuid": OAuthOrgUUID, "name": "Owner's Organization"},
	}
	if g.scope != "user:inference" {
		rt := "sk-ant-ort01-" + oauthRandom()
		o.refresh[rt] = g
		o.issued[rt] = g.family
		resp["refresh_token"] = rt
	}
	oauthJSON(w, http.StatusOK, resp)
}

func oauthAPIError(w http.ResponseWriter, status int, typ, msg string) {
	oauthJSON(w, status, map[string]any{"type": "error", "error": map[string]string{"type": typ, "message": msg}})
}

// bearer checks the access token and scope; it answers and returns false on
// failure.
func (o *OAuth) bearer(w http.ResponseWriter, r *http.Request, needBeta bool) (plan string, ok bool) {
	if r.Method != http.MethodGet {
		oauthAPIError(w, http.StatusMethodNotAllowed, "invalid_request_error", "Method not allowed")
		return "", false
	}
	tok, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	o.mu.Lock()
	a, known := o.access[tok]
	revoked := o.revoked[a.family]
	plan = o.plan
	o.mu.Unlock()
	switch {
	case !found || !known || revoked:
		oauthAPIError(w, http.StatusUnauthorized, "authentication_error", "Invalid bearer token")
	case !time.Now().Before(a.expires):
		oauthAPIError(w, http.StatusUnauthorized, "authentication_error", "OAuth token has expired. Please obtain a new token or refresh your existing token.")
	case needBeta && !hasBeta(r.Header, "oauth-2025-04-20"):
		oauthAPIError(w, http.StatusUnauthorized, "authentication_error", "OAuth authentication is currently not supported.")
	case !slices.Contains(strings.Fields(a.scope), "user:profile"):
		oauthAPIError(w, http.StatusForbidden, "permission_error", "OAuth token does not meet scope requirement user:profile")
	default:
		return plan, true
	}
	return "", false
}

func hasBeta(h http.Header, beta string) bool {
	for _, v := range h.Values("anthropic-beta") {
		for _, b := range strings.Split(v, ",") {
			if strings.TrimSpace(b) == beta {
				return true
			}
		}
	}
	return false
}

func (o *OAuth) serveProfile(w http.ResponseWriter, r *http.Request) {
	plan, ok := o.bearer(w, r, false)
	if !ok {
		return
	}
	orgType, tier := "claude_"+plan, "default_claude_"+plan
	if plan == "max" {
		tier = "default_claude_max_20x"
	}
	oauthJSON(w, http.StatusOK, map[string]any{
		"account": map[string]any{
			"uuid": OAuthAccountUUID, "email": OAuthEmail, "display_name": "Owner",
			"has_claude_max": plan == "max", "has_claude_pro": plan == "pro",
		},
		"organization": map[string]any{
			"uuid": OAuthOrgUUID, "name": "Owner's Organization",
			"organization_type": orgType, "rate_limit_tier": tier,
		},
	})
}

func (o *OAuth) serveUsage(w http.ResponseWriter, r *http.Request) {
	if _, ok := o.bearer(w, r, true); !ok {
		return
	}
	o.mu.Lock()
	body := o.usageJSON
	o.mu.Unlock()
	if body == "" {
		body = defaultUsageJSON(time.Now())
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, body)
}

// defaultUsageJSON has distinct numbers per window so a test can tell them
// apart; utilization is a percentage, as on the real endpoint.
func defaultUsageJSON(now time.Time) string {
	at := func(d time.Duration) string { return now.Add(d).UTC().Truncate(time.Second).Format(time.RFC3339) }
	return fmt.Sprintf(`{"five_hour":{"utilization":12.5,"resets_at":%q},"seven_day":{"utilization":34,"resets_at":%q},"seven_day_opus":{"utilization":5,"resets_at":%q},"seven_day_sonnet":null}`,
		at(3*time.Hour), at(96*time.Hour), at(96*time.Hour))
}

func oauthRandom() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
