package sqlite

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// queryPlan returns SQLite's plan for query, one line per step.
func queryPlan(t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
	rows, err := s.read.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "; ")
}

// TestUsagePagePlans: every page query walks the index of its filter from
// the cursor on, in the order asked for, so a deep page costs what the
// first does; none sorts (which would read the whole range first). A
// key's summary reads the key's rollups by their index.
func TestUsagePagePlans(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "crs.db"), Options{})
	c := &store.UsageCursor{CreatedAt: time.Now(), Seq: 5}
	now := time.Now()
	for _, tc := range []struct {
		f     store.UsageFilter
		index string
	}{
		{store.UsageFilter{Before: c}, "usage_records_created (created_at<?)"},
		{store.UsageFilter{KeyID: "k", Before: c}, "usage_records_key (key_id=? AND created_at<?)"},
		{store.UsageFilter{AccountID: "a", Before: c}, "usage_records_account (account_id=? AND created_at<?)"},
		{store.UsageFilter{From: now.Add(-time.Hour), To: now, Before: c}, "usage_records_created (created_at>? AND created_at<?)"},
		{store.UsageFilter{Model: "m", Status: 500, Before: c}, "usage_records_created (created_at<?)"},
		{store.UsageFilter{KeyID: "k", Model: "m", Before: c}, "usage_records_key (key_id=? AND created_at<?)"},
	} {
		conds, args := candidateConds(tc.f)
		post, postArgs := postConds(tc.f)
		plan := queryPlan(t, s, `SELECT `+recordColumns+` FROM usage_records`+where(append(conds, post...))+
			` ORDER BY created_at DESC, id DESC LIMIT 50`, append(args, postArgs...)...)
		if !strings.Contains(plan, "USING INDEX "+tc.index) || strings.Contains(plan, "TEMP B-TREE") {
			t.Errorf("plan of %+v = %q, want a walk of %s and no sort", tc.f, plan, tc.index)
		}
	}
	plan := queryPlan(t, s, `SELECT key_id FROM usage_rollups INDEXED BY usage_rollups_key
		WHERE granularity = 'day' AND period >= 0 AND period < 10 AND key_id = 'k'`)
	if !strings.Contains(plan, "usage_rollups_key (key_id=? AND granularity=? AND period>? AND period<?)") {
		t.Errorf("plan of a key's rollups = %q", plan)
	}
}
