package sqlite

import (
	"context"
	"fmt"

	"github.com/crs-relay/crs/internal/store"
)

// SetAccountQuota replaces only the quota column: not updated_at, which
// records the admin's edits, not the upstream's reports. A different quota
// bumps ChangeVersion (the accounts_quota_upd trigger), so every instance
// routes around a limited model family; writing the quota already stored
// does not, so reports that repeat themselves leave caches alone.
func (s *Store) SetAccountQuota(ctx context.Context, id store.AccountID, q store.Quota) error {
	quota, err := store.EncodeQuota(q)
	if err != nil {
		return fmt.Errorf("sqlite: set account quota %q: %w", id, err)
	}
	res, err := s.write.ExecContext(ctx, `UPDATE accounts SET quota = ? WHERE id = ?`, quota, string(id))
	if err != nil {
		return fmt.Errorf("sqlite: set account quota %q: %w", id, err)
	}
	return rowsAffectedOrNotFound(res, fmt.Sprintf("set account quota %q", id))
}
