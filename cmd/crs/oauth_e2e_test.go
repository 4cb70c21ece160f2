package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/oauth"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/testkit"
)

// oauthFixture is a DATA_DIR with one Claude OAuth account onboarded
// against the fake OAuth server, and the environment that points crs at
// the fakes.
type oauthFixture struct {
	dir     string
	env     map[string]string
	oauth   *fakeupstream.OAuth
	api     *fakeupstream.Anthropic
	account store.AccountID
	refresh string // the account's refresh token as onboarded
}

func newOAuthFixture(t *testing.T, accessTTL time.Duration) *oauthFixture {
	t.Helper()
	o := fakeupstream.StartOAuth(t)
	o.SetAccessTTL(accessTTL)
	api := fakeupstream.StartAnthropic(t, fakeupstream.Options{OAuth: o, Deltas: 2})
	f := &oauthFixture{dir: newDataDir(t), oauth: o, api: api, env: map[string]string{
		"CLAUDE_API_URL":             api.URL(),
		"CLAUDE_OAUTH_AUTHORIZE_URL": o.AuthorizeURL(),
		"CLAUDE_OAUTH_TOKEN_URL":     o.TokenURL(),
		"CLAUDE_OAUTH_PROFILE_URL":   o.ProfileURL(),
		"CLAUDE_OAUTH_USAGE_URL":     o.UsageURL(),
	}}
	f.account = "acct-oauth"
	f.refresh = f.addOAuthAccount(t, f.account, 50, nil)
	return f
}

// addOAuthAccount onboards one more subscription account at the fake OAuth
// server, as the code exchange would, stores it sealed under the
// DATA_DIR's key (edit may set its plan, options, base URL or proxy
// first), and returns its refresh token.
func (f *oauthFixture) addOAuthAccount(t *testing.T, id store.AccountID, priority int, edit func(*store.Account)) string {
	t.Helper()
	o := f.oauth
	eps := oauth.Endpoints{AuthorizeURL: o.AuthorizeURL(), TokenURL: o.TokenURL(), ProfileURL: o.ProfileURL(), UsageURL: o.UsageURL()}
	p, err := oauth.NewPending(oauth.KindOAuth, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	code := o.IssueCode(p.Challenge(), p.State)
	c := &oauth.Client{Endpoints: eps, HTTP: http.DefaultClient}
	tok, err := c.Exchange(context.Background(), p, code)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"DATA_DIR": f.dir}
	e, err := openEnv(context.Background(), "", func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	sealed, err := oauth.CredentialFromToken(tok).Seal(e.Box)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	a := store.Account{ID: id, Name: string(id), Platform: store.PlatformClaude,
		Type: store.TypeOAuth, Priority: priority, SealedSecret: sealed, CreatedAt: now, UpdatedAt: now}
	if edit != nil {
		edit(&a)
		if len(a.SealedProxy) > 0 {
			// edit gives the proxy in plain text; seal it as the CLI does.
			a.SealedProxy = e.Box.Seal(a.SealedProxy)
		}
	}
	if err := e.Store.CreateAccount(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	return tok.RefreshToken
}

// claudeCodeBody is shaped like Claude Code 2.1.332's request
// (shared/reference/clients.md).
const claudeCodeBody = `{"model":"claude-opus-5-5","max_tokens":128000,"stream":true,` +
	`"system":[{"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.332.201; cc_entrypoint=sdk-cli;"},` +
	`{"type":"text","text":"You are a Claude agent, built on Anthropic's Claude Agent SDK.","cache_control":{"type":"ephemeral"}},` +
	`{"type":"text","text":"main prompt","cache_control":{"type":"ephemeral","ttl":"1h"}}],` +
	`"messages":[{"role":"user","content":[{"type":"text","text":"say pong"}]},{"role":"system","content":[{"type":"text","text":"env"}]}],` +
	`"metadata":{"user_id":"{\"device_id\":\"` + "d0d0" + `\",\"account_uuid\":\"\",\"session_id\":\"11111111-2222-3333-4444-555555555555\"}"},` +
	`"thinking":{"type":"adaptive","display":"omitted"}}`

// TestOAuthAccountServesClaudeCodeAndSDK: a Claude Code-shaped request and a
// plain SDK request both succeed on an OAuth account; upstream sees the
// bearer token with the OAuth beta merged into the client's betas, the
// account's identity in metadata.user_id, and never the relay key.
func TestOAuthAccountServesClaudeCodeAndSDK(t *testing.T) {
	t.Parallel()
	f := newOAuthFixture(t, time.Hour)
	_, key := createKey(t, f.dir, "k")
	srv := startRelay(t, f.dir, f.env)

	resp := rawPost(t, srv.url+"/api/v1/messages?beta=true", key, claudeCodeBody,
		"User-Agent", "claude-cli/2.1.332 (external, cli)", "X-App", "cli",
		"Anthropic-Beta", "claude-code-20250219,interleaved-thinking-2025-05-14,effort-2025-11-24",
		"X-Claude-Code-Session-Id", "11111111-2222-3333-4444-555555555555")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "message_stop") {
		t.Fatalf("Claude Code request: %d %s", resp.StatusCode, body)
	}
	up := f.api.Requests()[0]
	auth := up.Header.Get("Authorization")
	betas := up.Header.Get("Anthropic-Beta")
	if !strings.HasPrefix(auth, "Bearer sk-ant-oat01-") || up.Header.Get("X-Api-Key") != "" ||
		!strings.Contains(betas, "oauth-2025-04-20") || !strings.Contains(betas, "effort-2025-11-24") ||
		up.RawQuery != "beta=true" || up.Header.Get("Accept-Encoding") != "identity" {
		t.Fatalf("upstream headers: auth %q betas %q query %q %v", auth[:min(len(auth), 20)], betas, up.RawQuery, up.Header)
	}
	for name, vals := range up.Header {
		if strings.Contains(strings.Join(vals, ","), key) {
			t.Fatalf("relay key leaked upstream in %s", name)
		}
	}
	uid := gjson.GetBytes(up.Body, "metadata.user_id").String()
	if gjson.Get(uid, "account_uuid").String() != fakeupstream.OAuthAccountUUID ||
		gjson.Get(uid, "session_id").String() == "11111111-2222-3333-4444-555555555555" || gjson.Get(uid, "session_id").String() == "" {
		t.Fatalf("metadata.user_id upstream = %s", uid)
	}
	if !strings.Contains(string(up.Body), `"ttl":"1h"`) {
		t.Fatal("a 1-hour cache_control ttl was dropped")
	}

	c := testkit.SDK(srv.url+"/claude", key)
	msg, err := testkit.Stream(testkit.Ctx(t, 20*time.Second), c, testkit.Params("hello from an SDK"))
	if err != nil || msg.Content[0].Text != fakeupstream.ReplyText(2) {
		t.Fatalf("SDK request on the OAuth account: %v", err)
	}
	sdkUp := f.api.Requests()[1]
	if first := gjson.GetBytes(sdkUp.Body, "system.0.text").String(); !strings.Contains(first, "Claude Code") {
		t.Fatalf("SDK request reached upstream without the Claude Code identity first: %q", first)
	}
	if !strings.Contains(string(sdkUp.Body), "hello from an SDK") {
		t.Fatal("the SDK's message was lost")
	}
	if u := usageJSON(t, f.dir); u.TotalRequests() != 2 {
		t.Fatalf("usage: %+v", u)
	}
}

// TestOAuthExpiredTokenRefreshedOnce: 24 concurrent requests find the
// access token expired; exactly one refresh reaches the OAuth server (it
// rotates refresh tokens, so a second one would kill the account), and all
// requests succeed.
func TestOAuthExpiredTokenRefreshedOnce(t *testing.T) {
	t.Parallel()
	f := newOAuthFixture(t, 50*time.Millisecond)
	time.Sleep(100 * time.Millisecond) // the onboarded token is now expired
	f.oauth.SetAccessTTL(time.Hour)
	_, key := createKey(t, f.dir, "k")
	srv := startRelay(t, f.dir, f.env)
	c := testkit.SDK(srv.url+"/api", key)
	ctx := testkit.Ctx(t, 30*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 24)
	for range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Messages.New(ctx, testkit.Params("x"))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a request failed: %v", err)
		}
	}
	if n := f.oauth.RefreshCalls(); n != 1 {
		t.Fatalf("refresh calls = %d, want exactly 1", n)
	}
}

// TestOAuthRevokedAccountIsDeadNotLooped: a revoked grant marks the account
// credential_dead with the reason, the client gets an Anthropic-shaped
// error, and later requests do not hammer the token endpoint.
func TestOAuthRevokedAccountIsDeadNotLooped(t *testing.T) {
	t.Parallel()
	f := newOAuthFixture(t, 50*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	f.oauth.Revoke(f.refresh)
	_, key := createKey(t, f.dir, "k")
	srv := startRelay(t, f.dir, f.env)
	for range 3 {
		resp := rawPost(t, srv.url+"/api/v1/messages", key, `{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 529 || !strings.Contains(string(b), `"type":"error"`) {
			t.Fatalf("revoked account: %d %s", resp.StatusCode, b)
		}
	}
	if n := f.oauth.RefreshCalls(); n != 1 {
		t.Fatalf("refresh calls = %d, want 1 (no retry loop on a dead grant)", n)
	}
	if status, _ := accountStatus(t, f.dir, string(f.account)); status != "credential_dead" {
		t.Fatalf("status = %s, want credential_dead", status)
	}
	if f.api.MessageCount() != 0 {
		t.Fatal("a request went upstream with a dead token")
	}
}
