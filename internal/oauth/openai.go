package oauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The Codex CLI public client. Like Claude's, it is not a secret: every
// Codex install sends it, and the authorization server only accepts its
// registered redirect URI, which is why a server-side onboarding asks the
// admin to paste the (unreachable) localhost callback URL back.
const (
	OpenAIClientID    = "app_EMoamEEZ73f0CkXaXp7hrann"
	OpenAIRedirectURI = "http://localhost:1455/auth/callback"
)

// OpenAI scopes. offline_access is what makes the server issue a refresh
// token; a refresh asks again for the identity scopes only, as Codex does.
const (
	OpenAIScopes        = "openid profile email offline_access"
	OpenAIRefreshScopes = "openid profile email"
)

// openAIAuthClaim is the id_token claim under which OpenAI puts the ChatGPT
// account, user and plan.
const openAIAuthClaim = "https://api.openai.com/auth"

// OpenAIEndpoints are the two URLs of the OpenAI (ChatGPT) OAuth service.
// They are configurable (OPENAI_OAUTH_AUTHORIZE_URL, OPENAI_OAUTH_TOKEN_URL)
// for the same reason Claude's are: tests point them at a fake, and a moved
// endpoint must not need a release.
type OpenAIEndpoints struct {
	AuthorizeURL string
	TokenURL     string
}

// DefaultOpenAIEndpoints returns the real endpoints as of this writing.
func DefaultOpenAIEndpoints() OpenAIEndpoints {
	return OpenAIEndpoints{
		AuthorizeURL: "https://auth.openai.com/oauth/authorize",
		TokenURL:     "https://auth.openai.com/oauth/token",
	}
}

// AuthURL is the URL the admin opens in a browser logged into the ChatGPT
// account. After approval the browser is sent to OpenAIRedirectURI, which
// nothing listens on; the admin pastes that URL (or its code) back, and
// ParseCodeFor(store.PlatformOpenAI, …) takes the code out of it.
// id_token_add_organizations and codex_cli_simplified_flow are what Codex
// CLI asks for: the first puts the workspace into the id_token, the second
// picks the login page Codex users see.
func (e OpenAIEndpoints) AuthURL(p Pending) string {
	q := url.Values{}
	q.Set("response_type", "code")
	q.Set("client_id", OpenAIClientID)
	q.Set("redirect_uri", OpenAIRedirectURI)
	q.Set("scope", OpenAIScopes)
	q.Set("code_challenge", p.Challenge())
	q.Set("code_challenge_method", "S256")
	q.Set("id_token_add_organizations", "true")
	q.Set("codex_cli_simplified_flow", "true")
	q.Set("state", p.State)
	return withQuery(e.AuthorizeURL, q)
}

// withQuery appends q to base, which may already carry a query.
func withQuery(base string, q url.Values) string {
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + q.Encode()
}

// OpenAIClient talks to the OpenAI OAuth endpoints for ChatGPT (Codex)
// accounts. Its fields mean what Client's do.
type OpenAIClient struct {
	// Endpoints are the URLs to call; see DefaultOpenAIEndpoints.
	Endpoints OpenAIEndpoints
	// HTTP is the account's own client (with its proxy). Nil means a
	// plain &http.Client{}.
	HTTP *http.Client
	// Now is the clock for ExpiresAt and pending expiry. Nil means time.Now.
	Now func() time.Time
	// RetryWait is the pause before a refresh is retried after a
	// connection error. Zero means DefaultRetryWait.
	RetryWait time.Duration
}

func (c *OpenAIClient) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *OpenAIClient) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{}
}

// Exchange trades an authorization code (cleaned by ParseCodeFor) for
// tokens, form-encoded as Codex CLI sends it. The id_token's ChatGPT
// account, plan and email land in the Token. As with Claude, the code is
// single-use, so nothing is retried.
func (c *OpenAIClient) Exchange(ctx context.Context, p Pending, code string) (Token, error) {
	if p.Kind != KindOAuth {
		return Token{}, fmt.Errorf("oauth: OpenAI accounts have no %q onboarding, only %q", p.Kind, KindOAuth)
	}
	if p.Expired(c.now()) {
		return Token{}, ErrPendingExpired
	}
	form := url.Values{}
	form.Set("grant_type", "authorization_code")
	form.Set("code", code)
	form.Set("redirect_uri", OpenAIRedirectURI)
	form.Set("client_id", OpenAIClientID)
	form.Set("code_verifier", p.Verifier)
	h := http.Header{}
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	h.Set("Accept", "application/json")
	tok, err := c.token(ctx, h, []byte(form.Encode()), []string{code, p.Verifier})
	if err != nil {
		return Token{}, fmt.Errorf("oauth: exchanging the authorization code: %w", err)
	}
	if tok.RefreshToken == "" {
		return Token{}, errors.New("oauth: exchanging the authorization code: OpenAI issued no refresh token (offline_access not granted); the account could not be kept alive")
	}
	return tok, nil
}

// openAIRefreshRequest is the JSON body Codex CLI refreshes with.
type openAIRefreshRequest struct {
	ClientID     string `json:"client_id"`
	GrantType    string `json:"grant_type"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
}

// Refresh trades a refresh token for new tokens. OpenAI rotates refresh
// tokens and refuses a spent one (refresh_token_reused), so the rules of
// Client.Refresh hold here too: the caller saves the returned RefreshToken
// before using the access token, a request that failed to connect is
// retried once and nothing else is, and an answer without a new refresh
// token keeps the old one. Identity fields the answer lacks (it may carry no
// id_token) are left empty for the caller to keep from before.
func (c *OpenAIClient) Refresh(ctx context.Context, refreshToken string) (Token, error) {
	if refreshToken == "" {
		return Token{}, errors.New("oauth: refresh: account has no refresh token")
	}
	raw, err := json.Marshal(openAIRefreshRequest{
		ClientID: OpenAIClientID, GrantType: "refresh_token", RefreshToken: refreshToken, Scope: OpenAIRefreshScopes,
	})
	if err != nil {
		return Token{}, err
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json")
	secrets := []string{refreshToken}
	tok, err := retryConnect(ctx, c.RetryWait, func() (Token, error) { return c.token(ctx, h, raw, secrets) })
	if err != nil {
		return Token{}, fmt.Errorf("oauth: refresh: %w", err)
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = refreshToken
	}
	return tok, nil
}

// token sends one grant and turns the answer into a Token. OpenAI answers
// with expires_in; should it ever leave it out, the access token (a JWT)
// still says when it expires, which beats refreshing before every request.
func (c *OpenAIClient) token(ctx context.Context, h http.Header, body []byte, secrets []string) (Token, error) {
	tr, start, err := sendToken(ctx, c.httpClient(), c.now, c.Endpoints.TokenURL, h, body, secrets)
	if err != nil {
		return Token{}, err
	}
	tok := Token{AccessToken: tr.AccessToken, RefreshToken: tr.RefreshToken, Scopes: strings.Fields(tr.Scope)}
	if tr.ExpiresIn > 0 {
		tok.ExpiresAt = start.Add(time.Duration(tr.ExpiresIn) * time.Second)
	} else {
		at, err := parseJWTClaims(tr.AccessToken)
		if err != nil || at.Exp <= 0 {
			return Token{}, errors.New("token response has no positive expires_in and the access token names no expiry")
		}
		tok.ExpiresAt = time.Unix(at.Exp, 0)
	}
	if tr.IDToken != "" {
		id, err := parseJWTClaims(tr.IDToken)
		if err != nil {
			return Token{}, fmt.Errorf("token response id_token: %w", err)
		}
		tok.ChatGPTAccountID = id.OpenAI.ChatGPTAccountID
		tok.Plan = id.OpenAI.ChatGPTPlanType
		tok.Email = id.Email
		if tok.Email == "" {
			tok.Email = id.OpenAIProfile.Email
		}
	}
	return tok, nil
}

// jwtClaims are the claims crs reads from OpenAI's and Google's JWTs.
type jwtClaims struct {
	Email  string `json:"email"`
	Exp    int64  `json:"exp"`
	OpenAI struct {
		ChatGPTAccountID string `json:"chatgpt_account_id"`
		ChatGPTPlanType  string `json:"chatgpt_plan_type"`
	} `json:"https://api.openai.com/auth"`
	OpenAIProfile struct {
		Email string `json:"email"`
	} `json:"https://api.openai.com/profile"`
}

// parseJWTClaims decodes a JWT's payload without checking its signature.
// That is sound here and only here: the token comes straight from the token
// endpoint, over TLS, in answer to a request crs made, so the channel
// already vouches for its issuer (OpenID Connect Core §3.1.3.7 allows
// exactly this), and the claims only label the account (workspace, plan,
// email) for routing and display; they never grant anything. Checking the
// signature would mean fetching and caching the issuer's keys through each
// account's proxy for no gain. Errors never quote the token.
func parseJWTClaims(token string) (jwtClaims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return jwtClaims{}, errors.New("not a JWT (want three dot-separated parts)")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return jwtClaims{}, errors.New("JWT payload is not base64url")
	}
	var c jwtClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return jwtClaims{}, errors.New("JWT payload is not the expected JSON object")
	}
	return c, nil
}
