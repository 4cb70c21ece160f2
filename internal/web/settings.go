package web

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/notify"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/store"
)

// The settings page: the switches the server started with (environment
// variables, shown read-only with their names), where service rates are
// set, the price table in use with an upload and a reset, and the alert
// channels (settings_channels.go).

// SettingsInfo is the start-up configuration the settings page shows. These
// values come from environment variables and change only with a restart, so
// the page names the variable beside each.
type SettingsInfo struct {
	ClaudeCodeOnly          bool          // CLAUDE_CODE_ONLY
	ConcurrencyQueue        bool          // CONCURRENCY_QUEUE
	ConcurrencyQueueTimeout time.Duration // CONCURRENCY_QUEUE_TIMEOUT
	UserMessageQueueDelay   time.Duration // USER_MESSAGE_QUEUE_DELAY
	UserMessageQueueTimeout time.Duration // USER_MESSAGE_QUEUE_TIMEOUT
	StickyTTL               time.Duration // STICKY_SESSION_TTL_HOURS
	Timezone                string        // TIMEZONE, the zone's name
}

// SetSettingsView gives the settings page the server's start-up settings;
// f is called on every view of the page. Call it before serving; without
// it the page says the settings are unknown.
func (c *Console) SetSettingsView(f func() SettingsInfo) { c.settingsView = f }

func init() {
	page("GET "+Prefix+"/settings", false, func(c *Console) handler { return c.settings })
	page("POST "+Prefix+"/settings/prices", false, func(c *Console) handler { return c.settingsPricesUpload })
	page("POST "+Prefix+"/settings/prices/reset", false, func(c *Console) handler { return c.settingsPricesReset })
	messages(map[string]msg{
		"settings.title":              {"Settings", "设置"},
		"settings.env":                {"Server switches", "服务开关"},
		"settings.env_note":           {"Set by environment variables when the server starts; change the variable and restart to change them.", "这些值在服务启动时由环境变量设定；修改环境变量并重启服务即可更改。"},
		"settings.env_unknown":        {"This server did not report its settings.", "此服务未提供其设置。"},
		"settings.setting":            {"Setting", "设置项"},
		"settings.value":              {"Value", "当前值"},
		"settings.variable":           {"Environment variable", "环境变量"},
		"settings.on":                 {"on", "开启"},
		"settings.off":                {"off", "关闭"},
		"settings.claude_code_only":   {"Subscription accounts serve only Claude Code", "订阅账户仅服务 Claude Code"},
		"settings.concurrency_queue":  {"Requests over a key's concurrency limit wait", "超出密钥并发上限的请求排队等待"},
		"settings.concurrency_wait":   {"Longest wait in a key's concurrency queue", "密钥并发队列的最长等待时间"},
		"settings.user_queue_delay":   {"Gap between user turns (serial queue)", "用户消息间隔（串行队列）"},
		"settings.user_queue_timeout": {"Longest wait for the serial queue", "串行队列的最长等待时间"},
		"settings.sticky_ttl":         {"A conversation keeps its account for", "会话保持同一账户的时长"},
		"settings.timezone":           {"Zone of days and of times shown", "日期边界与显示时间所用时区"},
		"settings.rates":              {"Service rates", "服务倍率"},
		"settings.rates_note":         {"A service rate multiplies a key's real cost per platform into the cost its limits count. Rates are set per key: on the Keys page (edit a key), or on the command line:", "服务倍率按平台把密钥的实际费用乘以系数，得到其限额计入的费用。倍率按密钥设置：在“密钥”页面编辑密钥，或在命令行执行："},
		"settings.rates_none":         {"Every key counts its real cost.", "所有密钥均按实际费用计算。"},
		"settings.rates_keys":         {"Keys with service rates", "设置了服务倍率的密钥"},
		"settings.rates_edit":         {"Open the Keys page", "打开密钥页面"},
		"settings.prices":             {"Price table", "价格表"},
		"settings.prices_none":        {"This server did not give the console its price table.", "此服务未向控制台提供价格表。"},
		"settings.prices.version":     {"Version", "版本"},
		"settings.prices.as_of":       {"Prices checked on", "价格核对日期"},
		"settings.prices.source":      {"Prices taken from", "价格来源"},
		"settings.prices.origin":      {"Loaded from", "加载来源"},
		"settings.prices.updated":     {"Stored at", "存储时间"},
		"settings.prices.models":      {"Models", "模型数"},
		"settings.prices.embedded":    {"built into this binary", "内置于程序"},
		"settings.prices.upload":      {"Replace with a price table file (JSON, the prices.json format)", "上传价格表文件替换（JSON，prices.json 格式）"},
		"settings.prices.file":        {"Price table file", "价格表文件"},
		"settings.prices.submit":      {"Upload", "上传"},
		"settings.prices.reset":       {"Use the built-in table", "恢复内置价格表"},
		"settings.prices.reset_ask":   {"Go back to the price table built into this binary?", "确定恢复为程序内置的价格表吗？"},
		"settings.prices.note":        {"The table is checked before it is stored and applies at once; other instances of a shared deployment pick it up within seconds.", "价格表在存储前会经过检查，并立即生效；共享部署中的其他实例会在数秒内加载。"},
		"settings.prices.bad":         {"The price table was not saved: %s", "价格表未保存：%s"},
		"settings.prices.no_file":     {"Choose a price table file first.", "请先选择价格表文件。"},
		"settings.prices.too_big":     {"The file is larger than %d MiB; that is no price table.", "文件超过 %d MiB，不是有效的价格表。"},
		"flash.settings.prices_saved": {"Price table saved and in use.", "价格表已保存并生效。"},
		"flash.settings.prices_reset": {"The built-in price table is in use again.", "已恢复使用内置价格表。"},
	})
}

// settingsRow is one start-up setting as shown.
type settingsRow struct {
	Label, Value, Env string
}

type settingsPage struct {
	Env        []settingsRow
	HasEnv     bool
	RateKeys   []settingsRateKey
	Prices     *pricing.Info
	Embedded   bool
	PriceError string
	MaxMiB     int

	Channels      []notify.ChannelView
	ChannelsError string
	ChannelTypes  []string
	Form          settingsChannelForm
	ChannelError  string
	Test          *admin.ChannelTestResult
}

// settingsRateKey is a key whose limits count a rated cost.
type settingsRateKey struct {
	ID, Name, Rates string
}

func (c *Console) settings(w http.ResponseWriter, r *http.Request, v *view) {
	c.renderSettings(w, r, v, http.StatusOK, settingsPage{})
}

// renderSettings fills the page's data around what an action already put
// in d (an error, a form to echo, a test result) and renders it.
func (c *Console) renderSettings(w http.ResponseWriter, r *http.Request, v *view, status int, d settingsPage) {
	ctx, cancel := ctx(r)
	defer cancel()
	d.MaxMiB = pricing.MaxTableBytes >> 20
	if c.settingsView != nil {
		s := c.settingsView()
		d.HasEnv = true
		onOff := func(b bool) string {
			if b {
				return v.T("settings.on")
			}
			return v.T("settings.off")
		}
		d.Env = []settingsRow{
			{v.T("settings.claude_code_only"), onOff(s.ClaudeCodeOnly), "CLAUDE_CODE_ONLY"},
			{v.T("settings.concurrency_queue"), onOff(s.ConcurrencyQueue), "CONCURRENCY_QUEUE"},
			{v.T("settings.concurrency_wait"), settingsDuration(s.ConcurrencyQueueTimeout), "CONCURRENCY_QUEUE_TIMEOUT"},
			{v.T("settings.user_queue_delay"), settingsDuration(s.UserMessageQueueDelay), "USER_MESSAGE_QUEUE_DELAY"},
			{v.T("settings.user_queue_timeout"), settingsDuration(s.UserMessageQueueTimeout), "USER_MESSAGE_QUEUE_TIMEOUT"},
			{v.T("settings.sticky_ttl"), settingsDuration(s.StickyTTL), "STICKY_SESSION_TTL_HOURS"},
			{v.T("settings.timezone"), cmp.Or(s.Timezone, c.o.Location.String()), "TIMEZONE"},
		}
	}

	keys, err := c.o.API.Service().ListKeys(ctx, false)
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	for _, k := range keys {
		if len(k.ServiceRates) == 0 {
			continue
		}
		var parts []string
		for p, rate := range k.ServiceRates {
			parts = append(parts, fmt.Sprintf("%s ×%g", p, rate))
		}
		slices.Sort(parts)
		d.RateKeys = append(d.RateKeys, settingsRateKey{ID: string(k.ID), Name: k.Name, Rates: strings.Join(parts, ", ")})
	}

	if c.o.Prices != nil {
		info := c.o.Prices.Table().Info()
		d.Prices = &info
		d.Embedded = info.Origin == pricing.OriginEmbedded
	}

	c.settingsLoadChannels(ctx, v, &d)
	c.render(w, r, v, status, "settings", d)
}

// settingsDuration prints d without the zero units Duration.String
// leaves: 1h, 1m30s, 200ms.
func settingsDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// settingsPricesUpload stores an uploaded price table (multipart field
// "file") after pricing.CheckUpdate accepts it, and puts it in use here at
// once; other instances reload it on their own.
func (c *Console) settingsPricesUpload(w http.ResponseWriter, r *http.Request, v *view) {
	bad := func(text string) {
		c.renderSettings(w, r, v, http.StatusBadRequest, settingsPage{PriceError: text})
	}
	file, hdr, err := r.FormFile("file")
	if err != nil {
		bad(v.T("settings.prices.no_file"))
		return
	}
	defer file.Close()
	data, err := io.ReadAll(io.LimitReader(file, pricing.MaxTableBytes+1))
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	if len(data) > pricing.MaxTableBytes {
		bad(v.T("settings.prices.too_big", pricing.MaxTableBytes>>20))
		return
	}
	ctx, cancel := ctx(r)
	defer cancel()
	origin := "console upload: " + ellipsis(strings.ToValidUTF8(path.Base(strings.ReplaceAll(hdr.Filename, `\`, "/")), "?"), 80)
	if _, err := pricing.Save(ctx, c.o.Store, data, origin, c.o.Now()); err != nil {
		if ctx.Err() != nil {
			c.fail(w, r, v, err)
			return
		}
		bad(v.T("settings.prices.bad", strings.TrimPrefix(err.Error(), "pricing: ")))
		return
	}
	c.reloadPrices(ctx)
	flash(w, "flash.settings.prices_saved")
	http.Redirect(w, r, Prefix+"/settings#prices", http.StatusSeeOther)
}

func (c *Console) settingsPricesReset(w http.ResponseWriter, r *http.Request, v *view) {
	ctx, cancel := ctx(r)
	defer cancel()
	if err := pricing.Reset(ctx, c.o.Store); err != nil {
		c.fail(w, r, v, err)
		return
	}
	c.reloadPrices(ctx)
	flash(w, "flash.settings.prices_reset")
	http.Redirect(w, r, Prefix+"/settings#prices", http.StatusSeeOther)
}

// reloadPrices puts a just stored table in use in this process, when the
// console's table is a live one; a failure leaves the periodic reload to
// try again.
func (c *Console) reloadPrices(ctx context.Context) {
	rl, ok := c.o.Prices.(pricing.Reloader)
	if !ok {
		return
	}
	if _, err := rl.Reload(ctx); err != nil && !errors.Is(err, context.Canceled) {
		c.log.WarnContext(ctx, "console: reloading the price table", "err", err)
	}
}

// settingsConflict reports a name already taken.
func settingsConflict(err error) bool { return errors.Is(err, store.ErrConflict) }
