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

	"github.com/crs-relay/crs/internal/store"
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
	return withQuery(e.AuthorizeURL, q)
}

// minCodeLen is the shortest code accepted; real codes are far longer, so a
// shorter one is a copy-paste accident.
const minCodeLen = 10

// ParseCode is ParseCodeFor(store.PlatformClaude, input): Claude codes are
// [A-Za-z0-9_-]{10,}.
func ParseCode(input string) (string, error) {
	return ParseCodeFor(store.PlatformClaude, input)
}

// codeExtras are the characters a platform's codes have besides letters,
// digits, '_' and '-': OpenAI codes are ac_<part>.<part>, Google codes
// start with "4/".
func codeExtras(p store.Platform) string {
	switch p {
	case store.PlatformOpenAI:
		return "."
	case store.PlatformGemini:
		return "/"
	}
	return ""
}

// ParseCodeFor extracts the authorization code from what an admin pasted
// for an onboarding on platform p: the raw code, the code#state string
// Claude's callback page shows, or the whole callback URL (Claude's page,
// OpenAI's unreachable localhost:1455 redirect, Google's authcode page).
// Anything after '#' or '&' is cut, and the rest must be at least 10
// letters, digits, '_' or '-' (plus '.' for OpenAI and '/' for Google). For
// OpenAI and Google a URL may come without its scheme, as some browsers'
// address bars show it. The error text says what is wrong without echoing
// the input, since the input is a credential.
func ParseCodeFor(p store.Platform, input string) (string, error) {
	s := strings.TrimSpace(input)
	if s == "" {
		return "", errors.New("oauth: no authorization code given: paste the code or the whole callback URL")
	}
	if looksLikeURL(p, s) {
		code, err := codeFromURL(s)
		if err != nil {
			return "", err
		}
		s = code
	}
	if i := strings.IndexAny(s, "#&"); i >= 0 {
		s = s[:i]
	}
	if len(s) < minCodeLen {
		return "", fmt.Errorf("oauth: authorization code too short (%d characters, need at least %d); copy the whole code", len(s), minCodeLen)
	}
	extras := codeExtras(p)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || strings.IndexByte(extras, c) >= 0) {
			return "", fmt.Errorf("oauth: authorization code has an invalid character at position %d (allowed: %s); copy only the code", i+1, allowedText(extras))
		}
	}
	return s, nil
}

// looksLikeURL reports whether s is a callback URL rather than a code.
// Claude accepts only full http(s) URLs, as it always has; the other
// platforms' codes never hold '?', so any '?' there means a URL, scheme or
// not.
func looksLikeURL(p store.Platform, s string) bool {
	if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
		return true
	}
	return p != store.PlatformClaude && strings.Contains(s, "?")
}

// codeFromURL returns the code parameter of a callback URL, with or without
// scheme. When the server sent the browser back with an error instead (the
// user declined), it says so.
func codeFromURL(s string) (string, error) {
	var raw string
	if i := strings.IndexByte(s, '?'); i >= 0 {
		raw = s[i+1:]
	}
	if i := strings.IndexByte(raw, '#'); i >= 0 {
		raw = raw[:i]
	}
	if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
		if _, err := url.Parse(s); err != nil {
			return "", errors.New("oauth: the callback URL does not parse; paste it exactly as the browser shows it")
		}
	}
	// Like url.URL.Query, keep the pairs that parse and drop the rest.
	q, _ := url.ParseQuery(raw)
	if code := q.Get("code"); code != "" {
		return code, nil
	}
	if e := q.Get("error"); e != "" {
		if len(e) > 40 {
			e = e[:40]
		}
		return "", fmt.Errorf("oauth: the callback URL has no code parameter: the authorization server answered error %q; start the onboarding again", e)
	}
	return "", errors.New("oauth: the callback URL has no code parameter; paste the URL of the page that shows the code")
}

func allowedText(extras string) string {
	if extras == "" {
		return "letters, digits, '_' and '-'"
	}
	var quoted []string
	for _, c := range extras {
		quoted = append(quoted, "'"+string(c)+"'")
	}
	return "letters, digits, '_', '-' and " + strings.Join(quoted, ", ")
}
