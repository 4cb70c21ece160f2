package policy

import (
	"net/http"
	"regexp"
	"testing"

	"github.com/crs-relay/crs/internal/store"
)

// TestClientRules runs the headers today's clients send
// (shared/reference/clients.md) and near misses of them against keys
// restricted to one client. The real clients must pass; the near misses
// (another program, another route, a missing header) must not.
func TestClientRules(t *testing.T) {
	with := func(h http.Header, kv ...string) http.Header {
		h = h.Clone()
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				h.Del(kv[i])
			} else {
				h.Set(kv[i], kv[i+1])
			}
		}
		return h
	}
	interactive := with(claudeCodeHeader(), "User-Agent", "claude-cli/2.1.332 (external, cli)")
	oldCodex := with(codexHeader(), "Session-Id", "")
	oldCodex["Session_id"] = []string{"0197f0a4-6b7e-7c3d-9f1a-2b3c4d5e6f70"}
	codeAssist := http.Header{"User-Agent": {"GeminiCLI-tui/0.61.0/gemini-2.5-pro (linux; x64; terminal) google-api-nodejs-client/10.9.0"}}

	tests := []struct {
		name    string
		clients []string
		path    string
		header  http.Header
		ccBody  bool
		want    bool
	}{
		// Claude Code.
		{"claude code -p (sdk-cli)", []string{ClientClaudeCode}, "/api/v1/messages", claudeCodeHeader(), true, true},
		{"claude code interactive (cli)", []string{ClientClaudeCode}, "/claude/v1/messages", interactive, true, true},
		{"claude code model list needs no body", []string{ClientClaudeCode}, "/api/v1/models", claudeCodeHeader(), false, true},
		{"claude code UA without its prompt", []string{ClientClaudeCode}, "/api/v1/messages", claudeCodeHeader(), false, false},
		{"SDK with a Claude Code prompt", []string{ClientClaudeCode}, "/api/v1/messages", http.Header{"User-Agent": {"Anthropic/JS 1.14.0"}}, true, false},
		{"claude-cli with two version parts", []string{ClientClaudeCode}, "/api/v1/messages", with(claudeCodeHeader(), "User-Agent", "claude-cli/2.1 (external, cli)"), true, false},
		{"claude-cli not at the start", []string{ClientClaudeCode}, "/api/v1/messages", with(claudeCodeHeader(), "User-Agent", "x claude-cli/2.1.332"), true, false},
		{"claude code on the Codex route", []string{ClientClaudeCode}, "/openai/responses", claudeCodeHeader(), true, false},
		{"claude code on the OpenAI-to-Claude route", []string{ClientClaudeCode}, "/openai/claude/v1/chat/completions", claudeCodeHeader(), true, false},
		{"claude code with a query string", []string{ClientClaudeCode}, "/api/v1/messages?beta=true", claudeCodeHeader(), true, true},
		{"dot segments cannot leave the route", []string{ClientClaudeCode}, "/api/v1/messages/../../../openai/responses", claudeCodeHeader(), true, false},

		// Gemini CLI.
		{"gemini cli, API key mode", []string{ClientGeminiCLI}, "/gemini/v1beta/models/gemini-3.8-flash:streamGenerateContent", geminiHeader(), false, true},
		{"gemini cli, router call", []string{ClientGeminiCLI}, "/gemini/v1beta/models/gemini-3.5-flash-lite:generateContent", geminiHeader(), false, true},
		{"gemini cli, Code Assist mode", []string{ClientGeminiCLI}, "/gemini/v1internal:loadCodeAssist", codeAssist, false, true},
		{"gemini cli, the original's UA form", []string{ClientGeminiCLI}, "/gemini/v1internal:generateContent", http.Header{"User-Agent": {"GeminiCLI/v0.1.5 (linux; x64)"}}, false, true},
		{"genai SDK", []string{ClientGeminiCLI}, "/gemini/v1/models/gemini-3.8-flash:generateContent", http.Header{"User-Agent": {"google-genai-sdk/3.3.0 gl-node/v20.20.2"}}, false, false},
		{"GeminiCLI-like name", []string{ClientGeminiCLI}, "/gemini/v1internal:generateContent", http.Header{"User-Agent": {"GeminiCLIx/0.61.0"}}, false, false},
		{"gemini cli on the Messages route", []string{ClientGeminiCLI}, "/api/v1/messages", geminiHeader(), false, false},

		// Codex CLI.
		{"codex exec", []string{ClientCodexCLI}, "/openai/responses", codexHeader(), false, true},
		{"codex exec, v1 path", []string{ClientCodexCLI}, "/openai/v1/responses", codexHeader(), false, true},
		{"codex compact", []string{ClientCodexCLI}, "/openai/responses/compact", codexHeader(), false, true},
		{"codex interactive", []string{ClientCodexCLI}, "/openai/responses", with(codexHeader(), "User-Agent", "codex_cli_rs/0.169.0 (Mac OS 15.1; arm64)", "Originator", "codex_cli_rs"), false, true},
		{"codex, older session_id header", []string{ClientCodexCLI}, "/openai/responses", oldCodex, false, true},
		{"codex without a session id", []string{ClientCodexCLI}, "/openai/responses", with(codexHeader(), "Session-Id", ""), false, false},
		{"codex with a short session id", []string{ClientCodexCLI}, "/openai/responses", with(codexHeader(), "Session-Id", "abc"), false, false},
		{"codex with another originator", []string{ClientCodexCLI}, "/openai/responses", with(codexHeader(), "Originator", "codex_vscode"), false, false},
		{"codex without originator", []string{ClientCodexCLI}, "/openai/responses", with(codexHeader(), "Originator", ""), false, false},
		{"OpenAI SDK with Codex headers", []string{ClientCodexCLI}, "/openai/responses", with(codexHeader(), "User-Agent", "OpenAI/JS 7.57.0"), false, false},
		{"codex on chat completions", []string{ClientCodexCLI}, "/openai/chat/completions", codexHeader(), false, false},

		// Droid.
		{"droid by user agent", []string{ClientDroidCLI}, "/droid/claude/v1/messages", http.Header{"User-Agent": {"factory-cli/0.22.3"}}, false, true},
		{"droid by x-factory-client", []string{ClientDroidCLI}, "/droid/openai/v1/responses", http.Header{"User-Agent": {"node"}, "X-Factory-Client": {"droid"}}, false, true},
		{"droid on the Messages route", []string{ClientDroidCLI}, "/api/v1/messages", http.Header{"User-Agent": {"factory-cli/0.22.3"}}, true, false},
		{"droid route, other program", []string{ClientDroidCLI}, "/droid/claude/v1/messages", http.Header{"User-Agent": {"curl/8.0"}}, false, false},

		// Lists.
		{"any listed client will do", []string{ClientGeminiCLI, ClientCodexCLI}, "/openai/responses", codexHeader(), false, true},
		{"unknown client name", []string{"cherry_studio"}, "/api/v1/messages", claudeCodeHeader(), true, false},
		{"no header at all", []string{ClientClaudeCode}, "/api/v1/messages", nil, true, false},
	}
	e := newEngine(newClock(t0), nil)
	for _, tc := range tests {
		key := store.Key{ID: "k", Clients: tc.clients}
		req := Request{Path: tc.path, Header: tc.header, ClaudeCodeBody: tc.ccBody}
		d := e.Check(t.Context(), key, req)
		if got := d == nil; got != tc.want {
			t.Errorf("%s: allowed = %v, want %v (%v)", tc.name, got, tc.want, d)
			continue
		}
		if d != nil && (d.Status != http.StatusForbidden || d.Code != CodeClientNotAllowed) {
			t.Errorf("%s: denial %v, want 403 %s", tc.name, d, CodeClientNotAllowed)
		}
		// An unrestricted key lets every one of them through.
		if d := e.Check(t.Context(), store.Key{ID: "open"}, req); d != nil {
			t.Errorf("%s: unrestricted key refused: %v", tc.name, d)
		}
	}
}

// TestClientRulesAreData shows a rule can be replaced without code: a
// client release with a new user agent is one edit in Options.ClientRules.
func TestClientRulesAreData(t *testing.T) {
	rules := DefaultClientRules()
	for i := range rules {
		if rules[i].Name == ClientGeminiCLI {
			rules[i].Agents[0].Pattern = regexp.MustCompile(`^GeminiNext/`)
		}
	}
	e := newEngine(newClock(t0), func(o *Options) { o.ClientRules = rules })
	key := store.Key{ID: "k", Clients: []string{ClientGeminiCLI}}
	req := Request{Path: "/gemini/v1internal:generateContent", Header: geminiHeader()}
	if d := e.Check(t.Context(), key, req); d == nil {
		t.Error("old user agent still accepted after the rule changed")
	}
	req.Header = http.Header{"User-Agent": {"GeminiNext/1.0"}}
	if d := e.Check(t.Context(), key, req); d != nil {
		t.Errorf("new user agent refused: %v", d)
	}
	// The defaults of another engine are untouched.
	if d := newEngine(newClock(t0), nil).Check(t.Context(), key, Request{Path: req.Path, Header: geminiHeader()}); d != nil {
		t.Errorf("defaults changed: %v", d)
	}
}
