package relay

import (
	"net/http"

	"github.com/crs-relay/crs/internal/policy"
	"github.com/crs-relay/crs/internal/store"
)

// admit applies the key's policy to the call: the static checks (expiry,
// pool permission, model lists, client restriction), then the rate window
// and cost limits, then a concurrency slot — decided in that order, so a
// request refused for cost never keeps a slot. It answers the refusal
// itself and returns false; on success release frees the slot (call it
// once the response is done).
func (r *Relay) admit(w http.ResponseWriter, req *http.Request, c *call) (release func(), ok bool) {
	if r.policy == nil {
		return func() {}, true
	}
	ctx := req.Context()
	pr := policy.Request{
		Platform: c.platform, Path: req.URL.Path, Model: c.model, Header: req.Header,
		CountTokens: !c.metered, RequestID: c.id,
	}
	if c.platform == store.PlatformClaude && len(c.key.Clients) > 0 && c.metered {
		pr.ClaudeCodeBody = c.claudeCode()
	}
	if d := r.policy.Check(ctx, c.key, pr); d != nil {
		writeError(w, c.shape, denialError(d))
		return nil, false
	}
	// Enter is Admit and Acquire in one batch of counter operations: one
	// round trip to a shared store in the steady state.
	release, d := r.policy.Enter(ctx, c.key, pr)
	if d != nil {
		release()
		r.alertDenial(c.key, d) // alerts hook: a key over one of its limits
		if d.Status != policy.StatusClientClosed {
			writeError(w, c.shape, denialError(d))
		}
		return nil, false
	}
	return release, true
}
