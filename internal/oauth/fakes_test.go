package oauth_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/oauth"
)

// These fakes enforce what the real services enforce and a client can get
// wrong: the public client id (and Google's secret), the redirect URI, PKCE,
// single-use codes, the body encoding each grant is sent in, OpenAI's
// single-use rotating refresh tokens and Google's non-rotating ones.

// Identity the OpenAI fake puts in its id_tokens.
const (
	fakeChatGPTAccount = "b5a1c2d3-0000-4000-8000-00000000c0de"
	fakeChatGPTEmail   = "codex-user@example.com"
	fakeGoogleEmail    = "gemini-user@example.com"
	fakeProject        = "fake-project-123"
)

func randomString(prefix string) string {
	var b [18]byte
	_, _ = rand.Read(b[:])
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// unsignedJWT builds a JWT with the given claims and a junk signature: the
// client must read it without verifying.
func unsignedJWT(claims map[string]any) string {
	head := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
	raw, _ := json.Marshal(claims)
	return head + "." + base64.RawURLEncoding.EncodeToString(raw) + ".c2lnbmF0dXJl"
}

func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// tokenFault is one canned answer of a token endpoint.
type tokenFault struct {
	status int
	body   string
}

// recorded is one request a fake received.
type recorded struct {
	Method, Path, ContentType string
	Header                    http.Header
	Body                      []byte
	Form                      url.Values
}

// grantFakeBase is what both token fakes share: codes, tokens, faults,
// counters.
type grantFakeBase struct {
	mu        sync.Mutex
	srv       *httptest.Server
	codes     map[string]string // code → PKCE challenge
	refresh   map[string]bool   // refresh token → still valid
	spent     map[string]bool   // rotated-away refresh tokens (OpenAI)
	access    map[string]time.Time
	faults    []tokenFault
	refreshes int
	requests  []recorded
	expiresIn int64
	newCode   func() string
}

func newGrantFakeBase(newCode func() string) grantFakeBase {
	return grantFakeBase{codes: map[string]string{}, refresh: map[string]bool{}, spent: map[string]bool{},
		access: map[string]time.Time{}, expiresIn: 3600, newCode: newCode}
}

// IssueCode mints a code bound to the PKCE challenge, as the user's
// approval in the browser does.
// Codes look like the real ones: OpenAI's "ac_<part>.<part>", Google's
// "4/0A…".
func (f *grantFakeBase) IssueCode(challenge string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	code := f.newCode()
	f.codes[code] = challenge
	return code
}

// RefreshCalls counts refresh grants that reached the fake.
func (f *grantFakeBase) RefreshCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refreshes
}

// Revoke kills a refresh token as a user revoking access does.
func (f *grantFakeBase) Revoke(refreshToken string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refresh[refreshToken] = false
}

// FailNext makes the next token request get status and body.
func (f *grantFakeBase) FailNext(status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, tokenFault{status, body})
}

// AccessTokenValid reports whether the fake issued tok and it has not
// expired.
func (f *grantFakeBase) AccessTokenValid(tok string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	exp, ok := f.access[tok]
	return ok && time.Now().Before(exp)
}

// Requests returns every request the fake received.
func (f *grantFakeBase) Requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.requests...)
}

func (f *grantFakeBase) record(r *http.Request) recorded {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	body, _ := io.ReadAll(r.Body)
	rec := recorded{Method: r.Method, Path: r.URL.Path, ContentType: ct, Header: r.Header.Clone(), Body: body}
	if ct == "application/x-www-form-urlencoded" {
		rec.Form, _ = url.ParseQuery(string(body))
	}
	f.requests = append(f.requests, rec)
	return rec
}

// nextFault pops a queued fault; the caller holds mu.
func (f *grantFakeBase) nextFault() *tokenFault {
	if len(f.faults) == 0 {
		return nil
	}
	ft := f.faults[0]
	f.faults = f.faults[1:]
	return &ft
}

// checkCode consumes a code and checks its verifier; the caller holds mu.
func (f *grantFakeBase) checkCode(code, verifier string) string {
	challenge, ok := f.codes[code]
	if !ok {
		return "code unknown or already used"
	}
	delete(f.codes, code)
	if s256(verifier) != challenge {
		return "code_verifier does not match the code_challenge"
	}
	return ""
}

// mint issues a fresh access token and, when withRefresh, a refresh token;
// the caller holds mu.
func (f *grantFakeBase) mint(prefix string, withRefresh bool) (access, refresh string) {
	access = randomString(prefix + "at_")
	f.access[access] = time.Now().Add(time.Duration(f.expiresIn) * time.Second)
	if withRefresh {
		refresh = randomString(prefix + "rt_")
		f.refresh[refresh] = true
	}
	return access, refresh
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// fakeOpenAIOAuth is the auth.openai.com token endpoint as Codex CLI meets
// it: the code exchange is form-encoded, the refresh is JSON with the
// identity scopes, refresh tokens rotate and a spent one is refused with
// refresh_token_reused.
type fakeOpenAIOAuth struct {
	grantFakeBase
	plan         string
	omitIDToken  bool // refresh answers without id_token
	omitExpiries bool // no expires_in: the access token's exp must do
}

func startFakeOpenAIOAuth(t *testing.T) *fakeOpenAIOAuth {
	t.Helper()
	f := &fakeOpenAIOAuth{grantFakeBase: newGrantFakeBase(func() string { return randomString("ac_") + "." + randomString("") }), plan: "pro"}
	f.expiresIn = 10 * 24 * 3600
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOpenAIOAuth) endpoints() oauth.OpenAIEndpoints {
	return oauth.OpenAIEndpoints{AuthorizeURL: f.srv.URL + "/oauth/authorize", TokenURL: f.srv.URL + "/oauth/token"}
}

func (f *fakeOpenAIOAuth) client() *oauth.OpenAIClient {
	return &oauth.OpenAIClient{Endpoints: f.endpoints(), HTTP: &http.Client{}, RetryWait: time.Millisecond}
}

func (f *fakeOpenAIOAuth) set(edit func(*fakeOpenAIOAuth)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	edit(f)
}

func (f *fakeOpenAIOAuth) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/oauth/token" {
		http.NotFound(w, r)
		return
	}
	rec := f.record(r)
	var grant, clientID string
	var jsonBody map[string]string
	switch rec.ContentType {
	case "application/x-www-form-urlencoded":
		grant, clientID = rec.Form.Get("grant_type"), rec.Form.Get("client_id")
	case "application/json":
		if err := json.Unmarshal(rec.Body, &jsonBody); err != nil {
			writeJSON(w, 400, map[string]any{"error": "invalid_request", "error_description": "body is not JSON"})
			return
		}
		grant, clientID = jsonBody["grant_type"], jsonBody["client_id"]
	default:
		writeJSON(w, 400, map[string]any{"error": "invalid_request", "error_description": "unsupported content type"})
		return
	}
	if grant == "refresh_token" {
		f.refreshes++
	}
	if ft := f.nextFault(); ft != nil {
		w.WriteHeader(ft.status)
		_, _ = w.Write([]byte(ft.body))
		return
	}
	if clientID != oauth.OpenAIClientID {
		writeJSON(w, 401, map[string]any{"error": "invalid_client"})
		return
	}
	withID := true
	switch grant {
	case "authorization_code":
		if rec.ContentType != "application/x-www-form-urlencoded" {
			writeJSON(w, 400, map[string]any{"error": "invalid_request", "error_description": "Codex exchanges codes form-encoded"})
			return
		}
		if rec.Form.Get("redirect_uri") != oauth.OpenAIRedirectURI {
			writeJSON(w, 400, map[string]any{"error": "invalid_grant", "error_description": "redirect_uri mismatch"})
			return
		}
		if msg := f.checkCode(rec.Form.Get("code"), rec.Form.Get("code_verifier")); msg != "" {
			writeJSON(w, 400, map[string]any{"error": "invalid_grant", "error_description": msg})
			return
		}
	case "refresh_token":
		if rec.ContentType != "application/json" || jsonBody["scope"] != oauth.OpenAIRefreshScopes {
			writeJSON(w, 400, map[string]any{"error": "invalid_request", "error_description": "Codex refreshes with a JSON body and the identity scopes"})
			return
		}
		rt := jsonBody["refresh_token"]
		if f.spent[rt] {
			writeJSON(w, 401, map[string]any{"error": map[string]any{"message": "Your refresh token has already been used to generate a new access token.",
				"type": "invalid_request_error", "param": nil, "code": "refresh_token_reused"}})
			return
		}
		if !f.refresh[rt] {
			writeJSON(w, 400, map[string]any{"error": "invalid_grant", "error_description": "refresh token unknown or revoked"})
			return
		}
		delete(f.refresh, rt)
		f.spent[rt] = true
		withID = !f.omitIDToken
	default:
		writeJSON(w, 400, map[string]any{"error": "unsupported_grant_type"})
		return
	}
	access, refresh := f.mint("oai_", true)
	exp := time.Now().Add(time.Duration(f.expiresIn) * time.Second).Unix()
	// The access token is a JWT too; its exp is what a client falls back on.
	access = unsignedJWT(map[string]any{"exp": exp, "jti": access})
	f.access[access] = time.Unix(exp, 0)
	out := map[string]any{"access_token": access, "refresh_token": refresh, "token_type": "Bearer",
		"scope": "openid profile email offline_access"}
	if !f.omitExpiries {
		out["expires_in"] = f.expiresIn
	}
	if withID {
		out["id_token"] = unsignedJWT(map[string]any{
			"email": fakeChatGPTEmail, "exp": time.Now().Add(time.Hour).Unix(),
			"https://api.openai.com/auth": map[string]any{
				"chatgpt_account_id": fakeChatGPTAccount, "chatgpt_plan_type": f.plan, "chatgpt_user_id": "user-1",
			},
		})
	}
	writeJSON(w, 200, out)
}

// fakeGoogle is Google's token endpoint plus the Code Assist setup calls.
// Refresh tokens are not rotated: a refresh answer has none and the token
// sent stays valid.
type fakeGoogle struct {
	grantFakeBase
	onboarded    bool   // loadCodeAssist reports a currentTier and project
	paidTier     string // added as paidTier when set
	defaultTier  string // the isDefault allowed tier; "" for none
	pendingPolls int    // polls an onboarding operation stays not done
	opName       string // name of the onboarding operation
	onboardDone  string // project the finished operation reports ("" none)
	ineligible   []map[string]string
	tierSent     string
}

func startFakeGoogle(t *testing.T) *fakeGoogle {
	t.Helper()
	f := &fakeGoogle{grantFakeBase: newGrantFakeBase(func() string { return randomString("4/0A") }), onboarded: true, defaultTier: oauth.TierFree,
		opName: "operations/onboard-1", onboardDone: fakeProject}
	f.expiresIn = 3599
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeGoogle) endpoints() oauth.GoogleEndpoints {
	return oauth.GoogleEndpoints{AuthorizeURL: f.srv.URL + "/o/oauth2/v2/auth", TokenURL: f.srv.URL + "/token", CodeAssistURL: f.srv.URL}
}

func (f *fakeGoogle) client() *oauth.GoogleClient {
	return &oauth.GoogleClient{Endpoints: f.endpoints(), HTTP: &http.Client{}, RetryWait: time.Millisecond, OnboardPoll: time.Millisecond}
}

func (f *fakeGoogle) set(edit func(*fakeGoogle)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	edit(f)
}

func googleError(w http.ResponseWriter, status int, statusText, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": status, "message": msg, "status": statusText}})
}

func (f *fakeGoogle) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rec := f.record(r)
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/token":
		f.serveToken(w, rec)
	case strings.HasPrefix(r.URL.Path, "/v1internal"):
		f.serveCodeAssist(w, r, rec)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeGoogle) serveToken(w http.ResponseWriter, rec recorded) {
	if rec.Form.Get("grant_type") == "refresh_token" {
		f.refreshes++
	}
	if ft := f.nextFault(); ft != nil {
		w.WriteHeader(ft.status)
		_, _ = w.Write([]byte(ft.body))
		return
	}
	if rec.ContentType != "application/x-www-form-urlencoded" {
		writeJSON(w, 400, map[string]any{"error": "invalid_request"})
		return
	}
	if rec.Form.Get("client_id") != oauth.GoogleClientID || rec.Form.Get("client_secret") != oauth.GoogleClientSecret {
		writeJSON(w, 401, map[string]any{"error": "invalid_client", "error_description": "The OAuth client was not found."})
		return
	}
	out := map[string]any{"token_type": "Bearer", "expires_in": f.expiresIn,
		"scope":    "https://www.googleapis.com/auth/userinfo.email openid https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.profile",
		"id_token": unsignedJWT(map[string]any{"email": fakeGoogleEmail, "exp": time.Now().Add(time.Hour).Unix()})}
	switch rec.Form.Get("grant_type") {
	case "authorization_code":
		if rec.Form.Get("redirect_uri") != oauth.GoogleRedirectURI {
			writeJSON(w, 400, map[string]any{"error": "redirect_uri_mismatch"})
			return
		}
		if msg := f.checkCode(rec.Form.Get("code"), rec.Form.Get("code_verifier")); msg != "" {
			writeJSON(w, 400, map[string]any{"error": "invalid_grant", "error_description": msg})
			return
		}
		out["access_token"], out["refresh_token"] = f.mint("ya29.", true)
	case "refresh_token":
		if !f.refresh[rec.Form.Get("refresh_token")] {
			writeJSON(w, 400, map[string]any{"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
			return
		}
		out["access_token"], _ = f.mint("ya29.", false)
	default:
		writeJSON(w, 400, map[string]any{"error": "unsupported_grant_type"})
		return
	}
	writeJSON(w, 200, out)
}

func (f *fakeGoogle) serveCodeAssist(w http.ResponseWriter, r *http.Request, rec recorded) {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if exp, ok := f.access[tok]; !ok || !time.Now().Before(exp) {
		googleError(w, 401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
		return
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1internal:loadCodeAssist":
		var body struct {
			Metadata map[string]string `json:"metadata"`
		}
		if json.Unmarshal(rec.Body, &body) != nil || body.Metadata["pluginType"] != "GEMINI" {
			googleError(w, 400, "INVALID_ARGUMENT", "metadata.pluginType is required")
			return
		}
		out := map[string]any{}
		if f.onboarded {
			out["currentTier"] = map[string]any{"id": oauth.TierFree, "name": "Gemini Code Assist for individuals"}
			if f.onboardDone != "" {
				out["cloudaicompanionProject"] = f.onboardDone
			}
		} else {
			tiers := []map[string]any{{"id": oauth.TierLegacy, "isDefault": false}}
			if f.defaultTier != "" {
				tiers = append(tiers, map[string]any{"id": f.defaultTier, "isDefault": true})
			}
			out["allowedTiers"] = tiers
		}
		if f.paidTier != "" {
			out["paidTier"] = map[string]any{"id": f.paidTier}
		}
		if len(f.ineligible) > 0 {
			out["ineligibleTiers"] = f.ineligible
		}
		writeJSON(w, 200, out)
	case r.Method == http.MethodPost && r.URL.Path == "/v1internal:onboardUser":
		var body struct {
			TierID   string            `json:"tierId"`
			Project  *string           `json:"cloudaicompanionProject"`
			Metadata map[string]string `json:"metadata"`
		}
		if json.Unmarshal(rec.Body, &body) != nil || body.TierID == "" || body.Metadata["pluginType"] != "GEMINI" {
			googleError(w, 400, "INVALID_ARGUMENT", "tierId and metadata are required")
			return
		}
		if body.TierID == oauth.TierFree && body.Project != nil {
			googleError(w, 412, "FAILED_PRECONDITION", "free tier takes no project")
			return
		}
		f.tierSent = body.TierID
		f.serveOperation(w)
	case r.Method == http.MethodGet && r.URL.Path == "/v1internal/"+strings.TrimPrefix(f.opName, "/") ||
		r.Method == http.MethodGet && r.URL.Path == "/v1internal/operations/"+f.opName:
		f.serveOperation(w)
	default:
		googleError(w, 404, "NOT_FOUND", "no such method")
	}
}

// serveOperation answers the onboarding operation: not done while polls
// remain, then done with the project.
func (f *fakeGoogle) serveOperation(w http.ResponseWriter) {
	if f.pendingPolls > 0 {
		f.pendingPolls--
		writeJSON(w, 200, map[string]any{"name": f.opName, "done": false})
		return
	}
	f.onboarded = true
	resp := map[string]any{}
	if f.onboardDone != "" {
		resp["cloudaicompanionProject"] = map[string]any{"id": f.onboardDone, "name": "projects/" + f.onboardDone}
	}
	writeJSON(w, 200, map[string]any{"name": f.opName, "done": true, "response": resp})
}
