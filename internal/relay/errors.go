package relay

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Anthropic error types by status, as the Messages API names them.
const (
	errInvalidRequest = "invalid_request_error"
	errAuthentication = "authentication_error"
	errBilling        = "billing_error"
	errPermission     = "permission_error"
	errNotFound       = "not_found_error"
	errTooLarge       = "request_too_large"
	errRateLimit      = "rate_limit_error"
	errAPI            = "api_error"
	errOverloaded     = "overloaded_error"
)

// WriteAnthropicError answers in Anthropic's error shape:
// {"type":"error","error":{"type":…,"message":…}}. retryAfter > 0 adds a
// Retry-After header in whole seconds (rounded up).
//
// Answers that a retry cannot fix carry x-should-retry: false. Claude Code
// (like every Stainless SDK) honours it: without it a 401 for a mistyped
// key is retried with backoff for minutes and looks like a hang; with it
// the CLI stops at once and shows the message (docs/claude-code.md).
// Retryable answers (429, 529, and 5xx with a Retry-After) leave it out.
func WriteAnthropicError(w http.ResponseWriter, status int, typ, msg string, retryAfter time.Duration) {
	body := errorJSON(typ, msg)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if !retryable(status, retryAfter) {
		h.Set("X-Should-Retry", "false")
	}
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((retryAfter+time.Second-1)/time.Second), 10))
	}
	w.WriteHeader(status)
	w.Write(body)
}

func retryable(status int, retryAfter time.Duration) bool {
	switch {
	case status == http.StatusTooManyRequests, status == 529:
		return true
	case status >= 500:
		return retryAfter > 0
	}
	return false
}

// errorJSON is Anthropic's error object, fields in the API's order.
func errorJSON(typ, msg string) []byte {
	type detail struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	}
	b, _ := json.Marshal(struct {
		Type  string `json:"type"`
		Error detail `json:"error"`
	}{"error", detail{typ, msg}})
	return b
}
