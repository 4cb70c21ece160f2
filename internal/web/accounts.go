package web

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/store"
)

// The accounts pages: every upstream account of every platform in one
// table that says, in plain words, why an account is not serving; the
// forms that add (API key, OAuth wizard), change and remove accounts
// (accounts_form.go, accounts_oauth.go); a detail page with the live quota
// of a subscription (accounts_detail.go); and a live test of an account
// streamed into the page.

func init() {
	page("GET "+Prefix+"/accounts", false, func(c *Console) handler { return c.accountsList })
	page("POST "+Prefix+"/accounts/{id}/enable", false, func(c *Console) handler { return c.accountEnable })
	page("POST "+Prefix+"/accounts/{id}/disable", false, func(c *Console) handler { return c.accountDisable })
	page("POST "+Prefix+"/accounts/{id}/reset", false, func(c *Console) handler { return c.accountReset })
	page("POST "+Prefix+"/accounts/{id}/remove", false, func(c *Console) handler { return c.accountRemove })
	page("POST "+Prefix+"/accounts/{id}/test", false, func(c *Console) handler { return c.accountTest })
	messages(map[string]msg{
		"acct.title":          {"Accounts", "账户"},
		"acct.add_key":        {"Add an API-key account", "添加 API Key 账户"},
		"acct.add_oauth":      {"Add a subscription account (OAuth)", "添加订阅账户（OAuth）"},
		"acct.none":           {"No accounts yet. Add one to start relaying.", "还没有账户。添加一个账户后即可开始转发。"},
		"acct.serving":        {"%d of %d accounts can serve now.", "%d / %d 个账户当前可用。"},
		"acct.col.account":    {"Account", "账户"},
		"acct.col.status":     {"Status and why", "状态与原因"},
		"acct.col.priority":   {"Priority", "优先级"},
		"acct.col.proxy":      {"Proxy", "代理"},
		"acct.col.last_used":  {"Last used", "最近使用"},
		"acct.col.today_req":  {"Requests today", "今日请求"},
		"acct.col.today_cost": {"Cost today", "今日费用"},
		"acct.direct":         {"direct", "直连"},
		"acct.plan":           {"plan %s", "套餐 %s"},

		"acct.status.active":          {"serving", "可用"},
		"acct.status.cooling_down":    {"cooling down", "冷却中"},
		"acct.status.rate_limited":    {"rate-limited", "已限流"},
		"acct.status.blocked":         {"blocked", "已封禁"},
		"acct.status.credential_dead": {"credential dead", "凭据失效"},
		"acct.status.disabled":        {"disabled", "已停用"},
		"acct.status.limited":         {"partly limited", "部分受限"},
		"acct.status.paused":          {"not scheduled", "不参与调度"},

		"acct.why.disabled":        {"Disabled by an admin; enable it to serve again.", "已被管理员停用；启用后才会继续服务。"},
		"acct.why.unschedulable":   {"Kept out of scheduling by an admin (see Edit).", "已被管理员排除在调度之外（见“编辑”）。"},
		"acct.why.cooling_down":    {"Cooling down after upstream errors until %s.", "上游出错后冷却中，直到 %s。"},
		"acct.why.rate_limited":    {"Rate-limited by the upstream until %s.", "被上游限流，直到 %s。"},
		"acct.why.blocked":         {"The upstream blocked this account (organization disabled) until %s.", "上游封禁了此账户（组织被停用），直到 %s。"},
		"acct.why.credential_dead": {"The upstream refused the credential (until %s); fix the credential, then reset the status.", "上游拒绝了凭据（直到 %s）；修复凭据后请重置状态。"},
		"acct.why.reason":          {"Upstream said: %s", "上游原因：%s"},
		"acct.why.family":          {"Model family %s is rate-limited until %s; other models are still served.", "模型系列 %s 被限流，直到 %s；其他模型仍可使用。"},
		"acct.why.window":          {"5-hour window: %d%% elapsed, resets at %s.", "5 小时窗口：已过 %d%%，%s 重置。"},
		"acct.why.window_warning":  {"The upstream warns that the 5-hour window is near its limit.", "上游提示 5 小时窗口接近上限。"},
		"acct.why.window_rejected": {"5-hour window is used up; no requests until it resets at %s.", "5 小时窗口已用尽；%s 重置前不会接收请求。"},
		"acct.why.quota":           {"Daily quota reached (%s of %s); serves again tomorrow.", "已达每日额度（%s / %s）；明天恢复。"},

		"acct.action.enable":  {"Enable", "启用"},
		"acct.action.disable": {"Disable", "停用"},
		"acct.action.reset":   {"Reset status", "重置状态"},
		"acct.action.remove":  {"Remove", "移除"},
		"acct.action.test":    {"Test", "测试"},
		"acct.confirm_remove": {"Remove this account for good? Its credential is deleted.", "确定永久移除此账户？其凭据将被删除。"},
		"acct.test.title":     {"Account test", "账户测试"},
		"acct.test.hint":      {"Test sends a tiny real request through the account and shows the answer here as it arrives.", "“测试”会通过该账户发送一个很小的真实请求，并在此实时显示回复。"},
		"acct.test.start":     {"Testing account %s…\n", "正在测试账户 %s……\n"},
		"acct.test.ok":        {"\nThe account works.\n", "\n账户可用。\n"},
		"acct.test.failed":    {"\nTest failed: %s\n", "\n测试失败：%s\n"},
		"acct.test.missing":   {"This server cannot test accounts.", "此服务器无法测试账户。"},
		"acct.in_use":         {"This account cannot be removed: keys %s are bound to it. Rebind or unbind them first.", "无法移除此账户：密钥 %s 绑定了它。请先改绑或解绑这些密钥。"},

		"flash.acct_added":     {"Account added.", "账户已添加。"},
		"flash.acct_onboarded": {"Subscription account added.", "订阅账户已添加。"},
		"flash.acct_saved":     {"Account saved.", "账户已保存。"},
		"flash.acct_enabled":   {"Account enabled.", "账户已启用。"},
		"flash.acct_disabled":  {"Account disabled.", "账户已停用。"},
		"flash.acct_reset":     {"Account status reset; it may be scheduled again at once.", "账户状态已重置，可立即重新参与调度。"},
		"flash.acct_removed":   {"Account removed.", "账户已移除。"},
	})
}

// AccountTester runs a live test of one account for the console's Test
// button: a tiny real request through the account's credential, proxy and
// base URL, outside scheduling, writing what the upstream answers to w as
// it arrives (text, not raw SSE). The error says what failed in words safe
// to show an admin: no credential, token or proxy password. The console
// flushes w after every write, so each write reaches the page at once.
//
// The tester's own words (not the answer's text) and its error are made
// by say from an English format and its arguments; the console's say
// renders the formats in the page's language (i18n_formats.go), whose
// tests read the formats from internal/relay/accounttest.go.
// *relay.Relay is the tester crs serve installs.
type AccountTester interface {
	TestAccountSaying(ctx context.Context, id store.AccountID, w io.Writer, say func(format string, args ...any) string) error
}

// SetAccountTester installs the account tester; nil (the default) hides the
// Test buttons. Call it before the console serves.
func (c *Console) SetAccountTester(t AccountTester) { c.tester = t }

// acctTestTimeout bounds one account test: a tiny request answers in
// seconds; a hung upstream must not hold the page forever.
const acctTestTimeout = 90 * time.Second

// accountsPage is the data of accounts.html.
type accountsPage struct {
	Rows     []acctRow
	Serving  int
	CanTest  bool
	Location *time.Location
}

// acctRow is one account with what the table shows about it.
type acctRow struct {
	admin.AccountView
	// Badge is the translated status, BadgeClass its colour (good, warn,
	// bad or "").
	Badge, BadgeClass string
	// Why are the plain-words reasons the account serves less than fully.
	Why []string
	// Window is the 5-hour window's elapsed share in percent (-1: none),
	// WindowLine the sentence that says so.
	Window     int
	WindowLine string
	Today      store.Counters
	Routing    bool // the scheduler may pick it now for some model
}

// acctTodayUsage totals today's usage (from midnight in the console's
// zone) per account.
func (c *Console) acctTodayUsage(ctx context.Context) (map[store.AccountID]store.Counters, error) {
	sum, err := c.o.Store.SummarizeUsage(ctx, store.UsageFilter{From: midnight(c.o.Now(), c.o.Location)})
	if err != nil {
		return nil, err
	}
	out := make(map[store.AccountID]store.Counters, len(sum.Accounts))
	for _, r := range sum.Accounts {
		cur := out[r.AccountID]
		cur.Merge(r.Counters)
		out[r.AccountID] = cur
	}
	return out, nil
}

// acctRowFor explains a in v's language: its status badge and every
// reason it serves less than fully.
func (c *Console) acctRowFor(v *view, a admin.AccountView, today store.Counters) acctRow {
	now := c.o.Now()
	when := func(t time.Time) string { return whenIn(t, c.o.Location) }
	r := acctRow{AccountView: a, Window: -1, Today: today, Routing: a.Status == store.AccountActive && a.Schedulable}
	r.Badge, r.BadgeClass = acctStatusLabel(v, a.Status), "good"
	switch a.Status {
	case store.AccountActive:
	case store.AccountDisabled:
		r.BadgeClass = ""
		r.Why = append(r.Why, v.T("acct.why.disabled"))
	case string(store.CooldownBlocked), string(store.CooldownCredentialDead):
		r.BadgeClass = "bad"
	default:
		r.BadgeClass = "warn"
	}
	if a.CooldownUntil != nil {
		until := when(*a.CooldownUntil)
		switch store.CooldownKind(a.Status) {
		case store.CooldownTransient:
			r.Why = append(r.Why, v.T("acct.why.cooling_down", until))
		case store.CooldownRateLimited:
			r.Why = append(r.Why, v.T("acct.why.rate_limited", until))
		case store.CooldownBlocked:
			r.Why = append(r.Why, v.T("acct.why.blocked", until))
		case store.CooldownCredentialDead:
			r.Why = append(r.Why, v.T("acct.why.credential_dead", until))
		}
		if a.CooldownReason != "" {
			r.Why = append(r.Why, v.T("acct.why.reason", a.CooldownReason))
		}
	}
	if !a.Schedulable {
		r.Why = append(r.Why, v.T("acct.why.unschedulable"))
		if a.Status == store.AccountActive {
			r.Badge, r.BadgeClass = v.T("acct.status.paused"), "warn"
		}
	}
	for _, fam := range slices.Sorted(maps.Keys(a.FamilyLimits)) {
		r.Why = append(r.Why, v.T("acct.why.family", fam, when(a.FamilyLimits[fam])))
	}
	if len(a.FamilyLimits) > 0 && r.Badge == acctStatusLabel(v, store.AccountActive) {
		r.Badge, r.BadgeClass = v.T("acct.status.limited"), "warn"
	}
	if w := a.Window5h; w != nil {
		if span := w.End.Sub(w.Start); span > 0 {
			r.Window = int(pct(int64(now.Sub(w.Start)), int64(span)))
		}
		switch w.Status {
		case store.WindowRejected:
			r.Why = append(r.Why, v.T("acct.why.window_rejected", when(w.End)))
			r.Routing = false
			if r.BadgeClass == "good" {
				r.Badge, r.BadgeClass = v.T("acct.status.rate_limited"), "warn"
			}
		case store.WindowWarning:
			r.Why = append(r.Why, v.T("acct.why.window_warning"))
		}
		r.WindowLine = v.T("acct.why.window", r.Window, when(w.End))
	}
	if a.Type == store.TypeAPIKey && a.DailyQuota.IsPositive() {
		if quota, err := pricing.ParseUSD(a.DailyQuota.String()); err == nil && today.CostPico >= quota {
			r.Why = append(r.Why, v.T("acct.why.quota", usd(today.CostPico), usd(quota)))
			r.Routing = false
			if r.BadgeClass == "good" {
				r.Badge, r.BadgeClass = v.T("acct.status.paused"), "warn"
			}
		}
	}
	return r
}

// acctStatusLabel translates an account status; an unknown one shows as is.
func acctStatusLabel(v *view, status string) string {
	key := "acct.status." + status
	if _, ok := catalog[key]; !ok {
		return status
	}
	return v.T(key)
}

func (c *Console) accountsList(w http.ResponseWriter, r *http.Request, v *view) {
	ctx, cancel := ctx(r)
	defer cancel()
	accts, err := c.o.API.Service().ListAccounts(ctx)
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	today, err := c.acctTodayUsage(ctx)
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	d := accountsPage{CanTest: c.tester != nil, Location: c.o.Location}
	for _, a := range accts {
		row := c.acctRowFor(v, a, today[a.ID])
		if row.Routing {
			d.Serving++
		}
		d.Rows = append(d.Rows, row)
	}
	c.render(w, r, v, http.StatusOK, "accounts", d)
}

// acctBack is where an action returns to: the page it was posted from when
// that is an accounts page (the detail page), else the list.
func acctBack(r *http.Request) string {
	back := r.PostFormValue("back")
	if strings.HasPrefix(back, Prefix+"/accounts") {
		return localNext(back)
	}
	return Prefix + "/accounts"
}

func (c *Console) accountSetDisabled(w http.ResponseWriter, r *http.Request, v *view, disabled bool, flashKey string) {
	ctx, cancel := ctx(r)
	defer cancel()
	if _, err := c.o.API.Service().UpdateAccount(ctx, store.AccountID(r.PathValue("id")), admin.AccountPatch{Disabled: &disabled}); err != nil {
		c.fail(w, r, v, err)
		return
	}
	flash(w, flashKey)
	http.Redirect(w, r, acctBack(r), http.StatusSeeOther)
}

func (c *Console) accountEnable(w http.ResponseWriter, r *http.Request, v *view) {
	c.accountSetDisabled(w, r, v, false, "flash.acct_enabled")
}

func (c *Console) accountDisable(w http.ResponseWriter, r *http.Request, v *view) {
	c.accountSetDisabled(w, r, v, true, "flash.acct_disabled")
}

func (c *Console) accountReset(w http.ResponseWriter, r *http.Request, v *view) {
	ctx, cancel := ctx(r)
	defer cancel()
	if err := c.o.API.Service().ResetCooldown(ctx, store.AccountID(r.PathValue("id"))); err != nil {
		c.fail(w, r, v, err)
		return
	}
	flash(w, "flash.acct_reset")
	http.Redirect(w, r, acctBack(r), http.StatusSeeOther)
}

func (c *Console) accountRemove(w http.ResponseWriter, r *http.Request, v *view) {
	ctx, cancel := ctx(r)
	defer cancel()
	err := c.o.API.Service().RemoveAccount(ctx, store.AccountID(r.PathValue("id")))
	var inUse *admin.InUseError
	if errors.As(err, &inUse) {
		ids := make([]string, len(inUse.Keys))
		for i, k := range inUse.Keys {
			ids[i] = string(k)
		}
		c.render(w, r, v, http.StatusConflict, "error", errorPage{Message: v.T("acct.in_use", strings.Join(ids, ", "))})
		return
	}
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	flash(w, "flash.acct_removed")
	http.Redirect(w, r, Prefix+"/accounts", http.StatusSeeOther)
}

// accountTest streams the tester's output as text/plain, flushed as it is
// written, for the Test button (data-stream) to show.
func (c *Console) accountTest(w http.ResponseWriter, r *http.Request, v *view) {
	if c.tester == nil {
		http.Error(w, v.T("acct.test.missing"), http.StatusNotImplemented)
		return
	}
	id := store.AccountID(r.PathValue("id"))
	short, cancel := ctx(r)
	a, err := c.o.API.Service().GetAccount(short, id)
	cancel()
	if err != nil {
		status, text := userError(v, err)
		http.Error(w, text, status)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx would otherwise hold the stream
	w.WriteHeader(http.StatusOK)
	out := &acctFlushWriter{w: w, rc: http.NewResponseController(w)}
	io.WriteString(out, v.T("acct.test.start", a.Name))
	tctx, tcancel := context.WithTimeout(r.Context(), acctTestTimeout)
	defer tcancel()
	if err := c.tester.TestAccountSaying(tctx, id, out, v.say); err != nil {
		io.WriteString(out, v.T("acct.test.failed", err.Error()))
		return
	}
	io.WriteString(out, v.T("acct.test.ok"))
}

// acctFlushWriter flushes after every write, so a streamed answer reaches
// the browser piece by piece instead of when a buffer fills.
type acctFlushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f *acctFlushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}
