package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/crs-relay/crs/internal/store"
)

// SummarizeUsage totals records per key, per account and per model, each
// list ordered by its name, from one read transaction. Whole days of the
// span (store zone) come from the daily rollups, whole UTC hours from the
// hourly ones, and only the partial hours at the ends from the records:
// a key's spend over all time so reads a few rows per day, and stays
// whole after PurgeUsage removed old records, whose rollups it keeps.
// Each list is read from the smallest rollups that answer it: with a key,
// that key's rows of usage_rollups; without, accounts and models from
// usage_account_rollups and keys from usage_key_rollups (from
// usage_rollups only when an account or model narrows the keys' totals).
func (s *Store) SummarizeUsage(ctx context.Context, f store.UsageFilter) (store.UsageSummary, error) {
	var sum store.UsageSummary
	var keys, rest store.UsageTotals
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		if f.KeyID != "" {
			rest, err = s.totals(ctx, tx, f, byAll)
			keys = rest
			return err
		}
		if rest, err = s.totals(ctx, tx, f, byAccount); err != nil {
			return err
		}
		keyLevel := byKey
		if f.AccountID != "" || f.Model != "" {
			keyLevel = byAll
		}
		keys, err = s.totals(ctx, tx, f, keyLevel)
		return err
	})
	if err != nil {
		return sum, fmt.Errorf("sqlite: summarize usage: %w", err)
	}
	sum.Keys, sum.Accounts, sum.Models = keys.Rows(store.ByKey), rest.Rows(store.ByAccount), rest.Rows(store.ByModel)
	return sum, nil
}

// ModelTotals totals records per model, ordered by model, as
// SummarizeUsage does; without a KeyID from usage_account_rollups, whose
// rows do not multiply by the keys.
func (s *Store) ModelTotals(ctx context.Context, f store.UsageFilter) ([]store.UsageRow, error) {
	l := byAll
	if f.KeyID == "" {
		l = byAccount
	}
	var totals store.UsageTotals
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		totals, err = s.totals(ctx, tx, f, l)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: model totals: %w", err)
	}
	return totals.Rows(store.ByModel), nil
}

// totals sums the records of f per (key, account, model) as level l
// keeps them, planned by store.PlanSummary: rollups of l for whole days and
// hours, records for the rest, summed the same way. l must keep every
// dimension f narrows.
func (s *Store) totals(ctx context.Context, tx *sql.Tx, f store.UsageFilter, l level) (store.UsageTotals, error) {
	if f.Status != 0 || f.Before != nil {
		return nil, fmt.Errorf("status or cursor: %w", store.ErrFilterUnsupported)
	}
	whole := f.Span()
	totals := store.UsageTotals{}
	if whole.Lo >= whole.Hi {
		return totals, nil
	}

	// One SELECT per part, grouped in SQL.
	t := rollupTables[l]
	var names []string // key, account, model as l keeps them
	for _, col := range []string{"key_id", "account_id", "model"} {
		if slices.Contains(t.dims, col) {
			names = append(names, col)
		} else {
			names = append(names, "'' AS "+col)
		}
	}
	dimCols := strings.Join(names, ", ")
	rollups := `SELECT ` + dimCols + `, ` + strings.Join(counterCols, ", ") + ` FROM ` + t.name
	if l == byAll && f.KeyID != "" {
		// Without statistics SQLite prefers the primary key's period
		// range, which holds every key's rows; a key's own are fewer.
		rollups += ` INDEXED BY usage_rollups_key`
	}
	records := `SELECT ` + dimCols + `, 1 AS requests, input, output, cache_write_5m, cache_write_1h,
		cache_read, cost_pico, rated_cost_pico AS rated_pico FROM usage_records`
	dims, dimArgs := dimsWhere(f)
	var parts []string
	var args []any
	add := func(sel string, conds []string, a ...any) {
		parts = append(parts, sel+where(append(conds, dims...)))
		args = append(append(args, a...), dimArgs...)
	}
	days, hours, partial := store.PlanSummary(whole, s.loc)
	for _, g := range []struct {
		name  store.Granularity
		spans []store.Span
	}{{store.Daily, days}, {store.Hourly, hours}} {
		for _, sp := range g.spans {
			add(rollups, []string{"granularity = ?", "period >= ?", "period < ?"}, string(g.name), sp.Lo, sp.Hi)
		}
	}
	for _, sp := range partial {
		add(records, []string{"created_at >= ?", "created_at < ?"}, sp.Lo, sp.Hi)
	}

	rows, err := tx.QueryContext(ctx, `SELECT key_id, account_id, model, SUM(requests), SUM(input),
		SUM(output), SUM(cache_write_5m), SUM(cache_write_1h), SUM(cache_read), SUM(cost_pico),
		SUM(rated_pico)
		FROM (`+strings.Join(parts, " UNION ALL ")+`)
		GROUP BY key_id, account_id, model`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			d                store.UsageRow
			keyID, accountID string
			c                store.Counters
		)
		if err := rows.Scan(&keyID, &accountID, &d.Model, &c.Requests, &c.Input, &c.Output,
			&c.CacheWrite5m, &c.CacheWrite1h, &c.CacheRead, &c.CostPico, &c.RatedPico); err != nil {
			return nil, err
		}
		d.KeyID, d.AccountID = store.KeyID(keyID), store.AccountID(accountID)
		totals.Add(d, c)
	}
	return totals, rows.Err()
}

// dimsWhere is the conditions on key, account and model that f sets.
func dimsWhere(f store.UsageFilter) ([]string, []any) {
	var conds []string
	var args []any
	for _, d := range []struct{ col, val string }{
		{"key_id", string(f.KeyID)}, {"account_id", string(f.AccountID)}, {"model", f.Model},
	} {
		if d.val != "" {
			conds = append(conds, d.col+" = ?")
			args = append(args, d.val)
		}
	}
	return conds, args
}

// Trend sums f's rollups per period from the smallest level that keeps
// what f narrows: usage_key_rollups for a key alone, its rows of
// usage_rollups (through their index) for a key with an account or model,
// otherwise usage_account_rollups.
func (s *Store) Trend(ctx context.Context, g store.Granularity, f store.UsageFilter) ([]store.Rollup, error) {
	if g != store.Hourly && g != store.Daily {
		return nil, fmt.Errorf("sqlite: trend: unknown granularity %q", g)
	}
	if f.Status != 0 || f.Before != nil {
		return nil, fmt.Errorf("sqlite: trend: status or cursor: %w", store.ErrFilterUnsupported)
	}
	from, to := int64(math.MinInt64), int64(math.MaxInt64)
	if !f.From.IsZero() {
		from = ms(f.From)
	}
	if !f.To.IsZero() {
		to = ms(f.To)
	}
	table := rollupTables[byAccount].name
	switch {
	case f.KeyID != "" && f.AccountID == "" && f.Model == "":
		table = rollupTables[byKey].name
	case f.KeyID != "":
		table = rollupTables[byAll].name + ` INDEXED BY usage_rollups_key`
	}
	dims, dimArgs := dimsWhere(f)
	rows, err := s.read.QueryContext(ctx, `SELECT period, SUM(requests), SUM(input), SUM(output),
			SUM(cache_write_5m), SUM(cache_write_1h), SUM(cache_read), SUM(cost_pico), SUM(rated_pico)
		FROM `+table+where(append([]string{"granularity = ?", "period >= ?", "period < ?"}, dims...))+`
		GROUP BY period ORDER BY period`, append([]any{string(g), from, to}, dimArgs...)...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: trend: %w", err)
	}
	defer rows.Close()
	var out []store.Rollup
	for rows.Next() {
		r := store.Rollup{KeyID: f.KeyID, AccountID: f.AccountID, Model: f.Model}
		var period int64
		c := &r.Counters
		if err := rows.Scan(&period, &c.Requests, &c.Input, &c.Output, &c.CacheWrite5m, &c.CacheWrite1h,
			&c.CacheRead, &c.CostPico, &c.RatedPico); err != nil {
			return nil, fmt.Errorf("sqlite: trend: %w", err)
		}
		r.Period = fromMs(period)
		if g == store.Daily {
			r.Period = r.Period.In(s.loc)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: trend: %w", err)
	}
	return out, nil
}

// span is [lo, hi) in unix ms; math.MinInt64 and math.MaxInt64 leave an
// end open.
type span struct{ lo, hi int64 }
