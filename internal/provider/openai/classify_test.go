package openai

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/provider"
	"github.com/crs-relay/crs/internal/sse"
	"github.com/crs-relay/crs/internal/store"
)

func apiErr(typ, code, msg string) []byte {
	return []byte(`{"error":{"message":"` + msg + `","type":"` + typ + `","param":null,"code":"` + code + `"}}`)
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// TestClassifyFaultTable is the fault table: status, headers and body of an
// upstream answer → what the relay does with the account.
func TestClassifyFaultTable(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	unix := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	usageLimit := func(extra string) []byte {
		return []byte(`{"error":{"type":"usage_limit_reached","message":"The usage limit has been reached","plan_type":"plus"` + extra + `}}`)
	}
	exhausted5h := hdr("X-Codex-Primary-Used-Percent", "100", "X-Codex-Primary-Window-Minutes", "300", "X-Codex-Primary-Reset-After-Seconds", "5400",
		"X-Codex-Secondary-Used-Percent", "41", "X-Codex-Secondary-Window-Minutes", "10080", "X-Codex-Secondary-Reset-After-Seconds", "400000")
	cases := []struct {
		name     string
		status   int
		header   http.Header
		body     []byte
		kind     provider.Kind
		cooldown store.CooldownKind
		rest     time.Duration
	}{
		{"200", 200, nil, nil, provider.OK, "", 0},
		{"201", 201, nil, nil, provider.OK, "", 0},

		// Codex usage limits: the error's own reset first.
		{"429 usage limit, resets_in_seconds", 429, nil, usageLimit(`,"resets_in_seconds":7200`), provider.Failover, store.CooldownRateLimited, 2 * time.Hour},
		{"429 usage limit, resets_at wins", 429, nil, usageLimit(`,"resets_at":` + unix(3*time.Hour) + `,"resets_in_seconds":10`), provider.Failover, store.CooldownRateLimited, 3 * time.Hour},
		{"429 usage limit, resets_at RFC 3339", 429, nil, usageLimit(`,"resets_at":"` + now.Add(90*time.Minute).UTC().Format(time.RFC3339) + `"`), provider.Failover, store.CooldownRateLimited, 90 * time.Minute},
		{"429 usage limit, resets_at past falls to resets_in", 429, nil, usageLimit(`,"resets_at":1,"resets_in_seconds":60`), provider.Failover, store.CooldownRateLimited, time.Minute},
		{"429 usage limit, resets_in as string", 429, nil, usageLimit(`,"resets_in_seconds":"120"`), provider.Failover, store.CooldownRateLimited, 2 * time.Minute},
		{"429 usage limit, only the headers know", 429, exhausted5h, usageLimit(``), provider.Failover, store.CooldownRateLimited, 90 * time.Minute},
		{"429 usage limit, only retry-after", 429, hdr("Retry-After", "600"), usageLimit(``), provider.Failover, store.CooldownRateLimited, 10 * time.Minute},
		{"429 usage limit, nothing known", 429, nil, usageLimit(``), provider.Failover, store.CooldownRateLimited, UsageLimitCooldown},
		{"429 usage limit as code", 429, nil, apiErr("invalid_request_error", "usage_limit_reached", "limit"), provider.Failover, store.CooldownRateLimited, UsageLimitCooldown},
		{"429 usage limit a month away is capped", 429, nil, usageLimit(`,"resets_in_seconds":2592000`), provider.Failover, store.CooldownRateLimited, MaxCooldown},
		{"429 usage limit, weekly to the second", 429, nil, usageLimit(`,"resets_in_seconds":604800`), provider.Failover, store.CooldownRateLimited, 7 * 24 * time.Hour},

		// Other 429s.
		{"429 retry-after", 429, hdr("Retry-After", "17"), apiErr("requests", "rate_limit_exceeded", "Rate limit reached"), provider.Failover, store.CooldownRateLimited, 17 * time.Second},
		{"429 retry-after-ms wins", 429, hdr("Retry-After-Ms", "1500", "Retry-After", "17"), apiErr("tokens", "rate_limit_exceeded", "x"), provider.Failover, store.CooldownRateLimited, 1500 * time.Millisecond},
		{"429 retry-after date", 429, hdr("Retry-After", now.Add(2*time.Minute).UTC().Format(http.TimeFormat)), nil, provider.Failover, store.CooldownRateLimited, 2 * time.Minute},
		{"429 codex headers, no body", 429, exhausted5h, nil, provider.Failover, store.CooldownRateLimited, 90 * time.Minute},
		{"429 no hint", 429, nil, apiErr("requests", "rate_limit_exceeded", "x"), provider.Failover, store.CooldownRateLimited, RateLimitCooldown},
		{"429 garbage retry-after", 429, hdr("Retry-After", "soon", "Retry-After-Ms", "NaN"), nil, provider.Failover, store.CooldownRateLimited, RateLimitCooldown},
		{"429 absurd retry-after capped", 429, hdr("Retry-After", "99999999999"), nil, provider.Failover, store.CooldownRateLimited, MaxCooldown},
		{"429 negative retry-after", 429, hdr("Retry-After", "-5"), nil, provider.Failover, store.CooldownRateLimited, RateLimitCooldown},

		// Credit, plan, credential.
		{"429 insufficient_quota", 429, hdr("Retry-After", "1"), apiErr("insufficient_quota", "insufficient_quota", "You exceeded your current quota"), provider.Failover, store.CooldownCredentialDead, CredentialCooldown},
		{"403 usage_not_included", 403, nil, []byte(`{"error":{"type":"usage_not_included","message":"upgrade to Plus"}}`), provider.Failover, store.CooldownCredentialDead, CredentialCooldown},
		{"401 invalid key", 401, nil, apiErr("invalid_request_error", "invalid_api_key", "Incorrect API key provided"), provider.Failover, store.CooldownCredentialDead, CredentialCooldown},
		{"401 chatgpt detail", 401, nil, []byte(`{"detail":"Could not parse your authentication token. Please try signing in again."}`), provider.Failover, store.CooldownCredentialDead, CredentialCooldown},
		{"403 cloudflare html", 403, nil, []byte(`<!DOCTYPE html><html><title>Just a moment...</title></html>`), provider.Failover, store.CooldownCredentialDead, CredentialCooldown},
		{"402 payment", 402, nil, []byte(`{"detail":"Payment required"}`), provider.Failover, store.CooldownCredentialDead, CredentialCooldown},
		{"402 detail deactivated workspace", 402, nil, []byte(`{"detail":{"code":"deactivated_workspace"}}`), provider.Failover, store.CooldownBlocked, BlockedCooldown},
		{"402 deactivated workspace", 402, nil, []byte(`{"error":{"code":"deactivated_workspace","message":"workspace deactivated"}}`), provider.Failover, store.CooldownBlocked, BlockedCooldown},
		{"401 account deactivated", 401, nil, apiErr("invalid_request_error", "account_deactivated", "This account has been deactivated"), provider.Failover, store.CooldownBlocked, BlockedCooldown},

		// Upstream trouble.
		{"500", 500, nil, apiErr("server_error", "", "boom"), provider.Failover, store.CooldownTransient, TransientCooldown},
		{"502 html", 502, nil, []byte("<html>bad gateway</html>"), provider.Failover, store.CooldownTransient, TransientCooldown},
		{"503 retry-after", 503, hdr("Retry-After", "5"), apiErr("server_error", "server_is_overloaded", "busy"), provider.Failover, store.CooldownTransient, 5 * time.Second},
		{"504", 504, nil, nil, provider.Failover, store.CooldownTransient, TransientCooldown},
		{"520 cloudflare", 520, nil, nil, provider.Failover, store.CooldownTransient, TransientCooldown},
		{"529", 529, nil, nil, provider.Failover, store.CooldownTransient, TransientCooldown},
		{"408", 408, nil, nil, provider.Failover, store.CooldownTransient, TransientCooldown},

		// The client's own faults: another account would say the same.
		{"400 bad request", 400, nil, apiErr("invalid_request_error", "", "Missing required parameter: 'input'."), provider.ClientError, "", 0},
		{"400 context length", 400, nil, apiErr("invalid_request_error", "context_length_exceeded", "too long"), provider.ClientError, "", 0},
		{"400 codex store", 400, nil, []byte(`{"detail":"Store must be set to false"}`), provider.ClientError, "", 0},
		{"404 model", 404, nil, apiErr("invalid_request_error", "model_not_found", "The model `gpt-9` does not exist"), provider.ClientError, "", 0},
		{"413", 413, nil, nil, provider.ClientError, "", 0},
		{"422", 422, nil, []byte(`{"detail":[{"loc":["body","input"],"msg":"field required"}]}`), provider.ClientError, "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := c.header
			if h == nil {
				h = http.Header{}
			}
			o := Classify(now, c.status, h, c.body)
			if o.Kind != c.kind || o.Cooldown != c.cooldown || o.Status != c.status {
				t.Fatalf("got %v/%q/%d, want %v/%q/%d (%s)", o.Kind, o.Cooldown, o.Status, c.kind, c.cooldown, c.status, o.Reason)
			}
			if c.kind == provider.Failover && o.Until.Sub(now) != c.rest {
				t.Fatalf("rest = %v, want %v (%s)", o.Until.Sub(now), c.rest, o.Reason)
			}
			if c.kind != provider.Failover && !o.Until.IsZero() {
				t.Fatalf("a %v outcome rests the account until %v", o.Kind, o.Until)
			}
		})
	}
}

func TestClassifyReason(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, c := range []struct {
		body, want string
	}{
		{`{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}`, "credential refused: Incorrect API key provided"},
		{`{"detail":"Unauthorized"}`, "credential refused: Unauthorized"},
		{`{"error":"token expired"}`, "credential refused: token expired"},
		{"  plain text  ", "credential refused: plain text"},
	} {
		if o := Classify(now, 401, http.Header{}, []byte(c.body)); o.Reason != c.want {
			t.Errorf("%s: reason %q, want %q", c.body, o.Reason, c.want)
		}
	}
	long := make([]byte, 1000)
	for i := range long {
		long[i] = 'x'
	}
	if o := Classify(now, 500, http.Header{}, long); len(o.Reason) > 250 {
		t.Errorf("reason not bounded: %d bytes", len(o.Reason))
	}
}

func TestClassifyStreamEvent(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	failed := func(code, msg string) sse.Event {
		return sse.Event{Name: "response.failed", Data: []byte(`{"type":"response.failed","sequence_number":3,"response":{"id":"resp_1","object":"response","status":"failed",` +
			`"error":{"code":"` + code + `","message":"` + msg + `"},"usage":null}}`)}
	}
	errEv := func(code, msg string) sse.Event {
		return sse.Event{Name: "error", Data: []byte(`{"type":"error","code":"` + code + `","message":"` + msg + `","param":null,"sequence_number":2}`)}
	}
	tests := []struct {
		name     string
		ev       sse.Event
		isErr    bool
		kind     provider.Kind
		cooldown store.CooldownKind
		rest     time.Duration
		status   int
	}{
		{"codex usage limit, nested", sse.Event{Name: "error", Data: []byte(`{"type":"error","error":{"type":"usage_limit_reached","message":"The usage limit has been reached","plan_type":"pro","resets_in_seconds":3600}}`)},
			true, provider.Failover, store.CooldownRateLimited, time.Hour, 429},
		{"codex usage limit, resets_at", sse.Event{Name: "error", Data: []byte(`{"type":"error","error":{"type":"usage_limit_reached","resets_at":` + strconv.FormatInt(now.Unix()+600, 10) + `}}`)},
			true, provider.Failover, store.CooldownRateLimited, 10 * time.Minute, 429},
		{"codex usage limit, no reset", errEv("usage_limit_reached", "limit"), true, provider.Failover, store.CooldownRateLimited, UsageLimitCooldown, 429},
		{"usage limit in response.failed", failed("usage_limit_reached", "limit"), true, provider.Failover, store.CooldownRateLimited, UsageLimitCooldown, 429},
		{"rate limit, try again in seconds", failed("rate_limit_exceeded", "Rate limit reached for gpt-5 in organization org-x on tokens per min (TPM). Please try again in 11.054s. Visit https://platform.openai.com/account/rate-limits"),
			true, provider.Failover, store.CooldownRateLimited, 11054 * time.Millisecond, 429},
		{"rate limit, try again in ms", failed("rate_limit_exceeded", "Please try again in 20ms."), true, provider.Failover, store.CooldownRateLimited, 20 * time.Millisecond, 429},
		{"rate limit, try again in 3 seconds", errEv("rate_limit_exceeded", "Please try again in 3 seconds."), true, provider.Failover, store.CooldownRateLimited, 3 * time.Second, 429},
		{"rate limit, try again in 6m0s", errEv("rate_limit_exceeded", "Please try again in 6m0s."), true, provider.Failover, store.CooldownRateLimited, 6 * time.Minute, 429},
		{"rate limit, no wait", failed("rate_limit_exceeded", "slow down"), true, provider.Failover, store.CooldownRateLimited, RateLimitCooldown, 429},
		{"insufficient quota", failed("insufficient_quota", "You exceeded your current quota"), true, provider.Failover, store.CooldownCredentialDead, CredentialCooldown, 429},
		{"usage not included", errEv("usage_not_included", "upgrade"), true, provider.Failover, store.CooldownCredentialDead, CredentialCooldown, 403},
		{"invalid api key", errEv("invalid_api_key", "bad key"), true, provider.Failover, store.CooldownCredentialDead, CredentialCooldown, 401},
		{"deactivated", errEv("account_deactivated", "gone"), true, provider.Failover, store.CooldownBlocked, BlockedCooldown, 403},
		{"overloaded", failed("server_is_overloaded", "busy"), true, provider.Failover, store.CooldownTransient, OverloadCooldown, 503},
		{"slow down", failed("slow_down", "busy"), true, provider.Failover, store.CooldownTransient, OverloadCooldown, 503},
		{"server error", failed("server_error", "The server had an error"), true, provider.Failover, store.CooldownTransient, TransientCooldown, 500},
		{"unknown code", errEv("ERR_SOMETHING", "?"), true, provider.Failover, store.CooldownTransient, TransientCooldown, 500},
		{"failed without error object", sse.Event{Name: "response.failed", Data: []byte(`{"type":"response.failed","response":{"status":"failed"}}`)},
			true, provider.Failover, store.CooldownTransient, TransientCooldown, 500},
		{"error as a string", sse.Event{Name: "error", Data: []byte(`{"type":"error","error":"boom"}`)}, true, provider.Failover, store.CooldownTransient, TransientCooldown, 500},
		{"context length", failed("context_length_exceeded", "Your input exceeds the context window"), true, provider.ClientError, "", 0, 400},
		{"invalid prompt", failed("invalid_prompt", "flagged"), true, provider.ClientError, "", 0, 400},
		{"invalid request, by type", sse.Event{Name: "error", Data: []byte(`{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}`)},
			true, provider.ClientError, "", 0, 400},
		{"unnamed error typed by data", sse.Event{Data: []byte(`{"type":"error","code":"server_is_overloaded","message":"busy"}`)},
			true, provider.Failover, store.CooldownTransient, OverloadCooldown, 503},
		{"unnamed failed typed by data", sse.Event{Data: []byte(`{"type":"response.failed","response":{"error":{"code":"insufficient_quota"}}}`)},
			true, provider.Failover, store.CooldownCredentialDead, CredentialCooldown, 429},

		// Not failures.
		{"completed", sse.Event{Name: "response.completed", Data: []byte(`{"type":"response.completed","response":{"error":{"code":"server_error"}}}`)}, false, 0, "", 0, 0},
		{"delta mentioning an error", sse.Event{Name: "response.output_text.delta", Data: []byte(`{"type":"response.output_text.delta","delta":"error"}`)}, false, 0, "", 0, 0},
		{"incomplete", sse.Event{Name: "response.incomplete", Data: []byte(`{"type":"response.incomplete","response":{"incomplete_details":{"reason":"max_output_tokens"}}}`)}, false, 0, "", 0, 0},
		{"comment", sse.Event{Raw: []byte(": keep-alive\n\n")}, false, 0, "", 0, 0},
		{"name wins over data type", sse.Event{Name: "response.output_item.done", Data: []byte(`{"type":"error","code":"server_error"}`)}, false, 0, "", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, isErr := ClassifyStreamEvent(now, tt.ev)
			if isErr != tt.isErr {
				t.Fatalf("isErr = %v, want %v", isErr, tt.isErr)
			}
			if !isErr {
				if o != (provider.Outcome{}) {
					t.Fatalf("not an error, but outcome %+v", o)
				}
				return
			}
			if o.Kind != tt.kind || o.Cooldown != tt.cooldown || o.Status != tt.status {
				t.Fatalf("got %v/%q/%d, want %v/%q/%d (%s)", o.Kind, o.Cooldown, o.Status, tt.kind, tt.cooldown, tt.status, o.Reason)
			}
			if tt.kind == provider.Failover && o.Until.Sub(now) != tt.rest {
				t.Fatalf("rest = %v, want %v", o.Until.Sub(now), tt.rest)
			}
		})
	}
}

func TestTryAgainIn(t *testing.T) {
	for msg, want := range map[string]time.Duration{
		"Please try again in 1.5s.":          1500 * time.Millisecond,
		"Please TRY AGAIN IN 2s":             2 * time.Second,
		"try again in 250 ms":                250 * time.Millisecond,
		"try again in 250 milliseconds":      250 * time.Millisecond,
		"try again in 2 minutes":             2 * time.Minute,
		"try again in 1h2m3s":                time.Hour + 2*time.Minute + 3*time.Second,
		"try again in a moment":              0,
		"try again in":                       0,
		"try again in 5":                     0,
		"try again in 5 fortnights":          0,
		"no hint here":                       0,
		"try again in -3s":                   0,
		"try again in 1e30 seconds":          MaxCooldown,
		"try again in 1e400 seconds":         0,
		"try again in 99999999999999999999s": 0,
	} {
		if got := tryAgainIn(msg); got != want {
			t.Errorf("tryAgainIn(%q) = %v, want %v", msg, got, want)
		}
	}
}

// FuzzClassify feeds outside bytes to both classifiers: they must never
// panic, must say OK only for 2xx, and must rest an account for a bounded,
// positive time.
func FuzzClassify(f *testing.F) {
	f.Add(429, []byte(`{"error":{"type":"usage_limit_reached","resets_in_seconds":1e300,"resets_at":"2026-01-01T00:00:00Z"}}`), "120")
	f.Add(500, []byte(`{"detail":"x"}`), "Wed, 21 Oct 2015 07:28:00 GMT")
	f.Add(400, []byte(`{"type":"error","error":{"type":"rate_limit_exceeded","message":"try again in 1e9s"}}`), "-1")
	f.Add(200, []byte(`{"type":"response.failed","response":{"error":{"code":"usage_limit_reached","resets_at":-1}}}`), "")
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, status int, body []byte, retry string) {
		h := http.Header{"Retry-After": {retry}, "Retry-After-Ms": {retry}, "X-Codex-Primary-Used-Percent": {"100"}, "X-Codex-Primary-Reset-After-Seconds": {retry}}
		check := func(o provider.Outcome) {
			if o.Kind == provider.Failover {
				if d := o.Until.Sub(now); d <= 0 || (d > MaxCooldown && o.Cooldown != store.CooldownBlocked) {
					t.Fatalf("rest %v for %+v", d, o)
				}
			} else if !o.Until.IsZero() {
				t.Fatalf("%v outcome with a rest: %+v", o.Kind, o)
			}
		}
		o := Classify(now, status, h, body)
		if (o.Kind == provider.OK) != (status >= 200 && status < 300) {
			t.Fatalf("status %d classified %v", status, o.Kind)
		}
		check(o)
		for _, name := range []string{"", "error", "response.failed"} {
			if o, ok := ClassifyStreamEvent(now, sse.Event{Name: name, Data: body}); ok {
				check(o)
			}
		}
	})
}
