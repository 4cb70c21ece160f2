package main

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/netx/netxtest"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/testkit"
)

// accountView reads one account from `crs accounts list --json`, in full.
func accountView(t *testing.T, dir string, id store.AccountID) admin.AccountView {
	t.Helper()
	var list []admin.AccountView
	testkit.MustJSON(t, cliRun(t, dir, "", "accounts", "list", "--json"), &list)
	for _, a := range list {
		if a.ID == id {
			return a
		}
	}
	t.Fatalf("account %s not listed", id)
	return admin.AccountView{}
}

// post sends a Messages body and returns the status and the whole answer.
func post(t *testing.T, url, key, body string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	resp := rawPost(t, url+"/api/v1/messages", key, body, hdr...)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func messagesBody(model, text string) string {
	return `{"model":"` + model + `","max_tokens":16,"messages":[{"role":"user","content":"` + text + `"}]}`
}

// sdkHeaders are what an SDK (not Claude Code) sends besides the key.
var sdkHeaders = []string{"User-Agent", "Anthropic/JS 0.60.0"}

// claudeCodeHeaders make a request with claudeCodeBody look like Claude Code.
func claudeCodeHeaders(version string) []string {
	return []string{"User-Agent", "claude-cli/" + version + " (external, cli)", "X-App", "cli"}
}

// TestOAuthFamilyLimitKeepsOtherFamiliesRoutable: Opus is exhausted on the
// first account. An Opus request fails over to the second account before
// the first byte; Sonnet keeps going to the first (it is preferred); the
// limit shows in `accounts list --json` and later Opus requests skip the
// first account without asking it.
func TestOAuthFamilyLimitKeepsOtherFamiliesRoutable(t *testing.T) {
	t.Parallel()
	f := newOAuthFixture(t, time.Hour)
	other := fakeupstream.StartAnthropic(t, fakeupstream.Options{OAuth: f.oauth, Deltas: 2, Name: "other"})
	f.addOAuthAccount(t, "acct-b", 90, func(a *store.Account) { a.BaseURL = other.URL() })
	_, key := createKey(t, f.dir, "k")
	reset := time.Now().Add(3 * time.Hour).Truncate(time.Second)
	f.api.LimitFamily("opus", reset)
	srv := startRelay(t, f.dir, f.env)

	if code, body, _ := post(t, srv.url, key, messagesBody("claude-opus-4-5", "opus please")); code != 200 || !strings.Contains(body, "msg_other_") {
		t.Fatalf("opus: %d %s (want it served by the second account)", code, body)
	}
	if n := f.api.MessageCount(); n != 1 {
		t.Fatalf("first account saw %d opus requests, want the one that was refused", n)
	}
	if code, body, _ := post(t, srv.url, key, messagesBody("claude-sonnet-4-5", "sonnet please")); code != 200 || strings.Contains(body, "msg_other_") {
		t.Fatalf("sonnet: %d %s (want it served by the preferred, opus-limited account)", code, body)
	}
	v := accountView(t, f.dir, f.account)
	if got, ok := v.FamilyLimits["opus"]; !ok || !got.Equal(reset) || v.Status != "active" {
		t.Fatalf("accounts list: status %s, family_limits %v; want active with opus until %v", v.Status, v.FamilyLimits, reset)
	}
	if _, ok := v.FamilyLimits["sonnet"]; ok {
		t.Fatal("sonnet limited too")
	}
	before := f.api.MessageCount()
	if code, _, _ := post(t, srv.url, key, messagesBody("claude-opus-4-5-20251101", "again")); code != 200 {
		t.Fatalf("second opus request: %d", code)
	}
	if f.api.MessageCount() != before {
		t.Fatal("a later opus request was sent to the account whose opus limit runs")
	}
	// The JSON scripts read has the documented shape.
	var raw []map[string]json.RawMessage
	testkit.MustJSON(t, cliRun(t, f.dir, "", "accounts", "list", "--json"), &raw)
	for _, field := range []string{"plan", "window_5h", "family_limits", "status"} {
		if _, ok := raw[0][field]; !ok {
			t.Errorf("accounts list --json lacks %q", field)
		}
	}
}

// TestOAuthBothAccountsLimitedAnswersWithTheReset: when every account's
// Opus is exhausted, the client gets 529 with a Retry-After near the
// earliest reset, at once, and Sonnet still works.
func TestOAuthBothAccountsLimitedAnswersWithTheReset(t *testing.T) {
	t.Parallel()
	f := newOAuthFixture(t, time.Hour)
	_, key := createKey(t, f.dir, "k")
	reset := time.Now().Add(2 * time.Hour)
	f.api.LimitFamily("opus", reset)
	srv := startRelay(t, f.dir, f.env)
	for i := range 2 {
		code, body, h := post(t, srv.url, key, messagesBody("claude-opus-4-5", "x"))
		if code != 529 || !strings.Contains(body, "overloaded_error") {
			t.Fatalf("attempt %d: %d %s", i, code, body)
		}
		if ra, _ := strconv.Atoi(h.Get("Retry-After")); ra < 7000 {
			t.Fatalf("Retry-After = %d, want about two hours", ra)
		}
	}
	if n := f.api.MessageCount(); n != 1 {
		t.Fatalf("upstream saw %d opus requests; after the first 429 the account should be skipped", n)
	}
	if code, _, _ := post(t, srv.url, key, messagesBody("claude-sonnet-4-5", "x")); code != 200 {
		t.Fatalf("sonnet after an opus limit: %d", code)
	}
}

// TestOAuthAutoPauseOnWarningAndResume: an account with
// auto_pause_on_warning rests when its 5-hour window reaches
// allowed_warning and comes back by itself when the window resets; an
// account without the option keeps serving.
func TestOAuthAutoPauseOnWarningAndResume(t *testing.T) {
	f := newOAuthFixture(t, time.Hour)
	other := fakeupstream.StartAnthropic(t, fakeupstream.Options{OAuth: f.oauth, Deltas: 2, Name: "other"})
	f.addOAuthAccount(t, "acct-b", 90, func(a *store.Account) { a.BaseURL = other.URL() })
	cliRun(t, f.dir, "", "accounts", "update", string(f.account), "--auto-pause-on-warning", "--priority", "10")
	_, key := createKey(t, f.dir, "k")
	srv := startRelay(t, f.dir, f.env)

	if code, body, _ := post(t, srv.url, key, messagesBody("claude-sonnet-4-5", "conversation 1")); code != 200 || strings.Contains(body, "msg_other_") {
		t.Fatalf("first request: %d %s", code, body)
	}
	v := accountView(t, f.dir, f.account)
	if v.Window5h == nil || v.Window5h.Status != "allowed" || v.Window5h.End.Sub(v.Window5h.Start) != 5*time.Hour {
		t.Fatalf("window_5h = %+v", v.Window5h)
	}

	reset := time.Now().Add(3 * time.Second).Truncate(time.Second).Add(time.Second)
	f.api.SetWindow("allowed_warning", reset)
	if code, _, _ := post(t, srv.url, key, messagesBody("claude-sonnet-4-5", "conversation 2")); code != 200 {
		t.Fatalf("the request that saw the warning: %d (it is served; only later ones move)", code)
	}
	v = accountView(t, f.dir, f.account)
	if v.Status != "rate_limited" || v.CooldownUntil == nil || !v.CooldownUntil.Equal(reset) ||
		v.Window5h == nil || v.Window5h.Status != "allowed_warning" || !v.Window5h.End.Equal(reset) {
		t.Fatalf("after the warning: status %s until %v, window %+v; want rate_limited until %v", v.Status, v.CooldownUntil, v.Window5h, reset)
	}
	if code, body, _ := post(t, srv.url, key, messagesBody("claude-sonnet-4-5", "conversation 3")); code != 200 || !strings.Contains(body, "msg_other_") {
		t.Fatalf("while paused: %d %s (want the other account)", code, body)
	}
	if s := accountView(t, f.dir, "acct-b").Status; s != "active" {
		t.Fatalf("the account without the option is %s", s)
	}

	// The fake opens a fresh window at the reset; the paused account is
	// back without anyone touching it.
	time.Sleep(time.Until(reset) + 100*time.Millisecond)
	f.api.SetWindow("allowed", reset.Add(5*time.Hour))
	if code, body, _ := post(t, srv.url, key, messagesBody("claude-sonnet-4-5", "conversation 4")); code != 200 || strings.Contains(body, "msg_other_") {
		t.Fatalf("after the reset: %d %s (want the resumed, preferred account)", code, body)
	}
	if v = accountView(t, f.dir, f.account); v.Status != "active" || v.Window5h == nil || v.Window5h.Status != "allowed" {
		t.Fatalf("after the reset: %+v", v)
	}
}

// TestWarmupInterceptedWhenEnabled: Claude Code's warmup call is answered
// by crs (stream and JSON) when the account asks for it, and reaches the
// upstream when the option is switched off.
func TestWarmupInterceptedWhenEnabled(t *testing.T) {
	t.Parallel()
	f := newOAuthFixture(t, time.Hour)
	cliRun(t, f.dir, "", "accounts", "update", string(f.account), "--intercept-warmup")
	_, key := createKey(t, f.dir, "k")
	srv := startRelay(t, f.dir, f.env)
	warmup := `{"model":"claude-haiku-4-5","max_tokens":1,"messages":[{"role":"user","content":"Warmup"}]}`

	sdk := testkit.SDK(srv.url+"/api", key)
	msg, err := sdk.Messages.New(testkit.Ctx(t, 10*time.Second), testkit.Params("Warmup"))
	if err != nil || len(msg.Content) == 0 || msg.Content[0].Text != "New Conversation" {
		t.Fatalf("JSON warmup: %+v %v", msg, err)
	}
	p := testkit.Params("Warmup")
	streamed, err := testkit.Stream(testkit.Ctx(t, 10*time.Second), sdk, p)
	if err != nil || len(streamed.Content) == 0 || streamed.Content[0].Text != "New Conversation" {
		t.Fatalf("streamed warmup: %+v %v", streamed, err)
	}
	if n := f.api.MessageCount(); n != 0 {
		t.Fatalf("upstream saw %d warmup requests, want none", n)
	}
	if code, _, _ := post(t, srv.url, key, messagesBody("claude-sonnet-4-5", "a real question")); code != 200 || f.api.MessageCount() != 1 {
		t.Fatalf("a real request was not forwarded: %d", code)
	}

	cliRun(t, f.dir, "", "accounts", "update", string(f.account), "--intercept-warmup=false")
	testkit.WaitFor(t, 5*time.Second, func() bool {
		post(t, srv.url, key, warmup)
		return f.api.MessageCount() > 1
	})
	if v := accountView(t, f.dir, f.account); v.InterceptWarmup {
		t.Fatal("intercept_warmup still true after --intercept-warmup=false")
	}
}

// TestClaudeCodeOnlyKeepsSubscriptionsForClaudeCode: with
// CLAUDE_CODE_ONLY=true an SDK request is not served by the subscription
// account (a clear 503 while nothing else can serve it; an API-key account
// once there is one), and Claude Code still is.
func TestClaudeCodeOnlyKeepsSubscriptionsForClaudeCode(t *testing.T) {
	t.Parallel()
	f := newOAuthFixture(t, time.Hour)
	_, key := createKey(t, f.dir, "k")
	f.env["CLAUDE_CODE_ONLY"] = "true"
	srv := startRelay(t, f.dir, f.env)

	code, body, _ := post(t, srv.url, key, messagesBody("claude-sonnet-4-5", "from an SDK"), sdkHeaders...)
	if code != 503 || !strings.Contains(body, "CLAUDE_CODE_ONLY") {
		t.Fatalf("SDK request with only a subscription account: %d %s", code, body)
	}
	if code, body, _ := post(t, srv.url, key, claudeCodeBody, claudeCodeHeaders("2.1.332")...); code != 200 {
		t.Fatalf("Claude Code request: %d %s", code, body)
	}
	if f.api.MessageCount() != 1 {
		t.Fatalf("upstream saw %d requests, want only Claude Code's", f.api.MessageCount())
	}

	apiKeyUp := fakeupstream.StartAnthropic(t, fakeupstream.Options{Name: "apikey"})
	addAccount(t, f.dir, apiKeyUp, "api", 90)
	testkit.WaitFor(t, 5*time.Second, func() bool {
		code, _, _ := post(t, srv.url, key, messagesBody("claude-sonnet-4-5", "from an SDK"), sdkHeaders...)
		return code == 200
	})
	if apiKeyUp.MessageCount() != 1 || f.api.MessageCount() != 1 {
		t.Fatalf("SDK request went to the subscription (api-key fake %d, oauth fake %d)", apiKeyUp.MessageCount(), f.api.MessageCount())
	}
}

// TestKeyClientsRestriction: a key limited to claude_code refuses other
// clients with 403 permission_error, serves Claude Code, and `keys
// update --clients ""` lifts the restriction.
func TestKeyClientsRestriction(t *testing.T) {
	t.Parallel()
	f := newOAuthFixture(t, time.Hour)
	var created admin.CreatedKey
	testkit.MustJSON(t, cliRun(t, f.dir, "", "keys", "create", "--name", "cc", "--clients", "claude_code", "--json"), &created)
	if !slices.Equal(created.Clients, []string{"claude_code"}) {
		t.Fatalf("clients = %v", created.Clients)
	}
	srv := startRelay(t, f.dir, f.env)
	code, body, h := post(t, srv.url, created.Key, messagesBody("claude-sonnet-4-5", "x"), sdkHeaders...)
	if code != 403 || gjson.Get(body, "error.type").String() != "permission_error" || !strings.Contains(body, "client_not_allowed") ||
		h.Get("X-Should-Retry") != "false" {
		t.Fatalf("SDK on a Claude-Code-only key: %d %s %v", code, body, h)
	}
	if code, body, _ := post(t, srv.url, created.Key, claudeCodeBody, claudeCodeHeaders("2.1.332")...); code != 200 {
		t.Fatalf("Claude Code on its key: %d %s", code, body)
	}
	// count_tokens is exempt, as in the original.
	resp := rawPost(t, srv.url+"/api/v1/messages/count_tokens", created.Key, messagesBody("claude-sonnet-4-5", "x"), sdkHeaders...)
	resp.Body.Close()
	if resp.StatusCode == 403 {
		t.Fatal("count_tokens refused by the client restriction")
	}
	var v admin.KeyView
	testkit.MustJSON(t, cliRun(t, f.dir, "", "keys", "update", string(created.ID), "--clients", "", "--json"), &v)
	if len(v.Clients) != 0 {
		t.Fatalf("clients after clearing: %v", v.Clients)
	}
	testkit.WaitFor(t, 5*time.Second, func() bool {
		code, _, _ := post(t, srv.url, created.Key, messagesBody("claude-sonnet-4-5", "x"), sdkHeaders...)
		return code == 200
	})
}

// TestPlanAwareRouting: a free plan gets no Opus; the same account still
// serves Sonnet, and an Opus request goes to the Max account.
func TestPlanAwareRouting(t *testing.T) {
	t.Parallel()
	f := newOAuthFixture(t, time.Hour)
	other := fakeupstream.StartAnthropic(t, fakeupstream.Options{OAuth: f.oauth, Deltas: 2, Name: "max"})
	f.addOAuthAccount(t, "acct-free", 1, func(a *store.Account) { a.Plan = "free" })
	f.addOAuthAccount(t, "acct-max", 90, func(a *store.Account) { a.Plan = "max"; a.BaseURL = other.URL() })
	cliRun(t, f.dir, "", "accounts", "disable", string(f.account))
	_, key := createKey(t, f.dir, "k")
	srv := startRelay(t, f.dir, f.env)
	if code, body, _ := post(t, srv.url, key, messagesBody("claude-opus-4-5", "x")); code != 200 || !strings.Contains(body, "msg_max_") {
		t.Fatalf("opus: %d %s (want the max account)", code, body)
	}
	if code, body, _ := post(t, srv.url, key, messagesBody("claude-sonnet-4-5", "another conversation")); code != 200 || strings.Contains(body, "msg_max_") {
		t.Fatalf("sonnet: %d %s (want the free, preferred account)", code, body)
	}
	if v := accountView(t, f.dir, "acct-free"); v.Plan != "free" {
		t.Fatalf("plan = %q", v.Plan)
	}
	cliRun(t, f.dir, "", "accounts", "disable", "acct-max")
	testkit.WaitFor(t, 5*time.Second, func() bool {
		code, body, _ := post(t, srv.url, key, messagesBody("claude-opus-4-5", "x"))
		return code == 503 && strings.Contains(body, "claude-opus-4-5")
	})
}

// TestAccountModelsAllowListAndMapping: `accounts update --models` limits
// what an account serves and renames models on the way upstream; a dated
// variant of a listed name is covered.
func TestAccountModelsAllowListAndMapping(t *testing.T) {
	t.Parallel()
	up := fakeupstream.StartAnthropic(t, fakeupstream.Options{})
	dir := newDataDir(t)
	id := addAccount(t, dir, up, "mapped", 50)
	var v admin.AccountView
	testkit.MustJSON(t, cliRun(t, dir, "", "accounts", "update", id, "--models", "claude-sonnet-4-5, claude-opus-4-1=claude-opus-4-5", "--json"), &v)
	if len(v.Models) != 2 || v.Models["claude-opus-4-1"] != "claude-opus-4-5" {
		t.Fatalf("models = %v", v.Models)
	}
	_, key := createKey(t, dir, "k")
	srv := startRelay(t, dir, nil)

	if code, body, _ := post(t, srv.url, key, messagesBody("claude-opus-4-1", "x")); code != 200 {
		t.Fatalf("mapped model: %d %s", code, body)
	}
	if got := gjson.GetBytes(up.Requests()[0].Body, "model").String(); got != "claude-opus-4-5" {
		t.Fatalf("upstream model = %q, want the mapped claude-opus-4-5", got)
	}
	if code, _, _ := post(t, srv.url, key, messagesBody("claude-sonnet-4-5-20250929", "x")); code != 200 {
		t.Fatalf("dated variant of a listed model: %d", code)
	}
	if got := gjson.GetBytes(up.Requests()[1].Body, "model").String(); got != "claude-sonnet-4-5-20250929" {
		t.Fatalf("upstream model = %q, want it as requested", got)
	}
	code, body, _ := post(t, srv.url, key, messagesBody("claude-haiku-4-5", "x"))
	if code != 503 || !strings.Contains(body, "claude-haiku-4-5") {
		t.Fatalf("unlisted model: %d %s", code, body)
	}
	if up.MessageCount() != 2 {
		t.Fatal("an unlisted model reached the upstream")
	}
	// A bad list is refused with the reason, and nothing changes.
	var out, errOut strings.Builder
	if code := run(t.Context(), []string{"accounts", "update", id, "--models", "a=b=c", "--data-dir", dir}, strings.NewReader(""), &out, &errOut); code == 0 {
		t.Fatal("a malformed --models was accepted")
	}
	if !strings.Contains(errOut.String(), "--models") {
		t.Fatalf("error does not name the flag: %s", errOut.String())
	}
	testkit.MustJSON(t, cliRun(t, dir, "", "accounts", "update", id, "--models", "", "--json"), &v)
	if v.Models != nil {
		t.Fatalf("models after clearing = %v", v.Models)
	}
}

// TestSerialQueueOneUserTurnAtATime: on an account with serial_queue,
// concurrent user turns reach the upstream one at a time (the next leaves
// when the previous one's response headers arrive, plus the gap), while
// tool results of the agent loop pass at once.
func TestSerialQueueOneUserTurnAtATime(t *testing.T) {
	up := fakeupstream.StartAnthropic(t, fakeupstream.Options{})
	up.SetDefault(fakeupstream.Fault{FirstByteDelay: 200 * time.Millisecond})
	dir := newDataDir(t)
	id := addAccount(t, dir, up, "serial", 50)
	cliRun(t, dir, "", "accounts", "update", id, "--serial-queue")
	_, key := createKey(t, dir, "k")
	srv := startRelay(t, dir, map[string]string{"USER_MESSAGE_QUEUE_DELAY": "100ms"})

	send := func(body string, n int) []time.Time {
		up.Reset()
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if code, b, _ := post(t, srv.url, key, body); code != 200 {
					t.Errorf("status %d: %s", code, b)
				}
			}()
		}
		wg.Wait()
		var at []time.Time
		for _, r := range up.Requests() {
			at = append(at, r.Time)
		}
		sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
		return at
	}
	turns := send(messagesBody("claude-sonnet-4-5", "a person typing"), 4)
	for i := 1; i < len(turns); i++ {
		if gap := turns[i].Sub(turns[i-1]); gap < 280*time.Millisecond {
			t.Fatalf("user turns %d and %d reached upstream %v apart; want ≥ first-byte delay + gap (300ms): %v", i-1, i, gap, turns)
		}
	}
	toolResult := `{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"run it"},` +
		`{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"Bash","input":{}}]},` +
		`{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"ok"}]}]}`
	loop := send(toolResult, 4)
	if spread := loop[len(loop)-1].Sub(loop[0]); spread > 150*time.Millisecond {
		t.Fatalf("tool results were queued: spread %v", spread)
	}
}

// TestUnifiedUserAgent: an account with unified_user_agent shows the newest
// Claude Code seen on every request (also an SDK's, also an older Claude
// Code's), while an account without it passes Claude Code's own.
func TestUnifiedUserAgent(t *testing.T) {
	t.Parallel()
	f := newOAuthFixture(t, time.Hour)
	cliRun(t, f.dir, "", "accounts", "update", string(f.account), "--unified-user-agent")
	_, key := createKey(t, f.dir, "k")
	srv := startRelay(t, f.dir, f.env)
	send := func(body string, hdr ...string) string {
		t.Helper()
		if code, b, _ := post(t, srv.url, key, body, hdr...); code != 200 {
			t.Fatalf("%d %s", code, b)
		}
		reqs := f.api.Requests()
		return reqs[len(reqs)-1].Header.Get("User-Agent")
	}
	newest := "claude-cli/2.1.400 (external, cli)"
	if ua := send(claudeCodeBody, claudeCodeHeaders("2.1.400")...); ua != newest {
		t.Fatalf("Claude Code 2.1.400: upstream UA %q", ua)
	}
	if ua := send(messagesBody("claude-sonnet-4-5", "x"), sdkHeaders...); ua != newest {
		t.Fatalf("SDK: upstream UA %q, want %q", ua, newest)
	}
	if ua := send(claudeCodeBody, claudeCodeHeaders("2.1.300")...); ua != newest {
		t.Fatalf("older Claude Code: upstream UA %q, want %q", ua, newest)
	}
	cliRun(t, f.dir, "", "accounts", "update", string(f.account), "--unified-user-agent=false")
	testkit.WaitFor(t, 5*time.Second, func() bool {
		return send(claudeCodeBody, claudeCodeHeaders("2.1.300")...) == "claude-cli/2.1.300 (external, cli)"
	})
}

// TestOAuthRefreshGoesThroughTheAccountProxy: the refresh of an expired
// token, like the request itself, leaves through the account's proxy.
func TestOAuthRefreshGoesThroughTheAccountProxy(t *testing.T) {
	t.Parallel()
	f := newOAuthFixture(t, time.Hour)
	proxy := netxtest.StartHTTPProxy(t, "u", "p")
	f.oauth.SetAccessTTL(50 * time.Millisecond)
	f.addOAuthAccount(t, "acct-proxied", 1, func(a *store.Account) { a.SealedProxy = []byte(proxy.URL()) })
	f.oauth.SetAccessTTL(time.Hour)
	cliRun(t, f.dir, "", "accounts", "disable", string(f.account))
	time.Sleep(100 * time.Millisecond) // the proxied account's token is now expired
	_, key := createKey(t, f.dir, "k")
	// Counted before the start: the server's sweep at start finds the
	// token due too, and either it or the request refreshes, once.
	refreshesBefore := f.oauth.RefreshCalls()
	srv := startRelay(t, f.dir, f.env)
	if code, body, _ := post(t, srv.url, key, messagesBody("claude-sonnet-4-5", "x")); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if f.oauth.RefreshCalls() != refreshesBefore+1 {
		t.Fatalf("refresh calls %d → %d, want one", refreshesBefore, f.oauth.RefreshCalls())
	}
	// Both the token refresh and the message went through the proxy.
	if n := proxy.Count(); n < 2 {
		t.Fatalf("proxy forwarded %d requests, want the refresh and the message", n)
	}
	if proxy.Rejected() != 0 {
		t.Fatal("the proxy refused a request (credentials lost?)")
	}
}

// TestOAuthRefreshAheadOfExpiry: a token that expires within
// CLAUDE_OAUTH_REFRESH_AHEAD is refreshed in the background, with no
// request asking for it.
func TestOAuthRefreshAheadOfExpiry(t *testing.T) {
	f := newOAuthFixture(t, 20*time.Minute)
	f.env["CLAUDE_OAUTH_REFRESH_AHEAD"] = "30m"
	startRelay(t, f.dir, f.env)
	testkit.WaitFor(t, 10*time.Second, func() bool { return f.oauth.RefreshCalls() == 1 })
	if f.api.MessageCount() != 0 {
		t.Fatal("a message was sent")
	}
	// With the default (5 minutes) the same token is left alone.
	g := newOAuthFixture(t, 20*time.Minute)
	startRelay(t, g.dir, g.env)
	time.Sleep(500 * time.Millisecond)
	if n := g.oauth.RefreshCalls(); n != 0 {
		t.Fatalf("a token 20 minutes from expiry was refreshed %d times with the 5-minute default", n)
	}
}

// TestAccountMaxConcurrency: an account capped at one request in flight
// sends the second concurrent request to the next account instead of
// stacking it, and takes requests again once free.
func TestAccountMaxConcurrency(t *testing.T) {
	slow := fakeupstream.StartAnthropic(t, fakeupstream.Options{Name: "capped"})
	slow.SetDefault(fakeupstream.Fault{FirstByteDelay: 400 * time.Millisecond})
	other := fakeupstream.StartAnthropic(t, fakeupstream.Options{Name: "other"})
	dir := newDataDir(t)
	id := addAccount(t, dir, slow, "capped", 10)
	addAccount(t, dir, other, "other", 90)
	var v admin.AccountView
	testkit.MustJSON(t, cliRun(t, dir, "", "accounts", "update", id, "--max-concurrency", "1", "--json"), &v)
	if v.MaxConcurrency != 1 {
		t.Fatalf("max_concurrency = %d", v.MaxConcurrency)
	}
	_, key := createKey(t, dir, "k")
	srv := startRelay(t, dir, nil)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 1 {
				time.Sleep(100 * time.Millisecond) // the first holds the slot
			}
			if code, body, _ := post(t, srv.url, key, messagesBody("claude-sonnet-4-5", "conversation "+strconv.Itoa(i))); code != 200 {
				t.Errorf("request %d: %d %s", i, code, body)
			}
		}()
	}
	wg.Wait()
	if slow.MessageCount() != 1 || other.MessageCount() != 1 {
		t.Fatalf("capped account served %d, other %d; want one each", slow.MessageCount(), other.MessageCount())
	}
	// Free again: the preferred account serves.
	if code, _, _ := post(t, srv.url, key, messagesBody("claude-sonnet-4-5", "conversation 3")); code != 200 || slow.MessageCount() != 2 {
		t.Fatalf("after the slot freed: %d, capped served %d", code, slow.MessageCount())
	}
	if _, errOut := runCLI(t, dir, "accounts", "update", id, "--max-concurrency", "-1"); !strings.Contains(errOut, "--max-concurrency") {
		t.Fatalf("a negative cap: %s", errOut)
	}
}

// runCLI runs a crs command that may fail and returns stdout and stderr.
func runCLI(t *testing.T, dir string, args ...string) (string, string) {
	t.Helper()
	var out, errOut strings.Builder
	run(t.Context(), append(args, "--data-dir", dir), strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String()
}

// TestAccountDailyQuota: an API-key account stops for the day once its
// real cost reaches --daily-quota, also when the spend before a restart
// counts toward it (the counters start empty and are seeded from the
// stored usage), and the next account takes over.
func TestAccountDailyQuota(t *testing.T) {
	t.Parallel()
	capped := fakeupstream.StartAnthropic(t, fakeupstream.Options{Name: "capped"})
	other := fakeupstream.StartAnthropic(t, fakeupstream.Options{Name: "other"})
	dir := newDataDir(t)
	id := addAccount(t, dir, capped, "capped", 10)
	addAccount(t, dir, other, "other", 90)
	// One default reply on claude-sonnet-4-5 costs $0.00016965; two pass $0.0003.
	var v admin.AccountView
	testkit.MustJSON(t, cliRun(t, dir, "", "accounts", "update", id, "--daily-quota", "0.0003", "--json"), &v)
	if v.DailyQuota.String() != "0.0003" {
		t.Fatalf("daily_quota = %s", v.DailyQuota)
	}
	_, key := createKey(t, dir, "k")
	srv := startRelay(t, dir, nil)
	if code, _, _ := post(t, srv.url, key, messagesBody("claude-sonnet-4-5", "one")); code != 200 || capped.MessageCount() != 1 {
		t.Fatalf("first request: %d", code)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	srv = startRelay(t, dir, nil)
	if code, _, _ := post(t, srv.url, key, messagesBody("claude-sonnet-4-5", "two")); code != 200 || capped.MessageCount() != 2 {
		t.Fatalf("second request: %d (capped served %d)", code, capped.MessageCount())
	}
	a := accountView(t, dir, store.AccountID(id))
	if a.Status != "rate_limited" || !strings.Contains(a.CooldownReason, "daily quota") || a.CooldownUntil == nil {
		t.Fatalf("after the quota: %s %q until %v", a.Status, a.CooldownReason, a.CooldownUntil)
	}
	if h := a.CooldownUntil.In(time.Local); h.Hour() != 0 || h.Minute() != 0 || !h.After(time.Now()) {
		t.Fatalf("resumes at %v, want the next local midnight", h)
	}
	if code, _, _ := post(t, srv.url, key, messagesBody("claude-sonnet-4-5", "three")); code != 200 || other.MessageCount() != 1 {
		t.Fatalf("third request: %d (other served %d)", code, other.MessageCount())
	}
	if _, errOut := runCLI(t, dir, "accounts", "update", id, "--daily-quota", "-5"); !strings.Contains(errOut, "--daily-quota") {
		t.Fatalf("a negative quota: %s", errOut)
	}
}

// TestAccountsAddTakesOptions: the per-account options can be given when
// the account is added, and are refused there like on update.
func TestAccountsAddTakesOptions(t *testing.T) {
	t.Parallel()
	dir := newDataDir(t)
	var v admin.AccountView
	testkit.MustJSON(t, cliRun(t, dir, "", "accounts", "add", "--platform", "claude", "--type", "api-key", "--name", "a",
		"--api-key", "sk-x", "--models", "claude-sonnet-4-5,big=claude-opus-4-5", "--max-concurrency", "2", "--daily-quota", "12.5",
		"--serial-queue", "--intercept-warmup", "--json"), &v)
	if len(v.Models) != 2 || v.Models["big"] != "claude-opus-4-5" || v.MaxConcurrency != 2 || v.DailyQuota.String() != "12.5" ||
		!v.SerialQueue || !v.InterceptWarmup || v.UnifiedUserAgent || v.AutoPauseOnWarning {
		t.Fatalf("added with options: %+v", v)
	}
	for flag, bad := range map[string]string{"--models": "a=b=c", "--max-concurrency": "-3", "--daily-quota": "-1"} {
		_, errOut := runCLI(t, dir, "accounts", "add", "--platform", "claude", "--type", "api-key", "--name", "b", "--api-key", "sk-y", flag, bad)
		if !strings.Contains(errOut, flag) {
			t.Errorf("%s %s: %s", flag, bad, errOut)
		}
	}
	var list []admin.AccountView
	testkit.MustJSON(t, cliRun(t, dir, "", "accounts", "list", "--json"), &list)
	if len(list) != 1 {
		t.Fatalf("a refused add stored an account: %d accounts", len(list))
	}
}

// TestBoundAccountIsNotRemoved: an account a key is bound to cannot be
// removed (the key would serve nothing); the refusal names the key, and
// once the key is rebound the account goes.
func TestBoundAccountIsNotRemoved(t *testing.T) {
	t.Parallel()
	up := fakeupstream.StartAnthropic(t, fakeupstream.Options{})
	dir := newDataDir(t)
	id := addAccount(t, dir, up, "a", 50)
	k := policyKey(t, dir, "bound", "--account", id)
	_, errOut := runCLI(t, dir, "accounts", "remove", id)
	if !strings.Contains(errOut, string(k.ID)) || !strings.Contains(errOut, "rebind") {
		t.Fatalf("removing a bound account: %q", errOut)
	}
	if accountView(t, dir, store.AccountID(id)).ID == "" {
		t.Fatal("the account is gone")
	}
	cliRun(t, dir, "", "keys", "update", string(k.ID), "--account", "")
	cliRun(t, dir, "", "accounts", "remove", id)
	var list []admin.AccountView
	testkit.MustJSON(t, cliRun(t, dir, "", "accounts", "list", "--json"), &list)
	if len(list) != 0 {
		t.Fatalf("account still listed after the key was unbound: %+v", list)
	}
}
