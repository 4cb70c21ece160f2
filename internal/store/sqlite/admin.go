package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/crs-relay/crs/internal/store"
)

// GetAdmin returns the admin login, or store.ErrNotFound before the first
// start created one.
func (s *Store) GetAdmin(ctx context.Context) (store.Admin, error) {
	var (
		a       store.Admin
		updated int64
	)
	err := s.read.QueryRowContext(ctx, `SELECT username, password_hash, updated_at FROM admin WHERE id = 1`).
		Scan(&a.Username, &a.PasswordHash, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Admin{}, fmt.Errorf("sqlite: get admin: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Admin{}, fmt.Errorf("sqlite: get admin: %w", err)
	}
	a.UpdatedAt = fromMs(updated)
	return a, nil
}

// SetAdmin creates or replaces the admin login. Sessions are left alone;
// the caller decides whether a password change logs everyone out.
func (s *Store) SetAdmin(ctx context.Context, a store.Admin) error {
	_, err := s.write.ExecContext(ctx, `INSERT INTO admin (id, username, password_hash, updated_at)
		VALUES (1, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET username = excluded.username,
			password_hash = excluded.password_hash, updated_at = excluded.updated_at`,
		a.Username, a.PasswordHash, ms(a.UpdatedAt))
	if err != nil {
		return fmt.Errorf("sqlite: set admin: %w", err)
	}
	return nil
}

// CreateSession stores s; store.ErrConflict if its token hash exists. It
// also drops sessions that have expired, so the table stays small without
// a background job.
func (s *Store) CreateSession(ctx context.Context, sess store.AdminSession) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM admin_sessions WHERE expires_at <= ?`, ms(s.now())); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO admin_sessions (token_hash, username, created_at, expires_at)
			VALUES (?, ?, ?, ?)`, sess.TokenHash, sess.Username, ms(sess.CreatedAt), ms(sess.ExpiresAt))
		return err
	})
	if isUnique(err) {
		return fmt.Errorf("sqlite: create session: %w", store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("sqlite: create session: %w", err)
	}
	return nil
}

// GetSession returns the session with tokenHash, or store.ErrNotFound for
// unknown or expired ones. An expired session is deleted on sight.
func (s *Store) GetSession(ctx context.Context, tokenHash string) (store.AdminSession, error) {
	var (
		sess             store.AdminSession
		created, expires int64
	)
	err := s.read.QueryRowContext(ctx, `SELECT token_hash, username, created_at, expires_at
		FROM admin_sessions WHERE token_hash = ?`, tokenHash).
		Scan(&sess.TokenHash, &sess.Username, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return store.AdminSession{}, fmt.Errorf("sqlite: get session: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.AdminSession{}, fmt.Errorf("sqlite: get session: %w", err)
	}
	sess.CreatedAt = fromMs(created)
	sess.ExpiresAt = fromMs(expires)
	if !s.now().Before(sess.ExpiresAt) {
		if err := s.DeleteSession(ctx, tokenHash); err != nil {
			return store.AdminSession{}, err
		}
		return store.AdminSession{}, fmt.Errorf("sqlite: get session: %w", store.ErrNotFound)
	}
	return sess, nil
}

// DeleteSession removes the session with tokenHash. Deleting an unknown
// session is not an error: logging out twice is harmless.
func (s *Store) DeleteSession(ctx context.Context, tokenHash string) error {
	if _, err := s.write.ExecContext(ctx, `DELETE FROM admin_sessions WHERE token_hash = ?`, tokenHash); err != nil {
		return fmt.Errorf("sqlite: delete session: %w", err)
	}
	return nil
}
