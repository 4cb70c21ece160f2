package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/crs-relay/crs/internal/store"
)

// An upstream account is stored in parts, one hash per part with the
// account's ID as the field, split by who writes them, so that each setter
// replaces its own part and never a field another writer owns:
//
//	acct:created   unix ms; marks that the account exists
//	acct:edit      JSON acctEdit: the admin's fields but the secret
//	acct:secret    the sealed credential, raw bytes; absent when none
//	acct:updated   unix ms; UpdateAccount and SetAccountSecret
//	acct:cooldown  JSON acctCooldown; absent when none
//	acct:quota     JSON store.EncodeQuota; SetAccountQuota
//	acct:used      unix ms; TouchAccounts
//	acct:order     sorted set of IDs by a creation sequence number

// acctEdit is the part of an account UpdateAccount replaces, besides the
// secret and UpdatedAt, which SetAccountSecret writes as well.
type acctEdit struct {
	Name          string               `json:"name"`
	Platform      store.Platform       `json:"platform"`
	Type          store.AccountType    `json:"type"`
	Priority      int                  `json:"priority"`
	Disabled      bool                 `json:"disabled,omitempty"`
	Unschedulable bool                 `json:"unschedulable,omitempty"`
	BaseURL       string               `json:"base_url,omitempty"`
	Proxy         []byte               `json:"proxy,omitempty"`
	Plan          string               `json:"plan,omitempty"`
	Options       store.AccountOptions `json:"options"`
}

// acctCooldown is an account's cooldown, as SetCooldown records it.
type acctCooldown struct {
	Until  *int64             `json:"until,omitempty"`
	Kind   store.CooldownKind `json:"kind,omitempty"`
	Reason string             `json:"reason,omitempty"`
}

func acctEditOf(a store.Account) ([]byte, error) {
	return json.Marshal(acctEdit{
		Name: a.Name, Platform: a.Platform, Type: a.Type, Priority: a.Priority, Disabled: a.Disabled,
		Unschedulable: a.Unschedulable, BaseURL: a.BaseURL, Proxy: a.SealedProxy, Plan: a.Plan, Options: a.Options,
	})
}

// createAcctScript stores a new account and counts the change; -1 if its
// ID is taken.
//
// KEYS: version, acct:created, acct:edit, acct:secret, acct:updated,
// acct:cooldown, acct:quota, acct:used, acct:order, seq. ARGV: channel, id,
// then one value per part hash in KEYS order (created … used); "" leaves
// an optional part (secret, cooldown, last use) absent.
var createAcctScript = goredis.NewScript(changedLua + `
local id = ARGV[2]
if redis.call('HEXISTS', KEYS[2], id) == 1 then return -1 end
for i = 2, 8 do
	if ARGV[i + 1] ~= '' then redis.call('HSET', KEYS[i], id, ARGV[i + 1]) end
end
redis.call('ZADD', KEYS[9], redis.call('INCR', KEYS[10]), id)
changed()
return 1
`)

// getAcctScript reads one account's parts in KEYS order, or nil.
//
// KEYS: acct:created, acct:edit, acct:secret, acct:updated, acct:cooldown,
// acct:quota, acct:used. ARGV: id.
var getAcctScript = goredis.NewScript(`
local created = redis.call('HGET', KEYS[1], ARGV[1])
if not created then return false end
local out = {created}
for i = 2, #KEYS do out[i] = redis.call('HGET', KEYS[i], ARGV[1]) end
return out
`)

// listAcctsScript reads every account: {IDs in creation sequence, then
// each part hash whole}.
//
// KEYS: the part hashes as for getAcctScript, then acct:order.
var listAcctsScript = goredis.NewScript(`
local out = {redis.call('ZRANGE', KEYS[#KEYS], 0, -1)}
for i = 1, #KEYS - 1 do out[i + 1] = redis.call('HGETALL', KEYS[i]) end
return out
`)

// setQuotaScript replaces an account's quota, counting the change only
// when the value differs: the relay records what the upstream reports as
// responses arrive, mostly unchanged, and rewriting the same quota must
// not flush every instance's caches. Encoded quotas compare as bytes
// (store.EncodeQuota is deterministic).
//
// KEYS: version, acct:created, acct:quota. ARGV: channel, id, quota.
var setQuotaScript = goredis.NewScript(changedLua + `
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return 0 end
if redis.call('HGET', KEYS[3], ARGV[2]) ~= ARGV[3] then
	redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
	changed()
end
return 1
`)

// deleteAcctScript removes every part of an account and takes it out of
// every group, in one step, so no group is left naming a deleted account.
//
// KEYS: version, the part hashes as for getAcctScript, acct:order,
// group:members. ARGV: channel, id.
var deleteAcctScript = goredis.NewScript(changedLua + membersLua + `
local id = ARGV[2]
if redis.call('HDEL', KEYS[2], id) == 0 then return 0 end
for i = 3, 8 do redis.call('HDEL', KEYS[i], id) end
redis.call('ZREM', KEYS[9], id)
local all = redis.call('HGETALL', KEYS[10])
for i = 1, #all, 2 do
	local kept, gone = without(cjson.decode(all[i + 1]), id)
	if gone then setMembers(KEYS[10], all[i], kept) end
end
changed()
return 1
`)

// CreateAccount stores a; store.ErrConflict if its ID exists.
func (s *Store) CreateAccount(ctx context.Context, a store.Account) error {
	edit, err := acctEditOf(a)
	if err != nil {
		return fmt.Errorf("redis: create account %q: %w", a.ID, err)
	}
	quota, err := store.EncodeQuota(a.Quota)
	if err != nil {
		return fmt.Errorf("redis: create account %q: %w", a.ID, err)
	}
	var cooldown []byte
	if a.CooldownUntil != nil || a.CooldownKind != store.CooldownNone || a.CooldownReason != "" {
		cooldown, err = json.Marshal(acctCooldown{Until: unixMsPtr(a.CooldownUntil), Kind: a.CooldownKind, Reason: a.CooldownReason})
		if err != nil {
			return fmt.Errorf("redis: create account %q: %w", a.ID, err)
		}
	}
	n, err := replyInt(createAcctScript.Run(ctx, s.rdb, s.cfg.createAcct, s.changesChannel(), string(a.ID),
		unixMs(a.CreatedAt), edit, a.SealedSecret, unixMs(a.UpdatedAt), cooldown, quota,
		unixMsArg(a.LastUsedAt)).Result())
	if err != nil {
		return fmt.Errorf("redis: create account %q: %w", a.ID, err)
	}
	if n == replyConflict {
		return fmt.Errorf("redis: create account %q: %w", a.ID, store.ErrConflict)
	}
	return nil
}

// GetAccount returns the account with id, in one round trip.
func (s *Store) GetAccount(ctx context.Context, id store.AccountID) (store.Account, error) {
	v, err := getAcctScript.Run(ctx, s.rdb, s.cfg.getAcct, string(id)).Result()
	if errors.Is(err, goredis.Nil) {
		return store.Account{}, fmt.Errorf("redis: get account %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Account{}, fmt.Errorf("redis: get account %q: %w", id, err)
	}
	vals, present, err := replyStrings(v, len(s.cfg.getAcct))
	if err != nil {
		return store.Account{}, fmt.Errorf("redis: get account %q: %w", id, err)
	}
	a, err := decodeAccount(string(id), func(i int) (string, bool) { return vals[i], present[i] })
	if err != nil {
		return store.Account{}, fmt.Errorf("redis: get account %q: %w", id, err)
	}
	return a, nil
}

// ListAccounts returns all accounts ordered by creation (ties in insertion
// order), in one round trip.
func (s *Store) ListAccounts(ctx context.Context) ([]store.Account, error) {
	v, err := listAcctsScript.Run(ctx, s.rdb, s.cfg.listAccts).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: list accounts: %w", err)
	}
	ids, parts, err := listReply(v, len(s.cfg.getAcct))
	if err != nil {
		return nil, fmt.Errorf("redis: list accounts: %w", err)
	}
	out := make([]store.Account, 0, len(ids))
	for _, id := range ids {
		if _, ok := parts[0][id]; !ok {
			continue
		}
		a, err := decodeAccount(id, func(i int) (string, bool) { v, ok := parts[i][id]; return v, ok })
		if err != nil {
			return nil, fmt.Errorf("redis: list accounts: %w", err)
		}
		out = append(out, a)
	}
	slices.SortStableFunc(out, func(a, b store.Account) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// Indexes of an account's parts, in the order of cfgLayout.getAcct.
const (
	partCreated = iota
	partEdit
	partSecret
	partUpdated
	partCooldown
	partQuota
	partUsed
)

// decodeAccount assembles an account from its stored parts; part(i)
// returns part i and whether it is present.
func decodeAccount(id string, part func(int) (string, bool)) (store.Account, error) {
	a := store.Account{ID: store.AccountID(id)}
	created, _ := part(partCreated)
	var err error
	if a.CreatedAt, err = parseUnixMs(created); err != nil {
		return store.Account{}, fmt.Errorf("account %q: created: %w", id, err)
	}
	var e acctEdit
	edit, _ := part(partEdit)
	if err := json.Unmarshal([]byte(edit), &e); err != nil {
		return store.Account{}, fmt.Errorf("account %q: %w", id, err)
	}
	a.Name, a.Platform, a.Type, a.Priority = e.Name, e.Platform, e.Type, e.Priority
	a.Disabled, a.Unschedulable, a.BaseURL, a.Plan = e.Disabled, e.Unschedulable, e.BaseURL, e.Plan
	a.Options = e.Options
	if len(a.Options.Models) == 0 {
		a.Options.Models = nil
	}
	if len(e.Proxy) > 0 {
		a.SealedProxy = e.Proxy
	}
	if v, ok := part(partSecret); ok && v != "" {
		a.SealedSecret = []byte(v)
	}
	if v, ok := part(partUpdated); ok {
		if a.UpdatedAt, err = parseUnixMs(v); err != nil {
			return store.Account{}, fmt.Errorf("account %q: updated: %w", id, err)
		}
	}
	if v, ok := part(partCooldown); ok {
		var c acctCooldown
		if err := json.Unmarshal([]byte(v), &c); err != nil {
			return store.Account{}, fmt.Errorf("account %q: cooldown: %w", id, err)
		}
		a.CooldownUntil, a.CooldownKind, a.CooldownReason = fromUnixMsPtr(c.Until), c.Kind, c.Reason
	}
	if v, ok := part(partQuota); ok {
		if a.Quota, err = store.DecodeQuota(v); err != nil {
			return store.Account{}, fmt.Errorf("account %q: quota: %w", id, err)
		}
	}
	if v, ok := part(partUsed); ok {
		if a.LastUsedAt, err = parseUnixMsField(v, true); err != nil {
			return store.Account{}, fmt.Errorf("account %q: last used: %w", id, err)
		}
	}
	return a, nil
}

// UpdateAccount replaces the fields an admin edits: the acct:edit part,
// the secret and UpdatedAt. The cooldown, quota and last use are other
// parts, not written here, so an edit built from an account read a moment
// earlier never puts back a cooldown that has since been set or cleared.
func (s *Store) UpdateAccount(ctx context.Context, a store.Account) error {
	edit, err := acctEditOf(a)
	if err != nil {
		return fmt.Errorf("redis: update account %q: %w", a.ID, err)
	}
	return s.setAccountParts(ctx, "update account", a.ID, s.cfg.updateAcct, edit, a.SealedSecret, unixMs(a.UpdatedAt))
}

// SetAccountSecret replaces only the sealed credential and UpdatedAt (this
// instance's clock), so a refreshed OAuth token is saved without
// overwriting a concurrent edit of other fields. It changes ChangeVersion,
// so every instance reloads the credential.
func (s *Store) SetAccountSecret(ctx context.Context, id store.AccountID, sealed []byte) error {
	return s.setAccountParts(ctx, "set account secret", id, s.cfg.setSecret, sealed, unixMs(time.Now()))
}

// SetCooldown records a cooldown, or with kind store.CooldownNone clears it
// (until and reason are then ignored). It changes ChangeVersion, so every
// instance's scheduler sees the account rest.
func (s *Store) SetCooldown(ctx context.Context, id store.AccountID, kind store.CooldownKind, until time.Time, reason string) error {
	var cooldown []byte // empty: the part is removed
	if kind != store.CooldownNone {
		var err error
		cooldown, err = json.Marshal(acctCooldown{Until: unixMsPtr(&until), Kind: kind, Reason: reason})
		if err != nil {
			return fmt.Errorf("redis: set cooldown %q: %w", id, err)
		}
	}
	return s.setAccountParts(ctx, "set cooldown", id, s.cfg.setCooldown, cooldown)
}

// setAccountParts runs setFieldsScript on the parts keys names (after the
// version and acct:created), one value each.
func (s *Store) setAccountParts(ctx context.Context, what string, id store.AccountID, keys []string, values ...any) error {
	args := append([]any{s.changesChannel(), string(id)}, values...)
	n, err := replyInt(setFieldsScript.Run(ctx, s.rdb, keys, args...).Result())
	if err != nil {
		return fmt.Errorf("redis: %s %q: %w", what, id, err)
	}
	if n == replyNotFound {
		return fmt.Errorf("redis: %s %q: %w", what, id, store.ErrNotFound)
	}
	return nil
}

// SetAccountQuota replaces only the quota: not UpdatedAt, which records
// the admin's edits, not the upstream's reports. A different quota changes
// ChangeVersion; the quota already stored does not.
func (s *Store) SetAccountQuota(ctx context.Context, id store.AccountID, q store.Quota) error {
	quota, err := store.EncodeQuota(q)
	if err != nil {
		return fmt.Errorf("redis: set account quota %q: %w", id, err)
	}
	n, err := replyInt(setQuotaScript.Run(ctx, s.rdb, s.cfg.setQuota, s.changesChannel(), string(id), quota).Result())
	if err != nil {
		return fmt.Errorf("redis: set account quota %q: %w", id, err)
	}
	if n == replyNotFound {
		return fmt.Errorf("redis: set account quota %q: %w", id, store.ErrNotFound)
	}
	return nil
}

// DeleteAccount removes the account and its group memberships. Its usage
// records stay as history.
func (s *Store) DeleteAccount(ctx context.Context, id store.AccountID) error {
	n, err := replyInt(deleteAcctScript.Run(ctx, s.rdb, s.cfg.deleteAcct, s.changesChannel(), string(id)).Result())
	if err != nil {
		return fmt.Errorf("redis: delete account %q: %w", id, err)
	}
	if n == replyNotFound {
		return fmt.Errorf("redis: delete account %q: %w", id, store.ErrNotFound)
	}
	return nil
}

// TouchAccounts sets last_used_at for many accounts in one script.
// Accounts that no longer exist are skipped.
func (s *Store) TouchAccounts(ctx context.Context, used map[store.AccountID]time.Time) error {
	if err := touch(ctx, s, s.cfg.touchAccts, used); err != nil {
		return fmt.Errorf("redis: touch accounts: %w", err)
	}
	return nil
}
