package redis

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/crs-relay/crs/internal/store"
)

// Usage layout. Every usage key lives under the {u} hash tag, so the one
// script that inserts a batch changes records, indexes and rollups
// atomically, also on a cluster. With P = prefix + "{u}:":
//
//	P seq                   string: the last record sequence number
//	P id                    hash: "<attempt>:<request id>" → "1", the
//	                        identities stored, so a record is stored once
//	P rec                   hash: sequence (15 digits) → encoded record
//	P ix                    sorted sets of sequences scored by CreatedAt in
//	P ix:k:<key>            ms: all records, a key's, an account's, and a
//	P ix:a:<acct>           key's on one account, so a page under any key
//	P ix:ka:<key><acct>     and account filter reads one index
//	P r<g>|p                sorted set of the rollup periods (ms)
//	P r<g>|<period>         hash: <dims> → row, the rollups of all records
//	P r<g>:k:<key>|<period> hash: the same of one key's records
//	P r<g>:a|<period>       hash: the same of all records per account and
//	                        model, over all keys: its <dims> name no key
//	P r<g>:kt|<period>      hash: the same of all records per key, over
//	                        all accounts and models: its <dims> name the
//	                        key alone
//
// <g> is h (UTC hours) or d (days in the store's zone); <dims> is
// <key><acct><model>; a row holds the eight totals (see packCounters). A
// key's rollups, which seed its spend limits, are read without the other
// keys'; the periods to look at come from the set of all records'.
//
// The rollups of all records grow with the variety of keys × accounts ×
// models in a period, so a console page that totals all records would
// cost more the more keys spend on more accounts and models. Two families
// sum them down to what the pages ask:
//
//   - the account family answers what was spent on which account and
//     model: ModelTotals, Trend, and SummarizeUsage's accounts and models
//     when no key is named. Its size follows accounts × models.
//   - the key-totals family answers who spent: SummarizeUsage's keys when
//     no key, account or model is named (the keys page's all-time spend,
//     the dashboard's top keys of the day). Its size follows the keys.
//
// The rollups of all records remain for a key's share of one account or
// model (SummarizeUsage's keys with an AccountID or a Model, the only
// rows that know it), for Rollups, and for an account's daily quota,
// which asks once a day. The price is paid on insert: every record adds
// to eight rollup rows, its hour's and its day's in each of the four
// families, all in the insert script's one atomic step. Ids in key names
// and dims are written <length>:<id>, so no id can be mistaken for
// another whatever it holds.
//
// Layout versions ({cfg}:schema, see migrate.go): 1 had neither the
// account nor the key-totals family; 2 adds both, and Open builds them
// from the rollups of all records when it finds version 1. A version-1
// binary would not write them, so every instance of the old version must
// be stopped before the first new one starts.
//
// Records of the same millisecond are ordered by their sequence: the
// fixed-width member sorts them in insertion order, so ListUsage breaks
// ties like the embedded store (newest inserted first). The sequence is
// the record's Seq.
//
// Pages (ScanUsage, usage_scan.go) read one of these indexes from a
// cursor on, by rank: the cursor's place is found with ZCOUNT and a binary
// search among the members of its millisecond, so a deep page costs what
// the first does. Model and status have no index (each would cost every
// record another sorted-set entry, and a key and model filter would still
// walk one of them); a script reads them from the records it walks, at
// most scanCall per call.
//
// Retention (PurgeUsage) removes records older than a cutoff without a
// scan: ZRANGEBYSCORE P ix -inf (cutoff gives their sequences; their
// records name the key, account and identity to remove from the other
// indexes and from P id. Rollups are kept apart and outlive their records.
//
// Every key here is durable state: records, their indexes and rollups
// must survive a Redis restart (appendonly or snapshots), and none has a
// time to live.

// packCounters writes the eight totals of a rollup row (requests, input,
// output, cache write 5m and 1h, cache read, cost, rated cost) as they
// are stored: each as a signed 32-bit high half and an unsigned 32-bit
// low half, little-endian, 64 bytes in all. Lua adds numbers as doubles,
// exact only to 2^53, and costs in picodollars pass that; the halves stay
// exact, and the insert script carries from the low half to the high one
// (Lua's struct library reads and writes this layout).
func packCounters(c store.Counters) []byte {
	b := make([]byte, 0, rowBytes)
	for _, v := range [...]int64{c.Requests, c.Input, c.Output, c.CacheWrite5m, c.CacheWrite1h,
		c.CacheRead, c.CostPico, c.RatedPico} {
		b = binary.LittleEndian.AppendUint32(b, uint32(v>>32))
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	return b
}

// rowBytes is the size of a packed row; rowFormat its struct layout.
const (
	rowBytes  = 64
	rowFormat = "<i4I4i4I4i4I4i4I4i4I4i4I4i4I4i4I4"
)

// unpackCounters reads a row written by packCounters or the insert script.
func unpackCounters(b []byte) (store.Counters, error) {
	if len(b) != rowBytes {
		return store.Counters{}, fmt.Errorf("rollup row of %d bytes, want %d", len(b), rowBytes)
	}
	var v [8]int64
	for i := range v {
		hi := int64(int32(binary.LittleEndian.Uint32(b[8*i:])))
		v[i] = hi<<32 | int64(binary.LittleEndian.Uint32(b[8*i+4:]))
	}
	return store.Counters{Requests: v[0], Input: v[1], Output: v[2], CacheWrite5m: v[3],
		CacheWrite1h: v[4], CacheRead: v[5], CostPico: v[6], RatedPico: v[7]}, nil
}

// encID writes an id as <length>:<id>.
func encID(id string) string { return strconv.Itoa(len(id)) + ":" + id }

// cutID reads an id written by encID from the start of s and returns it
// and the rest.
func cutID(s string) (id, rest string, ok bool) {
	n, after, found := strings.Cut(s, ":")
	if !found {
		return "", "", false
	}
	l, err := strconv.Atoi(n)
	if err != nil || l < 0 || l > len(after) {
		return "", "", false
	}
	return after[:l], after[l:], true
}

// dimsOf names a rollup row: key, account and model.
func dimsOf(key store.KeyID, acct store.AccountID, model string) string {
	return encID(string(key)) + encID(string(acct)) + model
}

func parseDims(s string) (store.KeyID, store.AccountID, string, bool) {
	key, rest, ok := cutID(s)
	if !ok {
		return "", "", "", false
	}
	acct, model, ok := cutID(rest)
	if !ok {
		return "", "", "", false
	}
	return store.KeyID(key), store.AccountID(acct), model, true
}

// usageIndex names the index that holds exactly the records of key and
// acct (either may be empty: any).
func (s *Store) usageIndex(key store.KeyID, acct store.AccountID) string {
	switch {
	case key != "" && acct != "":
		return s.usageKey("ix:ka:" + encID(string(key)) + encID(string(acct)))
	case key != "":
		return s.usageKey("ix:k:" + encID(string(key)))
	case acct != "":
		return s.usageKey("ix:a:" + encID(string(acct)))
	}
	return s.usageKey("ix")
}

// Rollup families: all records, one key's, all records per account and
// model (whose dims name no key), and all records per key (whose dims
// name no account and no model).
func famAll() string              { return "" }
func famKey(k store.KeyID) string { return ":k:" + encID(string(k)) }
func famAcct() string             { return ":a" }
func famKeyTotals() string        { return ":kt" }

func granLetter(g store.Granularity) string {
	if g == store.Daily {
		return "d"
	}
	return "h"
}

// rollupPeriods names the sorted set of the periods of g, shared by every
// family: a family's hash of a period may be missing (no records).
func (s *Store) rollupPeriods(g store.Granularity) string {
	return s.usageKey("r" + granLetter(g) + "|p")
}

// rollupBase is the name of a family's rollup hashes without the period.
func (s *Store) rollupBase(g store.Granularity, fam string) string {
	return s.usageKey("r" + granLetter(g) + fam + "|")
}

// insertStride is how many ARGV values describe one record in
// insertUsageScript.
const insertStride = 19

// insertUsageScript stores a batch without duplicate identities. KEYS[1]
// is P seq, KEYS[2] P id, KEYS[3] P rec; the rest are the indexes, period
// sets and rollup hashes that ARGV names by position. ARGV[1] and ARGV[2]
// are the counts of records and of period-set entries; then per record:
//
//	1 identity  2 encoded record  3 CreatedAt ms  4 dims
//	5 dims in the account family (no key)
//	6 dims in the key-totals family (the key alone)
//	7..10 index positions (all, key, account, key and account)
//	11..18 rollup hash positions, hourly then daily: of all records, of
//	      the record's key (both named by 4), of the account family (5),
//	      of the key-totals family (6)
//	19 the record's counters as a row (packCounters)
//
// then (period set position, period) pairs.
//
// The script reads everything first: which identities are stored (one
// HMGET), then, per rollup hash, the rows the new records add to (one
// HMGET), summing in the struct halves. Only when every total fits does
// it write, so a failure leaves nothing half done. It then claims the
// identities, stores the records, indexes them (one ZADD per index), and
// writes each hash's rows with one HSET: Redis works per rollup row, not
// per record and counter. It returns how many records were new.
var insertUsageScript = goredis.NewScript(`
local FMT = '` + rowFormat + `'
local TWO32 = 4294967296
local n, nPeriods = tonumber(ARGV[1]), tonumber(ARGV[2])
local stride = ` + strconv.Itoa(insertStride) + `
-- The rollup hashes of a record, each as the offsets of its position and
-- of the dims that name the record's row in it.
local ROLLUPS = {{11, 4}, {12, 4}, {13, 4}, {14, 4}, {15, 5}, {16, 5}, {17, 6}, {18, 6}}
-- call runs cmd on key with args in slices: unpack has a stack limit.
local function call(cmd, key, args, size)
	local out = {}
	for i = 1, #args, size do
		local got = redis.call(cmd, key, unpack(args, i, math.min(i + size - 1, #args)))
		if type(got) == 'table' then
			for j = 1, #got do
				out[i + j - 1] = got[j]
			end
		end
	end
	return out
end

-- Which records are new.
local ids = {}
for r = 1, n do
	ids[r] = ARGV[2 + (r - 1) * stride + 1]
end
local stored = call('HMGET', KEYS[2], ids, 1000)
local fresh = {}
for r = 1, n do
	if not stored[r] then
		fresh[#fresh + 1] = 2 + (r - 1) * stride
	end
end
if #fresh == 0 then
	return 0
end

-- Sum the new records into their rollup rows, per hash.
local hashes, rows, order = {}, {}, {}
for _, a in ipairs(fresh) do
	local inc = {struct.unpack(FMT, ARGV[a + 19])}
	for _, r in ipairs(ROLLUPS) do
		local hash = KEYS[tonumber(ARGV[a + r[1]])]
		local dims = ARGV[a + r[2]]
		local byDims = rows[hash]
		if not byDims then
			byDims = {}
			rows[hash] = byDims
			order[hash] = {}
			hashes[#hashes + 1] = hash
		end
		local v = byDims[dims]
		if not v then
			v = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
			byDims[dims] = v
			table.insert(order[hash], dims)
		end
		for i = 1, 16 do
			v[i] = v[i] + inc[i]
		end
	end
end

-- Add the stored totals, carry, and check that every total fits.
local writes = {}
for _, hash in ipairs(hashes) do
	local byDims = rows[hash]
	local old = call('HMGET', hash, order[hash], 1000)
	local args = {}
	for j, dims in ipairs(order[hash]) do
		local v = byDims[dims]
		if old[j] then
			local o = {struct.unpack(FMT, old[j])}
			for i = 1, 16 do
				v[i] = v[i] + o[i]
			end
		end
		for i = 1, 15, 2 do
			local carry = math.floor(v[i + 1] / TWO32)
			v[i + 1] = v[i + 1] - carry * TWO32
			v[i] = v[i] + carry
			if v[i] < -2147483648 or v[i] > 2147483647 then
				return redis.error_reply('usage rollup total out of int64 range')
			end
		end
		args[#args + 1] = dims
		args[#args + 1] = struct.pack(FMT, unpack(v))
	end
	writes[#writes + 1] = {hash, args}
end

-- Write.
local claims, recs, ix, ixOrder = {}, {}, {}, {}
local first = redis.call('INCRBY', KEYS[1], #fresh) - #fresh
for i, a in ipairs(fresh) do
	local seq = string.format('%015d', first + i)
	claims[#claims + 1] = ARGV[a + 1]
	claims[#claims + 1] = '1'
	recs[#recs + 1] = seq
	recs[#recs + 1] = ARGV[a + 2]
	for j = 7, 10 do
		local k = KEYS[tonumber(ARGV[a + j])]
		local t = ix[k]
		if not t then
			t = {}
			ix[k] = t
			ixOrder[#ixOrder + 1] = k
		end
		t[#t + 1] = ARGV[a + 3]
		t[#t + 1] = seq
	end
end
call('HSET', KEYS[2], claims, 2000)
call('HSET', KEYS[3], recs, 2000)
for _, k in ipairs(ixOrder) do
	call('ZADD', k, ix[k], 2000)
end
local p = 2 + n * stride
for i = 0, nPeriods - 1 do
	local period = ARGV[p + 2 * i + 2]
	redis.call('ZADD', KEYS[tonumber(ARGV[p + 2 * i + 1])], period, period)
end
for _, w in ipairs(writes) do
	call('HSET', w[1], w[2], 2000)
end
return #fresh
`)

// InsertUsage stores recs with one script call, so the batch is atomic:
// each record whose (RequestID, Attempt) is not stored yet, here or by
// another instance, is stored, indexed and added to its hourly (UTC) and
// daily (store zone) rollups of all records, of its key, of its account
// and model, and of its key over all accounts and models. Of records
// repeated within recs the first is kept.
// It returns how many were new.
func (s *Store) InsertUsage(ctx context.Context, recs []store.UsageRecord) (int, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	keys := []string{s.usageKey("seq"), s.usageKey("id"), s.usageKey("rec")}
	pos := make(map[string]int, 16)
	at := func(k string) int {
		if p, ok := pos[k]; ok {
			return p
		}
		keys = append(keys, k)
		pos[k] = len(keys)
		return len(keys)
	}
	type periodEntry struct{ set, period int64 }
	var (
		idents  = make(map[string]bool, len(recs))
		periods = make(map[periodEntry]bool, 4)
		pOrder  []periodEntry
		args    = make([]any, 2, 2+len(recs)*insertStride+4)
		n       int
	)
	for _, r := range recs {
		ident := strconv.Itoa(r.Attempt) + ":" + r.RequestID
		if idents[ident] {
			continue
		}
		idents[ident] = true
		n++
		ms := r.CreatedAt.UnixMilli()
		hour, day := store.FloorHour(ms), store.FloorDay(ms, s.loc)
		args = append(args, ident, encodeRecord(r), r.CreatedAt.UnixMilli(),
			dimsOf(r.KeyID, r.AccountID, r.Model), dimsOf("", r.AccountID, r.Model), dimsOf(r.KeyID, "", ""),
			at(s.usageIndex("", "")), at(s.usageIndex(r.KeyID, "")),
			at(s.usageIndex("", r.AccountID)), at(s.usageIndex(r.KeyID, r.AccountID)))
		for _, fam := range [...]string{famAll(), famKey(r.KeyID), famAcct(), famKeyTotals()} {
			args = append(args,
				at(s.rollupBase(store.Hourly, fam)+strconv.FormatInt(hour, 10)),
				at(s.rollupBase(store.Daily, fam)+strconv.FormatInt(day, 10)))
		}
		var c store.Counters
		c.Add(r)
		args = append(args, packCounters(c))
		for _, pe := range [...]periodEntry{
			{int64(at(s.rollupPeriods(store.Hourly))), hour},
			{int64(at(s.rollupPeriods(store.Daily))), day},
		} {
			if !periods[pe] {
				periods[pe] = true
				pOrder = append(pOrder, pe)
			}
		}
	}
	args[0], args[1] = n, len(pOrder)
	for _, pe := range pOrder {
		args = append(args, pe.set, pe.period)
	}
	added, err := insertUsageScript.Run(ctx, s.rdb, keys, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("redis: insert usage: %w", err)
	}
	return added, nil
}

// zmin and zmax are sp's bounds for ZRANGEBYSCORE.
func zmin(sp store.Span) string {
	if sp.Lo == store.OpenStart {
		return "-inf"
	}
	return strconv.FormatInt(sp.Lo, 10)
}

func zmax(sp store.Span) string {
	if sp.Hi == store.OpenEnd {
		return "+inf"
	}
	return "(" + strconv.FormatInt(sp.Hi, 10)
}

// recordVersion leads an encoded record, so a later layout can read old
// ones.
const recordVersion = 1

// encodeRecord writes r compactly: a version byte, then varints and
// length-prefixed strings. CreatedAt keeps milliseconds, like the
// embedded store.
func encodeRecord(r store.UsageRecord) []byte {
	b := make([]byte, 0, 64+len(r.RequestID)+len(r.KeyID)+len(r.AccountID)+len(r.Model))
	b = append(b, recordVersion)
	for _, s := range [...]string{r.RequestID, string(r.KeyID), string(r.AccountID), r.Model} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	var flags uint64
	if r.Stream {
		flags |= 1
	}
	if r.ClientAborted {
		flags |= 2
	}
	b = binary.AppendUvarint(b, flags)
	for _, v := range [...]int64{int64(r.Attempt), r.Input, r.Output, r.CacheWrite5m, r.CacheWrite1h,
		r.CacheRead, r.CostPico, r.RatedCostPico, int64(r.Status), r.LatencyMs, r.FirstByteMs,
		r.CreatedAt.UnixMilli()} {
		b = binary.AppendVarint(b, v)
	}
	return b
}

// errBadRecord reports a stored record this binary cannot read.
var errBadRecord = errors.New("malformed usage record")

// decodeRecord reads a record written by encodeRecord.
func decodeRecord(b []byte) (store.UsageRecord, error) {
	var r store.UsageRecord
	if len(b) == 0 || b[0] != recordVersion {
		return r, errBadRecord
	}
	b = b[1:]
	var strs [4]string
	for i := range strs {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return r, errBadRecord
		}
		strs[i] = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	flags, k := binary.Uvarint(b)
	if k <= 0 {
		return r, errBadRecord
	}
	b = b[k:]
	var nums [12]int64
	for i := range nums {
		v, k := binary.Varint(b)
		if k <= 0 {
			return r, errBadRecord
		}
		nums[i] = v
		b = b[k:]
	}
	if len(b) != 0 {
		return r, errBadRecord
	}
	r = store.UsageRecord{
		RequestID: strs[0], KeyID: store.KeyID(strs[1]), AccountID: store.AccountID(strs[2]), Model: strs[3],
		Attempt: int(nums[0]), Input: nums[1], Output: nums[2], CacheWrite5m: nums[3], CacheWrite1h: nums[4],
		CacheRead: nums[5], CostPico: nums[6], RatedCostPico: nums[7], Status: int(nums[8]),
		LatencyMs: nums[9], FirstByteMs: nums[10], CreatedAt: time.UnixMilli(nums[11]).UTC(),
		Stream: flags&1 != 0, ClientAborted: flags&2 != 0,
	}
	return r, nil
}
