package web

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/notify"
)

// Alert channels on the settings page: the list (secrets masked, as
// notify.ChannelView shows them), a form for the channel types that need
// only a URL (and a signing secret), a test message and removal. Telegram,
// Bark and e-mail channels are added with `crs notify add`; the page lists,
// tests and removes them like the others.

func init() {
	page("POST "+Prefix+"/settings/channels", false, func(c *Console) handler { return c.settingsChannelAdd })
	page("POST "+Prefix+"/settings/channels/{id}/test", false, func(c *Console) handler { return c.settingsChannelTest })
	page("POST "+Prefix+"/settings/channels/{id}/remove", false, func(c *Console) handler { return c.settingsChannelRemove })
	messages(map[string]msg{
		"settings.channels":              {"Alert channels", "告警渠道"},
		"settings.channels_none":         {"No channels: alerts go nowhere.", "没有告警渠道：告警不会发送到任何地方。"},
		"settings.channels_bad":          {"The channel list cannot be read: %s", "无法读取告警渠道列表：%s"},
		"settings.channel.type":          {"Type", "类型"},
		"settings.channel.name":          {"Name", "名称"},
		"settings.channel.target":        {"Sends to", "发送至"},
		"settings.channel.events":        {"Events", "事件"},
		"settings.channel.lang":          {"Language", "语言"},
		"settings.channel.signed":        {"signed", "已签名"},
		"settings.channel.test":          {"Send a test", "发送测试"},
		"settings.channel.remove":        {"Remove", "删除"},
		"settings.channel.remove_ask":    {"Remove this alert channel?", "确定删除此告警渠道吗？"},
		"settings.channel.add":           {"Add a channel", "添加渠道"},
		"settings.channel.add_note":      {"Webhook-style channels. Telegram, Bark and e-mail channels are added on the command line:", "此处添加 Webhook 类渠道。Telegram、Bark 与邮件渠道请在命令行添加："},
		"settings.channel.url":           {"Webhook URL", "Webhook 地址"},
		"settings.channel.secret":        {"Signing secret (webhook, DingTalk, Feishu; optional)", "签名密钥（Webhook、钉钉、飞书；可选）"},
		"settings.channel.events_in":     {"Events (comma-separated, e.g. account.*; empty: all)", "事件（逗号分隔，如 account.*；留空表示全部）"},
		"settings.channel.submit":        {"Add channel", "添加渠道"},
		"settings.channel.taken":         {"A channel with this name exists.", "已存在同名渠道。"},
		"settings.channel.test_ok":       {"Test message to %s delivered in %d ms.", "测试消息已发送至 %s，用时 %d 毫秒。"},
		"settings.channel.test_bad":      {"Test message to %s failed: %s", "发送测试消息至 %s 失败：%s"},
		"flash.settings.channel_added":   {"Channel added; alerts reach it within seconds.", "渠道已添加，数秒内开始接收告警。"},
		"flash.settings.channel_removed": {"Channel removed.", "渠道已删除。"},
	})
}

// settingsChannelTypes are the types the form adds: each needs only a URL.
var settingsChannelTypes = []notify.Type{notify.TypeWebhook, notify.TypeSlack, notify.TypeDiscord,
	notify.TypeDingTalk, notify.TypeFeishu, notify.TypeWeCom}

// settingsChannelForm is the add form's fields, echoed back after an error. The
// URL and secret are not echoed: they are credentials.
type settingsChannelForm struct {
	Type, Name, Lang, Events string
}

// settingsLoadChannels fills the channel list of the settings page.
func (c *Console) settingsLoadChannels(ctx context.Context, v *view, d *settingsPage) {
	for _, t := range settingsChannelTypes {
		d.ChannelTypes = append(d.ChannelTypes, string(t))
	}
	if d.Form.Type == "" {
		d.Form.Type = string(notify.TypeWebhook)
	}
	if d.Form.Lang == "" {
		d.Form.Lang = v.Lang
	}
	chs, err := c.o.API.Service().ListChannels(ctx)
	if err != nil {
		c.log.WarnContext(ctx, "console: listing alert channels", "err", err)
		d.ChannelsError = v.T("settings.channels_bad", err.Error())
		return
	}
	d.Channels = chs
}

func (c *Console) settingsChannelAdd(w http.ResponseWriter, r *http.Request, v *view) {
	form := settingsChannelForm{Type: strings.TrimSpace(r.PostFormValue("type")), Name: strings.TrimSpace(r.PostFormValue("name")),
		Lang: r.PostFormValue("lang"), Events: r.PostFormValue("events")}
	in := admin.ChannelInput{Type: form.Type, Name: form.Name, URL: strings.TrimSpace(r.PostFormValue("url")),
		Secret: strings.TrimSpace(r.PostFormValue("secret")), Lang: form.Lang}
	for _, e := range strings.Split(form.Events, ",") {
		if e = strings.TrimSpace(e); e != "" {
			in.Events = append(in.Events, e)
		}
	}
	ctx, cancel := ctx(r)
	defer cancel()
	_, err := c.o.API.Service().AddChannel(ctx, in)
	var inv *admin.InvalidError
	switch {
	case errors.As(err, &inv):
		c.renderSettings(w, r, v, http.StatusBadRequest, settingsPage{Form: form, ChannelError: invalidText(v, inv)})
		return
	case settingsConflict(err):
		c.renderSettings(w, r, v, http.StatusConflict, settingsPage{Form: form, ChannelError: v.T("settings.channel.taken")})
		return
	case err != nil:
		c.fail(w, r, v, err)
		return
	}
	flash(w, "flash.settings.channel_added")
	http.Redirect(w, r, Prefix+"/settings#channels", http.StatusSeeOther)
}

// settingsChannelTest sends a test message and shows the outcome on the settings
// page (rendered, not redirected: the outcome is this answer's).
func (c *Console) settingsChannelTest(w http.ResponseWriter, r *http.Request, v *view) {
	// A channel that does not answer must not hold the page past the
	// request bound.
	ctx, cancel := ctx(r)
	defer cancel()
	res, err := c.o.API.Service().TestChannel(ctx, r.PathValue("id"))
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	c.renderSettings(w, r, v, http.StatusOK, settingsPage{Test: &res})
}

func (c *Console) settingsChannelRemove(w http.ResponseWriter, r *http.Request, v *view) {
	ctx, cancel := ctx(r)
	defer cancel()
	if _, err := c.o.API.Service().RemoveChannel(ctx, r.PathValue("id")); err != nil {
		c.fail(w, r, v, err)
		return
	}
	flash(w, "flash.settings.channel_removed")
	http.Redirect(w, r, Prefix+"/settings#channels", http.StatusSeeOther)
}
