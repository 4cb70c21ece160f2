package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/crs-relay/crs/internal/store"
)

// GetSetting returns the value stored under name.
func (s *Store) GetSetting(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	err := s.read.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = ?`, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: get setting %q: %w", name, err)
	}
	return v, nil
}

// SetSetting stores value under name, or removes name when value is nil.
func (s *Store) SetSetting(ctx context.Context, name string, value []byte) error {
	var err error
	if value == nil {
		_, err = s.write.ExecContext(ctx, `DELETE FROM settings WHERE name = ?`, name)
	} else {
		_, err = s.write.ExecContext(ctx, `INSERT INTO settings (name, value, updated_at) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
			name, value, ms(s.now()))
	}
	if err != nil {
		return fmt.Errorf("sqlite: set setting %q: %w", name, err)
	}
	return nil
}
