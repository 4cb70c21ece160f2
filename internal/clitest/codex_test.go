package clitest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/fakeupstream"
)

// readmeCodexBlock is the Codex block of the original project's README
// (spec/README.zh.md), copied by hand with its base_url comment dropped;
// CodexRequiresOpenAIAuth must contain it unchanged.
const readmeCodexBlock = `model_provider = "crs"
model = "gpt-5.1-codex-max"
model_reasoning_effort = "high"
disable_response_storage = true
preferred_auth_method = "apikey"
[model_providers.crs]
name = "crs"
base_url = "http://127.0.0.1:3000/openai"
wire_api = "responses"
requires_openai_auth = true
env_key = "CRS_OAI_KEY"
`

func TestCodexConfigTOML(t *testing.T) {
	const base = "http://127.0.0.1:3000/openai"
	got, err := CodexConfigTOML(CodexRequiresOpenAIAuth, base)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, readmeCodexBlock) {
		t.Errorf("README config not verbatim in:\n%s", got)
	}
	for _, c := range []CodexConfig{CodexEnvKey, CodexRequiresOpenAIAuth} {
		got, err := CodexConfigTOML(c, base)
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		// A top-level key after the first [table] would belong to that
		// table, so the quiet top-level key must precede every header.
		firstTable := strings.Index(got, "\n[")
		if i := strings.Index(got, "check_for_update_on_startup = false"); i < 0 || i > firstTable {
			t.Errorf("%v: check_for_update_on_startup missing or inside a table:\n%s", c, got)
		}
		for _, want := range []string{"[features]\nplugins = false\napps = false", "[analytics]\nenabled = false",
			`base_url = "` + base + `"`, `wire_api = "responses"`, `env_key = "` + CodexKeyEnv + `"`} {
			if !strings.Contains(got, want) {
				t.Errorf("%v: %q missing:\n%s", c, want, got)
			}
		}
	}
	if _, err := CodexConfigTOML(CodexConfig(99), base); err == nil {
		t.Error("an unknown config was accepted")
	}
	if got := tomlString(`a"b\c`); got != `"a\"b\\c"` {
		t.Errorf("tomlString = %s", got)
	}
}

// TestCodexExecPong runs the real Codex CLI with each config straight
// against the fake OpenAI Responses API (no relay), so a failure here is
// the harness's or the CLI's, not crs's: one streamed POST /responses with
// the key as Bearer, the fake's reply alone on stdout, and no attempt to
// reach any other host.
func TestCodexExecPong(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real Codex CLI")
	}
	t.Parallel()
	bin := InstallCodex(t)
	for _, cfg := range []CodexConfig{CodexEnvKey, CodexRequiresOpenAIAuth} {
		t.Run(cfg.String(), func(t *testing.T) {
			t.Parallel()
			fake := fakeupstream.StartOpenAI(t, fakeupstream.OpenAIOptions{APIKeys: []string{"cr_test"}})
			ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
			defer cancel()
			home := t.TempDir()

			res, err := RunCodexExec(ctx, bin, cfg, fake.URL()+"/v1", "cr_test", "say pong", home)
			if err != nil {
				t.Fatalf("RunCodexExec: %v\nstdout: %s\nstderr: %s\negress: %q", err, res.Stdout, res.Stderr, res.Egress)
			}
			t.Logf("codex exec took %s", res.Elapsed.Round(time.Millisecond))
			want := fakeupstream.ReplyText(5)
			if res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != want {
				t.Fatalf("exit %d, stdout %q; want 0 and %q\nstderr: %s\negress: %q", res.ExitCode, res.Stdout, want, res.Stderr, res.Egress)
			}
			if extra := res.UnknownEgress(cfg.KnownEgress()); len(extra) != 0 {
				t.Errorf("Codex tried to reach %q despite the quiet settings", extra)
			}
			if b, err := os.ReadFile(filepath.Join(home, ".codex", "config.toml")); err != nil || !strings.Contains(string(b), fake.URL()+"/v1") {
				t.Errorf("config.toml in HOME: %v\n%s", err, b)
			}

			reqs := fake.Requests()
			if len(reqs) != 1 {
				t.Fatalf("fake saw %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != "POST" || r.Path != "/v1/responses" || r.Header.Get("Authorization") != "Bearer cr_test" {
				t.Errorf("request %s %s auth %q, want POST /v1/responses with Bearer cr_test", r.Method, r.Path, r.Header.Get("Authorization"))
			}
			if !gjson.GetBytes(r.Body, "stream").Bool() {
				t.Error("Codex did not ask for a stream")
			}
			if m := cfg.Model(); m != "" && gjson.GetBytes(r.Body, "model").String() != m {
				t.Errorf("model %q, want %q from the config", gjson.GetBytes(r.Body, "model").String(), m)
			}
			if ua := r.Header.Get("User-Agent"); !strings.Contains(ua, CodexVersion) {
				t.Errorf("User-Agent %q does not name Codex %s", ua, CodexVersion)
			}
		})
	}
}
