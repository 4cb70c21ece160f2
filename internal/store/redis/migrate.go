package redis

import (
	"context"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/crs-relay/crs/internal/store"
)

// Layout versions. {cfg}:schema holds the version of the layout the data
// under a prefix is written in:
//
//	1  the first layout
//	2  adds the account and key-totals families of rollups (usage.go),
//	   built from the rollups of all records
//
// Open writes schemaVersion on a new deployment, refuses a newer version,
// and brings an older one up to date before it returns. Each step may run
// in several instances at once and again after one died midway, so it must
// give the same result however often it runs; the version is raised only
// once the step is done. Every instance of the older binary must be
// stopped before the first newer one starts: it would go on writing the
// old layout (a version-1 instance does not add its records to the
// account and key-totals families), and nothing repairs that later.

// migrate records the layout version on a new deployment, refuses one
// written by a newer binary, and migrates an older one.
func (s *Store) migrate(ctx context.Context) error {
	key := s.cfgKey("schema")
	set, err := s.rdb.SetNX(ctx, key, schemaVersion, 0).Result()
	if err != nil {
		return fmt.Errorf("redis: schema version: %w", err)
	}
	if set {
		return nil
	}
	v, err := s.rdb.Get(ctx, key).Int()
	if err != nil {
		return fmt.Errorf("redis: schema version: %w", err)
	}
	if v > schemaVersion {
		return fmt.Errorf("redis: the data under prefix %q has layout version %d; this crs knows up to %d — upgrade crs", s.prefix, v, schemaVersion)
	}
	if v == schemaVersion {
		return nil
	}
	if v < 2 {
		if err := s.buildDerivedRollups(ctx); err != nil {
			return fmt.Errorf("redis: migrate to layout 2: %w", err)
		}
	}
	if err := raiseSchemaScript.Run(ctx, s.rdb, []string{key}, schemaVersion).Err(); err != nil {
		return fmt.Errorf("redis: schema version: %w", err)
	}
	return nil
}

// raiseSchemaScript sets the layout version KEYS[1] to ARGV[1] unless it
// is higher already: a newer binary that migrated meanwhile keeps its
// version.
var raiseSchemaScript = goredis.NewScript(`
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
if v < tonumber(ARGV[1]) then
	redis.call('SET', KEYS[1], ARGV[1])
end
return 0
`)

// rebuildBatch is how many periods' rebuilds buildDerivedRollups sends in
// one pipeline: a year of hours is then about ninety round trips, and no
// reply list grows large.
const rebuildBatch = 100

// buildDerivedRollups (layout 2) builds the account and key-totals
// families of every period, hourly and daily, from the rollups of all
// records: one rebuildDerivedRollupsScript call per period, pipelined.
// Open waits for it. Its cost is that of reading every row of all
// records once and adding it to two families: about 2.4 µs a row and
// 25 µs a period on two cores (BenchmarkMigrateDerivedRollups; the
// account family alone took 1.6 µs a row), so a year of hours and days of
// 40 rows each takes about a second, of 400 rows nine; each call holds
// Redis for one period's rows only.
func (s *Store) buildDerivedRollups(ctx context.Context) error {
	for _, g := range [...]store.Granularity{store.Hourly, store.Daily} {
		periods, err := s.rdb.ZRange(ctx, s.rollupPeriods(g), 0, -1).Result()
		if err != nil {
			return err
		}
		all, acct, kt := s.rollupBase(g, famAll()), s.rollupBase(g, famAcct()), s.rollupBase(g, famKeyTotals())
		for i := 0; i < len(periods); i += rebuildBatch {
			pipe := s.rdb.Pipeline()
			for _, p := range periods[i:min(i+rebuildBatch, len(periods))] {
				// EVALSHA: Open has loaded the script, and a pipeline
				// could not fall back to EVAL.
				rebuildDerivedRollupsScript.EvalSha(ctx, pipe, []string{all + p, acct + p, kt + p})
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return fmt.Errorf("%s rollups per account and per key: %w", g, err)
			}
		}
	}
	return nil
}

// rebuildDerivedRollupsScript replaces the hashes of one period of the
// account family, KEYS[2], and of the key-totals family, KEYS[3], with
// the sums of the rows of all records of that period, KEYS[1]: over keys
// per account and model, and over accounts and models per key. It writes
// what the insert script would have written had the families always
// existed, and as one atomic step it stays exact while other instances
// insert (each adds to all three hashes at once) or rebuild the same
// period. It checks every total before it writes either hash, and
// returns how many rows it wrote.
//
// Rows are summed in the struct halves, as the insert script does, but
// carried only at the end: a half is below 2^32 in magnitude, so doubles
// add 2^20 of them exactly, and the sums are carried every 2^20 rows. The
// migration reads every row of all records, so this loop is its cost:
// unpacking into locals, not a table, rows found by the part of the dims
// they keep, cut out and not built, and one carry per row of the
// families, not per row read, keep it small.
var rebuildDerivedRollupsScript = goredis.NewScript(`
local FMT = '` + rowFormat + `'
local TWO32 = 4294967296
local find, sub, unpackRow = string.find, string.sub, struct.unpack
local flat = redis.call('HGETALL', KEYS[1])
-- Per account and model (<len>:<acct><model>, the account family's dims
-- without their empty key) and per key (<len>:<key>, the key-totals
-- family's dims without their empty account), the sixteen halves, and
-- the order in which they came.
local byAcct, acctOrder, byKey, keyOrder = {}, {}, {}, {}
local function carry(rows)
	for _, v in pairs(rows) do
		for j = 1, 15, 2 do
			local c = math.floor(v[j + 1] / TWO32)
			v[j + 1] = v[j + 1] - c * TWO32
			v[j] = v[j] + c
		end
	end
end
for i = 1, #flat, 2 do
	-- dims are <len>:<key><len>:<acct><model>.
	local dims = flat[i]
	local colon = find(dims, ':', 1, true)
	local len = colon and tonumber(sub(dims, 1, colon - 1))
	if not len or colon + len > #dims then
		return redis.error_reply('malformed rollup dims ' .. dims)
	end
	local acct, key = sub(dims, colon + len + 1), sub(dims, 1, colon + len)
	local v, w = byAcct[acct], byKey[key]
	if not v then
		v = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		byAcct[acct] = v
		acctOrder[#acctOrder + 1] = acct
	end
	if not w then
		w = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		byKey[key] = w
		keyOrder[#keyOrder + 1] = key
	end
	local a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16 = unpackRow(FMT, flat[i + 1])
	v[1], v[2], v[3], v[4] = v[1] + a1, v[2] + a2, v[3] + a3, v[4] + a4
	v[5], v[6], v[7], v[8] = v[5] + a5, v[6] + a6, v[7] + a7, v[8] + a8
	v[9], v[10], v[11], v[12] = v[9] + a9, v[10] + a10, v[11] + a11, v[12] + a12
	v[13], v[14], v[15], v[16] = v[13] + a13, v[14] + a14, v[15] + a15, v[16] + a16
	w[1], w[2], w[3], w[4] = w[1] + a1, w[2] + a2, w[3] + a3, w[4] + a4
	w[5], w[6], w[7], w[8] = w[5] + a5, w[6] + a6, w[7] + a7, w[8] + a8
	w[9], w[10], w[11], w[12] = w[9] + a9, w[10] + a10, w[11] + a11, w[12] + a12
	w[13], w[14], w[15], w[16] = w[13] + a13, w[14] + a14, w[15] + a15, w[16] + a16
	if i % 2097152 == 1 then -- every 2^20 rows
		carry(byAcct)
		carry(byKey)
	end
end
carry(byAcct)
carry(byKey)
-- The HSET arguments of a family: dims are head .. part .. tail.
local function fields(rows, order, head, tail)
	local args = {}
	for _, part in ipairs(order) do
		local v = rows[part]
		for j = 1, 15, 2 do
			if v[j] < -2147483648 or v[j] > 2147483647 then
				return nil
			end
		end
		args[#args + 1] = head .. part .. tail
		args[#args + 1] = struct.pack(FMT, unpack(v))
	end
	return args
end
local acctArgs = fields(byAcct, acctOrder, '0:', '')
local keyArgs = fields(byKey, keyOrder, '', '0:')
if not acctArgs or not keyArgs then
	return redis.error_reply('usage rollup total out of int64 range')
end
for _, w in ipairs({{KEYS[2], acctArgs}, {KEYS[3], keyArgs}}) do
	redis.call('DEL', w[1])
	for i = 1, #w[2], 2000 do
		redis.call('HSET', w[1], unpack(w[2], i, math.min(i + 1999, #w[2])))
	end
end
return #acctOrder + #keyOrder
`)
