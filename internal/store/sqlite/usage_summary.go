package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

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
// keeps them, planned by summaryPlan: rollups of l for whole days and
// hours, records for the rest, summed the same way. l must keep every
// dimension f narrows.
func (s *Store) totals(ctx context.Context, tx *sql.Tx, f store.UsageFilter, l level) (store.UsageTotals, error) {
	if f.Status != 0 || f.Before != nil {
		return nil, fmt.Errorf("status or cursor: %w", store.ErrFilterUnsupported)
	}
	whole := span{math.MinInt64, math.MaxInt64}
	if !f.From.IsZero() {
		whole.lo = ms(f.From)
	}
	if !f.To.IsZero() {
		whole.hi = ms(f.To)
	}
	totals := store.UsageTotals{}
	if whole.lo >= whole.hi {
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
	days, hours, partial := s.summaryPlan(whole)
	for _, g := range []struct {
		name  store.Granularity
		spans []span
	}{{store.Daily, days}, {store.Hourly, hours}} {
		for _, sp := range g.spans {
			add(rollups, []string{"granularity = ?", "period >= ?", "period < ?"}, string(g.name), sp.lo, sp.hi)
		}
	}
	for _, sp := range partial {
		add(records, []string{"created_at >= ?", "created_at < ?"}, sp.lo, sp.hi)
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

// summaryPlan splits whole into the spans of whole days (read from daily
// rollups), of whole hours (hourly rollups) and the rest (records). The
// parts are disjoint and cover whole, so every record is counted once.
// Days of a zone off the hour (UTC+05:45) start inside a UTC hour; the
// hours and records then fill in around them. The shared store plans its
// summaries the same way.
func (s *Store) summaryPlan(whole span) (days, hours, partial []span) {
	edges := []span{whole}
	if d0, d1 := s.ceilDay(whole.lo), s.floorDay(whole.hi); d0 < d1 {
		days = []span{{d0, d1}}
		edges = []span{{whole.lo, d0}, {d1, whole.hi}}
	}
	for _, e := range edges {
		if e.lo >= e.hi {
			continue
		}
		h0, h1 := ceilHour(e.lo), floorHour(e.hi)
		if h0 >= h1 {
			partial = append(partial, e)
			continue
		}
		hours = append(hours, span{h0, h1})
		for _, p := range [...]span{{e.lo, h0}, {h1, e.hi}} {
			if p.lo < p.hi {
				partial = append(partial, p)
			}
		}
	}
	return days, hours, partial
}

const hourMs = int64(time.Hour / time.Millisecond)

// open reports whether ms is an open end of a span.
func open(ms int64) bool { return ms == math.MinInt64 || ms == math.MaxInt64 }

// floorHour is the start of the UTC hour holding ms; ceilHour the first
// hour start at or after ms. Open ends stay open.
func floorHour(ms int64) int64 {
	if open(ms) {
		return ms
	}
	h := ms / hourMs * hourMs
	if h > ms {
		h -= hourMs
	}
	return h
}

func ceilHour(ms int64) int64 {
	h := floorHour(ms)
	if h == ms {
		return ms
	}
	return h + hourMs
}

// floorDay is the start of the store-zone day holding ms; ceilDay the first
// day start at or after ms. Open ends stay open.
func (s *Store) floorDay(ms int64) int64 {
	if open(ms) {
		return ms
	}
	day, _ := dayBucket(time.UnixMilli(ms), s.loc)
	return day.UnixMilli()
}

func (s *Store) ceilDay(ms int64) int64 {
	d := s.floorDay(ms)
	if d == ms {
		return ms
	}
	y, m, day := time.UnixMilli(d).In(s.loc).Date()
	return time.Date(y, m, day+1, 0, 0, 0, 0, s.loc).UnixMilli()
}
