package fakeupstream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
)

const testModel = "claude-sonnet-4-5-20250929"

// sdkClient is an official SDK client pointed at the fake, with retries off
// so each call is exactly one request and consumes exactly one fault.
func sdkClient(a *Anthropic, key string) *anthropic.Client {
	c := anthropic.NewClient(
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(a.URL()),
		option.WithAPIKey(key),
		option.WithMaxRetries(0),
	)
	return &c
}

func pongParams() anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model:     testModel,
		MaxTokens: 64,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("say pong"))},
	}
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func checkUsage(t *testing.T, got anthropic.Usage, want Usage) {
	t.Helper()
	if got.InputTokens != want.Input || got.OutputTokens != want.Output ||
		got.CacheReadInputTokens != want.CacheRead ||
		got.CacheCreationInputTokens != want.CacheWrite5m+want.CacheWrite1h ||
		got.CacheCreation.Ephemeral5mInputTokens != want.CacheWrite5m ||
		got.CacheCreation.Ephemeral1hInputTokens != want.CacheWrite1h {
		t.Errorf("usage = in %d out %d read %d write %d (5m %d, 1h %d), want %+v",
			got.InputTokens, got.OutputTokens, got.CacheReadInputTokens, got.CacheCreationInputTokens,
			got.CacheCreation.Ephemeral5mInputTokens, got.CacheCreation.Ephemeral1hInputTokens, want)
	}
}

func TestNonStreamReturnsMessageAndUsage(t *testing.T) {
	a := StartAnthropic(t, Options{APIKeys: []string{"sk-good"}, Name: "alpha"})
	msg, err := sdkClient(a, "sk-good").Messages.New(testCtx(t), pongParams())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(msg.ID, "msg_alpha_") || msg.Role != "assistant" || msg.Model != testModel || msg.StopReason != "end_turn" {
		t.Errorf("message = id %q role %q model %q stop %q", msg.ID, msg.Role, msg.Model, msg.StopReason)
	}
	if len(msg.Content) != 1 || msg.Content[0].Type != "text" || msg.Content[0].Text != ReplyText(5) {
		t.Errorf("content = %+v, want one text block %q", msg.Content, ReplyText(5))
	}
	checkUsage(t, msg.Usage, DefaultUsage())

	reqs := a.Requests()
	if len(reqs) != 1 || a.MessageCount() != 1 {
		t.Fatalf("recorded %d requests, count %d; want 1, 1", len(reqs), a.MessageCount())
	}
	r := reqs[0]
	if r.Method != http.MethodPost || r.Path != "/v1/messages" || r.Header.Get("Authorization") != "Bearer sk-good" ||
		!bytes.Contains(r.Body, []byte("say pong")) || r.Time.IsZero() {
		t.Errorf("recorded request = %s %s auth %q body %q", r.Method, r.Path, r.Header.Get("Authorization"), r.Body)
	}
}

func TestStreamAccumulatesTextAndUsage(t *testing.T) {
	custom := Usage{Input: 100, Output: 40, CacheWrite5m: 9, CacheWrite1h: 4, CacheRead: 80}
	a := StartAnthropic(t, Options{Deltas: 3, Usage: custom})
	stream := sdkClient(a, "any").Messages.NewStreaming(testCtx(t), pongParams())
	defer stream.Close()
	var msg anthropic.Message
	var types []string
	for stream.Next() {
		ev := stream.Current()
		types = append(types, ev.Type)
		if err := msg.Accumulate(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if got := msg.Content[0].Text; got != "pong" {
		t.Errorf("text = %q, want pong", got)
	}
	if msg.StopReason != "end_turn" {
		t.Errorf("stop_reason = %q", msg.StopReason)
	}
	// The SDK takes output from message_delta; message_start's 1 must not
	// leak into the total.
	checkUsage(t, msg.Usage, custom)
	want := "message_start content_block_start content_block_delta content_block_delta content_block_delta content_block_stop message_delta message_stop"
	if got := strings.Join(types, " "); got != want { // the SDK hides ping
		t.Errorf("events = %s\nwant     %s", got, want)
	}
}

// sseFrame is one parsed SSE event from the raw wire.
type sseFrame struct {
	event string
	data  map[string]any
}

// readFrames parses the raw body strictly: every frame must be exactly one
// `event:` line, one `data:` line holding a JSON object, and a blank line.
func readFrames(t *testing.T, r io.Reader) []sseFrame {
	t.Helper()
	var out []sseFrame
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		ev, ok := strings.CutPrefix(sc.Text(), "event: ")
		if !ok {
			t.Fatalf("frame %d starts with %q, want event: line", len(out), sc.Text())
		}
		if !sc.Scan() {
			t.Fatalf("frame %d (%s) has no data line", len(out), ev)
		}
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			t.Fatalf("frame %d second line %q, want data: line", len(out), sc.Text())
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			t.Fatalf("frame %d data: %v", len(out), err)
		}
		if m["type"] != ev {
			t.Errorf("frame %d: event %q but data type %v", len(out), ev, m["type"])
		}
		if !sc.Scan() || sc.Text() != "" {
			t.Fatalf("frame %d (%s) not followed by a blank line", len(out), ev)
		}
		out = append(out, sseFrame{ev, m})
	}
	return out
}

// rawPost sends a Messages request with plain net/http, so tests control
// every header.
func rawPost(t *testing.T, ctx context.Context, url, body string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("x-api-key", "k")
	req.Header.Set("anthropic-version", "2023-06-01")
	req.Header.Set("content-type", "application/json")
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

const streamBody = `{"model":"claude-opus-5-5","max_tokens":128000,"stream":true,"messages":[{"role":"user","content":"say pong"}]}`

func TestStreamWireShape(t *testing.T) {
	const delay = 40 * time.Millisecond
	a := StartAnthropic(t, Options{Deltas: 4, DeltaDelay: delay})
	start := time.Now()
	resp := rawPost(t, testCtx(t), a.URL()+"/v1/messages?beta=true", streamBody, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for k, want := range map[string]string{
		"Content-Type":  "text/event-stream; charset=utf-8",
		"Cache-Control": "no-cache",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if !strings.HasPrefix(resp.Header.Get("request-id"), "req_") {
		t.Errorf("request-id = %q", resp.Header.Get("request-id"))
	}

	// Flushing per event: message_start must arrive long before the deltas'
	// pauses (3 × delay) are over.
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if first := time.Since(start); first >= 3*delay {
		t.Errorf("first event after %v; events are not flushed one by one", first)
	}
	frames := readFrames(t, io.MultiReader(strings.NewReader("event: message_start\n"), br))

	var names []string
	for _, f := range frames {
		names = append(names, f.event)
	}
	want := "message_start content_block_start ping content_block_delta content_block_delta content_block_delta content_block_delta content_block_stop message_delta message_stop"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("events = %s\nwant     %s", got, want)
	}
	msg := frames[0].data["message"].(map[string]any)
	u := msg["usage"].(map[string]any)
	cc := u["cache_creation"].(map[string]any)
	if msg["model"] != "claude-opus-5-5" || msg["role"] != "assistant" || msg["stop_reason"] != nil ||
		u["input_tokens"] != 11.0 || u["output_tokens"] != 1.0 || u["cache_creation_input_tokens"] != 7.0 ||
		u["cache_read_input_tokens"] != 3.0 || cc["ephemeral_5m_input_tokens"] != 5.0 || cc["ephemeral_1h_input_tokens"] != 2.0 {
		t.Errorf("message_start = %v", frames[0].data)
	}
	var text string
	for _, f := range frames[3:7] {
		d := f.data["delta"].(map[string]any)
		if d["type"] != "text_delta" || f.data["index"] != 0.0 {
			t.Errorf("delta frame = %v", f.data)
		}
		text += d["text"].(string)
	}
	if text != "pong" {
		t.Errorf("text = %q", text)
	}
	md := frames[8].data
	if md["delta"].(map[string]any)["stop_reason"] != "end_turn" || md["usage"].(map[string]any)["output_tokens"] != 7.0 {
		t.Errorf("message_delta = %v", md)
	}
	if took := time.Since(start); took < 3*delay {
		t.Errorf("stream took %v, want at least 3 delta delays", took)
	}
}

func TestReplyText(t *testing.T) {
	for n, want := range map[int]string{0: "pong", 1: "pong", 2: "pong", 4: "pong", 5: "pong w1 w2 w3 w4", 7: "pong w1 w2 w3 w4 w5 w6"} {
		if got := ReplyText(n); got != want {
			t.Errorf("ReplyText(%d) = %q, want %q", n, got, want)
		}
		if n > 0 && len(replyPieces(n)) != n {
			t.Errorf("replyPieces(%d) has %d pieces", n, len(replyPieces(n)))
		}
	}
}

func TestWrongKeyGets401(t *testing.T) {
	a := StartAnthropic(t, Options{APIKeys: []string{"sk-good"}})
	_, err := sdkClient(a, "sk-bad").Messages.New(testCtx(t), pongParams())
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v, want *anthropic.Error", err)
	}
	if apiErr.StatusCode != http.StatusUnauthorized || apiErr.Type() != "authentication_error" || apiErr.RequestID == "" {
		t.Errorf("got %d %q request-id %q", apiErr.StatusCode, apiErr.Type(), apiErr.RequestID)
	}
}

func TestCredentials(t *testing.T) {
	a := StartAnthropic(t, Options{APIKeys: []string{"sk-a", "sk-b"}})
	open := StartAnthropic(t, Options{})
	body := `{"model":"m","max_tokens":1,"messages":[]}`
	cases := []struct {
		name string
		fake *Anthropic
		hdr  map[string]string
		want int
	}{
		{"x-api-key accepted", a, map[string]string{"x-api-key": "sk-b"}, 200},
		{"bearer accepted", a, map[string]string{"x-api-key": "", "authorization": "Bearer sk-a"}, 200},
		{"no credential", a, map[string]string{"x-api-key": ""}, 401},
		{"unknown key", a, map[string]string{"x-api-key": "sk-c"}, 401},
		{"leaked x-api-key beside a good bearer", a, map[string]string{"x-api-key": "cr_client", "authorization": "Bearer sk-a"}, 401},
		{"basic auth is not bearer", a, map[string]string{"x-api-key": "", "authorization": "Basic sk-a"}, 401},
		{"open fake accepts anything", open, map[string]string{"x-api-key": "whatever"}, 200},
		{"open fake still needs one", open, map[string]string{"x-api-key": ""}, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := rawPost(t, testCtx(t), tc.fake.URL()+"/v1/messages", body, tc.hdr)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == 401 {
				checkErrorBody(t, resp, "authentication_error")
			}
		})
	}
}

// checkErrorBody asserts the real API's error shape.
func checkErrorBody(t *testing.T, resp *http.Response, wantType string) {
	t.Helper()
	var e struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
		RequestID string `json:"request_id"`
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error content-type %q", ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatalf("error body: %v", err)
	}
	if e.Type != "error" || e.Error.Type != wantType || e.Error.Message == "" || e.RequestID != resp.Header.Get("request-id") {
		t.Errorf("error body = %+v, want error type %s", e, wantType)
	}
}

func TestEnforcement(t *testing.T) {
	a := StartAnthropic(t, Options{})
	claudeCodeLike := `{"model":"claude-opus-9-9","max_tokens":128000,"stream":true,
		"system":[{"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.332"},{"type":"text","text":"You are","cache_control":{"type":"ephemeral","ttl":"1h"}}],
		"messages":[{"role":"user","content":[{"type":"text","text":"say pong"}]},{"role":"system","content":[{"type":"text","text":"env"}]}],
		"thinking":{"type":"adaptive","display":"omitted"},"output_config":{"effort":"medium"},
		"context_management":{"edits":[{"type":"clear_thinking_20251015","keep":"all"}]},
		"metadata":{"user_id":"{\"device_id\":\"ab\",\"account_uuid\":\"\",\"session_id\":\"s\"}"},
		"tools":[{"name":"Bash","defer_loading":true,"input_schema":{"type":"object"}}],"some_future_field":{"x":1}}`
	cases := []struct {
		name, path, body string
		hdr              map[string]string
		want             int
		wantType         string
	}{
		{"claude code body with unknown fields", "/v1/messages?beta=true", claudeCodeLike, nil, 200, ""},
		{"max_tokens 0 warms the cache", "/v1/messages", `{"model":"m","max_tokens":0,"messages":[]}`, nil, 200, ""},
		{"missing anthropic-version", "/v1/messages", streamBody, map[string]string{"anthropic-version": ""}, 400, "invalid_request_error"},
		{"not json", "/v1/messages", `{"model":`, nil, 400, "invalid_request_error"},
		{"json array", "/v1/messages", `[]`, nil, 400, "invalid_request_error"},
		{"missing model", "/v1/messages", `{"max_tokens":1,"messages":[]}`, nil, 400, "invalid_request_error"},
		{"empty model", "/v1/messages", `{"model":"","max_tokens":1,"messages":[]}`, nil, 400, "invalid_request_error"},
		{"missing max_tokens", "/v1/messages", `{"model":"m","messages":[]}`, nil, 400, "invalid_request_error"},
		{"fractional max_tokens", "/v1/messages", `{"model":"m","max_tokens":1.5,"messages":[]}`, nil, 400, "invalid_request_error"},
		{"missing messages", "/v1/messages", `{"model":"m","max_tokens":1}`, nil, 400, "invalid_request_error"},
		{"messages not a list", "/v1/messages", `{"model":"m","max_tokens":1,"messages":{}}`, nil, 400, "invalid_request_error"},
		{"stream not a bool", "/v1/messages", `{"model":"m","max_tokens":1,"messages":[],"stream":"yes"}`, nil, 400, "invalid_request_error"},
		{"gzip request body", "/v1/messages", streamBody, map[string]string{"content-encoding": "gzip"}, 400, "invalid_request_error"},
		{"identity request body", "/v1/messages", streamBody, map[string]string{"content-encoding": "identity"}, 200, ""},
		{"count_tokens needs no max_tokens", "/v1/messages/count_tokens", `{"model":"m","messages":[]}`, nil, 200, ""},
		{"count_tokens needs messages", "/v1/messages/count_tokens", `{"model":"m"}`, nil, 400, "invalid_request_error"},
		{"unknown route", "/v1/complete", streamBody, nil, 404, "not_found_error"},
		{"batches are not faked", "/v1/messages/batches", streamBody, nil, 404, "not_found_error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := rawPost(t, testCtx(t), a.URL()+tc.path, tc.body, tc.hdr)
			if resp.StatusCode != tc.want {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, b)
			}
			if tc.wantType != "" {
				checkErrorBody(t, resp, tc.wantType)
			}
		})
	}

	// Claude Code's HEAD warm-up and a GET on the Messages route get 404
	// and are not counted as Messages requests.
	before := a.MessageCount()
	for _, m := range []string{http.MethodHead + " /", http.MethodGet + " /v1/messages"} {
		method, path, _ := strings.Cut(m, " ")
		req, _ := http.NewRequestWithContext(testCtx(t), method, a.URL()+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s = %d, want 404", m, resp.StatusCode)
		}
	}
	if a.MessageCount() != before {
		t.Errorf("MessageCount moved from %d to %d", before, a.MessageCount())
	}
}

func TestTooLargeBody(t *testing.T) {
	a := StartAnthropic(t, Options{})
	big := `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"` + strings.Repeat("x", maxRequestBody) + `"}]}`
	resp := rawPost(t, testCtx(t), a.URL()+"/v1/messages", big, nil)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
	checkErrorBody(t, resp, "request_too_large")
	if got := len(a.Requests()[0].Body); got != maxRecordedBody {
		t.Errorf("recorded body %d bytes, want the %d cap", got, maxRecordedBody)
	}
}

func TestCountTokensAndModels(t *testing.T) {
	a := StartAnthropic(t, Options{})
	c := sdkClient(a, "k")
	ctx := testCtx(t)
	n, err := c.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{
		Model:    testModel,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(strings.Repeat("word ", 100)))},
	})
	if err != nil {
		t.Fatal(err)
	}
	if n.InputTokens < 100 {
		t.Errorf("input_tokens = %d, want it to grow with the body", n.InputTokens)
	}
	page, err := c.Models.List(ctx, anthropic.ModelListParams{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) == 0 || page.HasMore || page.FirstID != page.Data[0].ID || page.LastID != page.Data[len(page.Data)-1].ID {
		t.Errorf("models page = %+v", page)
	}
	m, err := c.Models.Get(ctx, page.Data[0].ID, anthropic.ModelGetParams{})
	if err != nil || m.ID != page.Data[0].ID || m.Type != "model" {
		t.Errorf("model get = %+v, %v", m, err)
	}
	if a.MessageCount() != 0 {
		t.Errorf("count_tokens and models counted as messages: %d", a.MessageCount())
	}
}

func TestStatusFaults(t *testing.T) {
	a := StartAnthropic(t, Options{})
	cases := []struct {
		status   int
		wantType string
	}{
		{400, "invalid_request_error"},
		{401, "authentication_error"},
		{402, "billing_error"},
		{403, "permission_error"},
		{404, "not_found_error"},
		{409, "invalid_request_error"},
		{413, "request_too_large"},
		{429, "rate_limit_error"},
		{500, "api_error"},
		{503, "api_error"},
		{504, "timeout_error"},
		{529, "overloaded_error"},
	}
	for _, tc := range cases {
		a.Push(Fault{Status: tc.status})
		resp := rawPost(t, testCtx(t), a.URL()+"/v1/messages", streamBody, nil)
		if resp.StatusCode != tc.status {
			t.Errorf("pushed %d, got %d", tc.status, resp.StatusCode)
			continue
		}
		checkErrorBody(t, resp, tc.wantType)
	}
	// The queue is drained: the next request is healthy.
	if resp := rawPost(t, testCtx(t), a.URL()+"/v1/messages", streamBody, nil); resp.StatusCode != 200 {
		t.Errorf("after the queue: status %d", resp.StatusCode)
	}
}

func TestRateLimitFaultThroughSDK(t *testing.T) {
	a := StartAnthropic(t, Options{})
	a.Push(Fault{Status: 429, Header: http.Header{"Retry-After": {"7"}, "Anthropic-Ratelimit-Unified-Reset": {"1800000000"}}})
	_, err := sdkClient(a, "k").Messages.New(testCtx(t), pongParams())
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v", err)
	}
	if apiErr.StatusCode != 429 || apiErr.Type() != "rate_limit_error" ||
		apiErr.Response.Header.Get("retry-after") != "7" ||
		apiErr.Response.Header.Get("anthropic-ratelimit-unified-reset") != "1800000000" {
		t.Errorf("got %d %q headers %v", apiErr.StatusCode, apiErr.Type(), apiErr.Response.Header)
	}
}

func TestFaultQueueOrderDefaultAndReset(t *testing.T) {
	a := StartAnthropic(t, Options{})
	post := func() int {
		return rawPost(t, testCtx(t), a.URL()+"/v1/messages", streamBody, nil).StatusCode
	}
	a.SetDefault(Fault{Status: 529})
	a.Push(Fault{Status: 500}, Fault{Status: 429})
	got := []int{post(), post(), post(), post()}
	if want := []int{500, 429, 529, 529}; !equalInts(got, want) {
		t.Errorf("statuses = %v, want %v", got, want)
	}
	a.Push(Fault{Status: 403})
	a.Reset()
	if a.MessageCount() != 0 || len(a.Requests()) != 0 {
		t.Errorf("after Reset: count %d, %d requests", a.MessageCount(), len(a.Requests()))
	}
	if s := post(); s != 529 {
		t.Errorf("Reset must drop the queue and keep the default: got %d", s)
	}
	a.SetDefault(Fault{})
	if s := post(); s != 200 {
		t.Errorf("zero default: got %d", s)
	}
	// Validation beats a queued fault, but the fault is still consumed.
	a.Push(Fault{Status: 529})
	if s := rawPost(t, testCtx(t), a.URL()+"/v1/messages", streamBody, map[string]string{"anthropic-version": ""}).StatusCode; s != 400 {
		t.Errorf("invalid request under a fault: %d, want 400", s)
	}
	if s := post(); s != 200 {
		t.Errorf("fault not consumed by the invalid request: %d", s)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCustomBodies(t *testing.T) {
	a := StartAnthropic(t, Options{})
	a.Push(Fault{Status: 400, Body: `{"type":"error","error":{"type":"invalid_request_error","message":"This credential is only authorized for use with Claude Code"}}`})
	resp := rawPost(t, testCtx(t), a.URL()+"/v1/messages", streamBody, nil)
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(b), "only authorized for use with Claude Code") {
		t.Errorf("override: %d %s", resp.StatusCode, b)
	}
	golden := "event: message_start\ndata: {\"type\":\"message_start\"}\n\n"
	a.Push(Fault{Status: 200, Body: golden})
	resp = rawPost(t, testCtx(t), a.URL()+"/v1/messages", streamBody, nil)
	b, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != golden || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Errorf("verbatim 200: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
}

func TestFirstByteDelay(t *testing.T) {
	const delay = 150 * time.Millisecond
	a := StartAnthropic(t, Options{})
	a.Push(Fault{FirstByteDelay: delay})
	c := sdkClient(a, "k")
	start := time.Now()
	if _, err := c.Messages.New(testCtx(t), pongParams()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < delay {
		t.Errorf("delayed request took %v, want >= %v", took, delay)
	}
	start = time.Now()
	if _, err := c.Messages.New(testCtx(t), pongParams()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= delay {
		t.Errorf("next request took %v; the delay was not consumed", took)
	}

	// The delay gives way to a client that stops waiting.
	a.Push(Fault{FirstByteDelay: time.Hour})
	ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Messages.New(ctx, pongParams()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want deadline exceeded", err)
	}
}

func TestCutStream(t *testing.T) {
	a := StartAnthropic(t, Options{})
	// message_start, content_block_start, ping, first delta: then the wire dies.
	a.Push(Fault{CutAfterEvents: 4})
	stream := sdkClient(a, "k").Messages.NewStreaming(testCtx(t), pongParams())
	defer stream.Close()
	var msg anthropic.Message
	n := 0
	for stream.Next() {
		n++
		_ = msg.Accumulate(stream.Current())
	}
	if err := stream.Err(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("stream error = %v, want unexpected EOF", err)
	}
	if n != 3 || msg.Content[0].Text != "pong" {
		t.Errorf("got %d events, text %q; want 3 (ping is hidden) and the first delta", n, msg.Content[0].Text)
	}

	a.Push(Fault{CutAfterEvents: 1})
	if _, err := sdkClient(a, "k").Messages.New(testCtx(t), pongParams()); err == nil {
		t.Error("non-stream reply cut in half decoded without error")
	}
}

func TestErrorEventInStream(t *testing.T) {
	a := StartAnthropic(t, Options{})
	a.Push(Fault{ErrorEventAfter: 3})
	stream := sdkClient(a, "k").Messages.NewStreaming(testCtx(t), pongParams())
	defer stream.Close()
	n := 0
	for stream.Next() {
		n++
	}
	var apiErr *anthropic.Error
	if !errors.As(stream.Err(), &apiErr) || apiErr.Type() != "overloaded_error" {
		t.Fatalf("stream error = %v, want overloaded_error event", stream.Err())
	}
	if n != 2 {
		t.Errorf("saw %d events before the error, want 2", n)
	}

	a.Push(Fault{ErrorEventAfter: 1, ErrorEventType: "api_error"})
	resp := rawPost(t, testCtx(t), a.URL()+"/v1/messages", streamBody, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d; error events come inside a 200", resp.StatusCode)
	}
	frames := readFrames(t, resp.Body)
	if len(frames) != 2 || frames[1].event != "error" ||
		frames[1].data["error"].(map[string]any)["type"] != "api_error" {
		t.Errorf("frames = %+v", frames)
	}
}

func TestGzipFault(t *testing.T) {
	a := StartAnthropic(t, Options{Deltas: 2})
	c := sdkClient(a, "k")

	a.Push(Fault{Gzip: true})
	msg, err := c.Messages.New(testCtx(t), pongParams())
	if err != nil || msg.Content[0].Text != "pong" {
		t.Fatalf("gzip non-stream: %v %+v", err, msg)
	}

	a.Push(Fault{Gzip: true})
	stream := c.Messages.NewStreaming(testCtx(t), pongParams())
	var acc anthropic.Message
	for stream.Next() {
		_ = acc.Accumulate(stream.Current())
	}
	stream.Close()
	if stream.Err() != nil || acc.Content[0].Text != "pong" || acc.Usage.OutputTokens != 7 {
		t.Fatalf("gzip stream: %v %+v", stream.Err(), acc)
	}

	// A client that asked for identity gets gzip anyway: that is the fault.
	a.Push(Fault{Gzip: true})
	resp := rawPost(t, testCtx(t), a.URL()+"/v1/messages", streamBody, map[string]string{"accept-encoding": "identity"})
	b, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("Content-Encoding") != "gzip" || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("raw body is not gzip: encoding %q, % x", resp.Header.Get("Content-Encoding"), b[:min(4, len(b))])
	}

	a.Push(Fault{Gzip: true, Status: 529})
	_, err = c.Messages.New(testCtx(t), pongParams())
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) || apiErr.Type() != "overloaded_error" {
		t.Errorf("gzip error body: %v", err)
	}
}

func TestHang(t *testing.T) {
	a := StartAnthropic(t, Options{})
	c := sdkClient(a, "k")

	a.Push(Fault{Hang: true})
	ctx, cancel := context.WithTimeout(testCtx(t), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Messages.New(ctx, pongParams())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want deadline exceeded", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("hang outlived the context by %v", took)
	}

	// Close releases a hang whose client never gives up, so test cleanup
	// cannot block.
	a.Push(Fault{Hang: true})
	done := make(chan error, 1)
	go func() {
		_, err := c.Messages.New(context.Background(), pongParams())
		done <- err
	}()
	for a.MessageCount() < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	a.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("hung request succeeded after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not release the hung request")
	}
}

func TestBareHandlerHasNoURL(t *testing.T) {
	a := NewAnthropic(Options{})
	defer a.Close()
	if a.URL() != "" {
		t.Errorf("URL = %q", a.URL())
	}
}

// TestConcurrentStreams checks the fake under parallel load, as bench and
// relay tests use it: every request is recorded, counted and takes exactly
// one queued fault.
func TestConcurrentStreams(t *testing.T) {
	a := StartAnthropic(t, Options{Deltas: 8})
	const n, faults = 24, 6
	for range faults {
		a.Push(Fault{Status: 529})
	}
	c := sdkClient(a, "k")
	ctx := testCtx(t)
	errs := make(chan error, n)
	for range n {
		go func() {
			stream := c.Messages.NewStreaming(ctx, pongParams())
			defer stream.Close()
			var msg anthropic.Message
			for stream.Next() {
				_ = msg.Accumulate(stream.Current())
			}
			if err := stream.Err(); err != nil {
				errs <- err
				return
			}
			if msg.Content[0].Text != ReplyText(8) {
				errs <- fmt.Errorf("text %q", msg.Content[0].Text)
				return
			}
			errs <- nil
		}()
	}
	failed := 0
	for range n {
		if err := <-errs; err != nil {
			var apiErr *anthropic.Error
			if !errors.As(err, &apiErr) || apiErr.StatusCode != 529 {
				t.Errorf("unexpected error: %v", err)
			}
			failed++
		}
	}
	if failed != faults || a.MessageCount() != n || len(a.Requests()) != n {
		t.Errorf("%d failed (want %d), count %d, recorded %d (want %d)", failed, faults, a.MessageCount(), len(a.Requests()), n)
	}
}

func TestMaxInFlight(t *testing.T) {
	a := StartAnthropic(t, Options{})
	a.SetDefault(Fault{FirstByteDelay: 100 * time.Millisecond})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(a.URL()+"/v1/messages", "application/json",
				strings.NewReader(`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}]}`))
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if got := a.MaxInFlight(); got != 4 {
		t.Fatalf("MaxInFlight = %d, want 4", got)
	}
	a.ResetMaxInFlight()
	if got := a.MaxInFlight(); got != 0 {
		t.Fatalf("after reset = %d", got)
	}
}
