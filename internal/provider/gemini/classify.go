package gemini

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/provider"
	"github.com/crs-relay/crs/internal/store"
)

// Cooldown lengths. Delays the answer gives (google.rpc.RetryInfo,
// Retry-After) win over these defaults, capped at MaxCooldown so one odd
// answer cannot park an account for a year.
const (
	TransientCooldown  = 60 * time.Second // 5xx, UNAVAILABLE, timeouts
	CapacityCooldown   = 30 * time.Second // MODEL_CAPACITY_EXHAUSTED: Google is out of capacity, not this account
	RateLimitCooldown  = 60 * time.Second // 429 without any delay given
	CredentialCooldown = 30 * time.Minute // 401/403, invalid API key, unusable project
	MaxCooldown        = 7 * 24 * time.Hour
)

// googleError is the part of Google's error shape,
// {"error":{"code":429,"message":…,"status":"RESOURCE_EXHAUSTED","details":[…]}},
// that classification reads.
type googleError struct {
	message string
	status  string // canonical code name: RESOURCE_EXHAUSTED, UNAVAILABLE…
	reason  string // google.rpc.ErrorInfo reason: API_KEY_INVALID, QUOTA_EXHAUSTED…
	// retryDelay is google.rpc.RetryInfo's retryDelay, 0 if none.
	retryDelay time.Duration
	// daily is set when a google.rpc.QuotaFailure names a per-day quota.
	daily bool
}

// Classify turns an upstream answer of either protocol into an Outcome.
// body is the error body (may be empty or cut); it is only read for
// non-2xx statuses.
//
//   - 429 / RESOURCE_EXHAUSTED: the account is rate limited until the
//     delay the answer gives (RetryInfo's retryDelay, else Retry-After,
//     else "Please retry in …" in the message); without one, a per-day
//     quota rests it until Google's daily reset (midnight Pacific time)
//     and anything else for RateLimitCooldown. MODEL_CAPACITY_EXHAUSTED is
//     Google out of capacity for a model, not the account's quota: a short
//     transient rest. INSUFFICIENT_G1_CREDITS_BALANCE is out of credit.
//   - 401 UNAUTHENTICATED, 403 PERMISSION_DENIED (a dead token, a project
//     without Code Assist, VALIDATION_REQUIRED), an invalid or blocked API
//     key (which the Gemini API answers with 400 API_KEY_INVALID), and 400
//     FAILED_PRECONDITION (the free tier not offered in the account's
//     region, billing off): the credential cannot serve; CredentialCooldown.
//   - 5xx, 408, UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED, and 499
//     CANCELLED when Google cancelled on its side: transient.
//   - Anything else (400 INVALID_ARGUMENT, 404 NOT_FOUND, 413…) is the
//     request's fault and goes to the client.
func Classify(now time.Time, status int, h http.Header, body []byte) provider.Outcome {
	if status >= 200 && status < 300 {
		return provider.Outcome{Kind: provider.OK, Status: status}
	}
	e := readError(body)
	msg := e.message
	switch {
	case status == http.StatusTooManyRequests || e.status == "RESOURCE_EXHAUSTED":
		return classifyExhausted(now, status, h, e)
	case status == http.StatusUnauthorized || status == http.StatusForbidden ||
		e.status == "UNAUTHENTICATED" || e.status == "PERMISSION_DENIED":
		return provider.Rest(now, store.CooldownCredentialDead, CredentialCooldown, status, "credential refused: "+msg)
	case strings.HasPrefix(e.reason, "API_KEY_"):
		return provider.Rest(now, store.CooldownCredentialDead, CredentialCooldown, status, "API key refused: "+msg)
	case e.status == "FAILED_PRECONDITION":
		return provider.Rest(now, store.CooldownCredentialDead, CredentialCooldown, status, "account cannot serve: "+msg)
	case status >= 500 || status == http.StatusRequestTimeout || status == 499 ||
		e.status == "UNAVAILABLE" || e.status == "INTERNAL" || e.status == "DEADLINE_EXCEEDED" || e.status == "CANCELLED":
		return provider.Rest(now, store.CooldownTransient, delay(now, h, e, TransientCooldown), status, "upstream error: "+msg)
	}
	return provider.Outcome{Kind: provider.ClientError, Status: status, Reason: msg}
}

// classifyExhausted classifies a 429 / RESOURCE_EXHAUSTED answer.
func classifyExhausted(now time.Time, status int, h http.Header, e googleError) provider.Outcome {
	if status < 400 {
		status = http.StatusTooManyRequests
	}
	switch e.reason {
	case "MODEL_CAPACITY_EXHAUSTED":
		return provider.Rest(now, store.CooldownTransient, delay(now, h, e, CapacityCooldown), status, "model capacity exhausted: "+e.message)
	case "INSUFFICIENT_G1_CREDITS_BALANCE":
		return provider.Rest(now, store.CooldownCredentialDead, CredentialCooldown, status, "out of credit: "+e.message)
	}
	def := RateLimitCooldown
	if e.daily || e.reason == "QUOTA_EXHAUSTED" {
		def = untilPacificMidnight(now)
	}
	return provider.Rest(now, store.CooldownRateLimited, delay(now, h, e, def), status, "rate limited: "+e.message)
}

// ClassifyStreamError classifies a chunk of a 200 stream that carries an
// error instead of a response: {"error":{…}} (or Code Assist's
// {"response":{"error":…}}), which Google sends in place of a chunk when a
// stream fails after its 200. ok is false for any other chunk; the outcome is then the
// zero value.
func ClassifyStreamError(now time.Time, data []byte) (o provider.Outcome, ok bool) {
	if !bytes.Contains(data, []byte(`"error"`)) {
		return provider.Outcome{}, false
	}
	root := gjson.ParseBytes(data)
	if inner := root.Get("response"); inner.IsObject() {
		root = inner
	}
	errObj := root.Get("error")
	if !root.IsObject() || !errObj.IsObject() {
		return provider.Outcome{}, false
	}
	wrapped := `{"error":` + errObj.Raw + `}`
	code := int(errObj.Get("code").Int())
	if code < 400 || code > 599 {
		code = statusForCode(errObj.Get("status").String())
	}
	return Classify(now, code, http.Header{}, []byte(wrapped)), true
}

// statusForCode maps a canonical code name to its HTTP status, for error
// chunks without a usable numeric code.
func statusForCode(name string) int {
	switch name {
	case "INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE":
		return http.StatusBadRequest
	case "UNAUTHENTICATED":
		return http.StatusUnauthorized
	case "PERMISSION_DENIED":
		return http.StatusForbidden
	case "NOT_FOUND":
		return http.StatusNotFound
	case "RESOURCE_EXHAUSTED":
		return http.StatusTooManyRequests
	case "DEADLINE_EXCEEDED":
		return http.StatusGatewayTimeout
	case "UNAVAILABLE":
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// readError reads Google's error shape from a body: an object, or an array
// whose first element is one (streamGenerateContent without alt=sse fails
// that way). Without it, the message is a trimmed prefix of the body.
func readError(body []byte) googleError {
	root := gjson.ParseBytes(body)
	if root.IsArray() {
		root = root.Get("0")
	}
	errObj := root.Get("error")
	if !root.IsObject() || !errObj.IsObject() {
		s := strings.TrimSpace(string(body[:min(len(body), 400)]))
		if len(s) > 200 {
			s = s[:200]
		}
		return googleError{message: s}
	}
	e := googleError{
		message: errObj.Get("message").String(),
		status:  errObj.Get("status").String(),
	}
	errObj.Get("details").ForEach(func(_, d gjson.Result) bool {
		typ := d.Get("@type").String()
		switch {
		case strings.HasSuffix(typ, "google.rpc.RetryInfo"):
			if v, ok := parseDuration(d.Get("retryDelay").String()); ok {
				e.retryDelay = v
			}
		case strings.HasSuffix(typ, "google.rpc.ErrorInfo"):
			if e.reason == "" {
				e.reason = d.Get("reason").String()
			}
		case strings.HasSuffix(typ, "google.rpc.QuotaFailure"):
			d.Get("violations").ForEach(func(_, v gjson.Result) bool {
				id := v.Get("quotaId").String()
				if strings.Contains(id, "PerDay") || strings.Contains(id, "Daily") {
					e.daily = true
				}
				return true
			})
		}
		return true
	})
	return e
}

// delay is how long the answer says to wait: RetryInfo's retryDelay, else
// Retry-After (seconds or an HTTP date), else "Please retry in 12.5s" in
// the message; def when none is usable. Capped at MaxCooldown.
func delay(now time.Time, h http.Header, e googleError, def time.Duration) time.Duration {
	d := e.retryDelay
	if d <= 0 {
		if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
			if sec, err := strconv.ParseFloat(v, 64); err == nil {
				d = seconds(sec)
			} else if t, err := http.ParseTime(v); err == nil {
				d = t.Sub(now)
			}
		}
	}
	if d <= 0 {
		if _, rest, ok := strings.Cut(e.message, "Please retry in "); ok {
			end := 0
			for end < len(rest) && (rest[end] == '.' || isAlnum(rest[end])) {
				end++
			}
			if v, ok := parseDuration(strings.TrimSuffix(rest[:end], ".")); ok {
				d = v
			}
		}
	}
	switch {
	case d <= 0:
		return min(def, MaxCooldown)
	case d > MaxCooldown:
		return MaxCooldown
	}
	return d
}

// parseDuration reads a protobuf Duration in its JSON form ("34.074824224s")
// and the "900ms" form Google also writes in messages, exactly. ok is false
// for a negative value and for anything that is not a duration; one too
// large for a time.Duration is capped at MaxCooldown.
func parseDuration(s string) (time.Duration, bool) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return 0, false
		}
		return min(d, MaxCooldown), true
	}
	// Past time.Duration's range ("99999999999s"): seconds as a float.
	unit := time.Second
	num, ok := strings.CutSuffix(s, "ms")
	if ok {
		unit = time.Millisecond
	} else if num, ok = strings.CutSuffix(s, "s"); !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) || v < 0 || v != v {
		return 0, false
	}
	return seconds(v * unit.Seconds()), true
}

// seconds converts a count of seconds to a Duration without overflow:
// anything past MaxCooldown is MaxCooldown, and a negative count or NaN
// is 0.
func seconds(sec float64) time.Duration {
	switch {
	case sec >= MaxCooldown.Seconds():
		return MaxCooldown
	case sec > 0:
		return time.Duration(sec * float64(time.Second))
	}
	return 0
}

// untilPacificMidnight is how long until Google's per-day quotas reset, at
// midnight in US Pacific time. Without the time zone database (a static
// binary in a bare container) it takes UTC-8, which is at most an hour
// late in summer: the account rests a little longer, never too short.
func untilPacificMidnight(now time.Time) time.Duration {
	loc, err := time.LoadLocation("America/Los_Angeles")
	if err != nil {
		loc = time.FixedZone("PST", -8*60*60)
	}
	t := now.In(loc)
	next := time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, loc)
	return next.Sub(now)
}
