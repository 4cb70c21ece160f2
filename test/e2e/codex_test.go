package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/clitest"
	"github.com/crs-relay/crs/internal/fakeupstream"
)

// upstreamOpenAIKey is the secret of the OpenAI API-key account; the fake
// accepts only it, so a relay key passed through would be refused.
const upstreamOpenAIKey = "sk-upstream-codex"

// TestCodexThroughCRS runs the real Codex CLI (`codex exec`) through the
// crs binary against the fake OpenAI Responses API, once with each
// documented config.toml (docs/clients.md): the CLI exits 0 and prints the
// fake's answer; crs records exactly one usage row for the run, with
// OpenAI's cached input moved out of input into cache reads (the fake's
// input 16 / cached 5 / output 3 become input 11, cache read 5, output 3);
// the model the config pins is the one recorded; and the upstream sees the
// account's key, never the relay key. Each subtest has its own crs and
// fake.
func TestCodexThroughCRS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real Codex CLI")
	}
	t.Parallel()
	bin := clitest.InstallCodex(t)

	for _, cfg := range []clitest.CodexConfig{clitest.CodexEnvKey, clitest.CodexRequiresOpenAIAuth} {
		t.Run(cfg.String(), func(t *testing.T) {
			t.Parallel()
			fake := fakeupstream.StartOpenAI(t, fakeupstream.OpenAIOptions{APIKeys: []string{upstreamOpenAIKey}})
			dir := t.TempDir()
			crsCLI(t, dir, upstreamOpenAIKey+"\n", "accounts", "add", "--platform", "openai", "--type", "api-key",
				"--name", "oa", "--api-key", "-", "--base-url", fake.URL(), "--json")
			keyID, key := createKey(t, dir, "codex")
			srv := startCRS(t, dir)

			ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
			defer cancel()
			res, err := clitest.RunCodexExec(ctx, bin, cfg, srv.url+"/openai", key, "say pong", t.TempDir())
			if err != nil {
				t.Fatalf("codex exec: %v\nstdout: %s\nstderr: %s\ncrs: %s", err, res.Stdout, res.Stderr, srv.stderr)
			}
			t.Logf("codex exec exited %d after %v; egress %q", res.ExitCode, res.Elapsed.Round(time.Millisecond), res.Egress)
			reply := fakeupstream.ReplyText(5)
			if res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != reply {
				t.Fatalf("exit %d, stdout %q; want 0 and the fake's reply %q\nstderr: %s\ncrs: %s",
					res.ExitCode, res.Stdout, reply, res.Stderr, srv.stderr)
			}
			if extra := res.UnknownEgress(cfg.KnownEgress()); len(extra) != 0 {
				t.Errorf("Codex tried to reach %q outside this machine", extra)
			}

			u := usage(t, dir, "--key", keyID)
			want := fakeupstream.Usage{Input: 11, CacheRead: 5, Output: 3}
			if len(u.Keys) != 1 || u.Keys[0].Requests != 1 || u.Keys[0].Tokens() != want {
				t.Fatalf("usage after one codex exec = %+v, want exactly 1 record of %+v", u.Keys, want)
			}
			if m := cfg.Model(); m != "" && (len(u.Models) != 1 || u.Models[0].Model != m) {
				t.Errorf("usage models %+v, want the config's %s", u.Models, m)
			}

			reqs := fake.Requests()
			if len(reqs) != 1 || reqs[0].Path != "/v1/responses" {
				t.Fatalf("upstream saw %d requests (%v), want one POST /v1/responses", len(reqs), paths(reqs))
			}
			up := reqs[0]
			if got := up.Header.Get("Authorization"); got != "Bearer "+upstreamOpenAIKey {
				t.Errorf("upstream Authorization %q, want the account's key", got)
			}
			if !gjson.GetBytes(up.Body, "stream").Bool() || !strings.Contains(string(up.Body), "say pong") {
				t.Errorf("upstream body is not Codex's streamed prompt: %.300s", up.Body)
			}
			assertKeyNowhere(t, key, reqs)
		})
	}
}

// assertKeyNowhere fails the test if the relay key appears in any header
// or body an upstream received.
func assertKeyNowhere(t *testing.T, key string, reqs []fakeupstream.Request) {
	t.Helper()
	for _, r := range reqs {
		for name, vs := range r.Header {
			for _, v := range vs {
				if strings.Contains(v, key) {
					t.Errorf("relay key upstream in header %s of %s %s", name, r.Method, r.Path)
				}
			}
		}
		if strings.Contains(string(r.Body), key) || strings.Contains(r.RawQuery, key) {
			t.Errorf("relay key upstream in the query or body of %s %s", r.Method, r.Path)
		}
	}
}

// paths lists "METHOD path?query" of requests, for failure messages.
func paths(reqs []fakeupstream.Request) []string {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = r.Method + " " + r.Path
		if r.RawQuery != "" {
			out[i] += "?" + r.RawQuery
		}
	}
	return out
}
