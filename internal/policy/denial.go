package policy

import (
	"fmt"
	"net/http"
	"time"

	"github.com/shopspring/decimal"
)

// Machine-readable codes of a Denial. Scripts and clients match on these;
// they never change meaning.
const (
	CodeKeyExpired            = "key_expired"
	CodePermissionDenied      = "permission_denied"
	CodeModelNotAllowed       = "model_not_allowed"
	CodeClientNotAllowed      = "client_not_allowed"
	CodeRateWindowExceeded    = "rate_window_exceeded"
	CodeTotalCostExceeded     = "total_cost_limit_exceeded"
	CodeWeeklyCostExceeded    = "weekly_cost_limit_exceeded"
	CodeDailyCostExceeded     = "daily_cost_limit_exceeded"
	CodeDailyOpusCostExceeded = "daily_opus_cost_limit_exceeded"
	CodeConcurrencyExceeded   = "concurrency_limit_exceeded"
	CodeQueueTimeout          = "queue_timeout"
	// CodeLimitsUnavailable means the counters or the usage store failed,
	// so no limit could be judged; the request is refused rather than let
	// through unmetered.
	CodeLimitsUnavailable = "limits_unavailable"
	// CodeCanceled means the request's context ended while it waited in
	// the queue: the client is gone and nothing needs to be written.
	CodeCanceled = "request_canceled"
)

// Anthropic error types a Denial carries, chosen so that clients react
// right: authentication and permission errors are shown, not retried; rate
// limits are retried after Retry-After; billing errors are not retried.
const (
	TypeAuthentication = "authentication_error"
	TypePermission     = "permission_error"
	TypeRateLimit      = "rate_limit_error"
	TypeBilling        = "billing_error"
	TypeAPI            = "api_error"
)

// StatusClientClosed is the status of a Denial for a client that went away
// while queued (nginx's 499); it is never written to anyone.
const StatusClientClosed = 499

// Denial is a refused request: everything the relay needs to answer it in
// the protocol's own error shape.
type Denial struct {
	// Status is the HTTP status to answer with.
	Status int
	// Type is the Anthropic error type (TypePermission, …).
	Type string
	// Code is the machine-readable reason (CodeModelNotAllowed, …).
	Code string
	// Message says what happened and what to do, for a person.
	Message string
	// RetryAfter, when positive, becomes the Retry-After header (whole
	// seconds, rounded up).
	RetryAfter time.Duration
	// ResetAt is when a window or cost period resets; zero when it never
	// does (the total cost limit) or does not apply.
	ResetAt time.Time
	// Current and Limit are the rated spend and its limit, in
	// picodollars, for cost-limit denials; zero otherwise.
	Current, Limit int64
}

// Error makes a Denial usable as an error in logs and tests.
func (d *Denial) Error() string {
	return fmt.Sprintf("policy: %s (%d %s): %s", d.Code, d.Status, d.Type, d.Message)
}

func unavailable(what string, err error) *Denial {
	return &Denial{
		Status:     http.StatusServiceUnavailable,
		Type:       TypeAPI,
		Code:       CodeLimitsUnavailable,
		Message:    fmt.Sprintf("the relay could not check this key's limits (%s: %v); try again shortly", what, err),
		RetryAfter: time.Second,
	}
}

// atLeastSecond rounds a wait up to the smallest Retry-After worth sending.
func atLeastSecond(d time.Duration) time.Duration {
	return max(d, time.Second)
}

// usd formats picodollars as dollars: cents when that says enough, more
// digits for amounts below a cent.
func usd(pico int64) string {
	d := decimal.New(pico, -12)
	if s := d.StringFixed(2); pico == 0 || d.Abs().GreaterThanOrEqual(decimal.New(1, -2)) {
		return "$" + s
	}
	return "$" + d.Round(6).String()
}
