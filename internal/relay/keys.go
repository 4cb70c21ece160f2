package relay

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
)

// Key authentication failures. Their text reaches the client.
var (
	ErrKeyMissing   = errors.New("crs: no relay key: send it in x-api-key or Authorization: Bearer")
	ErrKeyMalformed = errors.New("crs: malformed relay key: a relay key is cr_ followed by 64 hex characters")
	ErrKeyUnknown   = errors.New("crs: invalid relay key")
	ErrKeyDisabled  = errors.New("crs: this relay key is disabled")
	ErrKeyExpired   = errors.New("crs: this relay key has expired")
)

// KeyCache authenticates relay keys from memory. It holds every key by hash
// and is reloaded when the store's change version moves, so the hot path
// never waits on the store; last-used times are gathered and flushed in
// batches.
type KeyCache struct {
	st  store.Keys
	now func() time.Time

	mu      sync.RWMutex
	byHash  map[string]store.Key
	touched map[store.KeyID]time.Time

	// Store lookups of keys the cache does not know, within the current
	// second (see lookupMiss).
	missMu     sync.Mutex
	missSecond int64
	missCount  int
}

// missLookupsPerSecond bounds the store lookups of keys the cache does not
// know, so a flood of made-up keys cannot turn every request into a query.
const missLookupsPerSecond = 20

// NewKeyCache returns an empty cache; call Reload before use.
func NewKeyCache(st store.Keys, now func() time.Time) *KeyCache {
	if now == nil {
		now = time.Now
	}
	return &KeyCache{st: st, now: now, byHash: map[string]store.Key{}, touched: map[store.KeyID]time.Time{}}
}

// Reload replaces the cache with the store's keys.
func (c *KeyCache) Reload(ctx context.Context) error {
	keys, err := c.st.ListKeys(ctx, true)
	if err != nil {
		return err
	}
	m := make(map[string]store.Key, len(keys))
	for _, k := range keys {
		m[k.Hash] = k
	}
	c.mu.Lock()
	c.byHash = m
	c.mu.Unlock()
	return nil
}

// ExtractKey finds the relay key in a request: x-api-key first, then
// Authorization: Bearer (what the Anthropic SDK 1.x, ANTHROPIC_AUTH_TOKEN,
// Codex and Gemini CLI's Code Assist mode send), then x-goog-api-key and,
// only on the Gemini routes (whose requests drop it before going upstream),
// the ?key= query parameter.
func ExtractKey(r *http.Request) string {
	if v := strings.TrimSpace(r.Header.Get("X-Api-Key")); v != "" {
		return v
	}
	if v := r.Header.Get("Authorization"); v != "" {
		if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
			return strings.TrimSpace(v[7:])
		}
		return ""
	}
	if v := strings.TrimSpace(r.Header.Get("X-Goog-Api-Key")); v != "" {
		return v
	}
	if strings.HasPrefix(r.URL.Path, "/gemini/") {
		return strings.TrimSpace(r.URL.Query().Get("key"))
	}
	return ""
}

// Authenticate returns the key for token, or one of the ErrKey… errors.
func (c *KeyCache) Authenticate(token string) (store.Key, error) {
	if token == "" {
		return store.Key{}, ErrKeyMissing
	}
	if !secret.LooksLikeRelayKey(token) {
		return store.Key{}, ErrKeyMalformed
	}
	h := secret.Hash(token)
	c.mu.RLock()
	k, ok := c.byHash[h]
	c.mu.RUnlock()
	// The map lookup by hash is not constant time, but the hash of a
	// 256-bit random key leaks nothing an attacker can use.
	if !ok {
		if k, ok = c.lookupMiss(h); !ok {
			return store.Key{}, ErrKeyUnknown
		}
	}
	now := c.now()
	switch k.Status(now) {
	case store.KeyActive:
	case store.KeyDisabled:
		return store.Key{}, ErrKeyDisabled
	case store.KeyExpired:
		return store.Key{}, ErrKeyExpired
	default:
		return store.Key{}, ErrKeyUnknown
	}
	c.mu.Lock()
	c.touched[k.ID] = now
	c.mu.Unlock()
	return k, nil
}

// lookupMiss asks the store for a key the cache does not know: one created
// since the last reload (in the console, with the CLI, on another
// instance) works at once instead of after the next reload. A key found is
// kept in the cache. Lookups beyond missLookupsPerSecond answer "unknown"
// without asking.
func (c *KeyCache) lookupMiss(hash string) (store.Key, bool) {
	sec := c.now().Unix()
	c.missMu.Lock()
	if sec != c.missSecond {
		c.missSecond, c.missCount = sec, 0
	}
	c.missCount++
	allowed := c.missCount <= missLookupsPerSecond
	c.missMu.Unlock()
	if !allowed {
		return store.Key{}, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	k, err := c.st.KeyByHash(ctx, hash)
	if err != nil {
		return store.Key{}, false
	}
	c.mu.Lock()
	c.byHash[hash] = k
	c.mu.Unlock()
	return k, true
}

// FlushTouches writes the last-used times gathered since the last flush.
func (c *KeyCache) FlushTouches(ctx context.Context) error {
	c.mu.Lock()
	if len(c.touched) == 0 {
		c.mu.Unlock()
		return nil
	}
	t := c.touched
	c.touched = map[store.KeyID]time.Time{}
	c.mu.Unlock()
	return c.st.TouchKeys(ctx, t)
}
