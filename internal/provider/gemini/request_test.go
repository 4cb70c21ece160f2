package gemini

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// cliAPIKeyHeaders are Gemini CLI 0.61.0's headers in API-key mode with
// GEMINI_API_KEY=cr_test (clients.md).
func cliAPIKeyHeaders() http.Header {
	h := http.Header{}
	h.Set("X-Goog-Api-Key", "cr_test")
	h.Set("X-Goog-Api-Client", "google-genai-sdk/1.30.0 gl-node/v20.20.2")
	h.Set("User-Agent", "GeminiCLI-tui/0.61.0/gemini-3.1-pro-preview (linux; x64; terminal)")
	h.Set("X-Gemini-Api-Privileged-User-Id", "6f1c2b1e-8c55-4f0e-9d7a-0b9e3d4c5a61")
	h.Set("Content-Type", "application/json")
	return h
}

// cliCodeAssistHeaders are Gemini CLI 0.61.0's headers in Code Assist mode
// with GOOGLE_CLOUD_ACCESS_TOKEN=cr_test (clients.md).
func cliCodeAssistHeaders() http.Header {
	h := http.Header{}
	h.Set("Authorization", "Bearer cr_test")
	h.Set("User-Agent", "GeminiCLI-tui/0.61.0/gemini-2.5-pro (linux; x64; terminal) google-api-nodejs-client/10.9.0")
	h.Set("X-Goog-Api-Client", "gl-node/20.20.2")
	h.Set("Content-Type", "application/json")
	return h
}

// genaiHeaders are @google/genai 3.3.0's with apiKey cr_test (clients.md).
func genaiHeaders() http.Header {
	h := http.Header{}
	h.Set("X-Goog-Api-Key", "cr_test")
	h.Set("X-Goog-Api-Client", "google-genai-sdk/3.3.0 gl-node/v20.20.2")
	h.Set("User-Agent", "google-genai-sdk/3.3.0 gl-node/v20.20.2")
	h.Set("Content-Type", "application/json")
	return h
}

// addHostile adds what a reverse proxy in front of crs and a browser-ish
// client add: none of it may reach Google.
func addHostile(h http.Header) http.Header {
	h = h.Clone()
	for k, v := range map[string]string{
		"Authorization":       "Bearer cr_test",
		"Cookie":              "session=cr_secret_cookie",
		"X-Forwarded-For":     "203.0.113.7",
		"X-Forwarded-Host":    "relay.example",
		"X-Forwarded-Proto":   "https",
		"Forwarded":           "for=203.0.113.7",
		"X-Real-Ip":           "203.0.113.7",
		"Cf-Connecting-Ip":    "203.0.113.7",
		"Cf-Ray":              "8a1b2c3d4e5f-FRA",
		"Via":                 "1.1 proxy",
		"Connection":          "keep-alive, X-Secret",
		"Proxy-Authorization": "Basic Y3I6dGVzdA==",
		"X-Secret":            "hop",
		"X-Goog-User-Project": "clients-own-project",
		"Origin":              "https://app.example",
		"Accept-Encoding":     "gzip, deflate, br",
	} {
		if h.Get(k) == "" {
			h.Set(k, v)
		}
	}
	return h
}

// seen is a request as the upstream server received it.
type seen struct {
	r    *http.Request
	body []byte
}

// upstreamSees sends the built request to a real server on 127.0.0.1 and
// returns it as that server received it.
func upstreamSees(t *testing.T, build func(base string) (*http.Request, error)) seen {
	t.Helper()
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
	return <-got
}

// checkHeaders compares every header upstream got with want (Content-Length
// aside, checked separately) and looks for anything of the client's that
// leaked.
func checkHeaders(t *testing.T, s seen, want map[string]string) {
	t.Helper()
	for name, w := range want {
		if got := strings.Join(s.r.Header.Values(name), ", "); got != w {
			t.Errorf("%s = %q, want %q", name, got, w)
		}
	}
	for name, vals := range s.r.Header {
		if _, ok := want[name]; !ok && name != "Content-Length" {
			t.Errorf("unexpected header upstream: %s: %q", name, vals)
		}
		for _, v := range vals {
			if strings.Contains(v, "cr_") || strings.Contains(v, "203.0.113.7") {
				t.Errorf("client secret or address leaked upstream in %s: %q", name, v)
			}
		}
	}
	if s.r.ContentLength != int64(len(s.body)) {
		t.Errorf("content-length %d for %d bytes", s.r.ContentLength, len(s.body))
	}
}

const cliRouterBody = `{"contents":[{"role":"user","parts":[{"text":"say pong"}]}],"generationConfig":{"temperature":0,"responseMimeType":"application/json","responseJsonSchema":{"type":"object","properties":{"complexity_reasoning":{"type":"string"},"complexity_score":{"type":"integer"}},"required":["complexity_reasoning","complexity_score"]}}}`

func TestAPIKeyRequestUpstream(t *testing.T) {
	const key = "AIzaSy-account-key"
	streamBody := `{"contents":[{"role":"user","parts":[{"text":"say pong"}]}],"systemInstruction":{"parts":[{"text":"You are Gemini CLI."}]},` +
		`"generationConfig":{"temperature":1,"topP":0.95,"topK":64,"thinkingConfig":{"includeThoughts":true,"thinkingLevel":"HIGH"}}}`
	cliWant := map[string]string{
		"X-Goog-Api-Key":    key,
		"X-Goog-Api-Client": "google-genai-sdk/1.30.0 gl-node/v20.20.2",
		"User-Agent":        "GeminiCLI-tui/0.61.0/gemini-3.1-pro-preview (linux; x64; terminal)",
		"Content-Type":      "application/json",
		"Accept-Encoding":   "identity",
	}
	genaiWant := map[string]string{
		"X-Goog-Api-Key":    key,
		"X-Goog-Api-Client": "google-genai-sdk/3.3.0 gl-node/v20.20.2",
		"User-Agent":        "google-genai-sdk/3.3.0 gl-node/v20.20.2",
		"Content-Type":      "application/json",
		"Accept-Encoding":   "identity",
	}
	keyInQuery := genaiHeaders()
	keyInQuery.Del("X-Goog-Api-Key")
	tests := []struct {
		name      string
		in        http.Header
		path      string
		query     string
		body      string
		wantPath  string
		wantQuery string
		want      map[string]string
	}{
		{"gemini cli 0.61 router", addHostile(cliAPIKeyHeaders()), "/v1beta/models/gemini-3.5-flash-lite:generateContent", "", cliRouterBody,
			"/v1beta/models/gemini-3.5-flash-lite:generateContent", "", cliWant},
		{"gemini cli 0.61 stream", addHostile(cliAPIKeyHeaders()), "/v1beta/models/gemini-3.8-flash:streamGenerateContent", "alt=sse", streamBody,
			"/v1beta/models/gemini-3.8-flash:streamGenerateContent", "alt=sse", cliWant},
		{"genai 3.3.0 stream", addHostile(genaiHeaders()), "/v1/models/gemini-2.5-flash:streamGenerateContent", "alt=sse", streamBody,
			"/v1/models/gemini-2.5-flash:streamGenerateContent", "alt=sse", genaiWant},
		{"key in the query only", addHostile(keyInQuery), "/v1beta/models/gemini-2.5-flash:streamGenerateContent", "key=cr_test&alt=sse", streamBody,
			"/v1beta/models/gemini-2.5-flash:streamGenerateContent", "alt=sse", genaiWant},
		{"key in query after alt, escaped name", addHostile(keyInQuery), "/v1beta/models/gemini-2.5-flash:countTokens", "alt=sse&%6Bey=cr_test&key=cr_x&x=a%20b", `{"contents":[]}`,
			"/v1beta/models/gemini-2.5-flash:countTokens", "alt=sse&x=a%20b", genaiWant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in.Clone()
			body := []byte(tt.body)
			s := upstreamSees(t, func(base string) (*http.Request, error) {
				return APIKeyRequest(context.Background(), in, base, tt.path, tt.query, key, body)
			})
			if s.r.Method != http.MethodPost || s.r.URL.Path != tt.wantPath || s.r.URL.RawQuery != tt.wantQuery {
				t.Errorf("got %s %s?%s, want POST %s?%s", s.r.Method, s.r.URL.Path, s.r.URL.RawQuery, tt.wantPath, tt.wantQuery)
			}
			if string(s.body) != tt.body {
				t.Errorf("body changed in flight:\n%s\nwant\n%s", s.body, tt.body)
			}
			checkHeaders(t, s, tt.want)
			if in.Get("Cookie") != tt.in.Get("Cookie") || in.Get("X-Goog-Api-Key") != tt.in.Get("X-Goog-Api-Key") {
				t.Error("APIKeyRequest changed the inbound headers")
			}
		})
	}
}

func TestAPIKeyRequestURL(t *testing.T) {
	const p = "/v1beta/models/gemini-2.5-pro:generateContent"
	for _, c := range []struct {
		base, path, query, want string
	}{
		{"", p, "", DefaultAPIBase + p},
		{"https://generativelanguage.googleapis.com/", p, "", DefaultAPIBase + p},
		{"https://generativelanguage.googleapis.com/v1beta", p, "", DefaultAPIBase + p},
		{"https://generativelanguage.googleapis.com/v1beta/", p, "alt=sse", DefaultAPIBase + p + "?alt=sse"},
		// The client's version wins over the base's.
		{"https://gw.example/google/v1", p, "", "https://gw.example/google" + p},
		{"https://gw.example/google", "/v1/models/m:countTokens", "", "https://gw.example/google/v1/models/m:countTokens"},
		// A host that looks like a version is a host.
		{"http://v1:8080", p, "", "http://v1:8080" + p},
		{"http://v1", p, "", "http://v1" + p},
		// Only the query's key goes.
		{"https://gw.example", p, "key=k", "https://gw.example" + p},
		{"https://gw.example", p, "&&alt=sse&", "https://gw.example" + p + "?alt=sse"},
		{"https://gw.example", "v1beta/models/m:generateContent", "", "https://gw.example/v1beta/models/m:generateContent"},
	} {
		req, err := APIKeyRequest(context.Background(), http.Header{}, c.base, c.path, c.query, "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := req.URL.String(); got != c.want {
			t.Errorf("base %q path %q query %q: %s, want %s", c.base, c.path, c.query, got, c.want)
		}
	}
}

func TestRequestKeepsClientHeaderSlicesApart(t *testing.T) {
	in := genaiHeaders()
	in.Set("Accept-Language", "de")
	req, err := APIKeyRequest(context.Background(), in, "", "/v1/models/m:generateContent", "", "k", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header["Accept-Language"][0] = "fr"
	if in.Get("Accept-Language") != "de" {
		t.Fatal("upstream header shares its slice with the client's")
	}
}

func TestCodeAssistRequestUpstream(t *testing.T) {
	const token = "ya29.account-access-token"
	const project = "acct-project-7"
	cliWant := map[string]string{
		"Authorization":     "Bearer " + token,
		"User-Agent":        "GeminiCLI-tui/0.61.0/gemini-2.5-pro (linux; x64; terminal) google-api-nodejs-client/10.9.0",
		"X-Goog-Api-Client": "gl-node/20.20.2",
		"Content-Type":      "application/json",
		"Accept-Encoding":   "identity",
	}
	genaiWant := map[string]string{
		"Authorization":     "Bearer " + token,
		"X-Goog-Api-Client": "google-genai-sdk/3.3.0 gl-node/v20.20.2",
		"User-Agent":        "google-genai-sdk/3.3.0 gl-node/v20.20.2",
		"Content-Type":      "application/json",
		"Accept-Encoding":   "identity",
	}
	// Gemini CLI's generate envelope, with the project loadCodeAssist gave
	// it through the relay; then the same with that project replaced.
	cliStream := `{"model":"gemini-2.5-pro","project":"project-the-client-saw","user_prompt_id":"5a1e########1","request":{"contents":[{"role":"user","parts":[{"text":"say pong"}]}],` +
		`"generationConfig":{"temperature":1,"thinkingConfig":{"includeThoughts":true}},"session_id":"5a1e"}}`
	cliStreamWant := strings.Replace(cliStream, "project-the-client-saw", project, 1)
	load := `{"metadata":{"ideType":"IDE_UNSPECIFIED","platform":"PLATFORM_UNSPECIFIED","pluginType":"GEMINI"}}`
	// The genai SDK on the native route, served by an OAuth account.
	native := `{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"generationConfig":{"maxOutputTokens":64}}`
	wrapped, err := NativeToCodeAssist("gemini-2.5-flash", []byte(native), project)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		in       http.Header
		method   string
		query    string
		body     string
		want     map[string]string
		wantBody string
	}{
		{"gemini cli 0.61 stream", addHostile(cliCodeAssistHeaders()), "streamGenerateContent", "alt=sse", cliStream, cliWant, cliStreamWant},
		{"gemini cli 0.61 loadCodeAssist", addHostile(cliCodeAssistHeaders()), "loadCodeAssist", "", load, cliWant,
			`{"metadata":{"ideType":"IDE_UNSPECIFIED","platform":"PLATFORM_UNSPECIFIED","pluginType":"GEMINI"},"cloudaicompanionProject":"` + project + `"}`},
		{"gemini cli 0.61 countTokens: no project", addHostile(cliCodeAssistHeaders()), "countTokens", "",
			`{"request":{"model":"models/gemini-2.5-pro","contents":[]}}`, cliWant, `{"request":{"model":"models/gemini-2.5-pro","contents":[]}}`},
		{"genai 3.3.0 on the native route", addHostile(genaiHeaders()), "streamGenerateContent", "alt=sse&key=cr_test", string(wrapped), genaiWant,
			`{"model":"gemini-2.5-flash","project":"` + project + `","request":` + native + `}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in.Clone()
			body := []byte(tt.body)
			s := upstreamSees(t, func(base string) (*http.Request, error) {
				return CodeAssistRequest(context.Background(), in, base+"/", tt.method, tt.query, token, project, body)
			})
			wantQuery := strings.TrimSuffix(strings.TrimSuffix(tt.query, "key=cr_test"), "&")
			if s.r.Method != http.MethodPost || s.r.URL.Path != "/v1internal:"+tt.method || s.r.URL.RawQuery != wantQuery {
				t.Errorf("got %s %s?%s, want POST /v1internal:%s?%s", s.r.Method, s.r.URL.Path, s.r.URL.RawQuery, tt.method, wantQuery)
			}
			if string(s.body) != tt.wantBody {
				t.Errorf("body upstream:\n%s\nwant\n%s", s.body, tt.wantBody)
			}
			if string(body) != tt.body {
				t.Error("CodeAssistRequest changed the caller's body")
			}
			checkHeaders(t, s, tt.want)
		})
	}
}

func TestCodeAssistRequestURLAndErrors(t *testing.T) {
	for _, c := range []struct{ base, want string }{
		{"", DefaultCodeAssistBase + "/v1internal:generateContent"},
		{"https://cloudcode-pa.googleapis.com/", DefaultCodeAssistBase + "/v1internal:generateContent"},
		{"https://cloudcode-pa.googleapis.com/v1internal", DefaultCodeAssistBase + "/v1internal:generateContent"},
		{"https://gw.example/ca//", "https://gw.example/ca/v1internal:generateContent"},
	} {
		req, err := CodeAssistRequest(context.Background(), http.Header{}, c.base, "generateContent", "", "t", "", []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		if got := req.URL.String(); got != c.want {
			t.Errorf("base %q: %s, want %s", c.base, got, c.want)
		}
	}
	for _, m := range []string{"", "generateContent?x=1", "../operations/x", "generate Content", "a/b", "a:b"} {
		if _, err := CodeAssistRequest(context.Background(), http.Header{}, "", m, "", "t", "p", []byte(`{}`)); err != ErrBadMethod {
			t.Errorf("method %q: err %v, want ErrBadMethod", m, err)
		}
	}
	if _, err := CodeAssistRequest(context.Background(), http.Header{}, "", "generateContent", "", "t", "p", []byte(`[1]`)); err != ErrNotObject {
		t.Errorf("array body: err %v, want ErrNotObject", err)
	}
}
