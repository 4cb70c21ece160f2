package anthropic

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/provider"
	"github.com/crs-relay/crs/internal/store"
)

// Cooldown lengths. Header-given resets win over these defaults, capped at
// MaxCooldown so one odd header cannot park an account for a year.
const (
	TransientCooldown  = 60 * time.Second // 5xx, timeouts, connect errors
	OverloadCooldown   = 30 * time.Second // 529: Anthropic is busy, not this account
	RateLimitCooldown  = 60 * time.Second // 429 without any reset hint
	CredentialCooldown = 30 * time.Minute // 401/403: key revoked or out of credit
	// BlockedCooldown is effectively forever: a disabled organization does
	// not come back by itself, and probing it again risks more than it
	// gains. `crs accounts reset` clears it.
	BlockedCooldown = 100 * 365 * 24 * time.Hour
	MaxCooldown     = 7 * 24 * time.Hour
)

// Classify turns an upstream answer into an Outcome. body is the error body
// (may be empty or cut); it is only read for non-2xx statuses.
func Classify(now time.Time, status int, h http.Header, body []byte) provider.Outcome {
	if status >= 200 && status < 300 {
		return provider.Outcome{Kind: provider.OK, Status: status}
	}
	msg := errorMessage(body)
	lower := strings.ToLower(msg)
	switch {
	case strings.Contains(lower, "organization has been disabled"),
		strings.Contains(lower, "oauth authentication is currently not allowed"):
		return provider.Rest(now, store.CooldownBlocked, BlockedCooldown, status, "blocked: "+msg)
	case strings.Contains(lower, "credit balance is too low"):
		return provider.Rest(now, store.CooldownCredentialDead, CredentialCooldown, status, "out of credit: "+msg)
	}
	switch {
	case status == http.StatusTooManyRequests:
		d := resetDelay(now, h, RateLimitCooldown)
		return provider.Rest(now, store.CooldownRateLimited, d, status, "rate limited: "+msg)
	case status == 529:
		return provider.Rest(now, store.CooldownTransient, resetDelay(now, h, OverloadCooldown), status, "overloaded: "+msg)
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return provider.Rest(now, store.CooldownCredentialDead, CredentialCooldown, status, "credential refused: "+msg)
	case status >= 500 || status == http.StatusRequestTimeout:
		return provider.Rest(now, store.CooldownTransient, resetDelay(now, h, TransientCooldown), status, "upstream error: "+msg)
	}
	return provider.Outcome{Kind: provider.ClientError, Status: status, Reason: msg}
}

// ClassifyTransport classifies a failure to get an answer at all: connect
// errors, resets and timeouts before the first event.
func ClassifyTransport(now time.Time, err error) provider.Outcome {
	return provider.Transport(now, err)
}

// ClassifyStreamError classifies an `event: error` inside a 200 stream, whose
// data is {"type":"error","error":{"type":…,"message":…}}.
func ClassifyStreamError(now time.Time, data []byte) provider.Outcome {
	typ := gjson.GetBytes(data, "error.type").String()
	msg := gjson.GetBytes(data, "error.message").String()
	switch typ {
	case "rate_limit_error":
		return provider.Rest(now, store.CooldownRateLimited, RateLimitCooldown, 429, "rate limited in stream: "+msg)
	case "overloaded_error":
		return provider.Rest(now, store.CooldownTransient, OverloadCooldown, 529, "overloaded in stream: "+msg)
	case "authentication_error", "permission_error":
		return provider.Rest(now, store.CooldownCredentialDead, CredentialCooldown, 401, "credential refused in stream: "+msg)
	case "invalid_request_error", "not_found_error", "request_too_large":
		return provider.Outcome{Kind: provider.ClientError, Status: 400, Reason: msg}
	}
	return provider.Rest(now, store.CooldownTransient, TransientCooldown, 500, "stream error: "+typ+" "+msg)
}

// resetDelay reads when the upstream says the account recovers:
// anthropic-ratelimit-unified-reset (epoch seconds), retry-after (seconds or
// an HTTP date); def when neither is usable.
func resetDelay(now time.Time, h http.Header, def time.Duration) time.Duration {
	d := time.Duration(0)
	if v := h.Get("anthropic-ratelimit-unified-reset"); v != "" {
		if sec, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			d = time.Unix(sec, 0).Sub(now)
		} else if t, err := time.Parse(time.RFC3339, v); err == nil {
			d = t.Sub(now)
		}
	}
	if d <= 0 {
		if v := strings.TrimSpace(h.Get("retry-after")); v != "" {
			if sec, err := strconv.ParseFloat(v, 64); err == nil {
				d = time.Duration(sec * float64(time.Second))
			} else if t, err := http.ParseTime(v); err == nil {
				d = t.Sub(now)
			}
		}
	}
	switch {
	case d <= 0:
		return def
	case d > MaxCooldown:
		return MaxCooldown
	}
	return d
}

// errorMessage extracts error.message from an Anthropic error body, or a
// trimmed prefix of the raw body.
func errorMessage(body []byte) string {
	if m := gjson.GetBytes(body, "error.message"); m.Exists() {
		return m.String()
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// ScopeRateLimit narrows a 429 outcome for model to the model's family when
// the answer carries the subscription quota headers
// (anthropic-ratelimit-unified-*) and they do not say that a limit covering
// every model (the 5-hour or the weekly window) is exhausted: a
// subscription's Opus quota running out must not stop its Sonnet traffic.
// When they do say so, the whole account rests until that window resets.
// A 429 without those headers (API keys, or a burst limit) keeps resting
// the whole account briefly, as Classify decided. Other outcomes, and
// models of no known family, are returned unchanged.
func ScopeRateLimit(now time.Time, o provider.Outcome, h http.Header, model string) provider.Outcome {
	if o.Kind != provider.Failover || o.Cooldown != store.CooldownRateLimited {
		return o
	}
	lim, ok := ReadLimits(h)
	if !ok {
		return o
	}
	if until, wide := lim.AccountWide(); wide {
		if d := until.Sub(now); d > 0 {
			o.Until = now.Add(min(d, MaxCooldown))
		}
		return o
	}
	if fam := Family(model); fam != "" {
		o.Family = fam
		o.Reason = fam + " " + o.Reason
	}
	return o
}
