package relay

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Local answers: small endpoints Claude Code and SDKs call that need no
// upstream. They are answered here and never forwarded, so no account is
// spent on them and no client telemetry leaves the relay.

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

// Models serves GET …/v1/models in Anthropic's list shape, from the price
// table's Claude models.
func (r *Relay) Models(w http.ResponseWriter, req *http.Request) {
	if _, ok := r.authenticate(w, req); !ok {
		return
	}
	data := []map[string]any{}
	for _, m := range r.prices.Table().Models() {
		if !strings.HasPrefix(m.ID, "claude-") {
			continue
		}
		created := m.Released
		if created.IsZero() {
			created = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		data = append(data, map[string]any{"type": "model", "id": m.ID, "display_name": m.ID, "created_at": created.Format(time.RFC3339)})
	}
	out := map[string]any{"data": data, "has_more": false, "first_id": nil, "last_id": nil}
	if len(data) > 0 {
		out["first_id"], out["last_id"] = data[0]["id"], data[len(data)-1]["id"]
	}
	writeJSON(w, http.StatusOK, out)
}

// Me serves the Claude Code helper GET …/v1/me: the relay key as a user.
func (r *Relay) Me(w http.ResponseWriter, req *http.Request) {
	k, ok := r.authenticate(w, req)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": string(k.ID), "type": "user", "name": k.Name, "email": nil,
	})
}

// KeyInfo serves GET …/v1/key-info: what the key is, without secrets.
func (r *Relay) KeyInfo(w http.ResponseWriter, req *http.Request) {
	k, ok := r.authenticate(w, req)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": string(k.ID), "name": k.Name, "status": k.Status(r.now()), "expires_at": k.ExpiresAt,
	})
}

// OrgUsage serves GET …/v1/organizations/{org}/usage and …/v1/usage, which
// some Claude Code versions poll for a credit balance; a relay key has no
// balance of its own, so it reports none.
func (r *Relay) OrgUsage(w http.ResponseWriter, req *http.Request) {
	if _, ok := r.authenticate(w, req); !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"credit_balance": nil, "usage": []any{}})
}

// EventLogging swallows Claude Code's telemetry batch (no auth needed:
// nothing is kept).
func EventLogging(w http.ResponseWriter, req *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"success": true})
}
