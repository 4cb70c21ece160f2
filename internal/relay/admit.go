package relay

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/crs-relay/crs/internal/policy"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/store"
)

// admit applies the key's policy to the call: the static checks (expiry,
// pool permission, model lists, client restriction), then the rate window
// and cost limits, then a concurrency slot — in that order, so a request
// refused for cost never takes a slot. It answers the refusal itself and
// returns false; on success release frees the slot (call it once the
// response is done).
func (r *Relay) admit(w http.ResponseWriter, req *http.Request, c *call) (release func(), ok bool) {
	if r.policy == nil {
		return func() {}, true
	}
	ctx := req.Context()
	pr := policy.Request{
		Platform: store.PlatformClaude, Path: req.URL.Path, Model: c.model, Header: req.Header,
		CountTokens: !c.metered, RequestID: c.id,
	}
	if len(c.key.Clients) > 0 && c.metered {
		pr.ClaudeCodeBody = c.claudeCode()
	}
	if d := r.policy.Check(ctx, c.key, pr); d != nil {
		writeDenial(w, d)
		return nil, false
	}
	if d := r.policy.Admit(ctx, c.key, pr); d != nil {
		writeDenial(w, d)
		return nil, false
	}
	release, d := r.policy.Acquire(ctx, c.key, pr)
	if d != nil {
		release()
		if d.Status != policy.StatusClientClosed {
			writeDenial(w, d)
		}
		return nil, false
	}
	return release, true
}

// writeDenial answers a policy refusal in Anthropic's error shape, with
// the machine-readable code and, for cost limits, the spend, the limit
// and when it resets: {"type":"error","error":{"type","message","code",
// "current_cost","cost_limit","reset_at"}}.
func writeDenial(w http.ResponseWriter, d *policy.Denial) {
	type detail struct {
		Type        string     `json:"type"`
		Message     string     `json:"message"`
		Code        string     `json:"code"`
		CurrentCost *string    `json:"current_cost,omitempty"`
		CostLimit   *string    `json:"cost_limit,omitempty"`
		ResetAt     *time.Time `json:"reset_at,omitempty"`
	}
	e := detail{Type: d.Type, Message: "crs: " + d.Message, Code: d.Code}
	if d.Limit > 0 {
		cur, lim := pricing.FromPico(d.Current).String(), pricing.FromPico(d.Limit).String()
		e.CurrentCost, e.CostLimit = &cur, &lim
	}
	if !d.ResetAt.IsZero() {
		t := d.ResetAt.UTC()
		e.ResetAt = &t
	}
	body, _ := json.Marshal(struct {
		Type  string `json:"type"`
		Error detail `json:"error"`
	}{"error", e})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if !retryable(d.Status, d.RetryAfter) {
		h.Set("X-Should-Retry", "false")
	}
	if d.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((d.RetryAfter+time.Second-1)/time.Second), 10))
	}
	w.WriteHeader(d.Status)
	w.Write(body)
}
