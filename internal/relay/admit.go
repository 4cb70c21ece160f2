package relay

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// ClientClaudeCode names Claude Code in a key's client restriction.
const ClientClaudeCode = "claude_code"

// admitClient enforces the key's client restriction on the Messages route:
// a key limited to clients that do not include Claude Code, or a request
// that is not real Claude Code (its user agent and system prompt), is
// refused with 403. count_tokens is exempt, as in the original: it costs
// nothing and some clients call it from helpers with other user agents.
func (r *Relay) admitClient(w http.ResponseWriter, c *call) bool {
	if len(c.key.Clients) == 0 || !c.metered {
		return true
	}
	if slices.Contains(c.key.Clients, ClientClaudeCode) && c.claudeCode() {
		return true
	}
	WriteAnthropicError(w, http.StatusForbidden, errPermission,
		fmt.Sprintf("crs: this key may only be used from %s; this request does not come from one of them (client_not_allowed)",
			strings.Join(c.key.Clients, ", ")), 0)
	return false
}
