package netxtest

import (
	"bufio"
	"context"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// HTTPProxy is a forward proxy on 127.0.0.1. It forwards absolute-form
// requests (http:// targets) and tunnels CONNECT (https:// targets), flushing
// every chunk as it arrives so streams pass unbuffered. With a user set it
// demands matching Basic Proxy-Authorization and answers 407 otherwise.
type HTTPProxy struct {
	srv        *httptest.Server
	user, pass string
	upstream   *http.Transport
	shutdown   context.Context
	tunnels    tunnels
	forwarded  atomic.Int64
	rejected   atomic.Int64
}

// StartHTTPProxy starts a plain-TCP forward proxy. An empty user disables
// authentication. It stops on tb.Cleanup, closing open tunnels.
func StartHTTPProxy(tb testing.TB, user, pass string) *HTTPProxy {
	tb.Helper()
	return startHTTPProxy(tb, user, pass, false)
}

// StartHTTPSProxy is StartHTTPProxy reached over TLS (an https:// proxy URL).
// Its certificate is httptest's, the same one httptest.NewTLSServer uses, so
// one pool built from Certificate trusts both proxy and upstream.
func StartHTTPSProxy(tb testing.TB, user, pass string) *HTTPProxy {
	tb.Helper()
	return startHTTPProxy(tb, user, pass, true)
}

func startHTTPProxy(tb testing.TB, user, pass string, useTLS bool) *HTTPProxy {
	ctx, cancel := context.WithCancel(context.Background())
	p := &HTTPProxy{
		user:     user,
		pass:     pass,
		shutdown: ctx,
		upstream: &http.Transport{
			Proxy:              nil,
			DialContext:        func(ctx context.Context, _, addr string) (net.Conn, error) { return dialLoopback(ctx, addr) },
			DisableCompression: true,
		},
	}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	if useTLS {
		p.srv.StartTLS()
	} else {
		p.srv.Start()
	}
	tb.Cleanup(func() {
		cancel()
		p.tunnels.closeAll()
		p.srv.Close()
		p.upstream.CloseIdleConnections()
	})
	return p
}

// URL returns the proxy URL with the configured credentials embedded,
// e.g. "http://user:pass@127.0.0.1:41234".
func (p *HTTPProxy) URL() string { return p.URLWithAuth(p.user, p.pass) }

// URLWithAuth returns the proxy URL carrying the given credentials instead,
// for testing refusals; an empty user gives a URL without userinfo.
func (p *HTTPProxy) URLWithAuth(user, pass string) string {
	u, _ := url.Parse(p.srv.URL)
	if user != "" {
		u.User = url.UserPassword(user, pass)
	}
	return u.String()
}

// Count returns how many requests the proxy accepted and forwarded: one per
// absolute-form request, one per CONNECT tunnel.
func (p *HTTPProxy) Count() int64 { return p.forwarded.Load() }

// Rejected returns how many requests were refused with 407.
func (p *HTTPProxy) Rejected() int64 { return p.rejected.Load() }

// Certificate returns the proxy's TLS certificate (nil for a plain proxy).
func (p *HTTPProxy) Certificate() *x509.Certificate { return p.srv.Certificate() }

func (p *HTTPProxy) serve(w http.ResponseWriter, r *http.Request) {
	if !p.authorized(r.Header.Get("Proxy-Authorization")) {
		p.rejected.Add(1)
		w.Header().Set("Proxy-Authenticate", `Basic realm="netxtest"`)
		http.Error(w, "proxy authentication required", http.StatusProxyAuthRequired)
		return
	}
	switch {
	case r.Method == http.MethodConnect:
		p.connect(w, r)
	case r.URL.IsAbs():
		p.forward(w, r)
	default:
		http.Error(w, "netxtest: not a proxy request", http.StatusBadRequest)
	}
}

func (p *HTTPProxy) authorized(header string) bool {
	if p.user == "" {
		return true
	}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(p.user+":"+p.pass))
	return subtle.ConstantTimeCompare([]byte(header), []byte(want)) == 1
}

// hopHeaders are meaningful for one connection only and not forwarded.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authorization",
	"Proxy-Authenticate", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func (p *HTTPProxy) forward(w http.ResponseWriter, r *http.Request) {
	if !allowedHost(r.URL.Hostname()) {
		http.Error(w, "netxtest: non-loopback target refused", http.StatusForbidden)
		return
	}
	p.forwarded.Add(1)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(p.shutdown, cancel)
	defer stop()

	out, err := http.NewRequestWithContext(ctx, r.Method, r.URL.String(), r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	out.ContentLength = r.ContentLength
	out.Header = r.Header.Clone()
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	if r.ContentLength == 0 {
		out.Body = nil
	}
	resp, err := p.upstream.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	for _, h := range hopHeaders {
		w.Header().Del(h)
	}
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	rc.Flush()
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

func (p *HTTPProxy) connect(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil || !allowedHost(host) {
		http.Error(w, "netxtest: non-loopback target refused", http.StatusForbidden)
		return
	}
	target, err := dialLoopback(r.Context(), r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		target.Close()
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if !p.tunnels.track(client, target) {
		return
	}
	p.forwarded.Add(1)
	go func() {
		defer p.tunnels.done(client, target)
		if _, err := io.WriteString(client, "HTTP/1.1 200 Connection Established\r\n\r\n"); err != nil {
			return
		}
		if err := drainBuffered(brw.Reader, target); err != nil {
			return
		}
		splice(client, target)
	}()
}

// drainBuffered passes on bytes the server read past the CONNECT header.
func drainBuffered(r *bufio.Reader, dst io.Writer) error {
	n := r.Buffered()
	if n == 0 {
		return nil
	}
	b, err := r.Peek(n)
	if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
		return err
	}
	_, err = dst.Write(b)
	return err
}

// String describes the proxy for test logs (no password).
func (p *HTTPProxy) String() string {
	return "netxtest HTTP proxy at " + strings.TrimPrefix(p.srv.URL, "http://")
}
