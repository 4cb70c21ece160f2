package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/oauth"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr() != "0.0.0.0:3000" || c.DataDir != "./data" || c.MaxBodyBytes != 60<<20 ||
		c.StickyTTL != time.Hour || c.ClaudeAPIURL != "https://api.anthropic.com" || c.LogLevel != "info" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}

func TestInvalidValuesNameTheVariable(t *testing.T) {
	for name, val := range map[string]string{
		"PORT":                         "70000",
		"LOG_LEVEL":                    "loud",
		"LOG_FORMAT":                   "xml",
		"ENCRYPTION_KEY":               "short",
		"CLAUDE_API_URL":               "ftp://x",
		"TIMEZONE":                     "Mars/Olympus",
		"TRUST_PROXY":                  "10.0.0.0/99",
		"REQUEST_MAX_SIZE_MB":          "zero",
		"UPSTREAM_FIRST_EVENT_TIMEOUT": "-1s",
		"PPROF_ADDR":                   "6060",
		"CLAUDE_OAUTH_AUTHORIZE_URL":   "claude.ai/oauth/authorize",
		"CLAUDE_OAUTH_TOKEN_URL":       "ftp://x/token",
		"CLAUDE_OAUTH_PROFILE_URL":     "https://x/profile?a=1",
		"CLAUDE_OAUTH_USAGE_URL":       "https://x/usage#frag",
		"CLAUDE_OAUTH_REFRESH_AHEAD":   "soon",
		"CLAUDE_CODE_ONLY":             "maybe",
		"USER_MESSAGE_QUEUE_DELAY":     "0",
		"USER_MESSAGE_QUEUE_TIMEOUT":   "-5s",
		"CONCURRENCY_QUEUE":            "sometimes",
		"CONCURRENCY_QUEUE_TIMEOUT":    "never",
	} {
		_, err := Load(env(map[string]string{name: val}))
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: err = %v, want one naming %s", name, val, err, name)
		}
	}
}

// TestLogAndMetricsSettings: LOG_FORMAT unset stays "" (decided at start
// by whether standard error is a terminal); set, it is text or json.
func TestLogAndMetricsSettings(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil || c.LogFormat != "" || c.LogDir != "" || c.MetricsToken != "" {
		t.Fatalf("defaults: %q %q %q %v", c.LogFormat, c.LogDir, c.MetricsToken, err)
	}
	c, err = Load(env(map[string]string{"LOG_FORMAT": " JSON ", "LOG_DIR": "/var/log/crs", "METRICS_TOKEN": " t0ken "}))
	if err != nil || c.LogFormat != "json" || c.LogDir != "/var/log/crs" || c.MetricsToken != "t0ken" {
		t.Fatalf("parsed: %q %q %q %v", c.LogFormat, c.LogDir, c.MetricsToken, err)
	}
	documented := map[string]bool{}
	for _, v := range Vars() {
		documented[v.Name] = true
	}
	for _, name := range []string{"LOG_FORMAT", "LOG_DIR", "METRICS_TOKEN"} {
		if !documented[name] {
			t.Errorf("%s missing from Vars", name)
		}
	}
}

func TestParsesValues(t *testing.T) {
	c, err := Load(env(map[string]string{
		"HOST": "127.0.0.1", "PORT": "8080", "TIMEZONE": "Asia/Shanghai",
		"TRUST_PROXY": "10.0.0.0/8, 127.0.0.1", "REQUEST_MAX_SIZE_MB": "2",
		"CLAUDE_API_URL": "http://127.0.0.1:9/", "LOG_LEVEL": "DEBUG",
		"CLAUDE_OAUTH_REFRESH_AHEAD": "10m", "CLAUDE_CODE_ONLY": "true",
		"USER_MESSAGE_QUEUE_DELAY": "1s", "USER_MESSAGE_QUEUE_TIMEOUT": "90s",
		"CONCURRENCY_QUEUE": "true", "CONCURRENCY_QUEUE_TIMEOUT": "5s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.ConcurrencyQueue || c.ConcurrencyQueueTimeout != 5*time.Second {
		t.Fatalf("queue: %v %v", c.ConcurrencyQueue, c.ConcurrencyQueueTimeout)
	}
	if c.RefreshAhead != 10*time.Minute || !c.ClaudeCodeOnly || c.UserMessageQueueDelay != time.Second || c.UserMessageQueueTimeout != 90*time.Second {
		t.Fatalf("parsed: ahead %v, cc-only %v, queue %v/%v", c.RefreshAhead, c.ClaudeCodeOnly, c.UserMessageQueueDelay, c.UserMessageQueueTimeout)
	}
	if c.Addr() != "127.0.0.1:8080" || c.Location.String() != "Asia/Shanghai" || len(c.TrustProxy) != 2 ||
		c.MaxBodyBytes != 2<<20 || c.ClaudeAPIURL != "http://127.0.0.1:9" || c.LogLevel != "debug" {
		t.Fatalf("parsed: %+v", c)
	}
}

func TestEnsureSecretsGeneratesOnceWithMode0600(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	c := Config{DataDir: dir}
	n := 0
	rnd := func(int) string { n++; return strings.Repeat(string(rune('a'+n)), 64) }
	gen, err := c.EnsureSecrets(rnd)
	if err != nil || len(gen) != 2 {
		t.Fatalf("gen=%v err=%v", gen, err)
	}
	for _, f := range []string{EncryptionKeyFile, JWTSecretFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, st.Mode(), err)
		}
	}
	c2 := Config{DataDir: dir}
	gen2, err := c2.EnsureSecrets(rnd)
	if err != nil || len(gen2) != 0 || c2.EncryptionKey != c.EncryptionKey || c2.JWTSecret != c.JWTSecret {
		t.Fatalf("second start regenerated: %v %v", gen2, err)
	}
	c3 := Config{DataDir: dir, EncryptionKey: strings.Repeat("e", 40)}
	if _, err := c3.EnsureSecrets(rnd); err != nil || c3.EncryptionKey != strings.Repeat("e", 40) {
		t.Fatal("env value not preferred")
	}
}

func TestClaudeOAuthEndpoints(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.ClaudeOAuth != oauth.DefaultClaudeEndpoints() {
		t.Fatalf("defaults: %+v", c.ClaudeOAuth)
	}
	want := oauth.Endpoints{
		AuthorizeURL: "http://127.0.0.1:9/oauth/authorize",
		TokenURL:     "http://127.0.0.1:9/v1/oauth/token",
		ProfileURL:   "http://127.0.0.1:9/api/oauth/profile",
		UsageURL:     "http://127.0.0.1:9/api/oauth/usage",
	}
	c, err = Load(env(map[string]string{
		"CLAUDE_OAUTH_AUTHORIZE_URL": want.AuthorizeURL, "CLAUDE_OAUTH_TOKEN_URL": want.TokenURL,
		"CLAUDE_OAUTH_PROFILE_URL": " " + want.ProfileURL + " ", "CLAUDE_OAUTH_USAGE_URL": want.UsageURL,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.ClaudeOAuth != want {
		t.Fatalf("got %+v, want %+v", c.ClaudeOAuth, want)
	}
	names := map[string]bool{}
	for _, v := range Vars() {
		names[v.Name] = true
	}
	for _, n := range []string{"CLAUDE_OAUTH_AUTHORIZE_URL", "CLAUDE_OAUTH_TOKEN_URL", "CLAUDE_OAUTH_PROFILE_URL", "CLAUDE_OAUTH_USAGE_URL"} {
		if !names[n] {
			t.Errorf("Vars() lacks %s", n)
		}
	}
}

func TestPoolEndpoints(t *testing.T) {
	c, err := Load(env(map[string]string{
		"OPENAI_API_URL": "http://127.0.0.1:1/v1", "CODEX_API_URL": "http://127.0.0.1:2/backend-api/codex",
		"GEMINI_API_URL": "http://127.0.0.1:3", "CODE_ASSIST_API_URL": "http://127.0.0.1:4",
		"OPENAI_OAUTH_AUTHORIZE_URL": "http://127.0.0.1:5/oauth/authorize", "OPENAI_OAUTH_TOKEN_URL": "http://127.0.0.1:5/oauth/token",
		"GOOGLE_OAUTH_AUTHORIZE_URL": "http://127.0.0.1:6/auth", "GOOGLE_OAUTH_TOKEN_URL": "http://127.0.0.1:6/token",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.OpenAIAPIURL != "http://127.0.0.1:1/v1" || c.CodexAPIURL != "http://127.0.0.1:2/backend-api/codex" ||
		c.GeminiAPIURL != "http://127.0.0.1:3" || c.CodeAssistAPIURL != "http://127.0.0.1:4" ||
		c.OpenAIOAuth.TokenURL != "http://127.0.0.1:5/oauth/token" || c.OpenAIOAuth.AuthorizeURL != "http://127.0.0.1:5/oauth/authorize" ||
		c.GoogleOAuth.TokenURL != "http://127.0.0.1:6/token" || c.GoogleOAuth.AuthorizeURL != "http://127.0.0.1:6/auth" ||
		c.GoogleOAuth.CodeAssistURL != "http://127.0.0.1:4" {
		t.Fatalf("parsed %+v", c)
	}
	d, err := Load(env(nil))
	if err != nil || d.OpenAIOAuth.TokenURL == "" || d.GoogleOAuth.TokenURL == "" || d.CodexAPIURL == "" {
		t.Fatalf("defaults %+v %v", d, err)
	}
}
