package policy

import (
	"fmt"
	"net/http"
	"path"
	"regexp"
	"strings"

	"github.com/crs-relay/crs/internal/store"
)

// Client names a key's Clients list may hold.
const (
	ClientClaudeCode = "claude_code"
	ClientGeminiCLI  = "gemini_cli"
	ClientCodexCLI   = "codex_cli"
	ClientDroidCLI   = "droid_cli"
)

// ClientRule says how to recognise one client program. Rules are data so
// that a client release that changes its user agent or headers is a
// one-line change here (or in Options.ClientRules), not a code change. A
// request is the client's when every part of the rule holds.
type ClientRule struct {
	// Name is the client's name in store.Key.Clients.
	Name string
	// Paths the client may use. An entry ending in "/" covers every path
	// under it; any other entry covers itself and the paths under it
	// ("/api/v1/messages" also covers ".../count_tokens"). The whitelist
	// keeps a key restricted to one client off the routes of another that
	// speak a compatible protocol.
	Paths []string
	// Agents identify the program; one must match.
	Agents []AgentRule
	// Headers must all hold as well.
	Headers []HeaderRule
	// ClaudeCodeBodyPaths lists paths (covered as in Paths) on which the
	// relay's Request.ClaudeCodeBody verdict must be true.
	ClaudeCodeBodyPaths []string
}

// AgentRule matches one header against a pattern.
type AgentRule struct {
	// Header is the header to read, "User-Agent" for most clients.
	Header string
	// Pattern must match the header's value. A group named "product"
	// captures the program's own name, which HeaderRule.SameAsProduct
	// compares with.
	Pattern *regexp.Regexp
}

// HeaderRule requires a header.
type HeaderRule struct {
	// Names are the header's spellings; the first one present is checked.
	Names []string
	// MinLen is the shortest value accepted; 0 only requires presence.
	MinLen int
	// SameAsProduct requires the value to equal the "product" the
	// matching AgentRule captured.
	SameAsProduct bool
}

// DefaultClientRules are the rules for the clients crs knows, written
// against what today's releases send (shared/reference/clients.md):
//
//   - claude_code: "claude-cli/2.1.332 (external, sdk-cli)" and
//     "(external, cli)"; on Messages paths the relay must also have found
//     Claude Code's (or the Agent SDK's) system prompt. No x-app,
//     anthropic-beta or metadata checks: those broke the original on
//     every Claude Code release.
//   - gemini_cli: "GeminiCLI-tui/0.61.0/…" (the original's
//     "^GeminiCLI/" refuses it), on /gemini/ only.
//   - codex_cli: "codex_exec/0.169.0 (…)" and Codex's other programs
//     (codex_cli_rs, codex_vscode), with an originator header naming the
//     same program and a session-id header (hyphen; the underscore
//     spelling of older releases still counts). No instructions check:
//     Codex no longer sends that field.
//   - droid_cli: "factory-cli/x.y.z", or an x-factory-client header naming
//     droid or factory-cli, on /droid/ only.
//
// Each call returns fresh values, so a caller may change them.
func DefaultClientRules() []ClientRule {
	var claudePaths []string
	for _, prefix := range []string{"/api", "/claude"} {
		for _, p := range []string{"/v1/messages", "/v1/models", "/v1/me", "/v1/key-info", "/v1/usage", "/v1/organizations/"} {
			claudePaths = append(claudePaths, prefix+p)
		}
	}
	return []ClientRule{
		{
			Name:                ClientClaudeCode,
			Paths:               claudePaths,
			Agents:              []AgentRule{{Header: "User-Agent", Pattern: regexp.MustCompile(`^claude-cli/\d+\.\d+\.\d+`)}},
			ClaudeCodeBodyPaths: []string{"/api/v1/messages", "/claude/v1/messages"},
		},
		{
			Name:   ClientGeminiCLI,
			Paths:  []string{"/gemini/"},
			Agents: []AgentRule{{Header: "User-Agent", Pattern: regexp.MustCompile(`^GeminiCLI(?:-[A-Za-z0-9_]+)?/v?\d+(?:\.\d+)*(?:[/ ]|$)`)}},
		},
		{
			Name:   ClientCodexCLI,
			Paths:  []string{"/openai/responses", "/openai/v1/responses"},
			Agents: []AgentRule{{Header: "User-Agent", Pattern: regexp.MustCompile(`^(?P<product>codex_[a-z][a-z_]*)/\d+\.\d+\.\d+`)}},
			Headers: []HeaderRule{
				{Names: []string{"Originator"}, SameAsProduct: true},
				{Names: []string{"Session-Id", "Session_id"}, MinLen: 21},
			},
		},
		{
			Name:  ClientDroidCLI,
			Paths: []string{"/droid/"},
			Agents: []AgentRule{
				{Header: "User-Agent", Pattern: regexp.MustCompile(`^factory-cli/\d+\.\d+\.\d+`)},
				{Header: "X-Factory-Client", Pattern: regexp.MustCompile(`(?i)droid|factory-cli`)},
			},
		},
	}
}

// checkClient applies the key's client restriction. count_tokens is
// exempt: it costs nothing, and clients call it from helpers.
func (e *Engine) checkClient(key store.Key, req Request) *Denial {
	if len(key.Clients) == 0 || req.CountTokens {
		return nil
	}
	for _, name := range key.Clients {
		if r, ok := e.rules[name]; ok && r.matches(req) {
			return nil
		}
	}
	return &Denial{
		Status: http.StatusForbidden,
		Type:   TypePermission,
		Code:   CodeClientNotAllowed,
		Message: fmt.Sprintf("this key may only be used from %s on their own routes; this request (%s, user agent %q) is not one of them",
			strings.Join(key.Clients, ", "), cleanPath(req.Path), req.Header.Get("User-Agent")),
	}
}

// matches reports whether req comes from the rule's client on one of its
// routes.
func (r ClientRule) matches(req Request) bool {
	p := cleanPath(req.Path)
	if !pathCovered(r.Paths, p) {
		return false
	}
	product, ok := r.agent(req.Header)
	if !ok {
		return false
	}
	for _, h := range r.Headers {
		if !h.holds(req.Header, product) {
			return false
		}
	}
	return req.ClaudeCodeBody || !pathCovered(r.ClaudeCodeBodyPaths, p)
}

// agent finds the first matching AgentRule and the product it captured.
func (r ClientRule) agent(h http.Header) (product string, ok bool) {
	for _, a := range r.Agents {
		if a.Pattern == nil {
			continue
		}
		m := a.Pattern.FindStringSubmatch(h.Get(a.Header))
		if m == nil {
			continue
		}
		if i := a.Pattern.SubexpIndex("product"); i >= 0 {
			product = m[i]
		}
		return product, true
	}
	return "", false
}

func (hr HeaderRule) holds(h http.Header, product string) bool {
	for _, name := range hr.Names {
		vals, ok := h[http.CanonicalHeaderKey(name)]
		if !ok || len(vals) == 0 {
			continue
		}
		v := vals[0]
		if len(v) < hr.MinLen || (hr.MinLen == 0 && v == "") {
			return false
		}
		return !hr.SameAsProduct || v == product
	}
	return false
}

// cleanPath drops a query and resolves dot segments, so that a path cannot
// walk out of a whitelisted prefix.
func cleanPath(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if p == "" {
		return "/"
	}
	return path.Clean("/" + p)
}

func pathCovered(list []string, p string) bool {
	for _, e := range list {
		if strings.HasSuffix(e, "/") {
			if strings.HasPrefix(p, e) {
				return true
			}
			continue
		}
		if p == e || strings.HasPrefix(p, e+"/") {
			return true
		}
	}
	return false
}
