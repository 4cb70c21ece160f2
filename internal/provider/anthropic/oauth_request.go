package anthropic

import (
	"bytes"
	"context"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
)

// OAuthBeta is the beta an OAuth bearer token needs: without it Anthropic
// answers 401 "OAuth authentication is currently not supported."
const OAuthBeta = "oauth-2025-04-20"

// BaseBetas returns the betas crs always sends for model on an OAuth
// account, the same list the original relay sends (crs-features.md §3).
// Haiku gets no claude-code or fine-grained-tool-streaming beta, as Claude
// Code's own Haiku side calls do not carry them. The slice is new on every
// call; callers may change it.
func BaseBetas(model string) []string {
	if strings.Contains(strings.ToLower(model), "haiku") {
		return []string{OAuthBeta, "interleaved-thinking-2025-05-14"}
	}
	return []string{"claude-code-20250219", OAuthBeta, "interleaved-thinking-2025-05-14", "fine-grained-tool-streaming-2025-05-14"}
}

// MergeBetas returns base betas followed by the client's (a comma-separated
// anthropic-beta value), deduplicated with the first occurrence kept, order
// kept, blanks and empty items dropped. Order matters little to Anthropic
// but keeping it makes the header look like one client wrote it.
func MergeBetas(base []string, client string) string {
	seen := make(map[string]bool, len(base)+8)
	out := make([]string, 0, len(base)+8)
	add := func(b string) {
		b = strings.TrimSpace(b)
		if b == "" || seen[b] {
			return
		}
		seen[b] = true
		out = append(out, b)
	}
	for _, b := range base {
		add(b)
	}
	for b := range strings.SplitSeq(client, ",") {
		add(b)
	}
	return strings.Join(out, ",")
}

// oauthForwardHeaders are the client headers an OAuth account receives
// (crs-features.md §3, filterForClaude). It is an allow-list: the relay key
// (x-api-key, authorization), cookies, X-Forwarded-*, X-Real-Ip, Cf-* and
// every other header stay at the relay. Connection is left out too, although
// the original passed it: it is a hop-by-hop header that Go's transport
// manages. X-Claude-Code-Session-Id is not copied but rebuilt from the body.
var oauthForwardHeaders = append([]string{"Sec-Fetch-Mode"}, clientHeaders...)

// OAuthRequest builds the upstream request for an OAuth (or setup-token)
// account. body is the final body: already through RewriteUserID and, for
// other clients, PrepareNonClaudeCode. base is the API root, path the vendor
// path ("/v1/messages"), rawQuery the client's query ("beta=true", kept).
//
// Upstream sees: Authorization: Bearer accessToken; anthropic-version as the
// client sent it, else DefaultVersion; anthropic-beta =
// MergeBetas(BaseBetas(model), client's betas); accept-encoding identity;
// x-app cli; the allow-listed client headers. For a client that is not
// Claude Code (user agent not claude-cli/x.y.z) the user agent and the
// x-stainless fingerprint come from id, and the headers Claude Code always
// sends are filled in, so every client on the account shows one face.
// X-Claude-Code-Session-Id carries the session id of the body's
// metadata.user_id, which keeps header and body consistent after the
// session was rewritten; without one in the body the header is dropped
// rather than leaking the client's own session id.
func OAuthRequest(ctx context.Context, in http.Header, base, path, rawQuery, accessToken string, id Identity, body []byte) (*http.Request, error) {
	u := strings.TrimRight(base, "/") + path
	if rawQuery != "" {
		u += "?" + rawQuery
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	h := req.Header
	for _, name := range oauthForwardHeaders {
		if v, ok := in[name]; ok {
			h[name] = append([]string(nil), v...)
		}
	}
	if !IsClaudeCodeUserAgent(in.Get("User-Agent")) {
		ApplyIdentity(h, id)
		// Claude Code never sends the helper-method header (SDK .stream()
		// does) and always sends these; match it.
		h.Del("X-Stainless-Helper-Method")
		h.Set("Anthropic-Dangerous-Direct-Browser-Access", "true")
		if h.Get("X-Stainless-Retry-Count") == "" {
			h.Set("X-Stainless-Retry-Count", "0")
		}
		if h.Get("X-Stainless-Timeout") == "" {
			h.Set("X-Stainless-Timeout", "600")
		}
		if h.Get("Accept") == "" {
			h.Set("Accept", "application/json")
		}
	}
	if h.Get("Anthropic-Version") == "" {
		h.Set("Anthropic-Version", DefaultVersion)
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	model := gjson.GetBytes(body, "model").String()
	h.Set("Anthropic-Beta", MergeBetas(BaseBetas(model), strings.Join(in.Values("Anthropic-Beta"), ",")))
	h.Set("X-App", "cli")
	if s := UserIDSession(gjson.GetBytes(body, "metadata.user_id").String()); s != "" {
		h.Set("X-Claude-Code-Session-Id", s)
	}
	// Identity encoding: the stream is passed through byte for byte, and a
	// gzip-encoded SSE stream cannot be read event by event.
	h.Set("Accept-Encoding", "identity")
	h.Set("Authorization", "Bearer "+accessToken)
	req.ContentLength = int64(len(body))
	return req, nil
}

// IsClaudeCodeUserAgent reports whether ua is Claude Code's: it starts with
// "claude-cli/<major>.<minor>.<patch>" ("claude-cli/2.1.332 (external, cli)").
func IsClaudeCodeUserAgent(ua string) bool {
	rest, ok := strings.CutPrefix(ua, "claude-cli/")
	if !ok {
		return false
	}
	for i := range 3 {
		n := 0
		for n < len(rest) && '0' <= rest[n] && rest[n] <= '9' {
			n++
		}
		if n == 0 {
			return false
		}
		rest = rest[n:]
		if i < 2 {
			if r, ok := strings.CutPrefix(rest, "."); ok {
				rest = r
			} else {
				return false
			}
		}
	}
	return true
}

// claudeCodeSystemPrefixes are how the first system blocks of Claude Code
// begin (clients.md): the billing header (2.x) and the agent identity lines
// of the CLI and of the Agent SDK it is built on.
func claudeCodeSystemPrefixes() []string {
	return []string{
		"x-anthropic-billing-header:",
		"You are Claude Code, Anthropic's official CLI for Claude",
		"You are a Claude agent, built on Anthropic's Claude Agent SDK",
	}
}

// IsClaudeCode reports whether a request comes from the real Claude Code
// CLI: its user agent is claude-cli/x.y.z and one of the first three system
// blocks starts like Claude Code's (billing header or identity line). Both
// are needed: the user agent alone is one header away for any script, and
// the system prompt tells the relay which rewrites a request needs. It is a
// routing decision, not a security boundary.
func IsClaudeCode(h http.Header, body []byte) bool {
	if !IsClaudeCodeUserAgent(h.Get("User-Agent")) {
		return false
	}
	sys := gjson.GetBytes(body, "system")
	var texts []string
	switch {
	case sys.Type == gjson.String:
		texts = []string{sys.Str}
	case sys.IsArray():
		for i, blk := range sys.Array() {
			if i == 3 {
				break
			}
			texts = append(texts, blk.Get("text").String())
		}
	}
	for _, t := range texts {
		t = strings.TrimSpace(t)
		for _, p := range claudeCodeSystemPrefixes() {
			if strings.HasPrefix(t, p) {
				return true
			}
		}
	}
	return false
}
