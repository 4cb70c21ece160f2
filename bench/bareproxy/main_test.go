package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/crs-relay/crs/internal/fakeupstream"
)

func TestProxyForwardsWithPrefixStripped(t *testing.T) {
	fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{Deltas: 7, APIKeys: []string{"sk-up"}})
	target, err := url.Parse(fake.URL())
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, path, upstreamKey string
		wantStatus              int
		wantPath                string
		wantKey                 string
	}{
		{name: "api prefix, key swapped", path: "/api/v1/messages", upstreamKey: "sk-up", wantStatus: 200, wantPath: "/v1/messages", wantKey: "sk-up"},
		{name: "claude prefix", path: "/claude/v1/messages", upstreamKey: "sk-up", wantStatus: 200, wantPath: "/v1/messages", wantKey: "sk-up"},
		{name: "no prefix", path: "/v1/messages", upstreamKey: "sk-up", wantStatus: 200, wantPath: "/v1/messages", wantKey: "sk-up"},
		{name: "prefix must be a whole segment", path: "/apiv1/messages", upstreamKey: "sk-up", wantStatus: 404, wantPath: "/apiv1/messages", wantKey: "sk-up"},
		{name: "client key passed when no upstream key", path: "/api/v1/messages", wantStatus: 401, wantPath: "/v1/messages", wantKey: "cr_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake.Reset()
			px := httptest.NewServer(newProxy(target, tt.upstreamKey, 4))
			defer px.Close()

			body := `{"model":"m","max_tokens":5,"stream":true,"unknown_field":[1],"messages":[{"role":"user","content":"hi"}]}`
			req, _ := http.NewRequest(http.MethodPost, px.URL+tt.path, strings.NewReader(body))
			req.Header.Set("X-Api-Key", "cr_client")
			req.Header.Set("Authorization", "Bearer cr_client")
			req.Header.Set("Anthropic-Version", "2023-06-01")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.wantStatus, got)
			}
			if tt.wantStatus == 200 && !bytes.Contains(got, []byte("message_stop")) {
				t.Errorf("stream incomplete: %s", got)
			}
			reqs := fake.Requests()
			if len(reqs) != 1 {
				t.Fatalf("fake saw %d requests", len(reqs))
			}
			up := reqs[0]
			if up.Path != tt.wantPath || up.Header.Get("X-Api-Key") != tt.wantKey || string(up.Body) != body {
				t.Errorf("upstream got path %q key %q body %s", up.Path, up.Header.Get("X-Api-Key"), up.Body)
			}
			if tt.upstreamKey != "" && up.Header.Get("Authorization") != "" {
				t.Errorf("client Authorization leaked upstream: %q", up.Header.Get("Authorization"))
			}
		})
	}
}

// TestProxyFlushesEachEvent: the first event reaches the client while the
// upstream is still streaming, so TTFB measures the proxy, not buffering.
func TestProxyFlushesEachEvent(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: ping\ndata: {}\n\n")
		w.(http.Flusher).Flush()
		<-release
	}))
	defer up.Close()
	defer close(release)
	target, _ := url.Parse(up.URL)
	px := httptest.NewServer(newProxy(target, "", 4))
	defer px.Close()

	resp, err := http.Post(px.URL+"/api/v1/messages", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 64)
	n, err := resp.Body.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "event: ping") {
		t.Fatalf("first read = %q, %v", buf[:n], err)
	}
}
