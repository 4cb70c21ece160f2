package netx_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/netx"
)

// hungSOCKS accepts connections and stalls at a chosen point of the SOCKS5
// handshake, the way an overloaded or half-dead proxy does. closed receives
// once per connection when the client side hangs up.
type hungSOCKS struct {
	ln     net.Listener
	closed chan struct{}
}

// Stall points.
const (
	stallGreeting = "greeting" // never answers the method selection
	stallAuth     = "auth"     // selects user/pass, never answers the credentials
	stallConnect  = "connect"  // accepts the credentials, never answers CONNECT
)

func startHungSOCKS(t *testing.T, stall string) *hungSOCKS {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hungSOCKS{ln: ln, closed: make(chan struct{}, 16)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 512)
				if stall != stallGreeting {
					c.Read(buf) // greeting
					c.Write([]byte{5, 2})
					if stall != stallAuth {
						c.Read(buf) // credentials
						c.Write([]byte{1, 0})
					}
				}
				// Stall: read until the client gives up and closes.
				for {
					if _, err := c.Read(buf); err != nil {
						h.closed <- struct{}{}
						return
					}
				}
			}()
		}
	}()
	return h
}

func (h *hungSOCKS) url() string { return "socks5h://u:p@" + h.ln.Addr().String() }

// waitClosed asserts the client hung up on the stalled proxy within d, i.e.
// no dial goroutine and socket were left behind.
func (h *hungSOCKS) waitClosed(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-h.closed:
	case <-time.After(d):
		t.Fatalf("client still holds the connection to the stalled proxy after %v", d)
	}
}

// A request whose context ends while the SOCKS handshake hangs returns at
// once, with the context's error; the abandoned dial is cut by CloseIdle.
func TestSOCKSHungHandshakeCancel(t *testing.T) {
	for _, stall := range []string{stallGreeting, stallAuth, stallConnect} {
		t.Run(stall, func(t *testing.T) {
			h := startHungSOCKS(t, stall)
			pool := netx.NewPool(netx.Options{}) // DialTimeout 10s: far beyond the test
			client, err := pool.Client(h.url())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://upstream.invalid/", nil)
			start := time.Now()
			resp, err := client.Do(req)
			elapsed := time.Since(start)
			if err == nil {
				resp.Body.Close()
				t.Fatal("request through a stalled proxy succeeded")
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("error %v, want context.Canceled", err)
			}
			if elapsed > time.Second {
				t.Errorf("request returned %v after cancel at 100ms", elapsed)
			}
			// net/http keeps dialling on behalf of a future request; CloseIdle
			// cancels dials nobody waits for any more.
			pool.CloseIdle()
			h.waitClosed(t, 2*time.Second)
		})
	}
}

// With nobody cancelling, a stalled SOCKS handshake is still bounded by
// DialTimeout and reported as the proxy's fault.
func TestSOCKSHungHandshakeTimeout(t *testing.T) {
	h := startHungSOCKS(t, stallAuth)
	pool := netx.NewPool(netx.Options{DialTimeout: 300 * time.Millisecond})
	client, err := pool.Client(h.url())
	if err != nil {
		t.Fatal(err)
	}
	// The 5s context only keeps a broken build from hanging the test; the
	// transport must give up long before it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://upstream.invalid/", nil)
	start := time.Now()
	resp, err := client.Do(req)
	elapsed := time.Since(start)
	if err == nil {
		resp.Body.Close()
		t.Fatal("request through a stalled proxy succeeded")
	}
	var pe *netx.ProxyError
	if !errors.As(err, &pe) || pe.Op != "socks5" {
		t.Fatalf("error %v (%T), want *netx.ProxyError op socks5", err, err)
	}
	if elapsed < 250*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("gave up after %v, want about DialTimeout (300ms)", elapsed)
	}
	h.waitClosed(t, time.Second)
}

// The SOCKS dial itself honours its context through the handshake (x/net's
// dialer is a ContextDialer; this proves it is the path actually used).
func TestSOCKSDialContextCancel(t *testing.T) {
	h := startHungSOCKS(t, stallConnect)
	pool := netx.NewPool(netx.Options{})
	rt, err := pool.Transport(h.url())
	if err != nil {
		t.Fatal(err)
	}
	tr, ok := rt.(*http.Transport)
	if !ok || tr.DialContext == nil {
		t.Fatalf("socks round tripper is %T without DialContext", rt)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := tr.DialContext(ctx, "tcp", "upstream.invalid:443")
	if err == nil {
		c.Close()
		t.Fatal("dial through a stalled proxy succeeded")
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("dial returned %v after a 100ms deadline", elapsed)
	}
	if !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
		t.Errorf("error %v, want a deadline error", err)
	}
	h.waitClosed(t, time.Second)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
