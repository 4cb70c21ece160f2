package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/crs-relay/crs/internal/store"
)

// Counters are the shared limit counters (store.LimitCounters and
// store.CounterBatcher). Every operation is one round trip: one command or
// one script; Batch sends several in one pipeline.
//
// A counter is a Redis string under prefix+"c:"+name; its expiry is a
// Redis key expiry, set only when Add creates the key. A slot name is a
// sorted set under prefix+"s:"+name whose members are the holders and
// whose scores are the instants their leases end, in milliseconds of the
// Redis server's clock. Leases are timed by the server alone, so instances
// with skewed clocks agree on who still holds a slot. Counter expiries
// are instants the caller chose on its own clock (a window's end); Add
// turns them into a duration from the caller's now, which a skew between
// instances shifts no more than it shifts the caller's idea of the window.
//
// Counters and slots are single keys, so they need no hash tag and spread
// over a cluster.
type Counters struct {
	rdb    goredis.UniversalClient
	prefix string
	// now is this instance's clock. Only Add reads it, to turn an expiry
	// instant into a time to live; tests skew it to show that leases
	// never consult it.
	now func() time.Time
}

var (
	_ store.LimitCounters  = (*Counters)(nil)
	_ store.CounterBatcher = (*Counters)(nil)
)

// counterScripts are the scripts Batch sends by digest alone.
var counterScripts = []*goredis.Script{addScript, acquireScript}

func newCounters(rdb goredis.UniversalClient, prefix string) *Counters {
	return &Counters{rdb: rdb, prefix: prefix, now: time.Now}
}

// counterKey and slotKey keep counter and slot names apart, so a name used
// as both never meets a WRONGTYPE error.
func (c *Counters) counterKey(name string) string { return c.prefix + "c:" + name }
func (c *Counters) slotKey(name string) string    { return c.prefix + "s:" + name }

// addScript adds ARGV[1] to the counter KEYS[1] and returns the new value
// read back with GET, a string: Lua numbers are doubles, and a spend
// counter in picodollars passes 2^53. ARGV[2] is the time to live in
// milliseconds applied only when this call creates the counter: 0 for
// none, -1 when the expiry has passed already (the counter is answered
// and dropped at once, as nothing could read it before it expires).
var addScript = goredis.NewScript(`
local created = redis.call('EXISTS', KEYS[1]) == 0
redis.call('INCRBY', KEYS[1], ARGV[1])
local v = redis.call('GET', KEYS[1])
if created then
	local ttl = tonumber(ARGV[2])
	if ttl < 0 then
		redis.call('DEL', KEYS[1])
	elseif ttl > 0 then
		redis.call('PEXPIRE', KEYS[1], ttl)
	end
end
return v
`)

// Add adds delta to the counter name and returns the new value. The
// expiry is fixed when the counter is created; later Adds leave it alone,
// so the requests inside a window cannot stretch it.
func (c *Counters) Add(ctx context.Context, name string, delta int64, expires time.Time) (int64, error) {
	return addResult(name, addScript.Run(ctx, c.rdb, []string{c.counterKey(name)}, delta, c.ttlMs(expires)))
}

// ttlMs is addScript's ARGV[2] for a counter that expires at expires on
// this instance's clock.
func (c *Counters) ttlMs(expires time.Time) int64 {
	if expires.IsZero() {
		return 0
	}
	d := expires.Sub(c.now())
	if d <= 0 {
		return -1
	}
	return ceilMs(d)
}

// addResult reads addScript's reply.
func addResult(name string, cmd *goredis.Cmd) (int64, error) {
	s, err := cmd.Text()
	if err != nil {
		return 0, fmt.Errorf("redis: add to counter %q: %w", name, err)
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redis: counter %q holds %q: %w", name, s, err)
	}
	return v, nil
}

// Get returns the counter's value, 0 when it does not exist, and whether
// it exists.
func (c *Counters) Get(ctx context.Context, name string) (int64, bool, error) {
	return getResult(name, c.rdb.Get(ctx, c.counterKey(name)))
}

// getResult reads a counter's GET reply.
func getResult(name string, cmd *goredis.StringCmd) (int64, bool, error) {
	v, err := cmd.Int64()
	if errors.Is(err, goredis.Nil) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("redis: get counter %q: %w", name, err)
	}
	return v, true, nil
}

// serverNowMs is the Lua prologue that reads the Redis server's clock in
// milliseconds, and int, which formats such a number for a command:
// Lua's own conversion keeps 14 digits. Scripts are replicated by their
// effects (the default since Redis 5), so a script may read TIME and
// still write.
const serverNowMs = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function int(n) return string.format('%d', n) end
`

// acquireScript takes a slot of KEYS[1] for holder ARGV[1] with limit
// ARGV[2] and a lease of ARGV[3] ms. Ended leases (end <= now) are
// dropped first, so a crashed holder's slot is free again without anyone
// calling InUse. A holder that holds a slot has its lease renewed and
// keeps its one slot even when all are taken. The key's own time to live
// is kept at least as long as the longest lease, so a set whose holders
// all crashed vanishes by itself.
var acquireScript = goredis.NewScript(serverNowMs + `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', int(now))
local lease = tonumber(ARGV[3])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
	if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
		return 0
	end
end
redis.call('ZADD', KEYS[1], int(now + lease), ARGV[1])
if redis.call('PTTL', KEYS[1]) < lease then
	redis.call('PEXPIRE', KEYS[1], lease)
end
return 1
`)

// Acquire takes one of limit slots of name for holder until lease ends,
// timed by the Redis server's clock. A holder that already holds a slot
// keeps it and has its lease renewed; a limit of 0 or less has no slots.
// A lease that is not positive is an error: the slot would be dead at
// once, or, read as "no lease", never free itself after a crash.
func (c *Counters) Acquire(ctx context.Context, name, holder string, limit int, lease time.Duration) (bool, error) {
	if send, err := acquireNeedsServer(name, holder, limit, lease); !send {
		return false, err
	}
	return acquireResult(name, holder, acquireScript.Run(ctx, c.rdb, []string{c.slotKey(name)}, holder, limit, ceilMs(lease)))
}

// acquireNeedsServer answers the Acquires that Redis need not see: a
// lease that is not positive is an error, a limit of 0 or less has no
// slots.
func acquireNeedsServer(name, holder string, limit int, lease time.Duration) (bool, error) {
	if lease <= 0 {
		return false, fmt.Errorf("redis: acquire %q for %q: lease %v is not positive", name, holder, lease)
	}
	return limit > 0, nil
}

// acquireResult reads acquireScript's reply.
func acquireResult(name, holder string, cmd *goredis.Cmd) (bool, error) {
	ok, err := cmd.Int()
	if err != nil {
		return false, fmt.Errorf("redis: acquire %q for %q: %w", name, holder, err)
	}
	return ok == 1, nil
}

// Release frees holder's slot of name; it does nothing when holder holds
// none, so the late Release of a holder whose lease ended never frees the
// slot another took since.
func (c *Counters) Release(ctx context.Context, name, holder string) error {
	if err := c.rdb.ZRem(ctx, c.slotKey(name), holder).Err(); err != nil {
		return fmt.Errorf("redis: release %q for %q: %w", name, holder, err)
	}
	return nil
}

// inUseScript counts the leases of KEYS[1] that end after the server's
// now. It only reads; Acquire drops the ended ones.
var inUseScript = goredis.NewScript(serverNowMs + `
return redis.call('ZCOUNT', KEYS[1], '(' .. int(now), '+inf')
`)

// InUse counts the slots of name whose lease has not ended on the Redis
// server's clock.
func (c *Counters) InUse(ctx context.Context, name string) (int, error) {
	n, err := inUseScript.Run(ctx, c.rdb, []string{c.slotKey(name)}).Int()
	if err != nil {
		return 0, fmt.Errorf("redis: slots in use of %q: %w", name, err)
	}
	return n, nil
}

// Batch runs ops in one pipeline, one round trip, and fills in their
// results: each operation is the same command or script its own method
// sends, so it is as atomic as that call and answers alike, and Redis runs
// a pipeline's commands in order, so a Get after an Add of the same name
// sees it. Other clients' commands may run between two operations; on a
// cluster the operations of names on different nodes run side by side.
//
// A pipeline cannot fall back from EVALSHA to EVAL the way a single
// script call does, since the NOSCRIPT answer arrives with the others. Open
// loaded the scripts; should Redis have lost them since (a restart, SCRIPT
// FLUSH), Batch loads them again and sends once more the operations that
// found no script, together with the Gets that followed the first of them,
// so that those read what the batch wrote before them. An Add or Acquire
// that ran is never sent again: a counter is never added to twice. (Only
// should another client load the scripts while the pipeline runs can a
// resent operation end up after one that followed it in the batch.)
//
// Batch returns an error when the pipeline could not run (the connection,
// the context); each operation's own failure is in its Err.
func (c *Counters) Batch(ctx context.Context, ops []store.CounterOp) error {
	send := make([]int, 0, len(ops))
	for i := range ops {
		op := &ops[i]
		op.Value, op.Exists, op.Acquired, op.Err = 0, false, false, nil
		switch op.Kind {
		case store.OpAdd, store.OpGet:
			send = append(send, i)
		case store.OpAcquire:
			var ok bool
			if ok, op.Err = acquireNeedsServer(op.Name, op.Holder, op.Limit, op.Lease); ok {
				send = append(send, i)
			}
		default:
			op.Err = fmt.Errorf("redis: unknown counter operation %d", op.Kind)
		}
	}
	if len(send) == 0 {
		return nil
	}
	again, err := c.pipeline(ctx, ops, send)
	if err != nil || len(again) == 0 {
		return err
	}
	if err := ensureScripts(ctx, c.rdb, counterScripts); err != nil {
		for _, i := range again {
			ops[i].Err = fmt.Errorf("redis: counter %q: %w", ops[i].Name, err)
		}
		return nil
	}
	_, err = c.pipeline(ctx, ops, again)
	return err
}

// pipeline sends the operations ops[i] for i in send as one pipeline and
// fills in their results. It returns those to send again once the scripts
// are loaded: every one that found no script, and every Get after the
// first of them.
func (c *Counters) pipeline(ctx context.Context, ops []store.CounterOp, send []int) (again []int, err error) {
	cmds := make([]goredis.Cmder, len(send))
	// Pipelined's error is the first failed command's, which may be
	// one operation's own; the loop below tells them apart.
	_, _ = c.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for j, i := range send {
			op := &ops[i]
			switch op.Kind {
			case store.OpAdd:
				cmds[j] = addScript.EvalSha(ctx, p, []string{c.counterKey(op.Name)}, op.Delta, c.ttlMs(op.Expires))
			case store.OpGet:
				cmds[j] = p.Get(ctx, c.counterKey(op.Name))
			case store.OpAcquire:
				cmds[j] = acquireScript.EvalSha(ctx, p, []string{c.slotKey(op.Name)}, op.Holder, op.Limit, ceilMs(op.Lease))
			}
		}
		return nil
	})
	lost := false
	for j, i := range send {
		op, cmd := &ops[i], cmds[j]
		if e := cmd.Err(); e != nil && !isReply(e) && err == nil {
			err = fmt.Errorf("redis: counter batch: %w", e)
		}
		switch op.Kind {
		case store.OpAdd:
			op.Value, op.Err = addResult(op.Name, cmd.(*goredis.Cmd))
		case store.OpGet:
			op.Value, op.Exists, op.Err = getResult(op.Name, cmd.(*goredis.StringCmd))
		case store.OpAcquire:
			op.Acquired, op.Err = acquireResult(op.Name, op.Holder, cmd.(*goredis.Cmd))
		}
		if goredis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			lost = true
			again = append(again, i)
		} else if lost && op.Kind == store.OpGet {
			again = append(again, i)
		}
	}
	if err != nil {
		return nil, err
	}
	return again, nil
}

// isReply reports whether err is Redis's answer to one command (goredis.Nil
// for a missing key, an error reply such as an overflow), not a failure to
// reach Redis.
func isReply(err error) bool {
	var reply goredis.Error
	return errors.As(err, &reply)
}

// ceilMs rounds a positive duration up to whole milliseconds, so a short
// lease or time to live never rounds down to nothing.
func ceilMs(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}
