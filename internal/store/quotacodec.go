package store

import (
	"encoding/json"
	"fmt"
	"time"
)

// EncodeQuota is the stored form of a Quota, the same for every backend: JSON
// with times as unix milliseconds, so a quota reads back in UTC at the
// stores' precision whatever zone it was written in. It is its own format,
// not Quota's JSON tags (which serve the admin API), so the stored form does
// not follow API changes. A zero quota is "{}", and equal quotas encode to
// equal bytes (maps are written in key order): backends compare encodings to
// tell a changed quota from a repeated report.
func EncodeQuota(q Quota) (string, error) {
	var sq storedQuota
	if w := q.Window5h; w != (Window{}) {
		sq.Window5h = &storedWindow{Start: msOrNil(w.Start), End: msOrNil(w.End), Status: w.Status}
	}
	if len(q.FamilyLimits) > 0 {
		sq.FamilyLimits = make(map[string]int64, len(q.FamilyLimits))
		for family, until := range q.FamilyLimits {
			sq.FamilyLimits[family] = until.UnixMilli()
		}
	}
	b, err := json.Marshal(sq)
	if err != nil {
		return "", fmt.Errorf("quota: %w", err)
	}
	return string(b), nil
}

// DecodeQuota reads EncodeQuota's form back. No family limits read as a nil
// map, the zero value's form.
func DecodeQuota(stored string) (Quota, error) {
	var sq storedQuota
	if err := json.Unmarshal([]byte(stored), &sq); err != nil {
		return Quota{}, fmt.Errorf("quota: %w", err)
	}
	var q Quota
	if w := sq.Window5h; w != nil {
		q.Window5h = Window{Start: timeOrZero(w.Start), End: timeOrZero(w.End), Status: w.Status}
	}
	if len(sq.FamilyLimits) > 0 {
		q.FamilyLimits = make(map[string]time.Time, len(sq.FamilyLimits))
		for family, until := range sq.FamilyLimits {
			q.FamilyLimits[family] = time.UnixMilli(until).UTC()
		}
	}
	return q, nil
}

type storedQuota struct {
	Window5h     *storedWindow    `json:"window_5h,omitempty"`
	FamilyLimits map[string]int64 `json:"family_limits,omitempty"`
}

// storedWindow is one quota window; a zero time is left out (the epoch is
// not the zero time).
type storedWindow struct {
	Start  *int64 `json:"start,omitempty"`
	End    *int64 `json:"end,omitempty"`
	Status string `json:"status,omitempty"`
}

func msOrNil(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	v := t.UnixMilli()
	return &v
}

func timeOrZero(v *int64) time.Time {
	if v == nil {
		return time.Time{}
	}
	return time.UnixMilli(*v).UTC()
}
