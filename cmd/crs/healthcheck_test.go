package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHealthcheck(t *testing.T) {
	isolate(t)
	var status atomic.Int32
	status.Store(http.StatusOK)
	var paths atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths.Store(r.Method + " " + r.URL.Path)
		w.WriteHeader(int(status.Load()))
		w.Write([]byte(`{"status":"degraded"}`))
	}))
	defer srv.Close()

	out := ok(t, "", "healthcheck", "--url", srv.URL)
	if out != srv.URL+"/health: 200 OK\n" || paths.Load() != "GET /health" {
		t.Errorf("healthy: stdout %q, request %v", out, paths.Load())
	}
	// A full URL is used as given.
	ok(t, "", "healthcheck", "--url", srv.URL+"/healthz")
	if paths.Load() != "GET /healthz" {
		t.Errorf("request %v, want GET /healthz", paths.Load())
	}

	// Without --url: 127.0.0.1 and $PORT, also when HOST is every address.
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	t.Setenv("PORT", port)
	t.Setenv("HOST", "0.0.0.0")
	ok(t, "", "healthcheck")

	status.Store(http.StatusServiceUnavailable)
	fails(t, 1, `unhealthy: `+srv.URL+`/health answered 503 Service Unavailable: {"status":"degraded"}`, "healthcheck")

	// Nothing listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	fails(t, 1, "unhealthy", "healthcheck", "--url", closed)

	// Listening but never answering.
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer hung.Close()
	start := time.Now()
	fails(t, 1, "did not answer within 200ms", "healthcheck", "--url", hung.URL, "--timeout", "200ms")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a hung server held healthcheck for %s", d)
	}

	fails(t, 2, "--url", "healthcheck", "--url", "127.0.0.1:3000")
	fails(t, 2, "unexpected argument", "healthcheck", "now")
}

// TestHealthcheckAgainstServe checks the command against the real server
// and its real /health.
func TestHealthcheckAgainstServe(t *testing.T) {
	t.Parallel()
	isolate(t)
	s := startRelay(t, newDataDir(t), nil)
	out := ok(t, "", "healthcheck", "--url", s.url)
	if !strings.HasSuffix(out, "/health: 200 OK\n") {
		t.Errorf("healthcheck output %q", out)
	}
	s.Stop()
	fails(t, 1, "unhealthy", "healthcheck", "--url", s.url, "--timeout", "2s")
}

func TestLocalURL(t *testing.T) {
	for _, c := range []struct{ host, port, want string }{
		{"", "", "http://127.0.0.1:3000"},
		{"0.0.0.0", "8080", "http://127.0.0.1:8080"},
		{"::", "8080", "http://127.0.0.1:8080"},
		{"10.0.0.5", "3000", "http://10.0.0.5:3000"},
		{"::1", "3000", "http://[::1]:3000"},
	} {
		if got := localURL(c.host, c.port); got != c.want {
			t.Errorf("localURL(%q, %q) = %q, want %q", c.host, c.port, got, c.want)
		}
	}
}
