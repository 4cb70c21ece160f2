package relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/crs-relay/crs/internal/oauth"
	"github.com/crs-relay/crs/internal/provider"
	"github.com/crs-relay/crs/internal/provider/anthropic"
	"github.com/crs-relay/crs/internal/store"
)

// clientFor returns the pooled HTTP client of the account's proxy.
func (r *Relay) clientFor(acct store.Account) (*http.Client, error) {
	proxy, err := r.box.Open(acct.SealedProxy)
	if err != nil {
		return nil, fmt.Errorf("cannot open the proxy setting: %w", err)
	}
	c, err := r.pool.Client(string(proxy))
	if err != nil {
		return nil, fmt.Errorf("bad proxy: %w", err)
	}
	return c, nil
}

// upstreamRequest builds the request one account receives: as sent, with
// the account's key, for API-key accounts; for OAuth and setup-token
// accounts with a fresh access token, the OAuth betas, the account's stable
// identity and metadata.user_id rewritten to it, and (for clients that are
// not Claude Code) the system prompt arranged as a subscription account
// accepts it. A non-nil Outcome says why the account cannot be used now.
func (r *Relay) upstreamRequest(ctx context.Context, req *http.Request, c *call, acct store.Account) (*http.Request, *provider.Outcome) {
	rest := func(kind store.CooldownKind, reason string) *provider.Outcome {
		o := provider.Rest(r.now(), kind, anthropic.CredentialCooldown, 0, reason)
		return &o
	}
	base := acct.BaseURL
	if base == "" {
		base = r.cfg.ClaudeBaseURL
	}
	switch acct.Type {
	case store.TypeOAuth, store.TypeSetupToken:
		if r.tokens == nil {
			return nil, rest(store.CooldownCredentialDead, "OAuth accounts are not enabled on this server")
		}
		cred, err := r.tokens.Fresh(ctx, acct)
		if err != nil {
			if errors.Is(err, oauth.ErrInvalidGrant) || errors.Is(err, oauth.ErrCredentialDead) {
				return nil, rest(store.CooldownCredentialDead, err.Error())
			}
			o := anthropic.ClassifyTransport(r.now(), fmt.Errorf("token refresh: %w", err))
			return nil, &o
		}
		body := c.body
		if !anthropic.IsClaudeCode(req.Header, body) {
			if b, err := anthropic.PrepareNonClaudeCode(body); err == nil {
				body = b
			}
		}
		id := anthropic.NewIdentity(string(acct.ID), cred.AccountUUID, nil)
		body = anthropic.RewriteUserID(body, string(acct.ID), id, c.sticky)
		up, err := anthropic.OAuthRequest(ctx, req.Header, base, c.path, req.URL.RawQuery, cred.AccessToken, id, body)
		if err != nil {
			return nil, rest(store.CooldownCredentialDead, "bad base URL: "+err.Error())
		}
		return up, nil
	default:
		key, err := r.box.Open(acct.SealedSecret)
		if err != nil {
			return nil, rest(store.CooldownCredentialDead, "cannot open credentials: "+err.Error())
		}
		up, err := anthropic.APIKeyRequest(ctx, req.Header, base, c.path, req.URL.RawQuery, string(key), c.body)
		if err != nil {
			return nil, rest(store.CooldownCredentialDead, "bad base URL: "+err.Error())
		}
		return up, nil
	}
}

// refreshAfter401 handles an OAuth account's 401: the access token may have
// been revoked or rotated elsewhere, so it is refreshed once and the same
// account tried again; a second 401 rests the account as usual.
func (r *Relay) refreshAfter401(ctx context.Context, c *call, acct store.Account, f *failure) bool {
	if f.outcome.Status != http.StatusUnauthorized || r.tokens == nil ||
		(acct.Type != store.TypeOAuth && acct.Type != store.TypeSetupToken) || c.refreshed[acct.ID] {
		return false
	}
	if c.refreshed == nil {
		c.refreshed = map[store.AccountID]bool{}
	}
	c.refreshed[acct.ID] = true
	if _, err := r.tokens.ForceRefresh(ctx, acct); err != nil {
		r.log.Warn("refresh after 401 failed", "request_id", c.id, "account", acct.ID, "err", err)
		return false
	}
	return true
}
