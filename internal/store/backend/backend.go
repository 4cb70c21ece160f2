// Package backend opens the store the configuration selects: the embedded
// SQLite file in DATA_DIR, or the shared Redis when REDIS_URL or REDIS_HOST
// is set. It is the one place outside the backends that knows both; every
// caller gets a store.Store and nothing else.
package backend

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/crs-relay/crs/internal/config"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/redis"
	"github.com/crs-relay/crs/internal/store/sqlite"
)

// DBFile is the embedded store's file name inside DATA_DIR.
const DBFile = "crs.db"

// Connection settings of the shared store, after the original's (connect
// 10 s, command 5 s, 3 retries).
const (
	dialTimeout  = 10 * time.Second
	readTimeout  = 5 * time.Second
	writeTimeout = 5 * time.Second
	maxRetries   = 3
)

// Open opens the store cfg selects.
func Open(ctx context.Context, cfg config.Config) (store.Store, error) {
	if !cfg.Shared() {
		return sqlite.Open(ctx, filepath.Join(cfg.DataDir, DBFile), sqlite.Options{Location: cfg.Location})
	}
	rdb := NewRedisClient(cfg.Redis)
	s, err := redis.Open(ctx, redis.Options{Client: rdb, OwnClient: true, Prefix: cfg.Redis.Prefix, Location: cfg.Location})
	if err != nil {
		rdb.Close()
		return nil, fmt.Errorf("shared store at %v: %w", cfg.Redis.Addrs, err)
	}
	return s, nil
}

// NewRedisClient makes the client r describes: Sentinel when it names a
// master, Cluster when it has several addresses or says so, else a single
// server.
func NewRedisClient(r config.Redis) goredis.UniversalClient {
	o := &goredis.UniversalOptions{
		Addrs:         r.Addrs,
		Username:      r.Username,
		Password:      r.Password,
		DB:            r.DB,
		MasterName:    r.MasterName,
		IsClusterMode: r.Cluster,
		DialTimeout:   dialTimeout,
		ReadTimeout:   readTimeout,
		WriteTimeout:  writeTimeout,
		MaxRetries:    maxRetries,
	}
	if r.TLS {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return goredis.NewUniversalClient(o)
}

// RoundTrips returns how many Redis round trips st made since it was opened
// (one command, pipeline or script each), and false for a store that does
// not count them (the embedded one).
func RoundTrips(st store.Store) (uint64, bool) {
	c, ok := st.(interface{ RoundTrips() uint64 })
	if !ok {
		return 0, false
	}
	return c.RoundTrips(), true
}

// ErrEmbeddedOnly is returned by operations that exist only for the
// embedded file (backup, restore) when the shared store is configured.
var ErrEmbeddedOnly = errors.New("this works on the embedded store only; the shared store is Redis: back it up with Redis persistence (AOF everysec, RDB snapshots) — see docs/deploy.md")

// Durability reports what is wrong with how the store keeps its data, in
// plain words, for `crs doctor`: nothing for the embedded file (its own
// checks are elsewhere), the server's persistence settings for Redis.
func Durability(ctx context.Context, st store.Store) ([]string, error) {
	d, ok := st.(interface {
		Durability(context.Context) ([]string, error)
	})
	if !ok {
		return nil, nil
	}
	return d.Durability(ctx)
}
