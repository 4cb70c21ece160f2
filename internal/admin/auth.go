package admin

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
)

// Session tokens are "<64 hex random>.<64 hex HMAC-SHA256 of the random
// part under JWT_SECRET>". The store keeps only secret.Hash of the whole
// token. The HMAC lets the server refuse a made-up token before touching
// the store, so guessing costs no store work and a stolen database alone
// (hashes only) yields no usable token.
const (
	tokenRandomHex = 64
	tokenMACHex    = 64
	tokenLen       = tokenRandomHex + 1 + tokenMACHex
	// tokenDomain separates this MAC from any other use of JWT_SECRET.
	tokenDomain = "crs admin session v1\x00"
)

// errUnauthorized is every reason a request carries no valid session; the
// client learns nothing about which check failed.
var errUnauthorized = errors.New("missing or invalid admin session")

// errBadLogin is a wrong username or password (never said which).
var errBadLogin = errors.New("wrong username or password")

// sessionMAC returns the hex HMAC binding a token's random part to secret.
func sessionMAC(key, random string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(tokenDomain))
	m.Write([]byte(random))
	return hex.EncodeToString(m.Sum(nil))
}

// newSessionToken returns a fresh token signed under key.
func newSessionToken(key string) string {
	r := secret.RandomHex(tokenRandomHex / 2)
	return r + "." + sessionMAC(key, r)
}

// tokenSigned reports whether token has the token shape and a valid MAC.
func tokenSigned(key, token string) bool {
	if len(token) != tokenLen || token[tokenRandomHex] != '.' {
		return false
	}
	r, mac := token[:tokenRandomHex], token[tokenRandomHex+1:]
	if _, err := hex.DecodeString(r); err != nil {
		return false
	}
	return hmac.Equal([]byte(mac), []byte(sessionMAC(key, r)))
}

// bearerToken returns the token of an "Authorization: Bearer …" header.
// Only that header counts: cookies are never read, so a cross-site request
// can never carry an admin credential.
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// sessions issues and checks admin sessions.
type sessions struct {
	st   store.Store
	key  string // JWT_SECRET
	ttl  time.Duration
	now  func() time.Time
	cost int // bcrypt work factor for new hashes
	// dummy is a bcrypt hash compared against when the username is
	// wrong, so a wrong username costs the same time as a wrong password
	// and timing does not reveal the admin's name.
	dummy []byte
}

// dummyHash is a bcrypt hash at bcryptCost of a password nobody types,
// made once rather than on every start: comparing against it costs what
// comparing against the admin's hash does, which is all it is for, and
// hashing it anew cost each start (and each test server) a second of CPU.
const dummyHash = "$2a$10$a4iHRpRfyz3agKramcYH5u/PbOoUSVfAKwQ6X2nNwrxG.ROijJhky"

// login checks the credentials and creates a session.
func (s *sessions) login(ctx context.Context, username, password string) (token string, expires time.Time, err error) {
	adm, err := s.st.GetAdmin(ctx)
	if errors.Is(err, store.ErrNotFound) {
		bcrypt.CompareHashAndPassword(s.dummy, []byte(password))
		return "", time.Time{}, errBadLogin
	}
	if err != nil {
		return "", time.Time{}, err
	}
	hash := []byte(adm.PasswordHash)
	userOK := secret.Equal(username, adm.Username)
	if !userOK {
		hash = s.dummy
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || !userOK {
		return "", time.Time{}, errBadLogin
	}
	return s.create(ctx, adm.Username)
}

func (s *sessions) create(ctx context.Context, username string) (string, time.Time, error) {
	now := s.now().UTC()
	token := newSessionToken(s.key)
	sess := store.AdminSession{
		TokenHash: secret.Hash(token),
		Username:  username,
		CreatedAt: now,
		ExpiresAt: now.Add(s.ttl),
	}
	if err := s.st.CreateSession(ctx, sess); err != nil {
		return "", time.Time{}, err
	}
	return token, sess.ExpiresAt, nil
}

// check returns the session for token, or errUnauthorized. A session is
// valid when its MAC verifies, the store knows it, it has not expired,
// it belongs to the current admin, and it was created after the admin's
// last password change (so changing the password ends every other
// session, without a "delete all sessions" operation in the store).
func (s *sessions) check(ctx context.Context, token string) (store.AdminSession, error) {
	if !tokenSigned(s.key, token) {
		return store.AdminSession{}, errUnauthorized
	}
	sess, err := s.st.GetSession(ctx, secret.Hash(token))
	if errors.Is(err, store.ErrNotFound) {
		return store.AdminSession{}, errUnauthorized
	}
	if err != nil {
		return store.AdminSession{}, err
	}
	if !s.now().Before(sess.ExpiresAt) {
		return store.AdminSession{}, errUnauthorized
	}
	adm, err := s.st.GetAdmin(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return store.AdminSession{}, errUnauthorized
	}
	if err != nil {
		return store.AdminSession{}, err
	}
	if sess.Username != adm.Username || sess.CreatedAt.Before(adm.UpdatedAt) {
		return store.AdminSession{}, errUnauthorized
	}
	return sess, nil
}

// changePassword verifies current, stores new's hash, and returns a fresh
// session (the change ends every existing one, the caller's included).
func (s *sessions) changePassword(ctx context.Context, current, next string) (string, time.Time, error) {
	adm, err := s.st.GetAdmin(ctx)
	if err != nil {
		return "", time.Time{}, err
	}
	if bcrypt.CompareHashAndPassword([]byte(adm.PasswordHash), []byte(current)) != nil {
		return "", time.Time{}, invalid("current_password", "is wrong")
	}
	switch {
	case len([]rune(next)) < MinPasswordLen:
		return "", time.Time{}, invalid("new_password", "must be at least %d characters", MinPasswordLen)
	case len(next) > 72:
		// bcrypt looks at 72 bytes only; refuse rather than silently truncate.
		return "", time.Time{}, invalid("new_password", "must be at most 72 bytes")
	case next == current:
		return "", time.Time{}, invalid("new_password", "is the same as the current password")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(next), s.cost)
	if err != nil {
		return "", time.Time{}, err
	}
	now := s.now().UTC()
	adm.PasswordHash = string(hash)
	adm.UpdatedAt = now
	if err := s.st.SetAdmin(ctx, adm); err != nil {
		return "", time.Time{}, err
	}
	return s.create(ctx, adm.Username)
}
