package relay

import (
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/crs-relay/crs/internal/provider/anthropic"
)

// newestClaudeCode remembers the request headers of the newest Claude Code
// release seen on any route, for accounts with the unified_user_agent
// option: every request such an account receives then shows that one user
// agent and fingerprint, whichever client or version sent it. A shared
// subscription seen from several Claude Code versions at once looks like
// several people on one login.
type newestClaudeCode struct {
	mu      sync.Mutex
	ua      string
	version [3]int
	headers http.Header
}

// observe keeps h when its user agent is a newer Claude Code than the one
// kept. Cheap when the user agent is the one already kept.
func (n *newestClaudeCode) observe(h http.Header) {
	ua := h.Get("User-Agent")
	if !anthropic.IsClaudeCodeUserAgent(ua) {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if ua == n.ua {
		return
	}
	v := claudeCodeVersion(ua)
	if n.ua != "" && !newer(v, n.version) {
		return
	}
	n.ua, n.version, n.headers = ua, v, h.Clone()
}

// get returns the kept headers, nil before any Claude Code request.
func (n *newestClaudeCode) get() http.Header {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.headers
}

// claudeCodeVersion reads x.y.z of "claude-cli/x.y.z (…)".
func claudeCodeVersion(ua string) [3]int {
	var v [3]int
	rest, _ := strings.CutPrefix(ua, "claude-cli/")
	if i := strings.IndexAny(rest, " ("); i >= 0 {
		rest = rest[:i]
	}
	for i, part := range strings.SplitN(rest, ".", 3) {
		n, _ := strconv.Atoi(strings.TrimFunc(part, func(r rune) bool { return r < '0' || r > '9' }))
		v[i] = n
	}
	return v
}

func newer(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] > b[i]
		}
	}
	return false
}
