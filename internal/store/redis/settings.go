package redis

import (
	"context"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/crs-relay/crs/internal/store"
)

// Settings are one hash, {cfg}:settings, name → the value's bytes.

// setSettingScript stores (ARGV[3] "set") or removes ("del") a setting and
// counts the change; removing a name that is not set changes nothing.
//
// KEYS: version, settings. ARGV: channel, name, "set" or "del", value.
var setSettingScript = goredis.NewScript(changedLua + `
if ARGV[3] == 'del' then
	if redis.call('HDEL', KEYS[2], ARGV[2]) == 1 then changed() end
else
	redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
	changed()
end
return 1
`)

// GetSetting returns the value stored under name; store.ErrNotFound when
// unset. An empty value is a value.
func (s *Store) GetSetting(ctx context.Context, name string) ([]byte, error) {
	v, err := s.rdb.HGet(ctx, s.cfg.settings, name).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("redis: get setting %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("redis: get setting %q: %w", name, err)
	}
	return v, nil
}

// SetSetting stores value under name, or removes name when value is nil.
func (s *Store) SetSetting(ctx context.Context, name string, value []byte) error {
	op := "set"
	if value == nil {
		op = "del"
	}
	if err := setSettingScript.Run(ctx, s.rdb, s.cfg.setSetting, s.changesChannel(), name, op, value).Err(); err != nil {
		return fmt.Errorf("redis: set setting %q: %w", name, err)
	}
	return nil
}
