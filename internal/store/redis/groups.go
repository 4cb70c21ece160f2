package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	goredis "github.com/redis/go-redis/v9"

	"github.com/crs-relay/crs/internal/store"
)

// A group is stored as:
//
//	group          ID → JSON groupInfo (name, platform, creation time)
//	group:name     name → ID, which keeps names unique
//	group:members  ID → JSON array of account IDs in the order they were
//	               added; absent when the group has none
//	group:order    sorted set of IDs by a creation sequence number
//
// Membership changes decode and re-encode the member list inside a
// script. A list holds only strings, which cjson round-trips exactly, and
// groups are small (an admin's handful of accounts).

// groupInfo is what a group is besides its members.
type groupInfo struct {
	Name     string         `json:"name"`
	Platform store.Platform `json:"platform"`
	Created  int64          `json:"created"`
}

// createGroupScript stores a new group with its members, first places
// kept for duplicates, and counts the change. It answers -1 if the ID or
// the name is taken, and the ID of the first member that is not an
// account (nothing stored) if there is one.
//
// KEYS: version, group, group:name, group:members, group:order, seq,
// acct:created. ARGV: channel, id, name, info, member, member, ….
var createGroupScript = goredis.NewScript(changedLua + membersLua + `
local id = ARGV[2]
if redis.call('HEXISTS', KEYS[2], id) == 1 or redis.call('HEXISTS', KEYS[3], ARGV[3]) == 1 then
	return -1
end
local list, seen = {}, {}
for i = 5, #ARGV do
	local m = ARGV[i]
	if redis.call('HEXISTS', KEYS[7], m) == 0 then return m end
	if not seen[m] then
		seen[m] = true
		list[#list + 1] = m
	end
end
redis.call('HSET', KEYS[2], id, ARGV[4])
redis.call('HSET', KEYS[3], ARGV[3], id)
setMembers(KEYS[4], id, list)
redis.call('ZADD', KEYS[5], redis.call('INCR', KEYS[6]), id)
changed()
return 1
`)

// getGroupScript reads {info, members} of one group, or nil.
//
// KEYS: group, group:members. ARGV: id.
var getGroupScript = goredis.NewScript(`
local info = redis.call('HGET', KEYS[1], ARGV[1])
if not info then return false end
return {info, redis.call('HGET', KEYS[2], ARGV[1])}
`)

// listGroupsScript reads every group: {IDs in creation sequence, infos,
// member lists}.
//
// KEYS: group, group:members, group:order.
var listGroupsScript = goredis.NewScript(`
return {redis.call('ZRANGE', KEYS[3], 0, -1), redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
`)

// deleteGroupScript removes a group and its memberships, and frees its
// name.
//
// KEYS: version, group, group:name, group:members, group:order. ARGV:
// channel, id.
var deleteGroupScript = goredis.NewScript(changedLua + `
local id = ARGV[2]
local info = redis.call('HGET', KEYS[2], id)
if not info then return 0 end
local name = cjson.decode(info).name
if redis.call('HGET', KEYS[3], name) == id then redis.call('HDEL', KEYS[3], name) end
redis.call('HDEL', KEYS[2], id)
redis.call('HDEL', KEYS[4], id)
redis.call('ZREM', KEYS[5], id)
changed()
return 1
`)

// memberScript adds (ARGV[4] "add") an account after the group's last
// member, or removes ("remove") it, counting the change only when the list
// changes: adding a member twice or removing a non-member is a no-op the
// relay may repeat from every instance. It answers 0 if the group does not
// exist and 2 if an account to add does not.
//
// KEYS: version, group, group:members, acct:created. ARGV: channel, group
// ID, account ID, "add" or "remove".
var memberScript = goredis.NewScript(changedLua + membersLua + `
local id, acct = ARGV[2], ARGV[3]
if redis.call('HEXISTS', KEYS[2], id) == 0 then return 0 end
local list = members(KEYS[3], id)
if ARGV[4] == 'add' then
	if redis.call('HEXISTS', KEYS[4], acct) == 0 then return 2 end
	for _, m in ipairs(list) do
		if m == acct then return 1 end
	end
	list[#list + 1] = acct
else
	local gone
	list, gone = without(list, acct)
	if not gone then return 1 end
end
setMembers(KEYS[3], id, list)
changed()
return 1
`)

// CreateGroup stores g with its Members in their order, in one step;
// store.ErrConflict if its ID or name exists, store.ErrNotFound (and
// nothing stored) if a member account does not exist. A member listed
// twice is stored once, at its first place.
func (s *Store) CreateGroup(ctx context.Context, g store.Group) error {
	info, err := json.Marshal(groupInfo{Name: g.Name, Platform: g.Platform, Created: unixMs(g.CreatedAt)})
	if err != nil {
		return fmt.Errorf("redis: create group %q: %w", g.ID, err)
	}
	args := make([]any, 0, 4+len(g.Members))
	args = append(args, s.changesChannel(), string(g.ID), g.Name, info)
	for _, m := range g.Members {
		args = append(args, string(m))
	}
	v, err := createGroupScript.Run(ctx, s.rdb, s.cfg.createGroup, args...).Result()
	if err != nil {
		return fmt.Errorf("redis: create group %q: %w", g.ID, err)
	}
	switch v := v.(type) {
	case string:
		return fmt.Errorf("redis: create group %q: account %q: %w", g.ID, v, store.ErrNotFound)
	case int64:
		if v == replyConflict {
			return fmt.Errorf("redis: create group %q: %w", g.ID, store.ErrConflict)
		}
		return nil
	}
	return fmt.Errorf("redis: create group %q: %w: %T", g.ID, errReply, v)
}

// GetGroup returns the group with id and its members in the order they
// were added, read in one step.
func (s *Store) GetGroup(ctx context.Context, id store.GroupID) (store.Group, error) {
	v, err := getGroupScript.Run(ctx, s.rdb, s.cfg.getGroup, string(id)).Result()
	if errors.Is(err, goredis.Nil) {
		return store.Group{}, fmt.Errorf("redis: get group %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Group{}, fmt.Errorf("redis: get group %q: %w", id, err)
	}
	vals, present, err := replyStrings(v, 2)
	if err != nil {
		return store.Group{}, fmt.Errorf("redis: get group %q: %w", id, err)
	}
	g, err := decodeGroup(string(id), vals[0], vals[1], present[1])
	if err != nil {
		return store.Group{}, fmt.Errorf("redis: get group %q: %w", id, err)
	}
	return g, nil
}

// ListGroups returns every group with its members, ordered by creation
// (ties in insertion order), in one round trip.
func (s *Store) ListGroups(ctx context.Context) ([]store.Group, error) {
	v, err := listGroupsScript.Run(ctx, s.rdb, s.cfg.listGroups).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: list groups: %w", err)
	}
	ids, parts, err := listReply(v, 2)
	if err != nil {
		return nil, fmt.Errorf("redis: list groups: %w", err)
	}
	out := make([]store.Group, 0, len(ids))
	for _, id := range ids {
		info, ok := parts[0][id]
		if !ok {
			continue
		}
		members, hasMembers := parts[1][id]
		g, err := decodeGroup(id, info, members, hasMembers)
		if err != nil {
			return nil, fmt.Errorf("redis: list groups: %w", err)
		}
		out = append(out, g)
	}
	slices.SortStableFunc(out, func(a, b store.Group) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// decodeGroup assembles a group from its info and member list.
func decodeGroup(id, info, members string, hasMembers bool) (store.Group, error) {
	var gi groupInfo
	if err := json.Unmarshal([]byte(info), &gi); err != nil {
		return store.Group{}, fmt.Errorf("group %q: %w", id, err)
	}
	g := store.Group{ID: store.GroupID(id), Name: gi.Name, Platform: gi.Platform, CreatedAt: fromUnixMs(gi.Created)}
	if hasMembers {
		if err := json.Unmarshal([]byte(members), &g.Members); err != nil {
			return store.Group{}, fmt.Errorf("group %q: members: %w", id, err)
		}
		if len(g.Members) == 0 {
			g.Members = nil
		}
	}
	return g, nil
}

// DeleteGroup removes the group and its memberships; the accounts stay.
func (s *Store) DeleteGroup(ctx context.Context, id store.GroupID) error {
	n, err := replyInt(deleteGroupScript.Run(ctx, s.rdb, s.cfg.deleteGroup, s.changesChannel(), string(id)).Result())
	if err != nil {
		return fmt.Errorf("redis: delete group %q: %w", id, err)
	}
	if n == replyNotFound {
		return fmt.Errorf("redis: delete group %q: %w", id, store.ErrNotFound)
	}
	return nil
}

// AddGroupMember appends the account to the group's members, or does
// nothing if it is one already; store.ErrNotFound if the group or the
// account does not exist. The checks and the write are one script, so an
// account deleted at the same moment cannot be left behind as a member.
func (s *Store) AddGroupMember(ctx context.Context, id store.GroupID, acct store.AccountID) error {
	return s.changeMember(ctx, "add member", id, acct, "add")
}

// RemoveGroupMember takes the account out of the group; store.ErrNotFound
// if the group does not exist. Removing an account that is not a member
// does nothing: the account may just have been deleted, which already
// removed it.
func (s *Store) RemoveGroupMember(ctx context.Context, id store.GroupID, acct store.AccountID) error {
	return s.changeMember(ctx, "remove member", id, acct, "remove")
}

func (s *Store) changeMember(ctx context.Context, what string, id store.GroupID, acct store.AccountID, op string) error {
	n, err := replyInt(memberScript.Run(ctx, s.rdb, s.cfg.memberOf, s.changesChannel(), string(id), string(acct), op).Result())
	if err != nil {
		return fmt.Errorf("redis: %s %q of group %q: %w", what, acct, id, err)
	}
	switch n {
	case replyNotFound:
		return fmt.Errorf("redis: %s %q of group %q: %w", what, acct, id, store.ErrNotFound)
	case replyMemberNotFound:
		return fmt.Errorf("redis: %s %q of group %q: account %q: %w", what, acct, id, acct, store.ErrNotFound)
	}
	return nil
}
