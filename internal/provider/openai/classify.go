package openai

import (
	"bytes"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/provider"
	"github.com/crs-relay/crs/internal/sse"
	"github.com/crs-relay/crs/internal/store"
)

// Cooldown lengths. Reset times the upstream states win over these
// defaults, capped at MaxCooldown so one odd value cannot park an account
// for a year.
const (
	TransientCooldown = 60 * time.Second // 5xx, 408, server_error events
	// OverloadCooldown is short: server_is_overloaded and slow_down say
	// OpenAI is busy, not that this account did anything wrong.
	OverloadCooldown  = 30 * time.Second
	RateLimitCooldown = 60 * time.Second // 429 without any reset hint
	// UsageLimitCooldown rests a subscription whose Codex usage limit was
	// reached when neither the body nor the headers say when it resets.
	// The limits are five-hour and weekly windows; probing every minute
	// would only collect refusals.
	UsageLimitCooldown = 30 * time.Minute
	// CredentialCooldown rests an account whose key or token was refused,
	// whose API credit ran out, or whose plan does not include Codex.
	CredentialCooldown = 30 * time.Minute
	// BlockedCooldown is effectively forever: a deactivated account or
	// workspace does not come back by itself. `crs accounts reset` clears
	// it.
	BlockedCooldown = 100 * 365 * 24 * time.Hour
	// MaxCooldown bounds a stated reset. It is a little over a week so a
	// weekly Codex window reported to the second is never cut short.
	MaxCooldown = 8 * 24 * time.Hour
)

// Error codes (error.code, or error.type where the Codex backend puts
// them) that decide an outcome whatever the HTTP status.
const (
	// CodeUsageLimitReached: a ChatGPT plan's Codex limit (five-hour or
	// weekly window) is used up; the error says when it resets.
	CodeUsageLimitReached = "usage_limit_reached"
	// CodeUsageNotIncluded: the ChatGPT plan does not include Codex.
	CodeUsageNotIncluded = "usage_not_included"
	// CodeInsufficientQuota: an API key's organization is out of credit.
	CodeInsufficientQuota = "insufficient_quota"
	// CodeRateLimitExceeded: a per-minute limit; the message says "try
	// again in 1.5s".
	CodeRateLimitExceeded = "rate_limit_exceeded"
)

// blockedCodes mark an account that is gone for good.
var blockedCodes = []string{"account_deactivated", "deactivated_workspace"}

// clientCodes are request faults another account would refuse alike.
var clientCodes = []string{
	"context_length_exceeded",
	"invalid_prompt",
	"cyber_policy",
	"max_response_tokens",
	"invalid_request_error",
	"invalid_value",
	"model_not_found",
	"unsupported_parameter",
	"unsupported_value",
}

// Classify turns an upstream answer into an Outcome. body is the error body
// (may be empty or cut); it is only read for non-2xx statuses.
//
// The fault table (the error's code or type first, then the status):
//
//	usage_limit_reached          rate limited until resets_at, else now + resets_in_seconds,
//	                             else the exhausted x-codex-* window's reset, else retry-after,
//	                             else UsageLimitCooldown (any status; the Codex backend sends 429)
//	insufficient_quota           credential dead for CredentialCooldown (API key out of credit)
//	usage_not_included           credential dead for CredentialCooldown (plan without Codex)
//	account_deactivated,
//	deactivated_workspace        blocked
//	2xx                          OK
//	429                          rate limited for retry-after-ms / retry-after, else until the
//	                             exhausted x-codex-* window resets, else RateLimitCooldown
//	401, 402, 403                credential dead for CredentialCooldown
//	408, 5xx (529, 52x too)      transient for retry-after, else TransientCooldown
//	anything else (400, 404,
//	409, 413, 422…)              client error: the answer goes to the client as it is
func Classify(now time.Time, status int, h http.Header, body []byte) provider.Outcome {
	if status >= 200 && status < 300 {
		return provider.Outcome{Kind: provider.OK, Status: status}
	}
	e := readError(body)
	switch {
	case e.is(CodeUsageLimitReached):
		d := e.resetDelay(now)
		if d <= 0 {
			d = limitsDelay(now, h)
		}
		if d <= 0 {
			d = retryAfter(now, h)
		}
		return provider.Rest(now, store.CooldownRateLimited, capDelay(d, UsageLimitCooldown), status, "usage limit reached: "+e.message)
	case e.is(CodeInsufficientQuota):
		return provider.Rest(now, store.CooldownCredentialDead, CredentialCooldown, status, "out of credit: "+e.message)
	case e.is(CodeUsageNotIncluded):
		return provider.Rest(now, store.CooldownCredentialDead, CredentialCooldown, status, "plan does not include codex: "+e.message)
	case e.isAny(blockedCodes):
		return provider.Rest(now, store.CooldownBlocked, BlockedCooldown, status, "blocked: "+e.message)
	}
	switch {
	case status == http.StatusTooManyRequests:
		d := retryAfter(now, h)
		if d <= 0 {
			d = limitsDelay(now, h)
		}
		return provider.Rest(now, store.CooldownRateLimited, capDelay(d, RateLimitCooldown), status, "rate limited: "+e.message)
	case status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusPaymentRequired:
		return provider.Rest(now, store.CooldownCredentialDead, CredentialCooldown, status, "credential refused: "+e.message)
	case status >= 500 || status == http.StatusRequestTimeout:
		return provider.Rest(now, store.CooldownTransient, capDelay(retryAfter(now, h), TransientCooldown), status, "upstream error: "+e.message)
	}
	return provider.Outcome{Kind: provider.ClientError, Status: status, Reason: e.message}
}

// ClassifyStreamEvent classifies a failure reported inside a 200 stream.
// ok is false when ev is neither a response.failed event (data
// {"type":"response.failed","response":{…,"error":{"code","message"}}})
// nor an error event (data {"type":"error","code","message",…} from the
// Responses API, or {"type":"error","error":{"type","message",
// "resets_in_seconds"…}} as the Codex backend reports a usage limit).
//
// The code decides: usage_limit_reached rests the account until its reset
// (UsageLimitCooldown when none is given); rate_limit_exceeded for the
// "try again in …" of its message (RateLimitCooldown when none);
// insufficient_quota and usage_not_included mark the credential dead;
// server_is_overloaded and slow_down rest it briefly; request faults
// (context_length_exceeded, invalid_prompt, an invalid_request_error…) are
// the client's; anything else, server_error included, is transient.
func ClassifyStreamEvent(now time.Time, ev sse.Event) (provider.Outcome, bool) {
	var e apiError
	switch eventType(ev) {
	case "response.failed":
		e = errorFrom(gjson.GetBytes(ev.Data, "response.error"))
	case "error":
		root := gjson.ParseBytes(ev.Data)
		switch inner := root.Get("error"); {
		case inner.IsObject():
			e = errorFrom(inner)
		case inner.Type == gjson.String:
			e.message = inner.Str
		default:
			e = errorFrom(root)
			if e.typ == "error" {
				e.typ = "" // the event's own type, not an error type
			}
		}
	default:
		return provider.Outcome{}, false
	}
	switch {
	case e.is(CodeUsageLimitReached):
		return provider.Rest(now, store.CooldownRateLimited, capDelay(e.resetDelay(now), UsageLimitCooldown), 429, "usage limit reached in stream: "+e.message), true
	case e.is(CodeRateLimitExceeded):
		return provider.Rest(now, store.CooldownRateLimited, capDelay(tryAgainIn(e.message), RateLimitCooldown), 429, "rate limited in stream: "+e.message), true
	case e.is(CodeInsufficientQuota):
		return provider.Rest(now, store.CooldownCredentialDead, CredentialCooldown, 429, "out of credit in stream: "+e.message), true
	case e.is(CodeUsageNotIncluded):
		return provider.Rest(now, store.CooldownCredentialDead, CredentialCooldown, 403, "plan does not include codex in stream: "+e.message), true
	case e.isAny(blockedCodes):
		return provider.Rest(now, store.CooldownBlocked, BlockedCooldown, 403, "blocked in stream: "+e.message), true
	case e.is("invalid_api_key"), e.is("authentication_error"), e.is("token_expired"), e.is("permission_error"):
		return provider.Rest(now, store.CooldownCredentialDead, CredentialCooldown, 401, "credential refused in stream: "+e.message), true
	case e.is("server_is_overloaded"), e.is("slow_down"):
		return provider.Rest(now, store.CooldownTransient, OverloadCooldown, 503, "overloaded in stream: "+e.message), true
	case e.isAny(clientCodes):
		return provider.Outcome{Kind: provider.ClientError, Status: 400, Reason: e.message}, true
	}
	return provider.Rest(now, store.CooldownTransient, TransientCooldown, 500, "stream error: "+e.label()+" "+e.message), true
}

// apiError is the part of an OpenAI or Codex error object that decides an
// outcome.
type apiError struct {
	code, typ, message string
	// resetsAt and resetsIn are the Codex usage-limit fields: an epoch
	// second (or RFC 3339 time) and seconds from now.
	resetsAt, resetsIn gjson.Result
}

// readError reads an error body: {"error":{"message","type","code",…}} as
// OpenAI and the Codex backend send it, {"detail":"…"} or
// {"detail":{"code":…}} as the ChatGPT backend answers some faults, or any
// other text, of which a trimmed prefix becomes the message.
func readError(body []byte) apiError {
	res := gjson.GetManyBytes(body, "error", "detail")
	var e apiError
	switch {
	case res[0].IsObject():
		return errorFrom(res[0])
	case res[1].IsObject():
		// The ChatGPT backend's {"detail":{"code":"deactivated_workspace"}}.
		if e = errorFrom(res[1]); e.message == "" {
			e.message = e.label()
		}
		return e
	case res[0].Type == gjson.String:
		e.message = res[0].Str
	case res[1].Type == gjson.String:
		e.message = res[1].Str
	default:
		e.message = string(bytes.TrimSpace(body))
	}
	if len(e.message) > 200 {
		e.message = e.message[:200]
	}
	return e
}

func errorFrom(obj gjson.Result) apiError {
	if !obj.IsObject() {
		return apiError{}
	}
	var e apiError
	obj.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "code":
			e.code = v.String()
		case "type":
			e.typ = v.String()
		case "message":
			e.message = v.String()
		case "resets_at":
			e.resetsAt = v
		case "resets_in_seconds":
			e.resetsIn = v
		}
		return true
	})
	return e
}

// is reports whether the error carries code, as its code or its type: the
// Codex backend reports usage_limit_reached as the type, the API reports
// insufficient_quota as both.
func (e apiError) is(code string) bool {
	return strings.EqualFold(e.code, code) || strings.EqualFold(e.typ, code)
}

func (e apiError) isAny(codes []string) bool {
	for _, c := range codes {
		if e.is(c) {
			return true
		}
	}
	return false
}

func (e apiError) label() string {
	switch {
	case e.code != "":
		return e.code
	case e.typ != "":
		return e.typ
	}
	return "unknown"
}

// resetDelay is how long until a usage limit resets by the error's own
// fields: resets_at (epoch seconds, or an RFC 3339 time) first, since it
// does not age in transit, then resets_in_seconds. Zero when neither
// gives a time in the future.
func (e apiError) resetDelay(now time.Time) time.Duration {
	if t := epochOrRFC3339(e.resetsAt); !t.IsZero() {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	if e.resetsIn.Type == gjson.Number || e.resetsIn.Type == gjson.String {
		if sec, err := strconv.ParseFloat(strings.TrimSpace(e.resetsIn.String()), 64); err == nil {
			return seconds(sec)
		}
	}
	return 0
}

// epochOrRFC3339 reads a time given as epoch seconds (a number or a string
// of digits) or as RFC 3339. Anything else, and any time at or before the
// epoch or past year 9999, is zero.
func epochOrRFC3339(r gjson.Result) time.Time {
	var s string
	switch r.Type {
	case gjson.Number:
		s = r.Raw
	case gjson.String:
		s = strings.TrimSpace(r.Str)
	default:
		return time.Time{}
	}
	if sec, err := strconv.ParseFloat(s, 64); err == nil {
		if !(sec > 0 && sec <= 253402300799) {
			return time.Time{}
		}
		return time.Unix(int64(sec), 0)
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil && t.Unix() > 0 {
		return t
	}
	return time.Time{}
}

// retryAfter reads retry-after-ms (which the OpenAI SDKs prefer) and then
// retry-after (seconds or an HTTP date). Zero when neither is usable.
func retryAfter(now time.Time, h http.Header) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 && ms < math.MaxInt64/float64(time.Millisecond) {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if sec, err := strconv.ParseFloat(v, 64); err == nil {
			return seconds(sec)
		}
		if t, err := http.ParseTime(v); err == nil {
			return t.Sub(now)
		}
	}
	return 0
}

// limitsDelay is how long until the Codex quota headers say the account
// works again, zero when they report no exhausted window.
func limitsDelay(now time.Time, h http.Header) time.Duration {
	lim, ok := ReadCodexLimits(h)
	if !ok {
		return 0
	}
	until, ok := lim.Exhausted(now)
	if !ok {
		return 0
	}
	return until.Sub(now)
}

// tryAgainIn reads the wait out of a rate_limit_exceeded message: "Please
// try again in 1.5s.", "… in 20ms", "… in 6m0s", "… in 3 seconds". Zero
// when the message says none.
func tryAgainIn(msg string) time.Duration {
	lower := strings.ToLower(msg)
	i := strings.Index(lower, "try again in")
	if i < 0 {
		return 0
	}
	fields := strings.Fields(lower[i+len("try again in"):])
	if len(fields) == 0 {
		return 0
	}
	tok := strings.TrimRight(fields[0], ".,;")
	if d, err := time.ParseDuration(tok); err == nil {
		return max(d, 0)
	}
	n, err := strconv.ParseFloat(tok, 64)
	if err != nil || len(fields) < 2 {
		return 0
	}
	switch unit := strings.TrimRight(fields[1], ".,;"); {
	case unit == "ms" || strings.HasPrefix(unit, "millisecond"):
		return seconds(n / 1000)
	case unit == "s" || strings.HasPrefix(unit, "sec"):
		return seconds(n)
	case unit == "m" || strings.HasPrefix(unit, "min"):
		return seconds(n * 60)
	}
	return 0
}

// seconds converts a count of seconds, saturating instead of overflowing;
// NaN and non-positive counts are zero.
func seconds(sec float64) time.Duration {
	switch {
	case !(sec > 0):
		return 0
	case sec >= float64(MaxCooldown/time.Second):
		return MaxCooldown
	}
	return time.Duration(sec * float64(time.Second))
}

// capDelay returns d within (0, MaxCooldown], or def when d says nothing.
func capDelay(d, def time.Duration) time.Duration {
	switch {
	case d <= 0:
		return def
	case d > MaxCooldown:
		return MaxCooldown
	}
	return d
}
