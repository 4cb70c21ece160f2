package netx_test

import (
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/netx"
	"github.com/crs-relay/crs/internal/netx/netxtest"
)

// upstream is a real HTTP server on 127.0.0.1 reachable as plain http and as
// https with HTTP/2, standing in for an upstream API.
type upstream struct {
	plain, tls *httptest.Server
	roots      *x509.CertPool
	gzipBody   []byte

	mu    sync.Mutex
	gates map[string]chan struct{}
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{gates: make(map[string]chan struct{})}
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write([]byte("compressed payload that must arrive still compressed"))
	zw.Close()
	u.gzipBody = zb.Bytes()

	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s HTTP/%d body=%s", r.Method, r.URL.Path, r.ProtoMajor, body)
	})
	mux.HandleFunc("/gzip", func(w http.ResponseWriter, r *http.Request) {
		// Report what the transport asked for, then send gzip regardless.
		w.Header().Set("X-Got-Accept-Encoding", r.Header.Get("Accept-Encoding"))
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Type", "text/plain")
		w.Write(u.gzipBody)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/echo", http.StatusFound)
	})
	// /stream?id=X sends event 1, waits until the test has read it (gate X),
	// pauses, then sends events 2 and 3. A relay path that buffers the body
	// never delivers event 1 early, so the test times out instead of passing.
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		gate := u.gate(r.URL.Query().Get("id"))
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		rc.Flush()
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
		for _, ev := range []string{"two", "three"} {
			select {
			case <-time.After(20 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
			fmt.Fprintf(w, "data: %s\n\n", ev)
			rc.Flush()
		}
	})

	u.plain = httptest.NewServer(mux)
	t.Cleanup(u.plain.Close)
	u.tls = httptest.NewUnstartedServer(mux)
	u.tls.EnableHTTP2 = true
	u.tls.StartTLS()
	t.Cleanup(u.tls.Close)
	u.roots = x509.NewCertPool()
	u.roots.AddCert(u.tls.Certificate())
	return u
}

// gate returns the channel a /stream request with this id waits on.
func (u *upstream) gate(id string) chan struct{} {
	u.mu.Lock()
	defer u.mu.Unlock()
	g, ok := u.gates[id]
	if !ok {
		g = make(chan struct{})
		u.gates[id] = g
	}
	return g
}

// newPool returns a pool whose transports trust the httptest certificate,
// which the upstream and the https:// proxy share.
func newPool(u *upstream, opts netx.Options) *netx.Pool {
	opts.TLSClientConfig = &tls.Config{RootCAs: u.roots}
	return netx.NewPool(opts)
}

// counter is anything that counts forwarded requests.
type counter interface{ Count() int64 }

// route is one network path an account can take.
type route struct {
	name  string
	proxy string
	via   counter // nil for direct
}

// proxies starts one of each proxy kind, all with credentials.
type proxies struct {
	http, https *netxtest.HTTPProxy
	socks       *netxtest.SOCKS5
}

func startProxies(t *testing.T) proxies {
	return proxies{
		http:  netxtest.StartHTTPProxy(t, "hp-user", "hp-Pass-1"),
		https: netxtest.StartHTTPSProxy(t, "hps-user", "hps-Pass-2"),
		socks: netxtest.StartSOCKS5(t, "sk-user", "sk-Pass-3"),
	}
}

func (ps proxies) routes() []route {
	return []route{
		{"direct", "", nil},
		{"http-proxy", ps.http.URL(), ps.http},
		{"https-proxy", ps.https.URL(), ps.https},
		{"socks5", ps.socks.URL(), ps.socks},
		{"socks5h", ps.socks.URLWith("socks5h", "sk-user", "sk-Pass-3"), ps.socks},
	}
}

func (ps proxies) counts() map[string]int64 {
	return map[string]int64{
		"http": ps.http.Count(), "https": ps.https.Count(), "socks": ps.socks.Count(),
	}
}

func (ps proxies) total() int64 {
	var n int64
	for _, c := range ps.counts() {
		n += c
	}
	return n
}
