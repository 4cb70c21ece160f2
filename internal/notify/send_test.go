package notify

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/notify/notifytest"
	"github.com/crs-relay/crs/internal/store"
)

// fixedNow is 1700000000 s after the epoch: the signing vectors below were
// computed for it, independently (Python's hmac, following the providers'
// published recipes).
var fixedNow = time.Unix(1700000000, 0)

func testSender() *Sender {
	return &Sender{Instance: "relay-1", Location: time.UTC, Now: func() time.Time { return fixedNow }, Timeout: 2 * time.Second}
}

var rateLimited = Event{
	Kind:    AccountRateLimited,
	At:      fixedNow,
	Account: &AccountRef{ID: "acc_1", Name: "team-max", Platform: store.PlatformClaude},
	Until:   fixedNow.Add(90 * time.Minute),
	Reason:  "rate limited: Number of requests has exceeded your rate limit",
}

func TestSigningVectors(t *testing.T) {
	const secret = "SEC0123456789abcdef"
	if got, want := DingTalkSign(secret, "1700000000000"), "TSZbRFUuvaSQaRKUpF970OPCb2/LcQAP3wOvwZIzBZk="; got != want {
		t.Errorf("DingTalkSign = %s, want %s", got, want)
	}
	if got, want := FeishuSign(secret, "1700000000"), "PiO7POLlSx/DM2qf8Dy/XCWeJK3exVnevp5G99LEN2M="; got != want {
		t.Errorf("FeishuSign = %s, want %s", got, want)
	}
	if got, want := WebhookSignature("whsec", "1700000000", []byte(`{"a":1}`)),
		"sha256=8ad37ba156048ae0e0a5533c75cdf26fee88b07f93cb57ee4c80adb053012032"; got != want {
		t.Errorf("WebhookSignature = %s, want %s", got, want)
	}
}

// TestProviderPayloads sends the same event to every HTTP provider and
// checks the request each provider's API expects: path, query, signature
// and JSON shape.
func TestProviderPayloads(t *testing.T) {
	rcv := notifytest.NewReceiver(t)
	cases := []struct {
		ch    Channel
		reply string
		check func(t *testing.T, r notifytest.Request, body map[string]any)
	}{
		{Channel{Type: TypeWebhook, URL: rcv.URL() + "/hook?x=1", Secret: "whsec"}, "", func(t *testing.T, r notifytest.Request, b map[string]any) {
			if r.Path != "/hook" || r.RawQuery != "x=1" {
				t.Errorf("webhook went to %s?%s", r.Path, r.RawQuery)
			}
			ts := r.Header.Get("X-Crs-Timestamp")
			if ts != "1700000000" || r.Header.Get("X-Crs-Signature") != WebhookSignature("whsec", ts, r.Body) {
				t.Errorf("webhook signature headers %q %q", ts, r.Header.Get("X-Crs-Signature"))
			}
			want := map[string]any{"event": "account.rate_limited", "severity": "warning", "lang": "en", "instance": "relay-1",
				"reason": rateLimited.Reason, "until": "2023-11-14T23:43:20Z", "time": "2023-11-14T22:13:20Z",
				"title": "[crs] Account rate-limited: team-max"}
			for k, v := range want {
				if b[k] != v {
					t.Errorf("webhook %s = %v, want %v", k, b[k], v)
				}
			}
			if acct, _ := b["account"].(map[string]any); acct["id"] != "acc_1" || acct["name"] != "team-max" || acct["platform"] != "claude" {
				t.Errorf("webhook account = %v", b["account"])
			}
			if text, _ := b["text"].(string); !strings.Contains(text, "Resting until: 2023-11-14 23:43:20 UTC (in 1h30m)") {
				t.Errorf("webhook text = %q", text)
			}
		}},
		{Channel{Type: TypeSlack, URL: rcv.URL() + "/services/T0/B0/XXX"}, "", func(t *testing.T, r notifytest.Request, b map[string]any) {
			if text, _ := b["text"].(string); r.Path != "/services/T0/B0/XXX" || !strings.HasPrefix(text, "*[crs] Account rate-limited: team-max*\n") {
				t.Errorf("slack %s %v", r.Path, b)
			}
		}},
		{Channel{Type: TypeDiscord, URL: rcv.URL() + "/api/webhooks/1/tok"}, "", func(t *testing.T, r notifytest.Request, b map[string]any) {
			if c, _ := b["content"].(string); !strings.HasPrefix(c, "**[crs] Account rate-limited: team-max**\n") {
				t.Errorf("discord %v", b)
			}
		}},
		{Channel{Type: TypeTelegram, URL: rcv.URL(), Token: "123:ABC", ChatID: "-10042"}, `{"ok":true,"result":{}}`, func(t *testing.T, r notifytest.Request, b map[string]any) {
			if r.Path != "/bot123:ABC/sendMessage" || b["chat_id"] != "-10042" || b["disable_web_page_preview"] != true {
				t.Errorf("telegram %s %v", r.Path, b)
			}
			if text, _ := b["text"].(string); !strings.HasPrefix(text, "[crs] Account rate-limited: team-max\n\nAccount: team-max (acc_1, claude)") {
				t.Errorf("telegram text %q", text)
			}
		}},
		{Channel{Type: TypeDingTalk, URL: rcv.URL() + "/robot/send?access_token=tok", Secret: "SEC0123456789abcdef"}, `{"errcode":0,"errmsg":"ok"}`, func(t *testing.T, r notifytest.Request, b map[string]any) {
			q, _ := url.ParseQuery(r.RawQuery)
			if r.Path != "/robot/send" || q.Get("access_token") != "tok" || q.Get("timestamp") != "1700000000000" ||
				q.Get("sign") != "TSZbRFUuvaSQaRKUpF970OPCb2/LcQAP3wOvwZIzBZk=" {
				t.Errorf("dingtalk %s?%s", r.Path, r.RawQuery)
			}
			// The sign's '+', '/' and '=' travel percent-encoded.
			if !strings.Contains(r.RawQuery, "sign=TSZbRFUuvaSQaRKUpF970OPCb2%2FLcQAP3wOvwZIzBZk%3D") {
				t.Errorf("dingtalk sign not URL-encoded: %s", r.RawQuery)
			}
			text, _ := b["text"].(map[string]any)
			if b["msgtype"] != "text" || !strings.HasPrefix(text["content"].(string), "[crs] Account rate-limited") {
				t.Errorf("dingtalk body %v", b)
			}
		}},
		{Channel{Type: TypeFeishu, URL: rcv.URL() + "/open-apis/bot/v2/hook/uuid", Secret: "SEC0123456789abcdef"}, `{"code":0,"msg":"success"}`, func(t *testing.T, r notifytest.Request, b map[string]any) {
			content, _ := b["content"].(map[string]any)
			if b["msg_type"] != "text" || b["timestamp"] != "1700000000" || b["sign"] != "PiO7POLlSx/DM2qf8Dy/XCWeJK3exVnevp5G99LEN2M=" ||
				!strings.HasPrefix(content["text"].(string), "[crs] ") {
				t.Errorf("feishu body %v", b)
			}
		}},
		{Channel{Type: TypeWeCom, URL: rcv.URL() + "/cgi-bin/webhook/send?key=k1"}, `{"errcode":0,"errmsg":"ok"}`, func(t *testing.T, r notifytest.Request, b map[string]any) {
			text, _ := b["text"].(map[string]any)
			if r.RawQuery != "key=k1" || b["msgtype"] != "text" || !strings.HasPrefix(text["content"].(string), "[crs] ") {
				t.Errorf("wecom %s %v", r.RawQuery, b)
			}
		}},
		{Channel{Type: TypeBark, URL: rcv.URL() + "/", Token: "devkey"}, notifytest.BarkOK, func(t *testing.T, r notifytest.Request, b map[string]any) {
			if r.Path != "/push" || b["device_key"] != "devkey" || b["title"] != "[crs] Account rate-limited: team-max" || b["group"] != "crs" {
				t.Errorf("bark %s %v", r.Path, b)
			}
			if body, _ := b["body"].(string); !strings.HasPrefix(body, "Account: team-max") {
				t.Errorf("bark body %q", body)
			}
		}},
	}
	s := testSender()
	for _, c := range cases {
		t.Run(string(c.ch.Type), func(t *testing.T) {
			c.ch.Name = "n"
			ch, err := c.ch.Normalize()
			if err != nil {
				t.Fatal(err)
			}
			before := len(rcv.Requests())
			rcv.Push(notifytest.Reply{Body: c.reply})
			if err := s.Send(context.Background(), ch, rateLimited); err != nil {
				t.Fatal(err)
			}
			reqs := rcv.Requests()
			if len(reqs) != before+1 {
				t.Fatalf("%d requests, want 1", len(reqs)-before)
			}
			r := reqs[len(reqs)-1]
			if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
				t.Errorf("%s %s", r.Method, r.Header.Get("Content-Type"))
			}
			var body map[string]any
			if err := json.Unmarshal(r.Body, &body); err != nil {
				t.Fatalf("body is not JSON: %s", r.Body)
			}
			c.check(t, r, body)
		})
	}
}

// TestProviderRefusals: providers that answer 200 with an error code, and
// 4xx statuses, are failures; 4xx (but 408/429) is not worth retrying.
func TestProviderRefusals(t *testing.T) {
	rcv := notifytest.NewReceiver(t)
	s := testSender()
	cases := []struct {
		ch        Channel
		reply     notifytest.Reply
		permanent bool
		msg       string
	}{
		{Channel{Type: TypeDingTalk, URL: rcv.URL() + "/r?access_token=t"}, notifytest.Reply{Body: `{"errcode":310000,"errmsg":"sign not match"}`}, false, "errcode 310000: sign not match"},
		{Channel{Type: TypeFeishu, URL: rcv.URL() + "/f"}, notifytest.Reply{Body: `{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}`}, false, "code 19021"},
		{Channel{Type: TypeWeCom, URL: rcv.URL() + "/w?key=k"}, notifytest.Reply{Body: `{"errcode":93000,"errmsg":"invalid webhook url"}`}, false, "errcode 93000"},
		{Channel{Type: TypeBark, Token: "k", URL: rcv.URL()}, notifytest.Reply{Body: `{"code":400,"message":"failed to get device token"}`}, false, "code 400"},
		{Channel{Type: TypeTelegram, Token: "1:SECRETTOKEN", ChatID: "1", URL: rcv.URL()}, notifytest.Reply{Status: 400, Body: `{"ok":false,"description":"Bad Request: chat not found"}`}, true, "chat not found"},
		{Channel{Type: TypeSlack, URL: rcv.URL() + "/s"}, notifytest.Reply{Status: 404, Body: "no_service"}, true, "404"},
		{Channel{Type: TypeWebhook, URL: rcv.URL() + "/h"}, notifytest.Reply{Status: 503}, false, "503"},
		{Channel{Type: TypeWebhook, URL: rcv.URL() + "/h"}, notifytest.Reply{Status: 429}, false, "429"},
	}
	for _, c := range cases {
		c.ch.Name = "n"
		ch, err := c.ch.Normalize()
		if err != nil {
			t.Fatal(err)
		}
		rcv.Push(c.reply)
		err = s.Send(context.Background(), ch, rateLimited)
		if err == nil || !strings.Contains(err.Error(), c.msg) || IsPermanent(err) != c.permanent {
			t.Errorf("%s %+v: err %v (permanent %v), want %q permanent %v", c.ch.Type, c.reply, err, IsPermanent(err), c.msg, c.permanent)
		}
		if err != nil && strings.Contains(err.Error(), "SECRETTOKEN") {
			t.Errorf("error reveals the token: %v", err)
		}
	}
}

// TestSendErrorsHideTokens: a transport failure names the host, never the
// URL with its token.
func TestSendErrorsHideTokens(t *testing.T) {
	rcv := notifytest.NewReceiver(t)
	base := rcv.URL()
	rcv.Close()
	s := testSender()
	for _, ch := range []Channel{
		{Name: "t", Type: TypeTelegram, URL: base, Token: "999:TOPSECRET", ChatID: "1"},
		{Name: "s", Type: TypeSlack, URL: base + "/services/TOPSECRET"},
		{Name: "w", Type: TypeWeCom, URL: base + "/send?key=TOPSECRET"},
	} {
		err := s.Send(context.Background(), ch, rateLimited)
		if err == nil || strings.Contains(err.Error(), "TOPSECRET") || !strings.Contains(err.Error(), strings.TrimPrefix(base, "http://")) {
			t.Errorf("%s: %v", ch.Type, err)
		}
		if IsPermanent(err) {
			t.Errorf("%s: a refused connection is worth retrying: %v", ch.Type, err)
		}
	}
}

func TestSendTimeout(t *testing.T) {
	rcv := notifytest.NewReceiver(t)
	rcv.Push(notifytest.Reply{Hang: true})
	s := testSender()
	s.Timeout = 100 * time.Millisecond
	start := time.Now()
	err := s.Send(context.Background(), Channel{Name: "h", Type: TypeWebhook, URL: rcv.URL()}, rateLimited)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("hung receiver: %v after %v", err, time.Since(start))
	}
}

func TestTruncation(t *testing.T) {
	rcv := notifytest.NewReceiver(t)
	ev := rateLimited
	ev.Reason = strings.Repeat("限", 5000)
	s := testSender()
	for _, c := range []struct {
		ch    Channel
		field func(map[string]any) string
		limit int
		bytes bool
	}{
		{Channel{Name: "d", Type: TypeDiscord, URL: rcv.URL()}, func(b map[string]any) string { return b["content"].(string) }, 2000, false},
		{Channel{Name: "t", Type: TypeTelegram, URL: rcv.URL(), Token: "1:a", ChatID: "1"}, func(b map[string]any) string { return b["text"].(string) }, 4096, false},
		{Channel{Name: "w", Type: TypeWeCom, URL: rcv.URL()}, func(b map[string]any) string { return b["text"].(map[string]any)["content"].(string) }, 2048, true},
	} {
		if err := s.Send(context.Background(), c.ch, ev); err != nil {
			t.Fatal(err)
		}
		reqs := rcv.Requests()
		var b map[string]any
		json.Unmarshal(reqs[len(reqs)-1].Body, &b)
		got := c.field(b)
		n := len([]rune(got))
		if c.bytes {
			n = len(got)
		}
		if n > c.limit || !strings.HasSuffix(got, "…") || !json.Valid(reqs[len(reqs)-1].Body) {
			t.Errorf("%s: %d (bytes %v), limit %d", c.ch.Type, n, c.bytes, c.limit)
		}
	}
}

// TestRenderChinese: a zh-CN channel gets Chinese text for every event.
func TestRenderChinese(t *testing.T) {
	s := testSender()
	acct := &AccountRef{ID: "acc_1", Name: "主账号", Platform: store.PlatformClaude}
	want := map[Kind]string{
		AccountRateLimited:       "账号被限流：主账号",
		AccountRecovered:         "账号已恢复：主账号",
		AccountCoolingRepeatedly: "账号反复进入冷却：主账号",
		AccountCredentialDead:    "账号凭据失效：主账号",
		AccountBlocked:           "账号被封禁：主账号",
		AccountWindowWarning:     "5 小时窗口即将用尽：主账号",
		AccountWindowResumed:     "5 小时窗口已重置：主账号",
		KeyOverLimit:             "Key 超出限额：alice",
		StoreUnreachable:         "存储不可达",
		StoreRecovered:           "存储已恢复",
		UsageSpooled:             "用量记录已写入 spool",
		Test:                     "测试消息",
	}
	for _, k := range append(Kinds(), Test) {
		ev := Event{Kind: k, Account: acct, Key: &KeyRef{ID: "key_1", Name: "alice"}, Was: AccountRateLimited, Count: 3, Until: fixedNow.Add(time.Hour)}
		m := s.Render(Channel{Lang: LangChinese}, ev)
		if m.Title != want[k] {
			t.Errorf("%s: title %q, want %q", k, m.Title, want[k])
		}
		if len(m.Lines) == 0 || strings.Contains(m.Body(), "Account:") {
			t.Errorf("%s: body %q", k, m.Body())
		}
		en := s.Render(Channel{Lang: LangEnglish}, ev)
		if en.Title == m.Title || en.Title == "" {
			t.Errorf("%s: English title %q", k, en.Title)
		}
	}
	m := s.Render(Channel{Lang: LangChinese}, rateLimited)
	if !strings.Contains(m.Body(), "暂停调度至：2023-11-14 23:43:20 UTC（1 小时 30 分钟后）") {
		t.Errorf("zh body %q", m.Body())
	}
}
