package anthropic

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/provider"
	"github.com/crs-relay/crs/internal/store"
)

func errBody(typ, msg string) []byte {
	return []byte(`{"type":"error","error":{"type":"` + typ + `","message":"` + msg + `"}}`)
}

// TestClassifyFaultTable is the fault table: status, headers and body of an
// upstream answer → what the relay does with the account.
func TestClassifyFaultTable(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
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
		{"429 unified reset", 429, hdr("anthropic-ratelimit-unified-reset", strconv.FormatInt(now.Unix()+3600, 10)), errBody("rate_limit_error", "x"), provider.Failover, store.CooldownRateLimited, time.Hour},
		{"429 retry-after", 429, hdr("retry-after", "17"), errBody("rate_limit_error", "x"), provider.Failover, store.CooldownRateLimited, 17 * time.Second},
		{"429 no hint", 429, nil, errBody("rate_limit_error", "x"), provider.Failover, store.CooldownRateLimited, RateLimitCooldown},
		{"429 reset past falls back to retry-after", 429, hdr("anthropic-ratelimit-unified-reset", "1", "retry-after", "5"), nil, provider.Failover, store.CooldownRateLimited, 5 * time.Second},
		{"429 absurd reset capped", 429, hdr("retry-after", "99999999"), nil, provider.Failover, store.CooldownRateLimited, MaxCooldown},
		{"529", 529, nil, errBody("overloaded_error", "busy"), provider.Failover, store.CooldownTransient, OverloadCooldown},
		{"500", 500, nil, errBody("api_error", "boom"), provider.Failover, store.CooldownTransient, TransientCooldown},
		{"503 html", 503, nil, []byte("<html>bad gateway</html>"), provider.Failover, store.CooldownTransient, TransientCooldown},
		{"401", 401, nil, errBody("authentication_error", "invalid x-api-key"), provider.Failover, store.CooldownCredentialDead, CredentialCooldown},
		{"403", 403, nil, errBody("permission_error", "nope"), provider.Failover, store.CooldownCredentialDead, CredentialCooldown},
		{"403 org disabled", 403, nil, errBody("permission_error", "This organization has been disabled."), provider.Failover, store.CooldownBlocked, BlockedCooldown},
		{"400 org disabled", 400, nil, errBody("invalid_request_error", "This organization has been disabled."), provider.Failover, store.CooldownBlocked, BlockedCooldown},
		{"400 no credit", 400, nil, errBody("invalid_request_error", "Your credit balance is too low to access the Anthropic API."), provider.Failover, store.CooldownCredentialDead, CredentialCooldown},
		{"400 bad request", 400, nil, errBody("invalid_request_error", "max_tokens: required"), provider.ClientError, "", 0},
		{"404 model", 404, nil, errBody("not_found_error", "model: x"), provider.ClientError, "", 0},
		{"413", 413, nil, errBody("request_too_large", "big"), provider.ClientError, "", 0},
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
			if c.kind == provider.Failover && o.Until.Sub(now) != c.rest {
				t.Fatalf("rest = %v, want %v", o.Until.Sub(now), c.rest)
			}
		})
	}
}

func TestClassifyStreamErrorAndTransport(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for typ, want := range map[string]provider.Kind{
		"overloaded_error":      provider.Failover,
		"rate_limit_error":      provider.Failover,
		"api_error":             provider.Failover,
		"authentication_error":  provider.Failover,
		"invalid_request_error": provider.ClientError,
	} {
		if o := ClassifyStreamError(now, errBody(typ, "m")); o.Kind != want {
			t.Errorf("%s: %v, want %v", typ, o.Kind, want)
		}
	}
	if o := ClassifyTransport(now, errors.New("connection refused")); o.Kind != provider.Failover || o.Cooldown != store.CooldownTransient {
		t.Errorf("transport: %+v", o)
	}
}

func TestScopeRateLimit(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	unix := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	quota := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set("anthropic-ratelimit-unified-"+kv[i], kv[i+1])
		}
		return h
	}
	for _, c := range []struct {
		name   string
		model  string
		h      http.Header
		family string
		rest   time.Duration
	}{
		{"opus weekly limit: opus only", "claude-opus-4-5", quota("status", "rejected", "reset", unix(3*time.Hour),
			"representative-claim", "seven_day_opus", "5h-status", "allowed", "5h-reset", unix(time.Hour)), "opus", 3 * time.Hour},
		{"sonnet, dated and prefixed", "anthropic/claude-sonnet-4-5-20250929", quota("status", "rejected", "reset", unix(time.Hour)), "sonnet", time.Hour},
		{"5-hour window rejected: whole account until its reset", "claude-opus-4-5", quota("status", "rejected", "reset", unix(2*time.Hour),
			"5h-status", "rejected", "5h-reset", unix(2*time.Hour)), "", 2 * time.Hour},
		{"no quota headers (API key): whole account, as classified", "claude-opus-4-5", http.Header{"Retry-After": {"30"}}, "", 30 * time.Second},
		{"unknown family: whole account", "gpt-5", quota("status", "rejected", "reset", unix(time.Hour)), "", time.Hour},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := ScopeRateLimit(now, Classify(now, 429, c.h, errBody("rate_limit_error", "limited")), c.h, c.model)
			if o.Kind != provider.Failover || o.Cooldown != store.CooldownRateLimited || o.Family != c.family || o.Until.Sub(now) != c.rest {
				t.Fatalf("got family %q rest %v (%+v), want family %q rest %v", o.Family, o.Until.Sub(now), o, c.family, c.rest)
			}
		})
	}
	// Other outcomes pass unchanged.
	o529 := Classify(now, 529, http.Header{}, nil)
	if got := ScopeRateLimit(now, o529, quota("status", "rejected"), "claude-opus-4-5"); got != o529 {
		t.Fatalf("a 529 was changed: %+v", got)
	}
}
