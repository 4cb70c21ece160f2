package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/fakeupstream"
)

// TestRunServesAPIOAuthAndCodex starts the command in-process, reads the URL
// from its first output line, logs in through the OAuth routes the way a
// separate process must (the code comes from the authorize redirect),
// streams on the Codex backend with the token, checks -keys on the
// Responses API, and checks it stops when its context ends.
func TestRunServesAPIOAuthAndCodex(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-deltas", "2", "-keys", "k1, k2", "-name", "cmdfake"}, pw)
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

	do := func(method, path, contentType, body string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	const verifier = "cmd-verifier-cmd-verifier-cmd-verifier-0123456"
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {fakeupstream.OpenAIClientID}, "redirect_uri": {fakeupstream.OpenAIRedirectURI},
		"scope": {fakeupstream.OpenAIScope}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"}, "state": {"s"}}
	resp, _ := do(http.MethodGet, "/oauth/authorize?"+q.Encode(), "", "", nil)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc == nil || loc.Query().Get("code") == "" {
		t.Fatalf("authorize: %d %v", resp.StatusCode, resp.Header)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {fakeupstream.OpenAIRedirectURI},
		"client_id": {fakeupstream.OpenAIClientID}, "code_verifier": {verifier}}
	resp, body := do(http.MethodPost, "/oauth/token", "application/x-www-form-urlencoded", form.Encode(), nil)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &tok) != nil || tok.AccessToken == "" {
		t.Fatalf("token: %d %s", resp.StatusCode, body)
	}

	codex := `{"model":"gpt-5.5","stream":true,"store":false,"input":[{"role":"user","content":"say pong"}]}`
	resp, body = do(http.MethodPost, "/backend-api/codex/responses", "application/json", codex,
		map[string]string{"Authorization": "Bearer " + tok.AccessToken, "ChatGPT-Account-ID": fakeupstream.OpenAIAccountID})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("codex: %d %s", resp.StatusCode, body)
	}
	for _, want := range []string{`"delta":"p"`, `"delta":"ong"`, "event: response.completed", "resp_cmdfake_"} {
		if !strings.Contains(body, want) {
			t.Errorf("stream lacks %s:\n%s", want, body)
		}
	}
	if resp, _ := do(http.MethodPost, "/backend-api/codex/responses", "application/json", codex,
		map[string]string{"Authorization": "Bearer made-up", "ChatGPT-Account-ID": fakeupstream.OpenAIAccountID}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("codex with a token the server never issued: %d, want 401", resp.StatusCode)
	}

	api := `{"model":"gpt-5.5","input":"say pong"}`
	if resp, body := do(http.MethodPost, "/v1/responses", "application/json", api, map[string]string{"Authorization": "Bearer k2"}); resp.StatusCode != http.StatusOK {
		t.Errorf("api key in -keys: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(http.MethodPost, "/v1/responses", "application/json", api, map[string]string{"Authorization": "Bearer other"}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("api key outside -keys: %d, want 401", resp.StatusCode)
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
