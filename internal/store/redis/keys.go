package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/crs-relay/crs/internal/store"
)

// A relay key is stored in parts, one hash per part with the key's ID as
// the field, because different writers own different parts and a script
// cannot rewrite one field of a JSON document without decoding it (cjson
// would round 64-bit numbers such as a policy's money limits):
//
//	key:fixed      JSON keyFixed: what never changes after CreateKey
//	key:edit       JSON keyEdit: what UpdateKey replaces
//	key:activated  unix ms; HSETNX, so the first activation wins
//	key:used       unix ms; TouchKeys
//	key:hash       the key's hash → its ID
//	key:order      sorted set of IDs by a creation sequence number

// keyFixed is the part of a key set once, by CreateKey.
type keyFixed struct {
	Hash    string `json:"hash"`
	Hint    string `json:"hint"`
	Created int64  `json:"created"`
}

// keyEdit is the part of a key UpdateKey replaces. The policy keeps
// store.KeyPolicy's own JSON (durations in nanoseconds), as the embedded
// store does.
type keyEdit struct {
	Name     string          `json:"name"`
	Disabled bool            `json:"disabled,omitempty"`
	Tags     []string        `json:"tags,omitempty"`
	Clients  []string        `json:"clients,omitempty"`
	Policy   store.KeyPolicy `json:"policy"`
	Expires  *int64          `json:"expires,omitempty"`
	Deleted  *int64          `json:"deleted,omitempty"`
}

func editOf(k store.Key) ([]byte, error) {
	return json.Marshal(keyEdit{
		Name: k.Name, Disabled: k.Disabled, Tags: k.Tags, Clients: k.Clients, Policy: k.Policy,
		Expires: unixMsPtr(k.ExpiresAt), Deleted: unixMsPtr(k.DeletedAt),
	})
}

// createKeyScript stores a new key and counts the change; -1 if its ID or
// hash is taken.
//
// KEYS: version, key:fixed, key:edit, key:activated, key:used, key:hash,
// key:order, seq. ARGV: channel, id, hash, fixed, edit, activated ms or "",
// last used ms or "".
var createKeyScript = goredis.NewScript(changedLua + `
local id = ARGV[2]
if redis.call('HEXISTS', KEYS[2], id) == 1 or redis.call('HEXISTS', KEYS[6], ARGV[3]) == 1 then
	return -1
end
redis.call('HSET', KEYS[2], id, ARGV[4])
redis.call('HSET', KEYS[3], id, ARGV[5])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[4], id, ARGV[6]) end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[5], id, ARGV[7]) end
redis.call('HSET', KEYS[6], ARGV[3], id)
redis.call('ZADD', KEYS[7], redis.call('INCR', KEYS[8]), id)
changed()
return 1
`)

// getKeyScript reads one key's parts, found by ID or, when ARGV[2] is
// "hash", by hash: {id, fixed, edit, activated, used}, or nil.
//
// KEYS: key:fixed, key:edit, key:activated, key:used, key:hash. ARGV: the
// ID or the hash, "id" or "hash".
var getKeyScript = goredis.NewScript(`
local id = ARGV[1]
if ARGV[2] == 'hash' then
	id = redis.call('HGET', KEYS[5], id)
	if not id then return false end
end
local fixed = redis.call('HGET', KEYS[1], id)
if not fixed then return false end
return {id, fixed, redis.call('HGET', KEYS[2], id), redis.call('HGET', KEYS[3], id), redis.call('HGET', KEYS[4], id)}
`)

// listKeysScript reads every key: {IDs in creation sequence, then each
// part hash whole}.
//
// KEYS: key:fixed, key:edit, key:activated, key:used, key:order.
var listKeysScript = goredis.NewScript(`
return {redis.call('ZRANGE', KEYS[5], 0, -1), redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]),
	redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4])}
`)

// activateKeyScript sets the activation unless one is set, counting the
// change only when it sets it, and answers the stored one (nil: no key).
//
// KEYS: version, key:fixed, key:activated. ARGV: channel, id, ms.
var activateKeyScript = goredis.NewScript(changedLua + `
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return false end
if redis.call('HSETNX', KEYS[3], ARGV[2], ARGV[3]) == 1 then changed() end
return redis.call('HGET', KEYS[3], ARGV[2])
`)

// purgeKeyScript removes every part of a key and frees its hash.
//
// KEYS: version, key:fixed, key:edit, key:activated, key:used, key:hash,
// key:order. ARGV: channel, id.
var purgeKeyScript = goredis.NewScript(changedLua + `
local id = ARGV[2]
local fixed = redis.call('HGET', KEYS[2], id)
if not fixed then return 0 end
local hash = cjson.decode(fixed).hash
if redis.call('HGET', KEYS[6], hash) == id then redis.call('HDEL', KEYS[6], hash) end
for i = 2, 5 do redis.call('HDEL', KEYS[i], id) end
redis.call('ZREM', KEYS[7], id)
changed()
return 1
`)

// CreateKey stores k; store.ErrConflict if its ID or Hash exists.
func (s *Store) CreateKey(ctx context.Context, k store.Key) error {
	fixed, err := json.Marshal(keyFixed{Hash: k.Hash, Hint: k.Hint, Created: unixMs(k.CreatedAt)})
	if err != nil {
		return fmt.Errorf("redis: create key %q: %w", k.ID, err)
	}
	edit, err := editOf(k)
	if err != nil {
		return fmt.Errorf("redis: create key %q: %w", k.ID, err)
	}
	n, err := replyInt(createKeyScript.Run(ctx, s.rdb, s.cfg.createKey, s.changesChannel(), string(k.ID), k.Hash,
		fixed, edit, unixMsArg(k.ActivatedAt), unixMsArg(k.LastUsedAt)).Result())
	if err != nil {
		return fmt.Errorf("redis: create key %q: %w", k.ID, err)
	}
	if n == replyConflict {
		return fmt.Errorf("redis: create key %q: %w", k.ID, store.ErrConflict)
	}
	return nil
}

// GetKey returns the key with id, soft-deleted or not, in one round trip.
func (s *Store) GetKey(ctx context.Context, id store.KeyID) (store.Key, error) {
	k, err := s.readKey(ctx, string(id), "id")
	if err != nil {
		return store.Key{}, fmt.Errorf("redis: get key %q: %w", id, err)
	}
	return k, nil
}

// KeyByHash finds a key by its hash, soft-deleted ones included, in one
// round trip: the script follows the hash to the ID and reads the key.
func (s *Store) KeyByHash(ctx context.Context, hash string) (store.Key, error) {
	k, err := s.readKey(ctx, hash, "hash")
	if err != nil {
		// The hash stays out of the message: it identifies a credential.
		return store.Key{}, fmt.Errorf("redis: key by hash: %w", err)
	}
	return k, nil
}

func (s *Store) readKey(ctx context.Context, ref, by string) (store.Key, error) {
	v, err := getKeyScript.Run(ctx, s.rdb, s.cfg.getKey, ref, by).Result()
	if errors.Is(err, goredis.Nil) {
		return store.Key{}, store.ErrNotFound
	}
	if err != nil {
		return store.Key{}, err
	}
	vals, present, err := replyStrings(v, 5)
	if err != nil {
		return store.Key{}, err
	}
	return decodeKey(vals[0], vals[1], vals[2], vals[3], present[3], vals[4], present[4])
}

// ListKeys returns keys ordered by creation (ties in insertion order);
// soft-deleted ones only when includeDeleted. One round trip.
func (s *Store) ListKeys(ctx context.Context, includeDeleted bool) ([]store.Key, error) {
	v, err := listKeysScript.Run(ctx, s.rdb, s.cfg.listKeys).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: list keys: %w", err)
	}
	ids, parts, err := listReply(v, 4)
	if err != nil {
		return nil, fmt.Errorf("redis: list keys: %w", err)
	}
	fixed, edit, activated, used := parts[0], parts[1], parts[2], parts[3]
	out := make([]store.Key, 0, len(ids))
	for _, id := range ids {
		f, ok := fixed[id]
		if !ok {
			continue
		}
		act, actOK := activated[id]
		u, usedOK := used[id]
		k, err := decodeKey(id, f, edit[id], act, actOK, u, usedOK)
		if err != nil {
			return nil, fmt.Errorf("redis: list keys: %w", err)
		}
		if k.DeletedAt != nil && !includeDeleted {
			continue
		}
		out = append(out, k)
	}
	// IDs come in insertion order; a stable sort by creation time keeps
	// it among equal times.
	slices.SortStableFunc(out, func(a, b store.Key) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// listReply splits a list script's reply: the IDs in creation sequence,
// then n part hashes.
func listReply(v any, n int) ([]string, []map[string]string, error) {
	arr, err := replyParts(v, n+1)
	if err != nil {
		return nil, nil, err
	}
	ids, err := replyList(arr[0])
	if err != nil {
		return nil, nil, err
	}
	parts := make([]map[string]string, n)
	for i := range n {
		if parts[i], err = replyHash(arr[i+1]); err != nil {
			return nil, nil, err
		}
	}
	return ids, parts, nil
}

// decodeKey assembles a key from its stored parts.
func decodeKey(id, fixedJSON, editJSON, activated string, activatedOK bool, used string, usedOK bool) (store.Key, error) {
	var (
		f keyFixed
		e keyEdit
	)
	if err := json.Unmarshal([]byte(fixedJSON), &f); err != nil {
		return store.Key{}, fmt.Errorf("key %q: %w", id, err)
	}
	if err := json.Unmarshal([]byte(editJSON), &e); err != nil {
		return store.Key{}, fmt.Errorf("key %q: %w", id, err)
	}
	k := store.Key{
		ID: store.KeyID(id), Name: e.Name, Hash: f.Hash, Hint: f.Hint, Disabled: e.Disabled,
		Tags: e.Tags, Clients: e.Clients, Policy: e.Policy, CreatedAt: fromUnixMs(f.Created),
		ExpiresAt: fromUnixMsPtr(e.Expires), DeletedAt: fromUnixMsPtr(e.Deleted),
	}
	normPolicy(&k.Policy)
	var err error
	if k.ActivatedAt, err = parseUnixMsField(activated, activatedOK); err != nil {
		return store.Key{}, fmt.Errorf("key %q: activated: %w", id, err)
	}
	if k.LastUsedAt, err = parseUnixMsField(used, usedOK); err != nil {
		return store.Key{}, fmt.Errorf("key %q: last used: %w", id, err)
	}
	return k, nil
}

// normPolicy reads empty lists and an empty rate map as nil, the zero
// value's form, so a policy has one form whichever way it was written.
func normPolicy(p *store.KeyPolicy) {
	if len(p.Permissions) == 0 {
		p.Permissions = nil
	}
	if len(p.ModelsAllow) == 0 {
		p.ModelsAllow = nil
	}
	if len(p.ModelsDeny) == 0 {
		p.ModelsDeny = nil
	}
	if len(p.ServiceRates) == 0 {
		p.ServiceRates = nil
	}
}

// UpdateKey replaces the mutable fields (Name, Disabled, Tags, Clients,
// Policy, ExpiresAt, DeletedAt) of the key with k.ID: they are the
// key:edit part, and no other part is written, so ActivatedAt, set by the
// relay on first use, cannot be taken back by an edit built from an older
// read.
func (s *Store) UpdateKey(ctx context.Context, k store.Key) error {
	edit, err := editOf(k)
	if err != nil {
		return fmt.Errorf("redis: update key %q: %w", k.ID, err)
	}
	n, err := replyInt(setFieldsScript.Run(ctx, s.rdb, s.cfg.updateKey, s.changesChannel(), string(k.ID), edit).Result())
	if err != nil {
		return fmt.Errorf("redis: update key %q: %w", k.ID, err)
	}
	if n == replyNotFound {
		return fmt.Errorf("redis: update key %q: %w", k.ID, store.ErrNotFound)
	}
	return nil
}

// ActivateKey sets ActivatedAt to at unless it is already set, and returns
// the stored value. HSETNX inside the script makes the first activation
// win across instances; a key already active is not written, so repeated
// activations leave ChangeVersion alone.
func (s *Store) ActivateKey(ctx context.Context, id store.KeyID, at time.Time) (time.Time, error) {
	stored, err := activateKeyScript.Run(ctx, s.rdb, s.cfg.activateKey, s.changesChannel(), string(id), unixMs(at)).Text()
	if errors.Is(err, goredis.Nil) {
		return time.Time{}, fmt.Errorf("redis: activate key %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("redis: activate key %q: %w", id, err)
	}
	t, err := parseUnixMs(stored)
	if err != nil {
		return time.Time{}, fmt.Errorf("redis: activate key %q: %w", id, err)
	}
	return t, nil
}

// PurgeKey removes the key for good; its ID and hash are free again. Its
// usage records stay: they are history, and name the key only by ID.
func (s *Store) PurgeKey(ctx context.Context, id store.KeyID) error {
	n, err := replyInt(purgeKeyScript.Run(ctx, s.rdb, s.cfg.purgeKey, s.changesChannel(), string(id)).Result())
	if err != nil {
		return fmt.Errorf("redis: purge key %q: %w", id, err)
	}
	if n == replyNotFound {
		return fmt.Errorf("redis: purge key %q: %w", id, store.ErrNotFound)
	}
	return nil
}

// TouchKeys sets last_used_at for many keys in one script. Keys that no
// longer exist are skipped: a purge may race a batched touch.
func (s *Store) TouchKeys(ctx context.Context, used map[store.KeyID]time.Time) error {
	if err := touch(ctx, s, s.cfg.touchKeys, used); err != nil {
		return fmt.Errorf("redis: touch keys: %w", err)
	}
	return nil
}

// touch runs touchScript for keys or accounts: one round trip per batch.
func touch[ID ~string](ctx context.Context, s *Store, keys []string, used map[ID]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	args := make([]any, 0, 2*len(used))
	for id, t := range used {
		args = append(args, string(id), strconv.FormatInt(unixMs(t), 10))
	}
	return touchScript.Run(ctx, s.rdb, keys, args...).Err()
}
