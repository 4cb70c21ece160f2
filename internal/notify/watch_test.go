package notify

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/notify/notifytest"
	"github.com/crs-relay/crs/internal/store"
)

// flakyStore is a real store whose Ping can be made to fail, as a Redis
// behind a broken network would.
type flakyStore struct {
	store.Store
	down  atomic.Bool
	pings atomic.Int64
}

func (f *flakyStore) Ping(ctx context.Context) error {
	f.pings.Add(1)
	if f.down.Load() {
		return errors.New("dial tcp 10.0.0.5:6379: connect: connection refused")
	}
	return f.Store.Ping(ctx)
}

func TestStoreUnreachableThenRecovered(t *testing.T) {
	t.Parallel()
	rcv := notifytest.NewReceiver(t)
	st, _ := testStore(t)
	fs := &flakyStore{Store: st}
	startDispatcher(t, fs, Options{}, hook(rcv, "a"))
	time.Sleep(60 * time.Millisecond) // pings that pass say nothing
	if n := len(rcv.Requests()); n != 0 {
		t.Fatalf("%d messages while the store is fine", n)
	}
	fs.down.Store(true)
	e := events(t, settle(t, rcv, 1))[0]
	if e.Event != StoreUnreachable || e.Severity != SeverityCritical ||
		!strings.Contains(e.Text, "The store does not answer: dial tcp 10.0.0.5:6379: connect: connection refused") {
		t.Errorf("message %+v", e)
	}
	// Many more failed pings: still one message.
	time.Sleep(150 * time.Millisecond)
	fs.down.Store(false)
	got := events(t, settle(t, rcv, 2))
	if got[1].Event != StoreRecovered || got[1].Severity != SeverityResolved {
		t.Errorf("second message %+v", got[1])
	}
	// A new outage is news again at once.
	fs.down.Store(true)
	settle(t, rcv, 3)
}

func TestAccountRecovered(t *testing.T) {
	t.Parallel()
	rcv := notifytest.NewReceiver(t)
	st, _ := testStore(t)
	ctx := context.Background()
	now := time.Now()
	for _, id := range []store.AccountID{"acc_1", "acc_2", "acc_3", "acc_4"} {
		if err := st.CreateAccount(ctx, store.Account{ID: id, Name: "n-" + string(id), Platform: store.PlatformClaude,
			Type: store.TypeAPIKey, Priority: 50, CreatedAt: now, UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	a1, _ := st.GetAccount(ctx, "acc_1")
	a2, _ := st.GetAccount(ctx, "acc_2")
	a3, _ := st.GetAccount(ctx, "acc_3")
	a4, _ := st.GetAccount(ctx, "acc_4")
	until := now.Add(time.Hour)
	st.SetCooldown(ctx, a1.ID, store.CooldownRateLimited, until, "429")
	st.SetCooldown(ctx, a4.ID, store.CooldownCredentialDead, until, "401")
	st.SetCooldown(ctx, a2.ID, store.CooldownBlocked, until, "organization disabled")
	st.SetAccountQuota(ctx, a3.ID, store.Quota{FamilyLimits: map[string]time.Time{"opus": until}})

	h := startDispatcher(t, st, Options{}, hook(rcv, "a"))
	h.d.AccountResting(a1, "", store.CooldownRateLimited, until, "429")
	h.d.AccountResting(a2, "", store.CooldownBlocked, until, "organization disabled")
	h.d.AccountResting(a3, "opus", store.CooldownRateLimited, until, "opus weekly limit")
	h.d.AccountResting(a4, "", store.CooldownCredentialDead, until, "credential refused")
	settle(t, rcv, 4)
	time.Sleep(60 * time.Millisecond) // watches pass: nobody recovered yet
	if n := len(rcv.Requests()); n != 4 {
		t.Fatalf("%d messages before any recovery", n)
	}

	// An admin resets the blocked account; the rate limit runs out; the
	// dead credential's rest runs out too, which only means crs will try it
	// once more: no recovery for it.
	st.SetCooldown(ctx, a2.ID, store.CooldownNone, time.Time{}, "")
	st.SetCooldown(ctx, a1.ID, store.CooldownRateLimited, time.Now().Add(-time.Second), "429")
	st.SetCooldown(ctx, a4.ID, store.CooldownCredentialDead, time.Now().Add(-time.Second), "401")
	got := events(t, settle(t, rcv, 6))[4:]
	was := map[store.AccountID]Kind{}
	for _, e := range got {
		if e.Event != AccountRecovered || e.Account == nil {
			t.Fatalf("message %+v", e)
		}
		was[e.Account.ID] = e.Was
	}
	if was["acc_1"] != AccountRateLimited || was["acc_2"] != AccountBlocked {
		t.Errorf("recoveries %v", was)
	}
	if !strings.Contains(got[0].Text+got[1].Text, "It serves requests again (was: blocked).") {
		t.Errorf("texts %q %q", got[0].Text, got[1].Text)
	}

	// The opus limit ends.
	st.SetAccountQuota(ctx, a3.ID, store.Quota{})
	e := events(t, settle(t, rcv, 7))[6]
	if e.Event != AccountRecovered || e.Family != "opus" || !strings.Contains(e.Text, "(was: rate-limited for opus)") {
		t.Errorf("family recovery %+v", e)
	}

	// The dead account gets a new credential.
	time.Sleep(10 * time.Millisecond)
	if err := st.SetAccountSecret(ctx, a4.ID, []byte("new sealed secret")); err != nil {
		t.Fatal(err)
	}
	e = events(t, settle(t, rcv, 8))[7]
	if e.Event != AccountRecovered || e.Account.ID != "acc_4" || e.Was != AccountCredentialDead {
		t.Errorf("credential recovery %+v", e)
	}
}

func TestWindowWarningThenResumed(t *testing.T) {
	t.Parallel()
	rcv := notifytest.NewReceiver(t)
	h := startDispatcher(t, nil, Options{}, hook(rcv, "a"))
	end := time.Now().Add(time.Second)
	paused := acct1
	paused.Options.AutoPauseOnWarning = true
	h.d.WindowWarning(paused, store.Window{Status: store.WindowAllowed, End: end})
	for range 3 {
		h.d.WindowWarning(paused, store.Window{Status: store.WindowWarning, Start: end.Add(-5 * time.Hour), End: end})
	}
	e := events(t, rcv.Wait(t, 1, 3*time.Second))[0]
	if e.Event != AccountWindowWarning || !strings.Contains(e.Text, "The account is paused until then") {
		t.Errorf("warning %+v", e)
	}
	e = events(t, settle(t, rcv, 2))[1]
	if e.Event != AccountWindowResumed || e.Account.ID != "acc_1" || e.Severity != SeverityResolved {
		t.Errorf("resumed %+v", e)
	}
	// The next window warns again.
	h.d.WindowWarning(acct1, store.Window{Status: store.WindowWarning, End: time.Now().Add(time.Hour)})
	settle(t, rcv, 3)
}

// TestNoRecoveryBeforeTheStoreShowsTheRest: an alert can arrive before
// the store shows its rest (another instance writes it, or the write is on
// its way); an account that merely looks fine then has not recovered.
func TestNoRecoveryBeforeTheStoreShowsTheRest(t *testing.T) {
	t.Parallel()
	rcv := notifytest.NewReceiver(t)
	st, _ := testStore(t)
	ctx := context.Background()
	now := time.Now()
	for _, id := range []store.AccountID{"acc_1", "acc_2"} {
		if err := st.CreateAccount(ctx, store.Account{ID: id, Name: string(id), Platform: store.PlatformClaude,
			Type: store.TypeAPIKey, Priority: 50, CreatedAt: now, UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	a1, _ := st.GetAccount(ctx, "acc_1")
	a2, _ := st.GetAccount(ctx, "acc_2")
	fs := &flakyStore{Store: st}
	// watched waits until the dispatcher has run a whole watch after now.
	watched := func() {
		n := fs.pings.Load()
		waitFor(t, "two watches", func() bool { return fs.pings.Load() >= n+2 })
	}
	h := startDispatcher(t, fs, Options{}, hook(rcv, "a"))
	h.d.AccountResting(a1, "", store.CooldownBlocked, now.Add(time.Hour), "banned")
	h.d.AccountResting(a2, "", store.CooldownRateLimited, now.Add(time.Hour), "429")
	settle(t, rcv, 2)
	watched() // a watch found both accounts fine
	if n := len(rcv.Requests()); n != 2 {
		t.Fatalf("%d messages: a recovery before the rest was even stored", n)
	}
	// The rests land, then end.
	st.SetCooldown(ctx, a1.ID, store.CooldownBlocked, now.Add(time.Hour), "banned")
	st.SetCooldown(ctx, a2.ID, store.CooldownRateLimited, now.Add(time.Hour), "429")
	watched()
	st.SetCooldown(ctx, a1.ID, store.CooldownNone, time.Time{}, "")
	st.SetCooldown(ctx, a2.ID, store.CooldownNone, time.Time{}, "")
	for _, e := range events(t, settle(t, rcv, 4))[2:] {
		if e.Event != AccountRecovered {
			t.Errorf("message %+v", e)
		}
	}
}
