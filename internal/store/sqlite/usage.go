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

// insertUsageSQL is the hot path's record insert, prepared once on the
// writer connection (see usageStatements) like the rollup upserts.
const insertUsageSQL = `INSERT INTO usage_records (` + usageColumns + `)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (request_id, attempt) DO NOTHING`

// level is one of the three rollup tables, each summing the records of a
// period a different way.
type level int

const (
	// byAll: usage_rollups, per key, account and model (and a label for
	// people reading the file with the sqlite3 shell).
	byAll level = iota
	// byAccount: usage_account_rollups, per account and model.
	byAccount
	// byKey: usage_key_rollups, per key.
	byKey
	levels
)

// rollupTables describe the levels: the table and the columns that name a
// row besides granularity and period.
var rollupTables = [levels]struct {
	name string
	dims []string
}{
	byAll:     {"usage_rollups", []string{"key_id", "account_id", "model"}},
	byAccount: {"usage_account_rollups", []string{"account_id", "model"}},
	byKey:     {"usage_key_rollups", []string{"key_id"}},
}

// counterCols are the totals every rollup table keeps, in Counters order.
var counterCols = []string{"requests", "input", "output", "cache_write_5m", "cache_write_1h",
	"cache_read", "cost_pico", "rated_pico"}

// upsertSQL adds a row's totals onto the stored row of level l.
func upsertSQL(l level) string {
	t := rollupTables[l]
	names := []string{"granularity", "period"}
	if l == byAll {
		names = append(names, "label")
	}
	names = append(append(names, t.dims...), counterCols...)
	sets := make([]string, len(counterCols))
	for i, c := range counterCols {
		sets[i] = c + " = " + c + " + excluded." + c
	}
	return `INSERT INTO ` + t.name + ` (` + strings.Join(names, ", ") + `)
		VALUES (?` + strings.Repeat(", ?", len(names)-1) + `)
		ON CONFLICT (granularity, period, ` + strings.Join(t.dims, ", ") + `) DO UPDATE SET
		` + strings.Join(sets, ", ")
}

// rollupKey identifies one rollup row of its level; the fields the level
// does not keep are empty.
type rollupKey struct {
	level   level
	g       store.Granularity
	period  int64
	label   string
	key     store.KeyID
	account store.AccountID
	model   string
}

// args are the upsert's arguments for the row k with totals c.
func (k rollupKey) args(c *store.Counters) []any {
	a := []any{string(k.g), k.period}
	switch k.level {
	case byAll:
		a = append(a, k.label, string(k.key), string(k.account), k.model)
	case byAccount:
		a = append(a, string(k.account), k.model)
	case byKey:
		a = append(a, string(k.key))
	}
	return append(a, c.Requests, c.Input, c.Output, c.CacheWrite5m, c.CacheWrite1h, c.CacheRead,
		c.CostPico, c.RatedPico)
}

// usageStmts are the hot-path statements.
type usageStmts struct {
	insert *sql.Stmt
	upsert [levels]*sql.Stmt
}

func (st *usageStmts) all() []*sql.Stmt { return append([]*sql.Stmt{st.insert}, st.upsert[:]...) }

// usageStatements returns the hot-path statements, preparing them on first
// use. They belong to the single writer connection's pool, so tx.Stmt
// rebinds them to each transaction without re-parsing the SQL.
func (s *Store) usageStatements(ctx context.Context) (*usageStmts, error) {
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if s.stmts != nil {
		return s.stmts, nil
	}
	st := &usageStmts{}
	prepare := func(dst **sql.Stmt, q string) error {
		var err error
		*dst, err = s.write.PrepareContext(ctx, q)
		return err
	}
	err := prepare(&st.insert, insertUsageSQL)
	for l := range levels {
		if err == nil {
			err = prepare(&st.upsert[l], upsertSQL(l))
		}
	}
	if err != nil {
		for _, done := range st.all() {
			if done != nil {
				done.Close()
			}
		}
		return nil, err
	}
	s.stmts = st
	return st, nil
}

// InsertUsage stores recs in one transaction, skipping any whose
// (RequestID, Attempt) is already stored, and adds the new ones to their
// hourly and daily rows of every rollup level in the same transaction, so
// rollups always equal the records they summarise. New records of one
// batch that share a rollup row are summed first and written with one
// upsert: under load a batch is mostly one key, account and model. It
// returns how many were new.
func (s *Store) InsertUsage(ctx context.Context, recs []store.UsageRecord) (int, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	stmts, err := s.usageStatements(ctx)
	if err != nil {
		return 0, fmt.Errorf("sqlite: insert usage: %w", err)
	}
	inserted := 0
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		ins := tx.StmtContext(ctx, stmts.insert)
		sums := make(map[rollupKey]*store.Counters, 8)
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
			for _, p := range [...]struct {
				g      store.Granularity
				period int64
				label  string
			}{{store.Hourly, ms(hour), hourLabel}, {store.Daily, ms(day), dayLabel}} {
				for _, k := range [...]rollupKey{
					{byAll, p.g, p.period, p.label, r.KeyID, r.AccountID, r.Model},
					{byAccount, p.g, p.period, "", "", r.AccountID, r.Model},
					{byKey, p.g, p.period, "", r.KeyID, "", ""},
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
		}
		var upsert [levels]*sql.Stmt
		for l, st := range stmts.upsert {
			upsert[l] = tx.StmtContext(ctx, st)
		}
		for _, k := range order {
			if _, err := upsert[k.level].ExecContext(ctx, k.args(sums[k])...); err != nil {
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

// ListUsage returns the records in f, newest first, at most limit
// (limit <= 0 means no limit), in one query. Each filter reads the index
// of its key, account or time from the cursor on; Model and Status are
// checked on the rows that index yields.
func (s *Store) ListUsage(ctx context.Context, f store.UsageFilter, limit int) ([]store.UsageRecord, error) {
	conds, args := candidateConds(f)
	post, postArgs := postConds(f)
	conds = append(conds, post...)
	args = append(args, postArgs...)
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	args = append(args, limit)
	rows, err := s.read.QueryContext(ctx, `SELECT `+recordColumns+` FROM usage_records`+where(conds)+
		` ORDER BY created_at DESC, id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list usage: %w", err)
	}
	out, err := scanRecords(rows)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list usage: %w", err)
	}
	return out, nil
}

// ScanUsage returns at most limit records in f, newest first, looking at
// no more than scan candidates: rows of f's key, account and time range
// after its cursor, read from their index in order. Without a Model or
// Status filter every candidate matches and one query reads the page and
// one more row, to learn whether the range goes on. With one, a first
// query walks the candidates' ids, times and whether each matches, and a
// second reads the matches whole, so the rows that do not match cost no
// decoding.
func (s *Store) ScanUsage(ctx context.Context, f store.UsageFilter, limit, scan int) (store.UsagePage, error) {
	if limit <= 0 {
		return store.UsagePage{}, fmt.Errorf("sqlite: scan usage: limit %d, want > 0", limit)
	}
	if scan <= 0 {
		scan = store.DefaultUsageScan
	}
	scan = max(scan, limit)
	var page store.UsagePage
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		conds, args := candidateConds(f)
		post, postArgs := postConds(f)
		if len(post) == 0 {
			rows, err := tx.QueryContext(ctx, `SELECT `+recordColumns+` FROM usage_records`+where(conds)+
				` ORDER BY created_at DESC, id DESC LIMIT ?`, append(args, min(scan, limit+1))...)
			if err != nil {
				return err
			}
			recs, err := scanRecords(rows)
			if err != nil {
				return err
			}
			page.Records = recs[:min(len(recs), limit)]
			if len(recs) > limit || len(recs) == scan {
				page.Next = recs[len(page.Records)-1].Cursor()
			}
			return nil
		}

		// The match test is a column of the walk, its arguments first:
		// SQLite numbers the parameters in the order they appear.
		rows, err := tx.QueryContext(ctx, `SELECT id, created_at, `+strings.Join(post, " AND ")+
			` FROM usage_records`+where(conds)+` ORDER BY created_at DESC, id DESC LIMIT ?`,
			append(append(postArgs, args...), scan)...)
		if err != nil {
			return err
		}
		var (
			hits     []int64
			examined int
			last     store.UsageCursor
			more     bool // a match past the page was seen
		)
		for rows.Next() {
			var (
				id, at int64
				hit    bool
			)
			if err := rows.Scan(&id, &at, &hit); err != nil {
				rows.Close()
				return err
			}
			if hit && len(hits) == limit {
				more = true
				break
			}
			examined++
			last = store.UsageCursor{CreatedAt: fromMs(at), Seq: id}
			if hit {
				hits = append(hits, id)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		// Next is after the last row looked at but the peeked match:
		// the last match when the page is full, else the row where the
		// budget ran out.
		if more || examined == scan {
			page.Next = &last
		}
		page.Records, err = recordsByID(ctx, tx, hits)
		return err
	})
	if err != nil {
		return store.UsagePage{}, fmt.Errorf("sqlite: scan usage: %w", err)
	}
	return page, nil
}

// recordsByID reads the records of ids, which are in newest-first order,
// in that order.
func recordsByID(ctx context.Context, tx *sql.Tx, ids []int64) ([]store.UsageRecord, error) {
	const chunk = 500 // well below SQLite's limit on parameters
	out := make([]store.UsageRecord, 0, len(ids))
	for i := 0; i < len(ids); i += chunk {
		part := ids[i:min(i+chunk, len(ids))]
		args := make([]any, len(part))
		for j, id := range part {
			args[j] = id
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+recordColumns+` FROM usage_records WHERE id IN (?`+
			strings.Repeat(", ?", len(part)-1)+`) ORDER BY created_at DESC, id DESC`, args...)
		if err != nil {
			return nil, err
		}
		recs, err := scanRecords(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
	}
	return out, nil
}

// recordColumns are usageColumns and the row id, which is the Seq.
const recordColumns = usageColumns + `, id`

// scanRecords reads rows of recordColumns and closes them.
func scanRecords(rows *sql.Rows) ([]store.UsageRecord, error) {
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
			&stream, &r.Status, &r.LatencyMs, &r.FirstByteMs, &aborted, &created, &r.Seq); err != nil {
			return nil, err
		}
		r.KeyID = store.KeyID(keyID)
		r.AccountID = store.AccountID(accountID)
		r.Stream = stream != 0
		r.ClientAborted = aborted != 0
		r.CreatedAt = fromMs(created)
		out = append(out, r)
	}
	return out, rows.Err()
}

// candidateConds are the conditions of f that an index answers in the
// newest-first order: key or account, time range and cursor. The cursor
// is written as a range on created_at, which the index walks, and a test
// of the id that only rows of the cursor's millisecond need.
func candidateConds(f store.UsageFilter) ([]string, []any) {
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
	if c := f.Before; c != nil {
		at := ms(c.CreatedAt)
		conds = append(conds, "created_at <= ?", "(created_at < ? OR id < ?)")
		args = append(args, at, at, c.Seq)
	}
	return conds, args
}

// postConds are the conditions of f that no index answers.
func postConds(f store.UsageFilter) ([]string, []any) {
	var conds []string
	var args []any
	if f.Model != "" {
		conds = append(conds, "model = ?")
		args = append(args, f.Model)
	}
	if f.Status != 0 {
		conds = append(conds, "status = ?")
		args = append(args, f.Status)
	}
	return conds, args
}

// where joins conds into a WHERE clause, empty when there are none.
func where(conds []string) string {
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// purgeBatch is how many records one PurgeUsage transaction removes:
// about 8 ms of holding the write lock with a million records stored, so
// usage inserts wait little.
const purgeBatch = 1000

// PurgeUsage removes the records created before before, oldest first, in
// transactions of purgeBatch records, and returns how many it removed.
// Rollups stay.
func (s *Store) PurgeUsage(ctx context.Context, before time.Time) (int, error) {
	total := 0
	for {
		var n int64
		err := s.writeTx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, `DELETE FROM usage_records WHERE id IN (
				SELECT id FROM usage_records WHERE created_at < ? ORDER BY created_at LIMIT ?)`,
				ms(before), purgeBatch)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return total, fmt.Errorf("sqlite: purge usage: %w", err)
		}
		total += int(n)
		if n < purgeBatch {
			return total, nil
		}
	}
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
