package oauth

import (
	"context"
	"fmt"
	"net/http"

	"github.com/crs-relay/crs/internal/store"
)

// Renewer is the one thing the Refresher needs of a platform's OAuth
// client: the refresh grant. Client (Claude), OpenAIClient and GoogleClient
// implement it with the same contract, so the Refresher's single flight,
// lease, save-before-use and dead-account rules are written once:
//
//   - the result always carries the refresh token to store next: a rotated
//     one, or the one sent when the server did not rotate it (Google);
//   - a grant the server refused for good matches ErrInvalidGrant;
//   - only a request that failed to connect has been retried.
type Renewer interface {
	Refresh(ctx context.Context, refreshToken string) (Token, error)
}

var (
	_ Renewer = (*Client)(nil)
	_ Renewer = (*OpenAIClient)(nil)
	_ Renewer = (*GoogleClient)(nil)
)

// EndpointSet holds the OAuth endpoints of every platform, as configuration
// reads them, so that choosing a platform's client is one call rather than
// a switch in every caller.
type EndpointSet struct {
	Claude Endpoints
	OpenAI OpenAIEndpoints
	Google GoogleEndpoints
}

// DefaultEndpointSet returns every platform's real endpoints.
func DefaultEndpointSet() EndpointSet {
	return EndpointSet{
		Claude: DefaultClaudeEndpoints(),
		OpenAI: DefaultOpenAIEndpoints(),
		Google: DefaultGoogleEndpoints(),
	}
}

// Renewer returns the refresh client for accounts of platform p, sending
// through hc (the account's proxied client; nil means a plain one). It is
// the natural body of Refresher.Client. Platforms without OAuth accounts
// get an error.
func (s EndpointSet) Renewer(p store.Platform, hc *http.Client) (Renewer, error) {
	switch p {
	case store.PlatformClaude:
		return &Client{Endpoints: s.Claude, HTTP: hc}, nil
	case store.PlatformOpenAI:
		return &OpenAIClient{Endpoints: s.OpenAI, HTTP: hc}, nil
	case store.PlatformGemini:
		return &GoogleClient{Endpoints: s.Google, HTTP: hc}, nil
	}
	return nil, fmt.Errorf("oauth: platform %q has no OAuth accounts", p)
}

// hasOAuth reports whether accounts of platform p can hold a refreshable
// OAuth credential, which is what the background sweep looks at.
func hasOAuth(p store.Platform) bool {
	switch p {
	case store.PlatformClaude, store.PlatformOpenAI, store.PlatformGemini:
		return true
	}
	return false
}
