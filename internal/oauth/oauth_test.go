package oauth_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/oauth"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func fakeEndpoints(f *fakeupstream.OAuth) oauth.Endpoints {
	return oauth.Endpoints{AuthorizeURL: f.AuthorizeURL(), TokenURL: f.TokenURL(), ProfileURL: f.ProfileURL(), UsageURL: f.UsageURL()}
}

func newClient(f *fakeupstream.OAuth) *oauth.Client {
	return &oauth.Client{Endpoints: fakeEndpoints(f), HTTP: &http.Client{}, RetryWait: time.Millisecond}
}

// noLeak fails if err's text contains any of the secrets.
func noLeak(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Fatalf("error text leaks a secret: %v", err)
		}
	}
}

// onboard runs the browser flow against the fake: GET the authorize URL,
// take the callback URL it redirects to, parse the code, exchange.
func onboard(t *testing.T, f *fakeupstream.OAuth, c *oauth.Client, kind oauth.Kind) oauth.Token {
	t.Helper()
	p, err := oauth.NewPending(kind, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(c.Endpoints.AuthURL(p))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: status %d", resp.StatusCode)
	}
	callback := resp.Header.Get("Location") + "#frag"
	code, err := oauth.ParseCode(callback)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Exchange(testCtx(t), p, code)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok
}

func TestNewPendingShape(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p, err := oauth.NewPending(oauth.KindOAuth, now)
	if err != nil {
		t.Fatal(err)
	}
	q, _ := oauth.NewPending(oauth.KindOAuth, now)
	for name, v := range map[string]string{"verifier": p.Verifier, "state": p.State} {
		b, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil || len(b) != 32 || len(v) != 43 {
			t.Errorf("%s %q: want 32 bytes base64url unpadded (43 chars), got %d bytes, err %v", name, v, len(b), err)
		}
	}
	if p.Verifier == q.Verifier || p.State == q.State || p.Verifier == p.State {
		t.Error("verifier/state not random")
	}
	sum := sha256.Sum256([]byte(p.Verifier))
	if got, want := p.Challenge(), base64.RawURLEncoding.EncodeToString(sum[:]); got != want {
		t.Errorf("challenge %q, want %q", got, want)
	}
	if p.Kind != oauth.KindOAuth || !p.CreatedAt.Equal(now) {
		t.Errorf("pending %+v", p)
	}
	if !p.Expired(now.Add(11*time.Minute)) || p.Expired(now.Add(9*time.Minute)) {
		t.Error("Expired does not follow PendingTTL")
	}
	if _, err := oauth.NewPending("cookie", now); err == nil {
		t.Error("unknown kind accepted")
	}
}

func TestAuthURLParams(t *testing.T) {
	e := oauth.DefaultClaudeEndpoints()
	for _, tc := range []struct {
		kind  oauth.Kind
		scope string
	}{
		{oauth.KindOAuth, "org:create_api_key user:profile user:inference user:sessions:claude_code user:mcp_servers user:file_upload"},
		{oauth.KindSetupToken, "user:inference"},
	} {
		p, _ := oauth.NewPending(tc.kind, time.Now())
		u, err := url.Parse(e.AuthURL(p))
		if err != nil {
			t.Fatal(err)
		}
		if got := u.Scheme + "://" + u.Host + u.Path; got != "https://claude.ai/oauth/authorize" {
			t.Errorf("base %q", got)
		}
		q := u.Query()
		want := map[string]string{
			"code":                  "true",
			"client_id":             "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
			"response_type":         "code",
			"redirect_uri":          "https://platform.claude.com/oauth/code/callback",
			"scope":                 tc.scope,
			"code_challenge":        p.Challenge(),
			"code_challenge_method": "S256",
			"state":                 p.State,
		}
		for k, v := range want {
			if q.Get(k) != v {
				t.Errorf("%s: %s = %q, want %q", tc.kind, k, q.Get(k), v)
			}
		}
		if len(q) != len(want) {
			t.Errorf("%s: %d params, want %d: %v", tc.kind, len(q), len(want), q)
		}
		if strings.Contains(u.RawQuery, p.Verifier) {
			t.Error("verifier in authorize URL")
		}
	}
}

func TestDefaultEndpoints(t *testing.T) {
	e := oauth.DefaultClaudeEndpoints()
	want := oauth.Endpoints{
		AuthorizeURL: "https://claude.ai/oauth/authorize",
		TokenURL:     "https://platform.claude.com/v1/oauth/token",
		ProfileURL:   "https://api.anthropic.com/api/oauth/profile",
		UsageURL:     "https://api.anthropic.com/api/oauth/usage",
	}
	if e != want {
		t.Errorf("got %+v", e)
	}
}

func TestParseCode(t *testing.T) {
	const code = "AbC_def-1234567890xyz"
	for _, tc := range []struct {
		name, in, want, errHas string
	}{
		{"raw", code, code, ""},
		{"raw with spaces", "  " + code + "\n", code, ""},
		{"code#state", code + "#somestate", code, ""},
		{"code&state", code + "&state=x", code, ""},
		{"callback URL", "https://platform.claude.com/oauth/code/callback?code=" + code + "&state=st", code, ""},
		{"callback URL with fragment", "https://platform.claude.com/oauth/code/callback?code=" + code + "&state=st#frag", code, ""},
		{"callback URL with code#state", "https://platform.claude.com/oauth/code/callback?code=" + url.QueryEscape(code+"#st"), code, ""},
		{"exactly ten", "abcdefghij", "abcdefghij", ""},
		{"empty", "   ", "", "no authorization code"},
		{"too short", "abc123", "", "too short"},
		{"too short after cut", "abc#" + code, "", "too short"},
		{"bad chars", "abcdefghij.klm", "", "invalid character at position 11"},
		{"space inside", "abcdef ghijkl", "", "invalid character"},
		{"URL without code", "https://platform.claude.com/oauth/code/callback?state=x", "", "no code parameter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := oauth.ParseCode(tc.in)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err %v, want containing %q", err, tc.errHas)
				}
				if len(tc.in) > 12 && strings.Contains(err.Error(), strings.TrimSpace(tc.in)) {
					t.Errorf("error echoes the input: %v", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestExchangeAgainstFake(t *testing.T) {
	f := fakeupstream.StartOAuth(t)
	c := newClient(f)
	before := time.Now()
	tok := onboard(t, f, c, oauth.KindOAuth)
	if !strings.HasPrefix(tok.AccessToken, "sk-ant-oat01-") || !strings.HasPrefix(tok.RefreshToken, "sk-ant-ort01-") {
		t.Errorf("tokens: %v", tok)
	}
	if d := tok.ExpiresAt.Sub(before); d < 8*time.Hour-time.Minute || d > 8*time.Hour+time.Minute {
		t.Errorf("expires in %v, want ~8h", d)
	}
	if !tok.HasScope("user:profile") || !tok.HasScope("user:inference") || len(tok.Scopes) != 6 {
		t.Errorf("scopes %v", tok.Scopes)
	}
	if tok.AccountUUID != fakeupstream.OAuthAccountUUID || tok.OrgUUID != fakeupstream.OAuthOrgUUID || tok.Email != fakeupstream.OAuthEmail {
		t.Errorf("identity %q %q %q", tok.AccountUUID, tok.OrgUUID, tok.Email)
	}
	if !f.AccessTokenValid(tok.AccessToken) {
		t.Error("fake does not know the access token")
	}
	if s := tok.String() + tok.GoString(); strings.Contains(s, tok.AccessToken) || strings.Contains(s, tok.RefreshToken) {
		t.Errorf("String leaks: %s", s)
	}

	// What went over the wire: JSON body with every field and the headers.
	reqs := f.TokenRequests()
	r := reqs[len(reqs)-1]
	var body map[string]any
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"grant_type", "client_id", "code", "redirect_uri", "code_verifier", "state"} {
		if s, _ := body[k].(string); s == "" {
			t.Errorf("body lacks %s: %s", k, r.Body)
		}
	}
	if _, ok := body["expires_in"]; ok {
		t.Error("oauth kind sent expires_in")
	}
	for k, v := range map[string]string{
		"Content-Type": "application/json", "User-Agent": "claude-cli/1.0.56 (external, cli)",
		"Origin": "https://claude.ai", "Referer": "https://claude.ai/",
	} {
		if r.Header.Get(k) != v {
			t.Errorf("header %s = %q, want %q", k, r.Header.Get(k), v)
		}
	}
}

func TestExchangeRefusals(t *testing.T) {
	f := fakeupstream.StartOAuth(t)
	c := newClient(f)
	ctx := testCtx(t)

	t.Run("wrong verifier", func(t *testing.T) {
		p, _ := oauth.NewPending(oauth.KindOAuth, time.Now())
		other, _ := oauth.NewPending(oauth.KindOAuth, time.Now())
		code := f.IssueCode(other.Challenge(), p.State)
		_, err := c.Exchange(ctx, p, code)
		if !errors.Is(err, oauth.ErrInvalidGrant) || !strings.Contains(err.Error(), "verifier") {
			t.Fatalf("err %v", err)
		}
		noLeak(t, err, code, p.Verifier)
	})
	t.Run("wrong state", func(t *testing.T) {
		p, _ := oauth.NewPending(oauth.KindOAuth, time.Now())
		code := f.IssueCode(p.Challenge(), "another-state")
		_, err := c.Exchange(ctx, p, code)
		if !errors.Is(err, oauth.ErrInvalidGrant) || !strings.Contains(err.Error(), "state") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("code reuse", func(t *testing.T) {
		p, _ := oauth.NewPending(oauth.KindOAuth, time.Now())
		code := f.IssueCode(p.Challenge(), p.State)
		if _, err := c.Exchange(ctx, p, code); err != nil {
			t.Fatal(err)
		}
		_, err := c.Exchange(ctx, p, code)
		var te *oauth.TokenError
		if !errors.Is(err, oauth.ErrInvalidGrant) || !errors.As(err, &te) || te.Status != 400 || te.Code != "invalid_grant" {
			t.Fatalf("err %v", err)
		}
		noLeak(t, err, code, p.Verifier)
	})
	t.Run("expired pending", func(t *testing.T) {
		p, _ := oauth.NewPending(oauth.KindOAuth, time.Now().Add(-11*time.Minute))
		code := f.IssueCode(p.Challenge(), p.State)
		if _, err := c.Exchange(ctx, p, code); !errors.Is(err, oauth.ErrPendingExpired) {
			t.Fatalf("err %v", err)
		}
	})
}

func TestSetupTokenKind(t *testing.T) {
	f := fakeupstream.StartOAuth(t)
	c := newClient(f)
	before := time.Now()
	tok := onboard(t, f, c, oauth.KindSetupToken)
	reqs := f.TokenRequests()
	var body struct {
		ExpiresIn int64 `json:"expires_in"`
	}
	_ = json.Unmarshal(reqs[len(reqs)-1].Body, &body)
	if body.ExpiresIn != 31536000 {
		t.Errorf("expires_in sent %d, want 31536000", body.ExpiresIn)
	}
	if len(tok.Scopes) != 1 || tok.Scopes[0] != "user:inference" || tok.RefreshToken != "" {
		t.Errorf("scopes %v refresh set %v", tok.Scopes, tok.RefreshToken != "")
	}
	if d := tok.ExpiresAt.Sub(before); d < 364*24*time.Hour {
		t.Errorf("expires in %v, want a year", d)
	}
	_, err := c.Profile(testCtx(t), tok.AccessToken)
	if !errors.Is(err, oauth.ErrForbidden) {
		t.Errorf("profile on setup token: %v", err)
	}
	_, err = c.Usage(testCtx(t), tok.AccessToken)
	if !errors.Is(err, oauth.ErrForbidden) {
		t.Errorf("usage on setup token: %v", err)
	}
	noLeak(t, err, tok.AccessToken)
	if _, err := c.Refresh(testCtx(t), tok.RefreshToken); err == nil {
		t.Error("refresh without refresh token succeeded")
	}
}

func TestRefreshRotates(t *testing.T) {
	f := fakeupstream.StartOAuth(t)
	c := newClient(f)
	first := onboard(t, f, c, oauth.KindOAuth)
	ctx := testCtx(t)
	second, err := c.Refresh(ctx, first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken || second.RefreshToken == "" {
		t.Fatal("refresh did not rotate both tokens")
	}
	if !f.AccessTokenValid(second.AccessToken) {
		t.Error("new access token not valid")
	}
	_, err = c.Refresh(ctx, first.RefreshToken)
	if !errors.Is(err, oauth.ErrInvalidGrant) || !strings.Contains(err.Error(), "Refresh token not found or invalid") {
		t.Fatalf("reuse of old refresh token: %v", err)
	}
	noLeak(t, err, first.RefreshToken, first.AccessToken)
	if _, err := c.Refresh(ctx, second.RefreshToken); err != nil {
		t.Fatalf("the rotated token must still work: %v", err)
	}
	if n := f.RefreshCalls(); n != 3 {
		t.Errorf("refresh calls %d, want 3 (no retry on 400)", n)
	}
	reqs := f.TokenRequests()
	var body map[string]any
	_ = json.Unmarshal(reqs[len(reqs)-1].Body, &body)
	if body["grant_type"] != "refresh_token" || body["client_id"] != oauth.ClaudeClientID || body["refresh_token"] != second.RefreshToken || len(body) != 3 {
		t.Errorf("refresh body fields %v", keys(body))
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestRefreshRevoked(t *testing.T) {
	f := fakeupstream.StartOAuth(t)
	c := newClient(f)
	tok := onboard(t, f, c, oauth.KindOAuth)
	f.Revoke(tok.RefreshToken)
	if f.AccessTokenValid(tok.AccessToken) {
		t.Error("access token of a revoked grant still valid")
	}
	_, err := c.Refresh(testCtx(t), tok.RefreshToken)
	if !errors.Is(err, oauth.ErrInvalidGrant) {
		t.Fatalf("err %v", err)
	}
}

func TestRefreshErrorClassification(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		dead   bool
	}{
		{400, `{"error":"invalid_grant","error_description":"Refresh token not found or invalid"}`, true},
		{401, `{"error":"invalid_grant"}`, true},
		{401, `{"error":"unauthorized"}`, true},
		{403, `{"type":"error","error":{"type":"permission_error","message":"revoked"}}`, true},
		{400, `not json`, true},
		{401, `{"error":"invalid_client","error_description":"Client authentication failed"}`, false},
		{400, `{"error":"invalid_request"}`, false},
		{404, `<html>Not Found</html>`, false},
		{429, `{"error":"rate_limited"}`, false},
		{500, ``, false},
		{503, `{"error":"server_error"}`, false},
	} {
		f := fakeupstream.StartOAuth(t)
		c := newClient(f)
		tok := onboard(t, f, c, oauth.KindOAuth)
		f.FailNext(tc.status, tc.body)
		_, err := c.Refresh(testCtx(t), tok.RefreshToken)
		var te *oauth.TokenError
		if err == nil || !errors.As(err, &te) || te.Status != tc.status {
			t.Fatalf("%d %s: err %v", tc.status, tc.body, err)
		}
		if errors.Is(err, oauth.ErrInvalidGrant) != tc.dead {
			t.Errorf("%d %s: dead = %v, want %v (%v)", tc.status, tc.body, !tc.dead, tc.dead, err)
		}
		if n := f.RefreshCalls(); n != 1 {
			t.Errorf("%d: %d refresh calls, want 1 (HTTP answers are never retried)", tc.status, n)
		}
		noLeak(t, err, tok.RefreshToken, tok.AccessToken)
		// The fault consumed nothing: the token still refreshes.
		if _, err := c.Refresh(testCtx(t), tok.RefreshToken); err != nil {
			t.Errorf("%d: refresh after fault: %v", tc.status, err)
		}
	}
}

func TestRefreshScrubsEchoedToken(t *testing.T) {
	f := fakeupstream.StartOAuth(t)
	c := newClient(f)
	tok := onboard(t, f, c, oauth.KindOAuth)
	f.FailNext(400, `{"error":"invalid_grant","error_description":"token `+tok.RefreshToken+` is unknown"}`)
	_, err := c.Refresh(testCtx(t), tok.RefreshToken)
	if !errors.Is(err, oauth.ErrInvalidGrant) || !strings.Contains(err.Error(), "[redacted]") {
		t.Fatalf("err %v", err)
	}
	noLeak(t, err, tok.RefreshToken)
}

// failFirstDial fails the first n round trips with a dial error, as a
// refused connection (or a proxy that is restarting) does.
type failFirstDial struct {
	n     int32
	calls atomic.Int32
	next  http.RoundTripper
}

func (f *failFirstDial) RoundTrip(r *http.Request) (*http.Response, error) {
	if f.calls.Add(1) <= f.n {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	}
	return f.next.RoundTrip(r)
}

func TestRefreshRetriesOnceOnConnectionError(t *testing.T) {
	f := fakeupstream.StartOAuth(t)
	c := newClient(f)
	tok := onboard(t, f, c, oauth.KindOAuth)

	rt := &failFirstDial{n: 1, next: http.DefaultTransport}
	c.HTTP = &http.Client{Transport: rt}
	got, err := c.Refresh(testCtx(t), tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh after one refused connection: %v", err)
	}
	if rt.calls.Load() != 2 || f.RefreshCalls() != 1 || got.RefreshToken == tok.RefreshToken {
		t.Errorf("round trips %d, server refresh calls %d", rt.calls.Load(), f.RefreshCalls())
	}

	rt = &failFirstDial{n: 5, next: http.DefaultTransport}
	c.HTTP = &http.Client{Transport: rt}
	_, err = c.Refresh(testCtx(t), got.RefreshToken)
	if err == nil || errors.Is(err, oauth.ErrInvalidGrant) {
		t.Fatalf("err %v", err)
	}
	if rt.calls.Load() != 2 {
		t.Errorf("round trips %d, want exactly 2 (one retry)", rt.calls.Load())
	}
	noLeak(t, err, got.RefreshToken)
}

func TestRefreshRetryOverRealRefusedPort(t *testing.T) {
	// A port with nothing listening: both attempts are refused by the kernel,
	// and the error is a plain connection error, not a dead account.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := &oauth.Client{Endpoints: oauth.Endpoints{TokenURL: "http://" + addr + "/v1/oauth/token"}, RetryWait: time.Millisecond}
	start := time.Now()
	_, err = c.Refresh(testCtx(t), "sk-ant-ort01-secret-value")
	if err == nil || errors.Is(err, oauth.ErrInvalidGrant) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("err %v", err)
	}
	noLeak(t, err, "sk-ant-ort01-secret-value")
	if time.Since(start) > 2*time.Second {
		t.Error("slow")
	}
}

func TestRefreshRetryWaitHonoursContext(t *testing.T) {
	c := &oauth.Client{
		Endpoints: oauth.Endpoints{TokenURL: "http://127.0.0.1:1/v1/oauth/token"},
		HTTP:      &http.Client{Transport: &failFirstDial{n: 9, next: http.DefaultTransport}},
		RetryWait: time.Hour,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Refresh(ctx, "rt-secret-123")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
}

func TestProfilePlans(t *testing.T) {
	f := fakeupstream.StartOAuth(t)
	c := newClient(f)
	tok := onboard(t, f, c, oauth.KindOAuth)
	for _, tc := range []struct{ fake, want string }{
		{"max", oauth.PlanMax}, {"pro", oauth.PlanPro}, {"free", oauth.PlanFree}, {"team", ""},
	} {
		f.SetPlan(tc.fake)
		p, err := c.Profile(testCtx(t), tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if p.Plan != tc.want {
			t.Errorf("fake plan %s: got %q, want %q", tc.fake, p.Plan, tc.want)
		}
		if p.AccountUUID != fakeupstream.OAuthAccountUUID || p.OrgUUID != fakeupstream.OAuthOrgUUID || p.Email != fakeupstream.OAuthEmail {
			t.Errorf("identity %+v", p)
		}
	}
	_, err := c.Profile(testCtx(t), "sk-ant-oat01-not-issued")
	if !errors.Is(err, oauth.ErrUnauthorized) {
		t.Errorf("unknown token: %v", err)
	}
	noLeak(t, err, "sk-ant-oat01-not-issued")
}

func TestProfileExpiredToken(t *testing.T) {
	f := fakeupstream.StartOAuth(t)
	f.SetAccessTTL(time.Millisecond)
	c := newClient(f)
	tok := onboard(t, f, c, oauth.KindOAuth)
	time.Sleep(5 * time.Millisecond)
	if f.AccessTokenValid(tok.AccessToken) {
		t.Error("expired token valid")
	}
	_, err := c.Profile(testCtx(t), tok.AccessToken)
	if !errors.Is(err, oauth.ErrUnauthorized) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("err %v", err)
	}
}

func TestUsage(t *testing.T) {
	f := fakeupstream.StartOAuth(t)
	c := newClient(f)
	tok := onboard(t, f, c, oauth.KindOAuth)
	f.SetUsage(`{"five_hour":{"utilization":12.5,"resets_at":"2026-03-01T10:00:00.123456+00:00"},"seven_day":{"utilization":34,"resets_at":"2026-03-05T00:00:00Z"},"seven_day_opus":{"utilization":null,"resets_at":null},"seven_day_sonnet":null,"extra_usage":{"is_enabled":false}}`)
	u, err := c.Usage(testCtx(t), tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if u.FiveHour == nil || u.FiveHour.Utilization != 12.5 || !u.FiveHour.ResetsAt.Equal(time.Date(2026, 3, 1, 10, 0, 0, 123456000, time.UTC)) {
		t.Errorf("five_hour %+v", u.FiveHour)
	}
	if u.SevenDay == nil || u.SevenDay.Utilization != 34 || !u.SevenDay.ResetsAt.Equal(time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("seven_day %+v", u.SevenDay)
	}
	if u.SevenDayOpus == nil || u.SevenDayOpus.Utilization != 0 || !u.SevenDayOpus.ResetsAt.IsZero() {
		t.Errorf("seven_day_opus %+v", u.SevenDayOpus)
	}
	if u.SevenDaySonnet != nil {
		t.Errorf("seven_day_sonnet %+v", u.SevenDaySonnet)
	}

	f.SetUsage(`{"five_hour":{"utilization":1,"resets_at":"tomorrow"}}`)
	if _, err := c.Usage(testCtx(t), tok.AccessToken); err == nil || !strings.Contains(err.Error(), "five_hour") {
		t.Errorf("bad resets_at: %v", err)
	}
}

func TestUsageDefaultAndBetaRequired(t *testing.T) {
	f := fakeupstream.StartOAuth(t)
	c := newClient(f)
	tok := onboard(t, f, c, oauth.KindOAuth)
	u, err := c.Usage(testCtx(t), tok.AccessToken)
	if err != nil || u.FiveHour == nil || u.SevenDay == nil || u.SevenDayOpus == nil || u.FiveHour.ResetsAt.Before(time.Now()) {
		t.Fatalf("usage %+v, %v", u, err)
	}
	// The fake refuses a usage call without the OAuth beta, so the client
	// passing above proves it sends it.
	req, _ := http.NewRequest(http.MethodGet, f.UsageURL(), nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("usage without beta: %d", resp.StatusCode)
	}
}

func TestParseImport(t *testing.T) {
	inner := `{"accessToken":"sk-ant-oat01-AAA","refreshToken":"sk-ant-ort01-BBB","expiresAt":1767225600000,"scopes":["user:inference","user:profile"],"subscriptionType":"max"}`
	want := time.UnixMilli(1767225600000)
	for _, tc := range []struct {
		name, in, errHas string
	}{
		{"wrapped", `{"claudeAiOauth":` + inner + `}`, ""},
		{"bare", inner, ""},
		{"string expiry", `{"accessToken":"sk-ant-oat01-AAA","refreshToken":"sk-ant-ort01-BBB","expiresAt":"1767225600000","scopes":["user:inference","user:profile"]}`, ""},
		{"no access token", `{"claudeAiOauth":{"refreshToken":"sk-ant-ort01-BBB"}}`, "accessToken is missing"},
		{"not json", `sk-ant-oat01-AAA`, "not a JSON object"},
		{"array", `["sk-ant-oat01-AAA"]`, "not a JSON object"},
		{"bad expiry", `{"accessToken":"sk-ant-oat01-AAA","expiresAt":"soon"}`, "expiresAt"},
		{"wrong types", `{"accessToken":["sk-ant-oat01-AAA"]}`, "expected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := oauth.ParseImport([]byte(tc.in))
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err %v, want %q", err, tc.errHas)
				}
				noLeak(t, err, "sk-ant-oat01-AAA", "sk-ant-ort01-BBB")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken != "sk-ant-oat01-AAA" || tok.RefreshToken != "sk-ant-ort01-BBB" || !tok.ExpiresAt.Equal(want) ||
				!tok.HasScope("user:profile") || len(tok.Scopes) != 2 {
				t.Errorf("got %v (%q %q)", tok, tok.AccessToken, tok.RefreshToken)
			}
		})
	}
	tok, err := oauth.ParseImport([]byte(`{"accessToken":"sk-ant-oat01-AAA"}`))
	if err != nil || !tok.ExpiresAt.IsZero() || tok.RefreshToken != "" {
		t.Errorf("minimal import: %v %v", tok, err)
	}
}

func FuzzParseCode(f *testing.F) {
	f.Add("https://platform.claude.com/oauth/code/callback?code=abcdefghijkl&state=x#y")
	f.Add("abcdefghijkl#state")
	f.Fuzz(func(t *testing.T, in string) {
		code, err := oauth.ParseCode(in)
		if err != nil {
			return
		}
		if len(code) < 10 || strings.ContainsAny(code, "#&?/ .") {
			t.Fatalf("accepted %q", code)
		}
	})
}
