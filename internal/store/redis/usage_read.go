package redis

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/crs-relay/crs/internal/store"
)

// Summaries and rollups read what InsertUsage keeps (see the layout in
// usage.go): rollup rows where a span covers whole days or hours, records
// only at its edges.

// readUsageScript reads rollups and records for a summary in one atomic
// step. KEYS[1] is P rec. ARGV is a list of reads of five values each: a
// kind, the position of a sorted set in KEYS, its min and max score, and
// a name base.
//
//	"r": the set holds periods; the rollup hash base..period of each is
//	     returned as {read, period, dims, row, dims, row, ...} in the
//	     first list (none when the family has no records then), where
//	     read numbers the read in ARGV from 0.
//	"l": the set is a record index; the encoded records go to the second
//	     list, and base is unused.
//
// The rollup hashes are not in KEYS, as only the script learns their
// periods; they share the {u} slot, where Redis Cluster lets a script
// reach undeclared keys. Totals are summed in Go: Lua numbers are doubles.
var readUsageScript = goredis.NewScript(`
local rollups, records = {}, {}
for i = 1, #ARGV, 5 do
	local ids = redis.call('ZRANGEBYSCORE', KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3])
	if ARGV[i] == 'r' then
		for _, p in ipairs(ids) do
			local row = redis.call('HGETALL', ARGV[i + 4] .. p)
			if #row > 0 then
				table.insert(row, 1, p)
				table.insert(row, 1, tostring((i - 1) / 5))
				rollups[#rollups + 1] = row
			end
		end
	else
		for j = 1, #ids, 1000 do
			local got = redis.call('HMGET', KEYS[1], unpack(ids, j, math.min(j + 999, #ids)))
			for _, b in ipairs(got) do
				if b then
					records[#records + 1] = b
				end
			end
		end
	end
end
return {rollups, records}
`)

// usageRead is one read of readUsageScript.
type usageRead struct {
	kind string // "r" or "l"
	set  string // the sorted set to range over
	sp   store.Span
	base string // "r": the rollup hashes' name before the period
}

// rollupRead reads the rollups of g in family fam with periods in sp.
func (s *Store) rollupRead(g store.Granularity, fam string, sp store.Span) usageRead {
	return usageRead{"r", s.rollupPeriods(g), sp, s.rollupBase(g, fam)}
}

// rollupRow is one decoded rollup row.
type rollupRow struct {
	read    int // which of readUsage's reads returned it
	period  int64
	key     store.KeyID
	account store.AccountID
	model   string
	store.Counters
}

// readUsage runs reads in one script call and returns the rollup rows
// and the records.
func (s *Store) readUsage(ctx context.Context, reads []usageRead) ([]rollupRow, []store.UsageRecord, error) {
	keys := []string{s.usageKey("rec")}
	args := make([]any, 0, 5*len(reads))
	for _, r := range reads {
		keys = append(keys, r.set)
		args = append(args, r.kind, len(keys), zmin(r.sp), zmax(r.sp), r.base)
	}
	res, err := readUsageScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return nil, nil, err
	}
	if len(res) != 2 {
		return nil, nil, fmt.Errorf("%w: %d lists, want 2", errReply, len(res))
	}
	hashes, _ := res[0].([]any)
	blobs, _ := res[1].([]any)
	var rows []rollupRow
	for _, h := range hashes {
		flat, err := replyList(h)
		if err != nil {
			return nil, nil, err
		}
		if len(flat)%2 != 0 || len(flat) < 2 {
			return nil, nil, fmt.Errorf("%w: rollup of %d values", errReply, len(flat))
		}
		read, err := strconv.Atoi(flat[0])
		if err != nil || read < 0 || read >= len(reads) {
			return nil, nil, fmt.Errorf("%w: rollup of read %q", errReply, flat[0])
		}
		period, err := strconv.ParseInt(flat[1], 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("rollup period %q: %w", flat[1], err)
		}
		for i := 2; i < len(flat); i += 2 {
			key, acct, model, ok := parseDims(flat[i])
			if !ok {
				return nil, nil, fmt.Errorf("malformed rollup dims %q", flat[i])
			}
			c, err := unpackCounters([]byte(flat[i+1]))
			if err != nil {
				return nil, nil, err
			}
			rows = append(rows, rollupRow{read, period, key, acct, model, c})
		}
	}
	recs := make([]store.UsageRecord, 0, len(blobs))
	for _, b := range blobs {
		str, _ := b.(string)
		r, err := decodeRecord([]byte(str))
		if err != nil {
			return nil, nil, err
		}
		recs = append(recs, r)
	}
	return rows, recs, nil
}

// famDims is d as the rows of family fam name it: the account family's
// name no key, the key-totals family's the key alone, the others all
// three.
func famDims(fam string, d store.UsageRow) store.UsageRow {
	switch fam {
	case famAcct():
		d.KeyID = ""
	case famKeyTotals():
		d.AccountID, d.Model = "", ""
	}
	return d
}

// spanTotals totals f's records in each family of fams, in one round
// trip that reads a consistent snapshot: sums[i] holds fams[i]'s totals
// by the dims its rows keep (famDims). It reads as little as it can: of
// each family the daily rollups of the whole days (store zone) inside
// [From, To) and the hourly rollups of the whole UTC hours in the rest;
// and once for all families the records in the partial hours at the two
// ends, from the index of the filter, each counted into every family.
// Rows and records of other keys, accounts and models than f names are
// left out in Go, so every family must keep the dims f names: all
// records' and a key's (famKey(f.KeyID)) answer any filter, the account
// family one that names no key, the key-totals family one that names no
// account and no model. Rollups keep no status: a Status filter is
// refused.
func (s *Store) spanTotals(ctx context.Context, f store.UsageFilter, fams ...string) ([]store.UsageTotals, error) {
	if f.Status != 0 || f.Before != nil {
		return nil, fmt.Errorf("status or cursor: %w", store.ErrFilterUnsupported)
	}
	named := store.UsageRow{KeyID: f.KeyID, AccountID: f.AccountID, Model: f.Model}
	sums := make([]store.UsageTotals, len(fams))
	for i, fam := range fams {
		if famDims(fam, named) != named {
			return nil, fmt.Errorf("rollup family %q cannot answer filter %+v", fam, named)
		}
		sums[i] = store.UsageTotals{}
	}
	whole := f.Span()
	if whole.Lo >= whole.Hi {
		return sums, nil
	}
	days, hours, partial := store.PlanSummary(whole, s.loc)
	var (
		reads []usageRead
		famOf []int // the family of each rollup read, by its place in reads
	)
	for i, fam := range fams {
		for _, sp := range days {
			reads = append(reads, s.rollupRead(store.Daily, fam, sp))
			famOf = append(famOf, i)
		}
		for _, sp := range hours {
			reads = append(reads, s.rollupRead(store.Hourly, fam, sp))
			famOf = append(famOf, i)
		}
	}
	for _, sp := range partial {
		reads = append(reads, usageRead{kind: "l", set: s.usageIndex(f.KeyID, f.AccountID), sp: sp})
	}
	rows, recs, err := s.readUsage(ctx, reads)
	if err != nil {
		return nil, err
	}
	in := func(d store.UsageRow) bool {
		return (f.KeyID == "" || d.KeyID == f.KeyID) && (f.AccountID == "" || d.AccountID == f.AccountID) &&
			(f.Model == "" || d.Model == f.Model)
	}
	for _, r := range rows {
		if r.read >= len(famOf) {
			return nil, fmt.Errorf("%w: rollup rows from read %d of records", errReply, r.read)
		}
		if d := (store.UsageRow{KeyID: r.key, AccountID: r.account, Model: r.model}); in(d) {
			i := famOf[r.read]
			sums[i].Add(famDims(fams[i], d), r.Counters)
		}
	}
	for _, r := range recs {
		d := store.UsageRow{KeyID: r.KeyID, AccountID: r.AccountID, Model: r.Model}
		if !in(d) {
			continue
		}
		var c store.Counters
		c.Add(r)
		for i, fam := range fams {
			sums[i].Add(famDims(fam, d), c)
		}
	}
	return sums, nil
}

// SummarizeUsage totals records per key, per account and per model, each
// list ordered by its name, in one round trip (see spanTotals) from the
// smallest rollups that answer f:
//
//   - with a KeyID, that key's rollups, all three lists;
//   - else accounts and models from the account family, and keys from
//     the key-totals family, or, when f names an account or a model,
//     from the rollups of all records, the only ones that know a key's
//     share of one.
//
// A key's spend over a day, a week or all time so costs a few dozen
// small hashes, not one read per request, and the keys of all accounts
// and models cost the hashes of the keys that spent.
func (s *Store) SummarizeUsage(ctx context.Context, f store.UsageFilter) (store.UsageSummary, error) {
	var fams []string
	switch {
	case f.KeyID != "":
		fams = []string{famKey(f.KeyID)}
	case f.AccountID == "" && f.Model == "":
		fams = []string{famKeyTotals(), famAcct()}
	default:
		fams = []string{famAll(), famAcct()}
	}
	sums, err := s.spanTotals(ctx, f, fams...)
	if err != nil {
		return store.UsageSummary{}, fmt.Errorf("redis: summarize usage: %w", err)
	}
	who, where := sums[0], sums[len(sums)-1]
	return store.UsageSummary{
		Keys:     who.Rows(store.ByKey),
		Accounts: where.Rows(store.ByAccount),
		Models:   where.Rows(store.ByModel),
	}, nil
}

// ModelTotals is SummarizeUsage's Models alone. Without a KeyID it reads
// the account family, whose size follows accounts × models, not the
// rollups of all records, which also grow with the keys.
func (s *Store) ModelTotals(ctx context.Context, f store.UsageFilter) ([]store.UsageRow, error) {
	fam := famAcct()
	if f.KeyID != "" {
		fam = famKey(f.KeyID)
	}
	sums, err := s.spanTotals(ctx, f, fam)
	if err != nil {
		return nil, fmt.Errorf("redis: model totals: %w", err)
	}
	return sums[0].Rows(store.ByModel), nil
}

func merge[K comparable](m map[K]*store.Counters, k K, c store.Counters) {
	t := m[k]
	if t == nil {
		t = &store.Counters{}
		m[k] = t
	}
	t.Merge(c)
}

// Rollups returns rollup rows of granularity g with Period in [from, to),
// ordered by period, key, account and model, in one round trip. A zero to
// means no upper bound. Hourly periods are in UTC, daily ones in the
// store's zone.
func (s *Store) Rollups(ctx context.Context, g store.Granularity, from, to time.Time) ([]store.Rollup, error) {
	if g != store.Hourly && g != store.Daily {
		return nil, fmt.Errorf("redis: rollups: unknown granularity %q", g)
	}
	sp := store.UsageFilter{From: from, To: to}.Span()
	if sp.Lo >= sp.Hi {
		return nil, nil
	}
	rows, _, err := s.readUsage(ctx, []usageRead{s.rollupRead(g, famAll(), sp)})
	if err != nil {
		return nil, fmt.Errorf("redis: rollups: %w", err)
	}
	out := make([]store.Rollup, len(rows))
	for i, r := range rows {
		out[i] = store.Rollup{Period: s.periodTime(g, r.period), KeyID: r.key, AccountID: r.account, Model: r.model, Counters: r.Counters}
	}
	slices.SortFunc(out, func(a, b store.Rollup) int {
		return cmp.Or(a.Period.Compare(b.Period), cmp.Compare(a.KeyID, b.KeyID),
			cmp.Compare(a.AccountID, b.AccountID), cmp.Compare(a.Model, b.Model))
	})
	return out, nil
}

// Trend returns f's totals per period of g, ordered by period, in one
// round trip: the rollup rows of f's key, or of the account family, of
// the periods in [From, To), summed in Go over the accounts and models f
// leaves open. It reads no records, so a period counts whole. Hourly
// periods are in UTC, daily ones in the store's zone.
func (s *Store) Trend(ctx context.Context, g store.Granularity, f store.UsageFilter) ([]store.Rollup, error) {
	if g != store.Hourly && g != store.Daily {
		return nil, fmt.Errorf("redis: trend: unknown granularity %q", g)
	}
	if f.Status != 0 || f.Before != nil {
		return nil, fmt.Errorf("redis: trend: status or cursor: %w", store.ErrFilterUnsupported)
	}
	sp := f.Span()
	if sp.Lo >= sp.Hi {
		return nil, nil
	}
	fam := famAcct()
	if f.KeyID != "" {
		fam = famKey(f.KeyID)
	}
	rows, _, err := s.readUsage(ctx, []usageRead{s.rollupRead(g, fam, sp)})
	if err != nil {
		return nil, fmt.Errorf("redis: trend: %w", err)
	}
	byPeriod := map[int64]*store.Counters{}
	for _, r := range rows {
		if (f.AccountID != "" && r.account != f.AccountID) || (f.Model != "" && r.model != f.Model) {
			continue
		}
		merge(byPeriod, r.period, r.Counters)
	}
	out := make([]store.Rollup, 0, len(byPeriod))
	for p, c := range byPeriod {
		out = append(out, store.Rollup{Period: s.periodTime(g, p), KeyID: f.KeyID, AccountID: f.AccountID,
			Model: f.Model, Counters: *c})
	}
	slices.SortFunc(out, func(a, b store.Rollup) int { return a.Period.Compare(b.Period) })
	return out, nil
}

// periodTime is the start of a period of g: in UTC for an hour, in the
// store's zone for a day.
func (s *Store) periodTime(g store.Granularity, ms int64) time.Time {
	t := time.UnixMilli(ms).UTC()
	if g == store.Daily {
		t = t.In(s.loc)
	}
	return t
}
