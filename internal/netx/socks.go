package netx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"golang.org/x/net/proxy"
)

// socksDialer dials upstreams through a SOCKS5 proxy (RFC 1928, with RFC 1929
// user/password auth when the URL carries a user).
//
// Why the own deadline: net/http detaches a dial from the request's context
// (so a late connection can serve the next request), and that detached
// context has no deadline. x/net/proxy's SOCKS dialer honours its context
// through the TCP dial and the whole handshake, but with no deadline a proxy
// that accepts and then stalls would hold the dial goroutine and its socket
// forever. So every SOCKS dial, handshake included, is bounded by timeout.
// The request itself still returns as soon as its own ctx ends: net/http
// stops waiting for the dial at that moment.
type socksDialer struct {
	dialer    proxy.ContextDialer
	remoteDNS bool // socks5h: hand names to the proxy; socks5: resolve here
	timeout   time.Duration
	proxy     string // redacted, for errors
}

func newSOCKSDialer(u *url.URL, forward *net.Dialer, timeout time.Duration) (*socksDialer, error) {
	var auth *proxy.Auth
	if u.User != nil {
		pass, _ := u.User.Password()
		auth = &proxy.Auth{User: u.User.Username(), Password: pass}
	}
	d, err := proxy.SOCKS5("tcp", hostPort(u), auth, forward)
	if err != nil {
		return nil, err
	}
	cd, ok := d.(proxy.ContextDialer)
	if !ok {
		// x/net/proxy has returned a ContextDialer since 2019; refuse rather
		// than fall back to a dial that ignores cancellation.
		return nil, errors.New("netx: x/net/proxy SOCKS5 dialer does not support contexts")
	}
	return &socksDialer{
		dialer:    cd,
		remoteDNS: u.Scheme == schemeSOCKS5H,
		timeout:   timeout,
		proxy:     RedactProxyURL(u.String()),
	}, nil
}

// DialContext connects to addr through the proxy. It is the Transport's
// DialContext, so addr is the upstream's host:port.
func (d *socksDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	if !d.remoteDNS {
		resolved, err := resolveLocally(ctx, addr)
		if err != nil {
			return nil, err
		}
		addr = resolved
	}
	c, err := d.dialer.DialContext(ctx, network, addr)
	if err != nil {
		if ctxErr := context.Cause(ctx); ctxErr != nil && errors.Is(ctxErr, context.Canceled) {
			// The caller gave up; that is not the proxy's fault.
			return nil, ctxErr
		}
		return nil, &ProxyError{Proxy: d.proxy, Op: "socks5", Err: err}
	}
	return c, nil
}

// resolveLocally turns host:port into ip:port for socks5:// (as opposed to
// socks5h://), preferring IPv4 because residential SOCKS proxies commonly
// have no IPv6 route.
func resolveLocally(ctx context.Context, addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if net.ParseIP(host) != nil {
		return addr, nil
	}
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
	if err != nil {
		return "", fmt.Errorf("resolve %s for socks5 (use socks5h:// to let the proxy resolve): %w", host, err)
	}
	if len(ips) == 0 {
		return "", fmt.Errorf("resolve %s for socks5: no addresses", host)
	}
	best := ips[0]
	for _, ip := range ips {
		if ip.To4() != nil {
			best = ip
			break
		}
	}
	return net.JoinHostPort(best.String(), port), nil
}
