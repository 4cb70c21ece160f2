package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/crs-relay/crs/internal/store"
)

// storedAdmin is the {cfg}:admin value.
type storedAdmin struct {
	Username     string `json:"username"`
	PasswordHash string `json:"password_hash"`
	Updated      int64  `json:"updated"`
}

// setAdminScript replaces the admin login and counts the change.
//
// KEYS: version, admin. ARGV: channel, admin JSON.
var setAdminScript = goredis.NewScript(changedLua + `
redis.call('SET', KEYS[2], ARGV[2])
changed()
return 1
`)

// GetAdmin returns the admin login, or store.ErrNotFound before the first
// start created one.
func (s *Store) GetAdmin(ctx context.Context) (store.Admin, error) {
	b, err := s.rdb.Get(ctx, s.cfg.admin).Bytes()
	if errors.Is(err, goredis.Nil) {
		return store.Admin{}, fmt.Errorf("redis: get admin: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Admin{}, fmt.Errorf("redis: get admin: %w", err)
	}
	var a storedAdmin
	if err := json.Unmarshal(b, &a); err != nil {
		return store.Admin{}, fmt.Errorf("redis: get admin: %w", err)
	}
	return store.Admin{Username: a.Username, PasswordHash: a.PasswordHash, UpdatedAt: fromUnixMs(a.Updated)}, nil
}

// SetAdmin creates or replaces the admin login. Sessions are left alone;
// the caller decides whether a password change logs everyone out.
func (s *Store) SetAdmin(ctx context.Context, a store.Admin) error {
	b, err := json.Marshal(storedAdmin{Username: a.Username, PasswordHash: a.PasswordHash, Updated: unixMs(a.UpdatedAt)})
	if err != nil {
		return fmt.Errorf("redis: set admin: %w", err)
	}
	if err := setAdminScript.Run(ctx, s.rdb, s.cfg.setAdmin, s.changesChannel(), b).Err(); err != nil {
		return fmt.Errorf("redis: set admin: %w", err)
	}
	return nil
}

// An admin session is one key, session:<token hash>, whose value is a
// storedSession and which Redis expires at the session's ExpiresAt
// (PXAT), so expired sessions need no sweeping. Sessions are not part of
// ChangeVersion: nobody caches them.

// storedSession is a session key's value.
type storedSession struct {
	Username string `json:"username"`
	Created  int64  `json:"created"`
	Expires  int64  `json:"expires"`
}

func (s *Store) sessionKey(tokenHash string) string { return s.key("session:" + tokenHash) }

// CreateSession stores sess until its ExpiresAt; store.ErrConflict if its
// token hash exists.
func (s *Store) CreateSession(ctx context.Context, sess store.AdminSession) error {
	v := storedSession{Username: sess.Username, Created: unixMs(sess.CreatedAt), Expires: unixMs(sess.ExpiresAt)}
	if err := s.createUntil(ctx, s.sessionKey(sess.TokenHash), v, sess.ExpiresAt); err != nil {
		return fmt.Errorf("redis: create session: %w", err)
	}
	return nil
}

// createUntil stores v as JSON under key until expires; store.ErrConflict
// when key exists. Admin sessions and pending onboardings are both such
// one-key items.
func (s *Store) createUntil(ctx context.Context, key string, v any, expires time.Time) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	set, err := setUntil(ctx, s.rdb, key, b, expires)
	if err != nil {
		return err
	}
	if !set {
		return store.ErrConflict
	}
	return nil
}

// GetSession returns the session with tokenHash, or store.ErrNotFound for
// unknown or expired ones. Redis drops a session at ExpiresAt by its own
// clock; the check against this instance's clock makes "expired" mean the
// same here as in the embedded store even when the clocks differ a little.
func (s *Store) GetSession(ctx context.Context, tokenHash string) (store.AdminSession, error) {
	b, err := s.rdb.Get(ctx, s.sessionKey(tokenHash)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return store.AdminSession{}, fmt.Errorf("redis: get session: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.AdminSession{}, fmt.Errorf("redis: get session: %w", err)
	}
	var ss storedSession
	if err := json.Unmarshal(b, &ss); err != nil {
		return store.AdminSession{}, fmt.Errorf("redis: get session: %w", err)
	}
	sess := store.AdminSession{TokenHash: tokenHash, Username: ss.Username,
		CreatedAt: fromUnixMs(ss.Created), ExpiresAt: fromUnixMs(ss.Expires)}
	if !time.Now().Before(sess.ExpiresAt) {
		return store.AdminSession{}, fmt.Errorf("redis: get session: %w", store.ErrNotFound)
	}
	return sess, nil
}

// DeleteSession removes the session with tokenHash. Deleting an unknown
// session is not an error: logging out twice is harmless.
func (s *Store) DeleteSession(ctx context.Context, tokenHash string) error {
	if err := s.rdb.Del(ctx, s.sessionKey(tokenHash)).Err(); err != nil {
		return fmt.Errorf("redis: delete session: %w", err)
	}
	return nil
}

// setUntil stores value at key unless key exists (SET NX), to be dropped
// by Redis at the instant expires (PXAT), and reports whether it stored
// it. Redis takes an instant already past and drops the value at once;
// only instants before 1970, which it refuses, are not sent at all.
func setUntil(ctx context.Context, rdb goredis.UniversalClient, key string, value []byte, expires time.Time) (bool, error) {
	at := unixMs(expires)
	if at <= 0 {
		return true, nil
	}
	err := rdb.Do(ctx, "SET", key, value, "NX", "PXAT", at).Err()
	if errors.Is(err, goredis.Nil) {
		return false, nil
	}
	return err == nil, err
}
