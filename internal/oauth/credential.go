package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/crs-relay/crs/internal/secret"
)

// Credential is what an OAuth account's sealed secret holds, as JSON. It is
// a Token plus what the relay learned about the account afterwards (its
// plan, its Code Assist project), so one sealed value carries everything a
// request needs and a refresh can rewrite it whole. The same shape serves
// every platform; fields a platform has no use for stay empty (and out of
// the JSON).
type Credential struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	ExpiresAt    time.Time `json:"expires_at"`
	Scopes       []string  `json:"scopes,omitempty"`
	AccountUUID  string    `json:"account_uuid,omitempty"`
	OrgUUID      string    `json:"org_uuid,omitempty"`
	Email        string    `json:"email,omitempty"`
	// Plan is the subscription: Claude's from its profile, ChatGPT's from
	// the id_token, and for Gemini the Code Assist tier.
	Plan string `json:"plan,omitempty"`
	// ChatGPTAccountID is the ChatGPT workspace of an OpenAI account, which
	// the Codex backend requires in the chatgpt-account-id header. It has a
	// field of its own rather than AccountUUID because it is a different
	// thing: a workspace a person may share, not the person's account.
	ChatGPTAccountID string `json:"chatgpt_account_id,omitempty"`
	// ProjectID is the Code Assist project of a Gemini account (from
	// GoogleClient.DiscoverProject), which every Code Assist request names.
	ProjectID string `json:"project_id,omitempty"`
}

// CredentialFromToken keeps everything the token endpoint returned. Plan is
// the token's (OpenAI's id_token names it); for Claude it is left empty for
// the caller to fill from the profile, and ProjectID for the caller to fill
// from DiscoverProject.
func CredentialFromToken(t Token) Credential {
	return Credential{
		AccessToken:      t.AccessToken,
		RefreshToken:     t.RefreshToken,
		ExpiresAt:        t.ExpiresAt,
		Scopes:           t.Scopes,
		AccountUUID:      t.AccountUUID,
		OrgUUID:          t.OrgUUID,
		Email:            t.Email,
		Plan:             t.Plan,
		ChatGPTAccountID: t.ChatGPTAccountID,
	}
}

// renewed is c after a refresh that returned t: the new tokens and expiry,
// and every identity field t carries, while the fields t leaves empty keep
// what c knew (a refresh answer is often thinner than the first one, and
// ProjectID never comes from a token endpoint). Plan follows the same rule,
// so a ChatGPT plan change shows up at the next refresh, while a Claude
// plan, which a token never carries, stays the profile's.
func (c Credential) renewed(t Token) Credential {
	next := CredentialFromToken(t)
	keep := func(dst *string, old string) {
		if *dst == "" {
			*dst = old
		}
	}
	if len(next.Scopes) == 0 {
		next.Scopes = c.Scopes
	}
	keep(&next.AccountUUID, c.AccountUUID)
	keep(&next.OrgUUID, c.OrgUUID)
	keep(&next.Email, c.Email)
	keep(&next.Plan, c.Plan)
	keep(&next.ChatGPTAccountID, c.ChatGPTAccountID)
	keep(&next.ProjectID, c.ProjectID)
	return next
}

// Seal encodes the credential and encrypts it with b, ready for
// store.Account.SealedSecret.
func (c Credential) Seal(b *secret.Box) ([]byte, error) {
	if b == nil {
		return nil, errors.New("oauth: credential: no secret box")
	}
	if c.AccessToken == "" {
		return nil, errors.New("oauth: credential: no access token")
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("oauth: credential: %w", err)
	}
	return b.Seal(raw), nil
}

// OpenCredential decrypts and decodes a sealed credential. Errors never
// quote the plaintext, which holds the tokens.
func OpenCredential(b *secret.Box, sealed []byte) (Credential, error) {
	if b == nil {
		return Credential{}, errors.New("oauth: credential: no secret box")
	}
	if len(sealed) == 0 {
		return Credential{}, errors.New("oauth: credential: account has no stored credential")
	}
	raw, err := b.Open(sealed)
	if err != nil {
		return Credential{}, fmt.Errorf("oauth: credential: %w", err)
	}
	var c Credential
	if err := json.Unmarshal(raw, &c); err != nil {
		// json errors can quote the input; say only what went wrong.
		return Credential{}, errors.New("oauth: credential: stored value is not a credential JSON object")
	}
	if c.AccessToken == "" {
		return Credential{}, errors.New("oauth: credential: stored value has no access token")
	}
	return c, nil
}

// String shows the credential without its tokens, so one that slips into a
// log line or an error message leaks nothing.
func (c Credential) String() string {
	return fmt.Sprintf("oauth.Credential{expires %s, scopes %q, account %q, plan %q, refreshable %t}",
		c.ExpiresAt.UTC().Format(time.RFC3339), c.Scopes, c.AccountUUID, c.Plan, c.RefreshToken != "")
}

// GoString is String, for %#v.
func (c Credential) GoString() string { return c.String() }
