package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/notify/notifytest"
)

func TestNotifyCommands(t *testing.T) {
	t.Parallel()
	isolate(t)
	dir := t.TempDir()
	with := func(args ...string) []string { return append(args, "--data-dir", dir) }
	rcv := notifytest.NewReceiver(t)
	mail := notifytest.StartSMTP(t)

	code, _, errs := crs(t, "", "notify")
	if code != 2 || !strings.Contains(errs, "crs notify add --type") || !strings.Contains(errs, "crs notify test NAME|ID") {
		t.Fatalf("notify: exit %d, stderr %q", code, errs)
	}
	if out := ok(t, "", with("notify", "list")...); !strings.Contains(out, "No notification channels yet") {
		t.Fatalf("empty list %q", out)
	}
	fails(t, 2, "--type is required", with("notify", "add", "--name", "x")...)
	fails(t, 2, "--name is required", with("notify", "add", "--type", "slack")...)
	fails(t, 1, "--type: unknown channel type", with("notify", "add", "--type", "pager", "--name", "x")...)
	fails(t, 1, "--chat-id: the chat to post to is required", with("notify", "add", "--type", "telegram", "--name", "x", "--token", "1:a")...)
	fails(t, 1, "--events: unknown event", with("notify", "add", "--type", "slack", "--name", "x", "--url", "https://h/x", "--events", "account.exploded")...)
	fails(t, 1, "--smtp-port: want 1–65535", with("notify", "add", "--type", "smtp", "--name", "x", "--smtp-host", "h", "--smtp-port", "70000",
		"--from", "a@b.c", "--to", "d@e.f")...)
	failsIn(t, "x", 2, "only one flag can read stdin", with("notify", "add", "--type", "telegram", "--name", "x", "--token", "-", "--url", "-", "--chat-id", "1")...)

	// A token read from stdin, Chinese messages, account events only.
	const token = "4242:TOKEN-MUST-NOT-APPEAR"
	out := ok(t, token+"\n", with("notify", "add", "--type", "telegram", "--name", "phone", "--token", "-", "--chat-id", "-100",
		"--url", rcv.URL(), "--lang", "zh-CN", "--events", "account.*")...)
	if !regexp.MustCompile(`Added notification channel ntf_[0-9a-f]{16} \(phone, telegram → chat -100 via http://127\.0\.0\.1:\d+\)`).MatchString(out) ||
		!strings.Contains(out, "crs notify test phone") {
		t.Fatalf("add output %q", out)
	}
	fails(t, 1, `a channel named "Phone" already exists`, with("notify", "add", "--type", "slack", "--name", "Phone", "--url", "https://h/x")...)
	var mv map[string]json.RawMessage
	decodeJSON(t, ok(t, "", with("notify", "add", "--type", "smtp", "--name", "mail", "--smtp-host", mail.Host(),
		"--smtp-port", strconv.Itoa(mail.Port()), "--from", "crs <crs@example.com>", "--to", "a@example.com,b@example.com", "--json")...), &mv)
	wantFields(t, "smtp channel", mv, map[string]string{"type": `"smtp"`, "to": `["a@example.com","b@example.com"]`, "lang": `"en"`,
		"events": `["all"]`, "has_password": "false"}, "id", "target", "created_at")

	out = ok(t, "", with("notify", "list")...)
	if !strings.Contains(out, "phone") || !strings.Contains(out, "account.rate_limited,account.recovered") || !strings.Contains(out, "zh-CN") ||
		!strings.Contains(out, "a@example.com, b@example.com via 127.0.0.1:") || strings.Contains(out, "TOKEN") {
		t.Fatalf("list %q", out)
	}
	var list []map[string]json.RawMessage
	decodeJSON(t, ok(t, "", with("notify", "list", "--json")...), &list)
	if len(list) != 2 || string(list[0]["has_token"]) != "true" || bytes.Contains([]byte(ok(t, "", with("notify", "list", "--json")...)), []byte("TOKEN")) {
		t.Fatalf("list --json %v", list)
	}

	// The test message goes out now; the outcome is the exit status.
	out = ok(t, "", with("notify", "test", "phone")...)
	if !strings.Contains(out, "Test message delivered to phone (telegram → chat -100 via ") {
		t.Fatalf("test output %q", out)
	}
	reqs := rcv.Requests()
	if len(reqs) != 1 || reqs[0].Path != "/bot"+token+"/sendMessage" || !strings.Contains(string(reqs[0].Body), "测试消息") {
		t.Fatalf("requests %+v", reqs)
	}
	rcv.Push(notifytest.Reply{Status: 500, Body: "upstream broke"})
	fails(t, 1, "notify test phone: not delivered: 127.0.0.1", with("notify", "test", "phone")...)
	code, stdout, errs := crs(t, "", with("notify", "test", "phone", "--json")...)
	var res struct {
		OK bool
	}
	decodeJSON(t, stdout, &res)
	if code != 0 || !res.OK || errs != "" {
		t.Fatalf("test --json: exit %d %q %q", code, stdout, errs)
	}
	ok(t, "", with("notify", "test", "mail")...)
	if m := mail.Wait(t, 1, 3*time.Second)[0]; m.Subject != "[crs] Test message" || len(m.To) != 2 {
		t.Fatalf("mail %+v", m)
	}

	// Nothing secret lies in DATA_DIR in the clear.
	filepath.WalkDir(dir, func(path string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, _ := os.ReadFile(path)
		if bytes.Contains(b, []byte("TOKEN-MUST-NOT-APPEAR")) {
			t.Errorf("%s holds the bot token in the clear", path)
		}
		return nil
	})

	out = ok(t, "", with("notify", "remove", "phone")...)
	if !strings.Contains(out, "(phone): removed") {
		t.Fatalf("remove output %q", out)
	}
	fails(t, 1, "not found", with("notify", "remove", "phone")...)
	fails(t, 1, "not found", with("notify", "test", "phone")...)
	fails(t, 2, "want exactly one channel ID", with("notify", "test")...)
}
