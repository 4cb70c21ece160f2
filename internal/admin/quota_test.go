package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/oauth"
	"github.com/crs-relay/crs/internal/store"
)

const quotaJSON = `{"five_hour":{"utilization":42.5,"resets_at":"2030-01-02T03:04:05Z"},` +
	`"seven_day":{"utilization":77,"resets_at":"2030-01-05T00:00:00.5+02:00"},` +
	`"seven_day_opus":{"utilization":0,"resets_at":null},"seven_day_sonnet":null}`

// onboardOAuth adds a Claude oauth account through the browser flow
// against the fake, with proxy as its outbound proxy.
func onboardOAuth(t *testing.T, e *testEnv, fakeApprove func(string) string, kind, proxy, name string) AccountView {
	t.Helper()
	ctx := context.Background()
	st, err := e.svc.StartOAuth(ctx, OAuthStart{Kind: kind, Proxy: proxy})
	if err != nil {
		t.Fatal(err)
	}
	v, err := e.svc.FinishOAuth(ctx, st.SessionID, OAuthFinish{Code: fakeApprove(st.AuthURL), Name: name, Priority: 50})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func usageCalls(tr *oauthTrace) int { return strings.Count(tr.list(), "/api/oauth/usage") }

func TestAccountUsageFetchesThroughProxyAndCaches(t *testing.T) {
	e, fake, tr := newOAuthEnv(t)
	ctx := context.Background()
	fake.SetUsage(quotaJSON)
	proxy := "http://u:pw@127.0.0.1:3128"
	acct := onboardOAuth(t, e, func(u string) string { return approve(t, fake, u) }, "oauth", proxy, "max")

	v, err := e.svc.AccountUsage(ctx, acct.ID)
	if err != nil {
		t.Fatal(err)
	}
	reset5 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	reset7 := time.Date(2030, 1, 4, 22, 0, 0, 5e8, time.UTC)
	if v.AccountID != acct.ID || v.FiveHour == nil || v.FiveHour.Utilization != 42.5 || !v.FiveHour.ResetsAt.Equal(reset5) ||
		v.SevenDay == nil || v.SevenDay.Utilization != 77 || !v.SevenDay.ResetsAt.Equal(reset7) || v.SevenDay.ResetsAt.Location() != time.UTC ||
		v.SevenDayOpus == nil || v.SevenDayOpus.Utilization != 0 || v.SevenDayOpus.ResetsAt != nil ||
		v.SevenDaySonnet != nil || !v.FetchedAt.Equal(e.clock.Now()) {
		t.Fatalf("view %+v", v)
	}
	if !strings.Contains(tr.list(), proxy+" /api/oauth/usage") {
		t.Fatalf("usage not read through the account's proxy: %s", tr.list())
	}
	b, _ := json.Marshal(v)
	var m map[string]json.RawMessage
	json.Unmarshal(b, &m)
	for _, k := range []string{"account_id", "five_hour", "seven_day", "seven_day_opus", "seven_day_sonnet", "fetched_at"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("JSON lacks %s: %s", k, b)
		}
	}
	if string(m["seven_day_sonnet"]) != "null" || !strings.Contains(string(m["seven_day_opus"]), `"resets_at":null`) ||
		string(m["five_hour"]) != `{"utilization":42.5,"resets_at":"2030-01-02T03:04:05Z"}` {
		t.Fatalf("JSON %s", b)
	}

	// Within the TTL the cached answer comes back without a request.
	fake.SetUsage(`{"five_hour":{"utilization":99,"resets_at":"2030-01-02T03:04:05Z"}}`)
	e.clock.Advance(QuotaCacheTTL - time.Second)
	v2, err := e.svc.AccountUsage(ctx, acct.ID)
	if err != nil || v2.FiveHour.Utilization != 42.5 || usageCalls(tr) != 1 {
		t.Fatalf("cached: %+v %v, %d calls", v2, err, usageCalls(tr))
	}
	// After it, a fresh read.
	e.clock.Advance(2 * time.Second)
	v3, err := e.svc.AccountUsage(ctx, acct.ID)
	if err != nil || v3.FiveHour.Utilization != 99 || v3.SevenDay != nil || usageCalls(tr) != 2 || !v3.FetchedAt.Equal(e.clock.Now()) {
		t.Fatalf("refetched: %+v %v, %d calls", v3, err, usageCalls(tr))
	}

	// A revoked token is the upstream's refusal, said as such; nothing is
	// cached from a failure.
	a, _ := e.st.GetAccount(ctx, acct.ID)
	cred, _ := oauth.OpenCredential(e.svc.Box, a.SealedSecret)
	fake.Revoke(cred.RefreshToken)
	e.clock.Advance(QuotaCacheTTL)
	_, err = e.svc.AccountUsage(ctx, acct.ID)
	var oe *OAuthError
	if !errors.As(err, &oe) || !strings.Contains(err.Error(), "refused") || strings.Contains(err.Error(), cred.AccessToken) {
		t.Fatalf("revoked: %v", err)
	}

	// An expired token is reported before any request.
	calls := usageCalls(tr)
	e.clock.Advance(400 * 24 * time.Hour)
	_, err = e.svc.AccountUsage(ctx, acct.ID)
	if !IsInvalid(err) || !strings.Contains(err.Error(), "expired") || usageCalls(tr) != calls {
		t.Fatalf("expired: %v", err)
	}
}

func TestAccountUsageRefusesAccountsWithoutUsageAccess(t *testing.T) {
	e, _, tr := newOAuthEnv(t)
	ctx := context.Background()

	key, err := e.svc.AddAccount(ctx, AccountInput{Platform: "claude", Type: "api-key", Name: "k", APIKey: "sk-ant-api03-x", Priority: 50})
	if err != nil {
		t.Fatal(err)
	}
	setup := onboardOAuth(t, e, func(u string) string { return approveViaAuthorize(t, u) }, "setup-token", "", "ci")
	// An imported oauth credential whose scopes leave out user:profile.
	imp, err := e.svc.ImportOAuth(ctx, OAuthImport{
		JSON: []byte(`{"claudeAiOauth":{"accessToken":"sk-ant-oat01-a","refreshToken":"sk-ant-ort01-b","expiresAt":1893456000000,"scopes":["user:inference"]}}`),
		Name: "narrow", Priority: 50,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id   store.AccountID
		want string
	}{
		{key.ID, "only available for Claude subscription accounts"},
		{setup.ID, "setup-token"},
		{imp.ID, "user:profile"},
	} {
		_, err := e.svc.AccountUsage(ctx, c.id)
		if !IsInvalid(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an invalid error saying %q", c.id, err, c.want)
		}
	}
	if _, err := e.svc.AccountUsage(ctx, "acc_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if n := usageCalls(tr); n != 0 {
		t.Fatalf("%d usage requests for accounts that cannot read usage", n)
	}
}

func TestAccountUsageAdminAPI(t *testing.T) {
	e, fake, tr := newOAuthEnv(t)
	ctx := context.Background()
	fake.SetUsage(quotaJSON)
	acct := onboardOAuth(t, e, func(u string) string { return approve(t, fake, u) }, "oauth", "", "max")
	key, err := e.svc.AddAccount(ctx, AccountInput{Platform: "claude", Type: "api-key", Name: "k", APIKey: "sk-ant-api03-x", Priority: 50})
	if err != nil {
		t.Fatal(err)
	}
	tok := e.login()

	r := e.authed(tok, "GET", "/admin/accounts/"+string(acct.ID)+"/usage", nil)
	want(t, r, http.StatusOK, "")
	var v AccountUsageView
	r.json(t, &v)
	if v.AccountID != acct.ID || v.FiveHour == nil || v.FiveHour.Utilization != 42.5 || v.SevenDaySonnet != nil {
		t.Fatalf("view %s", r.body)
	}
	want(t, e.authed(tok, "GET", "/admin/accounts/"+string(acct.ID)+"/usage", nil), http.StatusOK, "")
	if n := usageCalls(tr); n != 1 {
		t.Fatalf("%d usage requests, want 1 (cached)", n)
	}
	r = e.authed(tok, "GET", "/admin/accounts/"+string(key.ID)+"/usage", nil)
	want(t, r, http.StatusBadRequest, "invalid_request")
	if !strings.Contains(r.errorMessage(), "subscription") {
		t.Fatalf("message %q", r.errorMessage())
	}
	want(t, e.authed(tok, "GET", "/admin/accounts/acc_nope/usage", nil), http.StatusNotFound, "not_found")
	want(t, e.do("GET", "/admin/accounts/"+string(acct.ID)+"/usage", nil), http.StatusUnauthorized, "unauthorized")

	// The upstream refusing the token is a 502, not a 500.
	a, _ := e.st.GetAccount(ctx, acct.ID)
	cred, _ := oauth.OpenCredential(e.svc.Box, a.SealedSecret)
	fake.Revoke(cred.RefreshToken)
	e.clock.Advance(QuotaCacheTTL)
	want(t, e.authed(tok, "GET", "/admin/accounts/"+string(acct.ID)+"/usage", nil), http.StatusBadGateway, "oauth_failed")
}
