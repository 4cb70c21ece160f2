package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultRedisPrefix namespaces every key of the shared store.
const DefaultRedisPrefix = "crs:"

// Redis configures the shared store. It is zero (Enabled false) unless
// REDIS_URL or REDIS_HOST is set: then crs runs in shared mode.
type Redis struct {
	// Addrs are host:port pairs: one for a single server; several seed a
	// Cluster, or name the Sentinels when MasterName is set.
	Addrs    []string
	Username string
	Password string
	DB       int
	TLS      bool
	// MasterName selects Sentinel: the name of the monitored master.
	MasterName string
	// Cluster forces Cluster mode with a single seed address.
	Cluster bool
	// Prefix starts every key (REDIS_KEY_PREFIX).
	Prefix string
}

// Enabled reports whether shared mode is configured.
func (r Redis) Enabled() bool { return len(r.Addrs) > 0 }

// Shared reports whether the configuration selects the shared store.
func (c Config) Shared() bool { return c.Redis.Enabled() }

// redis reads REDIS_URL, else the spec's REDIS_HOST, REDIS_PORT,
// REDIS_PASSWORD, REDIS_DB and REDIS_ENABLE_TLS.
//
// REDIS_URL is redis:// or rediss:// (TLS), with an optional user and
// password, one or more comma-separated host:port, an optional /DB, and the
// query options cluster=true (Cluster with one seed address; several
// addresses without a master name mean Cluster anyway) and
// sentinel_master=NAME (the addresses are Sentinels).
func (p *parser) redis() Redis {
	r := Redis{Prefix: p.str("REDIS_KEY_PREFIX", DefaultRedisPrefix)}
	if strings.ContainsAny(r.Prefix, " \t\r\n") {
		p.fail("REDIS_KEY_PREFIX", fmt.Sprintf("must not contain spaces, got %q", r.Prefix))
	}
	if raw := strings.TrimSpace(p.getenv("REDIS_URL")); raw != "" {
		if err := parseRedisURL(raw, &r); err != nil {
			p.fail("REDIS_URL", err.Error())
			return Redis{}
		}
		return r
	}
	host := strings.TrimSpace(p.getenv("REDIS_HOST"))
	if host == "" {
		return r
	}
	port := p.intRange("REDIS_PORT", 6379, 1, 65535)
	r.Addrs = []string{net.JoinHostPort(host, strconv.Itoa(port))}
	r.Password = p.getenv("REDIS_PASSWORD")
	r.DB = p.intRange("REDIS_DB", 0, 0, 1<<20)
	r.TLS = p.boolean("REDIS_ENABLE_TLS", false)
	return r
}

func parseRedisURL(raw string, r *Redis) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		return fmt.Errorf("want redis://[user:password@]host:port[,host:port…][/db], or rediss:// for TLS; got %q", redact(raw))
	}
	r.TLS = u.Scheme == "rediss"
	if u.User != nil {
		r.Username = u.User.Username()
		r.Password, _ = u.User.Password()
	}
	for _, a := range strings.Split(u.Host, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			a = net.JoinHostPort(a, "6379")
		}
		r.Addrs = append(r.Addrs, a)
	}
	if len(r.Addrs) == 0 {
		return fmt.Errorf("no host in %q", redact(raw))
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 {
			return fmt.Errorf("database %q in %q is not a number", db, redact(raw))
		}
		r.DB = n
	}
	q := u.Query()
	r.MasterName = q.Get("sentinel_master")
	if v := q.Get("cluster"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("cluster=%q: want true or false", v)
		}
		r.Cluster = b
	}
	for k := range q {
		if k != "sentinel_master" && k != "cluster" {
			return fmt.Errorf("unknown option %q (known: cluster, sentinel_master)", k)
		}
	}
	if r.DB != 0 && (r.Cluster || (len(r.Addrs) > 1 && r.MasterName == "")) {
		return fmt.Errorf("a Redis Cluster has only database 0, got /%d", r.DB)
	}
	return nil
}

// redact hides the password of a URL in error messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		if i := strings.LastIndex(raw, "@"); i >= 0 {
			return "…@" + raw[i+1:]
		}
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// defaultSlotLease is CONCURRENCY_LEASE's default.
const defaultSlotLease = 60 * time.Second
