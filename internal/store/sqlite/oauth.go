package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/crs-relay/crs/internal/store"
)

// CreateOAuthPending stores p; store.ErrConflict if its ID exists. It also
// drops pending sessions that expired unfinished, so abandoned onboardings
// do not pile up without a background job.
func (s *Store) CreateOAuthPending(ctx context.Context, p store.OAuthPending) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM oauth_pending WHERE expires_at <= ?`, ms(s.now())); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO oauth_pending (id, platform, kind, sealed, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?)`,
			p.ID, string(p.Platform), p.Kind, blob(p.Sealed), ms(p.CreatedAt), ms(p.ExpiresAt))
		return err
	})
	if isUnique(err) {
		return fmt.Errorf("sqlite: create oauth pending: %w", store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("sqlite: create oauth pending: %w", err)
	}
	return nil
}

// TakeOAuthPending reads and deletes the pending session in one write
// transaction, so of two instances finishing the same onboarding exactly
// one gets it. An expired one is deleted and reported as
// store.ErrNotFound.
func (s *Store) TakeOAuthPending(ctx context.Context, id string) (store.OAuthPending, error) {
	var p store.OAuthPending
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var (
			platform         string
			created, expires int64
		)
		err := tx.QueryRowContext(ctx, `SELECT id, platform, kind, sealed, created_at, expires_at
			FROM oauth_pending WHERE id = ?`, id).
			Scan(&p.ID, &platform, &p.Kind, &p.Sealed, &created, &expires)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		p.Platform = store.Platform(platform)
		p.CreatedAt = fromMs(created)
		p.ExpiresAt = fromMs(expires)
		if len(p.Sealed) == 0 {
			p.Sealed = nil
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM oauth_pending WHERE id = ?`, id); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return store.OAuthPending{}, fmt.Errorf("sqlite: take oauth pending: %w", err)
	}
	if !s.now().Before(p.ExpiresAt) {
		// Deleted above all the same: an expired session is dead.
		return store.OAuthPending{}, fmt.Errorf("sqlite: take oauth pending: %w", store.ErrNotFound)
	}
	return p, nil
}
