package relay

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/crs-relay/crs/internal/policy"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/sse"
)

// Error kinds the relay answers with. They are Anthropic's error types;
// the other protocols translate them (errorShape).
const (
	errInvalidRequest = "invalid_request_error"
	errAuthentication = "authentication_error"
	errNotFound       = "not_found_error"
	errTooLarge       = "request_too_large"
	errAPI            = "api_error"
	errOverloaded     = "overloaded_error"
)

// apiError is an answer crs writes itself, in whichever protocol the
// client speaks.
type apiError struct {
	Status     int
	Kind       string // errInvalidRequest, …
	Message    string
	RetryAfter time.Duration
	// Code is a machine-readable reason (policy refusals); optional.
	Code string
	// Extra fields for cost refusals.
	CurrentCost, CostLimit *string
	ResetAt                *time.Time
}

// errorShape is one protocol's way of writing an error: its body, and the
// status it can use (Gemini and OpenAI clients know no 529).
type errorShape interface {
	body(e apiError) []byte
	status(s int) int
	// streamEvent is the error written into a stream that already began.
	streamEvent(e apiError) (name string, data []byte)
}

// writeError answers e in shape: the body, Retry-After in whole seconds
// (rounded up), and x-should-retry: false on answers a retry cannot fix.
// Claude Code (like every Stainless SDK) honours that header: without it a
// 401 for a mistyped key is retried with backoff for minutes and looks
// like a hang; with it the CLI stops at once and shows the message
// (docs/claude-code.md). Retryable answers (429, 529, and 5xx with a
// Retry-After) leave it out.
func writeError(w http.ResponseWriter, shape errorShape, e apiError) {
	body := shape.body(e)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if !retryable(e.Status, e.RetryAfter) {
		h.Set("X-Should-Retry", "false")
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((e.RetryAfter+time.Second-1)/time.Second), 10))
	}
	w.WriteHeader(shape.status(e.Status))
	w.Write(body)
}

// writeStreamError ends a stream that already began with the protocol's
// error event.
func writeStreamError(w http.ResponseWriter, shape errorShape, e apiError) {
	name, data := shape.streamEvent(e)
	sse.WriteEvent(w, name, data)
}

// WriteAnthropicError answers in Anthropic's error shape:
// {"type":"error","error":{"type":…,"message":…}}. retryAfter > 0 adds a
// Retry-After header in whole seconds (rounded up).
func WriteAnthropicError(w http.ResponseWriter, status int, typ, msg string, retryAfter time.Duration) {
	writeError(w, anthropicShape{}, apiError{Status: status, Kind: typ, Message: msg, RetryAfter: retryAfter})
}

// WriteOpenAIError answers in OpenAI's error shape.
func WriteOpenAIError(w http.ResponseWriter, status int, typ, msg string) {
	writeError(w, openAIShape{}, apiError{Status: status, Kind: typ, Message: msg})
}

// WriteGeminiError answers in Google's error shape.
func WriteGeminiError(w http.ResponseWriter, status int, msg string) {
	writeError(w, geminiShape{}, apiError{Status: status, Kind: errNotFound, Message: msg})
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

// denialError turns a policy refusal into an apiError with its code and,
// for cost limits, the spend, the limit and when it resets.
func denialError(d *policy.Denial) apiError {
	e := apiError{Status: d.Status, Kind: d.Type, Message: "crs: " + d.Message, RetryAfter: d.RetryAfter, Code: d.Code}
	if d.Limit > 0 {
		cur, lim := pricing.FromPico(d.Current).String(), pricing.FromPico(d.Limit).String()
		e.CurrentCost, e.CostLimit = &cur, &lim
	}
	if !d.ResetAt.IsZero() {
		t := d.ResetAt.UTC()
		e.ResetAt = &t
	}
	return e
}

// detail is the error object every shape carries, with the fields crs adds
// (code, cost figures) where they apply.
type detail struct {
	Type        string     `json:"type,omitempty"`
	Message     string     `json:"message"`
	Code        string     `json:"code,omitempty"`
	CurrentCost *string    `json:"current_cost,omitempty"`
	CostLimit   *string    `json:"cost_limit,omitempty"`
	ResetAt     *time.Time `json:"reset_at,omitempty"`
}

func detailOf(e apiError) detail {
	return detail{Type: e.Kind, Message: e.Message, Code: e.Code, CurrentCost: e.CurrentCost, CostLimit: e.CostLimit, ResetAt: e.ResetAt}
}

// anthropicShape is {"type":"error","error":{"type","message",…}}.
type anthropicShape struct{}

func (anthropicShape) body(e apiError) []byte {
	b, _ := json.Marshal(struct {
		Type  string `json:"type"`
		Error detail `json:"error"`
	}{"error", detailOf(e)})
	return b
}

func (anthropicShape) status(s int) int { return s }

func (s anthropicShape) streamEvent(e apiError) (string, []byte) { return "error", s.body(e) }

// openAIShape is {"error":{"message","type","param","code"}}. 529 becomes
// 503: OpenAI clients know no 529 (both are retried).
type openAIShape struct{}

func (openAIShape) body(e apiError) []byte {
	type oaDetail struct {
		Message     string     `json:"message"`
		Type        string     `json:"type"`
		Param       *string    `json:"param"`
		Code        *string    `json:"code"`
		CurrentCost *string    `json:"current_cost,omitempty"`
		CostLimit   *string    `json:"cost_limit,omitempty"`
		ResetAt     *time.Time `json:"reset_at,omitempty"`
	}
	d := oaDetail{Message: e.Message, Type: e.Kind, CurrentCost: e.CurrentCost, CostLimit: e.CostLimit, ResetAt: e.ResetAt}
	if e.Code != "" {
		d.Code = &e.Code
	}
	b, _ := json.Marshal(struct {
		Error oaDetail `json:"error"`
	}{d})
	return b
}

func (openAIShape) status(s int) int {
	if s == 529 {
		return http.StatusServiceUnavailable
	}
	return s
}

// streamEvent is the Responses API's error event.
func (openAIShape) streamEvent(e apiError) (string, []byte) {
	b, _ := json.Marshal(map[string]any{"type": "error", "code": e.Kind, "message": e.Message, "param": nil})
	return "error", b
}

// geminiShape is Google's {"error":{"code","message","status"}}. 529
// becomes 503 UNAVAILABLE.
type geminiShape struct{}

// googleError is the error object of Google's APIs, with crs's additions.
type googleError struct {
	Code        int        `json:"code"`
	Message     string     `json:"message"`
	Status      string     `json:"status"`
	Reason      string     `json:"reason,omitempty"`
	CurrentCost *string    `json:"current_cost,omitempty"`
	CostLimit   *string    `json:"cost_limit,omitempty"`
	ResetAt     *time.Time `json:"reset_at,omitempty"`
}

func (g geminiShape) body(e apiError) []byte {
	status := g.status(e.Status)
	b, _ := json.Marshal(struct {
		Error googleError `json:"error"`
	}{googleError{status, e.Message, googleStatus(status), e.Code, e.CurrentCost, e.CostLimit, e.ResetAt}})
	return b
}

func (geminiShape) status(s int) int {
	if s == 529 {
		return http.StatusServiceUnavailable
	}
	return s
}

// streamEvent: a Gemini stream has no error event; the error object goes
// out as the last data chunk, which is what Google's own servers do.
func (g geminiShape) streamEvent(e apiError) (string, []byte) { return "", g.body(e) }

// googleStatus names an HTTP status the way Google's APIs do.
func googleStatus(s int) string {
	switch s {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return "INVALID_ARGUMENT"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusPaymentRequired:
		return "FAILED_PRECONDITION"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	case http.StatusGatewayTimeout:
		return "DEADLINE_EXCEEDED"
	}
	return "INTERNAL"
}
