package clitest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// GeminiMode is how Gemini CLI reaches crs: the two modes crs serves, with
// different variables, paths and credentials (docs/clients.md).
type GeminiMode string

const (
	// GeminiAPIKey is the native Gemini API: GOOGLE_GEMINI_BASE_URL and
	// GEMINI_API_KEY, requests to {base}/v1beta/models/{model}:{action} with
	// x-goog-api-key. It needs the settings.json workaround (see
	// GeminiSettingsJSON).
	GeminiAPIKey GeminiMode = "api-key"
	// GeminiCodeAssist is Google sign-in's Code Assist API:
	// CODE_ASSIST_ENDPOINT, GOOGLE_CLOUD_ACCESS_TOKEN and
	// GOOGLE_GENAI_USE_GCA=true, requests to {base}/v1internal:{method}
	// with Authorization: Bearer.
	GeminiCodeAssist GeminiMode = "code-assist"
)

// KnownEgress lists the hosts Gemini CLI tries to reach in mode although
// usage statistics are off: in Code Assist mode it always asks
// www.googleapis.com for the signed-in user's profile (oauth2/v2/userinfo),
// which fails without harm and cannot be turned off.
func (m GeminiMode) KnownEgress() []string {
	if m == GeminiCodeAssist {
		return []string{"www.googleapis.com"}
	}
	return nil
}

// GeminiSettingsJSON is the ~/.gemini/settings.json RunGeminiP writes for
// mode. Usage statistics are off in both (they go to play.googleapis.com).
// API-key mode also fixes the auth type: with GOOGLE_GEMINI_BASE_URL set,
// Gemini CLI 0.61 picks the "gateway" auth type, which its non-interactive
// validator then refuses ("Invalid auth method selected.", exit 41).
// Code Assist mode must not name gemini-api-key there: a saved auth type
// wins over GOOGLE_GENAI_USE_GCA.
func GeminiSettingsJSON(mode GeminiMode) (string, error) {
	switch mode {
	case GeminiAPIKey:
		return `{"security":{"auth":{"selectedType":"gemini-api-key"}},"privacy":{"usageStatisticsEnabled":false}}` + "\n", nil
	case GeminiCodeAssist:
		return `{"privacy":{"usageStatisticsEnabled":false}}` + "\n", nil
	}
	return "", fmt.Errorf("clitest: unknown Gemini mode %q", mode)
}

// RunGeminiP runs `gemini -p prompt` against baseURL (crs's URL plus
// /gemini) in mode, the way a crs user would, but sealed off from the
// machine it runs on:
//
//   - HOME is home (a fresh temporary one, removed afterwards, when home is
//     ""), with $HOME/.gemini/settings.json from GeminiSettingsJSON;
//   - a minimal environment (PATH, LANG) instead of the caller's, plus the
//     mode's variables with key as the credential (left out when key is
//     ""), and GEMINI_CLI_TRUST_WORKSPACE=true: an untrusted folder ends a
//     non-interactive run with exit 55;
//   - TMPDIR inside HOME, so the error reports Gemini CLI writes there go
//     with the run;
//   - the CLI's traffic to anywhere but loopback goes to a refusing proxy
//     (see RunResult.Egress and GeminiMode.KnownEgress).
//
// Gemini CLI prints the answer on stdout and notices (terminal warnings,
// "Ripgrep is not available") on stderr. extraEnv entries ("K=V") come
// last and override the above. The process group is killed when ctx ends;
// RunGeminiP then returns the partial result together with ctx's error.
func RunGeminiP(ctx context.Context, bin string, mode GeminiMode, baseURL, key, prompt, home string, extraEnv ...string) (RunResult, error) {
	settings, err := GeminiSettingsJSON(mode)
	if err != nil {
		return RunResult{}, err
	}
	home, done, err := runHome(home, "crs-gemini-home-")
	if err != nil {
		return RunResult{}, err
	}
	defer done()
	geminiHome := filepath.Join(home, ".gemini")
	if err := os.MkdirAll(geminiHome, 0o700); err != nil {
		return RunResult{}, err
	}
	if err := os.WriteFile(filepath.Join(geminiHome, "settings.json"), []byte(settings), 0o600); err != nil {
		return RunResult{}, err
	}

	env, err := homeEnv(home)
	if err != nil {
		return RunResult{}, err
	}
	env = append(env, "GEMINI_CLI_TRUST_WORKSPACE=true")
	switch mode {
	case GeminiAPIKey:
		env = append(env, "GOOGLE_GEMINI_BASE_URL="+baseURL)
		if key != "" {
			env = append(env, "GEMINI_API_KEY="+key)
		}
	case GeminiCodeAssist:
		env = append(env, "CODE_ASSIST_ENDPOINT="+baseURL, "GOOGLE_GENAI_USE_GCA=true")
		if key != "" {
			env = append(env, "GOOGLE_CLOUD_ACCESS_TOKEN="+key)
		}
	}
	return runGuarded(ctx, "gemini -p", bin, []string{"-p", prompt}, env, extraEnv)
}
