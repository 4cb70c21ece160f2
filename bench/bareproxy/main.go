// Command bareproxy is the baseline crs is measured against: a plain
// httputil.ReverseProxy in front of the fake Anthropic upstream with the same
// path shape as crs (/api/v1/messages → /v1/messages) and nothing else — no
// authentication, scheduling or usage accounting. The difference between the
// two under identical load is what crs's features cost.
//
// It flushes every write (FlushInterval -1), as a streaming relay must, and
// pools upstream connections like crs does, so the comparison is of the work
// per request, not of connection churn. It prints its base URL as the first
// line of stdout.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bareproxy:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("bareproxy", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address; port 0 picks a free port")
	upstream := fs.String("upstream", "", "upstream base URL, e.g. http://127.0.0.1:8081 (required)")
	key := fs.String("upstream-key", "", "x-api-key sent upstream in place of the client's (empty: pass the client's through)")
	idle := fs.Int("max-idle-per-host", 64, "idle upstream connections kept (crs's pool default is 64)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *upstream == "" {
		return errors.New("-upstream is required")
	}
	target, err := url.Parse(*upstream)
	if err != nil || target.Host == "" {
		return fmt.Errorf("-upstream: not a base URL: %q", *upstream)
	}

	srv := &http.Server{
		Handler:           newProxy(target, *key, *idle),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          log.New(os.Stderr, "bareproxy: ", 0),
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(out, "http://%s\n", ln.Addr()); err != nil {
		_ = ln.Close()
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newProxy forwards /api/… and /claude/… to target with the prefix removed.
// Credentials are swapped only when key is set, which is the one thing every
// relay must do; everything else passes through untouched.
func newProxy(target *url.URL, key string, idlePerHost int) http.Handler {
	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   idlePerHost,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			p := pr.In.URL.Path
			for _, prefix := range []string{"/api", "/claude"} {
				if rest, ok := strings.CutPrefix(p, prefix); ok && strings.HasPrefix(rest, "/") {
					p = rest
					break
				}
			}
			pr.Out.URL.Path = singleJoin(target.Path, p)
			pr.Out.URL.RawPath = ""
			if key != "" {
				pr.Out.Header.Set("X-Api-Key", key)
				pr.Out.Header.Del("Authorization")
			}
		},
		Transport:     transport,
		FlushInterval: -1,
	}
	return bufferBody(rp)
}

// maxBody matches crs's default request limit (REQUEST_MAX_SIZE_MB=60).
const maxBody = 60 << 20

// bufferBody reads the request body into memory before proxying it. Every
// relay that can fail over must do this anyway (crs does), so the baseline
// pays the same cost. It also sidesteps a race seen with Go's Transport
// writing a streamed server request body upstream: a few percent of
// back-to-back streams at concurrency 1 lost their upstream connection
// mid-response ("use of closed network connection"), which would make the
// baseline look worse than it is.
func bufferBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.ContentLength != 0 {
			b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
			if err != nil {
				http.Error(w, "reading request body: "+err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
			r.ContentLength = int64(len(b))
		}
		next.ServeHTTP(w, r)
	})
}

// singleJoin joins two URL paths with exactly one slash between them.
func singleJoin(a, b string) string {
	return strings.TrimSuffix(a, "/") + "/" + strings.TrimPrefix(b, "/")
}
