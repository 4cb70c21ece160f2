package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/netx"
	"github.com/crs-relay/crs/internal/oauth"
	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
)

// maxImportLen bounds a pasted Claude Code credential file; real ones are
// well under 1 KiB.
const maxImportLen = 64 << 10

// OAuthDeps is what onboarding Claude subscription accounts needs from
// outside the store.
type OAuthDeps struct {
	// Endpoints are the Claude OAuth URLs (CLAUDE_OAUTH_* settings). A zero
	// value means oauth.DefaultClaudeEndpoints().
	Endpoints oauth.Endpoints
	// OpenAI and Google are the OAuth URLs of ChatGPT (Codex) and Gemini
	// CLI accounts; zero values mean the real ones.
	OpenAI oauth.OpenAIEndpoints
	Google oauth.GoogleEndpoints
	// HTTPClient returns the client for an account's proxy ("" = direct),
	// so the code exchange and the profile read leave from the address the
	// account's traffic will use: the upstream then sees one user behind
	// one address. The server passes its netx.Pool's Client. Nil means a
	// fresh netx pool per call, which is fine for a rare onboarding.
	HTTPClient func(proxy string) (*http.Client, error)
}

func (d OAuthDeps) endpoints() oauth.Endpoints {
	if d.Endpoints == (oauth.Endpoints{}) {
		return oauth.DefaultClaudeEndpoints()
	}
	return d.Endpoints
}

func (d OAuthDeps) openAI() oauth.OpenAIEndpoints {
	if d.OpenAI == (oauth.OpenAIEndpoints{}) {
		return oauth.DefaultOpenAIEndpoints()
	}
	return d.OpenAI
}

func (d OAuthDeps) google() oauth.GoogleEndpoints {
	if d.Google == (oauth.GoogleEndpoints{}) {
		return oauth.DefaultGoogleEndpoints()
	}
	return d.Google
}

// authURL is the approval page of a pending onboarding on platform.
func (d OAuthDeps) authURL(platform store.Platform, p oauth.Pending) string {
	switch platform {
	case store.PlatformOpenAI:
		return d.openAI().AuthURL(p)
	case store.PlatformGemini:
		return d.google().AuthURL(p)
	}
	return d.endpoints().AuthURL(p)
}

func (d OAuthDeps) client(proxy string) (*http.Client, error) {
	if d.HTTPClient != nil {
		return d.HTTPClient(proxy)
	}
	return netx.NewPool(netx.Options{}).Client(proxy)
}

// OAuthStart asks for a new onboarding. Kind "" means oauth.KindOAuth.
// Proxy is the account's outbound proxy ("" = direct); it is fixed at start
// because the code exchange must already go through it.
type OAuthStart struct {
	// Platform is claude (default), openai (a ChatGPT subscription for
	// Codex) or gemini (a Google account for Gemini CLI's Code Assist).
	Platform string `json:"platform"`
	Kind     string `json:"kind"`
	Proxy    string `json:"proxy"`
}

// OAuthStarted is what the admin needs to continue: open AuthURL in a
// browser logged into the Claude account, approve, and pass the code shown
// (or the whole callback URL) to FinishOAuth with SessionID before
// ExpiresAt. Part of the stable JSON interface (`crs accounts oauth start
// --json`, POST /admin/accounts/oauth/start).
type OAuthStarted struct {
	SessionID string    `json:"session_id"`
	AuthURL   string    `json:"auth_url"`
	Kind      string    `json:"kind"`
	ExpiresAt time.Time `json:"expires_at"`
}

// OAuthFinish completes an onboarding. Code is what the callback page
// showed: the raw code, code#state, or the whole callback URL. Name ""
// means "claude-" plus the kind. Priority must be given (front ends fill
// in DefaultPriority).
type OAuthFinish struct {
	Code     string
	Name     string
	Priority int
}

// OAuthImport adds an account from a credential the admin already has, as
// Claude Code stores it (~/.claude/.credentials.json). A credential without
// a refresh token becomes a setup-token account, since it cannot be renewed.
type OAuthImport struct {
	JSON     []byte
	Name     string
	Priority int
	Proxy    string
}

// OAuthError is a failure of the Claude OAuth service during onboarding
// (the code refused, the token endpoint down). It is not the admin's input
// being malformed, nor a crs fault; the message is safe to show: the oauth
// package keeps tokens and codes out of its errors.
type OAuthError struct {
	Platform store.Platform // "" means claude
	Step     string         // "exchange"
	Err      error
}

func (e *OAuthError) Error() string {
	p := e.Platform
	if p == "" {
		p = store.PlatformClaude
	}
	return fmt.Sprintf("%s oauth %s failed: %v", p, e.Step, e.Err)
}

func (e *OAuthError) Unwrap() error { return e.Err }

// Refused reports whether the authorization server refused the grant
// (wrong, used or expired code), which only a new onboarding fixes.
func (e *OAuthError) Refused() bool { return errors.Is(e.Err, oauth.ErrInvalidGrant) }

// pendingSecret is the sealed part of a pending onboarding: whoever holds
// the verifier and a code gets the account, and the proxy may carry a
// password.
type pendingSecret struct {
	Verifier  string    `json:"verifier"`
	State     string    `json:"state"`
	Kind      string    `json:"kind"`
	Proxy     string    `json:"proxy"`
	CreatedAt time.Time `json:"created_at"`
}

func checkKind(k string) (oauth.Kind, error) {
	switch oauth.Kind(strings.TrimSpace(k)) {
	case "", oauth.KindOAuth:
		return oauth.KindOAuth, nil
	case oauth.KindSetupToken:
		return oauth.KindSetupToken, nil
	}
	return "", invalid("kind", "%q is not one of %s, %s", k, oauth.KindOAuth, oauth.KindSetupToken)
}

// StartOAuth begins onboarding a Claude subscription account: it draws a
// PKCE verifier and state, keeps them sealed in the store for
// oauth.PendingTTL (so any instance can finish), and returns the URL to
// approve in a browser.
func (s *Service) StartOAuth(ctx context.Context, in OAuthStart) (OAuthStarted, error) {
	platform := store.Platform(strings.TrimSpace(in.Platform))
	switch platform {
	case "":
		platform = store.PlatformClaude
	case store.PlatformClaude, store.PlatformOpenAI, store.PlatformGemini:
	default:
		return OAuthStarted{}, invalid("platform", "%q has no OAuth onboarding (claude, openai or gemini)", in.Platform)
	}
	kind, err := checkKind(in.Kind)
	if err != nil {
		return OAuthStarted{}, err
	}
	if kind == oauth.KindSetupToken && platform != store.PlatformClaude {
		return OAuthStarted{}, invalid("kind", "setup tokens exist for claude accounts only")
	}
	proxy, err := checkProxy(strings.TrimSpace(in.Proxy))
	if err != nil {
		return OAuthStarted{}, err
	}
	now := s.now().UTC()
	p, err := oauth.NewPending(kind, now)
	if err != nil {
		return OAuthStarted{}, err
	}
	raw, err := json.Marshal(pendingSecret{Verifier: p.Verifier, State: p.State, Kind: string(kind), Proxy: proxy, CreatedAt: now})
	if err != nil {
		return OAuthStarted{}, err
	}
	rec := store.OAuthPending{
		ID:        "oas_" + secret.RandomHex(16),
		Platform:  platform,
		Kind:      string(kind),
		Sealed:    s.Box.Seal(raw),
		CreatedAt: now,
		ExpiresAt: now.Add(oauth.PendingTTL),
	}
	if err := s.Store.CreateOAuthPending(ctx, rec); err != nil {
		return OAuthStarted{}, err
	}
	return OAuthStarted{
		SessionID: rec.ID,
		AuthURL:   s.OAuth.authURL(platform, p),
		Kind:      string(kind),
		ExpiresAt: rec.ExpiresAt,
	}, nil
}

// errSessionGone is the one answer for an unknown, used or expired
// session: they need the same remedy and telling them apart would help only
// someone guessing IDs.
func errSessionGone() error {
	return invalid("session_id", "unknown, already finished or expired (sessions last %s); start the onboarding again", oauth.PendingTTL)
}

// FinishOAuth exchanges the pasted code for tokens through the account's
// proxy and stores the account. The session is used up even when the
// exchange fails, because the authorization server burns a code on first
// presentation: a retry could never succeed. Input is checked before the
// session is taken, so a typo does not cost the session.
func (s *Service) FinishOAuth(ctx context.Context, sessionID string, in OAuthFinish) (AccountView, error) {
	name := strings.TrimSpace(in.Name)
	if name != "" {
		var err error
		if name, err = checkName(name); err != nil {
			return AccountView{}, err
		}
	}
	prio, err := checkPriority(in.Priority)
	if err != nil {
		return AccountView{}, err
	}
	// The platform is known only once the session is taken, and a typo
	// must not cost the session: check that the code reads for some
	// platform now, and for the session's own below.
	if _, err := anyCode(in.Code); err != nil {
		return AccountView{}, invalid("code", "%s", strings.TrimPrefix(err.Error(), "oauth: "))
	}
	sessionID = strings.TrimSpace(sessionID)
	if sessionID == "" {
		return AccountView{}, invalid("session_id", "must not be empty; it is printed by the start step")
	}
	rec, err := s.Store.TakeOAuthPending(ctx, sessionID)
	if errors.Is(err, store.ErrNotFound) {
		return AccountView{}, errSessionGone()
	}
	if err != nil {
		return AccountView{}, err
	}
	if !s.now().Before(rec.ExpiresAt) {
		return AccountView{}, errSessionGone()
	}
	code, err := oauth.ParseCodeFor(rec.Platform, in.Code)
	if err != nil {
		return AccountView{}, invalid("code", "%s", strings.TrimPrefix(err.Error(), "oauth: "))
	}
	raw, err := s.Box.Open(rec.Sealed)
	if err != nil {
		return AccountView{}, fmt.Errorf("opening onboarding session (ENCRYPTION_KEY differs between instances?): %w", err)
	}
	var ps pendingSecret
	if err := json.Unmarshal(raw, &ps); err != nil {
		return AccountView{}, errors.New("onboarding session is corrupt; start again")
	}
	pending := oauth.Pending{State: ps.State, Verifier: ps.Verifier, Kind: oauth.Kind(ps.Kind), CreatedAt: ps.CreatedAt}
	hc, err := s.OAuth.client(ps.Proxy)
	if err != nil {
		return AccountView{}, invalid("proxy", "%s", err.Error())
	}
	if name == "" {
		name = string(rec.Platform) + "-" + ps.Kind
	}
	switch rec.Platform {
	case store.PlatformOpenAI:
		cl := &oauth.OpenAIClient{Endpoints: s.OAuth.openAI(), HTTP: hc, Now: s.now}
		tok, err := cl.Exchange(ctx, pending, code)
		if err != nil {
			return AccountView{}, exchangeError(rec.Platform, err)
		}
		return s.storeCredential(ctx, store.PlatformOpenAI, store.TypeOAuth, oauth.CredentialFromToken(tok), name, prio, ps.Proxy)
	case store.PlatformGemini:
		cl := &oauth.GoogleClient{Endpoints: s.OAuth.google(), HTTP: hc, Now: s.now}
		tok, err := cl.Exchange(ctx, pending, code)
		if err != nil {
			return AccountView{}, exchangeError(rec.Platform, err)
		}
		cred := oauth.CredentialFromToken(tok)
		// Code Assist serves a Google account through its Cloud project;
		// finding (or creating) it is part of onboarding. A failure stores
		// the account anyway (the code is spent) and it is found at the
		// first refresh.
		if project, _, err := cl.DiscoverProject(ctx, tok.AccessToken); err == nil {
			cred.ProjectID = project
		}
		return s.storeCredential(ctx, store.PlatformGemini, store.TypeOAuth, cred, name, prio, ps.Proxy)
	}
	cl := &oauth.Client{Endpoints: s.OAuth.endpoints(), HTTP: hc, Now: s.now}
	tok, err := cl.Exchange(ctx, pending, code)
	if err != nil {
		return AccountView{}, exchangeError(rec.Platform, err)
	}
	typ := store.TypeOAuth
	if pending.Kind == oauth.KindSetupToken {
		typ = store.TypeSetupToken
	}
	return s.storeOAuthAccount(ctx, cl, tok, typ, name, prio, ps.Proxy)
}

// exchangeError is the answer to a failed code exchange.
func exchangeError(p store.Platform, err error) error {
	if errors.Is(err, oauth.ErrPendingExpired) {
		return errSessionGone()
	}
	return &OAuthError{Platform: p, Step: "exchange", Err: err}
}

// anyCode reads an authorization code as some platform writes it.
func anyCode(input string) (string, error) {
	var first error
	for _, p := range []store.Platform{store.PlatformClaude, store.PlatformOpenAI, store.PlatformGemini} {
		code, err := oauth.ParseCodeFor(p, input)
		if err == nil {
			return code, nil
		}
		if first == nil {
			first = err
		}
	}
	return "", first
}

// ImportOAuth adds an account from Claude Code's stored credential. No
// network call is needed, except a best-effort profile read for the plan.
func (s *Service) ImportOAuth(ctx context.Context, in OAuthImport) (AccountView, error) {
	name, err := checkName(in.Name)
	if err != nil {
		return AccountView{}, err
	}
	prio, err := checkPriority(in.Priority)
	if err != nil {
		return AccountView{}, err
	}
	proxy, err := checkProxy(strings.TrimSpace(in.Proxy))
	if err != nil {
		return AccountView{}, err
	}
	if len(in.JSON) > maxImportLen {
		return AccountView{}, invalid("credential", "longer than %d bytes", maxImportLen)
	}
	tok, err := oauth.ParseImport(in.JSON)
	if err != nil {
		return AccountView{}, invalid("credential", "%s", strings.TrimPrefix(err.Error(), "oauth: import: "))
	}
	typ := store.TypeOAuth
	if tok.RefreshToken == "" {
		typ = store.TypeSetupToken
	}
	hc, err := s.OAuth.client(proxy)
	if err != nil {
		return AccountView{}, invalid("proxy", "%s", err.Error())
	}
	cl := &oauth.Client{Endpoints: s.OAuth.endpoints(), HTTP: hc, Now: s.now}
	return s.storeOAuthAccount(ctx, cl, tok, typ, name, prio, proxy)
}

// storeOAuthAccount reads the plan when the token may (a failure leaves the
// plan unknown rather than losing a working account whose code is already
// spent), seals the credential and creates the account.
func (s *Service) storeOAuthAccount(ctx context.Context, cl *oauth.Client, tok oauth.Token, typ store.AccountType, name string, prio int, proxy string) (AccountView, error) {
	cred := oauth.CredentialFromToken(tok)
	if typ == store.TypeOAuth && (len(tok.Scopes) == 0 || tok.HasScope("user:profile")) {
		if prof, err := cl.Profile(ctx, tok.AccessToken); err == nil {
			cred.Plan = prof.Plan
			cred.AccountUUID = orElse(cred.AccountUUID, prof.AccountUUID)
			cred.OrgUUID = orElse(cred.OrgUUID, prof.OrgUUID)
			cred.Email = orElse(cred.Email, prof.Email)
		}
	}
	return s.storeCredential(ctx, store.PlatformClaude, typ, cred, name, prio, proxy)
}

// storeCredential seals an onboarded credential and creates its account.
func (s *Service) storeCredential(ctx context.Context, p store.Platform, typ store.AccountType, cred oauth.Credential, name string, prio int, proxy string) (AccountView, error) {
	sealed, err := cred.Seal(s.Box)
	if err != nil {
		return AccountView{}, err
	}
	return s.createAccount(ctx, store.Account{
		Name:         name,
		Platform:     p,
		Type:         typ,
		Priority:     prio,
		Plan:         cred.Plan,
		SealedSecret: sealed,
		SealedProxy:  s.Box.Seal([]byte(proxy)),
	})
}

// orElse returns a unless it is empty, else b.
func orElse(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// ---- HTTP ----

type oauthFinishRequest struct {
	SessionID string `json:"session_id"`
	Code      string `json:"code"`
	Name      string `json:"name"`
	Priority  *int   `json:"priority"`
}

type oauthImportRequest struct {
	// Credential is Claude Code's credential JSON, as an object or as a
	// string holding it (what a web form pasting the file sends).
	Credential json.RawMessage `json:"credential"`
	Name       string          `json:"name"`
	Priority   *int            `json:"priority"`
	Proxy      string          `json:"proxy"`
}

func (a *API) startOAuth(w http.ResponseWriter, r *http.Request, _ authSession) {
	var req OAuthStart
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.svc.StartOAuth(r.Context(), req)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *API) finishOAuth(w http.ResponseWriter, r *http.Request, _ authSession) {
	var req oauthFinishRequest
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	in := OAuthFinish{Code: req.Code, Name: req.Name, Priority: DefaultPriority}
	if req.Priority != nil {
		in.Priority = *req.Priority
	}
	v, err := a.svc.FinishOAuth(r.Context(), req.SessionID, in)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func (a *API) importOAuth(w http.ResponseWriter, r *http.Request, _ authSession) {
	var req oauthImportRequest
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	cred := []byte(req.Credential)
	if len(cred) > 0 && cred[0] == '"' {
		var s string
		if err := json.Unmarshal(cred, &s); err != nil {
			a.fail(w, r, invalid("credential", "want a JSON object or a string holding one"))
			return
		}
		cred = []byte(s)
	}
	if len(cred) == 0 || string(cred) == "null" {
		a.fail(w, r, invalid("credential", "must be given: the contents of ~/.claude/.credentials.json"))
		return
	}
	in := OAuthImport{JSON: cred, Name: req.Name, Priority: DefaultPriority, Proxy: req.Proxy}
	if req.Priority != nil {
		in.Priority = *req.Priority
	}
	v, err := a.svc.ImportOAuth(r.Context(), in)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}
