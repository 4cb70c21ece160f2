package e2e

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/clitest"
	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/testkit"
)

// upstreamGeminiKey is the secret of the Gemini API-key account; the fake
// accepts only it.
const upstreamGeminiKey = "gk-upstream-gemini"

// TestGeminiThroughCRS runs the real Gemini CLI (`gemini -p`) through the
// crs binary, in API-key mode against a Gemini API-key account and in Code
// Assist mode against a Google OAuth account onboarded with `crs accounts
// oauth`. In both the CLI exits 0 and prints the fake's answer, the
// upstream sees the account's credential and never the relay key, and no
// host outside this machine is needed.
//
// One `gemini -p` makes two generation calls, and crs records both: the
// model router (a generateContent call on a small model whose JSON answer
// picks the model for the prompt) and the streamed answer. The router call
// is a real, billed generation on the account, so metering it is right: the
// run leaves 2 usage records, each the fake's prompt 20 / cached 4 /
// candidates 6 / thoughts 2 read as input 16, cache read 4, output 8
// (thoughts are billed as output), on two different models.
func TestGeminiThroughCRS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real Gemini CLI")
	}
	t.Parallel()
	bin := clitest.InstallGemini(t)

	t.Run("api-key", func(t *testing.T) {
		t.Parallel()
		fake := fakeupstream.StartGemini(t, fakeupstream.GeminiOptions{APIKeys: []string{upstreamGeminiKey}})
		dir := t.TempDir()
		crsCLI(t, dir, upstreamGeminiKey+"\n", "accounts", "add", "--platform", "gemini", "--type", "api-key",
			"--name", "gm", "--api-key", "-", "--base-url", fake.URL(), "--json")
		keyID, key := createKey(t, dir, "gemini")
		srv := startCRS(t, dir)

		res := runGemini(t, bin, clitest.GeminiAPIKey, srv, key)
		reqs := fake.Requests()
		for _, r := range reqs {
			if got := r.Header.Get("X-Goog-Api-Key"); got != upstreamGeminiKey {
				t.Errorf("%s %s: upstream x-goog-api-key %q, want the account's key", r.Method, r.Path, got)
			}
		}
		router, answer := generationCalls(t, reqs, "/v1beta/models/", "generationConfig.responseJsonSchema")
		checkGeminiUsage(t, dir, keyID, router, answer)
		assertKeyNowhere(t, key, reqs)
		t.Logf("gemini -p (api-key) took %v; upstream saw %v; egress %q", res.Elapsed.Round(time.Millisecond), paths(reqs), res.Egress)
	})

	t.Run("code-assist", func(t *testing.T) {
		t.Parallel()
		google := fakeupstream.StartGoogleOAuth(t)
		fake := fakeupstream.StartGemini(t, fakeupstream.GeminiOptions{OAuth: google})
		env := []string{"GOOGLE_OAUTH_AUTHORIZE_URL=" + google.AuthorizeURL(), "GOOGLE_OAUTH_TOKEN_URL=" + google.TokenURL(),
			"CODE_ASSIST_API_URL=" + fake.URL()}
		dir := t.TempDir()
		onboardGoogle(t, dir, google, env)
		keyID, key := createKey(t, dir, "gemini")
		srv := startCRS(t, dir, env...)
		// Onboarding asked the backend for the account's project; from here
		// on the fake should see only what the CLI's run forwards.
		fake.Reset()

		res := runGemini(t, bin, clitest.GeminiCodeAssist, srv, key)
		reqs := fake.Requests()
		for _, r := range reqs {
			tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !google.AccessTokenValid(tok) {
				t.Errorf("%s %s: upstream bearer %q is not an access token of the account", r.Method, r.Path, tok)
			}
			if got := gjson.GetBytes(r.Body, "project").String(); got != fake.CodeAssistProject() {
				t.Errorf("%s %s: project %q, want the account's %q in place of crs's placeholder", r.Method, r.Path, got, fake.CodeAssistProject())
			}
		}
		// loadCodeAssist, retrieveUserQuota and listExperiments are answered
		// by crs itself (the tier and project are the serving account's
		// business), so only the two generation calls reach the backend.
		router, answer := generationCalls(t, reqs, "/v1internal:", "request.generationConfig.responseJsonSchema")
		checkGeminiUsage(t, dir, keyID, router, answer)
		assertKeyNowhere(t, key, reqs)
		assertKeyNowhere(t, key, google.TokenRequests())
		t.Logf("gemini -p (code-assist) took %v; upstream saw %v; egress %q", res.Elapsed.Round(time.Millisecond), paths(reqs), res.Egress)
	})
}

// runGemini runs `gemini -p "say pong"` in mode through srv and insists on
// exit 0, the fake's reply on stdout and no unknown host tried.
func runGemini(t *testing.T, bin string, mode clitest.GeminiMode, srv *crsProc, key string) clitest.RunResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	res, err := clitest.RunGeminiP(ctx, bin, mode, srv.url+"/gemini", key, "say pong", t.TempDir())
	if err != nil {
		t.Fatalf("gemini -p: %v\nstdout: %s\nstderr: %s\ncrs: %s", err, res.Stdout, res.Stderr, srv.stderr)
	}
	reply := fakeupstream.ReplyText(5)
	if res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != reply {
		t.Fatalf("exit %d, stdout %q; want 0 and the fake's reply %q\nstderr: %s\ncrs: %s",
			res.ExitCode, res.Stdout, reply, res.Stderr, srv.stderr)
	}
	if extra := res.UnknownEgress(mode.KnownEgress()); len(extra) != 0 {
		t.Errorf("Gemini CLI tried to reach %q outside this machine", extra)
	}
	return res
}

// generationCalls checks that the upstream saw exactly the two generation
// calls of one prompt, the router's generateContent (with the JSON schema
// at schemaPath) and the streamed answer, both under prefix, and returns
// their models. A Code Assist body names its model; a native path does.
func generationCalls(t *testing.T, reqs []fakeupstream.Request, prefix, schemaPath string) (router, answer string) {
	t.Helper()
	if len(reqs) != 2 {
		t.Fatalf("upstream saw %v, want exactly the router call and the streamed answer", paths(reqs))
	}
	model := func(r fakeupstream.Request) string {
		if m := gjson.GetBytes(r.Body, "model").String(); m != "" {
			return strings.TrimPrefix(m, "models/")
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(r.Path, prefix), ":")
		return name
	}
	r, a := reqs[0], reqs[1]
	if !strings.HasPrefix(r.Path, prefix) || !strings.HasSuffix(r.Path, ":generateContent") || !gjson.GetBytes(r.Body, schemaPath).Exists() {
		t.Errorf("first upstream call %s is not the model router's JSON-schema generateContent", r.Path)
	}
	if !strings.HasPrefix(a.Path, prefix) || !strings.HasSuffix(a.Path, ":streamGenerateContent") || a.RawQuery != "alt=sse" {
		t.Errorf("second upstream call %s?%s is not the streamed answer", a.Path, a.RawQuery)
	}
	return model(r), model(a)
}

// checkGeminiUsage insists on two usage records for the key, one per
// generation call, each with the fake's default usage mapped to crs's
// classes, on the router's and the answer's model.
func checkGeminiUsage(t *testing.T, dir, keyID, routerModel, answerModel string) {
	t.Helper()
	per := fakeupstream.Usage{Input: 16, CacheRead: 4, Output: 8}
	u := usage(t, dir, "--key", keyID)
	if len(u.Keys) != 1 || u.Keys[0].Requests != 2 || u.Keys[0].Tokens() != times(per, 2) {
		t.Fatalf("usage after one gemini -p = %+v, want 2 records of %+v (router call + answer)", u.Keys, per)
	}
	got := map[string]testkit.UsageRow{}
	for _, m := range u.Models {
		got[m.Model] = m
	}
	for _, m := range []string{routerModel, answerModel} {
		if row, ok := got[m]; !ok || row.Requests != 1 || row.Tokens() != per {
			t.Errorf("usage of model %s = %+v, want 1 record of %+v (all models: %+v)", m, row, per, u.Models)
		}
	}
}

// onboardGoogle adds the fake Google user as a Gemini OAuth account with
// `crs accounts oauth start/finish`, approving the consent the way the
// user's browser would.
func onboardGoogle(t *testing.T, dir string, google *fakeupstream.GoogleOAuth, env []string) {
	t.Helper()
	oauthCLI := func(args ...string) string {
		r := crsExec(t, "", env, append(args, "--data-dir", dir)...)
		if r.code != 0 {
			t.Fatalf("crs %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
		}
		return r.stdout
	}
	var st struct {
		SessionID string `json:"session_id"`
		AuthURL   string `json:"auth_url"`
	}
	testkit.MustJSON(t, oauthCLI("accounts", "oauth", "start", "--platform", "gemini", "--json"), &st)
	u, err := url.Parse(st.AuthURL)
	if err != nil || st.SessionID == "" {
		t.Fatalf("oauth start: session %q, auth_url %q: %v", st.SessionID, st.AuthURL, err)
	}
	code := google.IssueCode(u.Query().Get("code_challenge"))
	var acct struct{ Platform, Type string }
	testkit.MustJSON(t, oauthCLI("accounts", "oauth", "finish", st.SessionID, "--code", code, "--json"), &acct)
	if acct.Platform != "gemini" || acct.Type != "oauth" {
		t.Fatalf("onboarded %+v, want a gemini oauth account", acct)
	}
}

// TestGeminiNativeModelMapping: a Gemini API-key account that serves a
// model under another name (`--models team-flash=gemini-2.5-flash`) gets
// that name where the native API reads it, in the path, on the plain and
// the streamed route; a model outside the account's list is refused
// without reaching it.
func TestGeminiNativeModelMapping(t *testing.T) {
	t.Parallel()
	fake := fakeupstream.StartGemini(t, fakeupstream.GeminiOptions{APIKeys: []string{upstreamGeminiKey}})
	dir := t.TempDir()
	crsCLI(t, dir, upstreamGeminiKey+"\n", "accounts", "add", "--platform", "gemini", "--type", "api-key",
		"--name", "gm", "--api-key", "-", "--base-url", fake.URL(), "--models", "team-flash=gemini-2.5-flash", "--json")
	_, key := createKey(t, dir, "gemini")
	srv := startCRS(t, dir)

	body := `{"contents":[{"role":"user","parts":[{"text":"say pong"}]}]}`
	for _, tc := range []struct{ action, query, upstream string }{
		{"generateContent", "", "/v1beta/models/gemini-2.5-flash:generateContent"},
		{"streamGenerateContent", "?alt=sse", "/v1beta/models/gemini-2.5-flash:streamGenerateContent"},
	} {
		fake.Reset()
		req, _ := http.NewRequest(http.MethodPost, srv.url+"/gemini/v1beta/models/team-flash:"+tc.action+tc.query, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Goog-Api-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.action, resp.StatusCode, got)
		}
		if p := paths(fake.Requests()); len(p) != 1 || !strings.HasPrefix(p[0], "POST "+tc.upstream) {
			t.Errorf("%s: upstream saw %q, want one request to %s", tc.action, p, tc.upstream)
		}
	}

	fake.Reset()
	req, _ := http.NewRequest(http.MethodPost, srv.url+"/gemini/v1beta/models/gemini-2.5-pro:generateContent", strings.NewReader(body))
	req.Header.Set("X-Goog-Api-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK || len(fake.Requests()) != 0 {
		t.Errorf("a model the account does not list: %d, upstream saw %q; want refused before the upstream", resp.StatusCode, paths(fake.Requests()))
	}
}
