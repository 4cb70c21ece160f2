package netx_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/netx"
	"github.com/crs-relay/crs/internal/netx/netxtest"
)

// Every route reaches both a plain-http and an https (HTTP/2) upstream, and
// the proxy on the route — and only that proxy — saw the traffic.
func TestRoutesReachUpstream(t *testing.T) {
	up := startUpstream(t)
	ps := startProxies(t)
	for _, r := range ps.routes() {
		for _, target := range []struct {
			name, base string
			proto      int
		}{{"http", up.plain.URL, 1}, {"https", up.tls.URL, 2}} {
			t.Run(r.name+"/"+target.name, func(t *testing.T) {
				pool := newPool(up, netx.Options{})
				defer pool.CloseIdle()
				client, err := pool.Client(r.proxy)
				if err != nil {
					t.Fatal(err)
				}
				before, beforeTotal := int64(0), ps.total()
				if r.via != nil {
					before = r.via.Count()
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, target.base+"/echo", strings.NewReader("hello"))
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				want := fmt.Sprintf("POST /echo HTTP/%d body=hello", target.proto)
				if resp.StatusCode != http.StatusOK || string(body) != want {
					t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, want)
				}
				if resp.ProtoMajor != target.proto {
					t.Errorf("client saw HTTP/%d, want HTTP/%d", resp.ProtoMajor, target.proto)
				}
				if r.via == nil {
					if d := ps.total() - beforeTotal; d != 0 {
						t.Fatalf("direct route went through a proxy (%d forwards)", d)
					}
					return
				}
				if d := r.via.Count() - before; d != 1 {
					t.Fatalf("proxy forwarded %d requests/tunnels, want 1", d)
				}
				if d := ps.total() - beforeTotal; d != 1 {
					t.Fatalf("%d forwards across all proxies, want 1 (only this route's)", d)
				}
			})
		}
	}
}

// socks5:// resolves the upstream name locally and sends the proxy an IPv4
// address; socks5h:// hands the proxy the name.
func TestSOCKSNameResolution(t *testing.T) {
	up := startUpstream(t)
	s := netxtest.StartSOCKS5(t, "", "")
	_, port, _ := net.SplitHostPort(up.plain.Listener.Addr().String())
	for _, tt := range []struct{ scheme, wantTarget string }{
		{"socks5", "127.0.0.1:" + port},
		{"socks5h", "localhost:" + port},
	} {
		t.Run(tt.scheme, func(t *testing.T) {
			pool := newPool(up, netx.Options{})
			defer pool.CloseIdle()
			client, err := pool.Client(s.URLWith(tt.scheme, "", ""))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Get("http://localhost:" + port + "/echo")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			targets := s.Targets()
			if len(targets) == 0 || targets[len(targets)-1] != tt.wantTarget {
				t.Fatalf("proxy saw targets %q, want last %q", targets, tt.wantTarget)
			}
		})
	}
}

// Wrong, missing or unreachable proxies fail as *ProxyError, never as a
// response the relay could mistake for the upstream's, and the error text
// never carries the password.
func TestProxyFailures(t *testing.T) {
	up := startUpstream(t)
	ps := startProxies(t)
	const wrong = "Wrong-Pass-77"
	tests := []struct {
		name       string
		proxy      string
		target     string
		rejectedBy interface{ Rejected() int64 }
		wantOp     string
		wantStatus int
	}{
		{"http proxy wrong pass, http target", ps.http.URLWithAuth("hp-user", wrong), up.plain.URL, ps.http, "auth", 407},
		{"http proxy wrong pass, https target", ps.http.URLWithAuth("hp-user", wrong), up.tls.URL, ps.http, "connect", 407},
		{"http proxy no creds, https target", ps.http.URLWithAuth("", ""), up.tls.URL, ps.http, "connect", 407},
		{"https proxy wrong pass, http target", ps.https.URLWithAuth("hps-user", wrong), up.plain.URL, ps.https, "auth", 407},
		{"https proxy wrong pass, https target", ps.https.URLWithAuth("hps-user", wrong), up.tls.URL, ps.https, "connect", 407},
		{"socks5 wrong pass", ps.socks.URLWith("socks5", "sk-user", wrong), up.tls.URL, ps.socks, "socks5", 0},
		{"socks5h wrong user", ps.socks.URLWith("socks5h", "nobody", wrong), up.plain.URL, ps.socks, "socks5", 0},
		{"socks5 no creds", ps.socks.URLWith("socks5", "", ""), up.plain.URL, ps.socks, "socks5", 0},
		{"https scheme to a plain-TCP proxy", "https://hp-user:" + wrong + "@" + strings.TrimPrefix(ps.http.URLWithAuth("", ""), "http://"), up.tls.URL, nil, "dial", 0},
		{"http proxy unreachable", "http://u:" + wrong + "@127.0.0.1:1", up.tls.URL, nil, "dial", 0},
		{"socks5 unreachable", "socks5://u:" + wrong + "@127.0.0.1:1", up.tls.URL, nil, "socks5", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := newPool(up, netx.Options{})
			defer pool.CloseIdle()
			client, err := pool.Client(tt.proxy)
			if err != nil {
				t.Fatal(err)
			}
			var rejectedBefore int64
			if tt.rejectedBy != nil {
				rejectedBefore = tt.rejectedBy.Rejected()
			}
			forwardedBefore := ps.total()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tt.target+"/echo", nil)
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("got response %d, want a *netx.ProxyError", resp.StatusCode)
			}
			var pe *netx.ProxyError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *netx.ProxyError", err, err)
			}
			if pe.Op != tt.wantOp || pe.StatusCode != tt.wantStatus {
				t.Errorf("ProxyError op=%q status=%d, want op=%q status=%d (%v)", pe.Op, pe.StatusCode, tt.wantOp, tt.wantStatus, err)
			}
			if strings.Contains(err.Error(), wrong) {
				t.Errorf("error leaks the password: %v", err)
			}
			if tt.rejectedBy != nil && tt.rejectedBy.Rejected() == rejectedBefore {
				t.Errorf("proxy did not record a rejection; the request never reached it")
			}
			if d := ps.total() - forwardedBefore; d != 0 {
				t.Errorf("a proxy forwarded %d requests despite the failure", d)
			}
		})
	}
}

// Events reach the client while the upstream is still sending: through every
// route the first event arrives before the upstream is allowed to continue.
func TestStreamingIsNotBuffered(t *testing.T) {
	up := startUpstream(t)
	ps := startProxies(t)
	pool := newPool(up, netx.Options{})
	defer pool.CloseIdle()
	for _, r := range ps.routes() {
		for _, target := range []struct{ name, base string }{{"http", up.plain.URL}, {"https", up.tls.URL}} {
			t.Run(r.name+"/"+target.name, func(t *testing.T) {
				client, err := pool.Client(r.proxy)
				if err != nil {
					t.Fatal(err)
				}
				id := r.name + "/" + target.name
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target.base+"/stream?id="+id, nil)
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				br := bufio.NewReader(resp.Body)
				first, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("first event did not arrive while the upstream was still streaming: %v", err)
				}
				if first != "data: one\n" {
					t.Fatalf("first line %q", first)
				}
				close(up.gate(id)) // only now may the upstream go on
				rest, err := io.ReadAll(br)
				if err != nil {
					t.Fatalf("reading the rest: %v", err)
				}
				if want := "\ndata: two\n\ndata: three\n\n"; string(rest) != want {
					t.Fatalf("rest of stream %q, want %q", rest, want)
				}
			})
		}
	}
}

// The relay passes upstream bytes through: transports must neither ask for
// gzip on their own nor decompress it.
func TestNoTransparentCompression(t *testing.T) {
	up := startUpstream(t)
	ps := startProxies(t)
	pool := newPool(up, netx.Options{})
	defer pool.CloseIdle()
	for _, r := range ps.routes() {
		t.Run(r.name, func(t *testing.T) {
			client, err := pool.Client(r.proxy)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Get(up.tls.URL + "/gzip")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if got := resp.Header.Get("X-Got-Accept-Encoding"); got != "" {
				t.Errorf("transport added Accept-Encoding %q", got)
			}
			if resp.Header.Get("Content-Encoding") != "gzip" || resp.Uncompressed {
				t.Errorf("Content-Encoding %q, Uncompressed %v: body was decoded", resp.Header.Get("Content-Encoding"), resp.Uncompressed)
			}
			if !bytes.Equal(body, up.gzipBody) {
				t.Errorf("body changed in transit (%d bytes, want %d)", len(body), len(up.gzipBody))
			}
		})
	}
}

// A 3xx from an upstream is handed back, not followed.
func TestClientDoesNotFollowRedirects(t *testing.T) {
	up := startUpstream(t)
	ps := startProxies(t)
	pool := newPool(up, netx.Options{})
	defer pool.CloseIdle()
	for _, r := range ps.routes() {
		client, err := pool.Client(r.proxy)
		if err != nil {
			t.Fatal(err)
		}
		if client.Timeout != 0 {
			t.Errorf("%s: client has an overall Timeout %v; streams would be cut", r.name, client.Timeout)
		}
		resp, err := client.Get(up.plain.URL + "/redirect")
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/echo" {
			t.Errorf("%s: got %d Location %q, want the 302 itself", r.name, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

func TestTransportIdentity(t *testing.T) {
	pool := netx.NewPool(netx.Options{})
	get := func(s string) http.RoundTripper {
		t.Helper()
		rt, err := pool.Transport(s)
		if err != nil {
			t.Fatalf("Transport(%q): %v", s, err)
		}
		return rt
	}
	same := [][]string{
		{"", ""},
		{"http://127.0.0.1:3128", "http://127.0.0.1:3128", "HTTP://127.0.0.1:3128/"},
		{"socks5://u:p@Proxy.Example.com:1080", "socks5://u:p@proxy.example.com:1080", "SOCKS5://u:p@PROXY.example.com:1080/"},
	}
	for _, group := range same {
		first := get(group[0])
		for _, s := range group[1:] {
			if get(s) != first {
				t.Errorf("Transport(%q) != Transport(%q); same proxy must share one transport", s, group[0])
			}
		}
	}
	distinct := []string{
		"",
		"http://127.0.0.1:3128",
		"https://127.0.0.1:3128",
		"http://127.0.0.1:3129",
		"socks5://u:p@proxy.example.com:1080",
		"socks5://u:other@proxy.example.com:1080",
		"socks5h://u:p@proxy.example.com:1080",
	}
	seen := map[http.RoundTripper]string{}
	for _, s := range distinct {
		rt := get(s)
		if prev, dup := seen[rt]; dup {
			t.Errorf("Transport(%q) == Transport(%q); distinct proxies must not share", s, prev)
		}
		seen[rt] = s
	}

	// The direct transport must never consult HTTP_PROXY and friends.
	direct, ok := get("").(*http.Transport)
	if !ok {
		t.Fatalf("direct round tripper is %T, want *http.Transport", get(""))
	}
	if direct.Proxy != nil {
		t.Error("direct transport has a Proxy func; environment proxies could leak in")
	}
	if !direct.DisableCompression || !direct.ForceAttemptHTTP2 {
		t.Errorf("direct transport DisableCompression=%v ForceAttemptHTTP2=%v, want both true", direct.DisableCompression, direct.ForceAttemptHTTP2)
	}

	if _, err := pool.Transport("ftp://u:Secret-99@host:21"); err == nil || strings.Contains(err.Error(), "Secret-99") {
		t.Errorf("Transport(ftp://…) error = %v; want an error without the password", err)
	}
	if _, err := pool.Client("socks5://host"); err == nil {
		t.Error("Client(socks5://host) accepted a URL without port")
	}
}

func TestTransportConcurrent(t *testing.T) {
	pool := netx.NewPool(netx.Options{})
	urls := []string{"", "http://127.0.0.1:1", "socks5://a:b@127.0.0.1:2", "socks5h://127.0.0.1:3", "https://h:4"}
	const workers = 32
	got := make([][]http.RoundTripper, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				s := urls[(w+i)%len(urls)]
				rt, err := pool.Transport(s)
				if err != nil {
					t.Error(err)
					return
				}
				if i < len(urls) {
					got[w] = append(got[w], rt)
				}
				if i%10 == 0 {
					pool.CloseIdle()
				}
			}
		}()
	}
	wg.Wait()
	for _, s := range urls {
		want, _ := pool.Transport(s)
		for w := range workers {
			for i, rt := range got[w] {
				if urls[(w+i)%len(urls)] == s && rt != want {
					t.Fatalf("worker %d got a different transport for %q", w, s)
				}
			}
		}
	}
}

// The relay looks a transport up on every request; the lookup must stay a
// read-locked map hit.
func BenchmarkTransportLookup(b *testing.B) {
	pool := netx.NewPool(netx.Options{})
	const proxy = "socks5h://user:pass@proxy.example.com:1080"
	if _, err := pool.Transport(proxy); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := pool.Transport(proxy); err != nil {
				b.Fatal(err)
			}
		}
	})
}
