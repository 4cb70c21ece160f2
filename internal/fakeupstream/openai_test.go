package fakeupstream

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/sse"
)

// The official openai-go client is not a dependency of this module, so these
// tests speak raw HTTP, which also lets them check every header and byte.

const (
	oaiTestModel = "gpt-5.5"
	// oaiBody is a minimal Responses API request.
	oaiBody = `{"model":"gpt-5.5","input":"say pong"}`
	// codexBody is shaped like what the Codex CLI sends (trimmed).
	codexBody = `{"model":"gpt-6.1-sol","stream":true,"store":false,"tool_choice":"auto","parallel_tool_calls":false,
		"reasoning":{"effort":"low","context":"all_turns"},"include":["reasoning.encrypted_content"],
		"prompt_cache_key":"0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","text":{"verbosity":"low"},
		"client_metadata":{"turn_id":"t1"},
		"input":[{"type":"message","role":"developer","content":[{"type":"input_text","text":"be brief"}]},
			{"type":"additional_tools","role":"developer","tools":[{"type":"namespace","name":"functions","tools":[]}]},
			{"type":"message","role":"user","content":[{"type":"input_text","text":"say pong"}]}]}`
)

func oaiCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// oaiDo sends one request with plain net/http. hdr values replace the
// defaults; an empty value removes the header.
func oaiDo(t *testing.T, ctx context.Context, method, url, body string, hdr map[string]string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer sk-test")
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readJSON(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("body: %v", err)
	}
	return m
}

// readEvents parses a Responses stream with internal/sse and checks that
// every event is named after its data's type and numbered in order.
func readEvents(t *testing.T, r io.Reader) (events []map[string]any, names []string, err error) {
	t.Helper()
	return drainEvents(t, sse.NewReader(r), nil)
}

// drainEvents reads the rest of a stream after the events already read.
func drainEvents(t *testing.T, rd *sse.Reader, read []sse.Event) (events []map[string]any, names []string, err error) {
	t.Helper()
	for {
		var ev sse.Event
		if len(read) > 0 {
			ev, read = read[0], read[1:]
		} else if ev, err = rd.Next(); errors.Is(err, io.EOF) {
			return events, names, nil
		} else if err != nil {
			return events, names, err
		}
		var m map[string]any
		if jerr := json.Unmarshal(ev.Data, &m); jerr != nil {
			t.Fatalf("event %d (%s): %v", len(events), ev.Name, jerr)
		}
		if m["type"] != ev.Name {
			t.Errorf("event %d named %q carries type %v", len(events), ev.Name, m["type"])
		}
		if m["sequence_number"] != float64(len(events)) {
			t.Errorf("event %d (%s) has sequence_number %v", len(events), ev.Name, m["sequence_number"])
		}
		events = append(events, m)
		names = append(names, ev.Name)
	}
}

// checkUsageJSON asserts the Responses usage object.
func checkUsageJSON(t *testing.T, v any, want OpenAIUsage) {
	t.Helper()
	u, _ := v.(map[string]any)
	in, _ := u["input_tokens_details"].(map[string]any)
	out, _ := u["output_tokens_details"].(map[string]any)
	if u["input_tokens"] != float64(want.Input) || in["cached_tokens"] != float64(want.Cached) ||
		u["output_tokens"] != float64(want.Output) || out["reasoning_tokens"] != float64(want.Reasoning) ||
		u["total_tokens"] != float64(want.Input+want.Output) {
		t.Errorf("usage = %v, want %+v", v, want)
	}
}

// outputText is the text of the first message item of a Response object.
func outputText(resp map[string]any) string {
	out, _ := resp["output"].([]any)
	if len(out) == 0 {
		return ""
	}
	item, _ := out[0].(map[string]any)
	content, _ := item["content"].([]any)
	if len(content) == 0 {
		return ""
	}
	part, _ := content[0].(map[string]any)
	s, _ := part["text"].(string)
	return s
}

func TestOpenAINonStream(t *testing.T) {
	o := StartOpenAI(t, OpenAIOptions{APIKeys: []string{"sk-test"}, Name: "alpha"})
	resp := oaiDo(t, oaiCtx(t), http.MethodPost, o.URL()+"/v1/responses", oaiBody, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content-type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !strings.HasPrefix(resp.Header.Get("x-request-id"), "req_") || resp.Header.Get("x-fake-upstream") != "alpha" {
		t.Errorf("x-request-id %q, x-fake-upstream %q", resp.Header.Get("x-request-id"), resp.Header.Get("x-fake-upstream"))
	}
	if resp.Header.Get(hdrCodexPrimaryUsed) != "" {
		t.Errorf("API-key reply carries Codex usage headers")
	}
	m := readJSON(t, resp)
	if !strings.HasPrefix(m["id"].(string), "resp_alpha_") || m["object"] != "response" || m["status"] != "completed" ||
		m["model"] != oaiTestModel || m["store"] != true || m["error"] != nil {
		t.Errorf("response = %v", m)
	}
	if got := outputText(m); got != ReplyText(5) {
		t.Errorf("text = %q, want %q", got, ReplyText(5))
	}
	checkUsageJSON(t, m["usage"], DefaultOpenAIUsage())

	reqs := o.Requests()
	if len(reqs) != 1 || o.ResponseCount() != 1 {
		t.Fatalf("recorded %d requests, count %d; want 1, 1", len(reqs), o.ResponseCount())
	}
	if r := reqs[0]; r.Method != http.MethodPost || r.Path != "/v1/responses" || string(r.Body) != oaiBody ||
		r.Header.Get("Authorization") != "Bearer sk-test" {
		t.Errorf("recorded %s %s %q %q", r.Method, r.Path, r.Body, r.Header.Get("Authorization"))
	}
}

var wantStreamEvents = []string{
	"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
	"response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
	"response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed",
}

func TestOpenAIStream(t *testing.T) {
	const delay = 40 * time.Millisecond
	custom := OpenAIUsage{Input: 120, Cached: 100, Output: 30, Reasoning: 12}
	o := StartOpenAI(t, OpenAIOptions{Deltas: 3, DeltaDelay: delay, Usage: custom})
	start := time.Now()
	resp := oaiDo(t, oaiCtx(t), http.MethodPost, o.URL()+"/v1/responses",
		`{"model":"gpt-5.5","stream":true,"store":false,"input":[{"role":"user","content":"say pong"}]}`, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		t.Fatalf("status %d, content-type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// Events are flushed one by one: the first arrives before the pauses
	// between deltas are over.
	rd := sse.NewReader(resp.Body)
	first, err := rd.Next()
	if err != nil || first.Name != "response.created" {
		t.Fatalf("first event %q, %v", first.Name, err)
	}
	if took := time.Since(start); took >= 2*delay {
		t.Errorf("first event after %v; events are not flushed one by one", took)
	}
	events, names, err := drainEvents(t, rd, []sse.Event{first})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, " ") != strings.Join(wantStreamEvents, " ") {
		t.Fatalf("events = %v\nwant     %v", names, wantStreamEvents)
	}
	created := events[0]["response"].(map[string]any)
	if created["status"] != "in_progress" || created["usage"] != nil || created["model"] != oaiTestModel || created["store"] != false {
		t.Errorf("response.created = %v", created)
	}
	var text string
	itemID := events[2]["item"].(map[string]any)["id"].(string)
	for _, ev := range events[4:7] {
		if ev["item_id"] != itemID || ev["output_index"] != 0.0 || ev["content_index"] != 0.0 {
			t.Errorf("delta %v does not point at item %s", ev, itemID)
		}
		text += ev["delta"].(string)
	}
	if text != "pong" || events[7]["text"] != "pong" {
		t.Errorf("deltas %q, done text %v", text, events[7]["text"])
	}
	done := events[9]["item"].(map[string]any)
	if done["status"] != "completed" || done["role"] != "assistant" {
		t.Errorf("output_item.done = %v", done)
	}
	completed := events[10]["response"].(map[string]any)
	if completed["status"] != "completed" || outputText(completed) != "pong" || completed["id"] != created["id"] {
		t.Errorf("response.completed = %v", completed)
	}
	checkUsageJSON(t, completed["usage"], custom)
	if took := time.Since(start); took < 2*delay {
		t.Errorf("stream took %v, want at least 2 delta delays", took)
	}
}

func TestOpenAIAPIKeys(t *testing.T) {
	oa := StartOpenAIOAuth(t)
	o := StartOpenAI(t, OpenAIOptions{APIKeys: []string{"sk-a", "sk-b"}, OAuth: oa})
	open := StartOpenAI(t, OpenAIOptions{})
	chatgpt := codexLogin(t, oa).access
	for _, tc := range []struct {
		name     string
		fake     *OpenAI
		auth     string
		want     int
		wantCode any
		wantMsg  string
	}{
		{"listed key", o, "Bearer sk-b", 200, nil, ""},
		{"unknown key", o, "Bearer sk-c-0123456789", 401, "invalid_api_key", "Incorrect API key provided: sk-********6789."},
		{"no key", o, "", 401, nil, "You didn't provide an API key"},
		{"not bearer", o, "Basic sk-a", 401, nil, "You didn't provide an API key"},
		{"a ChatGPT token is no API key", o, "Bearer " + chatgpt, 401, nil, "Missing scopes: api.responses.write"},
		{"open fake takes any key", open, "Bearer whatever", 200, nil, ""},
		{"open fake still needs one", open, "", 401, nil, "You didn't provide an API key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := oaiDo(t, oaiCtx(t), http.MethodPost, tc.fake.URL()+"/v1/responses", oaiBody, map[string]string{"Authorization": tc.auth})
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want != 200 {
				e := checkOpenAIError(t, resp, "invalid_request_error")
				if e["code"] != tc.wantCode || !strings.Contains(e["message"].(string), tc.wantMsg) {
					t.Errorf("error = %v, want code %v and message with %q", e, tc.wantCode, tc.wantMsg)
				}
			}
		})
	}
}

// checkOpenAIError asserts the OpenAI error shape with all four fields and
// returns its error object.
func checkOpenAIError(t *testing.T, resp *http.Response, wantType string) map[string]any {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error content-type %q", ct)
	}
	m := readJSON(t, resp)
	e, _ := m["error"].(map[string]any)
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := e[k]; !ok {
			t.Errorf("error lacks %q: %v", k, m)
		}
	}
	if e["type"] != wantType || e["message"] == "" {
		t.Errorf("error = %v, want type %s", e, wantType)
	}
	return e
}

func TestOpenAIRequestValidation(t *testing.T) {
	o := StartOpenAI(t, OpenAIOptions{})
	for _, tc := range []struct {
		name, body string
		want       int
		param      any
	}{
		{"codex shaped body", codexBody, 200, nil},
		{"unknown fields and models pass", `{"model":"gpt-9-future","input":"x","some_future_field":{"a":1}}`, 200, nil},
		{"not json", `{"model":`, 400, nil},
		{"json array", `[]`, 400, nil},
		{"missing model", `{"input":"x"}`, 400, "model"},
		{"model not a string", `{"model":5,"input":"x"}`, 400, "model"},
		{"empty model", `{"model":"","input":"x"}`, 400, "model"},
		{"missing input", `{"model":"m"}`, 400, "input"},
		{"input an object", `{"model":"m","input":{"role":"user"}}`, 400, "input"},
		{"stream not a bool", `{"model":"m","input":"x","stream":"yes"}`, 400, "stream"},
		{"store not a bool", `{"model":"m","input":"x","store":1}`, 400, "store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := oaiDo(t, oaiCtx(t), http.MethodPost, o.URL()+"/v1/responses", tc.body, nil)
			if resp.StatusCode != tc.want {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, b)
			}
			if tc.want == 400 {
				if e := checkOpenAIError(t, resp, "invalid_request_error"); e["param"] != tc.param {
					t.Errorf("param = %v, want %v", e["param"], tc.param)
				}
			}
		})
	}
}

func TestOpenAIModelsCompactAndRoutes(t *testing.T) {
	o := StartOpenAI(t, OpenAIOptions{APIKeys: []string{"sk-test"}})
	ctx := oaiCtx(t)

	resp := oaiDo(t, ctx, http.MethodGet, o.URL()+"/v1/models", "", nil)
	m := readJSON(t, resp)
	data, _ := m["data"].([]any)
	if resp.StatusCode != 200 || m["object"] != "list" || len(data) == 0 || data[0].(map[string]any)["object"] != "model" {
		t.Errorf("models: %d %v", resp.StatusCode, m)
	}
	if resp := oaiDo(t, ctx, http.MethodGet, o.URL()+"/v1/models", "", map[string]string{"Authorization": "Bearer nope"}); resp.StatusCode != 401 {
		t.Errorf("models with a wrong key: %d", resp.StatusCode)
	}

	resp = oaiDo(t, ctx, http.MethodPost, o.URL()+"/v1/responses/compact", `{"model":"gpt-5.5","input":[{"role":"user","content":"long talk"}],"stream":true}`, nil)
	m = readJSON(t, resp)
	out, _ := m["output"].([]any)
	if resp.StatusCode != 200 || m["object"] != "response.compaction" || len(out) != 1 {
		t.Fatalf("compact: %d %v", resp.StatusCode, m)
	}
	if item := out[0].(map[string]any); item["type"] != "compaction" || item["encrypted_content"] == "" {
		t.Errorf("compaction item = %v", item)
	}
	checkUsageJSON(t, m["usage"], DefaultOpenAIUsage())

	before := o.ResponseCount()
	// Codex's built-in provider tries a WebSocket first; a quick non-101
	// answer sends it to HTTPS at once.
	ws := map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
		"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "OpenAI-Beta": "responses_websockets=2026-02-06"}
	for _, path := range []string{"/v1/responses", codexResponsesPath} {
		resp := oaiDo(t, ctx, http.MethodGet, o.URL()+path, "", ws)
		if resp.StatusCode != http.StatusUpgradeRequired {
			t.Errorf("websocket upgrade on %s: %d, want 426", path, resp.StatusCode)
		}
	}
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/v1/responses"},
		{http.MethodPost, "/v1/chat/completions"},
		{http.MethodPost, "/backend-api/codex/chat"},
		{http.MethodHead, "/"},
	} {
		resp := oaiDo(t, ctx, tc.method, o.URL()+tc.path, "", nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s: %d, want 404", tc.method, tc.path, resp.StatusCode)
		}
	}
	if o.ResponseCount() != before {
		t.Errorf("ResponseCount moved from %d to %d on non-generation routes", before, o.ResponseCount())
	}
}

func TestCodexBackendCredentials(t *testing.T) {
	oa := StartOpenAIOAuth(t)
	o := StartOpenAI(t, OpenAIOptions{OAuth: oa, APIKeys: []string{"sk-test"}})
	live := codexLogin(t, oa)
	oa.SetAccessTTL(time.Millisecond)
	expired := codexLogin(t, oa)
	revoked := codexLogin(t, oa)
	oa.Revoke(revoked.refresh)
	time.Sleep(5 * time.Millisecond) // let the 1 ms token expire

	for _, tc := range []struct {
		name, auth, account string
		want                int
		wantDetail          string
	}{
		{"live token, its account", "Bearer " + live.access, live.account, 200, ""},
		{"no token", "", live.account, 401, `"Unauthorized"`},
		{"an API key", "Bearer sk-test", live.account, 401, `"Unauthorized"`},
		{"expired token", "Bearer " + expired.access, expired.account, 401, `"code":"token_expired"`},
		{"revoked token", "Bearer " + revoked.access, revoked.account, 401, `"Unauthorized"`},
		{"no account header", "Bearer " + live.access, "", 403, "chatgpt-account-id"},
		{"another account", "Bearer " + live.access, "00000000-0000-0000-0000-000000000000", 403, "chatgpt-account-id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := oaiDo(t, oaiCtx(t), http.MethodPost, o.CodexURL()+"/responses", codexBody,
				map[string]string{"Authorization": tc.auth, "ChatGPT-Account-ID": tc.account})
			if resp.StatusCode != tc.want {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, b)
			}
			if tc.want == 200 {
				_, names, err := readEvents(t, resp.Body)
				if err != nil || len(names) != 8+5 || names[len(names)-1] != "response.completed" {
					t.Errorf("stream %v, %v", names, err)
				}
				if resp.Header.Get(hdrCodexPrimaryUsed) == "" || resp.Header.Get(hdrCodexPlanType) != "plus" {
					t.Errorf("no Codex usage headers on success: %v", resp.Header)
				}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			if !strings.HasPrefix(string(b), `{"detail":`) || !strings.Contains(string(b), tc.wantDetail) {
				t.Errorf("body %s, want a detail with %s", b, tc.wantDetail)
			}
			if resp.Header.Get(hdrCodexPrimaryUsed) != "" {
				t.Errorf("usage headers on a refused credential")
			}
		})
	}
}

func TestCodexBackendBodyRules(t *testing.T) {
	o := StartOpenAI(t, OpenAIOptions{}) // no OAuth: any token with an account id
	for _, tc := range []struct {
		name, path, body string
		want             int
		detail           string
	}{
		{"codex body", "/responses", codexBody, 200, ""},
		{"store missing", "/responses", `{"model":"m","stream":true,"input":[]}`, 400, "Store must be set to false"},
		{"store true", "/responses", `{"model":"m","stream":true,"store":true,"input":[]}`, 400, "Store must be set to false"},
		{"not streamed", "/responses", `{"model":"m","store":false,"input":[]}`, 400, "Stream must be set to true"},
		{"stream false", "/responses", `{"model":"m","store":false,"stream":false,"input":[]}`, 400, "Stream must be set to true"},
		{"missing model", "/responses", `{"store":false,"stream":true,"input":[]}`, 400, "'model'"},
		{"compact needs neither", "/responses/compact", `{"model":"m","input":[{"role":"user","content":"x"}]}`, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := oaiDo(t, oaiCtx(t), http.MethodPost, o.CodexURL()+tc.path, tc.body, map[string]string{"chatgpt-account-id": "acct-1"})
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, b)
			}
			if tc.want == 400 {
				var d struct{ Detail string }
				if json.Unmarshal(b, &d) != nil || !strings.Contains(d.Detail, tc.detail) {
					t.Errorf("body %s, want detail with %q", b, tc.detail)
				}
			}
			// Every authenticated Codex reply reports the subscription,
			// refusals included.
			if resp.Header.Get(hdrCodexPrimaryUsed) != "12" || resp.Header.Get(hdrCodexSecondaryUsed) != "34" {
				t.Errorf("usage headers %q %q", resp.Header.Get(hdrCodexPrimaryUsed), resp.Header.Get(hdrCodexSecondaryUsed))
			}
		})
	}
	resp := oaiDo(t, oaiCtx(t), http.MethodPost, o.CodexURL()+"/responses", codexBody, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("without chatgpt-account-id: %d, want 403", resp.StatusCode)
	}
}

func TestCodexUsageHeaders(t *testing.T) {
	o := StartOpenAI(t, OpenAIOptions{})
	hdr := map[string]string{"chatgpt-account-id": "acct-1"}
	resp := oaiDo(t, oaiCtx(t), http.MethodPost, o.CodexURL()+"/responses", codexBody, hdr)
	now := time.Now()
	for k, want := range map[string]string{
		hdrCodexPrimaryUsed: "12", hdrCodexPrimaryWindow: "300", hdrCodexSecondaryUsed: "34", hdrCodexSecondaryWindow: "10080",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	checkReset := func(after, at string, want time.Duration) {
		t.Helper()
		secs, err1 := strconv.ParseInt(resp.Header.Get(after), 10, 64)
		unix, err2 := strconv.ParseInt(resp.Header.Get(at), 10, 64)
		if err1 != nil || err2 != nil || secs > int64(want/time.Second) || secs < int64(want/time.Second)-5 ||
			time.Unix(unix, 0).Sub(now.Add(want)).Abs() > 5*time.Second {
			t.Errorf("%s = %q, %s = %q; want about %v from now", after, resp.Header.Get(after), at, resp.Header.Get(at), want)
		}
	}
	checkReset(hdrCodexPrimaryResetAfter, hdrCodexPrimaryResetAt, 3*time.Hour)
	checkReset(hdrCodexSecondaryResetAfter, hdrCodexSecondaryResetAt, 96*time.Hour)

	o.SetCodexUsage(CodexUsage{
		Primary:   CodexWindow{UsedPercent: 57.5, Window: 5 * time.Hour, ResetAfter: time.Hour},
		Secondary: CodexWindow{UsedPercent: 80, Window: 7 * 24 * time.Hour, ResetAfter: 24 * time.Hour},
	})
	resp = oaiDo(t, oaiCtx(t), http.MethodPost, o.CodexURL()+"/responses", codexBody, hdr)
	if resp.StatusCode != 200 || resp.Header.Get(hdrCodexPrimaryUsed) != "57.5" || resp.Header.Get(hdrCodexSecondaryUsed) != "80" {
		t.Errorf("after SetCodexUsage: %d %q %q", resp.StatusCode, resp.Header.Get(hdrCodexPrimaryUsed), resp.Header.Get(hdrCodexSecondaryUsed))
	}
}

// TestCodexSpentWindow: a window at 100 % refuses every Codex request with
// the plan's 429 until it resets, then the window starts again at 0 %.
func TestCodexSpentWindow(t *testing.T) {
	oa := StartOpenAIOAuth(t)
	oa.SetIdentity(OpenAIIdentity{AccountID: "acct-pro", UserID: "user-pro", Email: "pro@example.com", Plan: "pro"})
	o := StartOpenAI(t, OpenAIOptions{OAuth: oa})
	tok := codexLogin(t, oa)
	const resetAfter = 1500 * time.Millisecond
	o.SetCodexUsage(CodexUsage{
		Primary:   CodexWindow{UsedPercent: 100, Window: time.Hour, ResetAfter: resetAfter},
		Secondary: CodexWindow{UsedPercent: 40, Window: 7 * 24 * time.Hour, ResetAfter: 48 * time.Hour},
	})
	send := func() *http.Response {
		return oaiDo(t, oaiCtx(t), http.MethodPost, o.CodexURL()+"/responses", codexBody, tok.header())
	}
	resp := send()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("spent window: %d, want 429", resp.StatusCode)
	}
	e := readJSON(t, resp)["error"].(map[string]any)
	if e["type"] != "usage_limit_reached" || e["plan_type"] != "pro" || e["resets_in_seconds"] != 2.0 || e["message"] == "" {
		t.Errorf("429 body error = %v", e)
	}
	if resp.Header.Get(hdrCodexPrimaryUsed) != "100" || resp.Header.Get(hdrCodexPlanType) != "pro" {
		t.Errorf("429 headers %v", resp.Header)
	}
	time.Sleep(resetAfter)
	resp = send()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(hdrCodexPrimaryUsed) != "0" {
		t.Errorf("after the reset: %d, used %q", resp.StatusCode, resp.Header.Get(hdrCodexPrimaryUsed))
	}
	if n := o.ResponseCount(); n != 2 {
		t.Errorf("ResponseCount %d, want 2", n)
	}
}

func TestOpenAIStatusFaults(t *testing.T) {
	o := StartOpenAI(t, OpenAIOptions{})
	api, codex := o.URL()+"/v1/responses", o.CodexURL()+"/responses"
	codexHdr := map[string]string{"chatgpt-account-id": "acct-1"}
	for _, tc := range []struct {
		name   string
		fault  OpenAIFault
		url    string
		body   string
		hdr    map[string]string
		status int
		check  func(t *testing.T, resp *http.Response)
	}{
		{"api 429", OpenAIFault{Status: 429}, api, oaiBody, nil, 429, func(t *testing.T, resp *http.Response) {
			if e := checkOpenAIError(t, resp, "requests"); e["code"] != "rate_limit_exceeded" {
				t.Errorf("code %v", e["code"])
			}
		}},
		{"api 401", OpenAIFault{Status: 401}, api, oaiBody, nil, 401, func(t *testing.T, resp *http.Response) {
			if e := checkOpenAIError(t, resp, "invalid_request_error"); e["code"] != "invalid_api_key" {
				t.Errorf("code %v", e["code"])
			}
		}},
		{"api 500", OpenAIFault{Status: 500}, api, oaiBody, nil, 500, func(t *testing.T, resp *http.Response) {
			checkOpenAIError(t, resp, "server_error")
		}},
		{"codex 503", OpenAIFault{Status: 503}, codex, codexBody, codexHdr, 503, func(t *testing.T, resp *http.Response) {
			checkOpenAIError(t, resp, "server_error")
		}},
		{"codex 429 is the plan's limit", OpenAIFault{Status: 429, ResetsIn: 90 * time.Second}, codex, codexBody, codexHdr, 429, func(t *testing.T, resp *http.Response) {
			e := readJSON(t, resp)["error"].(map[string]any)
			if e["type"] != "usage_limit_reached" || e["resets_in_seconds"] != 90.0 || e["plan_type"] != "plus" {
				t.Errorf("error %v", e)
			}
			if at := int64(e["resets_at"].(float64)); time.Unix(at, 0).Sub(time.Now().Add(90*time.Second)).Abs() > 5*time.Second {
				t.Errorf("resets_at %d", at)
			}
		}},
		{"codex 429 defaults to the primary reset", OpenAIFault{Status: 429}, codex, codexBody, codexHdr, 429, func(t *testing.T, resp *http.Response) {
			e := readJSON(t, resp)["error"].(map[string]any)
			if s := e["resets_in_seconds"].(float64); s > 3*3600 || s < 3*3600-5 {
				t.Errorf("resets_in_seconds %v, want about 3 h", s)
			}
		}},
		{"codex 401", OpenAIFault{Status: 401}, codex, codexBody, codexHdr, 401, func(t *testing.T, resp *http.Response) {
			if b, _ := io.ReadAll(resp.Body); string(b) != `{"detail":"Unauthorized"}` {
				t.Errorf("body %s", b)
			}
		}},
		{"body and pinned headers", OpenAIFault{Status: 429, Body: `{"custom":true}`, Header: http.Header{"Retry-After": {"7"}, "X-Codex-Primary-Used-Percent": {"99"}}},
			codex, codexBody, codexHdr, 429, func(t *testing.T, resp *http.Response) {
				b, _ := io.ReadAll(resp.Body)
				if string(b) != `{"custom":true}` || resp.Header.Get("Retry-After") != "7" ||
					resp.Header.Values(hdrCodexPrimaryUsed)[0] != "99" || len(resp.Header.Values(hdrCodexPrimaryUsed)) != 1 ||
					resp.Header.Get(hdrCodexSecondaryUsed) != "34" {
					t.Errorf("body %s headers %v", b, resp.Header)
				}
			}},
		{"200 with a golden body", OpenAIFault{Status: 200, Body: "event: x\ndata: {}\n\n"}, api, `{"model":"m","input":"x","stream":true}`, nil, 200, func(t *testing.T, resp *http.Response) {
			b, _ := io.ReadAll(resp.Body)
			if string(b) != "event: x\ndata: {}\n\n" || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
				t.Errorf("body %q, type %q", b, resp.Header.Get("Content-Type"))
			}
		}},
		{"validation wins over a queued fault", OpenAIFault{Status: 500}, api, `{"input":"x"}`, nil, 400, func(t *testing.T, resp *http.Response) {
			checkOpenAIError(t, resp, "invalid_request_error")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o.Push(tc.fault)
			resp := oaiDo(t, oaiCtx(t), http.MethodPost, tc.url, tc.body, tc.hdr)
			if resp.StatusCode != tc.status {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			tc.check(t, resp)
		})
	}
	// The queue is empty again: healthy.
	if resp := oaiDo(t, oaiCtx(t), http.MethodPost, api, oaiBody, nil); resp.StatusCode != 200 {
		t.Errorf("after the queue: %d", resp.StatusCode)
	}
}

func TestOpenAIStreamFaults(t *testing.T) {
	o := StartOpenAI(t, OpenAIOptions{})
	stream := `{"model":"m","input":"x","stream":true}`

	o.Push(OpenAIFault{CutAfterEvents: 4})
	resp := oaiDo(t, oaiCtx(t), http.MethodPost, o.URL()+"/v1/responses", stream, nil)
	events, names, err := readEvents(t, resp.Body)
	if err == nil || len(events) != 4 || names[3] != "response.content_part.added" {
		t.Errorf("cut after 4: %v, err %v; want 4 events and a read error", names, err)
	}

	o.Push(OpenAIFault{FailAfterEvents: 5, FailCode: "rate_limit_exceeded"})
	resp = oaiDo(t, oaiCtx(t), http.MethodPost, o.CodexURL()+"/responses", codexBody, map[string]string{"chatgpt-account-id": "a"})
	events, names, err = readEvents(t, resp.Body)
	if err != nil || len(events) != 6 || names[5] != "response.failed" {
		t.Fatalf("fail after 5: %v, %v", names, err)
	}
	failed := events[5]["response"].(map[string]any)
	if e, _ := failed["error"].(map[string]any); failed["status"] != "failed" || e["code"] != "rate_limit_exceeded" || e["message"] == "" || failed["usage"] != nil {
		t.Errorf("response.failed = %v", failed)
	}

	o.Push(OpenAIFault{FailAfterEvents: 1})
	resp = oaiDo(t, oaiCtx(t), http.MethodPost, o.URL()+"/v1/responses", stream, nil)
	events, _, _ = readEvents(t, resp.Body)
	if len(events) != 2 || events[1]["response"].(map[string]any)["error"].(map[string]any)["code"] != "server_error" {
		t.Errorf("default fail code: %v", events)
	}

	o.Push(OpenAIFault{CutAfterEvents: 1})
	resp = oaiDo(t, oaiCtx(t), http.MethodPost, o.URL()+"/v1/responses", oaiBody, nil)
	if b, err := io.ReadAll(resp.Body); err == nil || json.Valid(b) {
		t.Errorf("non-stream cut: %d bytes, err %v; want a truncated body", len(b), err)
	}

	o.Push(OpenAIFault{CutAfterEvents: 100})
	resp = oaiDo(t, oaiCtx(t), http.MethodPost, o.URL()+"/v1/responses", stream, nil)
	if _, names, err := readEvents(t, resp.Body); err != nil || names[len(names)-1] != "response.completed" {
		t.Errorf("a cut past the end: %v, %v", names, err)
	}
}

func TestOpenAIDelayHangAndDefault(t *testing.T) {
	o := StartOpenAI(t, OpenAIOptions{})

	const delay = 150 * time.Millisecond
	o.Push(OpenAIFault{FirstByteDelay: delay})
	start := time.Now()
	if resp := oaiDo(t, oaiCtx(t), http.MethodPost, o.URL()+"/v1/responses", oaiBody, nil); resp.StatusCode != 200 || time.Since(start) < delay {
		t.Errorf("first byte delay: %d after %v", resp.StatusCode, time.Since(start))
	}

	o.Push(OpenAIFault{Hang: true})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, o.URL()+"/v1/responses", strings.NewReader(oaiBody))
	req.Header.Set("Authorization", "Bearer k")
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hang: err %v, want the client's deadline", err)
	}

	o.SetDefault(OpenAIFault{Status: 503})
	for range 2 {
		if resp := oaiDo(t, oaiCtx(t), http.MethodPost, o.URL()+"/v1/responses", oaiBody, nil); resp.StatusCode != 503 {
			t.Errorf("default fault: %d", resp.StatusCode)
		}
	}
	o.Push(OpenAIFault{}) // a queued healthy fault beats the default
	if resp := oaiDo(t, oaiCtx(t), http.MethodPost, o.URL()+"/v1/responses", oaiBody, nil); resp.StatusCode != 200 {
		t.Errorf("queued zero fault: %d", resp.StatusCode)
	}
	o.SetDefault(OpenAIFault{})
	o.Push(OpenAIFault{Status: 500})
	o.Reset()
	if resp := oaiDo(t, oaiCtx(t), http.MethodPost, o.URL()+"/v1/responses", oaiBody, nil); resp.StatusCode != 200 {
		t.Errorf("after Reset: %d", resp.StatusCode)
	}
	if o.ResponseCount() != 1 || len(o.Requests()) != 1 {
		t.Errorf("after Reset: count %d, requests %d", o.ResponseCount(), len(o.Requests()))
	}
}

// TestOpenAICloseReleasesHangs: Close returns handlers stuck in Hang even
// when the client never gives up, so a test's cleanup cannot deadlock.
func TestOpenAICloseReleasesHangs(t *testing.T) {
	o := NewOpenAI(OpenAIOptions{})
	srv := httptestServer(t, o)
	o.SetDefault(OpenAIFault{Hang: true})
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, srv+"/v1/responses", strings.NewReader(oaiBody))
		req.Header.Set("Authorization", "Bearer k")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for o.ResponseCount() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	o.Close()
	select {
	case <-errc:
	case <-time.After(5 * time.Second):
		t.Fatal("a hanging request outlived Close")
	}
}

func TestOpenAIMaxInFlight(t *testing.T) {
	o := StartOpenAI(t, OpenAIOptions{})
	o.SetDefault(OpenAIFault{FirstByteDelay: 200 * time.Millisecond})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, o.URL()+"/v1/responses", strings.NewReader(oaiBody))
			req.Header.Set("Authorization", "Bearer k")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if got := o.MaxInFlight(); got != 3 {
		t.Errorf("MaxInFlight = %d, want 3", got)
	}
	o.ResetMaxInFlight()
	if got := o.MaxInFlight(); got != 0 {
		t.Errorf("after reset = %d, want 0", got)
	}
}
