package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// cfgLayout names the {cfg} keys of one prefix, and holds the KEYS list of
// every script that reads or writes them, built once in Open so that a call
// allocates no key names. Every name shares the {cfg} hash tag: a script
// may touch any of them together on Redis Cluster.
type cfgLayout struct {
	version, seq string

	keyFixed, keyEdit, keyActivated, keyUsed, keyHash, keyOrder string

	acctCreated, acctEdit, acctSecret, acctUpdated, acctCooldown, acctQuota, acctUsed, acctOrder string

	group, groupName, groupMembers, groupOrder string

	admin, settings string

	// KEYS of the scripts, in the order each script's comment gives.
	createKey, getKey, listKeys, updateKey, activateKey, purgeKey, touchKeys []string

	createAcct, getAcct, listAccts, updateAcct, setSecret, setCooldown, setQuota, deleteAcct, touchAccts []string

	createGroup, getGroup, listGroups, deleteGroup, memberOf []string

	setAdmin, setSetting []string
}

func newCfgLayout(cfgKey func(string) string) *cfgLayout {
	l := &cfgLayout{
		version: cfgKey("version"),
		seq:     cfgKey("seq"),

		keyFixed:     cfgKey("key:fixed"),
		keyEdit:      cfgKey("key:edit"),
		keyActivated: cfgKey("key:activated"),
		keyUsed:      cfgKey("key:used"),
		keyHash:      cfgKey("key:hash"),
		keyOrder:     cfgKey("key:order"),

		acctCreated:  cfgKey("acct:created"),
		acctEdit:     cfgKey("acct:edit"),
		acctSecret:   cfgKey("acct:secret"),
		acctUpdated:  cfgKey("acct:updated"),
		acctCooldown: cfgKey("acct:cooldown"),
		acctQuota:    cfgKey("acct:quota"),
		acctUsed:     cfgKey("acct:used"),
		acctOrder:    cfgKey("acct:order"),

		group:        cfgKey("group"),
		groupName:    cfgKey("group:name"),
		groupMembers: cfgKey("group:members"),
		groupOrder:   cfgKey("group:order"),

		admin:    cfgKey("admin"),
		settings: cfgKey("settings"),
	}
	l.createKey = []string{l.version, l.keyFixed, l.keyEdit, l.keyActivated, l.keyUsed, l.keyHash, l.keyOrder, l.seq}
	l.getKey = []string{l.keyFixed, l.keyEdit, l.keyActivated, l.keyUsed, l.keyHash}
	l.listKeys = []string{l.keyFixed, l.keyEdit, l.keyActivated, l.keyUsed, l.keyOrder}
	l.updateKey = []string{l.version, l.keyFixed, l.keyEdit}
	l.activateKey = []string{l.version, l.keyFixed, l.keyActivated}
	l.purgeKey = []string{l.version, l.keyFixed, l.keyEdit, l.keyActivated, l.keyUsed, l.keyHash, l.keyOrder}
	l.touchKeys = []string{l.keyFixed, l.keyUsed}

	acctParts := []string{l.acctCreated, l.acctEdit, l.acctSecret, l.acctUpdated, l.acctCooldown, l.acctQuota, l.acctUsed}
	l.createAcct = append([]string{l.version}, append(acctParts, l.acctOrder, l.seq)...)
	l.getAcct = acctParts
	l.listAccts = append(append([]string(nil), acctParts...), l.acctOrder)
	l.updateAcct = []string{l.version, l.acctCreated, l.acctEdit, l.acctSecret, l.acctUpdated}
	l.setSecret = []string{l.version, l.acctCreated, l.acctSecret, l.acctUpdated}
	l.setCooldown = []string{l.version, l.acctCreated, l.acctCooldown}
	l.setQuota = []string{l.version, l.acctCreated, l.acctQuota}
	l.deleteAcct = append([]string{l.version}, append(append([]string(nil), acctParts...), l.acctOrder, l.groupMembers)...)
	l.touchAccts = []string{l.acctCreated, l.acctUsed}

	l.createGroup = []string{l.version, l.group, l.groupName, l.groupMembers, l.groupOrder, l.seq, l.acctCreated}
	l.getGroup = []string{l.group, l.groupMembers}
	l.listGroups = []string{l.group, l.groupMembers, l.groupOrder}
	l.deleteGroup = []string{l.version, l.group, l.groupName, l.groupMembers, l.groupOrder}
	l.memberOf = []string{l.version, l.group, l.groupMembers, l.acctCreated}

	l.setAdmin = []string{l.version, l.admin}
	l.setSetting = []string{l.version, l.settings}
	return l
}

// Script replies. A write script answers one of these; a read script
// answers nil (goredis.Nil) for a missing item.
const (
	replyNotFound       = 0
	replyOK             = 1
	replyConflict       = -1
	replyMemberNotFound = 2 // the group exists, the account does not
)

// changedLua starts every script that writes what ChangeVersion covers.
// KEYS[1] is the change version and ARGV[1] the changes channel: changed()
// counts the change and announces it in the same atomic step, so no
// instance sees the change without the new version, and no change goes
// unannounced because its writer died between two calls. PUBLISH inside a
// script is allowed on Redis Cluster and reaches subscribers on every node.
const changedLua = `
local function changed()
	redis.call('PUBLISH', ARGV[1], redis.call('INCR', KEYS[1]))
end
`

// membersLua reads and writes a group's member list: a JSON array of
// account IDs under the group's ID in a hash, absent when empty (cjson
// would encode an empty table as an object). Account IDs are strings,
// which cjson round-trips exactly.
const membersLua = `
local function members(hash, id)
	local v = redis.call('HGET', hash, id)
	if not v then return {} end
	return cjson.decode(v)
end
local function setMembers(hash, id, list)
	if #list == 0 then
		redis.call('HDEL', hash, id)
	else
		redis.call('HSET', hash, id, cjson.encode(list))
	end
end
local function without(list, acct)
	local kept, gone = {}, false
	for _, m in ipairs(list) do
		if m == acct then gone = true else kept[#kept + 1] = m end
	end
	return kept, gone
end
`

// setFieldsScript writes the parts of one key or account held in separate
// hashes, if the item exists, and counts the change.
//
// KEYS: version, the hash whose field marks that the item exists, then the
// hashes to write. ARGV: channel, id, then one value per hash to write; an
// empty value removes the field (a cleared cooldown, no secret).
var setFieldsScript = goredis.NewScript(changedLua + `
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return 0 end
for i = 3, #KEYS do
	if ARGV[i] == '' then
		redis.call('HDEL', KEYS[i], ARGV[2])
	else
		redis.call('HSET', KEYS[i], ARGV[2], ARGV[i])
	end
end
changed()
return 1
`)

// touchScript sets the last use of the items that exist; an item deleted
// while its touch was batched is skipped, not brought back. It changes
// nothing callers cache, so it does not count a change.
//
// KEYS: the hash whose field marks that an item exists, the last-use hash.
// ARGV: id, unix ms, id, unix ms, …
var touchScript = goredis.NewScript(`
for i = 1, #ARGV, 2 do
	if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
		redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
	end
end
return 0
`)

// storeScripts are every script of the package, which Open loads so that
// the first EVALSHA of each finds it (a single call would fall back to
// EVAL, one more round trip; a pipeline cannot). TestStoreScriptsComplete
// keeps the list whole.
var storeScripts = []*goredis.Script{
	createAcctScript, getAcctScript, listAcctsScript, setQuotaScript, deleteAcctScript,
	setAdminScript,
	addScript, acquireScript, inUseScript,
	createGroupScript, getGroupScript, listGroupsScript, deleteGroupScript, memberScript,
	createKeyScript, getKeyScript, listKeysScript, activateKeyScript, purgeKeyScript,
	unlockScript, renewLockScript,
	setFieldsScript, touchScript,
	setSettingScript,
	insertUsageScript, scanUsageScript, purgeUsageScript, readUsageScript,
	raiseSchemaScript, rebuildDerivedRollupsScript,
}

// ensureScripts loads those of scripts that Redis does not hold: one
// SCRIPT EXISTS for all, then one SCRIPT LOAD for each missing one. On a
// cluster both go to every node (go-redis's ClusterClient fans them out and
// answers "exists" only when every node has the script), since a key's
// node runs its scripts.
func ensureScripts(ctx context.Context, rdb goredis.UniversalClient, scripts []*goredis.Script) error {
	hashes := make([]string, len(scripts))
	for i, s := range scripts {
		hashes[i] = s.Hash()
	}
	have, err := rdb.ScriptExists(ctx, hashes...).Result()
	if err != nil {
		return fmt.Errorf("redis: script exists: %w", err)
	}
	for i, s := range scripts {
		if i < len(have) && have[i] {
			continue
		}
		if err := s.Load(ctx, rdb).Err(); err != nil {
			return fmt.Errorf("redis: load script %s: %w", hashes[i], err)
		}
	}
	return nil
}

// errReply is a script reply of an unexpected shape: a bug or a layout
// written by something else, never a state to handle.
var errReply = errors.New("unexpected script reply")

// replyInt reads a write script's integer reply.
func replyInt(v any, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	n, ok := v.(int64)
	if !ok {
		return 0, fmt.Errorf("%w: %T", errReply, v)
	}
	return n, nil
}

// replyStrings reads a read script's array of bulk strings; a missing
// value (nil) is "" and reported false in present.
func replyStrings(v any, n int) (vals []string, present []bool, err error) {
	arr, ok := v.([]any)
	if !ok || len(arr) != n {
		return nil, nil, fmt.Errorf("%w: %T of %d", errReply, v, len(arr))
	}
	vals, present = make([]string, n), make([]bool, n)
	for i, e := range arr {
		switch e := e.(type) {
		case nil:
		case string:
			vals[i], present[i] = e, true
		default:
			return nil, nil, fmt.Errorf("%w: element %d is %T", errReply, i, e)
		}
	}
	return vals, present, nil
}

// replyList reads an array of bulk strings (ZRANGE's reply).
func replyList(v any) ([]string, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: %T", errReply, v)
	}
	out := make([]string, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("%w: element %d is %T", errReply, i, e)
		}
		out[i] = s
	}
	return out, nil
}

// replyHash reads HGETALL's flat field, value, … reply as a map.
func replyHash(v any) (map[string]string, error) {
	flat, err := replyList(v)
	if err != nil || len(flat)%2 != 0 {
		return nil, fmt.Errorf("%w: hash of %d elements", errReply, len(flat))
	}
	m := make(map[string]string, len(flat)/2)
	for i := 0; i < len(flat); i += 2 {
		m[flat[i]] = flat[i+1]
	}
	return m, nil
}

// replyParts splits a list script's reply, an array of n sub-replies.
func replyParts(v any, n int) ([]any, error) {
	arr, ok := v.([]any)
	if !ok || len(arr) != n {
		return nil, fmt.Errorf("%w: %T", errReply, v)
	}
	return arr, nil
}

// Times are stored as unix milliseconds, the precision the store promises,
// and read back in UTC, as the embedded store does.

// unixMs is t as stored.
func unixMs(t time.Time) int64 { return t.UnixMilli() }

// unixMsPtr is an optional time as stored; nil is absent.
func unixMsPtr(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	v := t.UnixMilli()
	return &v
}

// unixMsArg is an optional time as a script argument: "" when nil.
func unixMsArg(t *time.Time) string {
	if t == nil {
		return ""
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

// fromUnixMs reads a stored time back.
func fromUnixMs(v int64) time.Time { return time.UnixMilli(v).UTC() }

// fromUnixMsPtr reads an optional stored time back.
func fromUnixMsPtr(v *int64) *time.Time {
	if v == nil {
		return nil
	}
	t := fromUnixMs(*v)
	return &t
}

// parseUnixMs reads a time stored as a decimal string.
func parseUnixMs(s string) (time.Time, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("stored time %q: %w", s, err)
	}
	return fromUnixMs(v), nil
}

// parseUnixMsField reads an optional time stored as a decimal string in a
// hash field; absent is nil.
func parseUnixMsField(s string, present bool) (*time.Time, error) {
	if !present {
		return nil, nil
	}
	t, err := parseUnixMs(s)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// leaseMs is d in whole milliseconds for PX, rounded up: Redis counts
// milliseconds, and a lease must never end before the caller asked.
func leaseMs(d time.Duration) time.Duration {
	return (d + time.Millisecond - 1) / time.Millisecond * time.Millisecond
}
