package web

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/shopspring/decimal"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/store"
)

// Creating, batch-creating and editing keys. One form holds every field of
// a key's policy (admin.KeyInput, admin.PolicyPatch); an edit sends them
// all, so what the form shows is what the key becomes.
//
// A new key is shown once, on the page that answers the form: only its
// hash is stored, so no later page can show it again. That page rewrites
// the address bar to the list (app.js, data-replace-url), so reloading it
// fetches the list rather than sending the form again.

func init() {
	page("GET "+Prefix+"/keys/new", false, func(c *Console) handler { return c.keysNewForm })
	page("POST "+Prefix+"/keys/new", false, func(c *Console) handler { return c.keysCreate })
	page("GET "+Prefix+"/keys/batch", false, func(c *Console) handler { return c.keysBatchForm })
	page("POST "+Prefix+"/keys/batch", false, func(c *Console) handler { return c.keysBatchCreate })
	page("GET "+Prefix+"/keys/{id}/edit", false, func(c *Console) handler { return c.keysEditForm })
	page("POST "+Prefix+"/keys/{id}/edit", false, func(c *Console) handler { return c.keysUpdate })
	messages(map[string]msg{
		"keys.new.title":           {"New key", "新建密钥"},
		"keys.batch.title":         {"Create several keys", "批量创建密钥"},
		"keys.edit.title":          {"Edit key %s", "编辑密钥 %s"},
		"keys.new.submit":          {"Create key", "创建密钥"},
		"keys.batch.submit":        {"Create keys", "创建密钥"},
		"keys.edit.submit":         {"Save", "保存"},
		"keys.sec.key":             {"Key", "密钥"},
		"keys.sec.access":          {"Access", "访问范围"},
		"keys.sec.window":          {"Rate window", "速率窗口"},
		"keys.sec.costs":           {"Cost limits (USD, rated cost)", "费用限制（美元，按倍率计算后的费用）"},
		"keys.sec.expiry":          {"Expiry", "有效期"},
		"keys.sec.binding":         {"Account binding", "账户绑定"},
		"keys.sec.rates":           {"Service rates", "服务倍率"},
		"keys.f.name":              {"Name", "名称"},
		"keys.f.count":             {"How many (1–100)", "数量（1–100）"},
		"keys.f.prefix":            {"Name prefix (keys are named prefix-01, prefix-02, …)", "名称前缀（密钥将命名为 前缀-01、前缀-02 …）"},
		"keys.f.description":       {"Description", "描述"},
		"keys.f.tags":              {"Tags (comma-separated)", "标签（逗号分隔）"},
		"keys.f.clients":           {"Clients (none checked: every client)", "客户端（不勾选则允许所有客户端）"},
		"keys.f.permissions":       {"Pools (none checked: all)", "可用服务（不勾选则全部可用）"},
		"keys.f.models_allow":      {"Only these models (one per line or comma-separated; a trailing * covers a prefix)", "仅允许这些模型（每行一个或逗号分隔；末尾 * 匹配前缀）"},
		"keys.f.models_deny":       {"Never these models", "禁止这些模型"},
		"keys.f.concurrency":       {"Requests at once", "并发请求数"},
		"keys.f.queue":             {"Over the limit", "超出并发时"},
		"keys.f.queue.default":     {"Server setting", "使用服务器设置"},
		"keys.f.queue.true":        {"Wait in a queue", "排队等待"},
		"keys.f.queue.false":       {"Refuse", "直接拒绝"},
		"keys.f.rate_window":       {"Window length (5m, 1h, 1d; empty: none)", "窗口长度（5m、1h、1d；留空表示无）"},
		"keys.f.rate_requests":     {"Requests per window", "每窗口请求数"},
		"keys.f.rate_tokens":       {"Tokens per window", "每窗口 Token 数"},
		"keys.f.rate_cost":         {"Cost per window", "每窗口费用"},
		"keys.f.daily_cost":        {"Per day", "每日"},
		"keys.f.weekly_cost":       {"Per week (Claude models)", "每周（Claude 模型）"},
		"keys.f.total_cost":        {"In total", "总计"},
		"keys.f.daily_opus_cost":   {"Per day on Opus models", "每日（Opus 模型）"},
		"keys.f.weekly_reset_day":  {"Week starts on", "每周起始日"},
		"keys.f.weekly_reset_hour": {"at hour (0–23)", "起始小时（0–23）"},
		"keys.f.expires_at":        {"Expires at", "到期时间"},
		"keys.f.activate_for":      {"Or: expires this long after first use (30d, 12h)", "或：首次使用后多久到期（30d、12h）"},
		"keys.f.account":           {"Bound to", "绑定到"},
		"keys.f.account.pool":      {"Shared pool (no binding)", "共享账户池（不绑定）"},
		"keys.f.binding_fallback":  {"Use the shared pool when the binding cannot serve", "绑定的账户不可用时改用共享账户池"},
		"keys.f.service_rates":     {"Cost multiplier per pool (empty: 1)", "各服务的费用倍率（留空为 1）"},
		"keys.nolimit":             {"no limit", "不限"},
		"keys.day.0":               {"Sunday", "星期日"},
		"keys.day.1":               {"Monday", "星期一"},
		"keys.day.2":               {"Tuesday", "星期二"},
		"keys.day.3":               {"Wednesday", "星期三"},
		"keys.day.4":               {"Thursday", "星期四"},
		"keys.day.5":               {"Friday", "星期五"},
		"keys.day.6":               {"Saturday", "星期六"},
		"keys.zone":                {"Times are in %s.", "时间按 %s 时区。"},
		"keys.err.field":           {"%s: %s", "%s：%s"},
		"keys.err.number":          {"enter a whole number", "请输入整数"},
		"keys.err.amount":          {"enter an amount in US dollars, such as 12.50", "请输入美元金额，例如 12.50"},
		"keys.err.span":            {"enter a span such as 30d, 12h or 90m", "请输入时长，例如 30d、12h 或 90m"},
		"keys.err.time":            {"enter a date and time", "请输入日期和时间"},
		"keys.err.rate":            {"enter a number for %s, such as 1.5", "请为 %s 输入数字，例如 1.5"},
		"keys.err.both_expiries":   {"a key expires either at a fixed time or a span after its first use, not both", "密钥只能选择固定到期时间或首次使用后到期，不能同时设置"},
		"keys.err.prefix":          {"a name prefix is required", "请填写名称前缀"},
		"keys.err.count":           {"enter 1 to 100", "请输入 1 到 100"},
		"keys.err.partial":         {"Only %d of %d keys were created: %s", "仅创建了 %d / %d 个密钥：%s"},
		"keys.created.title":       {"Key created", "密钥已创建"},
		"keys.created.batch":       {"%d keys created", "已创建 %d 个密钥"},
		"keys.created.once":        {"Copy it now: this is the only time it is shown. Only its hash is stored, so nobody can show it again.", "请立即复制：密钥只显示这一次。服务器只保存其哈希值，之后任何人都无法再次查看。"},
		"keys.created.once_batch":  {"Copy them now: this is the only time they are shown, one per line in the order of the table.", "请立即复制：这些密钥只显示这一次，每行一个，顺序与下表一致。"},
		"keys.created.back":        {"Back to keys", "返回密钥列表"},
		"keys.created.id":          {"ID", "ID"},
	})
}

// Choices the form offers as checkboxes, with their labels (product
// names, the same in both languages).
var (
	keysClientChoices = []keysOption{{Value: "claude_code", Label: "Claude Code"}, {Value: "gemini_cli", Label: "Gemini CLI"},
		{Value: "codex_cli", Label: "Codex CLI"}, {Value: "droid_cli", Label: "Droid CLI"}}
	keysPoolChoices = []keysOption{{Value: "claude", Label: "Claude"}, {Value: "openai", Label: "OpenAI / Codex"},
		{Value: "gemini", Label: "Gemini"}, {Value: "droid", Label: "Droid"}}
)

// keysForm is the form as typed, so a refused form comes back as it was.
type keysForm struct {
	Name, Count, Prefix                             string
	Description, Tags                               string
	Clients, Permissions                            []string
	ModelsAllow, ModelsDeny                         string
	Concurrency, Queue                              string
	RateWindow, RateRequests, RateTokens, RateCost  string
	DailyCost, WeeklyCost, TotalCost, DailyOpusCost string
	WeeklyResetDay, WeeklyResetHour                 string
	ExpiresAt, ActivateFor                          string
	Account                                         string
	BindingFallback                                 bool
	Rates                                           map[string]string // pool → multiplier
}

// keysFormPage is the data of keys_form.html.
type keysFormPage struct {
	Mode    string // new, batch or edit
	Action  string
	Key     *admin.KeyView // the key edited
	F       keysForm
	Error   string
	Invalid map[string]bool // the field the error is about

	Clients, Pools, Queue, Days, Bindings []keysOption
	Rates                                 []keysOption // Value: pool, Label: the typed rate
	Zone                                  string
}

// keysCreatedPage is the data of keys_created.html.
type keysCreatedPage struct {
	Keys  []keysCreated
	Batch bool
	All   string // the keys, one per line
	Error string // a batch that stopped part way
}

// keysCreated is a new key as shown once.
type keysCreated struct {
	ID   store.KeyID
	Name string
	Key  string
}

const keysTimeLayout = "2006-01-02T15:04"

// keysFormFrom is the form of an existing key, every field as stored.
func (c *Console) keysFormFrom(k admin.KeyView) keysForm {
	f := keysForm{
		Name: k.Name, Description: k.Description, Tags: strings.Join(k.Tags, ", "),
		Clients: k.Clients, ModelsAllow: strings.Join(k.ModelsAllow, "\n"), ModelsDeny: strings.Join(k.ModelsDeny, "\n"),
		Queue: "default", RateRequests: keysIntText(k.RateRequests), RateTokens: keysIntText(k.RateTokens),
		RateCost: keysUSDText(k.RateCost), DailyCost: keysUSDText(k.DailyCost), WeeklyCost: keysUSDText(k.WeeklyCost),
		TotalCost: keysUSDText(k.TotalCost), DailyOpusCost: keysUSDText(k.DailyOpusCost),
		WeeklyResetDay: strconv.Itoa(k.WeeklyResetDay), WeeklyResetHour: strconv.Itoa(k.WeeklyResetHour),
		Account: k.Account, BindingFallback: k.BindingFallback, Rates: map[string]string{},
	}
	for _, p := range k.Permissions {
		f.Permissions = append(f.Permissions, string(p))
	}
	if k.Concurrency > 0 {
		f.Concurrency = strconv.Itoa(k.Concurrency)
	}
	if k.Queue != nil {
		f.Queue = strconv.FormatBool(*k.Queue)
	}
	if k.RateWindow != nil {
		f.RateWindow = *k.RateWindow
	}
	if k.ActivateFor != nil {
		f.ActivateFor = *k.ActivateFor
	} else if k.ExpiresAt != nil {
		// The view's expiry of an activation key is derived, not set.
		f.ExpiresAt = k.ExpiresAt.In(c.o.Location).Format(keysTimeLayout)
	}
	for p, r := range k.ServiceRates {
		f.Rates[string(p)] = strconv.FormatFloat(r, 'f', -1, 64)
	}
	return f
}

func keysIntText(n int64) string {
	if n == 0 {
		return ""
	}
	return strconv.FormatInt(n, 10)
}

func keysUSDText(u admin.USD) string {
	if u.IsZero() {
		return ""
	}
	return u.String()
}

// keysReadForm reads the posted form.
func keysReadForm(r *http.Request) keysForm {
	r.ParseForm()
	g := func(name string) string { return strings.TrimSpace(r.PostFormValue(name)) }
	f := keysForm{
		Name: g("name"), Count: g("count"), Prefix: g("prefix"), Description: r.PostFormValue("description"), Tags: g("tags"),
		Clients: r.PostForm["clients"], Permissions: r.PostForm["permissions"],
		ModelsAllow: g("models_allow"), ModelsDeny: g("models_deny"), Concurrency: g("concurrency"), Queue: g("queue"),
		RateWindow: g("rate_window"), RateRequests: g("rate_requests"), RateTokens: g("rate_tokens"), RateCost: g("rate_cost"),
		DailyCost: g("daily_cost"), WeeklyCost: g("weekly_cost"), TotalCost: g("total_cost"), DailyOpusCost: g("daily_opus_cost"),
		WeeklyResetDay: g("weekly_reset_day"), WeeklyResetHour: g("weekly_reset_hour"),
		ExpiresAt: g("expires_at"), ActivateFor: g("activate_for"), Account: g("account"),
		BindingFallback: r.PostFormValue("binding_fallback") != "", Rates: map[string]string{},
	}
	for _, p := range keysPoolChoices {
		if s := g("rate_" + p.Value); s != "" {
			f.Rates[p.Value] = s
		}
	}
	return f
}

// keysBad is a form field the console itself refuses, in the view's
// language: an InvalidError without a format, shown as it is.
func keysBad(field, reason string) error { return &admin.InvalidError{Field: field, Reason: reason} }

// policy turns the form into a patch that sets every policy field.
func (f keysForm) policy(v *view) (admin.PolicyPatch, error) {
	var p admin.PolicyPatch
	desc := strings.TrimSpace(f.Description)
	p.Description = &desc
	perms := slices.Clone(f.Permissions)
	p.Permissions = &perms
	allow, deny := keysSplit(f.ModelsAllow), keysSplit(f.ModelsDeny)
	p.ModelsAllow, p.ModelsDeny = &allow, &deny

	conc, err := keysInt("concurrency", f.Concurrency, v)
	if err != nil {
		return p, err
	}
	cc := int(conc)
	p.Concurrency = &cc
	var queue *bool
	if f.Queue == "true" || f.Queue == "false" {
		b := f.Queue == "true"
		queue = &b
	}
	p.Queue = &queue

	for _, sp := range []struct {
		field, in string
		out       **time.Duration
	}{{"rate_window", f.RateWindow, &p.RateWindow}, {"activate_for", f.ActivateFor, &p.ActivateFor}} {
		d := time.Duration(0)
		if sp.in != "" {
			if d, err = admin.ParseDuration(sp.in); err != nil {
				return p, keysBad(sp.field, v.T("keys.err.span"))
			}
		}
		*sp.out = &d
	}
	for _, n := range []struct {
		field, in string
		out       **int64
	}{{"rate_requests", f.RateRequests, &p.RateRequests}, {"rate_tokens", f.RateTokens, &p.RateTokens}} {
		x, err := keysInt(n.field, n.in, v)
		if err != nil {
			return p, err
		}
		*n.out = &x
	}
	for _, m := range []struct {
		field, in string
		out       **admin.USD
	}{
		{"rate_cost", f.RateCost, &p.RateCost}, {"daily_cost", f.DailyCost, &p.DailyCost}, {"weekly_cost", f.WeeklyCost, &p.WeeklyCost},
		{"total_cost", f.TotalCost, &p.TotalCost}, {"daily_opus_cost", f.DailyOpusCost, &p.DailyOpusCost},
	} {
		u := admin.USD{}
		if m.in != "" {
			d, err := decimal.NewFromString(strings.TrimPrefix(m.in, "$"))
			if err != nil {
				return p, keysBad(m.field, v.T("keys.err.amount"))
			}
			u = admin.USD{Decimal: d}
		}
		*m.out = &u
	}
	day, err := keysInt("weekly_reset_day", keysOr(f.WeeklyResetDay, strconv.Itoa(admin.DefaultWeeklyResetDay)), v)
	if err != nil {
		return p, err
	}
	hour, err := keysInt("weekly_reset_hour", f.WeeklyResetHour, v)
	if err != nil {
		return p, err
	}
	d, h := int(day), int(hour)
	p.WeeklyResetDay, p.WeeklyResetHour = &d, &h

	acct, fallback := f.Account, f.BindingFallback
	p.Account, p.BindingFallback = &acct, &fallback

	rates := map[string]float64{}
	for _, pool := range keysPoolChoices {
		s, ok := f.Rates[pool.Value]
		if !ok {
			continue
		}
		r, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return p, keysBad("service_rates", v.T("keys.err.rate", pool.Label))
		}
		rates[pool.Value] = r
	}
	p.ServiceRates = &rates
	return p, nil
}

func keysOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// keysSplit splits a list typed one per line or comma-separated.
func keysSplit(s string) []string {
	return append([]string{}, strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })...)
}

// keysTags splits comma-separated tags; empty pieces (a trailing comma)
// are dropped.
func keysTags(s string) []string {
	out := []string{}
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// keysInt reads a whole number; empty is 0.
func keysInt(field, s string, v *view) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, keysBad(field, v.T("keys.err.number"))
	}
	return n, nil
}

// expiry reads the fixed expiry, a local time in the console's zone; nil
// when empty. A key cannot have it and an expiry after first use.
func (f keysForm) expiry(v *view, loc *time.Location) (*time.Time, error) {
	if f.ExpiresAt == "" {
		return nil, nil
	}
	if span, err := admin.ParseDuration(f.ActivateFor); err == nil && span != 0 {
		return nil, keysBad("activate_for", v.T("keys.err.both_expiries"))
	}
	for _, layout := range []string{keysTimeLayout, "2006-01-02T15:04:05", "2006-01-02 15:04"} {
		if t, err := time.ParseInLocation(layout, f.ExpiresAt, loc); err == nil {
			return &t, nil
		}
	}
	if t, err := time.Parse(time.RFC3339, f.ExpiresAt); err == nil {
		return &t, nil
	}
	return nil, keysBad("expires_at", v.T("keys.err.time"))
}

// keysFieldLabel names a field as the form labels it.
func keysFieldLabel(v *view, field string) string {
	switch field {
	case "name":
		return v.T("keys.f.name")
	case "count":
		return v.T("keys.f.count")
	case "prefix":
		return v.T("keys.f.prefix")
	case "description":
		return v.T("keys.f.description")
	case "tags":
		return v.T("keys.f.tags")
	case "clients":
		return v.T("keys.f.clients")
	case "permissions":
		return v.T("keys.f.permissions")
	case "models_allow":
		return v.T("keys.f.models_allow")
	case "models_deny":
		return v.T("keys.f.models_deny")
	case "concurrency":
		return v.T("keys.f.concurrency")
	case "queue":
		return v.T("keys.f.queue")
	case "rate_window":
		return v.T("keys.f.rate_window")
	case "rate_requests":
		return v.T("keys.f.rate_requests")
	case "rate_tokens":
		return v.T("keys.f.rate_tokens")
	case "rate_cost":
		return v.T("keys.f.rate_cost")
	case "daily_cost":
		return v.T("keys.f.daily_cost")
	case "weekly_cost":
		return v.T("keys.f.weekly_cost")
	case "total_cost":
		return v.T("keys.f.total_cost")
	case "daily_opus_cost":
		return v.T("keys.f.daily_opus_cost")
	case "weekly_reset_day":
		return v.T("keys.f.weekly_reset_day")
	case "weekly_reset_hour":
		return v.T("keys.f.weekly_reset_hour")
	case "expires_at":
		return v.T("keys.f.expires_at")
	case "activate_for":
		return v.T("keys.f.activate_for")
	case "account":
		return v.T("keys.f.account")
	case "binding_fallback":
		return v.T("keys.f.binding_fallback")
	case "service_rates":
		return v.T("keys.f.service_rates")
	}
	return fieldLabel(v, field)
}

// keysFormPageFor fills the choices of the form around f.
func (c *Console) keysFormPageFor(r *http.Request, v *view, mode string, key *admin.KeyView, f keysForm) (keysFormPage, error) {
	ctx, cancel := ctx(r)
	defer cancel()
	d := keysFormPage{Mode: mode, Key: key, F: f, Invalid: map[string]bool{}, Zone: c.o.Location.String()}
	switch mode {
	case "new":
		d.Action = Prefix + "/keys/new"
	case "batch":
		d.Action = Prefix + "/keys/batch"
	default:
		d.Action = Prefix + "/keys/" + string(key.ID) + "/edit"
	}
	for _, o := range keysClientChoices {
		o.On = slices.Contains(f.Clients, o.Value)
		d.Clients = append(d.Clients, o)
	}
	for _, o := range keysPoolChoices {
		o.On = slices.Contains(f.Permissions, o.Value)
		d.Pools = append(d.Pools, o)
		d.Rates = append(d.Rates, keysOption{Value: o.Value, Label: f.Rates[o.Value]})
	}
	for _, q := range []keysOption{{Value: "default", Label: v.T("keys.f.queue.default")}, {Value: "true", Label: v.T("keys.f.queue.true")},
		{Value: "false", Label: v.T("keys.f.queue.false")}} {
		q.On = q.Value == f.Queue
		d.Queue = append(d.Queue, q)
	}
	days := []string{v.T("keys.day.0"), v.T("keys.day.1"), v.T("keys.day.2"), v.T("keys.day.3"), v.T("keys.day.4"), v.T("keys.day.5"), v.T("keys.day.6")}
	day := keysOr(f.WeeklyResetDay, strconv.Itoa(admin.DefaultWeeklyResetDay))
	for _, i := range []int{1, 2, 3, 4, 5, 6, 0} {
		d.Days = append(d.Days, keysOption{Value: strconv.Itoa(i), Label: days[i], On: strconv.Itoa(i) == day})
	}

	svc := c.o.API.Service()
	d.Bindings = []keysOption{{Value: "", Label: v.T("keys.f.account.pool"), On: f.Account == ""}}
	accts, err := svc.ListAccounts(ctx)
	if err != nil {
		return d, err
	}
	for _, a := range accts {
		d.Bindings = append(d.Bindings, keysOption{Value: string(a.ID), Label: fmt.Sprintf("%s · %s (%s)", a.Name, a.Platform, a.ID), On: f.Account == string(a.ID)})
	}
	groups, err := svc.ListGroups(ctx)
	if err != nil {
		return d, err
	}
	for _, g := range groups {
		val := "group:" + string(g.ID)
		d.Bindings = append(d.Bindings, keysOption{Value: val, Label: fmt.Sprintf("%s · %s (%s)", g.Name, g.Platform, val), On: f.Account == val})
	}
	if !slices.ContainsFunc(d.Bindings, func(o keysOption) bool { return o.On }) {
		// A binding typed by a script that no longer lists: keep it.
		d.Bindings = append(d.Bindings, keysOption{Value: f.Account, Label: f.Account, On: true})
	}
	return d, nil
}

// keysShowForm renders the form with status and, for a refused one, the
// reason next to the field it is about.
func (c *Console) keysShowForm(w http.ResponseWriter, r *http.Request, v *view, status int, mode string, key *admin.KeyView, f keysForm, formErr error) {
	d, err := c.keysFormPageFor(r, v, mode, key, f)
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	if formErr != nil {
		var inv *admin.InvalidError
		if !errors.As(formErr, &inv) {
			c.fail(w, r, v, formErr)
			return
		}
		d.Error = v.T("keys.err.field", keysFieldLabel(v, inv.Field), invalidReason(v, inv))
		d.Invalid[inv.Field] = true
	}
	c.render(w, r, v, status, "keys_form", d)
}

func (c *Console) keysNewForm(w http.ResponseWriter, r *http.Request, v *view) {
	c.keysShowForm(w, r, v, http.StatusOK, "new", nil, keysForm{Queue: "default", Rates: map[string]string{}}, nil)
}

func (c *Console) keysBatchForm(w http.ResponseWriter, r *http.Request, v *view) {
	c.keysShowForm(w, r, v, http.StatusOK, "batch", nil, keysForm{Queue: "default", Count: "10", Rates: map[string]string{}}, nil)
}

// keysInput is the new key the form describes, named name.
func (c *Console) keysInput(v *view, f keysForm, name string) (admin.KeyInput, error) {
	in := admin.KeyInput{Name: name, Tags: keysTags(f.Tags), Clients: slices.Clone(f.Clients)}
	var err error
	if in.ExpiresAt, err = f.expiry(v, c.o.Location); err != nil {
		return in, err
	}
	in.Policy, err = f.policy(v)
	return in, err
}

func (c *Console) keysCreate(w http.ResponseWriter, r *http.Request, v *view) {
	ctx, cancel := ctx(r)
	defer cancel()
	f := keysReadForm(r)
	in, err := c.keysInput(v, f, f.Name)
	if err == nil {
		var kv admin.KeyView
		var plain string
		if kv, plain, err = c.o.API.Service().CreateKey(ctx, in); err == nil {
			c.keysShowCreated(w, r, v, []keysCreated{{ID: kv.ID, Name: kv.Name, Key: plain}}, false, "")
			return
		}
	}
	c.keysShowForm(w, r, v, http.StatusBadRequest, "new", nil, f, err)
}

// keysMaxBatch bounds a batch: enough for a class or a team, small enough
// to copy from one page.
const keysMaxBatch = 100

// keysBatchCreate makes count keys named prefix-01 … with one policy. The
// names have the same length, so the first key's checks hold for all; a
// batch that fails part way still shows the keys it made, since they
// exist and cannot be shown later.
func (c *Console) keysBatchCreate(w http.ResponseWriter, r *http.Request, v *view) {
	ctx, cancel := ctx(r)
	defer cancel()
	f := keysReadForm(r)
	n, err := strconv.Atoi(f.Count)
	if err != nil || n < 1 || n > keysMaxBatch {
		c.keysShowForm(w, r, v, http.StatusBadRequest, "batch", nil, f, keysBad("count", v.T("keys.err.count")))
		return
	}
	width := len(strconv.Itoa(n))
	if width < 2 {
		width = 2
	}
	name := func(i int) string { return fmt.Sprintf("%s-%0*d", f.Prefix, width, i) }
	in, err := c.keysInput(v, f, name(1))
	if err == nil && f.Prefix == "" {
		err = keysBad("prefix", v.T("keys.err.prefix"))
	}
	if err != nil {
		c.keysShowForm(w, r, v, http.StatusBadRequest, "batch", nil, f, err)
		return
	}
	svc := c.o.API.Service()
	var made []keysCreated
	for i := 1; i <= n; i++ {
		in.Name = name(i)
		kv, plain, err := svc.CreateKey(ctx, in)
		if err != nil {
			if len(made) == 0 {
				c.keysShowForm(w, r, v, http.StatusBadRequest, "batch", nil, f, err)
				return
			}
			c.log.ErrorContext(ctx, "console: batch of keys stopped", "made", len(made), "of", n, "err", err)
			_, text := userError(v, err)
			c.keysShowCreated(w, r, v, made, true, v.T("keys.err.partial", len(made), n, text))
			return
		}
		made = append(made, keysCreated{ID: kv.ID, Name: kv.Name, Key: plain})
	}
	c.keysShowCreated(w, r, v, made, true, "")
}

func (c *Console) keysShowCreated(w http.ResponseWriter, r *http.Request, v *view, made []keysCreated, batch bool, partial string) {
	d := keysCreatedPage{Keys: made, Batch: batch, Error: partial}
	lines := make([]string, len(made))
	for i, k := range made {
		lines[i] = k.Key
	}
	d.All = strings.Join(lines, "\n")
	c.render(w, r, v, http.StatusOK, "keys_created", d)
}

func (c *Console) keysEditForm(w http.ResponseWriter, r *http.Request, v *view) {
	ctx, cancel := ctx(r)
	defer cancel()
	k, err := c.o.API.Service().GetKey(ctx, store.KeyID(r.PathValue("id")))
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	c.keysShowForm(w, r, v, http.StatusOK, "edit", &k, c.keysFormFrom(k), nil)
}

// keysUpdate applies the whole form to the key. An expiry left as the form
// showed it is not sent again, so a key that has expired can be edited
// without moving its expiry.
func (c *Console) keysUpdate(w http.ResponseWriter, r *http.Request, v *view) {
	ctx, cancel := ctx(r)
	defer cancel()
	svc := c.o.API.Service()
	k, err := svc.GetKey(ctx, store.KeyID(r.PathValue("id")))
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	f := keysReadForm(r)
	err = func() error {
		exp, err := f.expiry(v, c.o.Location)
		if err != nil {
			return err
		}
		pol, err := f.policy(v)
		if err != nil {
			return err
		}
		name, tags, clients := f.Name, keysTags(f.Tags), slices.Clone(f.Clients)
		p := admin.KeyPatch{Name: &name, Tags: &tags, Clients: &clients, Policy: pol}
		if f.ExpiresAt != c.keysFormFrom(k).ExpiresAt {
			p.ExpiresAt = &exp
		}
		_, err = svc.UpdateKey(ctx, k.ID, p)
		return err
	}()
	if err != nil {
		c.keysShowForm(w, r, v, http.StatusBadRequest, "edit", &k, f, err)
		return
	}
	flash(w, "flash.keys_saved")
	http.Redirect(w, r, Prefix+"/keys", http.StatusSeeOther)
}
