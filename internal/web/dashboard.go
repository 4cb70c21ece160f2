package web

import (
	"cmp"
	"html/template"
	"net/http"
	"slices"
	"time"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/store"
)

func init() {
	messages(map[string]msg{
		"dash.title":           {"Dashboard", "仪表盘"},
		"dash.today":           {"Today", "今日"},
		"dash.rpm":             {"Requests per minute (last minute)", "每分钟请求数（最近一分钟）"},
		"dash.tpm":             {"Tokens per minute (last minute)", "每分钟 Token 数（最近一分钟）"},
		"dash.trend_hour":      {"Last 24 hours, per hour", "最近 24 小时（按小时）"},
		"dash.trend_day":       {"Last 14 days, per day", "最近 14 天（按天）"},
		"dash.models":          {"Models today", "今日模型分布"},
		"dash.top_keys":        {"Top keys today", "今日用量最多的密钥"},
		"dash.accounts":        {"Accounts", "账户状态"},
		"dash.accounts_ok":     {"%d of %d accounts can serve now.", "%d / %d 个账户当前可用。"},
		"dash.not_routable":    {"Not serving now", "当前不可用"},
		"dash.no_usage":        {"No usage yet today.", "今天还没有用量。"},
		"dash.share":           {"Share", "占比"},
		"dash.series.requests": {"requests", "请求数"},
		"dash.series.tokens_k": {"tokens (thousands)", "Token 数（千）"},
		"dash.series.cost":     {"cost (USD)", "费用（美元）"},
	})
}

type dashboardPage struct {
	Today      store.Counters
	TodayToks  int64
	RPM, TPM   int64
	HourChart  template.HTML
	DayChart   template.HTML
	HourLegend []string
	DayLegend  []string
	Models     []usageRow
	ModelChart template.HTML
	TopKeys    []usageRow
	Serving    int
	Accounts   int
	Down       []admin.AccountView
}

// usageRow is one named line of a usage table.
type usageRow struct {
	ID     string
	Name   string
	Tokens int64
	Share  int64
	store.Counters
}

func tokens(c store.Counters) int64 {
	return c.Input + c.Output + c.CacheWrite5m + c.CacheWrite1h + c.CacheRead
}

// midnight is the start of t's day in loc.
func midnight(t time.Time, loc *time.Location) time.Time {
	t = t.In(loc)
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
}

func (c *Console) dashboard(w http.ResponseWriter, r *http.Request, v *view) {
	ctx, cancel := ctx(r)
	defer cancel()
	now := c.o.Now()
	today := midnight(now, c.o.Location)
	var d dashboardPage

	sum, err := c.o.Store.SummarizeUsage(ctx, store.UsageFilter{From: today})
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	for _, m := range sum.Models {
		d.Today.Merge(m.Counters)
	}
	d.TodayToks = tokens(d.Today)
	for _, m := range sum.Models {
		d.Models = append(d.Models, usageRow{ID: m.Model, Name: m.Model, Tokens: tokens(m.Counters), Share: pct(m.CostPico, d.Today.CostPico), Counters: m.Counters})
	}
	slices.SortFunc(d.Models, func(a, b usageRow) int { return cmp.Compare(b.CostPico, a.CostPico) })
	if len(d.Models) > 0 {
		var labels []string
		var vals []float64
		for _, m := range d.Models[:min(len(d.Models), 8)] {
			labels = append(labels, m.Name)
			vals = append(vals, float64(m.CostPico)/1e12)
		}
		d.ModelChart = barChart(labels, vals, func(f float64) string { return usd(int64(f * 1e12)) }, 640)
	}

	keys, err := c.o.API.Service().ListKeys(ctx, true)
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	names := map[store.KeyID]string{}
	for _, k := range keys {
		names[k.ID] = k.Name
	}
	for _, k := range sum.Keys {
		d.TopKeys = append(d.TopKeys, usageRow{ID: string(k.KeyID), Name: cmp.Or(names[k.KeyID], string(k.KeyID)), Tokens: tokens(k.Counters), Counters: k.Counters})
	}
	slices.SortFunc(d.TopKeys, func(a, b usageRow) int { return cmp.Compare(b.CostPico, a.CostPico) })
	d.TopKeys = d.TopKeys[:min(len(d.TopKeys), 10)]

	recent, err := c.o.Store.ListUsage(ctx, store.UsageFilter{From: now.Add(-time.Minute)}, 100_000)
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	for _, rec := range recent {
		d.RPM++
		d.TPM += rec.Input + rec.Output + rec.CacheWrite5m + rec.CacheWrite1h + rec.CacheRead
	}

	hourStart := now.Truncate(time.Hour).Add(-23 * time.Hour)
	// Trend reads rollups without keys: a row per hour and account and
	// model, however many keys there are.
	hours, err := c.o.Store.Trend(ctx, store.Hourly, store.UsageFilter{From: hourStart, To: now.Add(time.Hour)})
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	var hl []string
	req, tok := make([]float64, 24), make([]float64, 24)
	for i := range 24 {
		hl = append(hl, hourStart.Add(time.Duration(i)*time.Hour).In(c.o.Location).Format("15:04"))
	}
	for _, ru := range hours {
		i := int(ru.Period.Sub(hourStart) / time.Hour)
		if i >= 0 && i < 24 {
			req[i] += float64(ru.Requests)
			tok[i] += float64(tokens(ru.Counters)) / 1000
		}
	}
	d.HourChart = lineChart(hl, []series{{Name: v.T("dash.series.requests"), Values: req}, {Name: v.T("dash.series.tokens_k"), Values: tok}}, 640, 220)
	d.HourLegend = []string{v.T("dash.series.requests"), v.T("dash.series.tokens_k")}

	dayStart := today.AddDate(0, 0, -13)
	days, err := c.o.Store.Trend(ctx, store.Daily, store.UsageFilter{From: dayStart, To: today.AddDate(0, 0, 1)})
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	var dl []string
	cost := make([]float64, 14)
	for i := range 14 {
		dl = append(dl, dayStart.AddDate(0, 0, i).Format("01-02"))
	}
	for _, ru := range days {
		for i := range 14 {
			if ru.Period.Equal(dayStart.AddDate(0, 0, i)) {
				cost[i] += float64(ru.CostPico) / 1e12
			}
		}
	}
	d.DayChart = lineChart(dl, []series{{Name: v.T("dash.series.cost"), Values: cost}}, 640, 220)
	d.DayLegend = []string{v.T("dash.series.cost")}

	accts, err := c.o.API.Service().ListAccounts(ctx)
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	d.Accounts = len(accts)
	for _, a := range accts {
		if a.Status == "active" && a.Schedulable {
			d.Serving++
		} else {
			d.Down = append(d.Down, a)
		}
	}
	c.render(w, r, v, http.StatusOK, "dashboard", d)
}
