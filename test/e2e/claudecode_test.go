package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/clitest"
	"github.com/crs-relay/crs/internal/fakeupstream"
)

// TestClaudeCodeThroughCRS runs the real Claude Code CLI (`claude -p`)
// through the crs binary against the fake Anthropic API: with a good relay
// key (as ANTHROPIC_AUTH_TOKEN and as ANTHROPIC_API_KEY) the reply and the
// recorded usage are right, one record per run; with a wrong key the CLI
// stops after one request and shows crs's message. Each subtest has its own
// crs and fake, so the access log counts only its own CLI's requests.
func TestClaudeCodeThroughCRS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real Claude Code CLI")
	}
	t.Parallel()
	bin := clitest.InstallClaudeCode(t)

	cases := []struct {
		name    string
		prefix  string // appended to crs's URL for ANTHROPIC_BASE_URL
		viaAuth bool   // ANTHROPIC_AUTH_TOKEN (Bearer) rather than ANTHROPIC_API_KEY (x-api-key)
		badKey  bool
	}{
		{"auth_token", "/api", true, false},
		{"api_key", "/api", false, false},
		// The /claude prefix, with the trailing slash users paste (a
		// client may turn it into /claude//v1/messages; crs must serve it).
		{"claude_prefix_trailing_slash", "/claude/", true, false},
		{"wrong_key", "/api", true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{Deltas: 1})
			dir := t.TempDir()
			addAccount(t, dir, fake, "a", 50)
			keyID, key := createKey(t, dir, "cli")
			srv := startCRS(t, dir)
			if tc.badKey {
				key = "cr_" + strings.Repeat("0", 64)
			}
			authKey, env := key, []string(nil)
			if !tc.viaAuth {
				authKey, env = "", []string{"ANTHROPIC_API_KEY=" + key}
			}

			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			start := time.Now()
			res, err := clitest.RunClaudeP(ctx, bin, srv.url+tc.prefix, authKey, "say pong", env...)
			if err != nil {
				t.Fatalf("claude -p: %v\nstdout: %s\nstderr: %s\ncrs: %s", err, res.Stdout, res.Stderr, srv.stderr)
			}
			t.Logf("claude -p exited %d after %v", res.ExitCode, res.Elapsed.Round(time.Millisecond))
			calls := accessLog(srv.stderr.String(), "/v1/messages")

			if tc.badKey {
				if res.ExitCode == 0 || !strings.Contains(res.Stdout+res.Stderr, "crs: invalid relay key") {
					t.Fatalf("wrong key: exit %d, output %q %q; want non-zero and crs's message", res.ExitCode, res.Stdout, res.Stderr)
				}
				if len(calls) != 1 || !strings.Contains(calls[0].line, "status=401") {
					t.Fatalf("wrong key: the CLI sent %d messages requests, want exactly 1 (answered 401):\n%s", len(calls), srv.stderr)
				}
				if fake.MessageCount() != 0 {
					t.Fatal("a wrong relay key reached the upstream")
				}
				// Start-up of the CLI is most of the time; from crs's answer
				// to the CLI's exit is how fast it gives up.
				giveUp := start.Add(res.Elapsed).Sub(calls[0].at)
				t.Logf("wrong key: CLI gave up %.1f s after crs's 401 (%.1f s in all, 1 request): %s",
					giveUp.Seconds(), res.Elapsed.Seconds(), res.Result())
				if giveUp > 20*time.Second {
					t.Fatalf("the CLI took %v after the 401 to give up", giveUp)
				}
				return
			}

			if res.ExitCode != 0 || res.Result() != "pong" {
				t.Fatalf("exit %d, result %q; want 0 and \"pong\"\nstdout: %s\nstderr: %s\ncrs: %s",
					res.ExitCode, res.Result(), res.Stdout, res.Stderr, srv.stderr)
			}
			want := fakeupstream.DefaultUsage()
			u := usage(t, dir, "--key", keyID)
			if len(u.Keys) != 1 || u.Keys[0].Requests != 1 || u.Keys[0].Tokens() != want || u.Keys[0].CW != want.CacheWrite5m+want.CacheWrite1h {
				t.Fatalf("usage after one claude -p run = %+v, want exactly 1 record of %+v", u.Keys, want)
			}
			if len(calls) != 1 {
				t.Errorf("the CLI sent %d messages requests through crs, want 1", len(calls))
			}
			if up := fake.Requests(); len(up) == 1 {
				t.Logf("upstream got %s %s?%s", up[0].Method, up[0].Path, up[0].RawQuery)
			}
			if got := fake.Requests(); len(got) != 1 || strings.Contains(got[0].Header.Get("Authorization")+got[0].Header.Get("X-Api-Key"), key) {
				t.Fatalf("upstream saw %d requests (or the relay key)", len(got))
			}
		})
	}
}

// logCall is one access-log line of crs.
type logCall struct {
	at   time.Time
	line string
}

// accessLog picks crs's access-log lines (slog text, msg=request) whose
// path ends in suffix.
func accessLog(stderr, suffix string) []logCall {
	var out []logCall
	for _, line := range strings.Split(stderr, "\n") {
		if !strings.Contains(line, "msg=request ") || !strings.Contains(line, suffix+" ") {
			continue
		}
		c := logCall{line: line}
		if ts, _, ok := strings.Cut(strings.TrimPrefix(line, "time="), " "); ok {
			c.at, _ = time.Parse(time.RFC3339Nano, ts)
		}
		out = append(out, c)
	}
	return out
}
