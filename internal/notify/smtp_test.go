package notify

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/notify/notifytest"
)

func smtpChannel(srv *notifytest.SMTP, lang string) Channel {
	return Channel{
		Name: "mail", Type: TypeSMTP, SMTPHost: srv.Host(), SMTPPort: srv.Port(),
		From: "crs <alerts@example.com>", To: []string{"admin@example.com", "Ops <ops@example.com>"}, Lang: lang,
	}
}

func TestSMTPDelivers(t *testing.T) {
	srv := notifytest.StartSMTP(t)
	srv.RequireLogin("alerts@example.com", "app-password")
	ch := smtpChannel(srv, LangChinese)
	ch.SMTPUser, ch.SMTPPassword = "alerts@example.com", "app-password"
	ch, err := ch.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if err := testSender().Send(context.Background(), ch, rateLimited); err != nil {
		t.Fatal(err)
	}
	mails := srv.Wait(t, 1, 3*time.Second)
	m := mails[0]
	if m.User != "alerts@example.com" || m.From != "alerts@example.com" ||
		strings.Join(m.To, ",") != "admin@example.com,ops@example.com" {
		t.Errorf("envelope: user %q from %q to %v", m.User, m.From, m.To)
	}
	if m.Subject != "[crs] 账号被限流：team-max" {
		t.Errorf("subject %q", m.Subject)
	}
	if !strings.Contains(m.Body, "账号：team-max（acc_1，claude）") || !strings.Contains(m.Body, "crs · relay-1 · 2023-11-14 22:13:20 UTC") {
		t.Errorf("body %q", m.Body)
	}
	if m.Header.Get("X-Crs-Event") != "account.rate_limited" || !strings.Contains(m.Header.Get("Content-Type"), "utf-8") {
		t.Errorf("headers %v", m.Header)
	}
}

func TestSMTPFailures(t *testing.T) {
	srv := notifytest.StartSMTP(t)
	srv.RequireLogin("u", "right")
	ch := smtpChannel(srv, "")
	ch.SMTPUser, ch.SMTPPassword = "u", "wrong"
	err := testSender().Send(context.Background(), ch, rateLimited)
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "AUTH") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("bad password: %v (permanent %v)", err, IsPermanent(err))
	}

	ch.SMTPPassword = "right"
	srv.FailNext(1)
	err = testSender().Send(context.Background(), ch, rateLimited)
	if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "451") {
		t.Errorf("451: %v (permanent %v)", err, IsPermanent(err))
	}
	if len(srv.Mails()) != 0 {
		t.Fatal("a refused message was stored")
	}
	if err := testSender().Send(context.Background(), ch, rateLimited); err != nil {
		t.Fatal(err)
	}
	srv.Wait(t, 1, 3*time.Second)

	// Nobody listens.
	ch.SMTPPort = 1
	if err := testSender().Send(context.Background(), ch, rateLimited); err == nil || IsPermanent(err) {
		t.Errorf("closed port: %v", err)
	}
}
