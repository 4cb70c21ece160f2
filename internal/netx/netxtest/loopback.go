// Package netxtest provides real proxy servers on 127.0.0.1 for tests: an
// HTTP forward proxy (absolute-form and CONNECT, optionally over TLS) and a
// SOCKS5 server (RFC 1928 CONNECT with RFC 1929 user/password). Both count
// what they forward and reject, stop on tb.Cleanup, and refuse to connect
// anywhere but 127.0.0.1, so a test can never leak traffic off the machine.
package netxtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// dialLoopback connects to hostport if its host is 127.0.0.1 or localhost,
// always on 127.0.0.1; anything else is refused before any packet leaves.
func dialLoopback(ctx context.Context, hostport string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	if !allowedHost(host) {
		return nil, fmt.Errorf("netxtest: refusing non-loopback target %q", hostport)
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	return d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", port))
}

func allowedHost(host string) bool { return host == "127.0.0.1" || host == "localhost" }

// tunnels tracks hijacked or raw connections so Cleanup can close them and
// wait for their goroutines, which net/http's server no longer owns.
type tunnels struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// track registers conns and counts one running goroutine that must call
// done with the same conns. It reports false (and closes conns) once
// shutdown began. Adding under the mutex that closeAll takes keeps the
// WaitGroup's Add ordered before its Wait.
func (t *tunnels) track(conns ...net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	if t.conns == nil {
		t.conns = make(map[net.Conn]struct{})
	}
	for _, c := range conns {
		t.conns[c] = struct{}{}
	}
	t.wg.Add(1)
	return true
}

// done closes and forgets conns and ends the goroutine counted by track.
func (t *tunnels) done(conns ...net.Conn) {
	t.mu.Lock()
	for _, c := range conns {
		delete(t.conns, c)
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Done()
}

// closeAll closes every tracked connection, refuses new ones, and waits for
// the goroutines started with t.wg to finish.
func (t *tunnels) closeAll() {
	t.mu.Lock()
	t.closed = true
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// splice copies both ways between a and b until either side ends, then
// closes both.
func splice(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	a.Close()
	b.Close()
	<-done
}
