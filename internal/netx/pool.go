// Package netx builds the HTTP transports crs uses to reach upstream APIs:
// one pooled *http.Transport per distinct account proxy (http, https, socks5,
// socks5h) and one shared transport for accounts without a proxy.
//
// The transports are tuned for a streaming relay: no overall timeout (a
// stream may last many minutes), no transparent decompression (the relay
// passes upstream bytes through untouched), no redirects followed, and never
// a proxy taken from the environment — an account goes direct or through the
// proxy it names, nothing else.
package netx

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Options tunes every transport a Pool builds. Zero fields take the defaults
// given per field.
type Options struct {
	// DialTimeout bounds the TCP connect to the upstream or to the proxy. For
	// SOCKS5 proxies it bounds the whole proxy handshake as well (greeting,
	// auth, CONNECT), since the proxy connects to the upstream inside it.
	// Default 10s.
	DialTimeout time.Duration
	// TLSHandshakeTimeout bounds each TLS handshake (with the upstream, and
	// with an https:// proxy). Default 10s.
	TLSHandshakeTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for response headers after the
	// request was written. Default 0 (none): the relay enforces its own
	// first-event deadline through the request context, which also covers a
	// 200 whose first event never comes.
	ResponseHeaderTimeout time.Duration
	// IdleConnTimeout closes keep-alive connections idle this long.
	// Default 90s.
	IdleConnTimeout time.Duration
	// MaxIdleConnsPerHost is how many idle keep-alive connections each
	// transport keeps per upstream host. Default 64.
	MaxIdleConnsPerHost int
	// TLSClientConfig, if not nil, is cloned into every transport and used for
	// upstream TLS and for TLS to https:// proxies; tests and private CAs set
	// RootCAs here. Nil means the system roots.
	TLSClientConfig *tls.Config
}

func (o Options) withDefaults() Options {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.TLSHandshakeTimeout <= 0 {
		o.TLSHandshakeTimeout = 10 * time.Second
	}
	if o.ResponseHeaderTimeout < 0 {
		o.ResponseHeaderTimeout = 0
	}
	if o.IdleConnTimeout <= 0 {
		o.IdleConnTimeout = 90 * time.Second
	}
	if o.MaxIdleConnsPerHost <= 0 {
		o.MaxIdleConnsPerHost = 64
	}
	return o
}

// Pool hands out one transport per proxy URL ("" = direct), built on first use
// and reused for every later request, so keep-alive connections (and HTTP/2
// sessions) to an upstream are shared by all accounts behind the same proxy.
// Safe for concurrent use.
//
// Transports are never dropped: their number is bounded by the number of
// distinct proxies configured on accounts, which is small, and idle
// connections inside them expire after IdleConnTimeout anyway. A proxy
// removed from every account leaves an empty transport behind until restart;
// call CloseIdle to release its sockets at once.
type Pool struct {
	opts Options

	mu      sync.RWMutex
	byRaw   map[string]*entry // exact string the caller passed
	byCanon map[string]*entry // normalized URL, so spellings of one proxy share
}

// entry is one pooled transport and the values handed out for it.
type entry struct {
	transport *http.Transport
	rt        http.RoundTripper // transport itself, or a wrapper around it
	client    *http.Client
}

// NewPool returns an empty pool; transports are built lazily.
func NewPool(opts Options) *Pool {
	return &Pool{
		opts:    opts.withDefaults(),
		byRaw:   make(map[string]*entry),
		byCanon: make(map[string]*entry),
	}
}

// Transport returns the round tripper for proxyURL ("" = direct), building it
// on first use. The same proxyURL always yields the same value. An invalid
// proxyURL yields the ValidateProxyURL error, which never contains the
// password.
//
// Failures of the proxy itself (unreachable, credentials refused, tunnel
// refused, handshake stalled) come back as *ProxyError.
func (p *Pool) Transport(proxyURL string) (http.RoundTripper, error) {
	e, err := p.entry(proxyURL)
	if err != nil {
		return nil, err
	}
	return e.rt, nil
}

// Client returns an *http.Client over Transport(proxyURL). It has no overall
// Timeout, because upstream streams run for minutes and the relay bounds them
// with contexts, and it follows no redirects: a 3xx from an upstream API is
// returned as is, so credentials never travel to a host the account does not
// name.
func (p *Pool) Client(proxyURL string) (*http.Client, error) {
	e, err := p.entry(proxyURL)
	if err != nil {
		return nil, err
	}
	return e.client, nil
}

// CloseIdle closes the idle keep-alive connections of every pooled transport,
// e.g. after account proxies changed. Connections in use are not touched.
func (p *Pool) CloseIdle() {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, e := range p.byCanon {
		e.transport.CloseIdleConnections()
	}
}

func (p *Pool) entry(raw string) (*entry, error) {
	p.mu.RLock()
	e := p.byRaw[raw]
	p.mu.RUnlock()
	if e != nil {
		return e, nil
	}

	u, err := parseProxyURL(raw)
	if err != nil {
		return nil, err
	}
	canon := ""
	if u != nil {
		canon = u.String()
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if e = p.byCanon[canon]; e == nil {
		if e, err = p.build(u); err != nil {
			return nil, err
		}
		p.byCanon[canon] = e
	}
	p.byRaw[raw] = e
	return e, nil
}

// build makes the transport for u (nil = direct). Called with p.mu held; it
// does no I/O.
func (p *Pool) build(u *url.URL) (*entry, error) {
	o := p.opts
	dialer := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		// Never http.ProxyFromEnvironment: a relay must be explicit about
		// which network path each account's traffic takes.
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   o.TLSHandshakeTimeout,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		IdleConnTimeout:       o.IdleConnTimeout,
		MaxIdleConnsPerHost:   o.MaxIdleConnsPerHost,
		ExpectContinueTimeout: time.Second,
		// The relay sends accept-encoding: identity and passes bytes through;
		// transparent gunzip would both alter them and drop Content-Encoding.
		DisableCompression: true,
	}
	if o.TLSClientConfig != nil {
		t.TLSClientConfig = o.TLSClientConfig.Clone()
	}
	e := &entry{transport: t, rt: t}

	if u != nil {
		shown := RedactProxyURL(u.String())
		switch u.Scheme {
		case schemeHTTP, schemeHTTPS:
			// net/http speaks the proxy protocol: CONNECT for https
			// targets, absolute-form for http targets, Basic
			// Proxy-Authorization from the URL's userinfo on both.
			t.Proxy = http.ProxyURL(u)
			t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				// With a proxy configured, every dial is a dial to the proxy.
				c, err := dialer.DialContext(ctx, network, addr)
				if err != nil {
					return nil, &ProxyError{Proxy: shown, Op: "dial", Err: err}
				}
				return c, nil
			}
			t.OnProxyConnectResponse = func(_ context.Context, _ *url.URL, _ *http.Request, resp *http.Response) error {
				if resp.StatusCode != http.StatusOK {
					return &ProxyError{Proxy: shown, Op: "connect", StatusCode: resp.StatusCode, Err: fmt.Errorf("proxy answered CONNECT with %s", resp.Status)}
				}
				return nil
			}
			e.rt = &httpProxyTransport{t: t, proxy: shown}
		case schemeSOCKS5, schemeSOCKS5H:
			sd, err := newSOCKSDialer(u, dialer, o.DialTimeout)
			if err != nil {
				return nil, err
			}
			t.DialContext = sd.DialContext
		default:
			// parseProxyURL admits only the schemes above.
			return nil, fmt.Errorf("netx: unsupported proxy scheme %q", u.Scheme)
		}
	}

	e.client = &http.Client{
		Transport: e.rt,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return e, nil
}
