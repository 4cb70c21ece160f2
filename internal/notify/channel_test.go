package notify

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/sqlite"
)

func testStore(t *testing.T) (*sqlite.Store, *secret.Box) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	box, err := secret.NewBox(strings.Repeat("k", 32))
	if err != nil {
		t.Fatal(err)
	}
	return st, box
}

func TestNormalize(t *testing.T) {
	ok := []Channel{
		{Name: "w", Type: "Webhook", URL: " https://example.com/h "},
		{Name: "t", Type: TypeTelegram, Token: "1:a", ChatID: "-1"},
		{Name: "b", Type: TypeBark, Token: "k", URL: "https://bark.example.com"},
		{Name: "d", Type: TypeDingTalk, URL: "https://oapi.dingtalk.com/robot/send?access_token=x", Secret: "SEC1"},
		{Name: "m", Type: TypeSMTP, SMTPHost: "smtp.example.com", From: "a@example.com", To: []string{"b@example.com, c@example.com"}},
		{Name: "z", Type: TypeSlack, URL: "https://hooks.slack.com/services/x", Lang: "zh", Events: []Kind{KeyOverLimit}},
	}
	for _, c := range ok {
		if _, err := c.Normalize(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	n, _ := ok[4].Normalize()
	if n.SMTPPort != DefaultSMTPPort || !reflect.DeepEqual(n.To, []string{"b@example.com", "c@example.com"}) || n.Lang != LangEnglish {
		t.Errorf("smtp defaults: %+v", n)
	}
	if n, _ := ok[5].Normalize(); n.Lang != LangChinese {
		t.Errorf("lang zh → %q", n.Lang)
	}

	bad := []struct {
		ch    Channel
		field string
	}{
		{Channel{Type: TypeWebhook, URL: "https://x"}, "name"},
		{Channel{Name: "x"}, "type"},
		{Channel{Name: "x", Type: "pager"}, "type"},
		{Channel{Name: "x", Type: TypeSlack}, "url"},
		{Channel{Name: "x", Type: TypeSlack, URL: "ftp://x/y"}, "url"},
		{Channel{Name: "x", Type: TypeTelegram, ChatID: "1"}, "token"},
		{Channel{Name: "x", Type: TypeTelegram, Token: "t"}, "chat_id"},
		{Channel{Name: "x", Type: TypeBark}, "token"},
		{Channel{Name: "x", Type: TypeSMTP, From: "a@b.c", To: []string{"d@e.f"}}, "smtp_host"},
		{Channel{Name: "x", Type: TypeSMTP, SMTPHost: "h", To: []string{"d@e.f"}}, "from"},
		{Channel{Name: "x", Type: TypeSMTP, SMTPHost: "h", From: "a@b.c"}, "to"},
		{Channel{Name: "x", Type: TypeSMTP, SMTPHost: "h", From: "a@b.c", To: []string{"nope"}}, "to"},
		{Channel{Name: "x", Type: TypeSMTP, SMTPHost: "h", SMTPPort: 70000, From: "a@b.c", To: []string{"d@e.f"}}, "smtp_port"},
		{Channel{Name: "x", Type: TypeSMTP, SMTPHost: "h", SMTPUser: "u", From: "a@b.c", To: []string{"d@e.f"}}, "smtp_password"},
		{Channel{Name: "x", Type: TypeSMTP, SMTPHost: "h:25", From: "a@b.c", To: []string{"d@e.f"}}, "smtp_host"},
		{Channel{Name: "x", Type: TypeSlack, URL: "https://x/y", Lang: "fr"}, "lang"},
		{Channel{Name: "x", Type: TypeSlack, URL: "https://x/y", Events: []Kind{"account.exploded"}}, "events"},
		{Channel{Name: "x", Type: TypeSlack, URL: "https://x/y", Secret: "s"}, "secret"},
		{Channel{Name: "x", Type: TypeSlack, URL: "https://x/y", Token: "s"}, "token"},
		{Channel{Name: "x", Type: TypeSlack, URL: "https://x/y", SMTPHost: "h"}, "smtp_host"},
		{Channel{Name: "x", Type: TypeWebhook, URL: "https://x/y", ChatID: "1"}, "chat_id"},
	}
	for _, c := range bad {
		_, err := c.ch.Normalize()
		var inv *InvalidError
		if !errors.As(err, &inv) || inv.Field != c.field {
			t.Errorf("%+v: %v, want an error on %s", c.ch, err, c.field)
		}
	}
}

func TestParseKinds(t *testing.T) {
	if k, err := ParseKinds(""); err != nil || k != nil {
		t.Errorf("empty: %v %v", k, err)
	}
	if k, err := ParseKinds("key.over_limit, account.blocked,key.over_limit"); err != nil || !reflect.DeepEqual(k, []Kind{KeyOverLimit, AccountBlocked}) {
		t.Errorf("list: %v %v", k, err)
	}
	if k, err := ParseKinds("store.*"); err != nil || !reflect.DeepEqual(k, []Kind{StoreUnreachable, StoreRecovered}) {
		t.Errorf("prefix: %v %v", k, err)
	}
	if k, err := ParseKinds("store.unreachable,all"); err != nil || k != nil {
		t.Errorf("all: %v %v", k, err)
	}
	for _, s := range []string{"nope", "x.*", "test"} {
		if _, err := ParseKinds(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

// TestChannelStoreSealed: channels round-trip through the store, the blob
// reveals none of their secrets, names are unique, and views mask tokens.
func TestChannelStoreSealed(t *testing.T) {
	st, box := testStore(t)
	ctx := context.Background()
	cs := ChannelStore{Settings: st, Box: box}
	if chs, err := cs.List(ctx); err != nil || len(chs) != 0 {
		t.Fatalf("empty list: %v %v", chs, err)
	}
	v0, _ := st.ChangeVersion(ctx)
	slack, err := cs.Add(ctx, Channel{Name: "ops", Type: TypeSlack, URL: "https://hooks.slack.com/services/T1/B2/SLACKSECRET"})
	if err != nil {
		t.Fatal(err)
	}
	if v1, _ := st.ChangeVersion(ctx); v1 == v0 {
		t.Error("adding a channel did not move the change version")
	}
	tg, err := cs.Add(ctx, Channel{Name: "phone", Type: TypeTelegram, Token: "42:TGSECRET", ChatID: "7"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(slack.ID, "ntf_") || slack.ID == tg.ID || slack.CreatedAt.IsZero() {
		t.Fatalf("ids %q %q", slack.ID, tg.ID)
	}
	if _, err := cs.Add(ctx, Channel{Name: "OPS", Type: TypeDiscord, URL: "https://discord.com/api/webhooks/1/x"}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate name: %v", err)
	}
	raw, err := st.GetSetting(ctx, SettingName)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"SLACKSECRET", "TGSECRET", "hooks.slack.com", "phone"} {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("the stored blob reveals %q", s)
		}
	}
	// Another box (another ENCRYPTION_KEY) cannot read it.
	other, _ := secret.NewBox(strings.Repeat("o", 32))
	if _, err := LoadChannels(ctx, st, other); !errors.Is(err, secret.ErrOpen) {
		t.Errorf("wrong key: %v", err)
	}

	got, err := cs.Get(ctx, "Phone")
	if err != nil || got.ID != tg.ID || got.Token != "42:TGSECRET" {
		t.Fatalf("get by name: %+v %v", got, err)
	}
	v := slack.View()
	if v.Target != "https://hooks.slack.com/…" || v.HasSecret || v.Events[0] != "all" {
		t.Errorf("slack view %+v", v)
	}
	if v := tg.View(); v.Target != "chat 7 via https://api.telegram.org" || !v.HasToken {
		t.Errorf("telegram view %+v", v)
	}

	if _, err := cs.Remove(ctx, slack.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Remove(ctx, slack.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second remove: %v", err)
	}
	chs, _ := cs.List(ctx)
	if len(chs) != 1 || chs[0].ID != tg.ID {
		t.Fatalf("after remove: %+v", chs)
	}
	cs.Remove(ctx, "phone")
	if _, err := st.GetSetting(ctx, SettingName); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("removing the last channel left the setting: %v", err)
	}
}
