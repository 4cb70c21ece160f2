package oauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/oauth"
	"github.com/crs-relay/crs/internal/store"
)

// onboardGoogle runs the paste-a-code onboarding against the fake: Google's
// authcode page shows the code, the admin pastes it, it is exchanged.
func onboardGoogle(t *testing.T, f *fakeGoogle) oauth.Token {
	t.Helper()
	p, err := oauth.NewPending(oauth.KindOAuth, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// The authcode page shows the bare code; admins paste it with
	// whatever whitespace the copy picked up.
	code, err := oauth.ParseCodeFor(store.PlatformGemini, "  "+f.IssueCode(p.Challenge())+"\n")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := f.client().Exchange(testCtx(t), p, code)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok
}

func TestGoogleAuthURLParams(t *testing.T) {
	p, _ := oauth.NewPending(oauth.KindOAuth, time.Now())
	u, err := url.Parse(oauth.DefaultGoogleEndpoints().AuthURL(p))
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Scheme + "://" + u.Host + u.Path; got != "https://accounts.google.com/o/oauth2/v2/auth" {
		t.Errorf("base %q", got)
	}
	want := map[string]string{
		"client_id":             "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com",
		"redirect_uri":          "https://codeassist.google.com/authcode",
		"response_type":         "code",
		"scope":                 "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile",
		"access_type":           "offline",
		"prompt":                "consent",
		"code_challenge":        p.Challenge(),
		"code_challenge_method": "S256",
		"state":                 p.State,
	}
	q := u.Query()
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, q.Get(k), v)
		}
	}
	if len(q) != len(want) {
		t.Errorf("%d params, want %d: %v", len(q), len(want), q)
	}
	if strings.Contains(u.RawQuery, oauth.GoogleClientSecret) || strings.Contains(u.RawQuery, p.Verifier) {
		t.Error("secret or verifier in the authorize URL")
	}
}

func TestGoogleExchange(t *testing.T) {
	f := startFakeGoogle(t)
	before := time.Now()
	tok := onboardGoogle(t, f)
	if !strings.HasPrefix(tok.AccessToken, "ya29.") || tok.RefreshToken == "" {
		t.Errorf("tokens %v", tok)
	}
	if d := tok.ExpiresAt.Sub(before); d < time.Hour-2*time.Minute || d > time.Hour {
		t.Errorf("expires in %v", d)
	}
	if tok.Email != fakeGoogleEmail || !tok.HasScope("https://www.googleapis.com/auth/cloud-platform") {
		t.Errorf("email %q scopes %v", tok.Email, tok.Scopes)
	}
	reqs := f.Requests()
	r := reqs[len(reqs)-1]
	want := map[string]string{"grant_type": "authorization_code", "client_id": oauth.GoogleClientID,
		"client_secret": oauth.GoogleClientSecret, "redirect_uri": oauth.GoogleRedirectURI}
	for k, v := range want {
		if r.Form.Get(k) != v {
			t.Errorf("form %s = %q", k, r.Form.Get(k))
		}
	}
	if r.ContentType != "application/x-www-form-urlencoded" || r.Form.Get("code") == "" || r.Form.Get("code_verifier") == "" || len(r.Form) != 6 {
		t.Errorf("exchange %q %v", r.ContentType, r.Form)
	}
}

func TestGoogleExchangeRefusals(t *testing.T) {
	f := startFakeGoogle(t)
	c := f.client()
	ctx := testCtx(t)
	t.Run("wrong verifier", func(t *testing.T) {
		p, _ := oauth.NewPending(oauth.KindOAuth, time.Now())
		other, _ := oauth.NewPending(oauth.KindOAuth, time.Now())
		code := f.IssueCode(other.Challenge())
		_, err := c.Exchange(ctx, p, code)
		if !errors.Is(err, oauth.ErrInvalidGrant) {
			t.Fatalf("err %v", err)
		}
		noLeak(t, err, code, p.Verifier, oauth.GoogleClientSecret)
	})
	t.Run("no refresh token", func(t *testing.T) {
		p, _ := oauth.NewPending(oauth.KindOAuth, time.Now())
		f.FailNext(200, `{"access_token":"ya29.x","expires_in":3599}`)
		if _, err := c.Exchange(ctx, p, f.IssueCode(p.Challenge())); err == nil || !strings.Contains(err.Error(), "no refresh token") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("setup-token kind", func(t *testing.T) {
		p, _ := oauth.NewPending(oauth.KindSetupToken, time.Now())
		if _, err := c.Exchange(ctx, p, f.IssueCode(p.Challenge())); err == nil {
			t.Fatal("setup-token kind accepted")
		}
	})
	t.Run("expired pending", func(t *testing.T) {
		p, _ := oauth.NewPending(oauth.KindOAuth, time.Now().Add(-time.Hour))
		if _, err := c.Exchange(ctx, p, f.IssueCode(p.Challenge())); !errors.Is(err, oauth.ErrPendingExpired) {
			t.Fatalf("err %v", err)
		}
	})
}

func TestGoogleRefreshDoesNotRotate(t *testing.T) {
	f := startFakeGoogle(t)
	c := f.client()
	tok := onboardGoogle(t, f)
	prev := tok.AccessToken
	for i := range 3 {
		got, err := c.Refresh(testCtx(t), tok.RefreshToken)
		if err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
		if got.RefreshToken != tok.RefreshToken {
			t.Fatalf("refresh %d: the refresh token changed though Google sent none", i)
		}
		if got.AccessToken == prev || !f.AccessTokenValid(got.AccessToken) {
			t.Fatalf("refresh %d: no new valid access token", i)
		}
		prev = got.AccessToken
	}
	r := f.Requests()[len(f.Requests())-1]
	if r.Form.Get("grant_type") != "refresh_token" || r.Form.Get("client_secret") != oauth.GoogleClientSecret ||
		r.Form.Get("refresh_token") != tok.RefreshToken || len(r.Form) != 4 {
		t.Errorf("refresh form %v", r.Form)
	}
	f.Revoke(tok.RefreshToken)
	_, err := c.Refresh(testCtx(t), tok.RefreshToken)
	if !errors.Is(err, oauth.ErrInvalidGrant) || !strings.Contains(err.Error(), "expired or revoked") {
		t.Fatalf("revoked: %v", err)
	}
	noLeak(t, err, tok.RefreshToken, oauth.GoogleClientSecret)
	f.FailNext(401, `{"error":"invalid_client","error_description":"The OAuth client was not found."}`)
	if _, err := c.Refresh(testCtx(t), "any-refresh-token"); err == nil || errors.Is(err, oauth.ErrInvalidGrant) {
		t.Fatalf("invalid_client must not condemn the account: %v", err)
	}
}

func TestGoogleRefreshRetriesOnceOnConnectionError(t *testing.T) {
	f := startFakeGoogle(t)
	tok := onboardGoogle(t, f)
	c := f.client()
	rt := &failFirstDial{n: 1, next: http.DefaultTransport}
	c.HTTP = &http.Client{Transport: rt}
	if _, err := c.Refresh(testCtx(t), tok.RefreshToken); err != nil || rt.calls.Load() != 2 || f.RefreshCalls() != 1 {
		t.Fatalf("err %v, round trips %d, server calls %d", err, rt.calls.Load(), f.RefreshCalls())
	}
}

func TestLoadCodeAssist(t *testing.T) {
	for _, tc := range []struct {
		name        string
		edit        func(*fakeGoogle)
		wantProject string
		wantTier    string
		wantErr     error
		errHas      string
	}{
		{name: "onboarded", wantProject: fakeProject, wantTier: oauth.TierFree},
		{name: "paid tier wins", edit: func(f *fakeGoogle) { f.paidTier = "g1-pro-tier" }, wantProject: fakeProject, wantTier: "g1-pro-tier"},
		{name: "not onboarded", edit: func(f *fakeGoogle) { f.onboarded = false }, wantTier: oauth.TierFree},
		{name: "not onboarded, no default", edit: func(f *fakeGoogle) { f.onboarded, f.defaultTier = false, "" }, wantTier: oauth.TierLegacy},
		{name: "onboarded without project", edit: func(f *fakeGoogle) {
			f.onboardDone = ""
			f.ineligible = []map[string]string{{"reasonCode": "INELIGIBLE_ACCOUNT", "reasonMessage": "Workspace accounts need a project"}}
		}, wantTier: oauth.TierFree, wantErr: oauth.ErrProjectRequired, errHas: "Workspace accounts need a project"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFakeGoogle(t)
			tok := onboardGoogle(t, f)
			if tc.edit != nil {
				f.set(tc.edit)
			}
			project, tier, err := f.client().LoadCodeAssist(testCtx(t), tok.AccessToken)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err %v, want %v with %q", err, tc.wantErr, tc.errHas)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if project != tc.wantProject || tier != tc.wantTier {
				t.Fatalf("project %q tier %q, want %q %q", project, tier, tc.wantProject, tc.wantTier)
			}
			r := f.Requests()[len(f.Requests())-1]
			var body map[string]map[string]string
			_ = json.Unmarshal(r.Body, &body)
			if r.Path != "/v1internal:loadCodeAssist" || r.Header.Get("Authorization") != "Bearer "+tok.AccessToken ||
				body["metadata"]["ideType"] != "IDE_UNSPECIFIED" || body["metadata"]["platform"] != "PLATFORM_UNSPECIFIED" {
				t.Errorf("request %s %v %s", r.Path, r.Header, r.Body)
			}
		})
	}
}

func TestLoadCodeAssistRefusals(t *testing.T) {
	f := startFakeGoogle(t)
	c := f.client()
	_, _, err := c.LoadCodeAssist(testCtx(t), "ya29.not-issued")
	if !errors.Is(err, oauth.ErrUnauthorized) || !strings.Contains(err.Error(), "invalid authentication credentials") {
		t.Fatalf("err %v", err)
	}
	noLeak(t, err, "ya29.not-issued")

	// A trailing slash on the configured root still reaches /v1internal.
	tok := onboardGoogle(t, f)
	c.Endpoints.CodeAssistURL += "/"
	if project, _, err := c.LoadCodeAssist(testCtx(t), tok.AccessToken); err != nil || project != fakeProject {
		t.Fatalf("trailing slash: %q %v", project, err)
	}
}

func TestOnboardUser(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(*fakeGoogle)
		want    string
		wantErr error
	}{
		{name: "done at once", want: fakeProject},
		{name: "polled", edit: func(f *fakeGoogle) { f.pendingPolls = 3 }, want: fakeProject},
		{name: "bare operation name", edit: func(f *fakeGoogle) { f.pendingPolls, f.opName = 1, "op-77" }, want: fakeProject},
		{name: "no project", edit: func(f *fakeGoogle) { f.onboardDone = "" }, wantErr: oauth.ErrProjectRequired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFakeGoogle(t)
			tok := onboardGoogle(t, f)
			f.set(func(f *fakeGoogle) { f.onboarded = false })
			if tc.edit != nil {
				f.set(tc.edit)
			}
			c := f.client()
			project, tier, err := c.DiscoverProject(testCtx(t), tok.AccessToken)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || project != tc.want || tier != oauth.TierFree {
				t.Fatalf("project %q tier %q err %v", project, tier, err)
			}
			if f.tierSent != oauth.TierFree {
				t.Errorf("onboarded with tier %q", f.tierSent)
			}
			// Onboarded now: the next discovery needs no onboarding.
			n := len(f.Requests())
			if p, _, err := c.DiscoverProject(testCtx(t), tok.AccessToken); err != nil || p != tc.want || len(f.Requests()) != n+1 {
				t.Fatalf("second discovery: %q %v, %d calls", p, err, len(f.Requests())-n)
			}
		})
	}
}

func TestOnboardUserPollHonoursContext(t *testing.T) {
	f := startFakeGoogle(t)
	tok := onboardGoogle(t, f)
	f.set(func(f *fakeGoogle) { f.pendingPolls = 1 << 20 })
	c := f.client()
	c.OnboardPoll = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.OnboardUser(ctx, tok.AccessToken, oauth.TierFree)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
	if _, err := c.OnboardUser(testCtx(t), tok.AccessToken, ""); err == nil {
		t.Fatal("onboarded without a tier")
	}
}

func TestOnboardUserOperationError(t *testing.T) {
	srv := newJSONServer(t, map[string]string{
		"/v1internal:onboardUser": `{"name":"operations/x","done":true,"error":{"code":9,"message":"tier not available"}}`,
	})
	c := &oauth.GoogleClient{Endpoints: oauth.GoogleEndpoints{CodeAssistURL: srv}}
	if _, err := c.OnboardUser(testCtx(t), "ya29.tok", oauth.TierStandard); err == nil || !strings.Contains(err.Error(), "tier not available") {
		t.Fatalf("err %v", err)
	}
	srv = newJSONServer(t, map[string]string{
		"/v1internal:onboardUser": `{"name":"operations/../../escape","done":false}`,
	})
	c = &oauth.GoogleClient{Endpoints: oauth.GoogleEndpoints{CodeAssistURL: srv}, OnboardPoll: time.Millisecond}
	if _, err := c.OnboardUser(testCtx(t), "ya29.tok", oauth.TierFree); err == nil || !strings.Contains(err.Error(), "not a valid path") {
		t.Fatalf("err %v", err)
	}
}

// newJSONServer answers each path with a fixed JSON body.
func newJSONServer(t *testing.T, answers map[string]string) string {
	t.Helper()
	mux := http.NewServeMux()
	for path, body := range answers {
		mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(body))
		})
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}
