package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/notify"
	"github.com/crs-relay/crs/internal/notify/notifytest"
)

func TestNotifyChannelsOverHTTP(t *testing.T) {
	e := newTestEnv(t)
	tok := e.login()
	rcv := notifytest.NewReceiver(t)

	// The routes are in the table TestEveryPrivateRouteRefusesWithoutSession walks.
	patterns := map[string]bool{}
	for _, r := range e.api.Routes() {
		if !r.Public {
			patterns[r.Pattern] = true
		}
	}
	for _, p := range []string{"GET /admin/notify/channels", "POST /admin/notify/channels",
		"DELETE /admin/notify/channels/{id}", "POST /admin/notify/channels/{id}/test"} {
		if !patterns[p] {
			t.Errorf("route %q is not a private route", p)
		}
	}

	r := e.authed(tok, "GET", "/admin/notify/channels", nil)
	want(t, r, http.StatusOK, "")
	if strings.TrimSpace(string(r.body)) != "[]" {
		t.Fatalf("no channels = %s", r.body)
	}

	r = e.authed(tok, "POST", "/admin/notify/channels", map[string]any{
		"type": "telegram", "name": "phone", "url": rcv.URL(), "token": "42:TOPSECRET", "chat_id": "7",
		"lang": "zh-CN", "events": []string{"account.*", "key.over_limit"},
	})
	want(t, r, http.StatusCreated, "")
	var v notify.ChannelView
	r.json(t, &v)
	if !strings.HasPrefix(v.ID, "ntf_") || v.Name != "phone" || v.Lang != "zh-CN" || !v.HasToken || len(v.Events) != 8 {
		t.Fatalf("created %+v", v)
	}
	if strings.Contains(string(r.body), "TOPSECRET") {
		t.Fatalf("the answer reveals the token: %s", r.body)
	}

	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"type": "telegram", "name": "x", "token": "1:a"}, "chat_id"},
		{map[string]any{"type": "pager", "name": "x"}, "type"},
		{map[string]any{"type": "slack", "name": "x", "url": "https://hooks.slack.com/x", "events": []string{"nope"}}, "events"},
		{map[string]any{"type": "slack", "name": "x", "url": "https://hooks.slack.com/x", "colour": "red"}, "colour"},
	} {
		r := e.authed(tok, "POST", "/admin/notify/channels", c.body)
		want(t, r, http.StatusBadRequest, "invalid_request")
		if !strings.HasPrefix(r.errorMessage(), c.field+":") {
			t.Errorf("%v: %s", c.body, r.errorMessage())
		}
	}
	r = e.authed(tok, "POST", "/admin/notify/channels", map[string]any{"type": "slack", "name": "PHONE", "url": "https://hooks.slack.com/x"})
	want(t, r, http.StatusConflict, "conflict")
	if !strings.Contains(r.errorMessage(), "notification channel") {
		t.Errorf("conflict message %q", r.errorMessage())
	}

	// A test message goes out now, in the channel's language.
	r = e.authed(tok, "POST", "/admin/notify/channels/phone/test", nil)
	want(t, r, http.StatusOK, "")
	var res ChannelTestResult
	r.json(t, &res)
	if !res.OK || res.Channel.ID != v.ID {
		t.Fatalf("test result %+v", res)
	}
	reqs := rcv.Requests()
	if len(reqs) != 1 || reqs[0].Path != "/bot42:TOPSECRET/sendMessage" {
		t.Fatalf("requests %+v", reqs)
	}
	var msg struct{ Text string }
	json.Unmarshal(reqs[0].Body, &msg)
	if !strings.HasPrefix(msg.Text, "[crs] 测试消息") || !strings.Contains(msg.Text, "此通道（phone）可以接收 crs 告警。") {
		t.Errorf("test text %q", msg.Text)
	}

	// A channel that refuses is a result, not an API error.
	rcv.Push(notifytest.Reply{Status: 401, Body: `{"ok":false,"description":"Unauthorized"}`})
	r = e.authed(tok, "POST", "/admin/notify/channels/"+v.ID+"/test", nil)
	want(t, r, http.StatusOK, "")
	r.json(t, &res)
	if res.OK || !strings.Contains(res.Error, "401") || strings.Contains(res.Error, "TOPSECRET") {
		t.Fatalf("refused test %+v", res)
	}

	r = e.authed(tok, "GET", "/admin/notify/channels", nil)
	var vs []notify.ChannelView
	r.json(t, &vs)
	if len(vs) != 1 || vs[0].Target != "chat 7 via "+rcv.URL() {
		t.Fatalf("list %+v", vs)
	}

	want(t, e.authed(tok, "DELETE", "/admin/notify/channels/"+v.ID, nil), http.StatusNoContent, "")
	r = e.authed(tok, "DELETE", "/admin/notify/channels/"+v.ID, nil)
	want(t, r, http.StatusNotFound, "not_found")
	if r.errorMessage() != "no such notification channel" {
		t.Errorf("404 message %q", r.errorMessage())
	}
	want(t, e.authed(tok, "POST", "/admin/notify/channels/"+v.ID+"/test", nil), http.StatusNotFound, "not_found")
	if vs, _ := e.svc.ListChannels(context.Background()); len(vs) != 0 {
		t.Fatalf("left %+v", vs)
	}
}

// TestNotifyChannelsSMTPOverHTTP: an e-mail channel set through the API
// delivers its test message to a loopback SMTP server.
func TestNotifyChannelsSMTPOverHTTP(t *testing.T) {
	e := newTestEnv(t)
	tok := e.login()
	srv := notifytest.StartSMTP(t)
	srv.RequireLogin("bot", "pw")
	r := e.authed(tok, "POST", "/admin/notify/channels", map[string]any{
		"type": "smtp", "name": "mail", "smtp_host": srv.Host(), "smtp_port": srv.Port(), "smtp_user": "bot",
		"smtp_password": "pw", "from": "crs@example.com", "to": []string{"admin@example.com"},
	})
	want(t, r, http.StatusCreated, "")
	if strings.Contains(string(r.body), `"pw"`) || !strings.Contains(string(r.body), `"has_password":true`) {
		t.Fatalf("view %s", r.body)
	}
	r = e.authed(tok, "POST", "/admin/notify/channels/mail/test", nil)
	want(t, r, http.StatusOK, "")
	var res ChannelTestResult
	r.json(t, &res)
	if !res.OK {
		t.Fatalf("result %+v", res)
	}
	m := srv.Wait(t, 1, 3*time.Second)[0]
	if m.Subject != "[crs] Test message" || m.To[0] != "admin@example.com" || !strings.Contains(m.Body, "This channel (mail) receives crs alerts.") {
		t.Fatalf("mail %+v", m)
	}
}
