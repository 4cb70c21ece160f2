package clitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// RunResult is what one CLI run produced. A non-zero ExitCode is not an
// error: tests of rejected keys expect exactly that.
type RunResult struct {
	Stdout, Stderr string
	// ExitCode is the process exit status, or -1 if it was killed by a signal
	// (for example because ctx ended).
	ExitCode int
	Elapsed  time.Duration
	// JSON is stdout parsed as the object that --output-format json prints,
	// or nil if stdout held no JSON object. Only RunClaudeP fills it.
	JSON map[string]any
	// Egress lists the hosts outside this machine that the CLI tried to
	// reach, in the order first tried, for runners that guard the CLI
	// (RunCodexExec, RunGeminiP): all such traffic goes to a local proxy
	// that refuses it, so no test depends on, or talks to, the internet.
	// A vendor host the CLI cannot work without shows up here in the
	// failing run.
	Egress []string
}

// Result returns the "result" field of the JSON output (the assistant's final
// text on success, the error text on failure), or "" if there is none.
func (r RunResult) Result() string {
	s, _ := r.JSON["result"].(string)
	return s
}

// UnknownEgress returns the entries of r.Egress that are not in known (a
// client's KnownEgress): hosts a client started to need or to call home to
// since the research in docs/clients.md, which a test should fail on.
func (r RunResult) UnknownEgress(known []string) []string {
	var out []string
	for _, h := range r.Egress {
		if !slices.Contains(known, h) {
			out = append(out, h)
		}
	}
	return out
}

// killGrace is how long Wait waits for the pipes to close after the process
// group was killed, so a stuck grandchild cannot hang the test.
const killGrace = 2 * time.Second

// RunClaudeP runs `claude -p prompt --output-format json` against baseURL,
// the way a crs user would, but sealed off from the machine it runs on:
//
//   - a fresh temporary HOME and working directory (removed afterwards), so no
//     user settings, login, project memory or earlier session leaks in;
//   - a minimal environment (PATH, LANG) instead of the caller's, so no proxy
//     variables, no ANTHROPIC_* from a developer's shell and no CLAUDECODE
//     from a surrounding Claude Code session change the result;
//   - ANTHROPIC_BASE_URL=baseURL and, if key is not empty,
//     ANTHROPIC_AUTH_TOKEN=key (sent as "Authorization: Bearer"). To test
//     x-api-key instead, pass key "" and "ANTHROPIC_API_KEY=…" in extraEnv;
//   - CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC, DISABLE_TELEMETRY and
//     DISABLE_AUTOUPDATER set, so the CLI talks only to baseURL.
//
// extraEnv entries ("K=V") come last and override the above. The process
// group is killed when ctx ends; RunClaudeP then returns the partial result
// together with ctx's error. An error is also returned if the CLI could not be
// started at all.
func RunClaudeP(ctx context.Context, bin, baseURL, key, prompt string, extraEnv ...string) (RunResult, error) {
	home, err := os.MkdirTemp("", "crs-claude-home-")
	if err != nil {
		return RunResult{}, err
	}
	defer os.RemoveAll(home)

	env := append(baseEnv(home, os.TempDir()),
		"ANTHROPIC_BASE_URL="+baseURL,
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
		"DISABLE_TELEMETRY=1",
		"DISABLE_AUTOUPDATER=1",
	)
	if key != "" {
		env = append(env, "ANTHROPIC_AUTH_TOKEN="+key)
	}
	env = append(env, extraEnv...) // exec uses the last value of a duplicated key
	res, err := run(ctx, "claude -p", bin, []string{"-p", prompt, "--output-format", "json"}, env)
	res.JSON = parseJSONObject(res.Stdout)
	return res, err
}

// run starts bin with args and exactly env in a fresh working directory
// (removed afterwards), waits for it and collects what it printed. The
// process group is killed when ctx ends; run then returns the partial
// result together with ctx's error. A non-zero exit is not an error; not
// being able to start the program is. name labels errors.
func run(ctx context.Context, name, bin string, args, env []string) (RunResult, error) {
	work, err := os.MkdirTemp("", "crs-cli-cwd-")
	if err != nil {
		return RunResult{}, err
	}
	defer os.RemoveAll(work)

	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Dir = work
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = killGrace
	killGroupOnCancel(cmd)

	start := time.Now()
	err = cmd.Run()
	res := RunResult{
		Stdout:   stdout.String(),
		Stderr:   stderr.String(),
		ExitCode: -1,
		Elapsed:  time.Since(start),
	}
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}

	if ctx.Err() != nil {
		return res, fmt.Errorf("clitest: %s stopped after %s: %w", name, res.Elapsed.Round(time.Millisecond), context.Cause(ctx))
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return res, fmt.Errorf("clitest: run %s: %w", bin, err)
	}
	return res, nil
}

// runGuarded is run with the CLI's outside traffic sent to an egressGuard
// (env gets the proxy variables before extraEnv, so a test can still
// override them); the refused hosts land in RunResult.Egress.
func runGuarded(ctx context.Context, name, bin string, args, env, extraEnv []string) (RunResult, error) {
	guard, err := startEgressGuard()
	if err != nil {
		return RunResult{}, fmt.Errorf("clitest: egress guard: %w", err)
	}
	env = append(append(env, guard.env()...), extraEnv...)
	res, err := run(ctx, name, bin, args, env)
	res.Egress = guard.close()
	return res, err
}

// baseEnv is the environment every CLI process starts from: enough to find
// programs and decode text, nothing that identifies the caller's machine.
// tmp is its TMPDIR.
func baseEnv(home, tmp string) []string {
	env := []string{
		"HOME=" + home,
		"PATH=" + os.Getenv("PATH"),
		"LANG=C.UTF-8",
		"TERM=dumb",
		"TMPDIR=" + tmp,
	}
	return env
}

// homeEnv is baseEnv with TMPDIR inside home, for runs whose HOME the
// caller throws away: Gemini CLI writes an error report to TMPDIR for
// every failed API call, and those should go with the run.
func homeEnv(home string) ([]string, error) {
	tmp := filepath.Join(home, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	return baseEnv(home, tmp), nil
}

// parseJSONObject decodes stdout as one JSON object; if other text surrounds
// it, the last line that parses as an object wins.
func parseJSONObject(stdout string) map[string]any {
	var m map[string]any
	if json.Unmarshal([]byte(strings.TrimSpace(stdout)), &m) == nil {
		return m
	}
	lines := strings.Split(stdout, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		line := strings.TrimSpace(lines[i])
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &m) == nil {
			return m
		}
	}
	return nil
}
