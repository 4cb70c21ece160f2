package oauth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Pending is what must survive between "start" and "finish" of an onboarding.
// It is plain data so the store can persist it: a second instance must be able
// to finish what the first one started. The Verifier is a secret (whoever
// holds it and the code gets the account), so store it encrypted.
type Pending struct {
	State     string
	Verifier  string
	Kind      Kind
	CreatedAt time.Time
}

// NewPending draws a fresh PKCE verifier and state (32 random bytes each,
// base64url without padding: 43 characters, as Claude Code does).
func NewPending(kind Kind, now time.Time) (Pending, error) {
	if !kind.valid() {
		return Pending{}, fmt.Errorf("oauth: unknown kind %q (want %q or %q)", kind, KindOAuth, KindSetupToken)
	}
	verifier, err := randomToken()
	if err != nil {
		return Pending{}, err
	}
	state, err := randomToken()
	if err != nil {
		return Pending{}, err
	}
	return Pending{State: state, Verifier: verifier, Kind: kind, CreatedAt: now}, nil
}

// Challenge is the S256 PKCE challenge of the verifier:
// base64url(SHA-256(verifier)) without padding.
func (p Pending) Challenge() string {
	return Challenge(p.Verifier)
}

// Expired reports whether the pending authorization is older than PendingTTL.
func (p Pending) Expired(now time.Time) bool {
	return now.Sub(p.CreatedAt) > PendingTTL
}

// Challenge computes the S256 PKCE challenge of a verifier.
func Challenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func randomToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("oauth: reading random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// AuthURL is the URL the admin opens in a browser logged into the Claude
// account. code=true makes claude.ai show the code for manual copying
// instead of redirecting to a local listener, which a server cannot offer.
func (e Endpoints) AuthURL(p Pending) string {
	q := url.Values{}
	q.Set("code", "true")
	q.Set("client_id", ClaudeClientID)
	q.Set("response_type", "code")
	q.Set("redirect_uri", ClaudeRedirectURI)
	q.Set("scope", p.Kind.Scope())
	q.Set("code_challenge", p.Challenge())
	q.Set("code_challenge_method", "S256")
	q.Set("state", p.State)
	sep := "?"
	if strings.Contains(e.AuthorizeURL, "?") {
		sep = "&"
	}
	return e.AuthorizeURL + sep + q.Encode()
}

// minCodeLen is the shortest code accepted; real codes are far longer, so a
// shorter one is a copy-paste accident.
const minCodeLen = 10

// ParseCode extracts the authorization code from what an admin pasted: the
// raw code, the code#state string the callback page shows, or the whole
// callback URL. Anything after '#' or '&' is cut, and the rest must be
// [A-Za-z0-9_-]{10,}. The error text says what is wrong without echoing the
// input, since the input is a credential.
func ParseCode(input string) (string, error) {
	s := strings.TrimSpace(input)
	if s == "" {
		return "", errors.New("oauth: no authorization code given: paste the code or the whole callback URL")
	}
	if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", errors.New("oauth: the callback URL does not parse; paste it exactly as the browser shows it")
		}
		code := u.Query().Get("code")
		if code == "" {
			return "", errors.New("oauth: the callback URL has no code parameter; paste the URL of the page that shows the code")
		}
		s = code
	}
	if i := strings.IndexAny(s, "#&"); i >= 0 {
		s = s[:i]
	}
	if len(s) < minCodeLen {
		return "", fmt.Errorf("oauth: authorization code too short (%d characters, need at least %d); copy the whole code", len(s), minCodeLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return "", fmt.Errorf("oauth: authorization code has an invalid character at position %d (allowed: letters, digits, '_' and '-'); copy only the code", i+1)
		}
	}
	return s, nil
}
