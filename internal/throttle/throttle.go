// Package throttle counts failed attempts per client address (admin
// logins, key lookups) and refuses a client that failed too often lately.
// It lives in memory: a restart forgets it, which costs an attacker a
// restart per few guesses. Its size is bounded so a flood of addresses
// cannot grow it without limit.
package throttle

import (
	"net/netip"
	"sync"
	"time"
)

// maxClients bounds the clients remembered.
const maxClients = 10000

// Throttle refuses a client after max failures within window, until the
// oldest of them leaves the window. Safe for concurrent use.
type Throttle struct {
	now        func() time.Time
	max        int           // failures allowed in window
	window     time.Duration // how long a failure counts
	maxClients int           // bound on the map

	mu       sync.Mutex
	failures map[string][]time.Time // oldest first, at most max entries
}

// New returns a Throttle allowing max failures per window; now nil is
// time.Now.
func New(max int, window time.Duration, now func() time.Time) *Throttle {
	if now == nil {
		now = time.Now
	}
	return &Throttle{
		now:        now,
		max:        max,
		window:     window,
		maxClients: maxClients,
		failures:   make(map[string][]time.Time),
	}
}

// throttleKey groups addresses an attacker controls together: one IPv4
// address, or one IPv6 /64 (a single host usually owns a whole /64, so
// counting per address would give it 2^64 tries).
func throttleKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// recent drops the failures of key that left the window and returns the
// rest. Callers hold mu.
func (t *Throttle) recent(key string, now time.Time) []time.Time {
	fs := t.failures[key]
	i := 0
	for i < len(fs) && now.Sub(fs[i]) >= t.window {
		i++
	}
	if i == len(fs) {
		delete(t.failures, key)
		return nil
	}
	if i > 0 {
		fs = fs[i:]
		t.failures[key] = fs
	}
	return fs
}

// Allow reports whether addr may try now, and if not, how long
// it must wait.
func (t *Throttle) Allow(addr string) (ok bool, retryAfter time.Duration) {
	key := throttleKey(addr)
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	fs := t.recent(key, now)
	if len(fs) < t.max {
		return true, 0
	}
	return false, fs[0].Add(t.window).Sub(now)
}

// Fail records a failed attempt from addr.
func (t *Throttle) Fail(addr string) {
	key := throttleKey(addr)
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	fs := t.recent(key, now)
	if fs == nil && len(t.failures) >= t.maxClients {
		t.makeRoom(now)
	}
	fs = append(fs, now)
	if len(fs) > t.max {
		fs = fs[len(fs)-t.max:]
	}
	t.failures[key] = fs
}

// Succeed forgets the failures of addr: the person got it right.
func (t *Throttle) Succeed(addr string) {
	key := throttleKey(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.failures, key)
}

// makeRoom frees a slot in a full map: first by dropping clients whose
// failures all expired, else by dropping the client whose latest failure
// is oldest (the least active one). Callers hold mu. It scans the map,
// which is fine because it only runs when the map is full.
func (t *Throttle) makeRoom(now time.Time) {
	var victim string
	var victimLast time.Time
	for k, fs := range t.failures {
		last := fs[len(fs)-1]
		if now.Sub(last) >= t.window {
			delete(t.failures, k)
			continue
		}
		if victim == "" || last.Before(victimLast) {
			victim, victimLast = k, last
		}
	}
	if len(t.failures) >= t.maxClients && victim != "" {
		delete(t.failures, victim)
	}
}
