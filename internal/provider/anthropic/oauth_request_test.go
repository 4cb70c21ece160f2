package anthropic

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// ccBetas is what Claude Code 2.1.332 sends in anthropic-beta (clients.md).
const ccBetas = "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27," +
	"per-turn-control-2026-07-01,mid-conversation-tool-changes-2026-07-01,thinking-token-count-2026-05-13," +
	"advanced-tool-use-2025-11-20,effort-2025-11-24"

// claudeCodeHeaders are the request headers of Claude Code 2.1.332 in -p
// mode with ANTHROPIC_AUTH_TOKEN=cr_test (clients.md).
func claudeCodeHeaders() http.Header {
	h := http.Header{}
	h.Set("User-Agent", "claude-cli/2.1.332 (external, sdk-cli)")
	h.Set("X-App", "cli")
	h.Set("Anthropic-Version", "2023-06-01")
	h.Set("Anthropic-Beta", ccBetas)
	h.Set("Authorization", "Bearer cr_test")
	h.Set("Anthropic-Dangerous-Direct-Browser-Access", "true")
	h.Set("X-Claude-Code-Session-Id", "5b0f8a8e-3d51-4a0c-9f51-1d7c2f0f4a11")
	h.Set("X-Stainless-Lang", "js")
	h.Set("X-Stainless-Package-Version", "0.128.0")
	h.Set("X-Stainless-Runtime", "node")
	h.Set("X-Stainless-Runtime-Version", "v26.12.1")
	h.Set("X-Stainless-Os", "Linux")
	h.Set("X-Stainless-Arch", "x64")
	h.Set("X-Stainless-Retry-Count", "0")
	h.Set("X-Stainless-Timeout", "600")
	h.Set("Accept", "application/json")
	h.Set("Accept-Encoding", "gzip, deflate, br, zstd")
	h.Set("Content-Type", "application/json")
	return h
}

// sdkHeaders are those of @anthropic-ai/sdk 1.14.0 messages.stream() with
// apiKey cr_test (clients.md): Bearer auth, its own anthropic-version.
func sdkHeaders() http.Header {
	h := http.Header{}
	h.Set("User-Agent", "Anthropic/JS 1.14.0")
	h.Set("Anthropic-Version", "2026-10-21")
	h.Set("Authorization", "Bearer cr_test")
	h.Set("X-Stainless-Lang", "js")
	h.Set("X-Stainless-Package-Version", "1.14.0")
	h.Set("X-Stainless-Runtime", "node")
	h.Set("X-Stainless-Runtime-Version", "v20.20.2")
	h.Set("X-Stainless-Os", "MacOS")
	h.Set("X-Stainless-Arch", "arm64")
	h.Set("X-Stainless-Retry-Count", "0")
	h.Set("X-Stainless-Timeout", "600")
	h.Set("X-Stainless-Helper-Method", "stream")
	h.Set("Accept", "application/json")
	h.Set("Content-Type", "application/json")
	return h
}

// addHostile adds what a reverse proxy in front of crs and a browser-ish
// client add: none of it may reach Anthropic.
func addHostile(h http.Header) http.Header {
	h = h.Clone()
	for k, v := range map[string]string{
		"X-Api-Key":           "cr_test",
		"Cookie":              "session=cr_secret_cookie",
		"X-Forwarded-For":     "203.0.113.7",
		"X-Forwarded-Host":    "relay.example",
		"X-Forwarded-Proto":   "https",
		"Forwarded":           "for=203.0.113.7",
		"X-Real-Ip":           "203.0.113.7",
		"True-Client-Ip":      "203.0.113.7",
		"Cf-Connecting-Ip":    "203.0.113.7",
		"Cf-Ray":              "8a1b2c3d4e5f-FRA",
		"Cf-Ipcountry":        "DE",
		"Cdn-Loop":            "cloudflare",
		"Via":                 "1.1 proxy",
		"Connection":          "keep-alive, X-Secret",
		"Keep-Alive":          "timeout=5",
		"Proxy-Authorization": "Basic Y3I6dGVzdA==",
		"X-Secret":            "hop",
		"X-Crs-Key":           "cr_test",
		"Origin":              "https://app.example",
		"Referer":             "https://app.example/chat",
	} {
		h.Set(k, v)
	}
	return h
}

// upstreamSees sends req to a real server on 127.0.0.1 and returns the
// headers and body as that server received them.
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
	req, err := build(srv.URL + "/")
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

func TestOAuthRequestUpstreamHeaders(t *testing.T) {
	const token = "sk-ant-oat01-test-access"
	const acct = "acct-1"
	id := NewIdentity(acct, "0c5ad4b2-6f1e-4a8e-9c2d-3b1f2e4d5a6c", nil)
	ccBody := []byte(`{"model":"claude-opus-5-5","system":[{"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.332.201; cc_entrypoint=sdk-cli;"}],` +
		`"messages":[{"role":"user","content":"say pong"}],"metadata":{"user_id":"{\"device_id\":\"` + strings.Repeat("ab", 32) +
		`\",\"account_uuid\":\"\",\"session_id\":\"5b0f8a8e-3d51-4a0c-9f51-1d7c2f0f4a11\"}"},"stream":true}`)
	sdkBody := []byte(`{"model":"claude-sonnet-4-5","max_tokens":64,"system":"Be terse.","messages":[{"role":"user","content":"hi"}]}`)
	haikuBody := []byte(`{"model":"claude-haiku-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}`)
	ccSession := DeriveSessionID(acct, "5b0f8a8e-3d51-4a0c-9f51-1d7c2f0f4a11")
	sdkSession := DeriveSessionID(acct, "sticky-key")

	apiKeyCC := claudeCodeHeaders()
	apiKeyCC.Del("Authorization")
	apiKeyCC.Set("X-Api-Key", "cr_test")

	ccWant := map[string]string{
		"Authorization":     "Bearer " + token,
		"Anthropic-Version": "2023-06-01",
		"Anthropic-Beta": "claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14," +
			"context-management-2025-06-27,per-turn-control-2026-07-01,mid-conversation-tool-changes-2026-07-01," +
			"thinking-token-count-2026-05-13,advanced-tool-use-2025-11-20,effort-2025-11-24",
		"User-Agent": "claude-cli/2.1.332 (external, sdk-cli)",
		"X-App":      "cli",
		"Anthropic-Dangerous-Direct-Browser-Access": "true",
		"X-Claude-Code-Session-Id":                  ccSession,
		"X-Stainless-Lang":                          "js",
		"X-Stainless-Package-Version":               "0.128.0",
		"X-Stainless-Runtime":                       "node",
		"X-Stainless-Runtime-Version":               "v26.12.1",
		"X-Stainless-Os":                            "Linux",
		"X-Stainless-Arch":                          "x64",
		"X-Stainless-Retry-Count":                   "0",
		"X-Stainless-Timeout":                       "600",
		"Accept":                                    "application/json",
		"Accept-Encoding":                           "identity",
		"Content-Type":                              "application/json",
	}
	sdkWant := map[string]string{
		"Authorization":     "Bearer " + token,
		"Anthropic-Version": "2026-10-21",
		"Anthropic-Beta":    "claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14",
		"User-Agent":        DefaultClaudeCodeUserAgent,
		"X-App":             "cli",
		"Anthropic-Dangerous-Direct-Browser-Access": "true",
		"X-Claude-Code-Session-Id":                  sdkSession,
		"X-Stainless-Lang":                          "js",
		"X-Stainless-Package-Version":               "0.128.0",
		"X-Stainless-Runtime":                       "node",
		"X-Stainless-Runtime-Version":               "v26.12.1",
		"X-Stainless-Os":                            id.Stainless["X-Stainless-Os"],
		"X-Stainless-Arch":                          id.Stainless["X-Stainless-Arch"],
		"X-Stainless-Retry-Count":                   "0",
		"X-Stainless-Timeout":                       "600",
		"Accept":                                    "application/json",
		"Accept-Encoding":                           "identity",
		"Content-Type":                              "application/json",
	}
	haikuWant := map[string]string{}
	for k, v := range sdkWant {
		haikuWant[k] = v
	}
	haikuWant["Anthropic-Version"] = "2023-06-01"
	haikuWant["Anthropic-Beta"] = "oauth-2025-04-20,interleaved-thinking-2025-05-14,claude-code-20250219,extra-beta"
	bareWant := map[string]string{}
	for k, v := range haikuWant {
		bareWant[k] = v
	}
	bareWant["Anthropic-Beta"] = "claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"
	delete(bareWant, "X-Claude-Code-Session-Id")
	bareHeaders := http.Header{"User-Agent": {"curl/8.5.0"}}

	haikuHeaders := http.Header{"User-Agent": {"python-httpx/0.27"}, "Anthropic-Beta": {"claude-code-20250219", " extra-beta ,,oauth-2025-04-20"}}

	tests := []struct {
		name     string
		in       http.Header
		body     []byte
		session  string // sessionKey for RewriteUserID; "-" skips the rewrite
		query    string
		want     map[string]string
		wantBody func([]byte) []byte
	}{
		{"claude code 2.1.332, bearer", addHostile(claudeCodeHeaders()), ccBody, "ignored", "beta=true", ccWant, nil},
		{"claude code 2.1.332, x-api-key", addHostile(apiKeyCC), ccBody, "ignored", "beta=true", ccWant, nil},
		{"sdk 1.14.0 stream", addHostile(sdkHeaders()), sdkBody, "sticky-key", "", sdkWant, nil},
		{"haiku, split beta header", addHostile(haikuHeaders), haikuBody, "sticky-key", "", haikuWant, nil},
		{"no user id in body: session header dropped", addHostile(bareHeaders), sdkBody, "-", "", bareWant, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in.Clone()
			body := tt.body
			if tt.session != "-" {
				body = RewriteUserID(body, acct, id, tt.session)
			}
			r, gotBody := upstreamSees(t, func(base string) (*http.Request, error) {
				return OAuthRequest(context.Background(), in, base, "/v1/messages", tt.query, token, id, body)
			})
			if r.URL.Path != "/v1/messages" || r.URL.RawQuery != tt.query {
				t.Errorf("url = %s, want /v1/messages?%s", r.URL, tt.query)
			}
			if string(gotBody) != string(body) || r.ContentLength != int64(len(body)) {
				t.Errorf("body changed in flight: %d bytes, content-length %d, sent %d", len(gotBody), r.ContentLength, len(body))
			}
			for name, want := range tt.want {
				if got := strings.Join(r.Header.Values(name), ", "); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			for name, vals := range r.Header {
				if _, ok := tt.want[name]; !ok && name != "Content-Length" { // checked above
					t.Errorf("unexpected header upstream: %s: %q", name, vals)
				}
				for _, v := range vals {
					if strings.Contains(v, "cr_") || strings.Contains(v, "203.0.113.7") {
						t.Errorf("client secret or address leaked upstream in %s: %q", name, v)
					}
				}
			}
			if !slices.Equal(in["Authorization"], tt.in["Authorization"]) {
				t.Errorf("OAuthRequest changed the inbound headers")
			}
		})
	}
}

func TestOAuthRequestKeepsClientHeaderSlicesApart(t *testing.T) {
	in := sdkHeaders()
	in.Set("Accept-Language", "de")
	req, err := OAuthRequest(context.Background(), in, "http://127.0.0.1:1", "/v1/messages", "", "tok", NewIdentity("a", "", nil), []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header["Accept-Language"][0] = "fr"
	if in.Get("Accept-Language") != "de" {
		t.Fatal("upstream header shares its slice with the client's")
	}
}

func TestMergeBetas(t *testing.T) {
	tests := []struct {
		name   string
		base   []string
		client string
		want   string
	}{
		{"no client betas", []string{"a", "b"}, "", "a,b"},
		{"client appended in order", []string{"a", "b"}, "c,d", "a,b,c,d"},
		{"client duplicate of base dropped", []string{"a", "b"}, "b,c,a", "a,b,c"},
		{"client duplicates among themselves", nil, "x,y,x,y,z", "x,y,z"},
		{"spaces and empty items", []string{" a ", ""}, " , b ,, ,c,", "a,b,c"},
		{"duplicate inside base", []string{"a", "a", "b"}, "", "a,b"},
		{"nothing at all", nil, " ,, ", ""},
		{"oauth beta sent by client too", BaseBetas("claude-opus-5-5"), "oauth-2025-04-20,context-1m-2025-08-07",
			"claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14,context-1m-2025-08-07"},
	}
	for _, tt := range tests {
		if got := MergeBetas(tt.base, tt.client); got != tt.want {
			t.Errorf("%s: MergeBetas(%q, %q) = %q, want %q", tt.name, tt.base, tt.client, got, tt.want)
		}
	}
}

func TestBaseBetas(t *testing.T) {
	full := []string{"claude-code-20250219", OAuthBeta, "interleaved-thinking-2025-05-14", "fine-grained-tool-streaming-2025-05-14"}
	haiku := []string{OAuthBeta, "interleaved-thinking-2025-05-14"}
	for model, want := range map[string][]string{
		"claude-opus-5-5":           full,
		"claude-sonnet-4-5":         full,
		"":                          full,
		"claude-haiku-4-5-20251001": haiku,
		"claude-3-5-HAIKU-latest":   haiku,
	} {
		got := BaseBetas(model)
		if !slices.Equal(got, want) {
			t.Errorf("BaseBetas(%q) = %q, want %q", model, got, want)
		}
		got[0] = "mutated"
		if BaseBetas(model)[0] == "mutated" {
			t.Errorf("BaseBetas(%q) shares its slice between calls", model)
		}
	}
}

func TestIsClaudeCodeUserAgent(t *testing.T) {
	for ua, want := range map[string]bool{
		"claude-cli/2.1.332 (external, sdk-cli)": true,
		"claude-cli/2.1.332 (external, cli)":     true,
		"claude-cli/1.0.119":                     true,
		"claude-cli/10.20.30-beta (x)":           true,
		"claude-cli/2.1 (external, cli)":         false,
		"claude-cli/2..1":                        false,
		"claude-cli/x.y.z":                       false,
		"claude-cli/":                            false,
		"Claude-CLI/2.1.332":                     false,
		"Anthropic/JS 1.14.0":                    false,
		"Bun/1.4.0":                              false,
		" claude-cli/2.1.332":                    false,
		"":                                       false,
	} {
		if got := IsClaudeCodeUserAgent(ua); got != want {
			t.Errorf("IsClaudeCodeUserAgent(%q) = %v, want %v", ua, got, want)
		}
	}
}

func TestIsClaudeCode(t *testing.T) {
	cc := http.Header{"User-Agent": {"claude-cli/2.1.332 (external, cli)"}}
	sdk := http.Header{"User-Agent": {"Anthropic/JS 1.14.0"}}
	billing := `{"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.332.201; cc_entrypoint=sdk-cli;"}`
	agent := `{"type":"text","text":"You are a Claude agent, built on Anthropic's Claude Agent SDK.","cache_control":{"type":"ephemeral"}}`
	cli := `{"type":"text","text":"You are Claude Code, Anthropic's official CLI for Claude."}`
	other := `{"type":"text","text":"You are a helpful assistant."}`
	tests := []struct {
		name string
		h    http.Header
		body string
		want bool
	}{
		{"2.1.332 shape", cc, `{"system":[` + billing + `,` + agent + `,` + other + `]}`, true},
		{"billing header only", cc, `{"system":[` + billing + `]}`, true},
		{"agent line first", cc, `{"system":[` + agent + `]}`, true},
		{"cli identity line", cc, `{"system":[` + cli + `,` + other + `]}`, true},
		{"identity line third", cc, `{"system":[` + other + `,` + other + `,` + cli + `]}`, true},
		{"identity line fourth is too late", cc, `{"system":[` + other + `,` + other + `,` + other + `,` + cli + `]}`, false},
		{"system as string", cc, `{"system":"You are Claude Code, Anthropic's official CLI for Claude."}`, true},
		{"cc ua, foreign system", cc, `{"system":[` + other + `]}`, false},
		{"cc ua, no system", cc, `{"messages":[]}`, false},
		{"sdk ua with cc system", sdk, `{"system":[` + billing + `,` + agent + `]}`, false},
		{"no ua", http.Header{}, `{"system":[` + billing + `]}`, false},
		{"not json", cc, `not json`, false},
	}
	for _, tt := range tests {
		if got := IsClaudeCode(tt.h, []byte(tt.body)); got != tt.want {
			t.Errorf("%s: IsClaudeCode = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestOAuthRequestAfterPrepare checks the whole non-Claude-Code path in the
// order the relay runs it: what upstream gets is a Claude Code request.
func TestOAuthRequestAfterPrepare(t *testing.T) {
	id := NewIdentity("acct-9", "uuid-9", nil)
	body, err := PrepareNonClaudeCode([]byte(`{"model":"claude-sonnet-4-5","max_tokens":32,"system":"You are Cherry.","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	body = RewriteUserID(body, "acct-9", id, "k")
	r, got := upstreamSees(t, func(base string) (*http.Request, error) {
		return OAuthRequest(context.Background(), http.Header{"User-Agent": {"CherryStudio/1.5"}}, base, "/v1/messages", "beta=true", "tok", id, body)
	})
	if !IsClaudeCode(r.Header, got) {
		t.Errorf("upstream does not see a Claude Code request: ua %q, system %s", r.Header.Get("User-Agent"), gjson.GetBytes(got, "system").Raw)
	}
	if s := UserIDSession(gjson.GetBytes(got, "metadata.user_id").Str); s == "" || s != r.Header.Get("X-Claude-Code-Session-Id") {
		t.Errorf("session header %q does not match body session %q", r.Header.Get("X-Claude-Code-Session-Id"), s)
	}
}
