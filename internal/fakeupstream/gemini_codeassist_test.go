package fakeupstream

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// googleLogin runs the code exchange against o and returns the token
// response.
func googleLogin(t *testing.T, o *GoogleOAuth) gjson.Result {
	t.Helper()
	const verifier = "gemini-verifier-gemini-verifier-gemini-verifier"
	code := o.IssueCode(s256(verifier))
	status, r := googlePostForm(t, o, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {GoogleOAuthRedirectURI}, "code_verifier": {verifier},
		"client_id": {GoogleOAuthClientID}, "client_secret": {GoogleOAuthClientSecret}})
	if status != http.StatusOK {
		t.Fatalf("exchange: %d %s", status, r.Raw)
	}
	return r
}

// codeAssist posts to /v1internal:{method} with a bearer token.
func codeAssist(t *testing.T, g *Gemini, token, method, body string) (*http.Response, gjson.Result) {
	t.Helper()
	hdr := map[string]string{}
	if token != "" {
		hdr["Authorization"] = "Bearer " + token
	}
	resp, b := geminiDo(t, testCtx(t), http.MethodPost, g.URL()+"/v1internal:"+method, hdr, body)
	return resp, gjson.ParseBytes(b)
}

func codeAssistGenerate(project string) string {
	return `{"model":"gemini-2.5-pro","project":"` + project + `","user_prompt_id":"u1","request":{"contents":[{"role":"user","parts":[{"text":"say pong"}]}],"session_id":"s1"}}`
}

const codeAssistLoad = `{"metadata":{"ideType":"IDE_UNSPECIFIED","platform":"PLATFORM_UNSPECIFIED","pluginType":"GEMINI"}}`

// TestCodeAssistOnboardedUser walks what Gemini CLI does for an onboarded
// account: loadCodeAssist, then generate and stream in the envelope.
func TestCodeAssistOnboardedUser(t *testing.T) {
	o := StartGoogleOAuth(t)
	g := StartGemini(t, GeminiOptions{OAuth: o, Name: "ca", Chunks: 3})
	tok := googleLogin(t, o).Get("access_token").Str

	resp, load := codeAssist(t, g, tok, "loadCodeAssist", codeAssistLoad)
	if resp.StatusCode != 200 || load.Get("currentTier.id").Str != "free-tier" || load.Get("cloudaicompanionProject").Str != DefaultGeminiProject {
		t.Fatalf("loadCodeAssist: %d %s", resp.StatusCode, load.Raw)
	}
	if g.CodeAssistProject() != DefaultGeminiProject {
		t.Errorf("CodeAssistProject %q", g.CodeAssistProject())
	}

	resp, r := codeAssist(t, g, tok, "generateContent", codeAssistGenerate(DefaultGeminiProject))
	inner := r.Get("response")
	if resp.StatusCode != 200 || geminiReplyText(inner) != ReplyText(3) || inner.Get("modelVersion").Str != "gemini-2.5-pro" ||
		!strings.HasPrefix(r.Get("traceId").Str, "ca_") || inner.Get("responseId").Exists() || r.Get("candidates").Exists() {
		t.Fatalf("generateContent: %d %s", resp.StatusCode, r.Raw)
	}
	checkGeminiUsage(t, inner.Get("usageMetadata"), DefaultGeminiUsage())

	_, evs, err := geminiStreamSSE(t, testCtx(t), g.URL()+"/v1internal:streamGenerateContent?alt=sse",
		map[string]string{"Authorization": "Bearer " + tok}, codeAssistGenerate(DefaultGeminiProject))
	if err != nil || len(evs) != 3 {
		t.Fatalf("stream: %d events, %v", len(evs), err)
	}
	var text string
	for _, ev := range evs {
		c := gjson.ParseBytes(ev.Data)
		if !c.Get("traceId").Exists() || !c.Get("response.candidates").IsArray() {
			t.Errorf("chunk not wrapped: %s", ev.Data)
		}
		text += geminiReplyText(c.Get("response"))
	}
	if text != ReplyText(3) {
		t.Errorf("stream text %q", text)
	}
	checkGeminiUsage(t, gjson.GetBytes(evs[2].Data, "response.usageMetadata"), DefaultGeminiUsage())
	if g.MessageCount() != 2 {
		t.Errorf("MessageCount %d, want 2", g.MessageCount())
	}
}

// TestCodeAssistOnboarding: a user without a tier is offered tiers, refused
// generation, onboarded through a polled operation, and then served.
func TestCodeAssistOnboarding(t *testing.T) {
	g := StartGemini(t, GeminiOptions{NotOnboarded: true, Project: "managed-9"})
	const tok = "any"

	_, load := codeAssist(t, g, tok, "loadCodeAssist", codeAssistLoad)
	if load.Get("currentTier").Exists() || load.Get("cloudaicompanionProject").Exists() ||
		load.Get(`allowedTiers.#(isDefault==true).id`).Str != "free-tier" {
		t.Fatalf("not onboarded loadCodeAssist: %s", load.Raw)
	}
	if resp, r := codeAssist(t, g, tok, "generateContent", codeAssistGenerate("managed-9")); resp.StatusCode != 403 ||
		r.Get("error.status").Str != "PERMISSION_DENIED" {
		t.Errorf("generate before onboarding: %d %s", resp.StatusCode, r.Raw)
	}

	for _, tc := range []struct {
		name, body, status string
	}{
		{"free tier with a project", `{"tierId":"free-tier","cloudaicompanionProject":"mine","metadata":{}}`, "FAILED_PRECONDITION"},
		{"unknown tier", `{"tierId":"gold-tier","metadata":{}}`, "INVALID_ARGUMENT"},
		{"no tier", `{"metadata":{}}`, "INVALID_ARGUMENT"},
		{"standard tier without project", `{"tierId":"standard-tier","metadata":{}}`, "INVALID_ARGUMENT"},
	} {
		if resp, r := codeAssist(t, g, tok, "onboardUser", tc.body); resp.StatusCode != 400 || r.Get("error.status").Str != tc.status {
			t.Errorf("%s: %d %s, want 400 %s", tc.name, resp.StatusCode, r.Raw, tc.status)
		}
	}

	resp, op := codeAssist(t, g, tok, "onboardUser", `{"tierId":"free-tier","metadata":{"pluginType":"GEMINI"}}`)
	name := op.Get("name").Str
	if resp.StatusCode != 200 || op.Get("done").Bool() || !strings.HasPrefix(name, "operations/") || op.Get("response").Exists() {
		t.Fatalf("onboardUser: %d %s", resp.StatusCode, op.Raw)
	}
	if g.CodeAssistProject() != "" {
		t.Error("onboarded before the operation finished")
	}
	resp, b := geminiDo(t, testCtx(t), http.MethodGet, g.URL()+"/v1internal/"+name, map[string]string{"Authorization": "Bearer x"}, "")
	polled := gjson.ParseBytes(b)
	if resp.StatusCode != 200 || !polled.Get("done").Bool() || polled.Get("response.cloudaicompanionProject.id").Str != "managed-9" {
		t.Fatalf("poll: %d %s", resp.StatusCode, b)
	}
	if resp, _ := geminiDo(t, testCtx(t), http.MethodGet, g.URL()+"/v1internal/operations/nope", map[string]string{"Authorization": "Bearer x"}, ""); resp.StatusCode != 404 {
		t.Errorf("unknown operation: %d", resp.StatusCode)
	}
	if resp, _ := geminiDo(t, testCtx(t), http.MethodGet, g.URL()+"/v1internal/"+name, nil, ""); resp.StatusCode != 401 {
		t.Errorf("poll without a token: %d", resp.StatusCode)
	}

	_, load = codeAssist(t, g, tok, "loadCodeAssist", codeAssistLoad)
	if load.Get("currentTier.id").Str != "free-tier" || load.Get("cloudaicompanionProject").Str != "managed-9" {
		t.Errorf("after onboarding: %s", load.Raw)
	}
	if resp, r := codeAssist(t, g, tok, "generateContent", codeAssistGenerate("managed-9")); resp.StatusCode != 200 {
		t.Errorf("generate after onboarding: %d %s", resp.StatusCode, r.Raw)
	}

	// A standard-tier user brings its own project; onboarding is done at
	// once when configured so.
	g2 := StartGemini(t, GeminiOptions{NotOnboarded: true, OnboardAtOnce: true})
	_, op = codeAssist(t, g2, tok, "onboardUser", `{"tierId":"standard-tier","cloudaicompanionProject":"own-proj","metadata":{"duetProject":"own-proj"}}`)
	if !op.Get("done").Bool() || op.Get("response.cloudaicompanionProject.id").Str != "own-proj" {
		t.Fatalf("onboard at once: %s", op.Raw)
	}
	_, load = codeAssist(t, g2, tok, "loadCodeAssist", codeAssistLoad)
	if load.Get("currentTier.id").Str != "standard-tier" || load.Get("cloudaicompanionProject").Str != "own-proj" {
		t.Errorf("standard tier load: %s", load.Raw)
	}
	if resp, _ := codeAssist(t, g2, tok, "generateContent", codeAssistGenerate(DefaultGeminiProject)); resp.StatusCode != 403 {
		t.Errorf("generate with the managed project for a standard user: %d", resp.StatusCode)
	}

	g2.SetOnboarded(false)
	if _, load = codeAssist(t, g2, tok, "loadCodeAssist", codeAssistLoad); load.Get("currentTier").Exists() {
		t.Errorf("SetOnboarded(false): %s", load.Raw)
	}
	g2.SetOnboarded(true)
	if _, load = codeAssist(t, g2, tok, "loadCodeAssist", codeAssistLoad); load.Get("cloudaicompanionProject").Str != DefaultGeminiProject {
		t.Errorf("SetOnboarded(true): %s", load.Raw)
	}
}

// TestCodeAssistBearerAuth: only live tokens of the fake Google OAuth with
// the cloud-platform scope pass.
func TestCodeAssistBearerAuth(t *testing.T) {
	o := StartGoogleOAuth(t)
	g := StartGemini(t, GeminiOptions{OAuth: o})
	live := googleLogin(t, o).Get("access_token").Str

	revokedLogin := googleLogin(t, o)
	o.Revoke(revokedLogin.Get("refresh_token").Str)

	// A token granted only the email scope.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q := url.Values{"client_id": {GoogleOAuthClientID}, "redirect_uri": {"http://127.0.0.1:8085/oauth2callback"},
		"response_type": {"code"}, "scope": {"https://www.googleapis.com/auth/userinfo.email"}}
	resp, err := noRedirect.Get(o.AuthorizeURL() + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	_, narrow := googlePostForm(t, o, url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"redirect_uri": {"http://127.0.0.1:8085/oauth2callback"}, "client_id": {GoogleOAuthClientID}, "client_secret": {GoogleOAuthClientSecret}})

	for _, tc := range []struct {
		name, auth   string
		status       int
		googleStatus string
		reason       string
	}{
		{"live token", "Bearer " + live, 200, "", ""},
		{"no credential", "", 401, "UNAUTHENTICATED", "CREDENTIALS_MISSING"},
		{"api key is not a bearer", "x-goog-api-key", 401, "UNAUTHENTICATED", "CREDENTIALS_MISSING"},
		{"unknown token", "Bearer ya29.unknown", 401, "UNAUTHENTICATED", ""},
		{"revoked grant", "Bearer " + revokedLogin.Get("access_token").Str, 401, "UNAUTHENTICATED", ""},
		{"missing scope", "Bearer " + narrow.Get("access_token").Str, 403, "PERMISSION_DENIED", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"},
	} {
		hdr := map[string]string{}
		switch {
		case tc.auth == "x-goog-api-key":
			hdr["x-goog-api-key"] = "k"
		case tc.auth != "":
			hdr["Authorization"] = tc.auth
		}
		resp, b := geminiDo(t, testCtx(t), http.MethodPost, g.URL()+"/v1internal:loadCodeAssist", hdr, codeAssistLoad)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, resp.StatusCode, b, tc.status)
			continue
		}
		if tc.status == 200 {
			continue
		}
		e := googleErrorOf(t, tc.status, b)
		if e.Status != tc.googleStatus || (tc.reason != "" && geminiDetail(e, "ErrorInfo")["reason"] != tc.reason) {
			t.Errorf("%s: %+v, want %s %s", tc.name, e, tc.googleStatus, tc.reason)
		}
		if tc.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("%s: WWW-Authenticate %q", tc.name, resp.Header.Get("WWW-Authenticate"))
		}
	}

	// Once the hour is up the same token is refused as expired, and a
	// refresh brings a working one.
	o.ExpireAccessTokens()
	resp2, r := codeAssist(t, g, live, "loadCodeAssist", codeAssistLoad)
	if resp2.StatusCode != 401 || r.Get(`error.details.#(reason=="ACCESS_TOKEN_EXPIRED")`).Raw == "" {
		t.Errorf("expired token: %d %s", resp2.StatusCode, r.Raw)
	}
}

func TestCodeAssistProjectAndOtherMethods(t *testing.T) {
	g := StartGemini(t, GeminiOptions{Usage: GeminiUsage{Prompt: 12, Candidates: 1}})
	const tok = "t"
	for _, tc := range []struct {
		name, method, body string
		status             int
		check              func(gjson.Result) bool
	}{
		{"wrong project", "generateContent", codeAssistGenerate("someone-else"), 403,
			func(r gjson.Result) bool {
				return strings.Contains(r.Get("error.message").Str, "someone-else") &&
					r.Get(`error.details.#(reason=="IAM_PERMISSION_DENIED")`).Exists()
			}},
		{"no project", "generateContent", `{"model":"gemini-2.5-pro","request":{"contents":[{"parts":[{"text":"x"}]}]}}`, 403, nil},
		{"no model", "generateContent", `{"project":"` + DefaultGeminiProject + `","request":{"contents":[{"parts":[{"text":"x"}]}]}}`, 400, nil},
		{"no request", "generateContent", `{"model":"m","project":"` + DefaultGeminiProject + `"}`, 400, nil},
		{"no contents", "generateContent", `{"model":"m","project":"` + DefaultGeminiProject + `","request":{"session_id":"s"}}`, 400,
			func(r gjson.Result) bool {
				return strings.Contains(r.Get("error.message").Str, "contents is not specified")
			}},
		{"not json", "generateContent", `{`, 400, nil},
		{"count tokens", "countTokens", `{"request":{"model":"models/gemini-2.5-pro","contents":[{"role":"user","parts":[{"text":"x"}]}]}}`, 200,
			func(r gjson.Result) bool { return r.Get("totalTokens").Int() == 12 }},
		{"count tokens without model", "countTokens", `{"request":{"contents":[{"parts":[{"text":"x"}]}]}}`, 400, nil},
		{"quota", "retrieveUserQuota", `{"project":"` + DefaultGeminiProject + `"}`, 200,
			func(r gjson.Result) bool {
				return r.Get(`buckets.#(modelId=="gemini-2.5-pro").remainingFraction`).Float() == 1
			}},
		{"quota wrong project", "retrieveUserQuota", `{"project":"x"}`, 403, nil},
		{"experiments", "listExperiments", `{"project":"` + DefaultGeminiProject + `","metadata":{}}`, 200,
			func(r gjson.Result) bool { return r.Get("flags").IsArray() }},
		{"metrics", "recordCodeAssistMetrics", `{"project":"` + DefaultGeminiProject + `"}`, 200, nil},
		{"unknown method", "fetchAvailableModels", `{}`, 404, nil},
	} {
		resp, r := codeAssist(t, g, tok, tc.method, tc.body)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, resp.StatusCode, r.Raw, tc.status)
			continue
		}
		if tc.check != nil && !tc.check(r) {
			t.Errorf("%s: %s", tc.name, r.Raw)
		}
		if tc.status != 200 {
			googleErrorOf(t, tc.status, []byte(r.Raw))
		}
	}
	if g.MessageCount() != 6 {
		t.Errorf("MessageCount %d, want the 6 generate requests", g.MessageCount())
	}

	// A stream error from the fake's own checks is an array too.
	resp, b := geminiDo(t, testCtx(t), http.MethodPost, g.URL()+"/v1internal:streamGenerateContent?alt=sse",
		map[string]string{"Authorization": "Bearer " + tok}, codeAssistGenerate("someone-else"))
	var arr []json.RawMessage
	if resp.StatusCode != 403 || json.Unmarshal(b, &arr) != nil || len(arr) != 1 {
		t.Errorf("stream project error: %d %s", resp.StatusCode, b)
	}
}
