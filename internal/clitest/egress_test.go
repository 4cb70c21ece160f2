package clitest

import (
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/http/httpproxy"
)

// proxyConfig reads env ("K=V" entries) the way Go's and most other HTTP
// clients read the proxy variables.
func proxyConfig(env []string) *httpproxy.Config {
	get := func(k string) string {
		for _, kv := range slices.Backward(env) {
			if v, ok := strings.CutPrefix(kv, k+"="); ok {
				return v
			}
		}
		return ""
	}
	return &httpproxy.Config{HTTPProxy: get("HTTP_PROXY"), HTTPSProxy: get("HTTPS_PROXY"), NoProxy: get("NO_PROXY")}
}

func TestEgressGuardEnvSparesLoopback(t *testing.T) {
	g, err := startEgressGuard()
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	proxyFor := proxyConfig(g.env()).ProxyFunc()
	guard := "http://" + g.ln.Addr().String()
	tests := []struct {
		target    string
		wantProxy string // "" = direct
	}{
		{"http://127.0.0.1:3000/openai/responses", ""},
		{"http://localhost:3000/gemini", ""},
		{"http://[::1]:3000/api", ""},
		{"https://chatgpt.com/backend-api/plugins", guard},
		{"https://play.googleapis.com/log", guard},
		{"http://example.com/", guard},
	}
	for _, tc := range tests {
		u, _ := url.Parse(tc.target)
		p, err := proxyFor(u)
		if err != nil {
			t.Fatalf("proxy for %s: %v", tc.target, err)
		}
		got := ""
		if p != nil {
			got = p.String()
		}
		if got != tc.wantProxy {
			t.Errorf("proxy for %s = %q, want %q", tc.target, got, tc.wantProxy)
		}
	}
}

func TestEgressGuardRefusesAndRecords(t *testing.T) {
	g, err := startEgressGuard()
	if err != nil {
		t.Fatal(err)
	}
	proxyURL, _ := url.Parse("http://" + g.ln.Addr().String())
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}

	// Plain HTTP arrives as an absolute-form request: refused with 403.
	resp, err := c.Get("http://Updates.Vendor.invalid:8080/latest")
	if err != nil {
		t.Fatalf("GET through the guard: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || strings.TrimSpace(string(body)) != egressRefusal {
		t.Errorf("plain HTTP: %d %q, want 403 and the refusal", resp.StatusCode, body)
	}
	// HTTPS asks for a CONNECT tunnel, which is refused before any TLS.
	_, err = c.Get("https://telemetry.vendor.invalid/v1/events")
	if err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Errorf("HTTPS through the guard: err = %v, want the refused CONNECT", err)
	}
	// The same host again is listed once.
	if resp, err := c.Get("http://updates.vendor.invalid/again"); err == nil {
		resp.Body.Close()
	}

	got := g.close()
	want := []string{"updates.vendor.invalid", "telemetry.vendor.invalid"}
	if !slices.Equal(got, want) {
		t.Errorf("egress = %q, want %q", got, want)
	}
	if resp, err := c.Get("http://after.close.invalid/"); err == nil {
		resp.Body.Close()
		t.Error("the guard still answers after close")
	}
}
