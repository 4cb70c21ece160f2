package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/crs-relay/crs/internal/secret"
)

// A lease is one key, lock:<name>, holding its owner's random token, which
// Redis expires (PX). Lease times are relative and counted by the Redis
// server, never by an instance's clock, so instances with skewed clocks
// agree on who holds a lease.

func (s *Store) lockKey(name string) string { return s.key("lock:" + name) }

// unlockScript deletes the lease if the token still owns it.
//
// KEYS: the lease. ARGV: token.
var unlockScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// renewLockScript extends the lease to ARGV[2] ms from now if the token
// still owns it; an expired lease is gone, so it cannot be renewed.
//
// KEYS: the lease. ARGV: token, ms.
var renewLockScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`)

// TryLock takes the lease name for ttl when it is free or expired (SET NX
// PX: one command, so of any number of racing callers exactly one wins).
func (s *Store) TryLock(ctx context.Context, name string, ttl time.Duration) (string, bool, error) {
	if ttl <= 0 {
		return "", false, fmt.Errorf("redis: try lock %q: ttl %v must be positive", name, ttl)
	}
	token := secret.RandomHex(16)
	ok, err := s.rdb.SetNX(ctx, s.lockKey(name), token, leaseMs(ttl)).Result()
	if err != nil {
		return "", false, fmt.Errorf("redis: try lock %q: %w", name, err)
	}
	if !ok {
		return "", false, nil
	}
	return token, true, nil
}

// Unlock releases the lease if token still owns it. Releasing a lease that
// is unknown, or that expired and was taken by another, is not an error:
// the caller's work is over either way.
func (s *Store) Unlock(ctx context.Context, name, token string) error {
	if err := unlockScript.Run(ctx, s.rdb, []string{s.lockKey(name)}, token).Err(); err != nil {
		return fmt.Errorf("redis: unlock %q: %w", name, err)
	}
	return nil
}

// RenewLock extends the lease to ttl from now if token still owns it.
func (s *Store) RenewLock(ctx context.Context, name, token string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, fmt.Errorf("redis: renew lock %q: ttl %v must be positive", name, ttl)
	}
	n, err := replyInt(renewLockScript.Run(ctx, s.rdb, []string{s.lockKey(name)}, token, leaseMs(ttl).Milliseconds()).Result())
	if err != nil {
		return false, fmt.Errorf("redis: renew lock %q: %w", name, err)
	}
	return n == 1, nil
}
