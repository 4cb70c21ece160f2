package gemini

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // Pacific midnight must not depend on the test machine

	"github.com/crs-relay/crs/internal/provider"
	"github.com/crs-relay/crs/internal/store"
)

// gErr is Google's error shape; details are raw JSON objects.
func gErr(code int, status, msg string, details ...string) []byte {
	return []byte(`{"error":{"code":` + strconv.Itoa(code) + `,"message":"` + msg + `","status":"` + status +
		`","details":[` + strings.Join(details, ",") + `]}}`)
}

func retryInfo(d string) string {
	return `{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"` + d + `"}`
}

func errorInfo(reason, domain string) string {
	return `{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"` + reason + `","domain":"` + domain + `","metadata":{"service":"generativelanguage.googleapis.com"}}`
}

func quotaFailure(quotaID string) string {
	return `{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"` + quotaID + `","quotaDimensions":{"location":"global","model":"gemini-2.5-pro"},"quotaValue":"50"}]}`
}

// TestClassifyFaultTable is the fault table: status, headers and body of an
// upstream answer → what the relay does with the account.
func TestClassifyFaultTable(t *testing.T) {
	// 2026-07-01 10:00 UTC is 03:00 PDT: the next Pacific midnight is 21
	// hours away.
	now := time.Date(2026, 7, 1, 10, 0, 0, 0, time.UTC)
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	exhausted := func(details ...string) []byte {
		return gErr(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).", details...)
	}
	cases := []struct {
		name     string
		status   int
		header   http.Header
		body     []byte
		kind     provider.Kind
		cooldown store.CooldownKind
		rest     time.Duration
	}{
		{"ok", 200, nil, nil, provider.OK, "", 0},
		{"429 RetryInfo", 429, nil, exhausted(quotaFailure("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"), retryInfo("34.074824224s")),
			provider.Failover, store.CooldownRateLimited, 34074824224 * time.Nanosecond},
		{"429 RetryInfo wins over Retry-After", 429, hdr("Retry-After", "5"), exhausted(retryInfo("12s")), provider.Failover, store.CooldownRateLimited, 12 * time.Second},
		{"429 Retry-After seconds", 429, hdr("Retry-After", "17"), exhausted(), provider.Failover, store.CooldownRateLimited, 17 * time.Second},
		{"429 Retry-After date", 429, hdr("Retry-After", now.Add(90*time.Second).Format(http.TimeFormat)), exhausted(), provider.Failover, store.CooldownRateLimited, 90 * time.Second},
		{"429 retry in message", 429, nil, gErr(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota. Please retry in 41.5s."),
			provider.Failover, store.CooldownRateLimited, 41500 * time.Millisecond},
		{"429 retry in ms in message", 429, nil, gErr(429, "RESOURCE_EXHAUSTED", "Please retry in 900ms"), provider.Failover, store.CooldownRateLimited, 900 * time.Millisecond},
		{"429 no hint", 429, nil, exhausted(), provider.Failover, store.CooldownRateLimited, RateLimitCooldown},
		{"429 not even JSON", 429, nil, []byte("Too Many Requests"), provider.Failover, store.CooldownRateLimited, RateLimitCooldown},
		{"429 daily quota: until Pacific midnight", 429, nil, exhausted(quotaFailure("GenerateRequestsPerDayPerProjectPerModel-FreeTier")),
			provider.Failover, store.CooldownRateLimited, 21 * time.Hour},
		{"429 daily quota with delay: the delay", 429, nil, exhausted(quotaFailure("GenerateRequestsPerDayPerProjectPerModel-FreeTier"), retryInfo("3600s")),
			provider.Failover, store.CooldownRateLimited, time.Hour},
		{"429 Code Assist QUOTA_EXHAUSTED", 429, nil, exhausted(errorInfo("QUOTA_EXHAUSTED", "cloudcode-pa.googleapis.com")),
			provider.Failover, store.CooldownRateLimited, 21 * time.Hour},
		{"429 Code Assist RATE_LIMIT_EXCEEDED", 429, nil, exhausted(errorInfo("RATE_LIMIT_EXCEEDED", "cloudcode-pa.googleapis.com"), retryInfo("8s")),
			provider.Failover, store.CooldownRateLimited, 8 * time.Second},
		{"429 model capacity: short transient", 429, nil, gErr(429, "RESOURCE_EXHAUSTED", "No capacity available for model gemini-2.5-pro on the server",
			errorInfo("MODEL_CAPACITY_EXHAUSTED", "cloudcode-pa.googleapis.com")), provider.Failover, store.CooldownTransient, CapacityCooldown},
		{"429 out of credits", 429, nil, exhausted(errorInfo("INSUFFICIENT_G1_CREDITS_BALANCE", "cloudcode-pa.googleapis.com")),
			provider.Failover, store.CooldownCredentialDead, CredentialCooldown},
		{"429 absurd delay capped", 429, nil, exhausted(retryInfo("99999999999s")), provider.Failover, store.CooldownRateLimited, MaxCooldown},
		{"429 absurd Retry-After capped", 429, hdr("Retry-After", "1e300"), exhausted(), provider.Failover, store.CooldownRateLimited, MaxCooldown},
		{"429 negative delay ignored", 429, nil, exhausted(retryInfo("-5s")), provider.Failover, store.CooldownRateLimited, RateLimitCooldown},
		{"RESOURCE_EXHAUSTED under another status", 400, nil, exhausted(), provider.Failover, store.CooldownRateLimited, RateLimitCooldown},
		{"401 UNAUTHENTICATED", 401, nil, gErr(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
			provider.Failover, store.CooldownCredentialDead, CredentialCooldown},
		{"403 PERMISSION_DENIED", 403, nil, gErr(403, "PERMISSION_DENIED", "The caller does not have permission"),
			provider.Failover, store.CooldownCredentialDead, CredentialCooldown},
		{"403 VALIDATION_REQUIRED", 403, nil, gErr(403, "PERMISSION_DENIED", "Verify your account to continue.", errorInfo("VALIDATION_REQUIRED", "cloudcode-pa.googleapis.com")),
			provider.Failover, store.CooldownCredentialDead, CredentialCooldown},
		{"400 API key not valid", 400, nil, gErr(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", errorInfo("API_KEY_INVALID", "googleapis.com")),
			provider.Failover, store.CooldownCredentialDead, CredentialCooldown},
		{"400 location not supported", 400, nil, gErr(400, "FAILED_PRECONDITION", "User location is not supported for the API use."),
			provider.Failover, store.CooldownCredentialDead, CredentialCooldown},
		{"500 INTERNAL", 500, nil, gErr(500, "INTERNAL", "An internal error has occurred."), provider.Failover, store.CooldownTransient, TransientCooldown},
		{"503 UNAVAILABLE with Retry-After", 503, hdr("Retry-After", "20"), gErr(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
			provider.Failover, store.CooldownTransient, 20 * time.Second},
		{"502 html", 502, nil, []byte("<html>bad gateway</html>"), provider.Failover, store.CooldownTransient, TransientCooldown},
		{"504 DEADLINE_EXCEEDED", 504, nil, gErr(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
			provider.Failover, store.CooldownTransient, TransientCooldown},
		{"408", 408, nil, nil, provider.Failover, store.CooldownTransient, TransientCooldown},
		{"499 CANCELLED", 499, nil, gErr(499, "CANCELLED", "The operation was cancelled."), provider.Failover, store.CooldownTransient, TransientCooldown},
		{"400 INVALID_ARGUMENT", 400, nil, gErr(400, "INVALID_ARGUMENT", "Invalid JSON payload received. Unknown name \\\"foo\\\"."), provider.ClientError, "", 0},
		{"400 as an array", 400, nil, []byte(`[{"error":{"code":400,"message":"* GenerateContentRequest.contents: contents is not specified","status":"INVALID_ARGUMENT"}}]`),
			provider.ClientError, "", 0},
		{"429 as an array", 429, nil, []byte(`[{"error":{"code":429,"message":"x","status":"RESOURCE_EXHAUSTED","details":[` + retryInfo("7s") + `]}}]`),
			provider.Failover, store.CooldownRateLimited, 7 * time.Second},
		{"404 model", 404, nil, gErr(404, "NOT_FOUND", "models/gemini-9 is not found for API version v1beta"), provider.ClientError, "", 0},
		{"413", 413, nil, []byte("Request Entity Too Large"), provider.ClientError, "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := c.header
			if h == nil {
				h = http.Header{}
			}
			o := Classify(now, c.status, h, c.body)
			if o.Kind != c.kind || o.Cooldown != c.cooldown {
				t.Fatalf("got %v/%q, want %v/%q (%s)", o.Kind, o.Cooldown, c.kind, c.cooldown, o.Reason)
			}
			if o.Status != c.status {
				t.Errorf("status = %d, want %d", o.Status, c.status)
			}
			if c.kind == provider.Failover && o.Until.Sub(now) != c.rest {
				t.Fatalf("rest = %v, want %v", o.Until.Sub(now), c.rest)
			}
		})
	}
}

func TestClassifyReasonCarriesMessage(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	o := Classify(now, 429, http.Header{}, gErr(429, "RESOURCE_EXHAUSTED", "Quota exceeded for metric"))
	if !strings.Contains(o.Reason, "Quota exceeded for metric") {
		t.Errorf("reason %q lost the upstream message", o.Reason)
	}
	long := strings.Repeat("x", 5000)
	if o := Classify(now, 400, http.Header{}, []byte(long)); len(o.Reason) > 200 {
		t.Errorf("reason of a non-JSON body is %d bytes, want at most 200", len(o.Reason))
	}
}

func TestUntilPacificMidnight(t *testing.T) {
	for _, c := range []struct {
		now  time.Time
		want time.Duration
	}{
		// Summer (PDT, UTC-7): 06:59 UTC is 23:59 the day before.
		{time.Date(2026, 7, 1, 6, 59, 0, 0, time.UTC), time.Minute},
		{time.Date(2026, 7, 1, 7, 0, 0, 0, time.UTC), 24 * time.Hour},
		// Winter (PST, UTC-8).
		{time.Date(2026, 1, 15, 20, 0, 0, 0, time.UTC), 12 * time.Hour},
	} {
		if got := untilPacificMidnight(c.now); got != c.want {
			t.Errorf("at %v: %v, want %v", c.now, got, c.want)
		}
	}
}

func TestClassifyStreamError(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name     string
		data     string
		ok       bool
		kind     provider.Kind
		cooldown store.CooldownKind
		status   int
	}{
		{"503", `{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}`, true, provider.Failover, store.CooldownTransient, 503},
		{"429 in stream", `{"error":{"code":429,"message":"x","status":"RESOURCE_EXHAUSTED"}}`, true, provider.Failover, store.CooldownRateLimited, 429},
		{"wrapped", `{"response":{"error":{"code":403,"message":"x","status":"PERMISSION_DENIED"}}}`, true, provider.Failover, store.CooldownCredentialDead, 403},
		{"status name only", `{"error":{"message":"x","status":"INVALID_ARGUMENT"}}`, true, provider.ClientError, "", 400},
		{"nothing usable", `{"error":{"message":"x"}}`, true, provider.Failover, store.CooldownTransient, 500},
		{"content chunk", `{"candidates":[{"content":{"parts":[{"text":"the \"error\" was mine"}]}}]}`, false, provider.OK, "", 0},
		{"error not an object", `{"error":"x"}`, false, provider.OK, "", 0},
		{"not json", `"error"`, false, provider.OK, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, ok := ClassifyStreamError(now, []byte(tt.data))
			if ok != tt.ok || o.Kind != tt.kind || o.Cooldown != tt.cooldown || o.Status != tt.status {
				t.Fatalf("got %v %+v", ok, o)
			}
		})
	}
}

func FuzzClassify(f *testing.F) {
	f.Add(429, "Retry-After", "5", gErr(429, "RESOURCE_EXHAUSTED", "Please retry in 3s", retryInfo("1.5s"), quotaFailure("PerDay")))
	f.Add(400, "", "", gErr(400, "INVALID_ARGUMENT", "x", errorInfo("API_KEY_INVALID", "googleapis.com")))
	f.Add(503, "Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT", []byte(`[{"error":{}}]`))
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, status int, hk, hv string, body []byte) {
		h := http.Header{}
		h.Set(hk, hv)
		for _, o := range []provider.Outcome{Classify(now, status, h, body), streamOutcome(now, body)} {
			switch o.Kind {
			case provider.OK, provider.ClientError:
				if !o.Until.IsZero() {
					t.Fatalf("%v with a rest: %+v", o.Kind, o)
				}
			case provider.Failover:
				if d := o.Until.Sub(now); d <= 0 || d > MaxCooldown {
					t.Fatalf("rest %v out of range: %+v", d, o)
				}
			default:
				t.Fatalf("unknown kind %+v", o)
			}
		}
	})
}

func streamOutcome(now time.Time, data []byte) provider.Outcome {
	o, _ := ClassifyStreamError(now, data)
	return o
}
