package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/oauth"
)

// pointAtFakeOAuth starts the fake OAuth server and points the CLI at it
// through the CLAUDE_OAUTH_* variables, as an operator would.
func pointAtFakeOAuth(t *testing.T) *fakeupstream.OAuth {
	t.Helper()
	fake := fakeupstream.StartOAuth(t)
	t.Setenv("CLAUDE_OAUTH_AUTHORIZE_URL", fake.AuthorizeURL())
	t.Setenv("CLAUDE_OAUTH_TOKEN_URL", fake.TokenURL())
	t.Setenv("CLAUDE_OAUTH_PROFILE_URL", fake.ProfileURL())
	t.Setenv("CLAUDE_OAUTH_USAGE_URL", fake.UsageURL())
	return fake
}

// forwardProxy is a plain HTTP forward proxy on loopback that counts the
// requests it carried.
func forwardProxy(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !r.URL.IsAbs() {
			http.Error(w, "not a proxy request", http.StatusBadRequest)
			return
		}
		n.Add(1)
		out := r.Clone(r.Context())
		out.RequestURI = ""
		res, err := http.DefaultTransport.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		for k, v := range res.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(res.StatusCode)
		io.Copy(w, res.Body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &n
}

// browserApprove plays the browser: it reads the challenge and state from
// the auth URL and has the fake issue a code for them.
func browserApprove(t *testing.T, fake *fakeupstream.OAuth, authURL string) string {
	t.Helper()
	if !strings.HasPrefix(authURL, fake.AuthorizeURL()+"?") {
		t.Fatalf("auth URL %s is not the fake's authorize URL", authURL)
	}
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") == "" {
		t.Fatalf("auth URL lacks PKCE: %s", authURL)
	}
	return fake.IssueCode(q.Get("code_challenge"), q.Get("state"))
}

func TestAccountsOAuthCommands(t *testing.T) {
	isolate(t)
	fake := pointAtFakeOAuth(t)
	dir := t.TempDir()
	d := []string{"--data-dir", dir}
	proxy, proxied := forwardProxy(t)

	// Usage errors.
	fails(t, 2, "--platform is required", append([]string{"accounts", "oauth", "start"}, d...)...)
	fails(t, 2, "no OAuth onboarding", append([]string{"accounts", "oauth", "start", "--platform", "droid"}, d...)...)
	fails(t, 1, "setup tokens exist for claude", append([]string{"accounts", "oauth", "start", "--platform", "openai", "--kind", "setup-token"}, d...)...)
	fails(t, 1, "--kind", append([]string{"accounts", "oauth", "start", "--platform", "claude", "--kind", "api-key"}, d...)...)
	fails(t, 1, "--proxy", append([]string{"accounts", "oauth", "start", "--platform", "claude", "--proxy", "ftp://x:1"}, d...)...)
	fails(t, 2, "SESSION_ID", append([]string{"accounts", "oauth", "finish", "--code", "x"}, d...)...)
	fails(t, 2, "--code is required", append([]string{"accounts", "oauth", "finish", "oas_x"}, d...)...)
	fails(t, 1, "session oas_nope", append([]string{"accounts", "oauth", "finish", "oas_nope", "--code", "abcdefghijklmnop"}, d...)...)

	// Start with every flag and --json, through the proxy.
	out := ok(t, "", append([]string{"accounts", "oauth", "start", "--platform", "claude", "--kind", "oauth", "--proxy", proxy, "--json"}, d...)...)
	var st map[string]json.RawMessage
	decodeJSON(t, out, &st)
	var sessionID, authURL string
	json.Unmarshal(st["session_id"], &sessionID)
	json.Unmarshal(st["auth_url"], &authURL)
	wantFields(t, "started", st, map[string]string{"kind": `"oauth"`}, "session_id", "auth_url", "expires_at")
	code := browserApprove(t, fake, authURL)

	// A bad code is refused without spending the session.
	fails(t, 1, "--code", append([]string{"accounts", "oauth", "finish", sessionID, "--code", "short"}, d...)...)
	out = ok(t, "", append([]string{"accounts", "oauth", "finish", sessionID, "--code", code, "--name", "max", "--priority", "5", "--json"}, d...)...)
	var acct map[string]json.RawMessage
	decodeJSON(t, out, &acct)
	wantFields(t, "account", acct, map[string]string{
		"name": `"max"`, "platform": `"claude"`, "type": `"oauth"`, "priority": "5", "status": `"active"`,
		"plan": `"max"`, "has_secret": "true",
	}, "id", "proxy")
	if proxied.Load() != 2 {
		t.Fatalf("proxy carried %d requests, want the exchange and the profile", proxied.Load())
	}
	fails(t, 1, "session "+sessionID, append([]string{"accounts", "oauth", "finish", sessionID, "--code", code}, d...)...)

	// Human output, setup-token kind, the callback URL pasted on stdin, the
	// default name.
	out = ok(t, "", append([]string{"accounts", "oauth", "start", "--platform", "claude", "--kind", "setup-token"}, d...)...)
	if !strings.Contains(out, "crs accounts oauth finish oas_") || !strings.Contains(out, fake.AuthorizeURL()+"?") {
		t.Fatalf("human start output %q", out)
	}
	authURL = strings.Fields(out[strings.Index(out, fake.AuthorizeURL()):])[0]
	sessionID = strings.Fields(out[strings.Index(out, "finish oas_")+len("finish "):])[0]
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	callback := res.Header.Get("Location")
	out = ok(t, callback+"\n", append([]string{"accounts", "oauth", "finish", sessionID, "--code", "-"}, d...)...)
	if !strings.Contains(out, "claude-setup-token") || !strings.Contains(out, "setup-token") || !strings.Contains(out, "plan unknown") {
		t.Fatalf("human finish output %q", out)
	}

	// Import from stdin and from --file, with every flag.
	cred := `{"claudeAiOauth":{"accessToken":"sk-ant-oat01-IMPORTED-SECRET","refreshToken":"sk-ant-ort01-IMPORTED-REFRESH","expiresAt":1893456000000,"scopes":["user:inference"]}}`
	out = ok(t, cred, append([]string{"accounts", "oauth", "import", "--name", "imported", "--priority", "7", "--proxy", "socks5://127.0.0.1:1080", "--json"}, d...)...)
	decodeJSON(t, out, &acct)
	wantFields(t, "imported", acct, map[string]string{"type": `"oauth"`, "priority": "7", "proxy": `"socks5://127.0.0.1:1080"`, "plan": `""`})
	file := filepath.Join(t.TempDir(), ".credentials.json")
	os.WriteFile(file, []byte(`{"accessToken":"sk-ant-oat01-FILE-SECRET"}`), 0o600)
	out = ok(t, "", append([]string{"accounts", "oauth", "import", "--name", "from-file", "--file", file}, d...)...)
	if !strings.Contains(out, "Added account acc_") || !strings.Contains(out, "setup-token") {
		t.Fatalf("import output %q", out)
	}
	fails(t, 2, "--name is required", append([]string{"accounts", "oauth", "import"}, d...)...)
	failsIn(t, "", 1, "stdin was empty", append([]string{"accounts", "oauth", "import", "--name", "n"}, d...)...)
	failsIn(t, "{not json", 1, "credential", append([]string{"accounts", "oauth", "import", "--name", "n"}, d...)...)
	fails(t, 1, "no such file", append([]string{"accounts", "oauth", "import", "--name", "n", "--file", filepath.Join(dir, "missing.json")}, d...)...)

	// The listing shows all four with their plan; the secrets are sealed.
	out = ok(t, "", append([]string{"accounts", "list", "--json"}, d...)...)
	var list []admin.AccountView
	decodeJSON(t, out, &list)
	if len(list) != 4 || list[0].Plan != "max" || list[1].Type != "setup-token" || list[2].Name != "imported" {
		t.Fatalf("list %+v", list)
	}
	e, err := openEnv(context.Background(), dir, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	a, err := e.Store.GetAccount(context.Background(), list[2].ID)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := oauth.OpenCredential(e.Box, a.SealedSecret); err != nil || c.RefreshToken != "sk-ant-ort01-IMPORTED-REFRESH" {
		t.Fatalf("imported credential %v %v", c, err)
	}
	db, _ := os.ReadFile(filepath.Join(dir, DBFile))
	wal, _ := os.ReadFile(filepath.Join(dir, DBFile+"-wal"))
	for _, s := range []string{"IMPORTED-SECRET", "IMPORTED-REFRESH", "FILE-SECRET"} {
		if strings.Contains(string(db)+string(wal), s) {
			t.Fatalf("%s stored in plaintext", s)
		}
	}

	// The commands are in the help.
	help := ok(t, "", "help")
	for _, c := range []string{"accounts oauth start", "accounts oauth finish", "accounts oauth import"} {
		if !strings.Contains(help, "crs "+c+" ") {
			t.Errorf("help lacks %s", c)
		}
	}
}
