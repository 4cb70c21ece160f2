package admin

import (
	"net/netip"
	"sync"
	"time"
)

// Login throttle defaults: after loginMaxFailures failed logins from one
// client within loginWindow, further attempts are refused until the oldest
// of them leaves the window.
const (
	loginMaxFailures = 5
	loginWindow      = 15 * time.Minute
	loginMaxClients  = 10000
)

// loginThrottle counts failed logins per client address. It lives in
// memory: a restart forgets it, which costs an attacker a restart per five
// guesses. Its size is bounded so a flood of addresses cannot grow it
// without limit.
type loginThrottle struct {
	now        func() time.Time
	max        int           // failures allowed in window
	window     time.Duration // how long a failure counts
	maxClients int           // bound on the map

	mu       sync.Mutex
	failures map[string][]time.Time // oldest first, at most max entries
}

func newLoginThrottle(now func() time.Time) *loginThrottle {
	return &loginThrottle{
		now:        now,
		max:        loginMaxFailures,
		window:     loginWindow,
		maxClients: loginMaxClients,
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
func (t *loginThrottle) recent(key string, now time.Time) []time.Time {
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

// Allow reports whether addr may try to log in now, and if not, how long
// it must wait.
func (t *loginThrottle) Allow(addr string) (ok bool, retryAfter time.Duration) {
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

// Fail records a failed login from addr.
func (t *loginThrottle) Fail(addr string) {
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

// Succeed forgets the failures of addr: the person got the password right.
func (t *loginThrottle) Succeed(addr string) {
	key := throttleKey(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.failures, key)
}

// makeRoom frees a slot in a full map: first by dropping clients whose
// failures all expired, else by dropping the client whose latest failure
// is oldest (the least active one). Callers hold mu. It scans the map,
// which is fine because it only runs when the map is full.
func (t *loginThrottle) makeRoom(now time.Time) {
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
