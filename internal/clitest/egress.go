package clitest

import (
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// noProxy is the NO_PROXY list handed to a guarded CLI: loopback, where the
// relay under test and the fakes listen, is reached directly.
const noProxy = "localhost,127.0.0.1,::1"

// egressRefusal is the body of the guard's 403, in case a CLI shows it.
const egressRefusal = "crs clitest: no internet in tests; this host is not part of the test"

// egressGuard is a local HTTP proxy that refuses everything and remembers
// which hosts were asked for. A guarded CLI gets it as HTTPS_PROXY and
// HTTP_PROXY with loopback exempt, so its telemetry, update checks and
// plugin syncs end here instead of on the internet, on any machine the tests
// run on, and the test can see them: a client that needs a vendor host to
// work fails its run, and Egress names the host.
type egressGuard struct {
	ln  net.Listener
	srv *http.Server

	mu    sync.Mutex
	hosts []string // first-seen order, no duplicates
}

// startEgressGuard listens on a free loopback port.
func startEgressGuard() (*egressGuard, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	g := &egressGuard{ln: ln}
	g.srv = &http.Server{Handler: http.HandlerFunc(g.refuse), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := g.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.note("egress guard failed: " + err.Error())
		}
	}()
	return g, nil
}

// refuse answers a CONNECT tunnel or an absolute-form request with 403 and
// records its host.
func (g *egressGuard) refuse(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if r.Method != http.MethodConnect && r.URL.Host != "" {
		host = r.URL.Host
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	g.note(strings.ToLower(host))
	w.Header().Set("Connection", "close")
	http.Error(w, egressRefusal, http.StatusForbidden)
}

func (g *egressGuard) note(host string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !slices.Contains(g.hosts, host) {
		g.hosts = append(g.hosts, host)
	}
}

// env points a CLI at the guard, in both spellings: Rust's reqwest reads
// either, node clients read what their proxy library reads.
func (g *egressGuard) env() []string {
	u := "http://" + g.ln.Addr().String()
	return []string{
		"HTTPS_PROXY=" + u, "https_proxy=" + u,
		"HTTP_PROXY=" + u, "http_proxy=" + u,
		"ALL_PROXY=" + u, "all_proxy=" + u,
		"NO_PROXY=" + noProxy, "no_proxy=" + noProxy,
	}
}

// close stops the guard and returns the hosts it refused, in the order they
// were first asked for.
func (g *egressGuard) close() []string {
	_ = g.srv.Close()
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.hosts)
}
