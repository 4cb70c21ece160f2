package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
)

// Type is a channel's provider.
type Type string

// Channel types.
const (
	TypeWebhook  Type = "webhook"  // generic HTTP: POST of a JSON document, optionally HMAC-signed
	TypeTelegram Type = "telegram" // a bot's sendMessage to one chat
	TypeSlack    Type = "slack"    // an incoming webhook
	TypeDiscord  Type = "discord"  // a channel webhook
	TypeDingTalk Type = "dingtalk" // a group robot, optionally signed
	TypeFeishu   Type = "feishu"   // a custom group bot, optionally signed
	TypeWeCom    Type = "wecom"    // a WeCom (企业微信) group robot
	TypeBark     Type = "bark"     // a push to one iPhone through a Bark server
	TypeSMTP     Type = "smtp"     // e-mail
)

// Types lists every channel type.
func Types() []Type {
	return []Type{TypeWebhook, TypeTelegram, TypeSlack, TypeDiscord, TypeDingTalk, TypeFeishu, TypeWeCom, TypeBark, TypeSMTP}
}

// Languages a channel's messages can be written in.
const (
	LangEnglish = "en"
	LangChinese = "zh-CN"
)

// Default endpoints of the providers whose address is not a per-channel
// webhook URL; a channel's URL overrides them (self-hosted Bark, a
// Telegram Bot API mirror).
const (
	DefaultTelegramAPI = "https://api.telegram.org"
	DefaultBarkServer  = "https://api.day.app"
	DefaultSMTPPort    = 587
)

// Channel is one place alerts go. Which fields matter depends on Type;
// Validate says which are required. Secret fields (URL, Secret, Token,
// SMTPPassword) are stored only inside the sealed settings blob and shown
// only masked (see View).
type Channel struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Type Type   `json:"type"`
	// URL is the webhook address (webhook, slack, discord, dingtalk,
	// feishu, wecom), or the API root for telegram and bark.
	URL string `json:"url,omitempty"`
	// Secret signs the request: the generic webhook's HMAC key, DingTalk's
	// and Feishu's signing secret.
	Secret string `json:"secret,omitempty"`
	// Token is the Telegram bot token or the Bark device key.
	Token string `json:"token,omitempty"`
	// ChatID is the Telegram chat.
	ChatID string `json:"chat_id,omitempty"`
	// SMTP server and envelope. Port 465 speaks TLS from the start; other
	// ports upgrade with STARTTLS when the server offers it, and a password
	// is never sent unencrypted except to a loopback server.
	SMTPHost     string   `json:"smtp_host,omitempty"`
	SMTPPort     int      `json:"smtp_port,omitempty"`
	SMTPUser     string   `json:"smtp_user,omitempty"`
	SMTPPassword string   `json:"smtp_password,omitempty"`
	From         string   `json:"from,omitempty"`
	To           []string `json:"to,omitempty"`
	// Lang is LangEnglish (default) or LangChinese.
	Lang string `json:"lang,omitempty"`
	// Events the channel receives; empty means all.
	Events    []Kind    `json:"events,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Wants reports whether the channel receives events of kind k.
func (c Channel) Wants(k Kind) bool {
	return k == Test || len(c.Events) == 0 || slices.Contains(c.Events, k)
}

// InvalidError reports a channel field that failed validation. Field is
// the JSON name (the CLI turns it into its flag).
type InvalidError struct {
	Field  string
	Reason string
	// Format and Args made Reason, kept so the web console can render it
	// in the page's language (admin.InvalidError has the same; the
	// console's tests read every format here).
	Format string
	Args   []any
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Reason }

// invalid refuses a channel field; format must be a string literal, for
// the console's completeness test.
func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...), Format: format, Args: args}
}

// Normalize trims the channel's fields, fills defaults and checks that
// the type has what it needs. It returns the cleaned channel or an
// *InvalidError naming the first bad field.
func (c Channel) Normalize() (Channel, error) {
	c.Name = strings.TrimSpace(c.Name)
	c.Type = Type(strings.ToLower(strings.TrimSpace(string(c.Type))))
	c.URL = strings.TrimSpace(c.URL)
	c.Secret = strings.TrimSpace(c.Secret)
	c.Token = strings.TrimSpace(c.Token)
	c.ChatID = strings.TrimSpace(c.ChatID)
	c.SMTPHost = strings.TrimSpace(c.SMTPHost)
	c.SMTPUser = strings.TrimSpace(c.SMTPUser)
	c.From = strings.TrimSpace(c.From)
	if c.Name == "" {
		return c, invalid("name", "must not be empty")
	}
	if len(c.Name) > 100 || strings.ContainsAny(c.Name, "\r\n\t") {
		return c, invalid("name", "at most 100 characters on one line")
	}
	switch strings.ToLower(strings.TrimSpace(c.Lang)) {
	case "", "en", "en-us", "english":
		c.Lang = LangEnglish
	case "zh", "zh-cn", "zh_cn", "zh-hans", "cn", "chinese":
		c.Lang = LangChinese
	default:
		return c, invalid("lang", "want en or zh-CN, got %q", c.Lang)
	}
	for _, k := range c.Events {
		if !slices.Contains(Kinds(), k) {
			return c, invalid("events", "unknown event %q (known: %s)", k, kindList())
		}
	}
	var to []string
	for _, addr := range c.To {
		for _, a := range strings.Split(addr, ",") {
			if a = strings.TrimSpace(a); a != "" {
				to = append(to, a)
			}
		}
	}
	c.To = to

	needURL := func() error {
		if c.URL == "" {
			return invalid("url", "the %s webhook URL is required", c.Type)
		}
		return checkURL("url", c.URL)
	}
	optURL := func() error {
		if c.URL == "" {
			return nil
		}
		return checkURL("url", c.URL)
	}
	var err error
	switch c.Type {
	case TypeWebhook, TypeSlack, TypeDiscord, TypeDingTalk, TypeFeishu, TypeWeCom:
		err = needURL()
	case TypeTelegram:
		switch {
		case c.Token == "":
			err = invalid("token", "the bot token (from @BotFather) is required")
		case c.ChatID == "":
			err = invalid("chat_id", "the chat to post to is required")
		default:
			err = optURL()
		}
	case TypeBark:
		if c.Token == "" {
			err = invalid("token", "the Bark device key is required")
		} else {
			err = optURL()
		}
	case TypeSMTP:
		err = c.checkSMTP()
	case "":
		err = invalid("type", "must not be empty (one of %s)", typeList())
	default:
		err = invalid("type", "unknown channel type %q (one of %s)", c.Type, typeList())
	}
	if err != nil {
		return c, err
	}
	if c.Type != TypeSMTP && (c.SMTPHost != "" || c.From != "" || len(c.To) > 0 || c.SMTPUser != "" || c.SMTPPassword != "") {
		return c, invalid("smtp_host", "SMTP settings belong to smtp channels only")
	}
	if c.Type != TypeTelegram && c.ChatID != "" {
		return c, invalid("chat_id", "only telegram channels have a chat")
	}
	if c.Token != "" && c.Type != TypeTelegram && c.Type != TypeBark {
		return c, invalid("token", "only telegram and bark channels have a token")
	}
	if c.Secret != "" && c.Type != TypeWebhook && c.Type != TypeDingTalk && c.Type != TypeFeishu {
		return c, invalid("secret", "only webhook, dingtalk and feishu channels sign with a secret")
	}
	return c, nil
}

func (c *Channel) checkSMTP() error {
	if c.SMTPHost == "" {
		return invalid("smtp_host", "the SMTP server is required")
	}
	if strings.ContainsAny(c.SMTPHost, "/: ") && net.ParseIP(c.SMTPHost) == nil {
		return invalid("smtp_host", "want a host name or address without port (use smtp_port)")
	}
	if c.SMTPPort == 0 {
		c.SMTPPort = DefaultSMTPPort
	}
	if c.SMTPPort < 1 || c.SMTPPort > 65535 {
		return invalid("smtp_port", "want 1–65535, got %d", c.SMTPPort)
	}
	if (c.SMTPUser == "") != (c.SMTPPassword == "") {
		return invalid("smtp_password", "give both the SMTP user and password, or neither")
	}
	if c.From == "" {
		return invalid("from", "the sender address is required")
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		return invalid("from", "not an e-mail address: %v", err)
	}
	if len(c.To) == 0 {
		return invalid("to", "at least one recipient is required")
	}
	for _, a := range c.To {
		if _, err := mail.ParseAddress(a); err != nil {
			return invalid("to", "%q is not an e-mail address", a)
		}
	}
	if c.URL != "" {
		return invalid("url", "smtp channels have no URL (use smtp_host)")
	}
	return nil
}

func checkURL(field, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid(field, "want an http:// or https:// URL")
	}
	return nil
}

func typeList() string {
	names := make([]string, 0, len(Types()))
	for _, t := range Types() {
		names = append(names, string(t))
	}
	return strings.Join(names, ", ")
}

// ChannelView is a channel as shown to users and scripts (`crs notify list
// --json`, GET /admin/notify/channels): every secret masked. Fields may be
// added; none may be renamed or removed.
type ChannelView struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Type Type   `json:"type"`
	// Target says where messages go without revealing tokens: the
	// webhook's scheme and host, the Telegram chat, the Bark server, the
	// e-mail recipients.
	Target string `json:"target"`
	Lang   string `json:"lang"`
	// Events the channel receives; ["all"] when it takes every event.
	Events      []string  `json:"events"`
	HasSecret   bool      `json:"has_secret"`
	HasToken    bool      `json:"has_token"`
	HasPassword bool      `json:"has_password"`
	ChatID      string    `json:"chat_id,omitempty"`
	SMTPHost    string    `json:"smtp_host,omitempty"`
	SMTPPort    int       `json:"smtp_port,omitempty"`
	SMTPUser    string    `json:"smtp_user,omitempty"`
	From        string    `json:"from,omitempty"`
	To          []string  `json:"to,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// View masks the channel for display.
func (c Channel) View() ChannelView {
	v := ChannelView{
		ID: c.ID, Name: c.Name, Type: c.Type, Lang: c.Lang,
		HasSecret: c.Secret != "", HasToken: c.Token != "", HasPassword: c.SMTPPassword != "",
		ChatID: c.ChatID, SMTPHost: c.SMTPHost, SMTPPort: c.SMTPPort, SMTPUser: c.SMTPUser,
		From: c.From, To: c.To, CreatedAt: c.CreatedAt.UTC(),
	}
	if v.Lang == "" {
		v.Lang = LangEnglish
	}
	v.Events = []string{"all"}
	if len(c.Events) > 0 {
		v.Events = make([]string, len(c.Events))
		for i, k := range c.Events {
			v.Events[i] = string(k)
		}
	}
	switch c.Type {
	case TypeTelegram:
		v.Target = "chat " + c.ChatID + " via " + maskURL(orDefault(c.URL, DefaultTelegramAPI))
	case TypeBark:
		v.Target = maskURL(orDefault(c.URL, DefaultBarkServer))
	case TypeSMTP:
		v.Target = strings.Join(c.To, ", ") + " via " + net.JoinHostPort(c.SMTPHost, fmt.Sprint(c.SMTPPort))
	default:
		v.Target = maskURL(c.URL)
	}
	return v
}

// maskURL keeps a URL's scheme and host: paths and queries of webhook
// URLs carry their tokens (Slack, Discord, WeCom, DingTalk, Feishu).
func maskURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	out := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		out += "/…"
	}
	return out
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// SettingName is the store setting that holds the sealed channel list.
const SettingName = "notify.channels"

// channelDoc is the plaintext inside the sealed setting.
type channelDoc struct {
	Version  int       `json:"version"`
	Channels []Channel `json:"channels"`
}

// ErrNoBox is returned when channels are read or written without a
// credential box.
var ErrNoBox = errors.New("notify: no credential box to seal the channels with")

// ChannelStore reads and changes the channel list in the store. Each
// change rewrites the whole sealed blob: two admins editing at the very
// same moment can lose one edit, which the list then shows.
type ChannelStore struct {
	Settings store.Settings
	Box      *secret.Box
	// Now stamps new channels; nil means time.Now.
	Now func() time.Time
}

// LoadChannels reads and opens the channel list; none stored is an empty
// list.
func LoadChannels(ctx context.Context, st store.Settings, box *secret.Box) ([]Channel, error) {
	if box == nil {
		return nil, ErrNoBox
	}
	sealed, err := st.GetSetting(ctx, SettingName)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	plain, err := box.Open(sealed)
	if err != nil {
		return nil, fmt.Errorf("notify: the channel list: %w", err)
	}
	var doc channelDoc
	if len(plain) > 0 {
		if err := json.Unmarshal(plain, &doc); err != nil {
			return nil, fmt.Errorf("notify: the channel list is damaged: %w", err)
		}
	}
	return doc.Channels, nil
}

func (cs ChannelStore) save(ctx context.Context, chs []Channel) error {
	if cs.Box == nil {
		return ErrNoBox
	}
	if len(chs) == 0 {
		return cs.Settings.SetSetting(ctx, SettingName, nil)
	}
	plain, err := json.Marshal(channelDoc{Version: 1, Channels: chs})
	if err != nil {
		return err
	}
	return cs.Settings.SetSetting(ctx, SettingName, cs.Box.Seal(plain))
}

// List returns the channels in the order they were added.
func (cs ChannelStore) List(ctx context.Context) ([]Channel, error) {
	return LoadChannels(ctx, cs.Settings, cs.Box)
}

// Get finds a channel by ID or name; store.ErrNotFound when none matches.
func (cs ChannelStore) Get(ctx context.Context, ref string) (Channel, error) {
	chs, err := cs.List(ctx)
	if err != nil {
		return Channel{}, err
	}
	if i := find(chs, ref); i >= 0 {
		return chs[i], nil
	}
	return Channel{}, fmt.Errorf("notify: channel %q: %w", ref, store.ErrNotFound)
}

func find(chs []Channel, ref string) int {
	ref = strings.TrimSpace(ref)
	if i := slices.IndexFunc(chs, func(c Channel) bool { return c.ID == ref }); i >= 0 {
		return i
	}
	return slices.IndexFunc(chs, func(c Channel) bool { return strings.EqualFold(c.Name, ref) })
}

// Add validates ch, gives it an ID and stores it. Names are unique
// (case-insensitive; store.ErrConflict otherwise), so a channel can be
// named in commands.
func (cs ChannelStore) Add(ctx context.Context, ch Channel) (Channel, error) {
	ch, err := ch.Normalize()
	if err != nil {
		return Channel{}, err
	}
	chs, err := cs.List(ctx)
	if err != nil {
		return Channel{}, err
	}
	if slices.ContainsFunc(chs, func(c Channel) bool { return strings.EqualFold(c.Name, ch.Name) }) {
		return Channel{}, fmt.Errorf("notify: a channel named %q: %w", ch.Name, store.ErrConflict)
	}
	now := time.Now
	if cs.Now != nil {
		now = cs.Now
	}
	ch.ID = "ntf_" + secret.RandomHex(8)
	ch.CreatedAt = now().UTC()
	if err := cs.save(ctx, append(chs, ch)); err != nil {
		return Channel{}, err
	}
	return ch, nil
}

// Remove deletes the channel with that ID or name and returns it.
func (cs ChannelStore) Remove(ctx context.Context, ref string) (Channel, error) {
	chs, err := cs.List(ctx)
	if err != nil {
		return Channel{}, err
	}
	i := find(chs, ref)
	if i < 0 {
		return Channel{}, fmt.Errorf("notify: channel %q: %w", ref, store.ErrNotFound)
	}
	gone := chs[i]
	if err := cs.save(ctx, slices.Delete(chs, i, i+1)); err != nil {
		return Channel{}, err
	}
	return gone, nil
}
