package anthropic

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/sse"
)

// Claude Code's own prompts, as it sends them.
const (
	ccTitlePrompt   = "Please write a 5-10 word title for the following conversation:\n\nUser: fix the flaky test\n\nRespond with the title for the conversation and nothing else."
	ccTopicPrompt   = "Analyze if this message indicates a new conversation topic. If it does, extract a 2-3 word title that captures the new topic. Format your response as a JSON object with two fields: 'isNewTopic' (boolean) and 'title' (string, or null if isNewTopic is false). Only include these fields, no other text."
	ccSessionPrompt = "Generate a concise, sentence-case title (3-7 words) that captures the main topic or goal of this coding session. Reply with the title only."
)

func TestIsWarmup(t *testing.T) {
	cases := []struct {
		name string
		body string
		want bool
	}{
		{"warmup string content", `{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"Warmup"}]}`, true},
		{"warmup text block", `{"messages":[{"role":"user","content":[{"type":"text","text":"Warmup","cache_control":{"type":"ephemeral"}}]}]}`, true},
		{"warmup beside a system reminder", `{"messages":[{"role":"user","content":[{"type":"text","text":"<system-reminder>ctx</system-reminder>"},{"type":"text","text":"Warmup"}]}]}`, true},
		{"warmup in a later message", `{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"Warmup"}]}`, true},
		{"title prompt as string", `{"messages":[{"role":"user","content":` + jsonString(ccTitlePrompt) + `}]}`, true},
		{"title prompt in a block", `{"messages":[{"role":"user","content":[{"type":"text","text":` + jsonString(ccTitlePrompt) + `}]}]}`, true},
		{"topic prompt as system string", `{"system":` + jsonString(ccTopicPrompt) + `,"messages":[{"role":"user","content":"fix the flaky test"}]}`, true},
		{"topic prompt in system blocks", `{"system":[{"type":"text","text":"You are Claude Code, Anthropic's official CLI for Claude."},{"type":"text","text":` + jsonString(ccTopicPrompt) + `}],"messages":[{"role":"user","content":"fix it"}]}`, true},
		{"session title prompt in system", `{"system":[{"type":"text","text":` + jsonString(ccSessionPrompt) + `}],"messages":[{"role":"user","content":"fix it"}]}`, true},

		{"ordinary prompt", `{"system":"You are helpful.","messages":[{"role":"user","content":"say pong"}]}`, false},
		{"lower-case warmup", `{"messages":[{"role":"user","content":"warmup"}]}`, false},
		{"warmup with more text", `{"messages":[{"role":"user","content":"Warmup the cache, then run the tests"}]}`, false},
		{"warmup with trailing space", `{"messages":[{"role":"user","content":"Warmup "}]}`, false},
		{"warmup as the model name", `{"model":"Warmup","messages":[{"role":"user","content":"hi"}]}`, false},
		{"warmup only in system", `{"system":"Warmup","messages":[{"role":"user","content":"hi"}]}`, false},
		{"warmup inside a tool result", `{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"Warmup"}]}]}`, false},
		{"warmup in a non-text block", `{"messages":[{"role":"user","content":[{"type":"document","text":"Warmup"}]}]}`, false},
		{"user asks for a title in their words", `{"messages":[{"role":"user","content":"Please write a 5-10 word title for my blog post about Go"}]}`, false},
		{"title prompt only in system", `{"system":` + jsonString(ccTitlePrompt) + `,"messages":[{"role":"user","content":"hi"}]}`, false},
		{"topic sentence without the JSON fields", `{"system":"Analyze if this message indicates a new conversation topic and reply in prose.","messages":[{"role":"user","content":"hi"}]}`, false},
		{"topic prompt pasted by a user", `{"messages":[{"role":"user","content":` + jsonString(ccTopicPrompt) + `}]}`, false},
		{"messages is an object", `{"messages":{"role":"user","content":"Warmup"}}`, false},
		{"content is an object", `{"messages":[{"role":"user","content":{"type":"text","text":"Warmup"}}]}`, false},
		{"not JSON", `Warmup`, false},
		{"empty", ``, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := IsWarmup([]byte(c.body)); got != c.want {
				t.Errorf("IsWarmup(%s) = %v, want %v", c.body, got, c.want)
			}
		})
	}
}

func jsonString(s string) string { return string(mustJSON(s)) }

// warmupServer answers every request with WriteWarmupReply, the way the
// relay will: model and stream taken from the request body.
func warmupServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		res := gjson.GetManyBytes(body, "model", "stream")
		WriteWarmupReply(w, res[0].String(), res[1].Bool())
	}))
	t.Cleanup(srv.Close)
	return srv
}

func warmupClient(srv *httptest.Server) anthropic.Client {
	return anthropic.NewClient(
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(srv.URL),
		option.WithAPIKey("cr_test"),
		option.WithMaxRetries(0),
	)
}

func warmupParams(model string) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model:     anthropic.Model(model),
		MaxTokens: 32,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Warmup"))},
	}
}

// checkWarmupMessage asserts the answer the SDK decoded is the local warmup
// reply for model.
func checkWarmupMessage(t *testing.T, msg *anthropic.Message, model string) {
	t.Helper()
	if !strings.HasPrefix(msg.ID, "msg_crs_warmup_") || len(msg.ID) <= len("msg_crs_warmup_") {
		t.Errorf("id = %q", msg.ID)
	}
	if string(msg.Model) != model || string(msg.Role) != "assistant" || string(msg.Type) != "message" {
		t.Errorf("model, role, type = %q, %q, %q", msg.Model, msg.Role, msg.Type)
	}
	if len(msg.Content) != 1 || msg.Content[0].Type != "text" || msg.Content[0].Text != "New Conversation" {
		t.Errorf("content = %+v", msg.Content)
	}
	if msg.StopReason != anthropic.StopReasonEndTurn {
		t.Errorf("stop_reason = %q", msg.StopReason)
	}
	if msg.Usage.InputTokens != 10 || msg.Usage.OutputTokens != 2 {
		t.Errorf("usage = %d in, %d out; want 10, 2", msg.Usage.InputTokens, msg.Usage.OutputTokens)
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestWriteWarmupReplyJSON(t *testing.T) {
	srv := warmupServer(t)
	client := warmupClient(srv)
	const model = `claude-haiku-4-5-"odd"`
	var resp *http.Response
	msg, err := client.Messages.New(testContext(t), warmupParams(model), option.WithResponseInto(&resp))
	if err != nil {
		t.Fatal(err)
	}
	checkWarmupMessage(t, msg, model)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	// Fields the SDK tolerates missing, but clients that check strictly do not.
	raw := []byte(msg.RawJSON())
	for _, path := range []string{"stop_sequence", "usage.cache_read_input_tokens", "usage.cache_creation_input_tokens"} {
		if !gjson.GetBytes(raw, path).Exists() {
			t.Errorf("%s missing from %s", path, raw)
		}
	}
	msg2, err := client.Messages.New(testContext(t), warmupParams(model))
	if err != nil {
		t.Fatal(err)
	}
	if msg2.ID == msg.ID {
		t.Errorf("two replies share id %q", msg.ID)
	}
}

func TestWriteWarmupReplyStreamSDK(t *testing.T) {
	srv := warmupServer(t)
	client := warmupClient(srv)
	const model = "claude-haiku-4-5-20251001"
	stream := client.Messages.NewStreaming(testContext(t), warmupParams(model))
	var acc anthropic.Message
	var types []string
	for stream.Next() {
		ev := stream.Current()
		types = append(types, ev.Type)
		if err := acc.Accumulate(ev); err != nil {
			t.Fatalf("accumulate %s: %v", ev.Type, err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	want := "message_start content_block_start content_block_delta content_block_stop message_delta message_stop"
	if got := strings.Join(types, " "); got != want {
		t.Errorf("events %s\nwant   %s", got, want)
	}
	checkWarmupMessage(t, &acc, model)
}

// TestWriteWarmupReplyStreamWire reads the stream as the relay's own tap
// does: every event named, its data typed the same, and usage 10/2 counted
// once.
func TestWriteWarmupReplyStreamWire(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteWarmupReply(rec, "claude-opus-4-5", true)
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if !rec.Flushed {
		t.Error("stream not flushed")
	}
	body := rec.Body.Bytes()
	rd := sse.NewReader(bytes.NewReader(body))
	var usage StreamUsage
	var names []string
	var raw []byte
	for {
		ev, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %v: %v", names, err)
		}
		raw = append(raw, ev.Raw...)
		names = append(names, ev.Name)
		if !gjson.ValidBytes(ev.Data) || gjson.GetBytes(ev.Data, "type").String() != ev.Name {
			t.Errorf("event %q data %s", ev.Name, ev.Data)
		}
		usage.Observe(ev)
	}
	if !bytes.Equal(raw, body) {
		t.Error("events do not add up to the body")
	}
	if got := strings.Join(names, " "); got != "message_start content_block_start content_block_delta content_block_stop message_delta message_stop" {
		t.Errorf("events %s", got)
	}
	if !usage.Stopped || usage.Model != "claude-opus-4-5" || usage.Tokens.Input != 10 || usage.Tokens.Output != 2 {
		t.Errorf("usage tap: %+v", usage)
	}
}

func TestIsUserTurn(t *testing.T) {
	cases := []struct {
		name string
		body string
		want bool
	}{
		{"string content", `{"messages":[{"role":"user","content":"hi"}]}`, true},
		{"empty string content", `{"messages":[{"role":"user","content":""}]}`, true},
		{"text block", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`, true},
		{"image block", `{"messages":[{"role":"user","content":[{"type":"image","source":{}}]}]}`, true},
		{"tool result plus text", `{"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t1"}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1"},{"type":"text","text":"and also this"}]}]}`, true},
		{"Claude Code's trailing system entry", `{"messages":[{"role":"user","content":[{"type":"text","text":"say pong"}]},{"role":"system","content":[{"type":"text","text":"env"}]}]}`, true},

		{"tool results only", `{"messages":[{"role":"user","content":"go"},{"role":"assistant","content":[{"type":"tool_use","id":"t1"},{"type":"tool_use","id":"t2"}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1"},{"type":"tool_result","tool_use_id":"t2"}]}]}`, false},
		{"tool result then system entry", `{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1"}]},{"role":"system","content":"env"}]}`, false},
		{"assistant prefill last", `{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"Sure,"}]}`, false},
		{"empty block list", `{"messages":[{"role":"user","content":[]}]}`, false},
		{"no content", `{"messages":[{"role":"user"}]}`, false},
		{"content is an object", `{"messages":[{"role":"user","content":{"type":"text","text":"hi"}}]}`, false},
		{"no messages", `{"model":"x"}`, false},
		{"only system entries", `{"messages":[{"role":"system","content":"env"}]}`, false},
		{"messages is an object", `{"messages":{"role":"user","content":"hi"}}`, false},
		{"not JSON", `nope`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := IsUserTurn([]byte(c.body)); got != c.want {
				t.Errorf("IsUserTurn(%s) = %v, want %v", c.body, got, c.want)
			}
		})
	}
}

// FuzzIsWarmup checks the body classifiers never panic on outside input.
func FuzzIsWarmup(f *testing.F) {
	f.Add([]byte(`{"messages":[{"role":"user","content":"Warmup"}]}`))
	f.Add([]byte(`{"system":` + jsonString(ccTopicPrompt) + `}`))
	f.Add([]byte(`{"messages":[{"role":"user","content":[{"type":"tool_result"}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		IsWarmup(body)
		IsUserTurn(body)
	})
}
