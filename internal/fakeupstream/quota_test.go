package fakeupstream

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// unifiedHeaders are the headers every OAuth reply must carry.
var unifiedHeaders = []string{
	hdrUnifiedStatus, hdrUnifiedReset, hdrUnifiedClaim,
	hdr5hStatus, hdr5hReset, hdr5hUtilization,
	hdr7dStatus, hdr7dReset, hdr7dUtilization,
}

// oauthFake starts a fake API that accepts OAuth tokens (and the API key
// sk-ant-api) and returns it with a live access token.
func oauthFake(t *testing.T) (*Anthropic, string) {
	t.Helper()
	o := StartOAuth(t)
	return StartAnthropic(t, Options{OAuth: o, APIKeys: []string{"sk-ant-api"}, Deltas: 2}), issueTestToken(t, o)
}

// asOAuth are rawPost header overrides that authenticate with an OAuth
// access token, as a relay does for a subscription account.
func asOAuth(tok string) map[string]string {
	return map[string]string{"x-api-key": "", "authorization": "Bearer " + tok, "anthropic-beta": "claude-code-20250219,oauth-2025-04-20"}
}

func modelBody(model string, stream bool) string {
	return `{"model":"` + model + `","max_tokens":16,"stream":` + strconv.FormatBool(stream) + `,"messages":[{"role":"user","content":"say pong"}]}`
}

// drain reads the whole body so a stream's headers and end are both seen.
func drain(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	return string(b)
}

func unixHeader(t *testing.T, h http.Header, key string) time.Time {
	t.Helper()
	n, err := strconv.ParseInt(h.Get(key), 10, 64)
	if err != nil {
		t.Fatalf("%s = %q: %v", key, h.Get(key), err)
	}
	return time.Unix(n, 0)
}

// checkUnified asserts the headers a relay routes by: the overall status,
// reset and claim, and the 5-hour status.
func checkUnified(t *testing.T, h http.Header, status string, reset time.Time, claim, status5h string) {
	t.Helper()
	for _, k := range unifiedHeaders {
		if len(h.Values(k)) != 1 {
			t.Errorf("%s = %q, want exactly one value", k, h.Values(k))
		}
	}
	if got := h.Get(hdrUnifiedStatus); got != status {
		t.Errorf("unified status = %q, want %q", got, status)
	}
	if got := unixHeader(t, h, hdrUnifiedReset); !got.Equal(reset) {
		t.Errorf("unified reset = %v, want %v", got, reset)
	}
	if got := h.Get(hdrUnifiedClaim); got != claim {
		t.Errorf("representative claim = %q, want %q", got, claim)
	}
	if got := h.Get(hdr5hStatus); got != status5h {
		t.Errorf("5h status = %q, want %q", got, status5h)
	}
	if got := h.Get(hdr7dStatus); got != "allowed" {
		t.Errorf("7d status = %q, want allowed", got)
	}
	for _, k := range []string{hdr5hUtilization, hdr7dUtilization} {
		if u, err := strconv.ParseFloat(h.Get(k), 64); err != nil || u < 0 || u > 1 {
			t.Errorf("%s = %q, want a fraction", k, h.Get(k))
		}
	}
}

func unifiedKeys(h http.Header) []string {
	var out []string
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), "anthropic-ratelimit-unified") {
			out = append(out, k)
		}
	}
	return out
}

// TestAPIKeyRepliesCarryNoQuotaHeaders: only a subscription has a unified
// quota; API-key replies never report one, and a spent subscription does
// not refuse API-key requests. A refused OAuth token is not authenticated
// either, so its 401 reports nothing.
func TestAPIKeyRepliesCarryNoQuotaHeaders(t *testing.T) {
	a, _ := oauthFake(t)
	a.LimitFamily("opus", time.Now().Add(time.Hour))
	key := map[string]string{"x-api-key": "sk-ant-api"}
	post := func(path, body string, hdr map[string]string) *http.Response {
		return rawPost(t, testCtx(t), a.URL()+path, body, hdr)
	}

	cases := []struct {
		name string
		resp func() *http.Response
		want int
	}{
		{"stream", func() *http.Response { return post("/v1/messages", modelBody("claude-opus-4-8", true), key) }, 200},
		{"json", func() *http.Response { return post("/v1/messages", modelBody("claude-opus-4-8", false), key) }, 200},
		{"bad body", func() *http.Response { return post("/v1/messages", `{"model":"m"}`, key) }, 400},
		{"fault", func() *http.Response {
			a.Push(Fault{Status: 529})
			return post("/v1/messages", modelBody(testModel, false), key)
		}, 529},
		{"window rejected", func() *http.Response {
			a.SetWindow("rejected", time.Now().Add(time.Hour))
			defer a.SetWindow("allowed", time.Time{})
			return post("/v1/messages", modelBody(testModel, false), key)
		}, 200},
		{"unknown oauth token", func() *http.Response {
			return post("/v1/messages", modelBody(testModel, false), asOAuth("sk-ant-oat01-unknown"))
		}, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := tc.resp()
			drain(t, resp)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if k := unifiedKeys(resp.Header); len(k) > 0 {
				t.Errorf("unified headers on a non-subscription reply: %v", k)
			}
		})
	}
}

// TestOAuthRepliesReportTheWindow: every reply to an OAuth request — 200
// stream, 200 JSON, validation errors, injected faults, the other routes —
// reports the 5-hour window, and SetWindow changes what it reports.
func TestOAuthRepliesReportTheWindow(t *testing.T) {
	hour := time.Now().Truncate(time.Hour)
	a, tok := oauthFake(t)
	auth := asOAuth(tok)
	type call struct {
		name, path, body string
		fault            *Fault
		want             int
	}
	calls := []call{
		{"stream", "/v1/messages", modelBody(testModel, true), nil, 200},
		{"json", "/v1/messages", modelBody(testModel, false), nil, 200},
		{"bad body", "/v1/messages", `{"model":"m","messages":[]}`, nil, 400},
		{"fault", "/v1/messages", modelBody(testModel, false), &Fault{Status: 529}, 529},
		{"count_tokens", "/v1/messages/count_tokens", `{"model":"m","messages":[]}`, nil, 200},
	}
	run := func(t *testing.T, status string, reset time.Time) {
		for _, c := range calls {
			t.Run(c.name, func(t *testing.T) {
				if c.fault != nil {
					a.Push(*c.fault)
				}
				resp := rawPost(t, testCtx(t), a.URL()+c.path, c.body, auth)
				body := drain(t, resp)
				if resp.StatusCode != c.want {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.want, body)
				}
				checkUnified(t, resp.Header, status, reset, "five_hour", status)
				if got := unixHeader(t, resp.Header, hdr5hReset); !got.Equal(reset) {
					t.Errorf("5h reset = %v, want %v", got, reset)
				}
				if got := unixHeader(t, resp.Header, hdr7dReset); !got.After(time.Now()) {
					t.Errorf("7d reset %v is not in the future", got)
				}
			})
		}
	}

	// The default window opened at the full hour the fake started in and
	// ends 5 h later.
	t.Run("default", func(t *testing.T) {
		if !time.Now().Truncate(time.Hour).Equal(hour) {
			t.Skip("an hour began while the fake started; its window's start is ambiguous")
		}
		run(t, "allowed", hour.Add(5*time.Hour))
	})

	reset := time.Now().Add(90 * time.Minute).Truncate(time.Second)
	a.SetWindow("allowed_warning", reset)
	t.Run("warning", func(t *testing.T) { run(t, "allowed_warning", reset) })
	if t.Failed() {
		return
	}
	resp := rawPost(t, testCtx(t), a.URL()+"/v1/messages", modelBody(testModel, false), auth)
	drain(t, resp)
	if got := resp.Header.Get(hdr5hUtilization); got != utilizationWarning {
		t.Errorf("5h utilization at warning = %q, want %q", got, utilizationWarning)
	}

	// A zero reset keeps the window's end.
	a.SetWindow("allowed", time.Time{})
	resp = rawPost(t, testCtx(t), a.URL()+"/v1/messages", modelBody(testModel, false), auth)
	drain(t, resp)
	checkUnified(t, resp.Header, "allowed", reset, "five_hour", "allowed")
}

// TestLimitFamilyRefusesOnlyThatFamily: a spent Opus allowance refuses Opus
// with the seven_day_opus claim and its own reset, while Sonnet and Haiku
// are served and report the window as before.
func TestLimitFamilyRefusesOnlyThatFamily(t *testing.T) {
	a, tok := oauthFake(t)
	auth := asOAuth(tok)
	window := time.Now().Add(2 * time.Hour).Truncate(time.Second)
	until := time.Now().Add(30 * time.Hour).Truncate(time.Second)
	a.SetWindow("allowed_warning", window)
	a.LimitFamily("Opus", until) // the family is matched case-insensitively

	for _, stream := range []bool{false, true} {
		resp := rawPost(t, testCtx(t), a.URL()+"/v1/messages", modelBody("claude-opus-4-8", stream), auth)
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("opus (stream %v): status %d, want 429: %s", stream, resp.StatusCode, drain(t, resp))
		}
		checkUnified(t, resp.Header, "rejected", until, "seven_day_opus", "allowed_warning")
		if got := unixHeader(t, resp.Header, hdr5hReset); !got.Equal(window) {
			t.Errorf("5h reset = %v, want the window's %v", got, window)
		}
		checkErrorBody(t, resp, "rate_limit_error")
	}

	for _, model := range []string{testModel, "claude-haiku-4-5-20251001"} {
		resp := rawPost(t, testCtx(t), a.URL()+"/v1/messages", modelBody(model, true), auth)
		body := drain(t, resp)
		if resp.StatusCode != 200 || !strings.Contains(body, "message_stop") {
			t.Fatalf("%s: status %d, want a whole stream: %s", model, resp.StatusCode, body)
		}
		checkUnified(t, resp.Header, "allowed_warning", window, "five_hour", "allowed_warning")
	}

	// A second limit names its own claim; lifting it serves that family again.
	a.LimitFamily("sonnet", until.Add(time.Hour))
	resp := rawPost(t, testCtx(t), a.URL()+"/v1/messages", modelBody(testModel, false), auth)
	drain(t, resp)
	if resp.StatusCode != 429 || resp.Header.Get(hdrUnifiedClaim) != "seven_day_sonnet" {
		t.Errorf("sonnet limited: %d claim %q", resp.StatusCode, resp.Header.Get(hdrUnifiedClaim))
	}
	a.LimitFamily("sonnet", time.Time{})
	if resp := rawPost(t, testCtx(t), a.URL()+"/v1/messages", modelBody(testModel, false), auth); resp.StatusCode != 200 {
		t.Errorf("sonnet after lifting: %d, want 200", resp.StatusCode)
	}
}

// waitPast blocks until t has passed, or fails when the test's context ends.
func waitPast(tb testing.TB, ctx context.Context, t time.Time) {
	tb.Helper()
	timer := time.NewTimer(time.Until(t) + 10*time.Millisecond)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
		tb.Fatal("context ended before the limit did")
	}
}

// TestLimitsEndOnTheirOwn: a family limit and a rejected window both end
// at their reset without anyone lifting them, as upstream, so a relay that
// rests an account until the reported reset finds it working again.
func TestLimitsEndOnTheirOwn(t *testing.T) {
	a, tok := oauthFake(t)
	auth := asOAuth(tok)
	ctx := testCtx(t)
	opus := modelBody("claude-opus-5-5", false)

	until := time.Now().Add(150 * time.Millisecond)
	a.LimitFamily("opus", until)
	resp := rawPost(t, ctx, a.URL()+"/v1/messages", opus, auth)
	drain(t, resp)
	if resp.StatusCode != 429 {
		t.Fatalf("opus while limited: %d, want 429", resp.StatusCode)
	}
	// The reset is rounded up: never before the limit really ends.
	if got := unixHeader(t, resp.Header, hdrUnifiedReset); got.Before(until) {
		t.Errorf("reset %v is before the limit's end %v", got, until)
	}
	waitPast(t, ctx, until)
	resp = rawPost(t, ctx, a.URL()+"/v1/messages", opus, auth)
	drain(t, resp)
	if resp.StatusCode != 200 || resp.Header.Get(hdrUnifiedClaim) != "five_hour" || resp.Header.Get(hdrUnifiedStatus) != "allowed" {
		t.Fatalf("opus after the limit: %d status %q claim %q", resp.StatusCode, resp.Header.Get(hdrUnifiedStatus), resp.Header.Get(hdrUnifiedClaim))
	}

	end := time.Now().Add(150 * time.Millisecond)
	a.SetWindow("rejected", end)
	if resp := rawPost(t, ctx, a.URL()+"/v1/messages", opus, auth); resp.StatusCode != 429 {
		t.Fatalf("rejected window: %d, want 429", resp.StatusCode)
	}
	waitPast(t, ctx, end)
	resp = rawPost(t, ctx, a.URL()+"/v1/messages", opus, auth)
	drain(t, resp)
	if resp.StatusCode != 200 || resp.Header.Get(hdr5hStatus) != "allowed" {
		t.Fatalf("after the window: %d 5h status %q", resp.StatusCode, resp.Header.Get(hdr5hStatus))
	}
	if got := unixHeader(t, resp.Header, hdr5hReset); !got.After(time.Now()) {
		t.Errorf("new window's reset %v is not in the future", got)
	}
}

// TestRejectedWindowRefusesEveryFamily: a spent 5-hour window refuses every
// model, with the five_hour claim even where a family limit also applies.
func TestRejectedWindowRefusesEveryFamily(t *testing.T) {
	a, tok := oauthFake(t)
	auth := asOAuth(tok)
	reset := time.Now().Add(3 * time.Hour).Truncate(time.Second)
	a.LimitFamily("opus", time.Now().Add(48*time.Hour))
	a.SetWindow("rejected", reset)
	for _, model := range []string{"claude-opus-4-8", testModel, "claude-haiku-4-5-20251001", "some-future-model"} {
		for _, stream := range []bool{false, true} {
			resp := rawPost(t, testCtx(t), a.URL()+"/v1/messages", modelBody(model, stream), auth)
			if resp.StatusCode != http.StatusTooManyRequests {
				t.Errorf("%s (stream %v): status %d, want 429", model, stream, resp.StatusCode)
				continue
			}
			checkUnified(t, resp.Header, "rejected", reset, "five_hour", "rejected")
			if got := resp.Header.Get(hdr5hUtilization); got != utilizationRejected {
				t.Errorf("5h utilization = %q, want %q", got, utilizationRejected)
			}
			checkErrorBody(t, resp, "rate_limit_error")
		}
	}
}

// TestFaultHeaderWinsOverQuotaHeaders: a test that injects its own unified
// header (in any spelling) gets exactly that value; the rest of the quota
// headers are still reported.
func TestFaultHeaderWinsOverQuotaHeaders(t *testing.T) {
	a, tok := oauthFake(t)
	a.Push(Fault{Status: 429, Header: http.Header{
		"anthropic-ratelimit-unified-reset": {"1800000000"},
		"Retry-After":                       {"7"},
	}})
	resp := rawPost(t, testCtx(t), a.URL()+"/v1/messages", modelBody(testModel, false), asOAuth(tok))
	drain(t, resp)
	if resp.StatusCode != 429 {
		t.Fatalf("status %d, want the fault's 429", resp.StatusCode)
	}
	if got := resp.Header.Values(hdrUnifiedReset); len(got) != 1 || got[0] != "1800000000" {
		t.Errorf("unified reset = %q, want the fault's [1800000000]", got)
	}
	if resp.Header.Get("Retry-After") != "7" || resp.Header.Get(hdr5hStatus) != "allowed" {
		t.Errorf("retry-after %q, 5h status %q", resp.Header.Get("Retry-After"), resp.Header.Get(hdr5hStatus))
	}

	// The same holds when the fake itself refuses for a family.
	a.LimitFamily("sonnet", time.Now().Add(time.Hour))
	a.Push(Fault{Header: http.Header{"Anthropic-Ratelimit-Unified-Representative-Claim": {"seven_day"}}})
	resp = rawPost(t, testCtx(t), a.URL()+"/v1/messages", modelBody(testModel, false), asOAuth(tok))
	drain(t, resp)
	if resp.StatusCode != 429 || resp.Header.Get(hdrUnifiedClaim) != "seven_day" || resp.Header.Get(hdrUnifiedStatus) != "rejected" {
		t.Errorf("family refusal under a header fault: %d claim %q status %q", resp.StatusCode, resp.Header.Get(hdrUnifiedClaim), resp.Header.Get(hdrUnifiedStatus))
	}
}
