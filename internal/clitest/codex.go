package clitest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CodexConfig selects which of the two documented ~/.codex/config.toml
// files RunCodexExec writes. Both are in docs/clients.md, and crs must work
// with each, because users copy one or the other.
type CodexConfig int

const (
	// CodexEnvKey is the smallest provider that works: a custom
	// model_provider with base_url, wire_api = "responses" and the relay
	// key read from the CodexKeyEnv variable. Codex then uses its default
	// model.
	CodexEnvKey CodexConfig = iota
	// CodexRequiresOpenAIAuth is the block from the original project's
	// README, verbatim except for base_url: it pins model
	// gpt-5.1-codex-max with high reasoning effort, sets
	// requires_openai_auth = true and carries two keys Codex 0.169 ignores
	// with a warning (disable_response_storage, preferred_auth_method). It
	// comes with ~/.codex/auth.json {"OPENAI_API_KEY": null}, as that
	// README says.
	CodexRequiresOpenAIAuth
)

// String names the config for subtests and messages.
func (c CodexConfig) String() string {
	switch c {
	case CodexEnvKey:
		return "env_key"
	case CodexRequiresOpenAIAuth:
		return "requires_openai_auth"
	}
	return fmt.Sprintf("CodexConfig(%d)", int(c))
}

// Model is the model the config pins, or "" when Codex picks its default.
func (c CodexConfig) Model() string {
	if c == CodexRequiresOpenAIAuth {
		return "gpt-5.1-codex-max"
	}
	return ""
}

// KnownEgress lists the hosts Codex tries to reach with c although the
// quiet settings are on; the attempts fail without harm. With
// requires_openai_auth = true Codex believes it has a ChatGPT login and
// makes one attempt at chatgpt.com per turn.
func (c CodexConfig) KnownEgress() []string {
	if c == CodexRequiresOpenAIAuth {
		return []string{"chatgpt.com"}
	}
	return nil
}

// CodexKeyEnv is the environment variable both configs name in env_key;
// RunCodexExec puts the relay key there.
const CodexKeyEnv = "CRS_OAI_KEY"

// codexQuietTop and codexQuietTables keep Codex as far off the internet as
// its settings allow: no update check, no plugin sync with github.com and
// chatgpt.com, no ChatGPT apps (an MCP server on chatgpt.com that
// requires_openai_auth otherwise connects to, retrying) and no analytics.
// With requires_openai_auth = true Codex 0.169 still makes one attempt at
// chatgpt.com per turn that no setting found so far turns off; it fails
// harmlessly. Top-level keys must come before the first [table] in TOML,
// hence two pieces around the provider block.
const (
	codexQuietTop    = "check_for_update_on_startup = false\n"
	codexQuietTables = "\n[features]\nplugins = false\napps = false\n\n[analytics]\nenabled = false\n"
)

// CodexConfigTOML is the config.toml RunCodexExec writes for c with the
// provider's base_url set to baseURL (crs's /openai prefix): the quiet
// settings, then the documented block unchanged.
func CodexConfigTOML(c CodexConfig, baseURL string) (string, error) {
	var block string
	switch c {
	case CodexEnvKey:
		block = `model_provider = "crs"

[model_providers.crs]
name = "crs"
base_url = ` + tomlString(baseURL) + `
wire_api = "responses"
env_key = "` + CodexKeyEnv + `"
`
	case CodexRequiresOpenAIAuth:
		block = `model_provider = "crs"
model = "gpt-5.1-codex-max"
model_reasoning_effort = "high"
disable_response_storage = true
preferred_auth_method = "apikey"
[model_providers.crs]
name = "crs"
base_url = ` + tomlString(baseURL) + `
wire_api = "responses"
requires_openai_auth = true
env_key = "` + CodexKeyEnv + `"
`
	default:
		return "", fmt.Errorf("clitest: unknown %v", c)
	}
	return codexQuietTop + block + codexQuietTables, nil
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

// RunCodexExec runs `codex exec --skip-git-repo-check prompt` against
// baseURL (crs's URL plus /openai), the way a crs user would, but sealed off
// from the machine it runs on:
//
//   - HOME is home (a fresh temporary one, removed afterwards, when home is
//     ""); $HOME/.codex/config.toml is written for cfg, and for
//     CodexRequiresOpenAIAuth also $HOME/.codex/auth.json;
//   - a minimal environment (PATH, LANG) instead of the caller's, with
//     CodexKeyEnv=key if key is not empty;
//   - TMPDIR inside HOME, so nothing the run writes outlives it;
//   - the CLI's traffic to anywhere but loopback goes to a refusing proxy
//     (see RunResult.Egress and CodexConfig.KnownEgress).
//
// Codex prints only the final answer on stdout; progress, warnings and
// "tokens used" go to stderr. extraEnv entries ("K=V") come last and
// override the above. The process group is killed when ctx ends;
// RunCodexExec then returns the partial result together with ctx's error.
func RunCodexExec(ctx context.Context, bin string, cfg CodexConfig, baseURL, key, prompt, home string, extraEnv ...string) (RunResult, error) {
	toml, err := CodexConfigTOML(cfg, baseURL)
	if err != nil {
		return RunResult{}, err
	}
	home, done, err := runHome(home, "crs-codex-home-")
	if err != nil {
		return RunResult{}, err
	}
	defer done()
	codexHome := filepath.Join(home, ".codex")
	if err := os.MkdirAll(codexHome, 0o700); err != nil {
		return RunResult{}, err
	}
	if err := os.WriteFile(filepath.Join(codexHome, "config.toml"), []byte(toml), 0o600); err != nil {
		return RunResult{}, err
	}
	if cfg == CodexRequiresOpenAIAuth {
		if err := os.WriteFile(filepath.Join(codexHome, "auth.json"), []byte(`{"OPENAI_API_KEY": null}`+"\n"), 0o600); err != nil {
			return RunResult{}, err
		}
	}

	env, err := homeEnv(home)
	if err != nil {
		return RunResult{}, err
	}
	if key != "" {
		env = append(env, CodexKeyEnv+"="+key)
	}
	return runGuarded(ctx, "codex exec", bin, []string{"exec", "--skip-git-repo-check", prompt}, env, extraEnv)
}

// runHome returns home and a no-op, or, when home is "", a fresh temporary
// folder and the func that removes it.
func runHome(home, prefix string) (string, func(), error) {
	if home != "" {
		return home, func() {}, nil
	}
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, err
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}
