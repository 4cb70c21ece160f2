package web

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/netx"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/relay"
	"github.com/crs-relay/crs/internal/scheduler"
)

// setLang picks the page language as the language menu does: with the
// crs_lang cookie.
func (e *env) setLang(lang string) {
	u, _ := url.Parse(e.srv.URL + "/")
	e.jar.SetCookies(u, []*http.Cookie{{Name: cookieLang, Value: lang, Path: "/"}})
}

// TestRefusedInputInPageLanguage: a reason the management service gives
// for refusing a form reads in the page's language, with the field's label
// in it, not the field's JSON name.
func TestRefusedInputInPageLanguage(t *testing.T) {
	e := newEnv(t)
	e.login()
	short := func() string {
		tok := e.csrf("/web/password")
		status, _, body := e.post("/web/password", url.Values{"csrf": {tok}, "current_password": {testPassword},
			"new_password": {"short"}, "confirm_password": {"short"}})
		if status != http.StatusBadRequest {
			t.Fatalf("short password: %d", status)
		}
		return body
	}
	if body := short(); !strings.Contains(body, "New password: must be at least 8 characters") {
		t.Errorf("English: %s", usageBetween(body, `class="error"`, "</p>"))
	}
	e.setLang(langZH)
	if msg := usageBetween(short(), `class="error"`, "</p>"); !strings.Contains(msg, "新密码：至少需要 8 个字符") ||
		strings.Contains(msg, "must be at least") || strings.Contains(msg, "new_password") {
		t.Errorf("Chinese: %s", msg)
	}

	// The keys form names the field by its own label, and gives the
	// reason in Chinese too.
	status, _, body := e.post("/web/keys/new", keysFormValues(e.csrf("/web/keys/new"), map[string]string{"name": "x", "weekly_reset_hour": "24"}))
	if status != http.StatusBadRequest || !strings.Contains(body, "起始小时（0–23）：应为 0 到 23，实际为 24") {
		t.Errorf("key form in Chinese: %d %s", status, errLine(body))
	}
	e.setLang(langEN)
	status, _, body = e.post("/web/keys/new", keysFormValues(e.csrf("/web/keys/new"), map[string]string{"name": "x", "weekly_reset_hour": "24"}))
	if status != http.StatusBadRequest || !strings.Contains(body, "at hour (0–23): want 0 to 23, got 24") {
		t.Errorf("key form in English: %d %s", status, errLine(body))
	}
}

// TestInvalidTextFallsBackToEnglish: a format the catalog lacks shows in
// English, and a hand-made reason (no format) as it was written; a field
// without a label shows its name. Never a blank.
func TestInvalidTextFallsBackToEnglish(t *testing.T) {
	zh := &view{Lang: langZH}
	for _, c := range []struct {
		inv  *admin.InvalidError
		want string
	}{
		{&admin.InvalidError{Field: "name", Reason: "over 9 things", Format: "over %d things", Args: []any{9}}, "名称：over 9 things"},
		{&admin.InvalidError{Field: "no_such_field", Reason: "请输入整数"}, "no_such_field：请输入整数"},
		{&admin.InvalidError{Field: "name", Reason: "must not be empty", Format: "must not be empty"}, "名称：不能为空"},
	} {
		if got := invalidText(zh, c.inv); got != c.want {
			t.Errorf("invalidText(%+v) = %q, want %q", c.inv, got, c.want)
		}
	}
}

// TestAccountTestSpeaksChinese: the Test button of a Chinese page streams
// the real relay's test in Chinese, and of an English page in English.
func TestAccountTestSpeaksChinese(t *testing.T) {
	e := newEnv(t)
	const key = "sk-ant-api03-console-test-key"
	anth := fakeupstream.StartAnthropic(t, fakeupstream.Options{APIKeys: []string{key}, Deltas: 2})
	rl := relay.New(relay.Config{ClaudeBaseURL: anth.URL(), FirstEventTimeout: 5 * time.Second, Location: time.UTC}, relay.Deps{
		Scheduler: scheduler.New(e.st, scheduler.Options{}), Pool: netx.NewPool(netx.Options{}), Box: e.svc.Box, Prices: pricing.Default(),
	})
	e.con.SetAccountTester(rl) // before the first request
	a, err := e.svc.AddAccount(context.Background(), admin.AccountInput{Platform: "claude", Type: "api-key", Name: "main", APIKey: key, Priority: 50})
	if err != nil {
		t.Fatal(err)
	}
	e.login()
	tok := e.csrf("/web/accounts")
	test := func(lang string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/web/accounts/"+string(a.ID)+"/test", nil)
		req.Header.Set("X-CSRF-Token", tok)
		req.Header.Set("Accept-Language", lang)
		resp, err := e.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || strings.Contains(string(b), key) {
			t.Fatalf("test in %s: %d\n%s", lang, resp.StatusCode, b)
		}
		return string(b)
	}

	out := test("zh-CN,zh;q=0.9")
	for _, want := range []string{"正在测试账户 main", "→ claude-haiku-4-5，经由账户 main\n", fakeupstream.ReplyText(2),
		"\n✓ 200，用时 ", " 秒，输入 11 / 输出 7 Token", "（测试请求：不计入用量）", "账户可用。"} {
		if !strings.Contains(out, want) {
			t.Errorf("Chinese output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, " via ") || strings.Contains(out, "not recorded") {
		t.Errorf("Chinese output has English:\n%s", out)
	}

	anth.Push(fakeupstream.Fault{Status: 429, Header: http.Header{"Retry-After": {"120"}}})
	out = test("zh-CN")
	if !strings.Contains(out, "测试失败：上游在 ") || !strings.Contains(out, "后返回 429：") || !strings.Contains(out, "本次测试不会") {
		t.Errorf("Chinese failure:\n%s", out)
	}

	out = test("en")
	for _, want := range []string{"Testing account main", "→ claude-haiku-4-5 via main\n", "\n✓ 200 in ", "11 input / 7 output tokens",
		"(a test: not recorded as usage)", "The account works."} {
		if !strings.Contains(out, want) {
			t.Errorf("English output lacks %q:\n%s", want, out)
		}
	}
}
