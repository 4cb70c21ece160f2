package redis

import (
	"context"
	"fmt"
	"strings"
)

// Durability reads the server settings a shared store depends on and
// returns what is wrong with them in plain words: no append-only file (a
// crash loses every write since the last snapshot), or a maxmemory policy
// that evicts keys (an evicted key is lost state). A server that refuses
// CONFIG (managed services often do) yields a single note saying so.
func (s *Store) Durability(ctx context.Context) ([]string, error) {
	get := func(name string) (string, error) {
		m, err := s.rdb.ConfigGet(ctx, name).Result()
		if err != nil {
			return "", err
		}
		return m[name], nil
	}
	aof, err := get("appendonly")
	if err != nil {
		if strings.Contains(strings.ToLower(err.Error()), "unknown command") || strings.Contains(strings.ToLower(err.Error()), "noperm") {
			return []string{"the server does not let crs read its settings (CONFIG GET); make sure it keeps an append-only file (appendonly yes, appendfsync everysec) and never evicts keys"}, nil
		}
		return nil, fmt.Errorf("redis: CONFIG GET: %w", err)
	}
	var findings []string
	if aof != "yes" {
		findings = append(findings, "appendonly is "+quote(aof)+": a crash or restart loses every usage record and credential change since the last snapshot; set appendonly yes and appendfsync everysec")
	} else if fsync, err := get("appendfsync"); err == nil && fsync == "no" {
		findings = append(findings, "appendfsync is no: the operating system decides when writes reach the disk; set appendfsync everysec")
	}
	if policy, err := get("maxmemory-policy"); err == nil && policy != "noeviction" {
		findings = append(findings, "maxmemory-policy is "+quote(policy)+": Redis may evict crs's keys (accounts and usage, or limit counters and sessions) when memory runs out; set noeviction")
	}
	return findings, nil
}

func quote(s string) string {
	if s == "" {
		return `""`
	}
	return s
}
