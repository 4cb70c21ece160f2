package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

const (
	key32 = "0123456789abcdef0123456789abcdef"
	jwt32 = "fedcba9876543210fedcba9876543210"
)

func TestRedisSettings(t *testing.T) {
	secrets := map[string]string{"ENCRYPTION_KEY": key32, "JWT_SECRET": jwt32}
	for _, c := range []struct {
		name string
		env  map[string]string
		want Redis
	}{
		{"embedded by default", nil, Redis{Prefix: "crs:"}},
		{"url", map[string]string{"REDIS_URL": "redis://:s3cret@10.0.0.5:6380/2"},
			Redis{Addrs: []string{"10.0.0.5:6380"}, Password: "s3cret", DB: 2, Prefix: "crs:"}},
		{"tls url, user, default port", map[string]string{"REDIS_URL": "rediss://crs:pw@redis.internal"},
			Redis{Addrs: []string{"redis.internal:6379"}, Username: "crs", Password: "pw", TLS: true, Prefix: "crs:"}},
		{"several hosts are a cluster", map[string]string{"REDIS_URL": "redis://a:7000,b:7001,c:7002", "REDIS_KEY_PREFIX": "team1:"},
			Redis{Addrs: []string{"a:7000", "b:7001", "c:7002"}, Prefix: "team1:"}},
		{"one cluster seed", map[string]string{"REDIS_URL": "redis://a:7000?cluster=true"},
			Redis{Addrs: []string{"a:7000"}, Cluster: true, Prefix: "crs:"}},
		{"sentinel", map[string]string{"REDIS_URL": "redis://s1:26379,s2:26379/1?sentinel_master=mymaster"},
			Redis{Addrs: []string{"s1:26379", "s2:26379"}, DB: 1, MasterName: "mymaster", Prefix: "crs:"}},
		{"spec variables", map[string]string{"REDIS_HOST": "127.0.0.1", "REDIS_PORT": "6390", "REDIS_PASSWORD": "p", "REDIS_DB": "3", "REDIS_ENABLE_TLS": "true"},
			Redis{Addrs: []string{"127.0.0.1:6390"}, Password: "p", DB: 3, TLS: true, Prefix: "crs:"}},
		{"url wins over host", map[string]string{"REDIS_URL": "redis://x:1", "REDIS_HOST": "y"},
			Redis{Addrs: []string{"x:1"}, Prefix: "crs:"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := map[string]string{}
			for k, v := range secrets {
				m[k] = v
			}
			for k, v := range c.env {
				m[k] = v
			}
			cfg, err := Load(env(m))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.Redis, c.want) {
				t.Errorf("Redis = %+v, want %+v", cfg.Redis, c.want)
			}
			if cfg.Shared() != (len(c.want.Addrs) > 0) {
				t.Errorf("Shared() = %v", cfg.Shared())
			}
		})
	}
}

func TestRedisSettingsRefused(t *testing.T) {
	secrets := map[string]string{"ENCRYPTION_KEY": key32, "JWT_SECRET": jwt32}
	for _, c := range []struct {
		env      map[string]string
		name     string
		mustHide string
	}{
		{map[string]string{"REDIS_URL": "http://x:1"}, "REDIS_URL", ""},
		{map[string]string{"REDIS_URL": "redis://:topsecret@x:1/abc"}, "REDIS_URL", "topsecret"},
		{map[string]string{"REDIS_URL": "redis://x:1?db=2"}, "REDIS_URL", ""},
		{map[string]string{"REDIS_URL": "redis://a:1,b:2/3"}, "REDIS_URL", ""},
		{map[string]string{"REDIS_URL": "redis://x:1?cluster=perhaps"}, "REDIS_URL", ""},
		{map[string]string{"REDIS_HOST": "x", "REDIS_PORT": "0"}, "REDIS_PORT", ""},
		{map[string]string{"REDIS_HOST": "x", "REDIS_ENABLE_TLS": "yes please"}, "REDIS_ENABLE_TLS", ""},
		{map[string]string{"REDIS_KEY_PREFIX": "a b"}, "REDIS_KEY_PREFIX", ""},
		{map[string]string{"CONCURRENCY_LEASE": "0"}, "CONCURRENCY_LEASE", ""},
	} {
		m := map[string]string{}
		for k, v := range secrets {
			m[k] = v
		}
		for k, v := range c.env {
			m[k] = v
		}
		_, err := Load(env(m))
		if err == nil || !strings.Contains(err.Error(), c.name) {
			t.Errorf("%v: err = %v, want one naming %s", c.env, err, c.name)
			continue
		}
		if c.mustHide != "" && strings.Contains(err.Error(), c.mustHide) {
			t.Errorf("%v: the error shows the password: %v", c.env, err)
		}
	}
}

// TestSharedModeNeedsExplicitSecrets: a secret generated into one
// instance's DATA_DIR cannot be shared, so shared mode refuses to start
// without both, naming each missing one.
func TestSharedModeNeedsExplicitSecrets(t *testing.T) {
	for _, c := range []struct {
		env     map[string]string
		missing []string
	}{
		{map[string]string{"REDIS_URL": "redis://127.0.0.1:6379"}, []string{"ENCRYPTION_KEY", "JWT_SECRET"}},
		{map[string]string{"REDIS_HOST": "127.0.0.1", "ENCRYPTION_KEY": key32}, []string{"JWT_SECRET"}},
		{map[string]string{"REDIS_URL": "redis://127.0.0.1:6379", "JWT_SECRET": jwt32}, []string{"ENCRYPTION_KEY"}},
	} {
		_, err := Load(env(c.env))
		if err == nil {
			t.Errorf("%v: started without explicit secrets", c.env)
			continue
		}
		for _, name := range c.missing {
			if !strings.Contains(err.Error(), name+": shared mode") {
				t.Errorf("%v: err = %v, want it to name %s", c.env, err, name)
			}
		}
	}
	// Embedded mode still generates them.
	if _, err := Load(env(nil)); err != nil {
		t.Errorf("embedded mode without secrets: %v", err)
	}
}

func TestSlotLease(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil || c.SlotLease != time.Minute {
		t.Errorf("default CONCURRENCY_LEASE = %v, %v; want 1m", c.SlotLease, err)
	}
	c, err = Load(env(map[string]string{"CONCURRENCY_LEASE": "15s"}))
	if err != nil || c.SlotLease != 15*time.Second {
		t.Errorf("CONCURRENCY_LEASE=15s → %v, %v", c.SlotLease, err)
	}
}
