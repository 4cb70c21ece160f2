package web

import (
	"errors"
	"net/http"
	"time"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/provider/anthropic"
	"github.com/crs-relay/crs/internal/store"
)

// The detail page of one account: everything the table says, its
// settings, and for a Claude subscription the live 5-hour and 7-day
// utilization from the upstream's usage endpoint.

func init() {
	page("GET "+Prefix+"/accounts/{id}", false, func(c *Console) handler { return c.accountDetail })
	messages(map[string]msg{
		"acct.detail.settings":     {"Settings", "设置"},
		"acct.detail.type":         {"Type", "类型"},
		"acct.detail.id":           {"ID", "ID"},
		"acct.detail.created":      {"Added", "添加时间"},
		"acct.detail.base_url":     {"Base URL", "Base URL"},
		"acct.detail.default":      {"platform default", "平台默认"},
		"acct.detail.models":       {"Models", "模型"},
		"acct.detail.all_models":   {"every model", "所有模型"},
		"acct.detail.no_cap":       {"no cap", "不限"},
		"acct.detail.today":        {"Today", "今日"},
		"acct.detail.quota":        {"Subscription usage (live)", "订阅用量（实时）"},
		"acct.detail.quota_none":   {"Live usage is shown for Claude subscription (OAuth) accounts only.", "仅 Claude 订阅（OAuth）账户可查看实时用量。"},
		"acct.detail.quota_failed": {"Could not read the subscription's usage: %s", "无法读取订阅用量：%s"},
		"acct.detail.fetched":      {"As of %s (cached for up to a minute).", "数据时间 %s（最多缓存一分钟）。"},
		"acct.detail.resets":       {"resets %s", "%s 重置"},
		"acct.detail.not_started":  {"not started", "尚未开始"},
		"acct.quota.five_hour":     {"5 hours", "5 小时"},
		"acct.quota.seven_day":     {"7 days", "7 天"},
		"acct.quota.seven_opus":    {"7 days, Opus", "7 天（Opus）"},
		"acct.quota.seven_sonnet":  {"7 days, Sonnet", "7 天（Sonnet）"},
	})
}

// acctDetailPage is the data of accounts_detail.html.
type acctDetailPage struct {
	Row     acctRow
	Models  string
	CanTest bool
	// Quota is the live usage; QuotaError says why it is missing, and
	// NoQuota that the account has none to show.
	Quota      []acctQuotaBar
	FetchedAt  time.Time
	QuotaError string
	NoQuota    bool
}

// acctQuotaBar is one window of a subscription's quota.
type acctQuotaBar struct {
	ID     string // element id
	Label  string
	Used   float64 // percent; above 100 when over
	Resets *time.Time
}

func (c *Console) accountDetail(w http.ResponseWriter, r *http.Request, v *view) {
	ctx, cancel := ctx(r)
	defer cancel()
	id := store.AccountID(r.PathValue("id"))
	svc := c.o.API.Service()
	a, err := svc.GetAccount(ctx, id)
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	today, err := c.acctTodayUsage(ctx)
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	d := acctDetailPage{Row: c.acctRowFor(v, a, today[a.ID]), Models: anthropic.FormatModels(a.Models), CanTest: c.tester != nil}
	if a.Platform != store.PlatformClaude || a.Type != store.TypeOAuth {
		d.NoQuota = true
	} else {
		u, err := svc.AccountUsage(ctx, id)
		var inv *admin.InvalidError
		var oe *admin.OAuthError
		switch {
		case err == nil:
			d.FetchedAt = u.FetchedAt
			for _, q := range []struct {
				id, label string
				w         *admin.QuotaWindowView
			}{
				{"acct-usage-5h", v.T("acct.quota.five_hour"), u.FiveHour},
				{"acct-usage-7d", v.T("acct.quota.seven_day"), u.SevenDay},
				{"acct-usage-7d-opus", v.T("acct.quota.seven_opus"), u.SevenDayOpus},
				{"acct-usage-7d-sonnet", v.T("acct.quota.seven_sonnet"), u.SevenDaySonnet},
			} {
				if q.w != nil {
					d.Quota = append(d.Quota, acctQuotaBar{ID: q.id, Label: q.label, Used: q.w.Utilization, Resets: q.w.ResetsAt})
				}
			}
		case errors.As(err, &inv):
			d.QuotaError = v.T("acct.detail.quota_failed", invalidReason(v, inv))
		case errors.As(err, &oe):
			d.QuotaError = v.T("acct.detail.quota_failed", oe.Error())
		default:
			// A store or decryption fault: logged, and the rest of the
			// page still shown.
			c.log.ErrorContext(r.Context(), "console: account usage", "account", id, "err", err)
			d.QuotaError = v.T("acct.detail.quota_failed", err.Error())
		}
	}
	c.render(w, r, v, http.StatusOK, "accounts_detail", d)
}
