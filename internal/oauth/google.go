package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The Gemini CLI public client. Google calls this an installed application:
// the "secret" ships in Gemini CLI's source and is not treated as a secret
// (Google's own words), but the token endpoint still wants it on every grant.
const (
	GoogleClientID     = "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com"
	GoogleClientSecret = "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"
	// GoogleRedirectURI is the page Gemini CLI's "paste a code" login uses:
	// it shows the code to the user instead of redirecting to a local
	// listener, which a server cannot offer.
	GoogleRedirectURI = "https://codeassist.google.com/authcode"
)

// GoogleScopes are Gemini CLI's scopes: Cloud Platform for Code Assist, the
// two userinfo scopes for the account's email.
const GoogleScopes = "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile"

// googleUserAgent is close to what Gemini CLI's Google client sends, so the
// discovery calls look like the traffic the account normally has.
const googleUserAgent = "GeminiCLI/0.61.0 (linux; x64) google-api-nodejs-client/10.9.0"

// GoogleEndpoints are the URLs behind a Gemini CLI (Code Assist) account:
// Google's OAuth pages and the Code Assist API that knows the account's
// project. All three are configurable (GOOGLE_OAUTH_AUTHORIZE_URL,
// GOOGLE_OAUTH_TOKEN_URL, CODE_ASSIST_API_URL) so tests can use fakes.
type GoogleEndpoints struct {
	AuthorizeURL string
	TokenURL     string
	// CodeAssistURL is the Code Assist API root, without the
	// /v1internal part (Gemini CLI's CODE_ASSIST_ENDPOINT).
	CodeAssistURL string
}

// DefaultGoogleEndpoints returns the real endpoints as of this writing.
func DefaultGoogleEndpoints() GoogleEndpoints {
	return GoogleEndpoints{
		AuthorizeURL:  "https://accounts.google.com/o/oauth2/v2/auth",
		TokenURL:      "https://oauth2.googleapis.com/token",
		CodeAssistURL: "https://cloudcode-pa.googleapis.com",
	}
}

// AuthURL is the URL the admin opens in a browser logged into the Google
// account; after approval Google shows a code to paste back.
// access_type=offline asks for a refresh token and prompt=consent makes
// Google issue one even to an account that approved Gemini CLI before (it
// otherwise only does so on the first consent).
func (e GoogleEndpoints) AuthURL(p Pending) string {
	q := url.Values{}
	q.Set("client_id", GoogleClientID)
	q.Set("redirect_uri", GoogleRedirectURI)
	q.Set("response_type", "code")
	q.Set("scope", GoogleScopes)
	q.Set("access_type", "offline")
	q.Set("prompt", "consent")
	q.Set("code_challenge", p.Challenge())
	q.Set("code_challenge_method", "S256")
	q.Set("state", p.State)
	return withQuery(e.AuthorizeURL, q)
}

// GoogleClient talks to Google's OAuth endpoints and the Code Assist API
// for Gemini CLI accounts. Its fields mean what Client's do.
type GoogleClient struct {
	// Endpoints are the URLs to call; see DefaultGoogleEndpoints.
	Endpoints GoogleEndpoints
	// HTTP is the account's own client (with its proxy). Nil means a
	// plain &http.Client{}.
	HTTP *http.Client
	// Now is the clock for ExpiresAt and pending expiry. Nil means time.Now.
	Now func() time.Time
	// RetryWait is the pause before a refresh is retried after a
	// connection error. Zero means DefaultRetryWait.
	RetryWait time.Duration
	// OnboardPoll is how often OnboardUser polls an unfinished onboarding
	// operation. Zero means DefaultOnboardPoll.
	OnboardPoll time.Duration
}

func (c *GoogleClient) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *GoogleClient) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{}
}

// Exchange trades an authorization code (cleaned by ParseCodeFor) for
// tokens. The code is single-use, so nothing is retried. An answer without a
// refresh token is an error: the account would die within the hour.
func (c *GoogleClient) Exchange(ctx context.Context, p Pending, code string) (Token, error) {
	if p.Kind != KindOAuth {
		return Token{}, fmt.Errorf("oauth: Google accounts have no %q onboarding, only %q", p.Kind, KindOAuth)
	}
	if p.Expired(c.now()) {
		return Token{}, ErrPendingExpired
	}
	form := url.Values{}
	form.Set("grant_type", "authorization_code")
	form.Set("code", code)
	form.Set("redirect_uri", GoogleRedirectURI)
	form.Set("client_id", GoogleClientID)
	form.Set("client_secret", GoogleClientSecret)
	form.Set("code_verifier", p.Verifier)
	tok, err := c.token(ctx, form, []string{code, p.Verifier})
	if err != nil {
		return Token{}, fmt.Errorf("oauth: exchanging the authorization code: %w", err)
	}
	if tok.RefreshToken == "" {
		return Token{}, errors.New("oauth: exchanging the authorization code: Google issued no refresh token; start again (the authorize URL asks for consent so that it does)")
	}
	return tok, nil
}

// Refresh trades a refresh token for a new access token. Google does not
// rotate refresh tokens: its answer has none, and the one sent stays valid,
// so the result carries it on. The retry rule is the same as for the other
// platforms (once, and only after a failed connection), for the same
// reason: the Refresher must not need to know which platform rotates.
func (c *GoogleClient) Refresh(ctx context.Context, refreshToken string) (Token, error) {
	if refreshToken == "" {
		return Token{}, errors.New("oauth: refresh: account has no refresh token")
	}
	form := url.Values{}
	form.Set("grant_type", "refresh_token")
	form.Set("refresh_token", refreshToken)
	form.Set("client_id", GoogleClientID)
	form.Set("client_secret", GoogleClientSecret)
	secrets := []string{refreshToken}
	tok, err := retryConnect(ctx, c.RetryWait, func() (Token, error) { return c.token(ctx, form, secrets) })
	if err != nil {
		return Token{}, fmt.Errorf("oauth: refresh: %w", err)
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = refreshToken
	}
	return tok, nil
}

// token sends one form-encoded grant. The email comes from the id_token
// Google adds for the userinfo.email scope; a missing or odd id_token is not
// an error, since nothing but display depends on it.
func (c *GoogleClient) token(ctx context.Context, form url.Values, secrets []string) (Token, error) {
	h := http.Header{}
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	h.Set("Accept", "application/json")
	h.Set("User-Agent", googleUserAgent)
	tr, start, err := sendToken(ctx, c.httpClient(), c.now, c.Endpoints.TokenURL, h, []byte(form.Encode()), secrets)
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
	if tr.IDToken != "" {
		if id, err := parseJWTClaims(tr.IDToken); err == nil {
			tok.Email = id.Email
		}
	}
	return tok, nil
}
