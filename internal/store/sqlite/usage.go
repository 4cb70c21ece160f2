package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

const usageColumns = `request_id, attempt, key_id, account_id, model,
	input, output, cache_write_5m, cache_write_1h, cache_read, cost_pico, rated_cost_pico,
	stream, status, latency_ms, first_byte_ms, client_aborted, created_at`

// Statements of the usage hot path, prepared once on the writer connection
// (see usageStatements) instead of per batch.
const (
	insertUsageSQL = `INSERT INTO usage_records (` + usageColumns + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (request_id, attempt) DO NOTHING`
	upsertRollupSQL = `INSERT INTO usage_rollups (granularity, period, label,
			key_id, account_id, model, requests, input, output,
			cache_write_5m, cache_write_1h, cache_read, cost_pico, rated_pico)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (granularity, period, key_id, account_id, model) DO UPDATE SET
			requests = requests + excluded.requests,
			input = input + excluded.input,
			output = output + excluded.output,
			cache_write_5m = cache_write_5m + excluded.cache_write_5m,
			cache_write_1h = cache_write_1h + excluded.cache_write_1h,
			cache_read = cache_read + excluded.cache_read,
			cost_pico = cost_pico + excluded.cost_pico,
			rated_pico = rated_pico + excluded.rated_pico`
)

// rollupKey identifies one rollup row.
type rollupKey struct {
	g       store.Granularity
	period  int64
	label   string
	key     store.KeyID
	account store.AccountID
	model   string
}

// usageStatements returns the hot-path statements, preparing them on first
// use. They belong to the single writer connection's pool, so tx.Stmt
// rebinds them to each transaction without re-parsing the SQL.
func (s *Store) usageStatements(ctx context.Context) (ins, roll *sql.Stmt, err error) {
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if s.insertUsage == nil {
		if s.insertUsage, err = s.write.PrepareContext(ctx, insertUsageSQL); err != nil {
			return nil, nil, err
		}
	}
	if s.upsertRollup == nil {
		if s.upsertRollup, err = s.write.PrepareContext(ctx, upsertRollupSQL); err != nil {
			return nil, nil, err
		}
	}
	return s.insertUsage, s.upsertRollup, nil
}

// InsertUsage stores recs in one transaction, skipping any whose
// (RequestID, Attempt) is already stored, and adds the new ones to their
// hourly and daily rollups in the same transaction, so rollups always equal
// the records they summarise. New records of one batch that share a rollup
// row are summed first and written with one upsert: under load a batch is
// mostly one key, account and model. It returns how many were new.
func (s *Store) InsertUsage(ctx context.Context, recs []store.UsageRecord) (int, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	insStmt, rollStmt, err := s.usageStatements(ctx)
	if err != nil {
		return 0, fmt.Errorf("sqlite: insert usage: %w", err)
	}
	inserted := 0
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		ins := tx.StmtContext(ctx, insStmt)
		roll := tx.StmtContext(ctx, rollStmt)
		sums := make(map[rollupKey]*store.Counters, 4)
		var order []rollupKey
		for _, r := range recs {
			res, err := ins.ExecContext(ctx, r.RequestID, r.Attempt, string(r.KeyID), string(r.AccountID), r.Model,
				r.Input, r.Output, r.CacheWrite5m, r.CacheWrite1h, r.CacheRead, r.CostPico, r.RatedCostPico,
				boolInt(r.Stream), r.Status, r.LatencyMs, r.FirstByteMs, boolInt(r.ClientAborted),
				ms(r.CreatedAt))
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			if n == 0 {
				continue // a duplicate: already counted in the rollups
			}
			inserted++
			hour, hourLabel := hourBucket(r.CreatedAt)
			day, dayLabel := dayBucket(r.CreatedAt, s.loc)
			for _, k := range [...]rollupKey{
				{store.Hourly, ms(hour), hourLabel, r.KeyID, r.AccountID, r.Model},
				{store.Daily, ms(day), dayLabel, r.KeyID, r.AccountID, r.Model},
			} {
				c, ok := sums[k]
				if !ok {
					c = &store.Counters{}
					sums[k] = c
					order = append(order, k)
				}
				c.Add(r)
			}
		}
		for _, k := range order {
			c := sums[k]
			if _, err := roll.ExecContext(ctx, string(k.g), k.period, k.label,
				string(k.key), string(k.account), k.model, c.Requests,
				c.Input, c.Output, c.CacheWrite5m, c.CacheWrite1h, c.CacheRead, c.CostPico,
				c.RatedPico); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: insert usage: %w", err)
	}
	return inserted, nil
}

// hourBucket returns the start of t's hour in UTC.
func hourBucket(t time.Time) (time.Time, string) {
	h := t.UTC().Truncate(time.Hour)
	return h, h.Format("2006-01-02T15Z")
}

// dayBucket returns midnight of t's day in loc. Around a DST change the day
// may be 23 or 25 hours long; time.Date picks the right instant.
func dayBucket(t time.Time, loc *time.Location) (time.Time, string) {
	y, m, d := t.In(loc).Date()
	day := time.Date(y, m, d, 0, 0, 0, 0, loc)
	return day, day.Format("2006-01-02")
}

// ListUsage returns records in the filter, newest first, at most limit
// (limit <= 0 means no limit).
func (s *Store) ListUsage(ctx context.Context, f store.UsageFilter, limit int) ([]store.UsageRecord, error) {
	where, args := usageWhere(f)
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	args = append(args, limit)
	rows, err := s.read.QueryContext(ctx, `SELECT `+usageColumns+` FROM usage_records`+where+
		` ORDER BY created_at DESC, id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list usage: %w", err)
	}
	defer rows.Close()
	var out []store.UsageRecord
	for rows.Next() {
		var (
			r                store.UsageRecord
			keyID, accountID string
			stream, aborted  int
			created          int64
		)
		if err := rows.Scan(&r.RequestID, &r.Attempt, &keyID, &accountID, &r.Model,
			&r.Input, &r.Output, &r.CacheWrite5m, &r.CacheWrite1h, &r.CacheRead, &r.CostPico, &r.RatedCostPico,
			&stream, &r.Status, &r.LatencyMs, &r.FirstByteMs, &aborted, &created); err != nil {
			return nil, fmt.Errorf("sqlite: list usage: %w", err)
		}
		r.KeyID = store.KeyID(keyID)
		r.AccountID = store.AccountID(accountID)
		r.Stream = stream != 0
		r.ClientAborted = aborted != 0
		r.CreatedAt = fromMs(created)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list usage: %w", err)
	}
	return out, nil
}

// usageWhere turns a filter into a WHERE clause (empty when it filters
// nothing) and its arguments.
func usageWhere(f store.UsageFilter) (string, []any) {
	var conds []string
	var args []any
	if f.KeyID != "" {
		conds = append(conds, "key_id = ?")
		args = append(args, string(f.KeyID))
	}
	if f.AccountID != "" {
		conds = append(conds, "account_id = ?")
		args = append(args, string(f.AccountID))
	}
	if !f.From.IsZero() {
		conds = append(conds, "created_at >= ?")
		args = append(args, ms(f.From))
	}
	if !f.To.IsZero() {
		conds = append(conds, "created_at < ?")
		args = append(args, ms(f.To))
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// SummarizeUsage totals records per key, per account and per model, each
// list ordered by its name. The three totals come from one read
// transaction, so they agree with each other even while writes go on.
func (s *Store) SummarizeUsage(ctx context.Context, f store.UsageFilter) (store.UsageSummary, error) {
	where, args := usageWhere(f)
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return store.UsageSummary{}, fmt.Errorf("sqlite: summarize usage: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // read-only: nothing to undo

	var sum store.UsageSummary
	for _, g := range []struct {
		col string
		dst *[]store.UsageRow
		set func(*store.UsageRow, string)
	}{
		{"key_id", &sum.Keys, func(r *store.UsageRow, v string) { r.KeyID = store.KeyID(v) }},
		{"account_id", &sum.Accounts, func(r *store.UsageRow, v string) { r.AccountID = store.AccountID(v) }},
		{"model", &sum.Models, func(r *store.UsageRow, v string) { r.Model = v }},
	} {
		rows, err := tx.QueryContext(ctx, `SELECT `+g.col+`, COUNT(*), SUM(input), SUM(output),
			SUM(cache_write_5m), SUM(cache_write_1h), SUM(cache_read), SUM(cost_pico),
			SUM(rated_cost_pico)
			FROM usage_records`+where+` GROUP BY `+g.col+` ORDER BY `+g.col, args...)
		if err != nil {
			return store.UsageSummary{}, fmt.Errorf("sqlite: summarize usage: %w", err)
		}
		for rows.Next() {
			var row store.UsageRow
			var name string
			c := &row.Counters
			if err := rows.Scan(&name, &c.Requests, &c.Input, &c.Output,
				&c.CacheWrite5m, &c.CacheWrite1h, &c.CacheRead, &c.CostPico, &c.RatedPico); err != nil {
				rows.Close()
				return store.UsageSummary{}, fmt.Errorf("sqlite: summarize usage: %w", err)
			}
			g.set(&row, name)
			*g.dst = append(*g.dst, row)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return store.UsageSummary{}, fmt.Errorf("sqlite: summarize usage: %w", err)
		}
	}
	return sum, nil
}

// Rollups returns rollup rows of granularity g with Period in [from, to),
// ordered by period, key, account and model. A zero to means no upper
// bound. Hourly periods are in UTC, daily ones in the store's zone.
func (s *Store) Rollups(ctx context.Context, g store.Granularity, from, to time.Time) ([]store.Rollup, error) {
	if g != store.Hourly && g != store.Daily {
		return nil, fmt.Errorf("sqlite: rollups: unknown granularity %q", g)
	}
	toMs := int64(1<<63 - 1)
	if !to.IsZero() {
		toMs = ms(to)
	}
	rows, err := s.read.QueryContext(ctx, `SELECT period, key_id, account_id, model, requests,
			input, output, cache_write_5m, cache_write_1h, cache_read, cost_pico, rated_pico
		FROM usage_rollups WHERE granularity = ? AND period >= ? AND period < ?
		ORDER BY period, key_id, account_id, model`, string(g), ms(from), toMs)
	if err != nil {
		return nil, fmt.Errorf("sqlite: rollups: %w", err)
	}
	defer rows.Close()
	var out []store.Rollup
	for rows.Next() {
		var (
			r                store.Rollup
			period           int64
			keyID, accountID string
		)
		c := &r.Counters
		if err := rows.Scan(&period, &keyID, &accountID, &r.Model, &c.Requests,
			&c.Input, &c.Output, &c.CacheWrite5m, &c.CacheWrite1h, &c.CacheRead, &c.CostPico,
			&c.RatedPico); err != nil {
			return nil, fmt.Errorf("sqlite: rollups: %w", err)
		}
		r.Period = fromMs(period)
		if g == store.Daily {
			r.Period = r.Period.In(s.loc)
		}
		r.KeyID = store.KeyID(keyID)
		r.AccountID = store.AccountID(accountID)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: rollups: %w", err)
	}
	return out, nil
}
