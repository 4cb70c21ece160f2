package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/crs-relay/crs/internal/store"
)

// luaRecord reads an encoded record (encodeRecord) in Lua: a version
// byte, four strings (a uvarint length, then the bytes: request id, key,
// account, model), a uvarint of flags, then twelve zigzag varints
// (attempt, the eight figures, status, latency, first byte, time). Lua
// numbers are doubles: a varint past 2^53 reads inexactly, but only the
// attempt and the status are read as numbers; the rest are skipped, with
// string.find, which runs in C, to each varint's last byte.
var luaRecord = `
local function uvarint(b, pos)
	local v, mul = 0, 1
	while true do
		local c = string.byte(b, pos)
		if not c then
			return nil, nil
		end
		pos = pos + 1
		if c < 128 then
			return v + c * mul, pos
		end
		v = v + (c - 128) * mul
		mul = mul * 128
	end
end

-- skipVarints returns the position after the n varints at pos, or nil.
local function skipVarints(b, pos, n)
	for _ = 1, n do
		local last = string.find(b, '[%z\1-\127]', pos)
		if not last then
			return nil
		end
		pos = last + 1
	end
	return pos
end

-- recordString returns the start and length of the i-th string of record
-- b (1 request id, 2 key, 3 account, 4 model) and the position after it,
-- or nil for a record this script cannot read.
local function recordString(b, i)
	if string.byte(b, 1) ~= ` + strconv.Itoa(recordVersion) + ` then
		return nil
	end
	local pos, n = 2, 0
	for _ = 1, i do
		pos = pos + n
		n, pos = uvarint(b, pos)
		if not n or pos + n - 1 > #b then
			return nil
		end
	end
	return pos, n, pos + n
end

-- recordStrings returns the four strings of record b and the position
-- after them, or nil.
local function recordStrings(b)
	local out = {}
	local pos, n, after
	for i = 1, 4 do
		pos, n, after = recordString(b, i)
		if not pos then
			return nil
		end
		out[i] = string.sub(b, pos, pos + n - 1)
	end
	return out, after
end

-- recordNumber returns the i-th of the twelve numbers of record b, whose
-- flags start at pos: 1 is the attempt, 9 the status.
local function recordNumber(b, pos, i)
	pos = skipVarints(b, pos, i)
	local u = pos and uvarint(b, pos)
	if not u then
		return nil
	end
	if u % 2 == 0 then
		return u / 2
	end
	return -(u + 1) / 2
end
`

// scanChunk bounds the entries one ZREVRANGE and HMGET of scanUsageScript
// read: Lua's unpack has a stack limit.
const scanChunk = 250

// scanCall bounds the index entries one scanUsageScript call looks at, so
// a call blocks Redis for a few milliseconds at most (reading a record's
// model and status costs about 2 µs); ScanUsage makes more calls for a
// larger budget.
const scanCall = 1000

// scanUsageScript walks the record index KEYS[1] (record hash KEYS[2])
// newest first. ARGV:
//
//	1, 2  the upper bound: records with a score below ARGV[1] ("+inf":
//	      none), or of that score with a member below ARGV[2] ("" none)
//	3     the lower bound, inclusive ("-inf": none)
//	4, 5  limit and scan: at most limit matches among at most scan entries
//	6, 7  model ("" any) and status (0 any) a match must have
//
// The walk goes by reverse rank. The first is found without walking:
// ZCOUNT counts the entries above the bound's millisecond, and a binary
// search by rank finds the bound among the members of that millisecond
// (sorted, being fixed-width); the last is what ZCOUNT counts from the
// lower bound up. It returns {matches as sequence, record pairs, the
// score and sequence of the last entry looked at (or empty), how many it
// looked at, why it stopped}: 0 the scan budget ran out, 1 a match past
// the limit was seen (and not taken), 2 the range ended.
var scanUsageScript = goredis.NewScript(luaRecord + `
local idx, recs = KEYS[1], KEYS[2]
local upMs, upSeq, loMs = ARGV[1], ARGV[2], ARGV[3]
local limit, scan = tonumber(ARGV[4]), tonumber(ARGV[5])
local model, status = ARGV[6], tonumber(ARGV[7])
local filtered = model ~= '' or status ~= 0

local rank = 0
if upMs ~= '+inf' and upSeq == '' then
	rank = redis.call('ZCOUNT', idx, upMs, '+inf')
elseif upMs ~= '+inf' then
	rank = redis.call('ZCOUNT', idx, '(' .. upMs, '+inf')
	local hi = rank + redis.call('ZCOUNT', idx, upMs, upMs)
	while rank < hi do
		local mid = math.floor((rank + hi) / 2)
		if redis.call('ZREVRANGE', idx, mid, mid)[1] < upSeq then
			hi = mid
		else
			rank = mid + 1
		end
	end
end
local stop = redis.call('ZCOUNT', idx, loMs, '+inf')

local function matches(b)
	if not filtered then
		return true
	end
	local pos, n, after = recordString(b, 4)
	if not pos then
		return false
	end
	if model ~= '' and (n ~= #model or string.sub(b, pos, after - 1) ~= model) then
		return false
	end
	return status == 0 or recordNumber(b, after, 9) == status
end

local out, examined, matched = {}, 0, 0
local lastSeq
local why = 0
while examined < scan do
	if rank >= stop then
		why = 2
		break
	end
	local want = math.min(scan - examined, stop - rank, ` + strconv.Itoa(scanChunk) + `)
	if not filtered then
		want = math.min(want, limit + 1 - matched)
	end
	local seqs = redis.call('ZREVRANGE', idx, rank, rank + want - 1)
	if #seqs == 0 then
		why = 2
		break
	end
	local blobs = redis.call('HMGET', recs, unpack(seqs))
	for i = 1, #seqs do
		local b = blobs[i]
		local hit = b and matches(b)
		if hit and matched == limit then
			why = 1
			break
		end
		examined = examined + 1
		lastSeq = seqs[i]
		if hit then
			matched = matched + 1
			out[#out + 1] = seqs[i]
			out[#out + 1] = b
		end
	end
	if why ~= 0 then
		break
	end
	rank = rank + #seqs
end
if why == 0 and rank >= stop then
	why = 2
end
local last = {}
if lastSeq then
	last = {redis.call('ZSCORE', idx, lastSeq), lastSeq}
end
return {out, last, examined, why}
`)

// Why a scanUsageScript call stopped.
const (
	scanBudget = 0 // it looked at as many entries as it was allowed
	scanMore   = 1 // it found a match past its limit
	scanEnded  = 2 // the range has no more entries
)

// maxSeq is the largest sequence the 15-digit members can hold.
const maxSeq = 999_999_999_999_999

// ScanUsage returns at most limit records in f, newest first, looking at
// no more than scan entries of the index of f's key and account, from
// f's cursor or To down to its From. Without Model and Status that is one
// round trip. With them, the script reads each record's model and status
// and looks at no more than scanCall entries per call, so the default
// budget takes a few calls of a few milliseconds each, between which
// Redis serves everyone else.
func (s *Store) ScanUsage(ctx context.Context, f store.UsageFilter, limit, scan int) (store.UsagePage, error) {
	if limit <= 0 {
		return store.UsagePage{}, fmt.Errorf("redis: scan usage: limit %d, want > 0", limit)
	}
	if scan <= 0 {
		scan = store.DefaultUsageScan
	}
	page, err := s.scanUsage(ctx, f, limit, max(scan, limit))
	if err != nil {
		return store.UsagePage{}, fmt.Errorf("redis: scan usage: %w", err)
	}
	return page, nil
}

// ListUsage returns the records in f, newest first, at most limit
// (limit <= 0: all). A filter without Model and Status costs one round
// trip per 1000 records; with them it walks in calls of ScanUsage, each
// a few short scripts, until the page is full or the range ends. A list
// of several calls is not one snapshot: records inserted meanwhile may be
// left out.
func (s *Store) ListUsage(ctx context.Context, f store.UsageFilter, limit int) ([]store.UsageRecord, error) {
	const chunk = 1000
	var out []store.UsageRecord
	for {
		want := chunk
		if limit > 0 {
			want = min(limit-len(out), chunk)
		}
		page, err := s.scanUsage(ctx, f, want, max(store.DefaultUsageScan, want+1))
		if err != nil {
			return nil, fmt.Errorf("redis: list usage: %w", err)
		}
		out = append(out, page.Records...)
		if page.Next == nil || (limit > 0 && len(out) >= limit) {
			return out, nil
		}
		if f.Before != nil && *page.Next == *f.Before {
			return nil, fmt.Errorf("redis: list usage: no progress from %+v", *f.Before) // a damaged index
		}
		f.Before = page.Next
	}
}

// scanUsage looks at up to scan entries of f's index for up to limit
// matches, in script calls of at most scanCall entries when f filters on
// what the index does not hold; each call continues from the last entry
// the one before looked at.
func (s *Store) scanUsage(ctx context.Context, f store.UsageFilter, limit, scan int) (store.UsagePage, error) {
	var page store.UsagePage
	filtered := f.Model != "" || f.Status != 0
	for {
		call := scan
		if filtered {
			call = min(scan, scanCall)
		}
		recs, last, examined, why, err := s.scanUsageCall(ctx, f, limit-len(page.Records), call)
		if err != nil {
			return store.UsagePage{}, err
		}
		page.Records = append(page.Records, recs...)
		scan -= examined
		if why == scanEnded {
			page.Next = nil
			return page, nil
		}
		if last == nil { // looked at nothing, yet did not end: only a bad budget
			return store.UsagePage{}, fmt.Errorf("%w: scan stopped without a position", errReply)
		}
		page.Next = last
		if why == scanMore || scan <= 0 || len(page.Records) >= limit {
			return page, nil
		}
		f.Before = last
	}
}

// scanUsageCall runs scanUsageScript once for f.
func (s *Store) scanUsageCall(ctx context.Context, f store.UsageFilter, limit, scan int) (
	recs []store.UsageRecord, last *store.UsageCursor, examined, why int, err error) {
	upMs, upSeq := "+inf", ""
	if !f.To.IsZero() {
		upMs = strconv.FormatInt(f.To.UnixMilli(), 10)
	}
	if c := f.Before; c != nil && (f.To.IsZero() || c.CreatedAt.UnixMilli() < f.To.UnixMilli()) {
		at := c.CreatedAt.UnixMilli()
		switch {
		case c.Seq > maxSeq: // every member of its millisecond is below
			upMs = strconv.FormatInt(at+1, 10)
		case c.Seq <= 0: // none is
			upMs = strconv.FormatInt(at, 10)
		default:
			upMs, upSeq = strconv.FormatInt(at, 10), fmt.Sprintf("%015d", c.Seq)
		}
	}
	loMs := "-inf"
	if !f.From.IsZero() {
		loMs = strconv.FormatInt(f.From.UnixMilli(), 10)
	}
	res, err := scanUsageScript.Run(ctx, s.rdb, []string{s.usageIndex(f.KeyID, f.AccountID), s.usageKey("rec")},
		upMs, upSeq, loMs, limit, scan, f.Model, f.Status).Slice()
	if err != nil {
		return nil, nil, 0, 0, err
	}
	if len(res) != 4 {
		return nil, nil, 0, 0, fmt.Errorf("%w: %d values, want 4", errReply, len(res))
	}
	flat, err := replyList(res[0])
	if err != nil {
		return nil, nil, 0, 0, err
	}
	pos, err := replyList(res[1])
	if err != nil {
		return nil, nil, 0, 0, err
	}
	n, ok1 := res[2].(int64)
	w, ok2 := res[3].(int64)
	if !ok1 || !ok2 {
		return nil, nil, 0, 0, fmt.Errorf("%w: counts %T %T", errReply, res[2], res[3])
	}
	for i := 0; i+1 < len(flat); i += 2 {
		r, err := decodeRecord([]byte(flat[i+1]))
		if err != nil {
			return nil, nil, 0, 0, err
		}
		if r.Seq, err = strconv.ParseInt(flat[i], 10, 64); err != nil {
			return nil, nil, 0, 0, fmt.Errorf("record sequence %q: %w", flat[i], err)
		}
		recs = append(recs, r)
	}
	if len(pos) == 2 {
		score, err := strconv.ParseFloat(pos[0], 64)
		if err != nil {
			return nil, nil, 0, 0, fmt.Errorf("record score %q: %w", pos[0], err)
		}
		seq, err := strconv.ParseInt(pos[1], 10, 64)
		if err != nil {
			return nil, nil, 0, 0, fmt.Errorf("record sequence %q: %w", pos[1], err)
		}
		last = &store.UsageCursor{CreatedAt: time.UnixMilli(int64(score)).UTC(), Seq: seq}
	}
	return recs, last, int(n), int(w), nil
}

// purgeBatch is how many records one purgeUsageScript call removes:
// about 4 ms of Redis time with a million records stored (each record
// leaves four sorted sets and two hashes).
const purgeBatch = 250

// purgeUsageScript removes up to ARGV[2] records with a time below ARGV[1]
// ms, the oldest first: from the overall index KEYS[1], the record hash
// KEYS[2], the identities KEYS[3], and the key's, account's and key and
// account's indexes, whose names it builds from the record like
// usageIndex does under the prefix ARGV[3] (the same {u} slot). A record
// it cannot read leaves its entries in those three indexes, where pages
// skip them. It returns how many it removed.
var purgeUsageScript = goredis.NewScript(luaRecord + `
local seqs = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #seqs == 0 then
	return 0
end
local P = ARGV[3]
local function enc(id)
	return #id .. ':' .. id
end
local function index(key, acct)
	if key ~= '' and acct ~= '' then
		return P .. 'ix:ka:' .. enc(key) .. enc(acct)
	elseif key ~= '' then
		return P .. 'ix:k:' .. enc(key)
	elseif acct ~= '' then
		return P .. 'ix:a:' .. enc(acct)
	end
	return KEYS[1]
end
local blobs = redis.call('HMGET', KEYS[2], unpack(seqs))
local idents, members, order = {}, {}, {}
for i, seq in ipairs(seqs) do
	local b = blobs[i]
	local strs, pos
	if b then
		strs, pos = recordStrings(b)
	end
	local attempt = strs and recordNumber(b, pos, 1)
	if attempt then
		idents[#idents + 1] = string.format('%d', attempt) .. ':' .. strs[1]
		for _, k in ipairs({index(strs[2], ''), index('', strs[3]), index(strs[2], strs[3])}) do
			if k ~= KEYS[1] then
				local m = members[k]
				if not m then
					m = {}
					members[k] = m
					order[#order + 1] = k
				end
				m[#m + 1] = seq
			end
		end
	end
end
redis.call('ZREM', KEYS[1], unpack(seqs))
redis.call('HDEL', KEYS[2], unpack(seqs))
if #idents > 0 then
	redis.call('HDEL', KEYS[3], unpack(idents))
end
for _, k in ipairs(order) do
	redis.call('ZREM', k, unpack(members[k]))
end
return #seqs
`)

// PurgeUsage removes the records created before before, oldest first, in
// script calls of purgeBatch records, and returns how many it removed.
// Rollups stay.
func (s *Store) PurgeUsage(ctx context.Context, before time.Time) (int, error) {
	keys := []string{s.usageKey("ix"), s.usageKey("rec"), s.usageKey("id")}
	total := 0
	for {
		n, err := purgeUsageScript.Run(ctx, s.rdb, keys, before.UnixMilli(), purgeBatch, s.usageKey("")).Int()
		if err != nil {
			return total, fmt.Errorf("redis: purge usage: %w", err)
		}
		total += n
		if n < purgeBatch {
			return total, nil
		}
	}
}
