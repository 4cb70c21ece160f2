package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/crs-relay/crs/internal/oauth"
	"github.com/crs-relay/crs/internal/store"
)

// QuotaCacheTTL is how long AccountUsage reuses an answer of the usage
// endpoint. A dashboard refreshing every few seconds, or several admins
// looking at once, then costs the subscription one call a minute: the
// endpoint is Anthropic's, and hammering it from the account's address is
// the kind of traffic that gets an account looked at.
const QuotaCacheTTL = 60 * time.Second

// QuotaWindowView is one quota window of a subscription: Utilization is
// the percentage used (above 100 when over the limit); ResetsAt is null
// when the endpoint gave no reset time (a window not started yet).
type QuotaWindowView struct {
	Utilization float64    `json:"utilization"`
	ResetsAt    *time.Time `json:"resets_at"`
}

// AccountUsageView is the live quota of a Claude subscription account
// (`crs accounts usage ID --json`, GET /admin/accounts/{id}/usage). A null
// window is one the endpoint did not report (Opus on a Pro plan).
// FetchedAt says how old the numbers are, since answers are cached for
// QuotaCacheTTL. Part of the stable JSON interface.
type AccountUsageView struct {
	AccountID      store.AccountID  `json:"account_id"`
	FiveHour       *QuotaWindowView `json:"five_hour"`
	SevenDay       *QuotaWindowView `json:"seven_day"`
	SevenDayOpus   *QuotaWindowView `json:"seven_day_opus"`
	SevenDaySonnet *QuotaWindowView `json:"seven_day_sonnet"`
	FetchedAt      time.Time        `json:"fetched_at"`
}

// quotaCache keeps the last usage answer per account. The zero value is
// ready to use.
type quotaCache struct {
	mu sync.Mutex
	m  map[store.AccountID]AccountUsageView
}

func (c *quotaCache) get(id store.AccountID, now time.Time) (AccountUsageView, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[id]
	if !ok || !now.Before(v.FetchedAt.Add(QuotaCacheTTL)) || now.Before(v.FetchedAt) {
		return AccountUsageView{}, false
	}
	return v, true
}

func (c *quotaCache) put(v AccountUsageView, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[store.AccountID]AccountUsageView)
	}
	// Drop stale entries so removed accounts do not pile up.
	for id, old := range c.m {
		if !now.Before(old.FetchedAt.Add(QuotaCacheTTL)) {
			delete(c.m, id)
		}
	}
	c.m[v.AccountID] = v
}

// AccountUsage fetches the live 5-hour and 7-day utilization of a Claude
// subscription account from Anthropic's usage endpoint, through the
// account's proxy, and caches the answer for QuotaCacheTTL. It uses the
// access token as stored and never refreshes it: refreshing is the relay's
// job, and doing it from here would race the relay's own refresh and could
// burn the refresh token. API-key and setup-token accounts are refused
// with an *InvalidError; a failure of the endpoint is an *OAuthError.
func (s *Service) AccountUsage(ctx context.Context, id store.AccountID) (AccountUsageView, error) {
	a, err := s.Store.GetAccount(ctx, id)
	if err != nil {
		return AccountUsageView{}, err
	}
	if a.Platform != store.PlatformClaude || (a.Type != store.TypeOAuth && a.Type != store.TypeSetupToken) {
		return AccountUsageView{}, invalid("account", "usage is only available for Claude subscription accounts (type oauth); this is a %s %s account", a.Platform, a.Type)
	}
	if a.Type == store.TypeSetupToken {
		return AccountUsageView{}, invalid("account", "a setup-token account's token only has the user:inference scope, so it cannot read the subscription's usage; onboard the account with kind oauth (crs accounts oauth start) to see its quota")
	}
	now := s.now()
	if v, ok := s.quota.get(a.ID, now); ok {
		return v, nil
	}
	cred, err := oauth.OpenCredential(s.Box, a.SealedSecret)
	if err != nil {
		return AccountUsageView{}, fmt.Errorf("account %s: %w", a.ID, err)
	}
	if len(cred.Scopes) > 0 && !slices.Contains(cred.Scopes, "user:profile") {
		return AccountUsageView{}, invalid("account", "this account's token lacks the user:profile scope, so it cannot read the subscription's usage; onboard the account with kind oauth (crs accounts oauth start) to see its quota")
	}
	if !cred.ExpiresAt.IsZero() && !now.Before(cred.ExpiresAt) {
		return AccountUsageView{}, invalid("account", "its access token expired at %s and has not been refreshed yet; the relay (crs serve) refreshes it ahead of use — check the account's status, then try again",
			cred.ExpiresAt.UTC().Format(time.RFC3339))
	}
	proxy := ""
	if len(a.SealedProxy) > 0 {
		p, err := s.Box.Open(a.SealedProxy)
		if err != nil {
			return AccountUsageView{}, fmt.Errorf("account %s: opening its proxy (wrong ENCRYPTION_KEY?): %w", a.ID, err)
		}
		proxy = string(p)
	}
	hc, err := s.OAuth.client(proxy)
	if err != nil {
		return AccountUsageView{}, invalid("proxy", "%s", err.Error())
	}
	cl := &oauth.Client{Endpoints: s.OAuth.endpoints(), HTTP: hc, Now: s.now}
	u, err := cl.Usage(ctx, cred.AccessToken)
	switch {
	case errors.Is(err, oauth.ErrForbidden):
		return AccountUsageView{}, invalid("account", "the usage endpoint refused this account's token (HTTP 403), so it cannot read the subscription's usage; onboard the account with kind oauth (crs accounts oauth start) to see its quota")
	case errors.Is(err, oauth.ErrUnauthorized):
		return AccountUsageView{}, &OAuthError{Step: "usage", Err: fmt.Errorf("the account's access token was refused (revoked or expired); check the account's status: %w", err)}
	case err != nil:
		return AccountUsageView{}, &OAuthError{Step: "usage", Err: err}
	}
	v := AccountUsageView{
		AccountID:      a.ID,
		FiveHour:       quotaWindow(u.FiveHour),
		SevenDay:       quotaWindow(u.SevenDay),
		SevenDayOpus:   quotaWindow(u.SevenDayOpus),
		SevenDaySonnet: quotaWindow(u.SevenDaySonnet),
		FetchedAt:      now.UTC(),
	}
	s.quota.put(v, now)
	return v, nil
}

func quotaWindow(w *oauth.Window) *QuotaWindowView {
	if w == nil {
		return nil
	}
	v := &QuotaWindowView{Utilization: w.Utilization}
	if !w.ResetsAt.IsZero() {
		t := w.ResetsAt.UTC()
		v.ResetsAt = &t
	}
	return v
}

// ---- HTTP ----

func (a *API) accountUsage(w http.ResponseWriter, r *http.Request, _ authSession) {
	v, err := a.svc.AccountUsage(r.Context(), store.AccountID(r.PathValue("id")))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}
