package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
)

// DefaultRetryWait is the pause before the single retry of a refresh that
// failed to connect.
const DefaultRetryWait = 500 * time.Millisecond

// maxResponseBody caps what is read from any OAuth endpoint; real answers are
// a few hundred bytes.
const maxResponseBody = 1 << 20

// Token is an account's credential as a token endpoint (or an import) gave
// it. RefreshToken is empty for setup-token accounts. The identity fields
// are filled when the answer carries them: AccountUUID and OrgUUID by
// Claude's token endpoint, ChatGPTAccountID and Plan by OpenAI's id_token,
// Email by either (and by Google's id_token).
type Token struct {
	AccessToken  string
	RefreshToken string
	ExpiresAt    time.Time
	Scopes       []string
	AccountUUID  string
	OrgUUID      string
	Email        string
	// ChatGPTAccountID is the ChatGPT workspace the OpenAI token acts for;
	// the Codex backend wants it back in the chatgpt-account-id header.
	ChatGPTAccountID string
	// Plan is the ChatGPT plan ("plus", "pro", "team"…) an OpenAI id_token
	// names. Claude tokens leave it empty: their plan comes from Profile.
	Plan string
}

// HasScope reports whether the token was granted scope s.
func (t Token) HasScope(s string) bool { return slices.Contains(t.Scopes, s) }

// String shows the token without its secrets, so a Token that slips into a
// log line or an error message leaks nothing.
func (t Token) String() string {
	return fmt.Sprintf("oauth.Token{expires %s, scopes %q, account %q}", t.ExpiresAt.UTC().Format(time.RFC3339), t.Scopes, t.AccountUUID)
}

// GoString is String, for %#v.
func (t Token) GoString() string { return t.String() }

// Client talks to the Claude OAuth endpoints.
type Client struct {
	// Endpoints are the URLs to call; see DefaultClaudeEndpoints.
	Endpoints Endpoints
	// HTTP is the account's own client (with its proxy), so token and
	// profile traffic leaves from the same address as its API traffic.
	// Nil means a plain &http.Client{}.
	HTTP *http.Client
	// Now is the clock for ExpiresAt and pending expiry. Nil means time.Now.
	Now func() time.Time
	// RetryWait is the pause before a refresh is retried after a connection
	// error. Zero means DefaultRetryWait.
	RetryWait time.Duration
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{}
}

// tokenRequest is the JSON body of both grants; empty fields are omitted.
type tokenRequest struct {
	GrantType    string `json:"grant_type"`
	ClientID     string `json:"client_id"`
	Code         string `json:"code,omitempty"`
	RedirectURI  string `json:"redirect_uri,omitempty"`
	CodeVerifier string `json:"code_verifier,omitempty"`
	State        string `json:"state,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	ExpiresIn    int64  `json:"expires_in,omitempty"`
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
	// IDToken is the OpenID Connect token OpenAI and Google add; Claude
	// sends none.
	IDToken string `json:"id_token"`
	Account *struct {
		UUID         string `json:"uuid"`
		EmailAddress string `json:"email_address"`
		Email        string `json:"email"`
	} `json:"account"`
	Organization *struct {
		UUID string `json:"uuid"`
	} `json:"organization"`
}

// Exchange trades an authorization code (already cleaned by ParseCode) for
// tokens. A setup-token pending asks for a one-year token. The code is
// single-use: any failure means starting the onboarding again, so there is
// no retry here.
func (c *Client) Exchange(ctx context.Context, p Pending, code string) (Token, error) {
	if !p.Kind.valid() {
		return Token{}, fmt.Errorf("oauth: pending authorization has unknown kind %q", p.Kind)
	}
	if p.Expired(c.now()) {
		return Token{}, ErrPendingExpired
	}
	req := tokenRequest{
		GrantType:    "authorization_code",
		ClientID:     ClaudeClientID,
		Code:         code,
		RedirectURI:  ClaudeRedirectURI,
		CodeVerifier: p.Verifier,
		State:        p.State,
	}
	if p.Kind == KindSetupToken {
		req.ExpiresIn = int64(SetupTokenLifetime / time.Second)
	}
	tok, err := c.postToken(ctx, req, []string{code, p.Verifier})
	if err != nil {
		return Token{}, fmt.Errorf("oauth: exchanging the authorization code: %w", err)
	}
	return tok, nil
}

// Refresh trades a refresh token for a new access token and a new refresh
// token. Refresh tokens are single-use: the caller must save the returned
// RefreshToken before using the access token, or the account is lost.
//
// A request that failed to connect (dial or proxy handshake) is retried once,
// because it never reached the server. Nothing else is retried: an HTTP
// answer is final, and a connection that broke after the request was sent
// may already have consumed the refresh token, so repeating it could turn a
// network blip into invalid_grant. If the server returns no new refresh
// token, the old one is kept in the result.
func (c *Client) Refresh(ctx context.Context, refreshToken string) (Token, error) {
	if refreshToken == "" {
		return Token{}, errors.New("oauth: refresh: account has no refresh token")
	}
	req := tokenRequest{GrantType: "refresh_token", ClientID: ClaudeClientID, RefreshToken: refreshToken}
	secrets := []string{refreshToken}
	tok, err := retryConnect(ctx, c.RetryWait, func() (Token, error) { return c.postToken(ctx, req, secrets) })
	if err != nil {
		return Token{}, fmt.Errorf("oauth: refresh: %w", err)
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = refreshToken
	}
	return tok, nil
}

// retryConnect runs call, and once more after wait (DefaultRetryWait when
// zero) if it failed to connect. It is the one retry policy of every
// platform's refresh: only a request that provably never reached the server
// is repeated, because a refresh token the server did see may be spent.
func retryConnect(ctx context.Context, wait time.Duration, call func() (Token, error)) (Token, error) {
	tok, err := call()
	if err == nil || !isConnectError(err) {
		return tok, err
	}
	if wait <= 0 {
		wait = DefaultRetryWait
	}
	t := time.NewTimer(wait)
	select {
	case <-ctx.Done():
		t.Stop()
		return Token{}, fmt.Errorf("%w (gave up waiting to retry: %w)", err, ctx.Err())
	case <-t.C:
	}
	return call()
}

// isConnectError reports whether err happened before the request could
// reach the server: dialing, DNS, or the proxy handshake.
func isConnectError(err error) bool {
	var op *net.OpError
	if !errors.As(err, &op) {
		return false
	}
	switch op.Op {
	case "dial", "proxyconnect", "socks connect":
		return true
	}
	return false
}

// postToken sends one Claude token request: JSON, with the headers Claude
// Code sends. secrets are the values in the request that must never appear
// in an error, even if the server echoes them.
func (c *Client) postToken(ctx context.Context, body tokenRequest, secrets []string) (Token, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return Token{}, err
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json, text/plain, */*")
	h.Set("Accept-Language", "en-US,en;q=0.9")
	h.Set("User-Agent", userAgent)
	h.Set("Origin", origin)
	h.Set("Referer", origin+"/")
	tr, start, err := sendToken(ctx, c.httpClient(), c.now, c.Endpoints.TokenURL, h, raw, secrets)
	if err != nil {
		return Token{}, err
	}
	if tr.ExpiresIn <= 0 {
		return Token{}, errors.New("token response has no positive expires_in")
	}
	tok := Token{
		AccessToken:  tr.AccessToken,
		RefreshToken: tr.RefreshToken,
		ExpiresAt:    start.Add(time.Duration(tr.ExpiresIn) * time.Second),
		Scopes:       strings.Fields(tr.Scope),
	}
	if tr.Account != nil {
		tok.AccountUUID = tr.Account.UUID
		tok.Email = tr.Account.EmailAddress
		if tok.Email == "" {
			tok.Email = tr.Account.Email
		}
	}
	if tr.Organization != nil {
		tok.OrgUUID = tr.Organization.UUID
	}
	return tok, nil
}

// sendToken POSTs body to a token endpoint with the given headers and
// decodes a 200 answer that has an access token; any other answer becomes a
// *TokenError. It returns the time the request was sent, which is what
// expires_in counts from. Every platform's grants go through it, so a
// response is read with one size cap, one timeout and one scrubbing of
// secrets.
func sendToken(ctx context.Context, hc *http.Client, now func() time.Time, tokenURL string, h http.Header, body []byte, secrets []string) (tokenResponse, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, bytes.NewReader(body))
	if err != nil {
		return tokenResponse{}, time.Time{}, fmt.Errorf("token URL: %w", err)
	}
	maps.Copy(req.Header, h)
	start := now()
	resp, err := hc.Do(req)
	if err != nil {
		return tokenResponse{}, time.Time{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return tokenResponse{}, time.Time{}, fmt.Errorf("reading token response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return tokenResponse{}, time.Time{}, newTokenError(resp.StatusCode, data, secrets)
	}
	var tr tokenResponse
	if err := json.Unmarshal(data, &tr); err != nil {
		return tokenResponse{}, time.Time{}, errors.New("token response is not JSON")
	}
	if tr.AccessToken == "" {
		return tokenResponse{}, time.Time{}, errors.New("token response has no access_token")
	}
	return tr, start, nil
}

// TokenError is a refusal from the token endpoint. Errors.Is(err,
// ErrInvalidGrant) holds when the grant itself is dead (see Dead).
type TokenError struct {
	Status int
	// Code is the OAuth error code ("invalid_grant", …), if any.
	Code string
	// Description is the server's error_description (or message), with any
	// secret of the request removed and cut to 200 characters.
	Description string
}

// Dead reports whether the refusal condemns the grant: invalid_grant with
// any status, or a 400/401/403 that does not blame our own request shape
// (invalid_client, invalid_request, unsupported_grant_type, invalid_scope:
// those mean a misconfigured relay, and marking every account dead for it
// would turn one config mistake into re-onboarding them all). 404, 429 and
// 5xx are never dead: the endpoint moved, or is busy.
func (e *TokenError) Dead() bool {
	if e.Code == "invalid_grant" {
		return true
	}
	switch e.Status {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
		switch e.Code {
		case "invalid_client", "invalid_request", "unsupported_grant_type", "invalid_scope":
			return false
		}
		return true
	}
	return false
}

func (e *TokenError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "token endpoint answered HTTP %d", e.Status)
	if e.Code != "" {
		b.WriteString(": " + e.Code)
	}
	if e.Description != "" {
		b.WriteString(": " + e.Description)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalidGrant) true for a dead grant.
func (e *TokenError) Is(target error) bool {
	return target == ErrInvalidGrant && e.Dead()
}

// newTokenError reads the OAuth error shape {"error","error_description"}
// (Claude, Google) and also the API shape {"error":{"type","code","message"}}
// of Anthropic and OpenAI.
func newTokenError(status int, body []byte, secrets []string) *TokenError {
	te := &TokenError{Status: status}
	var flat struct {
		Error       json.RawMessage `json:"error"`
		Description string          `json:"error_description"`
		Message     string          `json:"message"`
	}
	if json.Unmarshal(body, &flat) == nil {
		var code string
		var nested struct {
			Type    string `json:"type"`
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		switch {
		case json.Unmarshal(flat.Error, &code) == nil:
			te.Code = code
			te.Description = flat.Description
			if te.Description == "" {
				te.Description = flat.Message
			}
		case json.Unmarshal(flat.Error, &nested) == nil:
			// OpenAI puts the precise reason in code
			// ("refresh_token_reused") and a generic class in type;
			// Anthropic has only type.
			te.Code = nested.Code
			if te.Code == "" {
				te.Code = nested.Type
			}
			te.Description = nested.Message
		}
	} else {
		te.Description = string(body)
	}
	te.Description = scrub(te.Description, secrets)
	return te
}

// scrub removes secrets from text that came from a server and cuts it short.
func scrub(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200]) + "…"
	}
	return s
}
