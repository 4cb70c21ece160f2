package web

import (
	"errors"
	"math"
	"net/http"

	"github.com/crs-relay/crs/internal/keystats"
)

// The key holders' page: paste a relay key, see its usage, limits and
// expiry, and how to set up Claude Code, Codex CLI and Gemini CLI against
// this server. Public: the key is the credential. The lookup is the JSON
// route's (throttled per address, constant time), and the key travels only
// in a POST body.

func init() {
	page("GET "+Prefix+"/stats", true, func(c *Console) handler { return c.statsForm })
	page("POST "+Prefix+"/stats", true, func(c *Console) handler { return c.statsLookup })
	messages(map[string]msg{
		"stats.title":           {"Your key", "我的密钥"},
		"stats.intro":           {"Paste your relay key (cr_…) to see what it has used, its limits, and how to set up your tools.", "粘贴你的中转密钥（cr_…），查看用量、限制以及客户端配置方法。"},
		"stats.key":             {"Relay key", "中转密钥"},
		"stats.submit":          {"Show", "查询"},
		"stats.unknown":         {"No such key. Give the whole relay key (cr_…), not its id.", "没有这个密钥。请输入完整的中转密钥（cr_…），而不是它的 ID。"},
		"stats.throttled":       {"Too many lookups with unknown keys from this address; try again in %d seconds.", "此地址查询无效密钥的次数过多，请 %d 秒后再试。"},
		"stats.unavailable":     {"Usage is unavailable right now; try again shortly.", "暂时无法获取用量，请稍后再试。"},
		"stats.name":            {"Key", "密钥"},
		"stats.status":          {"Status", "状态"},
		"stats.expires":         {"Expires", "到期时间"},
		"stats.last_used":       {"Last used", "最近使用"},
		"stats.today":           {"Today", "今日"},
		"stats.month":           {"This month", "本月"},
		"stats.all":             {"All time", "全部"},
		"stats.limits":          {"Limits", "限制"},
		"stats.no_limits":       {"This key has no limits.", "此密钥没有限制。"},
		"stats.window":          {"Rate window (%s)", "速率窗口（%s）"},
		"stats.window_ends":     {"ends %s", "于 %s 结束"},
		"stats.cost.total":      {"Total cost", "总费用"},
		"stats.cost.weekly":     {"Weekly cost (Claude)", "每周费用（Claude）"},
		"stats.cost.daily":      {"Daily cost", "每日费用"},
		"stats.cost.daily_opus": {"Daily Opus cost", "每日 Opus 费用"},
		"stats.resets":          {"resets %s", "%s 重置"},
		"stats.concurrency":     {"Requests at once: %d of %d", "并发请求：%d / %d"},
		"stats.setup":           {"Set up your tools", "配置客户端"},
		"stats.setup.claude":    {"Claude Code", "Claude Code"},
		"stats.setup.codex":     {"Codex CLI (~/.codex/config.toml, then export CRS_OAI_KEY)", "Codex CLI（~/.codex/config.toml，然后设置 CRS_OAI_KEY 环境变量）"},
		"stats.setup.gemini":    {"Gemini CLI", "Gemini CLI"},
		"stats.requests":        {"%s requests", "%s 次请求"},
	})
}

type statsPage struct {
	Error  string
	Stats  *keystats.Stats
	Key    string // echoed into the setup snippets only
	Base   string // this server, as the browser reached it
	Limits []limitLine
}

// limitLine is one limit as progress: used of max, and when it resets.
type limitLine struct {
	Label    string
	Used     string
	Max      string
	Value    int64
	Limit    int64
	Resets   string
	Exceeded bool
}

// baseURL is this server's address as the browser reached it.
func baseURL(r *http.Request) string {
	scheme := "http"
	if secure(r) {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (c *Console) statsForm(w http.ResponseWriter, r *http.Request, v *view) {
	c.render(w, r, v, http.StatusOK, "stats", statsPage{Base: baseURL(r)})
}

func (c *Console) statsLookup(w http.ResponseWriter, r *http.Request, v *view) {
	d := statsPage{Base: baseURL(r)}
	if c.o.Stats == nil {
		d.Error = v.T("stats.unavailable")
		c.render(w, r, v, http.StatusServiceUnavailable, "stats", d)
		return
	}
	key := r.PostFormValue("key")
	st, err := c.o.Stats.Look(r, key)
	var throttled *keystats.ThrottledError
	switch {
	case errors.As(err, &throttled):
		d.Error = v.T("stats.throttled", max(int(math.Ceil(throttled.Wait.Seconds())), 1))
		c.render(w, r, v, http.StatusTooManyRequests, "stats", d)
		return
	case errors.Is(err, keystats.ErrUnknownKey):
		d.Error = v.T("stats.unknown")
		c.render(w, r, v, http.StatusUnauthorized, "stats", d)
		return
	case err != nil:
		d.Error = v.T("stats.unavailable")
		c.render(w, r, v, http.StatusServiceUnavailable, "stats", d)
		return
	}
	d.Stats, d.Key = &st, key
	if l := st.Limits; l != nil {
		if wnd := l.Window; wnd != nil {
			label := v.T("stats.window", wnd.Length.String())
			ends := ""
			if !wnd.End.IsZero() {
				ends = v.T("stats.window_ends", whenIn(wnd.End, c.o.Location))
			}
			if wnd.RequestsLimit > 0 {
				d.Limits = append(d.Limits, limitLine{Label: label + " · " + v.T("common.requests"), Used: num(wnd.Requests), Max: num(wnd.RequestsLimit),
					Value: wnd.Requests, Limit: wnd.RequestsLimit, Resets: ends, Exceeded: wnd.Requests >= wnd.RequestsLimit})
			}
			if wnd.TokensLimit > 0 {
				d.Limits = append(d.Limits, limitLine{Label: label + " · " + v.T("common.tokens"), Used: num(wnd.Tokens), Max: num(wnd.TokensLimit),
					Value: wnd.Tokens, Limit: wnd.TokensLimit, Resets: ends, Exceeded: wnd.Tokens >= wnd.TokensLimit})
			}
			if wnd.CostLimit > 0 {
				d.Limits = append(d.Limits, limitLine{Label: label + " · " + v.T("common.cost"), Used: usd(wnd.Cost), Max: usd(wnd.CostLimit),
					Value: wnd.Cost, Limit: wnd.CostLimit, Resets: ends, Exceeded: wnd.Cost >= wnd.CostLimit})
			}
		}
		for _, cs := range l.Costs {
			resets := ""
			if !cs.ResetAt.IsZero() {
				resets = v.T("stats.resets", whenIn(cs.ResetAt, c.o.Location))
			}
			d.Limits = append(d.Limits, limitLine{Label: v.T("stats.cost." + cs.Kind), Used: usd(cs.Used), Max: usd(cs.Limit),
				Value: cs.Used, Limit: cs.Limit, Resets: resets, Exceeded: cs.Used >= cs.Limit})
		}
		if cc := l.Concurrency; cc != nil {
			d.Limits = append(d.Limits, limitLine{Label: v.T("stats.concurrency", cc.InFlight, cc.Limit), Used: num(int64(cc.InFlight)), Max: num(int64(cc.Limit)),
				Value: int64(cc.InFlight), Limit: int64(cc.Limit)})
		}
	}
	c.render(w, r, v, http.StatusOK, "stats", d)
}
