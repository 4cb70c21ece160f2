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
//	2  adds the account family of rollups (usage.go), built from the
//	   rollups of all records
//
// Open writes schemaVersion on a new deployment, refuses a newer version,
// and brings an older one up to date before it returns. Each step may run
// in several instances at once and again after one died midway, so it must
// give the same result however often it runs; the version is raised only
// once the step is done. Every instance of the older binary must be
// stopped before the first newer one starts: it would go on writing the
// old layout (a version-1 instance does not add its records to the
// account family), and nothing repairs that later.

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
		if err := s.buildAccountRollups(ctx); err != nil {
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

// rebuildBatch is how many periods' rebuilds buildAccountRollups sends in
// one pipeline: a year of hours is then about ninety round trips, and no
// reply list grows large.
const rebuildBatch = 100

// buildAccountRollups (layout 2) builds the account family of every
// period, hourly and daily, from the rollups of all records: one
// rebuildAccountRollupScript call per period, pipelined. Open waits for
// it. Its cost is that of reading every row of all records once: about
// 1.3 µs a row and 12 µs a period (BenchmarkMigrateAccountRollups), so a
// year of hours and days of 40 rows each takes about a second, of 400
// rows five; each call holds Redis for one period's rows only.
func (s *Store) buildAccountRollups(ctx context.Context) error {
	for _, g := range [...]store.Granularity{store.Hourly, store.Daily} {
		periods, err := s.rdb.ZRange(ctx, s.rollupPeriods(g), 0, -1).Result()
		if err != nil {
			return err
		}
		all, acct := s.rollupBase(g, famAll()), s.rollupBase(g, famAcct())
		for i := 0; i < len(periods); i += rebuildBatch {
			pipe := s.rdb.Pipeline()
			for _, p := range periods[i:min(i+rebuildBatch, len(periods))] {
				// EVALSHA: Open has loaded the script, and a pipeline
				// could not fall back to EVAL.
				rebuildAccountRollupScript.EvalSha(ctx, pipe, []string{all + p, acct + p})
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return fmt.Errorf("%s rollups per account: %w", g, err)
			}
		}
	}
	return nil
}

// rebuildAccountRollupScript replaces the account family's hash of one
// period, KEYS[2], with the sum over keys of the rows of all records of
// that period, KEYS[1]. It writes what the insert script would have
// written had the family always existed, and as one atomic step it stays
// exact while other instances insert (each adds to both hashes at once)
// or rebuild the same period. It returns how many rows it wrote.
//
// Rows are summed in the struct halves, as the insert script does, but
// carried only at the end: a half is below 2^32 in magnitude, so doubles
// add 2^20 of them exactly, and the sums are carried every 2^20 rows. The
// migration reads every row of all records, so this loop is its cost:
// unpacking into locals, not a table, and one carry per row of the
// family, not per row read, halve it.
var rebuildAccountRollupScript = goredis.NewScript(`
local FMT = '` + rowFormat + `'
local TWO32 = 4294967296
local find, sub, unpackRow = string.find, string.sub, struct.unpack
local flat = redis.call('HGETALL', KEYS[1])
-- Per account and model (<len>:<acct><model>), the sixteen halves.
local rows, order = {}, {}
local function carry()
	for _, v in pairs(rows) do
		for j = 1, 15, 2 do
			local c = math.floor(v[j + 1] / TWO32)
			v[j + 1] = v[j + 1] - c * TWO32
			v[j] = v[j] + c
		end
	end
end
for i = 1, #flat, 2 do
	-- dims are <len>:<key><len>:<acct><model>: drop the key.
	local dims = flat[i]
	local colon = find(dims, ':', 1, true)
	local len = colon and tonumber(sub(dims, 1, colon - 1))
	if not len or colon + len > #dims then
		return redis.error_reply('malformed rollup dims ' .. dims)
	end
	local acct = sub(dims, colon + len + 1)
	local v = rows[acct]
	if not v then
		v = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		rows[acct] = v
		order[#order + 1] = acct
	end
	local a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16 = unpackRow(FMT, flat[i + 1])
	v[1], v[2], v[3], v[4] = v[1] + a1, v[2] + a2, v[3] + a3, v[4] + a4
	v[5], v[6], v[7], v[8] = v[5] + a5, v[6] + a6, v[7] + a7, v[8] + a8
	v[9], v[10], v[11], v[12] = v[9] + a9, v[10] + a10, v[11] + a11, v[12] + a12
	v[13], v[14], v[15], v[16] = v[13] + a13, v[14] + a14, v[15] + a15, v[16] + a16
	if i % 2097152 == 1 then -- every 2^20 rows
		carry()
	end
end
carry()
local args = {}
for _, acct in ipairs(order) do
	local v = rows[acct]
	for j = 1, 15, 2 do
		if v[j] < -2147483648 or v[j] > 2147483647 then
			return redis.error_reply('usage rollup total out of int64 range')
		end
	end
	args[#args + 1] = '0:' .. acct
	args[#args + 1] = struct.pack(FMT, unpack(v))
end
redis.call('DEL', KEYS[2])
for i = 1, #args, 2000 do
	redis.call('HSET', KEYS[2], unpack(args, i, math.min(i + 1999, #args)))
end
return #order
`)
