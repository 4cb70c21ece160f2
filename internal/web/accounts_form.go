package web

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/provider/anthropic"
	"github.com/crs-relay/crs/internal/store"
)

// The forms that add an API-key account and change any account.

func init() {
	page("GET "+Prefix+"/accounts/new", false, func(c *Console) handler { return c.accountNewForm })
	page("POST "+Prefix+"/accounts/new", false, func(c *Console) handler { return c.accountCreate })
	page("GET "+Prefix+"/accounts/{id}/edit", false, func(c *Console) handler { return c.accountEditForm })
	page("POST "+Prefix+"/accounts/{id}/edit", false, func(c *Console) handler { return c.accountSave })
	messages(map[string]msg{
		"acct.new.title":         {"Add an API-key account", "添加 API Key 账户"},
		"acct.new.submit":        {"Add account", "添加账户"},
		"acct.edit.title":        {"Edit account %s", "编辑账户 %s"},
		"acct.f.platform":        {"Platform", "平台"},
		"acct.f.platform.claude": {"Claude (Anthropic API)", "Claude（Anthropic API）"},
		"acct.f.platform.openai": {"OpenAI (Responses API, Codex)", "OpenAI（Responses API，Codex）"},
		"acct.f.platform.gemini": {"Gemini (Google AI)", "Gemini（Google AI）"},
		"acct.f.name":            {"Name", "名称"},
		"acct.f.api_key":         {"API key", "API Key"},
		"acct.f.api_key_keep":    {"New API key (leave empty to keep the current one)", "新的 API Key（留空则保留当前的）"},
		"acct.f.base_url":        {"Base URL (empty: the platform's default)", "Base URL（留空则使用平台默认地址）"},
		"acct.f.priority":        {"Priority (1–100, lower is tried first)", "优先级（1–100，数值越小越先使用）"},
		"acct.f.proxy":           {"Proxy (http://, https:// or socks5://; empty: direct)", "代理（http://、https:// 或 socks5://；留空则直连）"},
		"acct.f.proxy_keep":      {"New proxy (leave empty to keep: %s)", "新代理（留空则保留：%s）"},
		"acct.f.proxy_clear":     {"Connect directly (remove the proxy)", "直连（移除代理）"},
		"acct.f.models":          {"Models (comma-separated; name=upstream-name maps; empty: every model)", "模型（逗号分隔；name=上游名称 表示映射；留空则允许所有模型）"},
		"acct.f.schedulable":     {"Take part in scheduling", "参与调度"},
		"acct.f.auto_pause":      {"Pause when the 5-hour window warns, until it resets", "5 小时窗口告警时暂停，直到窗口重置"},
		"acct.f.serial_queue":    {"Serial queue: one user turn at a time", "串行队列：同一时间只处理一个用户回合"},
		"acct.f.unified_ua":      {"Send one unified Claude Code user agent", "统一使用一个 Claude Code User-Agent"},
		"acct.f.warmup":          {"Answer Claude Code's warmup and title requests locally", "在本地应答 Claude Code 的预热和标题请求"},
		"acct.f.max_conc":        {"Max concurrent requests (0: no cap)", "最大并发请求数（0 表示不限）"},
		"acct.f.daily_quota":     {"Daily quota in USD (0: none)", "每日额度（美元，0 表示不限）"},
		"acct.f.options":         {"Options", "选项"},
		"acct.f.bad_number":      {"want a whole number", "需要填写整数"},
		"acct.f.bad_amount":      {"want an amount in dollars, such as 12.50", "需要填写美元金额，例如 12.50"},
	})
}

// acctForm is the data of accounts_new.html and accounts_edit.html: the
// values typed (never a credential), and an error to show.
type acctForm struct {
	Account  *admin.AccountView // the account edited; nil on the new form
	Platform string
	Name     string
	BaseURL  string
	Priority string
	Proxy    string
	Models   string

	Schedulable, AutoPause, SerialQueue, UnifiedUA, Warmup bool

	MaxConcurrency string
	DailyQuota     string
	Error          string
}

// acctPlatforms are the platforms an account can be added for.
var acctPlatforms = []string{string(store.PlatformClaude), string(store.PlatformOpenAI), string(store.PlatformGemini)}

func (c *Console) accountNewForm(w http.ResponseWriter, r *http.Request, v *view) {
	p := r.URL.Query().Get("platform")
	if !slices.Contains(acctPlatforms, p) {
		p = string(store.PlatformClaude)
	}
	c.render(w, r, v, http.StatusOK, "accounts_new", acctForm{Platform: p, Priority: strconv.Itoa(admin.DefaultPriority)})
}

// acctInt reads a whole-number field; empty is def.
func acctInt(v *view, r *http.Request, field string, def int) (int, error) {
	s := strings.TrimSpace(r.PostFormValue(field))
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, &admin.InvalidError{Field: field, Reason: v.T("acct.f.bad_number")}
	}
	return n, nil
}

// acctFormError is the sentence for a service error a form can show next
// to its fields, or "" when the error is not the admin's input.
func acctFormError(v *view, err error) string {
	var inv *admin.InvalidError
	if errors.As(err, &inv) {
		return invalidText(v, inv)
	}
	return ""
}

func (c *Console) accountCreate(w http.ResponseWriter, r *http.Request, v *view) {
	f := acctForm{
		Platform: r.PostFormValue("platform"),
		Name:     r.PostFormValue("name"),
		BaseURL:  r.PostFormValue("base_url"),
		Priority: r.PostFormValue("priority"),
		Proxy:    r.PostFormValue("proxy"),
	}
	prio, err := acctInt(v, r, "priority", admin.DefaultPriority)
	if err == nil {
		ctx, cancel := ctx(r)
		defer cancel()
		_, err = c.o.API.Service().AddAccount(ctx, admin.AccountInput{
			Platform: f.Platform,
			Type:     string(store.TypeAPIKey),
			Name:     f.Name,
			APIKey:   r.PostFormValue("api_key"),
			BaseURL:  f.BaseURL,
			Proxy:    strings.TrimSpace(f.Proxy),
			Priority: prio,
		})
	}
	if msg := acctFormError(v, err); msg != "" {
		f.Error = msg
		c.render(w, r, v, http.StatusBadRequest, "accounts_new", f)
		return
	}
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	flash(w, "flash.acct_added")
	http.Redirect(w, r, Prefix+"/accounts", http.StatusSeeOther)
}

// acctEditFormFor fills the edit form from the stored account.
func acctEditFormFor(a admin.AccountView) acctForm {
	return acctForm{
		Account:        &a,
		Platform:       string(a.Platform),
		Name:           a.Name,
		BaseURL:        a.BaseURL,
		Priority:       strconv.Itoa(a.Priority),
		Models:         anthropic.FormatModels(a.Models),
		Schedulable:    a.Schedulable,
		AutoPause:      a.AutoPauseOnWarning,
		SerialQueue:    a.SerialQueue,
		UnifiedUA:      a.UnifiedUserAgent,
		Warmup:         a.InterceptWarmup,
		MaxConcurrency: strconv.Itoa(a.MaxConcurrency),
		DailyQuota:     a.DailyQuota.String(),
	}
}

func (c *Console) accountEditForm(w http.ResponseWriter, r *http.Request, v *view) {
	ctx, cancel := ctx(r)
	defer cancel()
	a, err := c.o.API.Service().GetAccount(ctx, store.AccountID(r.PathValue("id")))
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	c.render(w, r, v, http.StatusOK, "accounts_edit", acctEditFormFor(a))
}

// accountSave applies the edit form. The proxy and API key fields change
// the stored ones only when filled in (the page never shows them); the
// proxy_clear box returns the account to a direct connection.
func (c *Console) accountSave(w http.ResponseWriter, r *http.Request, v *view) {
	ctx, cancel := ctx(r)
	defer cancel()
	id := store.AccountID(r.PathValue("id"))
	a, err := c.o.API.Service().GetAccount(ctx, id)
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	on := func(name string) bool { return r.PostFormValue(name) != "" }
	f := acctEditFormFor(a)
	f.Name = r.PostFormValue("name")
	f.BaseURL = r.PostFormValue("base_url")
	f.Priority = r.PostFormValue("priority")
	f.Models = r.PostFormValue("models")
	f.Schedulable, f.AutoPause, f.SerialQueue = on("schedulable"), on("auto_pause"), on("serial_queue")
	f.UnifiedUA, f.Warmup = on("unified_ua"), on("intercept_warmup")
	f.MaxConcurrency = r.PostFormValue("max_concurrency")
	f.DailyQuota = r.PostFormValue("daily_quota")

	p := admin.AccountPatch{
		Name:               &f.Name,
		BaseURL:            &f.BaseURL,
		Schedulable:        &f.Schedulable,
		AutoPauseOnWarning: &f.AutoPause,
		SerialQueue:        &f.SerialQueue,
		UnifiedUserAgent:   &f.UnifiedUA,
		InterceptWarmup:    &f.Warmup,
	}
	err = func() error {
		prio, err := acctInt(v, r, "priority", a.Priority)
		if err != nil {
			return err
		}
		p.Priority = &prio
		conc, err := acctInt(v, r, "max_concurrency", 0)
		if err != nil {
			return err
		}
		p.MaxConcurrency = &conc
		models, err := anthropic.ParseModels(f.Models)
		if err != nil {
			return &admin.InvalidError{Field: "models", Reason: err.Error()}
		}
		if models == nil {
			models = map[string]string{}
		}
		p.Models = &models
		if proxy := strings.TrimSpace(r.PostFormValue("proxy")); proxy != "" {
			p.Proxy = &proxy
		} else if on("proxy_clear") {
			p.Proxy = new(string)
		}
		if key := r.PostFormValue("api_key"); key != "" {
			p.APIKey = &key
		}
		if a.Type == store.TypeAPIKey {
			q := strings.TrimSpace(f.DailyQuota)
			if q == "" {
				q = "0"
			}
			d, err := decimal.NewFromString(strings.TrimPrefix(q, "$"))
			if err != nil {
				return &admin.InvalidError{Field: "daily_quota", Reason: v.T("acct.f.bad_amount")}
			}
			p.DailyQuota = &admin.USD{Decimal: d}
		}
		_, err = c.o.API.Service().UpdateAccount(ctx, id, p)
		return err
	}()
	if msg := acctFormError(v, err); msg != "" {
		f.Error = msg
		c.render(w, r, v, http.StatusBadRequest, "accounts_edit", f)
		return
	}
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	flash(w, "flash.acct_saved")
	http.Redirect(w, r, Prefix+"/accounts/"+string(id), http.StatusSeeOther)
}
