package fakeupstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/sse"
	"github.com/tidwall/gjson"
)

const geminiPong = `{"contents":[{"role":"user","parts":[{"text":"say pong"}]}]}`

// geminiDo sends one request and returns the response (body already
// read) and its body. hdr values are set as given.
func geminiDo(t *testing.T, ctx context.Context, method, url string, hdr map[string]string, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, b
}

// geminiNative posts body to the native API path with an API key header.
func geminiNative(t *testing.T, g *Gemini, path, key, body string) (*http.Response, []byte) {
	t.Helper()
	hdr := map[string]string{}
	if key != "" {
		hdr["x-goog-api-key"] = key
	}
	return geminiDo(t, testCtx(t), http.MethodPost, g.URL()+path, hdr, body)
}

// googleErrorOf decodes a Google error body and checks its code matches the
// HTTP status.
func googleErrorOf(t *testing.T, status int, body []byte) googleErrorStatus {
	t.Helper()
	var e struct {
		Error struct {
			Code    int              `json:"code"`
			Message string           `json:"message"`
			Status  string           `json:"status"`
			Details []map[string]any `json:"details"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %s: %v", body, err)
	}
	if e.Error.Code != status || e.Error.Message == "" {
		t.Errorf("error body %s: code %d for HTTP %d, or no message", body, e.Error.Code, status)
	}
	out := googleErrorStatus{Code: e.Error.Code, Message: e.Error.Message, Status: e.Error.Status}
	for _, d := range e.Error.Details {
		out.Details = append(out.Details, d)
	}
	return out
}

// geminiDetail finds the error detail of the given proto type.
func geminiDetail(e googleErrorStatus, typ string) map[string]any {
	for _, d := range e.Details {
		if m, _ := d.(map[string]any); m["@type"] == "type.googleapis.com/google.rpc."+typ {
			return m
		}
	}
	return nil
}

// geminiReplyText joins the non-thought text parts of a (native) response.
func geminiReplyText(r gjson.Result) string {
	var sb strings.Builder
	r.Get("candidates.0.content.parts").ForEach(func(_, p gjson.Result) bool {
		if !p.Get("thought").Bool() {
			sb.WriteString(p.Get("text").Str)
		}
		return true
	})
	return sb.String()
}

// checkGeminiUsage compares usageMetadata with u, field by field.
func checkGeminiUsage(t *testing.T, um gjson.Result, u GeminiUsage) {
	t.Helper()
	if um.Get("promptTokenCount").Int() != u.Prompt || um.Get("cachedContentTokenCount").Int() != u.Cached ||
		um.Get("candidatesTokenCount").Int() != u.Candidates || um.Get("thoughtsTokenCount").Int() != u.Thoughts ||
		um.Get("totalTokenCount").Int() != u.Total() {
		t.Errorf("usageMetadata %s, want %+v (total %d)", um.Raw, u, u.Total())
	}
}

// geminiReadSSE reads every event of a stream; err is what ended it (nil for a
// clean end).
func geminiReadSSE(r io.Reader) ([]sse.Event, error) {
	rd := sse.NewReader(r)
	var out []sse.Event
	for {
		ev, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

// geminiStreamSSE posts a streaming request and reads its events.
func geminiStreamSSE(t *testing.T, ctx context.Context, url string, hdr map[string]string, body string) (*http.Response, []sse.Event, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	evs, err := geminiReadSSE(resp.Body)
	return resp, evs, err
}

func TestGeminiGenerateContent(t *testing.T) {
	g := StartGemini(t, GeminiOptions{APIKeys: []string{"gk"}, Name: "alpha"})
	for _, version := range []string{"/v1beta", "/v1"} {
		resp, body := geminiNative(t, g, version+"/models/gemini-2.5-flash:generateContent", "gk", geminiPong)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", version, resp.StatusCode, body)
		}
		r := gjson.ParseBytes(body)
		if geminiReplyText(r) != ReplyText(5) || r.Get("candidates.0.content.role").Str != "model" ||
			r.Get("candidates.0.finishReason").Str != "STOP" || r.Get("modelVersion").Str != "gemini-2.5-flash" {
			t.Errorf("%s: reply %s", version, body)
		}
		if !strings.HasPrefix(r.Get("responseId").Str, "alpha_") || resp.Header.Get("x-fake-upstream") != "alpha" {
			t.Errorf("%s: responseId %q, x-fake-upstream %q", version, r.Get("responseId").Str, resp.Header.Get("x-fake-upstream"))
		}
		checkGeminiUsage(t, r.Get("usageMetadata"), DefaultGeminiUsage())
	}
	if g.MessageCount() != 2 || len(g.Requests()) != 2 {
		t.Errorf("count %d, recorded %d; want 2, 2", g.MessageCount(), len(g.Requests()))
	}
	if rq := g.Requests()[0]; rq.Path != "/v1beta/models/gemini-2.5-flash:generateContent" || rq.Header.Get("x-goog-api-key") != "gk" || string(rq.Body) != geminiPong {
		t.Errorf("recorded %+v", rq)
	}
}

func TestGeminiStreamSSE(t *testing.T) {
	u := GeminiUsage{Prompt: 100, Cached: 40, Candidates: 9, Thoughts: 5}
	g := StartGemini(t, GeminiOptions{Chunks: 3, Usage: u})
	resp, evs, err := geminiStreamSSE(t, testCtx(t), g.URL()+"/v1beta/models/gemini-3.8-flash:streamGenerateContent?alt=sse",
		map[string]string{"x-goog-api-key": "k"}, geminiPong)
	if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, type %q, err %v", resp.StatusCode, resp.Header.Get("Content-Type"), err)
	}
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	var text string
	for i, ev := range evs {
		if !bytes.HasSuffix(ev.Raw, []byte("\r\n\r\n")) || ev.Name != "" {
			t.Errorf("event %d framed %q, want data-only with CRLF", i, ev.Raw)
		}
		c := gjson.ParseBytes(ev.Data)
		text += geminiReplyText(c)
		um := c.Get("usageMetadata")
		if i < len(evs)-1 {
			// Early chunks carry only the prompt's counts, never output.
			if um.Get("promptTokenCount").Int() != 100 || um.Get("candidatesTokenCount").Exists() || c.Get("candidates.0.finishReason").Exists() {
				t.Errorf("chunk %d: %s", i, ev.Data)
			}
			continue
		}
		if c.Get("candidates.0.finishReason").Str != "STOP" {
			t.Errorf("last chunk lacks STOP: %s", ev.Data)
		}
		checkGeminiUsage(t, um, u)
	}
	if text != ReplyText(3) {
		t.Errorf("text %q, want %q", text, ReplyText(3))
	}
}

// TestGeminiStreamWithoutAltIsJSONArray: a relay that drops ?alt=sse gets
// what the real API sends then, a JSON array, not SSE.
func TestGeminiStreamWithoutAltIsJSONArray(t *testing.T) {
	g := StartGemini(t, GeminiOptions{Chunks: 2})
	resp, body := geminiNative(t, g, "/v1beta/models/gemini-2.5-pro:streamGenerateContent", "k", geminiPong)
	var chunks []json.RawMessage
	if err := json.Unmarshal(body, &chunks); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s: %v", resp.StatusCode, body, err)
	}
	if len(chunks) != 2 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("%d chunks, type %q", len(chunks), resp.Header.Get("Content-Type"))
	}
	checkGeminiUsage(t, gjson.GetBytes(chunks[1], "usageMetadata"), DefaultGeminiUsage())
}

func TestGeminiAPIKeyAuth(t *testing.T) {
	g := StartGemini(t, GeminiOptions{APIKeys: []string{"good"}})
	const gen = "/v1beta/models/gemini-2.5-flash:generateContent"
	for _, tc := range []struct {
		name, method, path string
		hdr                map[string]string
		status             int
		googleStatus       string
		reason             string
	}{
		{"header key", "POST", gen, map[string]string{"x-goog-api-key": "good"}, 200, "", ""},
		{"query key", "POST", gen + "?key=good", nil, 200, "", ""},
		{"header wins over query", "POST", gen + "?key=good", map[string]string{"x-goog-api-key": "bad"}, 400, "INVALID_ARGUMENT", "API_KEY_INVALID"},
		{"no key", "POST", gen, nil, 403, "PERMISSION_DENIED", ""},
		{"bearer is not a key", "POST", gen, map[string]string{"Authorization": "Bearer good"}, 403, "PERMISSION_DENIED", ""},
		{"wrong key", "POST", gen, map[string]string{"x-goog-api-key": "bad"}, 400, "INVALID_ARGUMENT", "API_KEY_INVALID"},
		{"models without key", "GET", "/v1beta/models", nil, 403, "PERMISSION_DENIED", ""},
		{"models with key", "GET", "/v1beta/models?key=good", nil, 200, "", ""},
	} {
		body := ""
		if tc.method == "POST" {
			body = geminiPong
		}
		resp, b := geminiDo(t, testCtx(t), tc.method, g.URL()+tc.path, tc.hdr, body)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, resp.StatusCode, b, tc.status)
			continue
		}
		if tc.status == 200 {
			continue
		}
		e := googleErrorOf(t, tc.status, b)
		if e.Status != tc.googleStatus {
			t.Errorf("%s: status %q, want %q", tc.name, e.Status, tc.googleStatus)
		}
		if tc.reason != "" && geminiDetail(e, "ErrorInfo")["reason"] != tc.reason {
			t.Errorf("%s: details %v, want reason %s", tc.name, e.Details, tc.reason)
		}
	}
}

func TestGeminiRequestValidation(t *testing.T) {
	g := StartGemini(t, GeminiOptions{})
	const gen = "/v1beta/models/gemini-2.5-flash:generateContent"
	for _, tc := range []struct {
		name, body string
		status     int
		msg        string
	}{
		{"not json", `{"contents":`, 400, "Invalid JSON payload"},
		{"not an object", `[]`, 400, "Invalid JSON payload"},
		{"no contents", `{"generationConfig":{}}`, 400, "contents is not specified"},
		{"empty contents", `{"contents":[]}`, 400, "contents is not specified"},
		{"contents not a list", `{"contents":{"parts":[]}}`, 400, "Invalid value at 'contents'"},
		{"code assist session_id leaked", `{"contents":[{"parts":[{"text":"x"}]}],"session_id":"s"}`, 400, `Unknown name "session_id"`},
		{"relay bookkeeping leaked", `{"contents":[{"parts":[{"text":"x"}]}],"stream":true}`, 400, `Unknown name "stream"`},
		{"snake case accepted", `{"contents":[{"parts":[{"text":"x"}]}],"system_instruction":{"parts":[{"text":"be brief"}]},"generation_config":{"temperature":1}}`, 200, ""},
		{"unknown knobs inside known fields accepted", `{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"thinkingConfig":{"thinkingLevel":"HIGH"},"newKnob":1},"tools":[{"functionDeclarations":[]}]}`, 200, ""},
	} {
		resp, b := geminiNative(t, g, gen, "k", tc.body)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, resp.StatusCode, b, tc.status)
			continue
		}
		if tc.status != 200 {
			if e := googleErrorOf(t, tc.status, b); e.Status != "INVALID_ARGUMENT" || !strings.Contains(e.Message, tc.msg) {
				t.Errorf("%s: %+v, want INVALID_ARGUMENT %q", tc.name, e, tc.msg)
			}
		}
	}

	big := `{"contents":[{"parts":[{"text":"` + strings.Repeat("x", geminiMaxRequestBody) + `"}]}]}`
	resp, b := geminiNative(t, g, gen, "k", big)
	if e := googleErrorOf(t, resp.StatusCode, b); resp.StatusCode != 400 || !strings.Contains(e.Message, "payload size exceeds") {
		t.Errorf("oversized body: %d %+v", resp.StatusCode, e)
	}
}

func TestGeminiCountTokensModelsAndUnknownPaths(t *testing.T) {
	g := StartGemini(t, GeminiOptions{Usage: GeminiUsage{Prompt: 33, Candidates: 1}})
	ctx := testCtx(t)
	key := map[string]string{"x-goog-api-key": "k"}
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		check                    func(gjson.Result) bool
	}{
		{"count contents", "POST", "/v1beta/models/gemini-2.5-pro:countTokens", geminiPong, 200,
			func(r gjson.Result) bool { return r.Get("totalTokens").Int() == 33 }},
		{"count generateContentRequest", "POST", "/v1/models/gemini-2.5-pro:countTokens",
			`{"generateContentRequest":{"model":"models/gemini-2.5-pro","contents":[{"parts":[{"text":"x"}]}]}}`, 200,
			func(r gjson.Result) bool { return r.Get("totalTokens").Int() == 33 }},
		{"count without contents", "POST", "/v1beta/models/gemini-2.5-pro:countTokens", `{}`, 400, nil},
		{"count request without model", "POST", "/v1beta/models/gemini-2.5-pro:countTokens",
			`{"generateContentRequest":{"contents":[{"parts":[{"text":"x"}]}]}}`, 400, nil},
		{"list models", "GET", "/v1beta/models", "", 200,
			func(r gjson.Result) bool {
				return r.Get(`models.#(name=="models/gemini-2.5-pro").supportedGenerationMethods`).IsArray()
			}},
		{"get model", "GET", "/v1/models/gemini-3-flash-preview", "", 200,
			func(r gjson.Result) bool { return r.Get("name").Str == "models/gemini-3-flash-preview" }},
		{"get unknown model", "GET", "/v1beta/models/gemini-0", "", 404, nil},
		{"unknown action", "POST", "/v1beta/models/gemini-2.5-pro:embedEverything", geminiPong, 404, nil},
		{"unknown path", "GET", "/v2/models", "", 404, nil},
		{"double slash code assist path", "POST", "//v1internal:loadCodeAssist", `{}`, 404, nil},
	} {
		resp, b := geminiDo(t, ctx, tc.method, g.URL()+tc.path, key, tc.body)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, resp.StatusCode, b, tc.status)
			continue
		}
		if tc.check != nil && !tc.check(gjson.ParseBytes(b)) {
			t.Errorf("%s: %s", tc.name, b)
		}
		if tc.status != 200 {
			googleErrorOf(t, tc.status, b)
		}
	}
	if g.MessageCount() != 0 {
		t.Errorf("count tokens and models counted as generate requests: %d", g.MessageCount())
	}
}

// geminiRouterSchema is the schema Gemini CLI's model router sends, with the
// OpenAPI-style type names its SDK uses.
const geminiRouterSchema = `{"type":"OBJECT","properties":{"complexity_reasoning":{"type":"STRING","description":"Brief explanation for the score."},"complexity_score":{"type":"INTEGER","description":"Complexity score from 1-100."}},"required":["complexity_reasoning","complexity_score"]}`

// TestGeminiJSONModeFollowsSchema: the router call gets a JSON answer its
// schema check accepts, stream or not, under either schema field.
func TestGeminiJSONModeFollowsSchema(t *testing.T) {
	g := StartGemini(t, GeminiOptions{})
	check := func(name, text string) {
		t.Helper()
		r := gjson.Parse(text)
		score := r.Get("complexity_score")
		if !gjson.Valid(text) || r.Get("complexity_reasoning").Type != gjson.String ||
			score.Type != gjson.Number || score.Num != float64(int64(score.Num)) || score.Num < 1 || score.Num > 100 {
			t.Errorf("%s: answer %q does not fit the router schema", name, text)
		}
	}
	for _, field := range []string{"responseJsonSchema", "responseSchema"} {
		body := `{"contents":[{"role":"user","parts":[{"text":"say pong"}]}],"generationConfig":{"responseMimeType":"application/json","` + field + `":` + geminiRouterSchema + `}}`
		resp, b := geminiNative(t, g, "/v1beta/models/gemini-3.5-flash-lite:generateContent", "k", body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", field, resp.StatusCode, b)
		}
		check(field, geminiReplyText(gjson.ParseBytes(b)))

		_, evs, err := geminiStreamSSE(t, testCtx(t), g.URL()+"/v1beta/models/gemini-3.5-flash-lite:streamGenerateContent?alt=sse",
			map[string]string{"x-goog-api-key": "k"}, body)
		if err != nil || len(evs) != 1 {
			t.Fatalf("%s stream: %d events, %v", field, len(evs), err)
		}
		check(field+" stream", geminiReplyText(gjson.ParseBytes(evs[0].Data)))
		checkGeminiUsage(t, gjson.GetBytes(evs[0].Data, "usageMetadata"), DefaultGeminiUsage())
	}
}

func TestGeminiThoughtsWhenAsked(t *testing.T) {
	g := StartGemini(t, GeminiOptions{Chunks: 2})
	body := `{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"thinkingConfig":{"includeThoughts":true,"thinkingLevel":"HIGH"}}}`
	_, b := geminiNative(t, g, "/v1beta/models/gemini-2.5-pro:generateContent", "k", body)
	parts := gjson.GetBytes(b, "candidates.0.content.parts").Array()
	if len(parts) != 2 || !parts[0].Get("thought").Bool() || parts[1].Get("thought").Exists() || parts[1].Get("text").Str != ReplyText(2) {
		t.Errorf("parts %v", parts)
	}
	_, evs, err := geminiStreamSSE(t, testCtx(t), g.URL()+"/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
		map[string]string{"x-goog-api-key": "k"}, body)
	if err != nil || len(evs) != 3 || !gjson.GetBytes(evs[0].Data, "candidates.0.content.parts.0.thought").Bool() {
		t.Errorf("stream with thoughts: %d events, %v", len(evs), err)
	}
	// Without includeThoughts no thought part is sent.
	_, b = geminiNative(t, g, "/v1beta/models/gemini-2.5-pro:generateContent", "k", geminiPong)
	if n := len(gjson.GetBytes(b, "candidates.0.content.parts").Array()); n != 1 {
		t.Errorf("%d parts without includeThoughts", n)
	}
}

// geminiFaultRoute is one way to reach the generate code: native or Code
// Assist, for the fault table.
type geminiFaultRoute struct {
	name       string
	codeAssist bool
}

func (rt geminiFaultRoute) url(g *Gemini, stream bool) string {
	switch {
	case rt.codeAssist && stream:
		return g.URL() + "/v1internal:streamGenerateContent?alt=sse"
	case rt.codeAssist:
		return g.URL() + "/v1internal:generateContent"
	case stream:
		return g.URL() + "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
	}
	return g.URL() + "/v1beta/models/gemini-2.5-flash:generateContent"
}

func (rt geminiFaultRoute) hdr() map[string]string {
	if rt.codeAssist {
		return map[string]string{"Authorization": "Bearer any-token"}
	}
	return map[string]string{"x-goog-api-key": "k"}
}

func (rt geminiFaultRoute) body() string {
	if rt.codeAssist {
		return `{"model":"gemini-2.5-flash","project":"` + DefaultGeminiProject + `","user_prompt_id":"p1","request":` + geminiPong + `}`
	}
	return geminiPong
}

// unwrap returns the response inside the Code Assist envelope.
func (rt geminiFaultRoute) unwrap(b []byte) gjson.Result {
	if rt.codeAssist {
		return gjson.GetBytes(b, "response")
	}
	return gjson.ParseBytes(b)
}

var geminiFaultRoutes = []geminiFaultRoute{{"native", false}, {"code assist", true}}

func TestGeminiErrorFaults(t *testing.T) {
	for _, rt := range geminiFaultRoutes {
		g := StartGemini(t, GeminiOptions{})
		domain := "generativelanguage.googleapis.com"
		if rt.codeAssist {
			domain = "cloudcode-pa.googleapis.com"
		}
		for _, tc := range []struct {
			name         string
			fault        GeminiFault
			stream       bool
			status       int
			googleStatus string
			reason       string
			retryDelay   string
		}{
			{"429 with reason and delay", GeminiFault{Status: 429, Reason: "RATE_LIMIT_EXCEEDED", RetryDelay: 35 * time.Second}, false, 429, "RESOURCE_EXHAUSTED", "RATE_LIMIT_EXCEEDED", "35s"},
			{"429 quota exhausted", GeminiFault{Status: 429, Reason: "QUOTA_EXHAUSTED"}, false, 429, "RESOURCE_EXHAUSTED", "QUOTA_EXHAUSTED", ""},
			{"fractional delay", GeminiFault{Status: 429, RetryDelay: 1500 * time.Millisecond}, false, 429, "RESOURCE_EXHAUSTED", "", "1.5s"},
			{"503 overloaded", GeminiFault{Status: 503}, false, 503, "UNAVAILABLE", "", ""},
			{"500", GeminiFault{Status: 500}, false, 500, "INTERNAL", "", ""},
			{"504", GeminiFault{Status: 504}, false, 504, "DEADLINE_EXCEEDED", "", ""},
			{"401", GeminiFault{Status: 401}, false, 401, "UNAUTHENTICATED", "", ""},
			{"403", GeminiFault{Status: 403}, false, 403, "PERMISSION_DENIED", "", ""},
			{"404 model", GeminiFault{Status: 404}, false, 404, "NOT_FOUND", "", ""},
			{"429 on a stream", GeminiFault{Status: 429}, true, 429, "RESOURCE_EXHAUSTED", "", ""},
		} {
			g.Push(tc.fault)
			resp, b := geminiDo(t, testCtx(t), http.MethodPost, rt.url(g, tc.stream), rt.hdr(), rt.body())
			if resp.StatusCode != tc.status {
				t.Errorf("%s %s: %d %s", rt.name, tc.name, resp.StatusCode, b)
				continue
			}
			if rt.codeAssist && tc.stream {
				// cloudcode-pa wraps stream errors in an array.
				var arr []json.RawMessage
				if err := json.Unmarshal(b, &arr); err != nil || len(arr) != 1 {
					t.Errorf("%s %s: body %s is not a one-error array", rt.name, tc.name, b)
					continue
				}
				b = arr[0]
			}
			e := googleErrorOf(t, tc.status, b)
			if e.Status != tc.googleStatus {
				t.Errorf("%s %s: status %q, want %q", rt.name, tc.name, e.Status, tc.googleStatus)
			}
			info, retry := geminiDetail(e, "ErrorInfo"), geminiDetail(e, "RetryInfo")
			if tc.reason != "" && (info["reason"] != tc.reason || info["domain"] != domain) {
				t.Errorf("%s %s: ErrorInfo %v, want %s at %s", rt.name, tc.name, info, tc.reason, domain)
			}
			if tc.reason == "" && info != nil {
				t.Errorf("%s %s: unexpected ErrorInfo %v", rt.name, tc.name, info)
			}
			if (tc.retryDelay == "") != (retry == nil) || (retry != nil && retry["retryDelay"] != tc.retryDelay) {
				t.Errorf("%s %s: RetryInfo %v, want %q", rt.name, tc.name, retry, tc.retryDelay)
			}
		}
		if n := g.MessageCount(); n != 10 {
			t.Errorf("%s: %d generate requests counted, want 10", rt.name, n)
		}
	}
}

func TestGeminiBodyAndHeaderFaults(t *testing.T) {
	for _, rt := range geminiFaultRoutes {
		g := StartGemini(t, GeminiOptions{})
		// A verbatim error body is not wrapped, even on the Code Assist
		// stream route.
		g.Push(GeminiFault{Status: 429, Body: `{"error":"custom"}`, Header: http.Header{"Retry-After": {"7"}, "Content-Type": {"text/plain"}}})
		resp, b := geminiDo(t, testCtx(t), http.MethodPost, rt.url(g, true), rt.hdr(), rt.body())
		if resp.StatusCode != 429 || string(b) != `{"error":"custom"}` || resp.Header.Get("Retry-After") != "7" || resp.Header.Get("Content-Type") != "text/plain" {
			t.Errorf("%s error body: %d %q %v", rt.name, resp.StatusCode, b, resp.Header)
		}
		// Status 200 with a Body is the success reply, verbatim.
		golden := "data: {\"candidates\":[]}\r\n\r\n"
		g.Push(GeminiFault{Status: 200, Body: golden})
		resp, b = geminiDo(t, testCtx(t), http.MethodPost, rt.url(g, true), rt.hdr(), rt.body())
		if resp.StatusCode != 200 || string(b) != golden || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Errorf("%s golden body: %d %q %q", rt.name, resp.StatusCode, b, resp.Header.Get("Content-Type"))
		}
		// A header fault rides on a healthy reply too.
		g.Push(GeminiFault{Header: http.Header{"X-Extra": {"1"}}})
		resp, b = geminiDo(t, testCtx(t), http.MethodPost, rt.url(g, false), rt.hdr(), rt.body())
		if resp.StatusCode != 200 || resp.Header.Get("X-Extra") != "1" || geminiReplyText(rt.unwrap(b)) != ReplyText(5) {
			t.Errorf("%s header fault: %d %v %s", rt.name, resp.StatusCode, resp.Header, b)
		}
	}
}

func TestGeminiStreamFaults(t *testing.T) {
	for _, rt := range geminiFaultRoutes {
		g := StartGemini(t, GeminiOptions{Chunks: 4})
		ctx := testCtx(t)

		g.Push(GeminiFault{CutAfterEvents: 2})
		_, evs, err := geminiStreamSSE(t, ctx, rt.url(g, true), rt.hdr(), rt.body())
		if len(evs) != 2 || err == nil {
			t.Errorf("%s cut: %d events, err %v; want 2 and an error", rt.name, len(evs), err)
		}

		g.Push(GeminiFault{ErrorChunkAfter: 1})
		_, evs, err = geminiStreamSSE(t, ctx, rt.url(g, true), rt.hdr(), rt.body())
		if err != nil || len(evs) != 2 {
			t.Fatalf("%s error chunk: %d events, err %v; want 2, clean end", rt.name, len(evs), err)
		}
		if geminiReplyText(rt.unwrap(evs[0].Data)) != "p" {
			t.Errorf("%s error chunk: first event %s", rt.name, evs[0].Data)
		}
		if e := googleErrorOf(t, 503, evs[1].Data); e.Status != "UNAVAILABLE" {
			t.Errorf("%s error chunk: %s", rt.name, evs[1].Data)
		}

		g.Push(GeminiFault{ErrorChunkAfter: 3, ErrorChunkStatus: 500})
		_, evs, _ = geminiStreamSSE(t, ctx, rt.url(g, true), rt.hdr(), rt.body())
		if len(evs) != 4 || gjson.GetBytes(evs[3].Data, "error.status").Str != "INTERNAL" {
			t.Errorf("%s error chunk 500: %d events", rt.name, len(evs))
		}

		g.Push(GeminiFault{CutAfterEvents: 99})
		_, evs, err = geminiStreamSSE(t, ctx, rt.url(g, true), rt.hdr(), rt.body())
		if len(evs) != 4 || err != nil {
			t.Errorf("%s cut past the end: %d events, %v", rt.name, len(evs), err)
		}

		// A cut non-stream reply ends after half the body.
		g.Push(GeminiFault{CutAfterEvents: 1})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, rt.url(g, false), strings.NewReader(rt.body()))
		for k, v := range rt.hdr() {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil || gjson.ValidBytes(b) {
			t.Errorf("%s cut non-stream: read %d bytes, err %v", rt.name, len(b), err)
		}
	}
}

func TestGeminiDelayHangAndQueue(t *testing.T) {
	g := StartGemini(t, GeminiOptions{})
	rt := geminiFaultRoutes[0]

	g.Push(GeminiFault{FirstByteDelay: 150 * time.Millisecond})
	start := time.Now()
	if resp, _ := geminiDo(t, testCtx(t), http.MethodPost, rt.url(g, false), rt.hdr(), rt.body()); resp.StatusCode != 200 {
		t.Errorf("delayed: %d", resp.StatusCode)
	}
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Errorf("first byte after %v, want ≥150ms", took)
	}

	g.Push(GeminiFault{Hang: true})
	ctx, cancel := context.WithTimeout(testCtx(t), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, rt.url(g, false), strings.NewReader(rt.body()))
	req.Header.Set("x-goog-api-key", "k")
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hang: err %v, want deadline exceeded", err)
	}

	// Queue order, then the default, then healthy again.
	g.Push(GeminiFault{Status: 500}, GeminiFault{Status: 503})
	g.SetDefault(GeminiFault{Status: 429})
	var got []int
	for range 4 {
		resp, _ := geminiDo(t, testCtx(t), http.MethodPost, rt.url(g, false), rt.hdr(), rt.body())
		got = append(got, resp.StatusCode)
	}
	g.SetDefault(GeminiFault{})
	resp, _ := geminiDo(t, testCtx(t), http.MethodPost, rt.url(g, false), rt.hdr(), rt.body())
	got = append(got, resp.StatusCode)
	if want := []int{500, 503, 429, 429, 200}; !slices.Equal(got, want) {
		t.Errorf("statuses %v, want %v", got, want)
	}

	// A fault is spent on an invalid request without being applied.
	g.Push(GeminiFault{Status: 503})
	if resp, _ := geminiNative(t, g, "/v1beta/models/m:generateContent", "k", `{}`); resp.StatusCode != 400 {
		t.Errorf("invalid request under a fault: %d", resp.StatusCode)
	}
	if resp, _ := geminiDo(t, testCtx(t), http.MethodPost, rt.url(g, false), rt.hdr(), rt.body()); resp.StatusCode != 200 {
		t.Errorf("fault outlived the request that took it: %d", resp.StatusCode)
	}

	g.Reset()
	if g.MessageCount() != 0 || len(g.Requests()) != 0 {
		t.Errorf("after Reset: count %d, %d requests", g.MessageCount(), len(g.Requests()))
	}

	// Close releases a hang whose client never gives up.
	g.Push(GeminiFault{Hang: true})
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, rt.url(g, false), strings.NewReader(rt.body()))
		req.Header.Set("x-goog-api-key", "k")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	for g.MessageCount() < 1 {
		time.Sleep(5 * time.Millisecond)
	}
	g.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("hung request succeeded after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not release the hung request")
	}
}

// TestGeminiChunkDelayAndInFlight: chunks are paced by ChunkDelay and the
// in-flight high-water mark sees the stream.
func TestGeminiChunkDelayAndInFlight(t *testing.T) {
	g := StartGemini(t, GeminiOptions{Chunks: 3, ChunkDelay: 50 * time.Millisecond})
	rt := geminiFaultRoutes[0]
	start := time.Now()
	_, evs, err := geminiStreamSSE(t, testCtx(t), rt.url(g, true), rt.hdr(), rt.body())
	if err != nil || len(evs) != 3 || time.Since(start) < 100*time.Millisecond {
		t.Errorf("%d events in %v, err %v", len(evs), time.Since(start), err)
	}
	if g.MaxInFlight() != 1 {
		t.Errorf("max in flight %d", g.MaxInFlight())
	}
	g.ResetMaxInFlight()
	if g.MaxInFlight() != 0 {
		t.Errorf("after reset: %d", g.MaxInFlight())
	}
}

func TestGeminiBareHandlerHasNoURL(t *testing.T) {
	g := NewGemini(GeminiOptions{})
	defer g.Close()
	if g.URL() != "" {
		t.Errorf("URL = %q", g.URL())
	}
}
