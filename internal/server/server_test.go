package server

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crs-relay/crs/internal/store/sqlite"
)

func TestClientIPHonoursOnlyTrustedProxies(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
	ip := ClientIPFunc(trusted)
	none := ClientIPFunc(nil)
	cases := []struct {
		peer, xff string
		want      string
		untrusted string
	}{
		{"203.0.113.9:5000", "1.2.3.4", "203.0.113.9", "203.0.113.9"},          // untrusted peer: header ignored
		{"10.1.2.3:5000", "1.2.3.4", "1.2.3.4", "10.1.2.3"},                    // trusted proxy
		{"10.1.2.3:5000", "6.6.6.6, 1.2.3.4, 10.9.9.9", "1.2.3.4", "10.1.2.3"}, // spoofed left part skipped
		{"127.0.0.1:1", "", "127.0.0.1", "127.0.0.1"},                          // no header
		{"10.1.2.3:5000", "garbage", "10.1.2.3", "10.1.2.3"},                   // unparsable
		{"[::ffff:10.1.2.3]:80", "2001:db8::1", "2001:db8::1", "::ffff:10.1.2.3"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := ip(r); got != c.want {
			t.Errorf("peer %s xff %q: %s, want %s", c.peer, c.xff, got, c.want)
		}
		if got := none(r); got != c.untrusted {
			t.Errorf("no TRUST_PROXY, peer %s xff %q: %s, want %s", c.peer, c.xff, got, c.untrusted)
		}
	}
}

func TestCleanPathServesDoubledSlashes(t *testing.T) {
	var seen string
	h := withCleanPath(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.URL.Path }))
	for in, want := range map[string]string{
		"//v1/messages":         "/v1/messages",
		"/api//v1//messages":    "/api/v1/messages",
		"/api/v1/messages":      "/api/v1/messages",
		"///claude///v1/models": "/claude/v1/models",
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", "http://x"+in, nil))
		if seen != want || w.Code != 200 {
			t.Errorf("%s → %s (%d), want %s", in, seen, w.Code, want)
		}
	}
}

func TestRecoverAnswers500AndLogs(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	h := withRequestID(withRecover(log, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") })))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if w.Code != 500 || w.Header().Get("X-Request-Id") == "" || !strings.Contains(logs.String(), "boom") {
		t.Fatalf("code %d, headers %v, log %q", w.Code, w.Header(), logs.String())
	}
}

// TestHealthReportsStoreDown: /health answers 503 with ok:false once the
// store stops answering, and 200 while it does.
func TestHealthReportsStoreDown(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := health(st, "test")
	get := func() (int, map[string]any) {
		w := httptest.NewRecorder()
		h(w, httptest.NewRequest("GET", "/health", nil))
		var body map[string]any
		json.Unmarshal(w.Body.Bytes(), &body)
		return w.Code, body
	}
	code, body := get()
	if code != 200 || body["status"] != "ok" || body["version"] != "test" || body["store"].(map[string]any)["backend"] != "sqlite" {
		t.Fatalf("healthy: %d %v", code, body)
	}
	st.Close()
	code, body = get()
	if code != 503 || body["store"].(map[string]any)["ok"] != false {
		t.Fatalf("store down: %d %v", code, body)
	}
}
