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

// A pending OAuth onboarding is one key, oauth:<id>, whose value is a
// storedPending and which Redis expires at the onboarding's ExpiresAt, so
// abandoned onboardings need no sweeping.

// storedPending is a pending onboarding key's value.
type storedPending struct {
	Platform store.Platform `json:"platform"`
	Kind     string         `json:"kind"`
	Sealed   []byte         `json:"sealed,omitempty"`
	Created  int64          `json:"created"`
	Expires  int64          `json:"expires"`
}

func (s *Store) oauthKey(id string) string { return s.key("oauth:" + id) }

// CreateOAuthPending stores p until its ExpiresAt; store.ErrConflict if
// its ID exists.
func (s *Store) CreateOAuthPending(ctx context.Context, p store.OAuthPending) error {
	v := storedPending{Platform: p.Platform, Kind: p.Kind, Sealed: p.Sealed,
		Created: unixMs(p.CreatedAt), Expires: unixMs(p.ExpiresAt)}
	if err := s.createUntil(ctx, s.oauthKey(p.ID), v, p.ExpiresAt); err != nil {
		return fmt.Errorf("redis: create oauth pending: %w", err)
	}
	return nil
}

// TakeOAuthPending reads and deletes the pending onboarding in one command
// (GETDEL), so of two instances finishing the same onboarding exactly one
// gets it. One past its ExpiresAt by this instance's clock, but not yet
// dropped by Redis's, is deleted all the same and reported as
// store.ErrNotFound.
func (s *Store) TakeOAuthPending(ctx context.Context, id string) (store.OAuthPending, error) {
	b, err := s.rdb.GetDel(ctx, s.oauthKey(id)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return store.OAuthPending{}, fmt.Errorf("redis: take oauth pending: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.OAuthPending{}, fmt.Errorf("redis: take oauth pending: %w", err)
	}
	var sp storedPending
	if err := json.Unmarshal(b, &sp); err != nil {
		return store.OAuthPending{}, fmt.Errorf("redis: take oauth pending: %w", err)
	}
	p := store.OAuthPending{ID: id, Platform: sp.Platform, Kind: sp.Kind, Sealed: sp.Sealed,
		CreatedAt: fromUnixMs(sp.Created), ExpiresAt: fromUnixMs(sp.Expires)}
	if !time.Now().Before(p.ExpiresAt) {
		return store.OAuthPending{}, fmt.Errorf("redis: take oauth pending: %w", store.ErrNotFound)
	}
	return p, nil
}
