package oauth_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/notify"
	"github.com/crs-relay/crs/internal/notify/notifytest"
	"github.com/crs-relay/crs/internal/oauth"
	"github.com/crs-relay/crs/internal/store"
)

var _ oauth.Alerts = (*notify.Dispatcher)(nil)

// TestRefreshRefusedAlertsOnce: the fake OAuth server refuses a revoked
// refresh token; the admin hears exactly once that the credential is dead,
// with the refusal as the reason and no token in the message, however
// often the account is asked for afterwards.
func TestRefreshRefusedAlertsOnce(t *testing.T) {
	e := newRefreshEnv(t)
	rcv := notifytest.NewReceiver(t)
	ctx := context.Background()
	if _, err := (notify.ChannelStore{Settings: e.st, Box: e.box}).Add(ctx, notify.Channel{Name: "ops", Type: notify.TypeWebhook, URL: rcv.URL()}); err != nil {
		t.Fatal(err)
	}
	d := notify.New(notify.Options{Store: e.st, Box: e.box, WatchEvery: time.Hour})
	dctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { d.Run(dctx); close(done) }()
	t.Cleanup(func() { stop(); <-done })

	old := e.credential(t, time.Now().Add(-time.Minute))
	e.fake.Revoke(old.RefreshToken)
	acct := e.addAccount(t, "a1", old, func(a *store.Account) { a.Name = "max-1" })
	r := e.refresher(e.st)
	r.Alerts = d
	for range 3 {
		r.AccessToken(testCtx(t), acct)
	}
	r.RefreshDue(testCtx(t))

	rcv.Wait(t, 1, 3*time.Second)
	time.Sleep(100 * time.Millisecond)
	reqs := rcv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d alerts, want exactly 1", len(reqs))
	}
	var doc struct {
		Event   notify.Kind
		Reason  string
		Account struct{ ID, Name string }
		Until   time.Time
	}
	if err := json.Unmarshal(reqs[0].Body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Event != notify.AccountCredentialDead || doc.Account.ID != "a1" || doc.Account.Name != "max-1" ||
		!strings.Contains(doc.Reason, "refresh rejected") || !strings.Contains(doc.Reason, "invalid_grant") ||
		doc.Until.Before(time.Now().Add(oauth.DeadCooldown-time.Minute)) {
		t.Fatalf("alert %+v", doc)
	}
	noLeak(t, errString(string(reqs[0].Body)), old.AccessToken, old.RefreshToken)
}

type errString string

func (e errString) Error() string { return string(e) }
