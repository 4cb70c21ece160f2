package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/crs-relay/crs/internal/secret"
)

// TryLock takes the lease name for ttl when it is free or expired. The
// insert-or-take-over and the ownership check run in one IMMEDIATE
// transaction, which holds the file's write lock, so of any number of
// callers in any number of processes exactly one wins. Times come from the
// store's clock; instances sharing the file share the host's clock.
func (s *Store) TryLock(ctx context.Context, name string, ttl time.Duration) (string, bool, error) {
	if ttl <= 0 {
		return "", false, fmt.Errorf("sqlite: try lock %q: ttl %v must be positive", name, ttl)
	}
	token := secret.RandomHex(16)
	var owner string
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		now := s.now()
		_, err := tx.ExecContext(ctx, `INSERT INTO locks (name, token, expires_at) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
			WHERE locks.expires_at <= ?`,
			name, token, ms(now.Add(ttl)), ms(now))
		if err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT token FROM locks WHERE name = ?`, name).Scan(&owner)
	})
	if errors.Is(err, sql.ErrNoRows) {
		// Cannot happen inside the transaction; say so plainly if it does.
		return "", false, fmt.Errorf("sqlite: try lock %q: lease vanished", name)
	}
	if err != nil {
		return "", false, fmt.Errorf("sqlite: try lock %q: %w", name, err)
	}
	if owner != token {
		return "", false, nil
	}
	return token, true, nil
}

// Unlock releases the lease if token still owns it. Releasing a lease that
// is unknown, or that expired and was taken by another, is not an error:
// the caller's work is over either way.
func (s *Store) Unlock(ctx context.Context, name, token string) error {
	if _, err := s.write.ExecContext(ctx, `DELETE FROM locks WHERE name = ? AND token = ?`, name, token); err != nil {
		return fmt.Errorf("sqlite: unlock %q: %w", name, err)
	}
	return nil
}

// RenewLock extends the lease to ttl from now if token still owns it and it
// has not expired.
func (s *Store) RenewLock(ctx context.Context, name, token string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, fmt.Errorf("sqlite: renew lock %q: ttl %v must be positive", name, ttl)
	}
	now := s.now()
	res, err := s.write.ExecContext(ctx, `UPDATE locks SET expires_at = ? WHERE name = ? AND token = ? AND expires_at > ?`,
		ms(now.Add(ttl)), name, token, ms(now))
	if err != nil {
		return false, fmt.Errorf("sqlite: renew lock %q: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlite: renew lock %q: %w", name, err)
	}
	return n == 1, nil
}
