// Package oauth holds the subscription OAuth clients of the three platforms
// crs pools: Claude (Client), ChatGPT for Codex (OpenAIClient) and Google
// for Gemini CLI's Code Assist (GoogleClient). Each offers the PKCE
// authorization-code flow an admin completes by pasting a code, and the
// refresh that keeps an account alive; Claude adds the profile and usage
// reads that show a plan and quota, Google the Code Assist project
// discovery. The Refresher keeps every platform's tokens fresh through one
// Renewer interface, so single flight, the store lease and save-before-use
// hold for all of them.
//
// The package holds no state and no globals: callers persist a Pending
// between the two onboarding steps and pass every request through the
// account's own (proxied) *http.Client, so the upstream sees one user behind
// one address.
//
// Tokens never appear in errors or in the String form of a Token, because
// errors end up in logs and in the admin console.
package oauth

import (
	"errors"
	"time"
)

// The Claude Code public client. These are not secrets: every Claude Code
// install sends them. They are constants rather than Endpoints fields because
// the server only accepts this exact pair; only the URLs have ever moved.
const (
	ClaudeClientID    = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
	ClaudeRedirectURI = "https://platform.claude.com/oauth/code/callback"
)

// Scopes requested by each onboarding kind. The browser flow asks for what
// Claude Code asks for; the setup-token flow asks for inference only, which
// is why such accounts cannot read their profile or usage (403).
const (
	ScopesOAuth      = "org:create_api_key user:profile user:inference user:sessions:claude_code user:mcp_servers user:file_upload"
	ScopesSetupToken = "user:inference"
)

// SetupTokenLifetime is the expires_in a setup-token exchange requests: one
// year, the lifetime `claude setup-token` tokens have.
const SetupTokenLifetime = 365 * 24 * time.Hour

// PendingTTL is how long a started onboarding may wait for its code. The
// authorization server expires codes quickly too; a longer wait only fails
// later with a less clear error.
const PendingTTL = 10 * time.Minute

// RequestTimeout bounds every call to the OAuth servers, on top of the
// caller's context, so a stalled proxy cannot hold an onboarding or a refresh
// lock forever.
const RequestTimeout = 30 * time.Second

// OAuthBeta is the anthropic-beta value the usage endpoint (and every OAuth
// call to api.anthropic.com) requires.
const OAuthBeta = "oauth-2025-04-20"

// userAgent and the browser-ish Origin/Referer are what Claude Code sends to
// the token endpoint; some edge nodes reject requests without them.
const (
	userAgent = "claude-cli/1.0.56 (external, cli)"
	origin    = "https://claude.ai"
)

// Endpoints are the four URLs of the Claude OAuth service. They are
// configurable because the token endpoint has moved once already
// (console.anthropic.com → platform.claude.com) and a hard-coded URL broke
// every deployment of the original relay for a day; tests point them at
// fakeupstream.
type Endpoints struct {
	AuthorizeURL string
	TokenURL     string
	ProfileURL   string
	UsageURL     string
}

// DefaultClaudeEndpoints returns the real endpoints as of this writing.
func DefaultClaudeEndpoints() Endpoints {
	return Endpoints{
		AuthorizeURL: "https://claude.ai/oauth/authorize",
		TokenURL:     "https://platform.claude.com/v1/oauth/token",
		ProfileURL:   "https://api.anthropic.com/api/oauth/profile",
		UsageURL:     "https://api.anthropic.com/api/oauth/usage",
	}
}

// Kind is the onboarding flavour of an account.
type Kind string

const (
	// KindOAuth is the browser flow with Claude Code's scopes: an 8-hour
	// access token plus a rotating refresh token, profile and usage access.
	KindOAuth Kind = "oauth"
	// KindSetupToken is the long-lived flow: a one-year access token with
	// scope user:inference only and no refresh token.
	KindSetupToken Kind = "setup-token"
)

// Scope is the space-separated scope list the kind asks for.
func (k Kind) Scope() string {
	if k == KindSetupToken {
		return ScopesSetupToken
	}
	return ScopesOAuth
}

func (k Kind) valid() bool { return k == KindOAuth || k == KindSetupToken }

// ErrInvalidGrant means the authorization server refused the grant itself:
// the code or refresh token is unknown, used, expired or revoked. For a
// refresh this means the account is dead until an admin onboards it again;
// retrying cannot help. Check with errors.Is; the error's text carries the
// server's error_description.
var ErrInvalidGrant = errors.New("oauth: grant refused (invalid_grant)")

// ErrUnauthorized means the profile or usage endpoint rejected the access
// token (401): expired or revoked. Refresh, then try once more.
var ErrUnauthorized = errors.New("oauth: access token rejected")

// ErrForbidden means the profile or usage endpoint refused the token's scope
// (403), which is what setup-token accounts (user:inference only) get.
var ErrForbidden = errors.New("oauth: access token lacks the scope for this endpoint")

// ErrPendingExpired means an onboarding was finished after PendingTTL.
var ErrPendingExpired = errors.New("oauth: pending authorization expired; start again")
