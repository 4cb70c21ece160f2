// Package redis is the shared store: several crs instances behind one load
// balancer keep all state in one Redis (single node, Sentinel or Cluster,
// through go-redis's UniversalClient) and see the same keys, accounts,
// sessions, usage and limit counters.
//
// Key layout. Every key starts with Options.Prefix (default "crs:"). What
// must change together lives under one hash tag, so the Lua scripts that
// change it atomically also run on Redis Cluster:
//
//	{cfg}   keys, accounts, groups, the admin, the change version
//	{u}     usage records, their indexes and rollups
//
// Everything else (sticky sessions, locks, admin sessions, pending OAuth,
// limit counters) is one key per item, so single-key commands and scripts
// need no tag and spread over the cluster. No request path uses SCAN or
// KEYS.
//
// The {cfg} keys. Keys, accounts and groups are tables kept as hashes with
// the item's ID as the field, one hash per part that its own writer
// replaces (a script cannot rewrite one field of a JSON value without
// decoding it, and cjson would round 64-bit numbers), so a list is one
// HGETALL per part and reading one item is one HGET per part, all in one
// script. Times are unix milliseconds.
//
//	{cfg}:version         the change version (INCR); see ChangeVersion
//	{cfg}:seq             creation sequence shared by the *:order sets
//	{cfg}:schema          the layout version (migrate.go)
//	{cfg}:key:fixed       ID → JSON hash, hint, created (set once)
//	{cfg}:key:edit        ID → JSON of the fields UpdateKey replaces
//	{cfg}:key:activated   ID → first activation (HSETNX)
//	{cfg}:key:used        ID → last use (TouchKeys)
//	{cfg}:key:hash        key hash → ID
//	{cfg}:key:order       sorted set: ID by creation sequence
//	{cfg}:acct:created    ID → creation time; the account exists
//	{cfg}:acct:edit       ID → JSON of the admin's fields but the secret
//	{cfg}:acct:secret     ID → sealed credential (raw bytes)
//	{cfg}:acct:updated    ID → UpdatedAt
//	{cfg}:acct:cooldown   ID → JSON kind, until, reason
//	{cfg}:acct:quota      ID → JSON quota
//	{cfg}:acct:used       ID → last use (TouchAccounts)
//	{cfg}:acct:order      sorted set: ID by creation sequence
//	{cfg}:group           ID → JSON name, platform, created
//	{cfg}:group:name      name → ID
//	{cfg}:group:members   ID → JSON array of account IDs in added order
//	{cfg}:group:order     sorted set: ID by creation sequence
//	{cfg}:admin           JSON of the admin login
//	{cfg}:settings        name → value (raw bytes)
//
// Lists sort by creation time, ties in creation sequence, as the embedded
// store orders by created_at, rowid. Every script that changes what
// ChangeVersion covers increments {cfg}:version and PUBLISHes on
// <prefix>changes in the same step; the writes the embedded store leaves
// out of change_version (last-use touches, a quota or activation that does
// not change, a member added twice) leave both alone.
//
// The one-per-item keys:
//
//	sticky:<session>      account ID, PX the binding's TTL
//	lock:<name>           owner's random token, PX the lease
//	session:<token hash>  JSON admin session, PXAT its ExpiresAt
//	oauth:<id>            JSON pending onboarding, PXAT its ExpiresAt
//
// Times that decide leases (locks, concurrency slots) come from the Redis
// server's clock (TIME inside the scripts, or relative PX), so instances
// with skewed clocks agree.
package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/crs-relay/crs/internal/store"
)

// DefaultPrefix namespaces every key when Options.Prefix is empty.
const DefaultPrefix = "crs:"

// schemaVersion is the layout this binary writes (see migrate.go). Open
// refuses a newer one.
const schemaVersion = 2

// Options configure Open.
type Options struct {
	// Client is the connection to use. Required; Open does not close it
	// unless OwnClient is set.
	Client goredis.UniversalClient
	// OwnClient makes Close close Client.
	OwnClient bool
	// Prefix starts every key; empty means DefaultPrefix.
	Prefix string
	// Location is the zone of daily rollups and day boundaries (the
	// configured TZ). Nil means time.Local.
	Location *time.Location
}

// Store is the Redis backend of store.Store.
type Store struct {
	rdb    goredis.UniversalClient
	own    bool
	prefix string
	loc    *time.Location

	changes   chan struct{}
	subCancel context.CancelFunc
	subDone   chan struct{}
	closeOnce sync.Once

	counters *Counters
	trips    *roundTrips
	cfg      *cfgLayout // the {cfg} key names and the scripts' KEYS lists
}

var _ store.Store = (*Store)(nil)

// Open checks the connection, loads the scripts Redis lacks, writes or
// checks the layout version and brings an older layout up to date, and
// starts listening for change announcements of other instances.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.Client == nil {
		return nil, errors.New("redis: Options.Client is required")
	}
	s := &Store{rdb: o.Client, own: o.OwnClient, prefix: o.Prefix, loc: o.Location}
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	if s.loc == nil {
		s.loc = time.Local
	}
	s.cfg = newCfgLayout(s.cfgKey)
	s.trips = &roundTrips{}
	if s.own {
		// Only a client of our own: hooks cannot be removed, and a shared
		// client would count every store on it.
		s.rdb.AddHook(s.trips)
	}
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("redis: ping: %w", err)
	}
	// The scripts first: the migration pipelines one of them.
	if err := ensureScripts(ctx, s.rdb, storeScripts); err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	s.counters = newCounters(s.rdb, s.prefix+"lim:")
	s.listen()
	return s, nil
}

// cfgKey names a key under the {cfg} tag.
func (s *Store) cfgKey(name string) string { return s.prefix + "{cfg}:" + name }

// usageKey names a key under the {u} tag.
func (s *Store) usageKey(name string) string { return s.prefix + "{u}:" + name }

// key names an untagged key.
func (s *Store) key(name string) string { return s.prefix + name }

// changesChannel is where writers announce a change.
func (s *Store) changesChannel() string { return s.prefix + "changes" }

// Backend names the implementation.
func (s *Store) Backend() string { return "redis" }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: ping: %w", err)
	}
	return nil
}

// ChangeVersion reads the counter every change to keys, accounts, groups
// and the admin increments.
func (s *Store) ChangeVersion(ctx context.Context) (uint64, error) {
	v, err := s.rdb.Get(ctx, s.cfgKey("version")).Result()
	if errors.Is(err, goredis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("redis: change version: %w", err)
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redis: change version %q: %w", v, err)
	}
	return n, nil
}

// Changes receives after any instance announced a change.
func (s *Store) Changes() <-chan struct{} { return s.changes }

// Counters returns the shared limit counters.
func (s *Store) Counters() store.LimitCounters { return s.counters }

// listen subscribes to change announcements and forwards them, coalesced,
// to Changes. The subscription reconnects by itself (go-redis); a message
// lost meanwhile is covered by the callers' polling.
func (s *Store) listen() {
	s.changes = make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	s.subCancel, s.subDone = cancel, make(chan struct{})
	sub := s.rdb.Subscribe(ctx, s.changesChannel())
	go func() {
		defer close(s.subDone)
		defer sub.Close()
		ch := sub.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-ch:
				if !ok {
					return
				}
				select {
				case s.changes <- struct{}{}:
				default:
				}
			}
		}
	}()
}

// Close stops listening and, with OwnClient, closes the client.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.subCancel()
		<-s.subDone
		if s.own {
			err = s.rdb.Close()
		}
	})
	return err
}
