package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// SetAccountQuota replaces only the quota column: not updated_at, which
// records the admin's edits, not the upstream's reports. A different quota
// bumps ChangeVersion (the accounts_quota_upd trigger), so every instance
// routes around a limited model family; writing the quota already stored
// does not, so reports that repeat themselves leave caches alone.
func (s *Store) SetAccountQuota(ctx context.Context, id store.AccountID, q store.Quota) error {
	quota, err := encodeQuota(q)
	if err != nil {
		return fmt.Errorf("sqlite: set account quota %q: %w", id, err)
	}
	res, err := s.write.ExecContext(ctx, `UPDATE accounts SET quota = ? WHERE id = ?`, quota, string(id))
	if err != nil {
		return fmt.Errorf("sqlite: set account quota %q: %w", id, err)
	}
	return rowsAffectedOrNotFound(res, fmt.Sprintf("set account quota %q", id))
}

// storedQuota is the quota column's JSON. It mirrors store.Quota but keeps
// times as unix milliseconds, like every other time in the file, so a
// quota reads back in UTC at the store's precision whatever zone it was
// written in. It is its own type so that the file format does not follow
// changes to store.Quota's JSON tags, which serve the admin API.
type storedQuota struct {
	Window5h     *storedWindow    `json:"window_5h,omitempty"`
	FamilyLimits map[string]int64 `json:"family_limits,omitempty"`
}

// storedWindow is one quota window; a zero time is left out.
type storedWindow struct {
	Start  *int64 `json:"start,omitempty"`
	End    *int64 `json:"end,omitempty"`
	Status string `json:"status,omitempty"`
}

// encodeQuota turns q into the quota column. A zero quota is "{}", the
// column default, and equal quotas always encode to equal bytes (maps are
// written in key order), which the trigger's change test relies on.
func encodeQuota(q store.Quota) (string, error) {
	var sq storedQuota
	if w := q.Window5h; w != (store.Window{}) {
		sq.Window5h = &storedWindow{Start: msOrNil(w.Start), End: msOrNil(w.End), Status: w.Status}
	}
	if len(q.FamilyLimits) > 0 {
		sq.FamilyLimits = make(map[string]int64, len(q.FamilyLimits))
		for family, until := range q.FamilyLimits {
			sq.FamilyLimits[family] = ms(until)
		}
	}
	b, err := json.Marshal(sq)
	if err != nil {
		return "", fmt.Errorf("quota: %w", err)
	}
	return string(b), nil
}

// decodeQuota reads the quota column back. No family limits read as a nil
// map, the zero value's form.
func decodeQuota(stored string) (store.Quota, error) {
	var sq storedQuota
	if err := json.Unmarshal([]byte(stored), &sq); err != nil {
		return store.Quota{}, err
	}
	var q store.Quota
	if w := sq.Window5h; w != nil {
		q.Window5h = store.Window{Start: timeOrZero(w.Start), End: timeOrZero(w.End), Status: w.Status}
	}
	if len(sq.FamilyLimits) > 0 {
		q.FamilyLimits = make(map[string]time.Time, len(sq.FamilyLimits))
		for family, until := range sq.FamilyLimits {
			q.FamilyLimits[family] = fromMs(until)
		}
	}
	return q, nil
}

// msOrNil stores a time as unix milliseconds, and the zero time as absent:
// a window the upstream did not report has no instant at all.
func msOrNil(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	v := ms(t)
	return &v
}

// timeOrZero is the inverse of msOrNil.
func timeOrZero(v *int64) time.Time {
	if v == nil {
		return time.Time{}
	}
	return fromMs(*v)
}
