package web

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/store"
)

// The OAuth wizard that onboards a subscription account: step one picks
// the platform, kind, name and proxy and starts an onboarding; step two
// shows the authorize link to open in a browser signed into the account
// and takes back the code (or the whole callback URL) it shows.

func init() {
	page("GET "+Prefix+"/accounts/oauth", false, func(c *Console) handler { return c.oauthForm })
	page("POST "+Prefix+"/accounts/oauth", false, func(c *Console) handler { return c.oauthStart })
	page("POST "+Prefix+"/accounts/oauth/finish", false, func(c *Console) handler { return c.oauthFinish })
	messages(map[string]msg{
		"acct.oauth.title":            {"Add a subscription account", "添加订阅账户"},
		"acct.oauth.intro":            {"Onboard a Claude, ChatGPT (Codex) or Google (Gemini CLI) subscription: crs makes an authorize link, you approve it in a browser signed into that account, and paste back the code it shows.", "接入 Claude、ChatGPT（Codex）或 Google（Gemini CLI）订阅账户：crs 生成一个授权链接，你在已登录该账户的浏览器中批准，然后把页面显示的授权码粘贴回来。"},
		"acct.oauth.platform.claude":  {"Claude (Pro / Max subscription)", "Claude（Pro / Max 订阅）"},
		"acct.oauth.platform.openai":  {"ChatGPT (Codex)", "ChatGPT（Codex）"},
		"acct.oauth.platform.gemini":  {"Google (Gemini CLI / Code Assist)", "Google（Gemini CLI / Code Assist）"},
		"acct.oauth.kind":             {"Kind (Claude only)", "类型（仅 Claude）"},
		"acct.oauth.kind.oauth":       {"OAuth: renewable, shows the plan and usage", "OAuth：可自动续期，可查看套餐与用量"},
		"acct.oauth.kind.setup_token": {"Setup token: one-year token for inference only", "Setup Token：一年有效，仅可用于推理"},
		"acct.oauth.name_hint":        {"Name (empty: platform and kind)", "名称（留空则使用平台加类型）"},
		"acct.oauth.proxy_hint":       {"Proxy (the code exchange already goes through it; empty: direct)", "代理（授权码兑换即通过此代理；留空则直连）"},
		"acct.oauth.start":            {"Make the authorize link", "生成授权链接"},
		"acct.oauth.step2":            {"Approve, then paste the code", "批准授权，然后粘贴授权码"},
		"acct.oauth.open":             {"1. Open this link in a browser signed into the account and approve:", "1. 在已登录该账户的浏览器中打开此链接并批准："},
		"acct.oauth.link":             {"Open the authorize page", "打开授权页面"},
		"acct.oauth.paste":            {"2. Paste the code the page shows, or the whole address it ended on:", "2. 粘贴页面显示的授权码，或最终跳转到的完整地址："},
		"acct.oauth.expires":          {"This onboarding expires at %s.", "本次接入将于 %s 过期。"},
		"acct.oauth.finish":           {"Add the account", "添加账户"},
		"acct.oauth.again":            {"Start again", "重新开始"},
		"acct.oauth.failed":           {"The authorization server refused or failed: %s. Codes work once; start again for a new link.", "授权服务器拒绝或出错：%s。授权码只能使用一次，请重新开始获取新链接。"},
	})
}

// oauthPage is the data of accounts_oauth.html (step one) and
// accounts_oauth_code.html (step two).
type oauthPage struct {
	Platform, Kind, Name, Proxy, Priority string
	// Step two: the onboarding session and its authorize link.
	SessionID string
	AuthURL   string
	ExpiresAt time.Time
	Error     string
}

var oauthPlatforms = []string{string(store.PlatformClaude), string(store.PlatformOpenAI), string(store.PlatformGemini)}

func (c *Console) oauthForm(w http.ResponseWriter, r *http.Request, v *view) {
	p := r.URL.Query().Get("platform")
	if !slices.Contains(oauthPlatforms, p) {
		p = string(store.PlatformClaude)
	}
	c.render(w, r, v, http.StatusOK, "accounts_oauth", oauthPage{Platform: p, Kind: "oauth", Priority: "50"})
}

// oauthStart begins an onboarding and shows step two.
func (c *Console) oauthStart(w http.ResponseWriter, r *http.Request, v *view) {
	d := oauthPage{
		Platform: r.PostFormValue("platform"),
		Kind:     r.PostFormValue("kind"),
		Name:     r.PostFormValue("name"),
		Proxy:    r.PostFormValue("proxy"),
		Priority: r.PostFormValue("priority"),
	}
	if _, err := acctInt(v, r, "priority", admin.DefaultPriority); err != nil {
		d.Error = acctFormError(v, err)
		c.render(w, r, v, http.StatusBadRequest, "accounts_oauth", d)
		return
	}
	ctx, cancel := ctx(r)
	defer cancel()
	started, err := c.o.API.Service().StartOAuth(ctx, admin.OAuthStart{Platform: d.Platform, Kind: d.Kind, Proxy: d.Proxy})
	if msg := acctFormError(v, err); msg != "" {
		d.Error = msg
		c.render(w, r, v, http.StatusBadRequest, "accounts_oauth", d)
		return
	}
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	d.SessionID, d.AuthURL, d.ExpiresAt = started.SessionID, started.AuthURL, started.ExpiresAt
	d.Proxy = "" // sealed in the session; not carried through the page
	c.render(w, r, v, http.StatusOK, "accounts_oauth_code", d)
}

// oauthFinish exchanges the pasted code and adds the account. Bad input
// (a mistyped code) shows step two again with the same session, which the
// service has not used up; a refusal of the authorization server spends
// the session and asks to start again.
func (c *Console) oauthFinish(w http.ResponseWriter, r *http.Request, v *view) {
	d := oauthPage{
		Platform:  r.PostFormValue("platform"),
		Name:      r.PostFormValue("name"),
		Priority:  r.PostFormValue("priority"),
		SessionID: r.PostFormValue("session_id"),
		AuthURL:   oauthSafeLink(r.PostFormValue("auth_url")),
	}
	if t, err := time.Parse(time.RFC3339, r.PostFormValue("expires_at")); err == nil {
		d.ExpiresAt = t
	}
	prio, err := acctInt(v, r, "priority", admin.DefaultPriority)
	if err == nil {
		ctx, cancel := ctx(r)
		defer cancel()
		_, err = c.o.API.Service().FinishOAuth(ctx, d.SessionID, admin.OAuthFinish{
			Code: strings.TrimSpace(r.PostFormValue("code")), Name: d.Name, Priority: prio,
		})
	}
	var oe *admin.OAuthError
	switch {
	case err == nil:
		flash(w, "flash.acct_onboarded")
		http.Redirect(w, r, Prefix+"/accounts", http.StatusSeeOther)
		return
	case errors.As(err, &oe):
		d.Error = v.T("acct.oauth.failed", err.Error())
		d.SessionID = "" // used up: only "start again" is left
		c.render(w, r, v, http.StatusBadGateway, "accounts_oauth_code", d)
		return
	}
	if msg := acctFormError(v, err); msg != "" {
		d.Error = msg
		c.render(w, r, v, http.StatusBadRequest, "accounts_oauth_code", d)
		return
	}
	c.fail(w, r, v, err)
}

// oauthSafeLink keeps an authorize link carried through the form only when
// it is an http(s) address, so a crafted form cannot make the page link to
// a javascript: URL. (html/template would defuse one anyway.)
func oauthSafeLink(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return ""
	}
	return s
}
