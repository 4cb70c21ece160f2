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
	body := c.body
	if m, _ := anthropic.ResolveModel(acct.Options.Models, c.model); m != c.model && m != "" {
		// The account serves this model under another name.
		if b, err := anthropic.SetModel(body, m); err == nil {
			body = b
		}
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
		if !c.claudeCode() {
			if b, err := anthropic.PrepareNonClaudeCode(body); err == nil {
				body = b
			}
		}
		id := r.identity(acct, cred.AccountUUID)
		body = anthropic.RewriteUserID(body, string(acct.ID), id, c.sticky)
		up, err := anthropic.OAuthRequest(ctx, req.Header, base, c.path, req.URL.RawQuery, cred.AccessToken, id, body)
		if err != nil {
			return nil, rest(store.CooldownCredentialDead, "bad base URL: "+err.Error())
		}
		if acct.Options.UnifiedUserAgent {
			anthropic.ApplyIdentity(up.Header, id)
		}
		return up, nil
	default:
		key, err := r.box.Open(acct.SealedSecret)
		if err != nil {
			return nil, rest(store.CooldownCredentialDead, "cannot open credentials: "+err.Error())
		}
		up, err := anthropic.APIKeyRequest(ctx, req.Header, base, c.path, req.URL.RawQuery, string(key), body)
		if err != nil {
			return nil, rest(store.CooldownCredentialDead, "bad base URL: "+err.Error())
		}
		if acct.Options.UnifiedUserAgent {
			anthropic.ApplyIdentity(up.Header, r.identity(acct, ""))
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

// identity is the account's stable face. With the unified user agent
// option it carries the newest Claude Code release seen (its user agent and
// the versions that go with it) while the machine part of the fingerprint
// (OS, architecture) stays the account's own: one person updating Claude
// Code is normal, one login on many machines is not.
func (r *Relay) identity(acct store.Account, accountUUID string) anthropic.Identity {
	id := anthropic.NewIdentity(string(acct.ID), accountUUID, nil)
	if !acct.Options.UnifiedUserAgent {
		return id
	}
	if h := r.newest.get(); h != nil {
		id.UserAgent = h.Get("User-Agent")
		for _, name := range []string{"X-Stainless-Package-Version", "X-Stainless-Runtime-Version"} {
			if v := h.Get(name); v != "" {
				id.Stainless[name] = v
			}
		}
	}
	return id
}
