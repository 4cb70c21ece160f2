package netx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
)

// ProxyError reports that an account's proxy, not the upstream, failed the
// request: the proxy was unreachable, refused the credentials, refused the
// tunnel, or stalled in its handshake. The relay uses errors.As on it to blame
// the account's network path (fail over, tell the operator to fix the proxy)
// rather than the upstream service. Nothing reached the upstream when it is
// returned, so retrying on another account is always safe.
type ProxyError struct {
	// Proxy is the proxy URL with the password redacted.
	Proxy string
	// Op is the step that failed: "dial" (TCP to the proxy, or TLS to an
	// https:// proxy), "socks5" (SOCKS dial or handshake, auth included),
	// "connect" (HTTP proxy refused CONNECT) or "auth" (HTTP proxy answered
	// 407 to a plain-http request).
	Op string
	// StatusCode is the HTTP status the proxy answered, when it answered one
	// (407, 403, 502 …); 0 otherwise.
	StatusCode int
	// Err is the underlying cause.
	Err error
}

func (e *ProxyError) Error() string {
	return fmt.Sprintf("proxy %s: %s: %v", e.Proxy, e.Op, e.Err)
}

// Unwrap returns the underlying cause, so errors.Is(err, context.DeadlineExceeded)
// and friends keep working.
func (e *ProxyError) Unwrap() error { return e.Err }

// httpProxyTransport fronts a transport whose Transport.Proxy is an HTTP(S)
// proxy, to turn the proxy's own failures into *ProxyError where net/http
// leaves them as an anonymous error or, worse, as a response.
type httpProxyTransport struct {
	t     *http.Transport
	proxy string // redacted
}

// RoundTrip implements http.RoundTripper.
//
// For a plain-http target the proxy forwards in absolute form, so a refusal of
// our credentials arrives as an ordinary 407 response that the relay would
// take for the upstream's answer; no upstream API sends 407, so it becomes a
// *ProxyError here. Failures before a connection exists (dial, TLS to an
// https:// proxy) arrive from net/http as *net.OpError with Op "proxyconnect".
func (h *httpProxyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := h.t.RoundTrip(req)
	if err != nil {
		var pe *ProxyError
		var oe *net.OpError
		if !errors.As(err, &pe) && errors.As(err, &oe) && oe.Op == "proxyconnect" &&
			!errors.Is(err, context.Canceled) {
			return nil, &ProxyError{Proxy: h.proxy, Op: "dial", Err: oe.Err}
		}
		return nil, err
	}
	if resp.StatusCode == http.StatusProxyAuthRequired && req.URL.Scheme == "http" {
		resp.Body.Close()
		return nil, &ProxyError{Proxy: h.proxy, Op: "auth", StatusCode: resp.StatusCode, Err: errors.New(resp.Status)}
	}
	return resp, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the transport.
func (h *httpProxyTransport) CloseIdleConnections() { h.t.CloseIdleConnections() }
