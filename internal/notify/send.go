package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultTimeout bounds one delivery attempt (HTTP request or SMTP
// session).
const DefaultTimeout = 10 * time.Second

// Sender delivers one message to one channel, once: no retries, no dedup
// (the Dispatcher adds those). `crs notify test` uses it directly.
type Sender struct {
	// HTTP sends webhook requests; nil means a client that honours
	// HTTPS_PROXY and friends.
	HTTP *http.Client
	// Timeout bounds one attempt; 0 means DefaultTimeout.
	Timeout time.Duration
	// Instance names this crs in message footers; "" means the host name.
	Instance string
	// Location is the zone times are shown in; nil means local.
	Location *time.Location
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (s *Sender) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Sender) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return DefaultTimeout
}

func (s *Sender) client() *http.Client {
	if s.HTTP != nil {
		return s.HTTP
	}
	return http.DefaultClient
}

func (s *Sender) renderer() renderer {
	r := renderer{loc: s.Location, instance: s.Instance}
	if r.loc == nil {
		r.loc = time.Local
	}
	if r.instance == "" {
		r.instance, _ = os.Hostname()
	}
	return r
}

// Render writes ev in the channel's language.
func (s *Sender) Render(ch Channel, ev Event) Message {
	return s.renderer().render(ev, ch.Lang, s.now())
}

// SendError is a failed delivery. Permanent failures (the provider
// refused the request itself: a wrong token, a removed webhook) are not
// worth retrying.
type SendError struct {
	Permanent bool
	Err       error
}

func (e *SendError) Error() string { return e.Err.Error() }
func (e *SendError) Unwrap() error { return e.Err }

func permanent(format string, args ...any) error {
	return &SendError{Permanent: true, Err: fmt.Errorf(format, args...)}
}

// IsPermanent reports whether err says retrying cannot help.
func IsPermanent(err error) bool {
	var se *SendError
	return errors.As(err, &se) && se.Permanent
}

// Send renders ev for ch and delivers it once, bounded by Timeout.
// Errors never contain the channel's URL, token or password.
func (s *Sender) Send(ctx context.Context, ch Channel, ev Event) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	m := s.Render(ch, ev)
	if ch.Type == TypeSMTP {
		return s.sendMail(ctx, ch, m)
	}
	req, check, err := s.request(ctx, ch, ev, m)
	if err != nil {
		return err
	}
	return s.do(req, check)
}

// checkFunc reads a 2xx answer's body for a provider-level error (DingTalk,
// Feishu, WeCom and Telegram answer some failures with 200).
type checkFunc func(body []byte) error

// request builds the provider's HTTP request.
func (s *Sender) request(ctx context.Context, ch Channel, ev Event, m Message) (*http.Request, checkFunc, error) {
	var (
		target = ch.URL
		body   any
		check  checkFunc
		header = http.Header{}
	)
	switch ch.Type {
	case TypeWebhook:
		b, err := json.Marshal(webhookPayload(ch, ev, m))
		if err != nil {
			return nil, nil, err
		}
		if ch.Secret != "" {
			ts := strconv.FormatInt(s.now().Unix(), 10)
			header.Set("X-Crs-Timestamp", ts)
			header.Set("X-Crs-Signature", WebhookSignature(ch.Secret, ts, b))
		}
		body = json.RawMessage(b)
	case TypeSlack:
		body = map[string]any{"text": "*" + m.Subject() + "*\n" + m.Body()}
	case TypeDiscord:
		body = map[string]any{"content": truncate("**"+m.Subject()+"**\n"+m.Body(), 2000)}
	case TypeTelegram:
		target = strings.TrimRight(orDefault(ch.URL, DefaultTelegramAPI), "/") + "/bot" + ch.Token + "/sendMessage"
		body = map[string]any{"chat_id": ch.ChatID, "text": truncate(m.Text(), 4096), "disable_web_page_preview": true}
		check = func(b []byte) error { return okField(b, "ok") }
	case TypeDingTalk:
		if ch.Secret != "" {
			ts := strconv.FormatInt(s.now().UnixMilli(), 10)
			u, err := url.Parse(ch.URL)
			if err != nil {
				return nil, nil, permanent("dingtalk: bad webhook URL")
			}
			q := u.Query()
			q.Set("timestamp", ts)
			q.Set("sign", DingTalkSign(ch.Secret, ts))
			u.RawQuery = q.Encode()
			target = u.String()
		}
		body = map[string]any{"msgtype": "text", "text": map[string]string{"content": truncateBytes(m.Text(), 18000)}}
		check = func(b []byte) error { return codeField(b, "errcode", "errmsg", 0) }
	case TypeFeishu:
		p := map[string]any{"msg_type": "text", "content": map[string]string{"text": m.Text()}}
		if ch.Secret != "" {
			ts := strconv.FormatInt(s.now().Unix(), 10)
			p["timestamp"] = ts
			p["sign"] = FeishuSign(ch.Secret, ts)
		}
		body = p
		check = func(b []byte) error { return codeField(b, "code", "msg", 0) }
	case TypeWeCom:
		body = map[string]any{"msgtype": "text", "text": map[string]string{"content": truncateBytes(m.Text(), 2048)}}
		check = func(b []byte) error { return codeField(b, "errcode", "errmsg", 0) }
	case TypeBark:
		target = strings.TrimRight(orDefault(ch.URL, DefaultBarkServer), "/") + "/push"
		body = map[string]any{"device_key": ch.Token, "title": m.Subject(), "body": m.Body(), "group": "crs"}
		check = func(b []byte) error { return codeField(b, "code", "message", 200) }
	default:
		return nil, nil, permanent("unknown channel type %q", ch.Type)
	}
	b, ok := body.(json.RawMessage)
	if !ok {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return nil, nil, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(b))
	if err != nil {
		return nil, nil, permanent("%s: bad URL", ch.Type)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "crs-notify/1")
	return req, check, nil
}

// do sends req and judges the answer. The URL (which carries tokens) is
// kept out of every error: only its host is named.
func (s *Sender) do(req *http.Request, check checkFunc) error {
	host := req.URL.Host
	resp, err := s.client().Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &SendError{Err: fmt.Errorf("post to %s: %w", host, err)}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		err := fmt.Errorf("%s answered %s: %s", host, resp.Status, snippet(b))
		// 4xx but 408 and 429 is the request itself refused: retrying the
		// same request cannot help.
		p := resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests
		return &SendError{Permanent: p, Err: err}
	}
	if check != nil {
		if err := check(b); err != nil {
			return &SendError{Err: fmt.Errorf("%s refused the message: %w", host, err)}
		}
	}
	return nil
}

// webhookDoc is the generic webhook's JSON document.
type webhookDoc struct {
	Event    Kind        `json:"event"`
	Severity Severity    `json:"severity"`
	Title    string      `json:"title"`
	Text     string      `json:"text"`
	Lang     string      `json:"lang"`
	Time     time.Time   `json:"time"`
	Instance string      `json:"instance,omitempty"`
	Account  *AccountRef `json:"account,omitempty"`
	Key      *KeyRef     `json:"key,omitempty"`
	Family   string      `json:"family,omitempty"`
	Reason   string      `json:"reason,omitempty"`
	Until    *time.Time  `json:"until,omitempty"`
	Limit    string      `json:"limit,omitempty"`
	Count    int         `json:"count,omitempty"`
	Was      Kind        `json:"was,omitempty"`
}

func webhookPayload(ch Channel, ev Event, m Message) webhookDoc {
	d := webhookDoc{
		Event: ev.Kind, Severity: m.Severity, Title: m.Subject(), Text: m.Body(), Lang: orDefault(ch.Lang, LangEnglish),
		Time: m.At.UTC(), Instance: m.Instance, Account: ev.Account, Key: ev.Key, Family: ev.Family, Reason: ev.Reason,
		Limit: ev.Limit, Count: ev.Count, Was: ev.Was,
	}
	if !ev.Until.IsZero() {
		u := ev.Until.UTC()
		d.Until = &u
	}
	return d
}

// WebhookSignature is the generic webhook's X-Crs-Signature: "sha256="
// and the hex HMAC-SHA256, keyed by the channel secret, of the
// X-Crs-Timestamp value, a dot and the exact request body. A receiver
// recomputes it and rejects old timestamps to stop replays.
func WebhookSignature(secret, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp))
	mac.Write([]byte("."))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// DingTalkSign is a DingTalk robot's sign parameter: the base64
// HMAC-SHA256, keyed by the secret, of the millisecond timestamp, a
// newline and the secret. (The URL query encoding is applied when it is
// put in the query.)
func DingTalkSign(secret, timestampMillis string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestampMillis + "\n" + secret))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// FeishuSign is a Feishu bot's sign field: the base64 HMAC-SHA256 of an
// empty message keyed by the second timestamp, a newline and the secret.
func FeishuSign(secret, timestampSeconds string) string {
	mac := hmac.New(sha256.New, []byte(timestampSeconds+"\n"+secret))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// okField checks {"ok": true} (Telegram).
func okField(b []byte, field string) error {
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return nil // not JSON: the status already said yes
	}
	if ok, present := m[field].(bool); present && !ok {
		return errors.New(snippet(b))
	}
	return nil
}

// codeField checks {"<code>": want, "<msg>": …} (DingTalk, WeCom: errcode
// 0; Feishu: code 0; Bark: code 200). A body without the field passes: the
// status already said yes.
func codeField(b []byte, code, msg string, want int) error {
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	v, present := m[code].(float64)
	if !present {
		// Older Feishu answers carry StatusCode instead of code.
		if sc, ok := m["StatusCode"].(float64); ok && int(sc) != want {
			return fmt.Errorf("StatusCode %d: %v", int(sc), m["StatusMessage"])
		}
		return nil
	}
	if int(v) != want {
		return fmt.Errorf("%s %d: %v", code, int(v), m[msg])
	}
	return nil
}

// snippet is a short, single-line excerpt of a response body for logs.
func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	return truncate(s, 200)
}

// truncate cuts s to at most n runes, marking the cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// truncateBytes cuts s to at most n bytes on a rune boundary, marking the
// cut (WeCom counts bytes).
func truncateBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
