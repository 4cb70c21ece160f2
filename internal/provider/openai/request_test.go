package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

const codexSession = "019a9776-0a34-7842-8627-112b63d66e90"

// codexCLIHeaders are the request headers of `codex exec` 0.169.0 with a
// custom provider and env_key = "RELAY_API_KEY" (clients.md).
func codexCLIHeaders() http.Header {
	h := http.Header{}
	h.Set("Authorization", "Bearer cr_test")
	h.Set("User-Agent", "codex_exec/0.169.0 (Debian 12.0.0; x86_64) dumb (codex_exec; 0.169.0)")
	h.Set("Originator", "codex_exec")
	h.Set("Session-Id", codexSession)
	h.Set("Thread-Id", codexSession)
	h.Set("X-Client-Request-Id", codexSession)
	h.Set("X-Codex-Window-Id", "019a9776-1111-7842-8627-112b63d66e90:0")
	h.Set("X-Codex-Beta-Features", "remote_compaction_v2")
	h.Set("X-Codex-Turn-Metadata", `{"installation_id":"i-1","session_id":"`+codexSession+`","thread_id":"`+codexSession+
		`","turn_id":"t-1","window_id":"w-1","request_kind":"turn","sandbox":"seccomp","sandbox_mode":"read-only","model":"gpt-6.1-sol"}`)
	h.Set("X-Openai-Internal-Codex-Responses-Lite", "true")
	h.Set("Accept", "text/event-stream")
	h.Set("Content-Type", "application/json")
	h.Set("Accept-Encoding", "gzip, deflate, br, zstd")
	return h
}

// codexCLIBody is the shape of Codex CLI 0.169's body for gpt-6.1-sol: no
// instructions, no tools array, store:false already.
var codexCLIBody = []byte(`{"model":"gpt-6.1-sol","input":[{"type":"message","role":"developer","content":[{"type":"input_text","text":"You are Codex."}]},` +
	`{"type":"additional_tools","role":"developer","tools":[{"type":"namespace","name":"functions","tools":[{"type":"custom","name":"exec"}]}]},` +
	`{"type":"message","role":"user","content":[{"type":"input_text","text":"say pong"}]}],"tool_choice":"auto","parallel_tool_calls":false,` +
	`"reasoning":{"effort":"low","context":"all_turns"},"store":false,"stream":true,"include":["reasoning.encrypted_content"],` +
	`"prompt_cache_key":"` + codexSession + `","text":{"verbosity":"low"},"client_metadata":{"turn_id":"t-1","thread_id":"` + codexSession + `"}}`)

// openaiGoHeaders are what github.com/openai/openai-go/v3 sends for
// client.Responses.NewStreaming with OPENAI_ORG_ID and OPENAI_PROJECT_ID
// set in its environment.
func openaiGoHeaders() http.Header {
	h := http.Header{}
	h.Set("Authorization", "Bearer cr_test")
	h.Set("User-Agent", "OpenAI/Go 3.98.0")
	h.Set("Accept", "text/event-stream")
	h.Set("Content-Type", "application/json")
	h.Set("X-Stainless-Lang", "go")
	h.Set("X-Stainless-Package-Version", "3.98.0")
	h.Set("X-Stainless-Os", "Linux")
	h.Set("X-Stainless-Arch", "x64")
	h.Set("X-Stainless-Runtime", "go")
	h.Set("X-Stainless-Runtime-Version", "go1.26.0")
	h.Set("X-Stainless-Retry-Count", "0")
	h.Set("Openai-Organization", "org-client-own")
	h.Set("Openai-Project", "proj_client_own")
	h.Set("Accept-Encoding", "gzip")
	return h
}

var sdkBody = []byte(`{"input":"say pong","model":"gpt-5.4","store":true,"stream":true}`)

// addHostile adds what a reverse proxy in front of crs and a browser-ish
// client add: none of it may reach OpenAI.
func addHostile(h http.Header) http.Header {
	h = h.Clone()
	for k, v := range map[string]string{
		"X-Api-Key":                "cr_test",
		"Cookie":                   "session=cr_secret_cookie",
		"X-Forwarded-For":          "203.0.113.7",
		"X-Forwarded-Host":         "relay.example",
		"X-Forwarded-Proto":        "https",
		"Forwarded":                "for=203.0.113.7",
		"X-Real-Ip":                "203.0.113.7",
		"True-Client-Ip":           "203.0.113.7",
		"Cf-Connecting-Ip":         "203.0.113.7",
		"Cf-Ray":                   "8a1b2c3d4e5f-FRA",
		"Cdn-Loop":                 "cloudflare",
		"Via":                      "1.1 proxy",
		"Connection":               "keep-alive, X-Secret",
		"Keep-Alive":               "timeout=5",
		"Proxy-Authorization":      "Basic Y3I6dGVzdA==",
		"X-Secret":                 "hop",
		"Upgrade":                  "websocket",
		"Sec-Websocket-Key":        "dGhlIHNhbXBsZSBub25jZQ==",
		"Chatgpt-Account-Id":       "client-chosen-account",
		"Origin":                   "https://app.example",
		"Referer":                  "https://app.example/chat",
		"X-Openai-Client-User-Ip":  "203.0.113.7",
		"Openai-Sentinel-Token":    "client-secret",
		"X-Stainless-Poll-Helper":  "true",
		"X-Codex-Reserved-Example": "kept: every x-codex-* passes",
	} {
		h.Set(k, v)
	}
	return h
}

// upstreamSees sends req to a real server on 127.0.0.1 and returns the
// request and body as that server received them.
func upstreamSees(t *testing.T, build func(base string) (*http.Request, error)) (*http.Request, []byte) {
	t.Helper()
	type seen struct {
		r    *http.Request
		body []byte
	}
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r, b}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	req, err := build(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	s := <-got
	return s.r, s.body
}

// checkHeaders compares the headers the upstream saw with want, exactly:
// nothing missing, nothing more (Content-Length aside, which Go's client
// adds), and no relay key or client address anywhere.
func checkHeaders(t *testing.T, got http.Header, want map[string]string) {
	t.Helper()
	for name, w := range want {
		if g := strings.Join(got.Values(name), ", "); g != w {
			t.Errorf("%s = %q, want %q", name, g, w)
		}
	}
	for name, vals := range got {
		if _, ok := want[name]; !ok && name != "Content-Length" {
			t.Errorf("unexpected header upstream: %s: %q", name, vals)
		}
		for _, v := range vals {
			if strings.Contains(v, "cr_") || strings.Contains(v, "203.0.113.7") || strings.Contains(v, "client-") {
				t.Errorf("client secret, address or choice leaked upstream in %s: %q", name, v)
			}
		}
	}
}

func TestCodexRequestUpstreamHeaders(t *testing.T) {
	const token = "chatgpt-access-token"
	const account = "d1f0c2a4-0000-4000-8000-acc000000001"
	turnMeta := codexCLIHeaders().Get("X-Codex-Turn-Metadata")
	codexWant := map[string]string{
		"Authorization":                          "Bearer " + token,
		"Chatgpt-Account-Id":                     account,
		"User-Agent":                             "codex_exec/0.169.0 (Debian 12.0.0; x86_64) dumb (codex_exec; 0.169.0)",
		"Originator":                             "codex_exec",
		"Session-Id":                             codexSession,
		"Thread-Id":                              codexSession,
		"X-Client-Request-Id":                    codexSession,
		"X-Codex-Window-Id":                      "019a9776-1111-7842-8627-112b63d66e90:0",
		"X-Codex-Beta-Features":                  "remote_compaction_v2",
		"X-Codex-Turn-Metadata":                  turnMeta,
		"X-Codex-Reserved-Example":               "kept: every x-codex-* passes",
		"X-Openai-Internal-Codex-Responses-Lite": "true",
		"Accept":                                 "text/event-stream",
		"Accept-Encoding":                        "identity",
		"Content-Type":                           "application/json",
	}
	sdkWant := map[string]string{
		"Authorization":            "Bearer " + token,
		"Chatgpt-Account-Id":       account,
		"User-Agent":               "OpenAI/Go 3.98.0",
		"Originator":               DefaultOriginator,
		"X-Codex-Reserved-Example": "kept: every x-codex-* passes",
		"Accept":                   "text/event-stream",
		"Accept-Encoding":          "identity",
		"Content-Type":             "application/json",
	}
	olderCodex := http.Header{
		"User-Agent":      {"codex_cli_rs/0.40.0 (Mac OS 15.0.0; arm64) iTerm.app/3.5.0"},
		"Originator":      {"codex_cli_rs"},
		"Version":         {"0.40.0"},
		"Openai-Beta":     {"responses=experimental"},
		"Session_id":      {codexSession},
		"Conversation_id": {codexSession},
		"Authorization":   {"Bearer cr_test"},
	}
	olderWant := map[string]string{
		"Authorization":      "Bearer " + token,
		"Chatgpt-Account-Id": account,
		"User-Agent":         "codex_cli_rs/0.40.0 (Mac OS 15.0.0; arm64) iTerm.app/3.5.0",
		"Originator":         "codex_cli_rs",
		"Version":            "0.40.0",
		"Openai-Beta":        "responses=experimental",
		"Session_id":         codexSession,
		"Conversation_id":    codexSession,
		"Accept-Encoding":    "identity",
		"Content-Type":       "application/json",
	}
	bareWant := map[string]string{
		"Authorization":      "Bearer " + token,
		"Chatgpt-Account-Id": account,
		"User-Agent":         DefaultCodexUserAgent,
		"Originator":         DefaultOriginator,
		"Accept-Encoding":    "identity",
		"Content-Type":       "application/json",
	}
	tests := []struct {
		name     string
		in       http.Header
		path     string
		body     []byte
		wantPath string
		want     map[string]string
		wantBody []byte
	}{
		{"codex cli 0.169", addHostile(codexCLIHeaders()), "/responses", codexCLIBody,
			"/backend-api/codex/responses", codexWant, codexCLIBody},
		{"codex cli compact", addHostile(codexCLIHeaders()), "/responses/compact", codexCLIBody,
			"/backend-api/codex/responses/compact", codexWant, codexCLIBody},
		{"openai-go sdk via /v1", addHostile(openaiGoHeaders()), "/v1/responses", sdkBody,
			"/backend-api/codex/responses", sdkWant, bytes.Replace(sdkBody, []byte(`"store":true`), []byte(`"store":false`), 1)},
		{"older codex: underscore headers, version, openai-beta", olderCodex, "/responses", []byte(`{"model":"gpt-5-codex","input":[]}`),
			"/backend-api/codex/responses", olderWant, []byte(`{"model":"gpt-5-codex","input":[],"store":false}`)},
		{"bare client", http.Header{}, "responses", []byte(`{}`), "/backend-api/codex/responses", bareWant, []byte(`{"store":false}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in.Clone()
			sent := bytes.Clone(tt.body)
			r, gotBody := upstreamSees(t, func(base string) (*http.Request, error) {
				return CodexRequest(context.Background(), in, base+"/backend-api/codex/", tt.path, "", token, account, sent)
			})
			if r.Method != http.MethodPost || r.URL.Path != tt.wantPath || r.URL.RawQuery != "" {
				t.Errorf("%s %s, want POST %s", r.Method, r.URL, tt.wantPath)
			}
			if !bytes.Equal(gotBody, tt.wantBody) || r.ContentLength != int64(len(tt.wantBody)) {
				t.Errorf("body upstream = %s (content-length %d)\nwant %s", gotBody, r.ContentLength, tt.wantBody)
			}
			if !bytes.Equal(sent, tt.body) {
				t.Errorf("CodexRequest modified the caller's body")
			}
			checkHeaders(t, r.Header, tt.want)
			if !reflect.DeepEqual(in, tt.in) {
				t.Errorf("CodexRequest changed the inbound headers")
			}
		})
	}
}

func TestAPIKeyRequestUpstreamHeaders(t *testing.T) {
	const key = "sk-proj-account-key"
	turnMeta := codexCLIHeaders().Get("X-Codex-Turn-Metadata")
	codexWant := map[string]string{
		"Authorization":                          "Bearer " + key,
		"User-Agent":                             "codex_exec/0.169.0 (Debian 12.0.0; x86_64) dumb (codex_exec; 0.169.0)",
		"Originator":                             "codex_exec",
		"Session-Id":                             codexSession,
		"Thread-Id":                              codexSession,
		"X-Client-Request-Id":                    codexSession,
		"X-Codex-Window-Id":                      "019a9776-1111-7842-8627-112b63d66e90:0",
		"X-Codex-Beta-Features":                  "remote_compaction_v2",
		"X-Codex-Turn-Metadata":                  turnMeta,
		"X-Codex-Reserved-Example":               "kept: every x-codex-* passes",
		"X-Openai-Internal-Codex-Responses-Lite": "true",
		"Accept":                                 "text/event-stream",
		"Accept-Encoding":                        "identity",
		"Content-Type":                           "application/json",
	}
	sdkWant := map[string]string{
		"Authorization":               "Bearer " + key,
		"User-Agent":                  "OpenAI/Go 3.98.0",
		"Accept":                      "text/event-stream",
		"Content-Type":                "application/json",
		"X-Stainless-Lang":            "go",
		"X-Stainless-Package-Version": "3.98.0",
		"X-Stainless-Os":              "Linux",
		"X-Stainless-Arch":            "x64",
		"X-Stainless-Runtime":         "go",
		"X-Stainless-Runtime-Version": "go1.26.0",
		"X-Stainless-Retry-Count":     "0",
		"X-Codex-Reserved-Example":    "kept: every x-codex-* passes",
		"Accept-Encoding":             "identity",
	}
	tests := []struct {
		name  string
		in    http.Header
		path  string
		query string
		body  []byte
		want  map[string]string
	}{
		{"codex cli 0.169", addHostile(codexCLIHeaders()), "/responses", "", codexCLIBody, codexWant},
		{"openai-go sdk", addHostile(openaiGoHeaders()), "/v1/responses", "", sdkBody, sdkWant},
		{"query kept", addHostile(openaiGoHeaders()), "/v1/responses", "include=usage&x=1", sdkBody, sdkWant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in.Clone()
			r, gotBody := upstreamSees(t, func(base string) (*http.Request, error) {
				return APIKeyRequest(context.Background(), in, base+"/v1", tt.path, tt.query, key, tt.body)
			})
			if r.Method != http.MethodPost || r.URL.Path != "/v1/responses" || r.URL.RawQuery != tt.query {
				t.Errorf("%s %s, want POST /v1/responses?%s", r.Method, r.URL, tt.query)
			}
			// API-key accounts get the body exactly as sent, store:true included.
			if !bytes.Equal(gotBody, tt.body) || r.ContentLength != int64(len(tt.body)) {
				t.Errorf("body changed in flight: %s", gotBody)
			}
			checkHeaders(t, r.Header, tt.want)
			if !reflect.DeepEqual(in, tt.in) {
				t.Errorf("APIKeyRequest changed the inbound headers")
			}
		})
	}
}

func TestRequestKeepsClientHeaderSlicesApart(t *testing.T) {
	for name, build := range map[string]func(in http.Header) (*http.Request, error){
		"api key": func(in http.Header) (*http.Request, error) {
			return APIKeyRequest(context.Background(), in, "http://127.0.0.1:1/v1", "/responses", "", "k", []byte(`{}`))
		},
		"codex": func(in http.Header) (*http.Request, error) {
			return CodexRequest(context.Background(), in, "", "/responses", "", "t", "a", []byte(`{}`))
		},
	} {
		in := codexCLIHeaders()
		req, err := build(in)
		if err != nil {
			t.Fatal(err)
		}
		req.Header["Session-Id"][0] = "changed"
		if in.Get("Session-Id") != codexSession {
			t.Errorf("%s: upstream header shares its slice with the client's", name)
		}
	}
}

func TestCodexRequestDefaults(t *testing.T) {
	req, err := CodexRequest(context.Background(), http.Header{}, "", "/v1/responses", "a=1", "tok", "", []byte(`{"store":false}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := req.URL.String(); got != DefaultCodexBase+"/responses?a=1" {
		t.Errorf("url = %s", got)
	}
	if _, ok := req.Header["Chatgpt-Account-Id"]; ok {
		t.Errorf("empty account id sent: %q", req.Header.Values("Chatgpt-Account-Id"))
	}
	for _, bad := range []string{"relative/path", "http://[::1"} {
		if _, err := CodexRequest(context.Background(), http.Header{}, bad, "/responses", "", "t", "a", []byte(`{}`)); err == nil {
			t.Errorf("base %q accepted", bad)
		}
	}
	if _, err := CodexRequest(context.Background(), http.Header{}, "", "/responses", "", "t", "a", []byte(`["not","an","object"]`)); !errors.Is(err, ErrBodyNotObject) {
		t.Errorf("array body: err = %v, want ErrBodyNotObject", err)
	}
}

func TestUpstreamURL(t *testing.T) {
	tests := []struct {
		base, path, query string
		want              string
	}{
		// The documented rule: a leading /v1 of the path is dropped; the
		// base supplies the version, /v1 when it names none.
		{"https://api.openai.com/v1", "/v1/responses", "", "https://api.openai.com/v1/responses"},
		{"https://api.openai.com/v1", "/responses", "", "https://api.openai.com/v1/responses"},
		{"https://api.openai.com/v1/", "/responses/compact", "", "https://api.openai.com/v1/responses/compact"},
		{"https://api.openai.com", "/responses", "", "https://api.openai.com/v1/responses"},
		{"https://api.openai.com/", "/v1/responses", "", "https://api.openai.com/v1/responses"},
		{"https://api.openai.com", "/v1/models", "", "https://api.openai.com/v1/models"},
		{"https://api.openai.com", "/v1", "", "https://api.openai.com/v1"},
		{"https://openrouter.ai/api/v1", "/v1/responses", "", "https://openrouter.ai/api/v1/responses"},
		{"https://ark.example/api/v3", "/v1/responses", "", "https://ark.example/api/v3/responses"},
		{"https://gen.example/v1beta/openai", "/responses", "", "https://gen.example/v1beta/openai/responses"},
		{"https://gateway.example/v1/acct/gw/openai", "/v1/responses", "", "https://gateway.example/v1/acct/gw/openai/responses"},
		{"https://proxy.example/openai", "/responses", "", "https://proxy.example/openai/v1/responses"},
		// Not versions: "v" alone, "version", "v1.1", uppercase.
		{"https://x.example/v", "/responses", "", "https://x.example/v/v1/responses"},
		{"https://x.example/version", "/responses", "", "https://x.example/version/v1/responses"},
		{"https://x.example/v1.1", "/responses", "", "https://x.example/v1.1/v1/responses"},
		{"http://127.0.0.1:8080", "responses", "", "http://127.0.0.1:8080/v1/responses"},
		// "/v1x" and "/v10" are not a leading /v1 segment.
		{"https://api.openai.com/v1", "/v10/responses", "", "https://api.openai.com/v1/v10/responses"},
		// Queries: the client's is kept and joins the base's.
		{"https://api.openai.com/v1", "/responses", "a=1&b=2", "https://api.openai.com/v1/responses?a=1&b=2"},
		{"https://az.example/openai/v1?api-version=preview", "/responses", "x=1", "https://az.example/openai/v1/responses?api-version=preview&x=1"},
		{"  https://api.openai.com/v1  ", "/responses", "", "https://api.openai.com/v1/responses"},
	}
	for _, tt := range tests {
		got, err := UpstreamURL(tt.base, tt.path, tt.query)
		if err != nil || got != tt.want {
			t.Errorf("UpstreamURL(%q, %q, %q) = %q, %v; want %q", tt.base, tt.path, tt.query, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "api.openai.com/v1", "/v1", "http://[::1", "://x"} {
		if got, err := UpstreamURL(bad, "/responses", ""); err == nil {
			t.Errorf("UpstreamURL(%q) = %q, want an error", bad, got)
		}
	}
}

func TestForceStoreFalse(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"true replaced in place", `{"model":"m","store":true,"stream":true}`, `{"model":"m","store":false,"stream":true}`},
		{"spaced true", `{ "store" : true , "a" : 1 }`, `{ "store" : false , "a" : 1 }`},
		{"null", `{"a":1,"store":null}`, `{"a":1,"store":false}`},
		{"string", `{"store":"false","a":1}`, `{"store":false,"a":1}`},
		{"object", `{"store":{"x":[1,2]},"a":1}`, `{"store":false,"a":1}`},
		{"absent", `{"a":1}`, `{"a":1,"store":false}`},
		{"absent, nested store untouched", `{"a":{"store":true}}`, `{"a":{"store":true},"store":false}`},
		{"absent, whitespace kept", " {\n  \"a\": 1\n}\n", " {\n  \"a\": 1\n,\"store\":false}\n"},
		{"empty object", `{}`, `{"store":false}`},
		{"empty object with space", `{ }`, `{ "store":false}`},
		{"nested empty object last", `{"a":{}}`, `{"a":{},"store":false}`},
		{"key inside a string", `{"a":"\"store\":true"}`, `{"a":"\"store\":true","store":false}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			got, err := ForceStoreFalse(in)
			if err != nil || string(got) != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
			if string(in) != tt.in {
				t.Fatalf("input modified: %q", in)
			}
			if !json.Valid(got) {
				t.Fatalf("output is not JSON: %q", got)
			}
		})
	}
	same := []byte(`{"store":false,"input":"x"}`)
	if got, err := ForceStoreFalse(same); err != nil || &got[0] != &same[0] || len(got) != len(same) {
		t.Errorf("store:false body was copied or changed: %q %v", got, err)
	}
	for _, bad := range []string{``, `   `, `[]`, `"x"`, `null`, `{"a":1`} {
		if got, err := ForceStoreFalse([]byte(bad)); !errors.Is(err, ErrBodyNotObject) {
			t.Errorf("ForceStoreFalse(%q) = %q, %v; want ErrBodyNotObject", bad, got, err)
		}
	}
}

func FuzzForceStoreFalse(f *testing.F) {
	for _, s := range []string{`{}`, `{"store":true}`, `{"a":[1,{"store":1}],"store":"x"}`, string(codexCLIBody), string(sdkBody), ` { } `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := bytes.Clone(in)
		out, err := ForceStoreFalse(in)
		if !bytes.Equal(in, orig) {
			t.Fatal("input modified")
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(in, &obj) != nil {
			return // outside input that is not a JSON object: any error or garbage is fine
		}
		if err != nil {
			t.Fatalf("valid object refused: %v", err)
		}
		var got map[string]json.RawMessage
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("output %q is not JSON: %v", out, err)
		}
		if !bytes.Equal(bytes.TrimSpace(got["store"]), []byte("false")) && !hasDuplicateStore(in) {
			t.Fatalf("store = %s in %q", got["store"], out)
		}
		for k, v := range obj {
			if k != "store" && !bytes.Equal(got[k], v) {
				t.Fatalf("field %q changed: %s → %s", k, v, got[k])
			}
		}
	})
}

// hasDuplicateStore reports whether a body has "store" twice at the top
// level; encoding/json then keeps the last and ForceStoreFalse sets the
// first, which the upstream refuses as it would the client's own body.
func hasDuplicateStore(body []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil {
		return false
	}
	n := 0
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if tok == "store" {
			n++
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return false
		}
	}
	return n > 1
}
