package main

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/tidwall/gjson"
	"google.golang.org/genai"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/testkit"
)

// addPoolAccount adds an API-key account of platform pointing at base.
func addPoolAccount(t *testing.T, dir, platform, base, name string, priority int) string {
	t.Helper()
	var v struct{ ID string }
	testkit.MustJSON(t, cliRun(t, dir, "", "accounts", "add", "--platform", platform, "--type", "api-key", "--name", name,
		"--api-key", "sk-"+name, "--base-url", base, "--priority", strconv.Itoa(priority), "--json"), &v)
	return v.ID
}

func openaiClient(base, key string) openai.Client {
	return openai.NewClient(option.WithBaseURL(base), option.WithAPIKey(key), option.WithMaxRetries(0))
}

func responseParams(text string) responses.ResponseNewParams {
	return responses.ResponseNewParams{
		Model: "gpt-5-codex",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(text)},
	}
}

// TestOpenAIPoolThroughTheRelay: the official openai-go SDK talks to crs's
// /openai routes (Responses, stream and not); a 429 on the preferred
// account fails over before the first byte; usage is recorded once per
// response with OpenAI's cached input as cache reads; a conversation
// (session-id) stays on its account; and a key without the openai
// permission is refused in OpenAI's own error shape.
func TestOpenAIPoolThroughTheRelay(t *testing.T) {
	t.Parallel()
	first := fakeupstream.StartOpenAI(t, fakeupstream.OpenAIOptions{Name: "first"})
	second := fakeupstream.StartOpenAI(t, fakeupstream.OpenAIOptions{Name: "second"})
	dir := newDataDir(t)
	addPoolAccount(t, dir, "openai", first.URL(), "first", 10)
	addPoolAccount(t, dir, "openai", second.URL()+"/v1", "second", 20)
	_, key := createKey(t, dir, "k")
	claudeOnly := policyKey(t, dir, "claude-only", "--permissions", "claude")
	srv := startRelay(t, dir, nil)
	c := openaiClient(srv.url+"/openai/v1", key)
	ctx := testkit.Ctx(t, 30*time.Second)

	resp, err := c.Responses.New(ctx, responseParams("say pong"))
	if err != nil || resp.OutputText() == "" || resp.Usage.InputTokens != 16 {
		t.Fatalf("non-stream: %v %+v", err, resp)
	}
	stream := c.Responses.NewStreaming(ctx, responseParams("say pong"))
	var completed bool
	for stream.Next() {
		if stream.Current().Type == "response.completed" {
			completed = true
		}
	}
	if err := stream.Err(); err != nil || !completed {
		t.Fatalf("stream: %v, completed %v", err, completed)
	}
	if first.ResponseCount() != 2 || second.ResponseCount() != 0 {
		t.Fatalf("served first %d, second %d", first.ResponseCount(), second.ResponseCount())
	}
	up := first.Requests()[0]
	if got := up.Header.Get("Authorization"); got != "Bearer sk-first" || strings.Contains(strings.Join(up.Header.Values("Authorization"), ""), key) {
		t.Fatalf("upstream authorization %q", got)
	}

	// 429 on the preferred account: the client still gets an answer.
	first.Push(fakeupstream.OpenAIFault{Status: 429})
	if _, err := c.Responses.New(ctx, responseParams("again")); err != nil {
		t.Fatalf("429 leaked to the client: %v", err)
	}
	if second.ResponseCount() != 1 {
		t.Fatalf("second served %d after the first's 429", second.ResponseCount())
	}
	if s, _ := accountStatus(t, dir, addPoolIDByName(t, dir, "first")); s != "rate_limited" {
		t.Fatalf("first account is %s after a 429", s)
	}

	// Usage: one record per response, OpenAI's mapping.
	u := usageJSON(t, dir)
	if u.TotalRequests() != 3 {
		t.Fatalf("usage requests = %d, want 3", u.TotalRequests())
	}
	for _, m := range u.Models {
		if m.Input != 3*11 || m.CR != 3*5 || m.Output != 3*3 {
			t.Fatalf("usage %+v: want per response input 11 (16−5 cached), cache read 5, output 3", m)
		}
	}

	// A key without the openai permission: OpenAI's error shape, 403.
	refused := openaiClient(srv.url+"/openai", claudeOnly.Key)
	_, err = refused.Responses.New(ctx, responseParams("x"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 403 || apiErr.Code != "permission_denied" {
		t.Fatalf("permission refusal: %v", err)
	}

	// Codex's WebSocket probe is refused at once.
	probe, _ := http.NewRequest(http.MethodGet, srv.url+"/openai/responses", nil)
	probe.Header.Set("Authorization", "Bearer "+key)
	probe.Header.Set("Upgrade", "websocket")
	probe.Header.Set("Connection", "Upgrade")
	pr, err := http.DefaultClient.Do(probe)
	if err != nil {
		t.Fatal(err)
	}
	pr.Body.Close()
	if pr.StatusCode == http.StatusSwitchingProtocols || pr.StatusCode/100 == 2 {
		t.Fatalf("websocket probe answered %d", pr.StatusCode)
	}
}

// addPoolIDByName finds an account id by its name.
func addPoolIDByName(t *testing.T, dir, name string) string {
	t.Helper()
	var list []struct{ ID, Name string }
	testkit.MustJSON(t, cliRun(t, dir, "", "accounts", "list", "--json"), &list)
	for _, a := range list {
		if a.Name == name {
			return a.ID
		}
	}
	t.Fatalf("no account %q", name)
	return ""
}

// TestOpenAIStickySession: requests of one Codex session (session-id
// header) stay on the account that served the first, although the other
// account would be next by least-recent use.
func TestOpenAIStickySession(t *testing.T) {
	t.Parallel()
	a := fakeupstream.StartOpenAI(t, fakeupstream.OpenAIOptions{Name: "a"})
	b := fakeupstream.StartOpenAI(t, fakeupstream.OpenAIOptions{Name: "b"})
	dir := newDataDir(t)
	addPoolAccount(t, dir, "openai", a.URL(), "a", 50)
	addPoolAccount(t, dir, "openai", b.URL(), "b", 50)
	_, key := createKey(t, dir, "k")
	srv := startRelay(t, dir, nil)
	body := `{"model":"gpt-5-codex","input":"hi","stream":false}`
	for range 4 {
		resp := rawPost(t, srv.url+"/openai/responses", key, body, "Authorization", "Bearer "+key,
			"session-id", "019a0000-0000-7000-8000-000000000001")
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if !(a.ResponseCount() == 4 && b.ResponseCount() == 0) && !(a.ResponseCount() == 0 && b.ResponseCount() == 4) {
		t.Fatalf("one session spread over accounts: a %d, b %d", a.ResponseCount(), b.ResponseCount())
	}
}

// TestGeminiPoolThroughTheRelay: the official genai SDK and Gemini CLI's
// raw shapes reach a Gemini API-key account through /gemini (the relay key
// as x-goog-api-key, or ?key=); a 429 fails over; usage maps Gemini's
// prompt/cached/candidates/thoughts; a refused key gets Google's error
// shape.
func TestGeminiPoolThroughTheRelay(t *testing.T) {
	t.Parallel()
	first := fakeupstream.StartGemini(t, fakeupstream.GeminiOptions{Name: "first"})
	second := fakeupstream.StartGemini(t, fakeupstream.GeminiOptions{Name: "second"})
	dir := newDataDir(t)
	addPoolAccount(t, dir, "gemini", first.URL(), "first", 10)
	addPoolAccount(t, dir, "gemini", second.URL(), "second", 20)
	_, key := createKey(t, dir, "k")
	claudeOnly := policyKey(t, dir, "claude-only", "--permissions", "claude")
	srv := startRelay(t, dir, nil)
	ctx := testkit.Ctx(t, 30*time.Second)

	gc, err := genai.NewClient(ctx, &genai.ClientConfig{APIKey: key, Backend: genai.BackendGeminiAPI,
		HTTPOptions: genai.HTTPOptions{BaseURL: srv.url + "/gemini/"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := gc.Models.GenerateContent(ctx, "gemini-2.5-pro", genai.Text("say pong"), nil)
	if err != nil || res.Text() == "" {
		t.Fatalf("genai GenerateContent: %v", err)
	}
	var streamed string
	for chunk, err := range gc.Models.GenerateContentStream(ctx, "gemini-2.5-pro", genai.Text("say pong"), nil) {
		if err != nil {
			t.Fatalf("genai stream: %v", err)
		}
		streamed += chunk.Text()
	}
	if streamed == "" {
		t.Fatal("empty stream")
	}
	// Gemini CLI's API-key mode sends x-goog-api-key; others put the key in ?key=.
	body := `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`
	resp := rawPost(t, srv.url+"/gemini/v1beta/models/gemini-2.5-flash:generateContent?key="+key, "", body)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("?key=: %d %s", resp.StatusCode, b)
	}
	for _, r := range first.Requests() {
		if strings.Contains(r.RawQuery, key) || strings.Contains(strings.Join(r.Header.Values("X-Goog-Api-Key"), ""), key) {
			t.Fatalf("relay key reached upstream: %q %v", r.RawQuery, r.Header)
		}
	}

	first.Push(fakeupstream.GeminiFault{Status: 429})
	resp = rawPost(t, srv.url+"/gemini/v1beta/models/gemini-2.5-flash:generateContent", "", body, "X-Goog-Api-Key", key)
	resp.Body.Close()
	if resp.StatusCode != 200 || second.MessageCount() != 1 {
		t.Fatalf("after a 429: %d, second served %d", resp.StatusCode, second.MessageCount())
	}

	u := usageJSON(t, dir)
	if u.TotalRequests() != 4 {
		t.Fatalf("usage requests = %d, want 4", u.TotalRequests())
	}
	var in, cr, out int64
	for _, m := range u.Models {
		in, cr, out = in+m.Input, cr+m.CR, out+m.Output
	}
	if in != 4*16 || cr != 4*4 || out != 4*8 {
		t.Fatalf("usage input %d cache read %d output %d; want per response 16 (20−4 cached), 4, 8 (6+2 thoughts)", in, cr, out)
	}

	resp = rawPost(t, srv.url+"/gemini/v1beta/models/gemini-2.5-flash:generateContent", "", body, "X-Goog-Api-Key", claudeOnly.Key)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || gjson.GetBytes(b, "error.status").String() != "PERMISSION_DENIED" {
		t.Fatalf("permission refusal: %d %s", resp.StatusCode, b)
	}
}

// onboard runs `crs accounts oauth start --platform p` and `finish` on
// dir with env (the OAuth endpoints) set, with the code approve gives for
// the auth URL, and returns the account id. env goes to the commands, not
// the process, so the test can run in parallel.
func onboard(t *testing.T, dir string, env map[string]string, platform string, approve func(authURL string) string) string {
	t.Helper()
	d := deployment{name: platform, vars: map[string]string{"DATA_DIR": dir}}
	for k, v := range env {
		d = d.with(k, v)
	}
	var st struct {
		SessionID string `json:"session_id"`
		AuthURL   string `json:"auth_url"`
	}
	out, _ := d.ok(t, "", "accounts oauth start", "--platform", platform, "--json")
	testkit.MustJSON(t, out, &st)
	var acct struct {
		ID       string
		Platform string
		Type     string
	}
	out, _ = d.ok(t, "", "accounts oauth finish", st.SessionID, "--code", approve(st.AuthURL), "--json")
	testkit.MustJSON(t, out, &acct)
	if acct.Platform != platform || acct.Type != "oauth" {
		t.Fatalf("onboarded %+v", acct)
	}
	return acct.ID
}

func queryOf(t *testing.T, raw string) (challenge, state string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("code_challenge"), u.Query().Get("state")
}

// TestCodexSubscriptionThroughTheRelay: a ChatGPT account onboarded with
// `crs accounts oauth start --platform openai` serves the openai-go SDK
// through the Codex backend: bearer token and chatgpt-account-id upstream,
// store:false forced, the relay key nowhere.
func TestCodexSubscriptionThroughTheRelay(t *testing.T) {
	t.Parallel()
	o := fakeupstream.StartOpenAIOAuth(t)
	codex := fakeupstream.StartOpenAI(t, fakeupstream.OpenAIOptions{OAuth: o, Name: "codex"})
	dir := newDataDir(t)
	env := map[string]string{"OPENAI_OAUTH_AUTHORIZE_URL": o.AuthorizeURL(), "OPENAI_OAUTH_TOKEN_URL": o.TokenURL(),
		"CODEX_API_URL": codex.CodexURL()}
	id := onboard(t, dir, env, "openai", func(authURL string) string {
		ch, st := queryOf(t, authURL)
		return fakeupstream.OpenAIRedirectURI + "?code=" + o.IssueCode(ch, st) + "&state=" + st
	})
	_, key := createKey(t, dir, "k")
	srv := startRelay(t, dir, env)
	c := openaiClient(srv.url+"/openai", key)
	ctx := testkit.Ctx(t, 30*time.Second)
	stream := c.Responses.NewStreaming(ctx, responseParams("say pong"))
	for stream.Next() {
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("Codex stream: %v", err)
	}
	reqs := codex.Requests()
	if len(reqs) != 1 {
		t.Fatalf("codex saw %d requests", len(reqs))
	}
	up := reqs[0]
	if up.Header.Get("Chatgpt-Account-Id") != fakeupstream.OpenAIAccountID || !strings.HasPrefix(up.Header.Get("Authorization"), "Bearer ") ||
		gjson.GetBytes(up.Body, "store").Raw != "false" || strings.Contains(up.Header.Get("Authorization"), key) {
		t.Fatalf("upstream headers %v body %s", up.Header, up.Body)
	}
	if u := usageJSON(t, dir); u.TotalRequests() != 1 || u.Accounts[0].AccountID != id {
		t.Fatalf("usage %+v", u)
	}
	// The Codex backend's usage headers keep the account's 5-hour window.
	if v := accountView(t, dir, store.AccountID(id)); v.Window5h == nil || v.Window5h.End.Sub(v.Window5h.Start) != 5*time.Hour ||
		v.Platform != "openai" {
		t.Fatalf("account after a Codex reply: %+v", v)
	}
}

// TestGeminiCodeAssistThroughTheRelay: a Google account onboarded with
// `--platform gemini` (its Cloud project discovered at onboarding) serves
// Gemini CLI's Code Assist mode — crs answers loadCodeAssist itself and
// puts the account's project into the forwarded stream request — and a
// native request too, wrapped for Code Assist and unwrapped on the way
// back.
func TestGeminiCodeAssistThroughTheRelay(t *testing.T) {
	t.Parallel()
	g := fakeupstream.StartGoogleOAuth(t)
	ca := fakeupstream.StartGemini(t, fakeupstream.GeminiOptions{OAuth: g, Name: "ca"})
	dir := newDataDir(t)
	env := map[string]string{"GOOGLE_OAUTH_AUTHORIZE_URL": g.AuthorizeURL(), "GOOGLE_OAUTH_TOKEN_URL": g.TokenURL(),
		"CODE_ASSIST_API_URL": ca.URL()}
	onboard(t, dir, env, "gemini", func(authURL string) string {
		ch, _ := queryOf(t, authURL)
		return g.IssueCode(ch)
	})
	_, key := createKey(t, dir, "k")
	srv := startRelay(t, dir, env)
	auth := []string{"Authorization", "Bearer " + key}

	resp := rawPost(t, srv.url+"/gemini/v1internal:loadCodeAssist", "", `{"metadata":{"ideType":"IDE_UNSPECIFIED","pluginType":"GEMINI"}}`, auth...)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	project := gjson.GetBytes(b, "cloudaicompanionProject").String()
	if resp.StatusCode != 200 || project == "" || !gjson.GetBytes(b, "currentTier.id").Exists() {
		t.Fatalf("loadCodeAssist: %d %s", resp.StatusCode, b)
	}
	body := `{"model":"gemini-2.5-pro","project":"` + project + `","user_prompt_id":"s1########1","request":{"contents":[{"role":"user","parts":[{"text":"say pong"}]}],"session_id":"s1"}}`
	resp = rawPost(t, srv.url+"/gemini/v1internal:streamGenerateContent?alt=sse", "", body, auth...)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"response"`) {
		t.Fatalf("Code Assist stream: %d %s", resp.StatusCode, b)
	}
	up := ca.Requests()[len(ca.Requests())-1]
	if got := gjson.GetBytes(up.Body, "project").String(); got != ca.CodeAssistProject() || strings.Contains(up.Header.Get("Authorization"), key) {
		t.Fatalf("upstream project %q (want the account's %q), auth %q", got, ca.CodeAssistProject(), up.Header.Get("Authorization"))
	}

	// A native request on the same key is served by the OAuth account too.
	native := `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`
	resp = rawPost(t, srv.url+"/gemini/v1beta/models/gemini-2.5-pro:generateContent", "", native, "X-Goog-Api-Key", key)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || gjson.GetBytes(b, "response").Exists() || !gjson.GetBytes(b, "candidates").Exists() {
		t.Fatalf("native via Code Assist: %d %s", resp.StatusCode, b)
	}
	if u := usageJSON(t, dir); u.TotalRequests() != 2 {
		t.Fatalf("usage requests %d, want 2", u.TotalRequests())
	}
}

// TestOneKeyAllThreePools: one relay key used with Claude, Codex and
// Gemini shows all three in `crs accounts list`, in `crs usage`, and on the
// key holder's stats page; a Gemini conversation stays on its account.
func TestOneKeyAllThreePools(t *testing.T) {
	t.Parallel()
	claude := fakeupstream.StartAnthropic(t, fakeupstream.Options{})
	oa := fakeupstream.StartOpenAI(t, fakeupstream.OpenAIOptions{})
	gA := fakeupstream.StartGemini(t, fakeupstream.GeminiOptions{Name: "ga"})
	gB := fakeupstream.StartGemini(t, fakeupstream.GeminiOptions{Name: "gb"})
	dir := newDataDir(t)
	addAccount(t, dir, claude, "claude", 50)
	addPoolAccount(t, dir, "openai", oa.URL(), "codex", 50)
	addPoolAccount(t, dir, "gemini", gA.URL(), "ga", 50)
	addPoolAccount(t, dir, "gemini", gB.URL(), "gb", 50)
	_, key := createKey(t, dir, "k")
	srv := startRelay(t, dir, nil)

	if code, b, _ := post(t, srv.url, key, messagesBody("claude-sonnet-4-5", "hi")); code != 200 {
		t.Fatalf("claude: %d %s", code, b)
	}
	resp := rawPost(t, srv.url+"/openai/responses", "", `{"model":"gpt-5-codex","input":"hi"}`, "Authorization", "Bearer "+key)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("openai: %d", resp.StatusCode)
	}
	// One Gemini conversation (same first message) three times: one account.
	conv := `{"contents":[{"role":"user","parts":[{"text":"the same conversation"}]}]}`
	for range 3 {
		resp = rawPost(t, srv.url+"/gemini/v1beta/models/gemini-2.5-pro:generateContent", "", conv, "X-Goog-Api-Key", key)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("gemini: %d", resp.StatusCode)
		}
	}
	if !(gA.MessageCount() == 3 && gB.MessageCount() == 0) && !(gA.MessageCount() == 0 && gB.MessageCount() == 3) {
		t.Fatalf("a Gemini conversation moved between accounts: %d / %d", gA.MessageCount(), gB.MessageCount())
	}

	var list []struct{ Platform string }
	testkit.MustJSON(t, cliRun(t, dir, "", "accounts", "list", "--json"), &list)
	platforms := map[string]int{}
	for _, a := range list {
		platforms[a.Platform]++
	}
	if platforms["claude"] != 1 || platforms["openai"] != 1 || platforms["gemini"] != 2 {
		t.Fatalf("accounts list platforms %v", platforms)
	}
	models := map[string]bool{}
	for _, m := range usageJSON(t, dir).Models {
		models[m.Model] = true
	}
	if len(models) != 3 {
		t.Fatalf("usage models %v, want one per platform", models)
	}
	stats := rawPost(t, srv.url+"/apiStats/api/user-stats", "", `{"apiKey":"`+key+`"}`)
	b, _ := io.ReadAll(stats.Body)
	stats.Body.Close()
	if stats.StatusCode != 200 || gjson.GetBytes(b, "usage.today.totals.requests").Int() != 5 || gjson.GetBytes(b, "usage.today.models.#").Int() != 3 {
		t.Fatalf("key stats: %d %s", stats.StatusCode, b)
	}
}
