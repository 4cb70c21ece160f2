package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/crs-relay/crs/internal/store"
)

// A sticky binding is one key, sticky:<session>, holding the account ID,
// which Redis expires (PX). Bindings are spread over the cluster, one
// command each, and never counted in ChangeVersion.

func (s *Store) stickyKey(session string) string { return s.key("sticky:" + session) }

// GetSticky returns the account bound to session, if the binding lives.
// With renew > 0 it reads and extends the binding in one command (GETEX
// PX); a miss creates nothing.
func (s *Store) GetSticky(ctx context.Context, session string, renew time.Duration) (store.AccountID, bool, error) {
	var cmd *goredis.StringCmd
	if renew > 0 {
		cmd = s.rdb.GetEx(ctx, s.stickyKey(session), leaseMs(renew))
	} else {
		cmd = s.rdb.Get(ctx, s.stickyKey(session))
	}
	id, err := cmd.Result()
	if errors.Is(err, goredis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("redis: get sticky: %w", err)
	}
	return store.AccountID(id), true, nil
}

// SetSticky binds session to id for ttl, replacing any binding. A ttl <= 0
// removes the binding, since it would be dead at once.
func (s *Store) SetSticky(ctx context.Context, session string, id store.AccountID, ttl time.Duration) error {
	var err error
	if ttl <= 0 {
		err = s.rdb.Del(ctx, s.stickyKey(session)).Err()
	} else {
		err = s.rdb.Set(ctx, s.stickyKey(session), string(id), leaseMs(ttl)).Err()
	}
	if err != nil {
		return fmt.Errorf("redis: set sticky: %w", err)
	}
	return nil
}

// DeleteSticky removes the binding of session, if any.
func (s *Store) DeleteSticky(ctx context.Context, session string) error {
	if err := s.rdb.Del(ctx, s.stickyKey(session)).Err(); err != nil {
		return fmt.Errorf("redis: delete sticky: %w", err)
	}
	return nil
}
