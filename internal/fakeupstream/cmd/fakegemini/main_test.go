package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/tidwall/gjson"
)

// TestRunServesAllThreeOnOneURL starts the command in-process, reads the
// URL from its first output line, and drives the native API, the Google
// OAuth dance and Code Assist through that one URL; then checks it stops
// when its context ends.
func TestRunServesAllThreeOnOneURL(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-chunks", "2", "-keys", "k1, k2", "-name", "cmdfake", "-project", "p-7"}, pw)
		_ = pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("reading first line: %v", err)
	}
	base := strings.TrimSpace(line)
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("first line = %q, want http://127.0.0.1:<port>", line)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()

	do := func(method, path string, hdr map[string]string, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	const pong = `{"contents":[{"role":"user","parts":[{"text":"say pong"}]}]}`

	status, body := do("POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", map[string]string{"x-goog-api-key": "k2"}, pong)
	if status != 200 || !strings.Contains(body, `"text":"p"`) || !strings.Contains(body, `"responseId":"cmdfake_`) {
		t.Fatalf("native stream: %d %s", status, body)
	}
	if status, _ := do("POST", "/v1beta/models/gemini-2.5-flash:generateContent", map[string]string{"x-goog-api-key": "other"}, pong); status != 400 {
		t.Errorf("key outside -keys: %d, want 400", status)
	}

	// The OAuth dance on the same URL, then Code Assist with its token.
	const verifier = "cmd-verifier-cmd-verifier-cmd-verifier-cmd"
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"client_id": {fakeupstream.GoogleOAuthClientID}, "redirect_uri": {fakeupstream.GoogleOAuthRedirectURI},
		"response_type": {"code"}, "scope": {fakeupstream.GoogleOAuthScope}, "access_type": {"offline"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(base + "/o/oauth2/v2/auth?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	form := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "code_verifier": {verifier},
		"redirect_uri": {fakeupstream.GoogleOAuthRedirectURI}, "client_id": {fakeupstream.GoogleOAuthClientID},
		"client_secret": {fakeupstream.GoogleOAuthClientSecret}}
	status, body = do("POST", "/token", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, form.Encode())
	token := gjson.Get(body, "access_token").Str
	if status != 200 || token == "" {
		t.Fatalf("token: %d %s", status, body)
	}

	if status, _ := do("POST", "/v1internal:loadCodeAssist", map[string]string{"Authorization": "Bearer made-up"}, `{"metadata":{}}`); status != 401 {
		t.Errorf("Code Assist with a token the fake did not issue: %d, want 401", status)
	}
	status, body = do("POST", "/v1internal:loadCodeAssist", map[string]string{"Authorization": "Bearer " + token}, `{"metadata":{}}`)
	if status != 200 || gjson.Get(body, "cloudaicompanionProject").Str != "p-7" {
		t.Fatalf("loadCodeAssist: %d %s", status, body)
	}
	status, body = do("POST", "/v1internal:streamGenerateContent?alt=sse", map[string]string{"Authorization": "Bearer " + token},
		`{"model":"gemini-2.5-pro","project":"p-7","request":`+pong+`}`)
	if status != 200 || !strings.Contains(body, `"traceId":"cmdfake_`) || !strings.Contains(body, `"text":"ong"`) {
		t.Fatalf("Code Assist stream: %d %s", status, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

// TestRunAnyBearer: with -any-bearer Code Assist takes any token, for bench
// runs without the OAuth dance; -not-onboarded starts without a tier.
func TestRunAnyBearer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-any-bearer", "-not-onboarded", "-onboard-at-once"}, pw)
		_ = pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	post := func(method, body string) string {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSpace(line)+"/v1internal:"+method, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer anything")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", method, resp.StatusCode, b)
		}
		return string(b)
	}
	if body := post("loadCodeAssist", `{"metadata":{}}`); gjson.Get(body, "currentTier").Exists() {
		t.Errorf("-not-onboarded: %s", body)
	}
	if body := post("onboardUser", `{"tierId":"free-tier","metadata":{}}`); !gjson.Get(body, "done").Bool() {
		t.Errorf("-onboard-at-once: %s", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
