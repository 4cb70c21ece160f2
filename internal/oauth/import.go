package oauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"time"
)

// importedCredential is Claude Code's stored credential
// (~/.claude/.credentials.json or the macOS keychain entry): expiresAt is in
// Unix milliseconds.
type importedCredential struct {
	AccessToken  string          `json:"accessToken"`
	RefreshToken string          `json:"refreshToken"`
	ExpiresAt    json.RawMessage `json:"expiresAt"`
	Scopes       []string        `json:"scopes"`
}

// ParseImport reads a credential an admin already has, as Claude Code stores
// it: {"claudeAiOauth":{"accessToken","refreshToken","expiresAt","scopes"}}
// or the bare inner object. An access token is required; a missing refresh
// token is allowed (setup tokens have none); a missing expiry gives a zero
// ExpiresAt, which callers should treat as "refresh before use". Errors
// never quote the input.
func ParseImport(data []byte) (Token, error) {
	var outer struct {
		ClaudeAiOauth json.RawMessage `json:"claudeAiOauth"`
	}
	if err := json.Unmarshal(data, &outer); err != nil {
		return Token{}, errors.New("oauth: import: not a JSON object")
	}
	inner := data
	if len(outer.ClaudeAiOauth) > 0 && !bytes.Equal(outer.ClaudeAiOauth, []byte("null")) {
		inner = outer.ClaudeAiOauth
	}
	var c importedCredential
	if err := json.Unmarshal(inner, &c); err != nil {
		return Token{}, errors.New(`oauth: import: expected {"claudeAiOauth":{"accessToken":…,"refreshToken":…,"expiresAt":…}} or the inner object`)
	}
	if c.AccessToken == "" {
		return Token{}, errors.New("oauth: import: accessToken is missing")
	}
	tok := Token{AccessToken: c.AccessToken, RefreshToken: c.RefreshToken, Scopes: c.Scopes}
	if len(c.ExpiresAt) > 0 && !bytes.Equal(c.ExpiresAt, []byte("null")) {
		ms, err := parseMillis(c.ExpiresAt)
		if err != nil {
			return Token{}, errors.New("oauth: import: expiresAt must be Unix milliseconds")
		}
		tok.ExpiresAt = time.UnixMilli(ms)
	}
	return tok, nil
}

// parseMillis accepts a JSON number or a string of digits.
func parseMillis(raw json.RawMessage) (int64, error) {
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
		n = json.Number(s)
	}
	if i, err := n.Int64(); err == nil {
		return i, nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		return 0, err
	}
	return int64(f), nil
}
