package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/testkit"
)

// TestSubscriptionJourney is the whole subscription story on the built
// binary: onboard a Claude account with `crs accounts oauth start` and
// `finish` (the callback URL pasted whole), then serve Claude Code and an
// SDK through it. Upstream sees the bearer token, the OAuth beta merged
// with the client's betas, the account's identity in metadata.user_id and
// never the relay key; an Opus limit leaves Sonnet routable and shows in
// `accounts list --json`; no token is readable in the database files.
func TestSubscriptionJourney(t *testing.T) {
	t.Parallel()
	o := fakeupstream.StartOAuth(t)
	api := fakeupstream.StartAnthropic(t, fakeupstream.Options{OAuth: o, Deltas: 2})
	dir := t.TempDir()
	env := []string{
		"DATA_DIR=" + dir,
		"CLAUDE_API_URL=" + api.URL(),
		"CLAUDE_OAUTH_AUTHORIZE_URL=" + o.AuthorizeURL(),
		"CLAUDE_OAUTH_TOKEN_URL=" + o.TokenURL(),
		"CLAUDE_OAUTH_PROFILE_URL=" + o.ProfileURL(),
		"CLAUDE_OAUTH_USAGE_URL=" + o.UsageURL(),
	}
	cli := func(args ...string) string {
		t.Helper()
		r := crsExec(t, "", env, args...)
		if r.code != 0 {
			t.Fatalf("crs %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
		}
		return r.stdout
	}

	var started struct {
		SessionID string `json:"session_id"`
		AuthURL   string `json:"auth_url"`
	}
	testkit.MustJSON(t, cli("accounts", "oauth", "start", "--platform", "claude", "--json"), &started)
	u, err := url.Parse(started.AuthURL)
	if err != nil || !strings.HasPrefix(started.AuthURL, o.AuthorizeURL()+"?") || u.Query().Get("code_challenge_method") != "S256" {
		t.Fatalf("auth URL %q", started.AuthURL)
	}
	code := o.IssueCode(u.Query().Get("code_challenge"), u.Query().Get("state"))
	callback := "https://console.anthropic.com/oauth/code/callback?code=" + code + "#" + u.Query().Get("state")
	var acct struct {
		ID   string `json:"id"`
		Plan string `json:"plan"`
	}
	testkit.MustJSON(t, cli("accounts", "oauth", "finish", started.SessionID, "--code", callback, "--name", "max", "--json"), &acct)
	if acct.ID == "" || acct.Plan != "max" {
		t.Fatalf("finished account %+v", acct)
	}
	var key struct {
		Key string `json:"key"`
	}
	testkit.MustJSON(t, cli("keys", "create", "--name", "friend", "--json"), &key)
	srv := startCRS(t, dir, env...)

	// Claude Code, as 2.1.332 sends it (shared/reference/clients.md).
	ccBody := `{"model":"claude-opus-4-5","max_tokens":1000,"stream":true,` +
		`"system":[{"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.332.201; cc_entrypoint=cli;"},` +
		`{"type":"text","text":"You are Claude Code, Anthropic's official CLI for Claude.","cache_control":{"type":"ephemeral"}}],` +
		`"messages":[{"role":"user","content":[{"type":"text","text":"say pong"}]}],` +
		`"metadata":{"user_id":"{\"device_id\":\"d0d0\",\"account_uuid\":\"\",\"session_id\":\"11111111-2222-3333-4444-555555555555\"}"}}`
	req, _ := http.NewRequest(http.MethodPost, srv.url+"/api/v1/messages?beta=true", strings.NewReader(ccBody))
	for k, v := range map[string]string{
		"Content-Type": "application/json", "Anthropic-Version": "2023-06-01", "X-Api-Key": key.Key,
		"User-Agent": "claude-cli/2.1.332 (external, cli)", "X-App": "cli",
		"Anthropic-Beta": "claude-code-20250219,oauth-2025-04-20,effort-2025-11-24",
		"Cookie":         "session=secret", "X-Forwarded-For": "203.0.113.9",
	} {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "message_stop") {
		t.Fatalf("Claude Code request: %d %s", resp.StatusCode, body)
	}
	claudeSDK := testkit.SDK(srv.url+"/claude", key.Key)
	msg, err := claudeSDK.Messages.New(testkit.Ctx(t, 20*time.Second), testkit.Params("hello from an SDK"))
	if err != nil || textOf(*msg) != fakeupstream.ReplyText(2) {
		t.Fatalf("SDK request: %v", err)
	}

	reqs := api.Requests()
	if len(reqs) != 2 {
		t.Fatalf("upstream saw %d requests", len(reqs))
	}
	cc, sdk := reqs[0], reqs[1]
	for _, c := range []struct{ what, got, want string }{
		{"Claude Code anthropic-beta", cc.Header.Get("Anthropic-Beta"),
			"claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14,effort-2025-11-24"},
		{"Claude Code user agent", cc.Header.Get("User-Agent"), "claude-cli/2.1.332 (external, cli)"},
		{"accept-encoding", cc.Header.Get("Accept-Encoding"), "identity"},
		{"query", cc.RawQuery, "beta=true"},
		{"cookie", cc.Header.Get("Cookie"), ""},
		{"x-forwarded-for", cc.Header.Get("X-Forwarded-For"), ""},
		{"x-api-key", cc.Header.Get("X-Api-Key") + sdk.Header.Get("X-Api-Key"), ""},
		{"account uuid", gjson.Get(gjson.GetBytes(cc.Body, "metadata.user_id").String(), "account_uuid").String(), fakeupstream.OAuthAccountUUID},
		{"SDK anthropic-beta has the OAuth beta", boolText(strings.Contains(sdk.Header.Get("Anthropic-Beta"), "oauth-2025-04-20")), "true"},
		{"SDK user agent is the account's Claude Code face", boolText(strings.HasPrefix(sdk.Header.Get("User-Agent"), "claude-cli/")), "true"},
		{"SDK system starts with the Claude Code identity", boolText(strings.Contains(gjson.GetBytes(sdk.Body, "system.0.text").String(), "Claude Code")), "true"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if s := gjson.Get(gjson.GetBytes(cc.Body, "metadata.user_id").String(), "session_id").String(); s == "" || s == "11111111-2222-3333-4444-555555555555" {
		t.Errorf("session id upstream = %q, want one derived for the account", s)
	}
	for _, r := range reqs {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer sk-ant-oat01-") {
			t.Errorf("authorization %q", r.Header.Get("Authorization"))
		}
		for name, vals := range r.Header {
			if strings.Contains(strings.Join(vals, ","), key.Key) {
				t.Errorf("relay key reached upstream in %s", name)
			}
		}
		if bytes.Contains(r.Body, []byte(key.Key)) {
			t.Error("relay key reached upstream in the body")
		}
	}

	// Opus runs out; Sonnet keeps working on the same account.
	api.LimitFamily("opus", time.Now().Add(time.Hour))
	sdkc := testkit.SDK(srv.url+"/api", key.Key)
	if _, err := sdkc.Messages.New(testkit.Ctx(t, 20*time.Second), opusParams("opus now")); err == nil {
		t.Fatal("an opus request succeeded with opus exhausted and one account")
	}
	if _, err := sdkc.Messages.New(testkit.Ctx(t, 20*time.Second), testkit.Params("sonnet now")); err != nil {
		t.Fatalf("sonnet after an opus limit: %v", err)
	}
	var list []map[string]json.RawMessage
	testkit.MustJSON(t, cli("accounts", "list", "--json"), &list)
	if len(list) != 1 {
		t.Fatalf("accounts list: %s", list)
	}
	var window struct{ Status string }
	var limits map[string]time.Time
	json.Unmarshal(list[0]["window_5h"], &window)
	json.Unmarshal(list[0]["family_limits"], &limits)
	if limits["opus"].IsZero() || len(limits) != 1 || string(list[0]["status"]) != `"active"` || window.Status != "allowed" {
		t.Fatalf("accounts list: %s", list)
	}

	// Tokens are sealed at rest: no token appears in the database files.
	files, _ := filepath.Glob(filepath.Join(dir, "crs.db*"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, prefix := range []string{"sk-ant-oat01-", "sk-ant-ort01-"} {
			if bytes.Contains(raw, []byte(prefix)) {
				t.Fatalf("%s holds a token in the clear (%s…)", filepath.Base(f), prefix)
			}
		}
	}
}

func boolText(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func opusParams(text string) anthropic.MessageNewParams {
	p := testkit.Params(text)
	p.Model = "claude-opus-4-5"
	return p
}
