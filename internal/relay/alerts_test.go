package relay

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/netx"
	"github.com/crs-relay/crs/internal/notify"
	"github.com/crs-relay/crs/internal/notify/notifytest"
	"github.com/crs-relay/crs/internal/policy"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/scheduler"
	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/memcounters"
	"github.com/crs-relay/crs/internal/store/sqlite"
	"github.com/crs-relay/crs/internal/usage"
)

var _ Alerts = (*notify.Dispatcher)(nil)

// testClock is a settable clock shared by the relay, its scheduler, its
// limits and the alert dispatcher, so cooldowns can run out in a test.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// alertFixture is a relay on a real store and a fake upstream, whose
// alerts go through a running notify.Dispatcher to a loopback webhook.
type alertFixture struct {
	*fixture
	rcv *notifytest.Receiver
	clk *testClock
}

func newAlertFixture(t *testing.T, kp store.KeyPolicy) *alertFixture {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	box, _ := secret.NewBox(strings.Repeat("x", 32))
	clk := &testClock{t: time.Now()}
	fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{APIKeys: []string{"sk-ant-test"}, Deltas: 2})
	now := clk.Now()
	if err := st.CreateAccount(ctx, store.Account{ID: "a1", Name: "team-key", Platform: store.PlatformClaude, Type: store.TypeAPIKey,
		Priority: 50, BaseURL: fake.URL(), SealedSecret: box.Seal([]byte("sk-ant-test")), CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	key := secret.NewRelayKey()
	if err := st.CreateKey(ctx, store.Key{ID: "k1", Name: "alice", Hash: secret.Hash(key), Hint: key[len(key)-4:], Policy: kp, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	rcv := notifytest.NewReceiver(t)
	if _, err := (notify.ChannelStore{Settings: st, Box: box}).Add(ctx, notify.Channel{Name: "ops", Type: notify.TypeWebhook, URL: rcv.URL()}); err != nil {
		t.Fatal(err)
	}
	d := notify.New(notify.Options{Store: st, Box: box, Now: clk.Now, WatchEvery: 20 * time.Millisecond, Backoff: 10 * time.Millisecond, Timeout: 5 * time.Second})
	dctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { d.Run(dctx); close(done) }()
	t.Cleanup(func() { stop(); <-done })

	rec := usage.NewRecorder(st, usage.Options{SpoolDir: t.TempDir()})
	rec.Start()
	t.Cleanup(func() { rec.Close(context.Background()) })
	counters := memcounters.New(clk.Now)
	r := New(Config{MaxBodyBytes: 1 << 20, FirstEventTimeout: 5 * time.Second}, Deps{
		Keys: NewKeyCache(st, nil), Scheduler: scheduler.New(st, scheduler.Options{Now: clk.Now}), Recorder: rec,
		Prices: pricing.Default(), Pool: netx.NewPool(netx.Options{}), Box: box, Counters: counters,
		Policy: policy.New(policy.Options{Counters: counters, Now: clk.Now}),
		Alerts: d, Now: clk.Now,
	})
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	return &alertFixture{fixture: &fixture{relay: r, store: st, fake: fake, key: key}, rcv: rcv, clk: clk}
}

const hiBody = `{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`

// alertDoc is the part of the generic webhook document the tests read.
type alertDoc struct {
	Event   notify.Kind `json:"event"`
	Title   string      `json:"title"`
	Text    string      `json:"text"`
	Reason  string      `json:"reason"`
	Limit   string      `json:"limit"`
	Count   int         `json:"count"`
	Was     notify.Kind `json:"was"`
	Until   *time.Time  `json:"until"`
	Account *struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"account"`
	Key *struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"key"`
}

// alerts waits until n alerts arrived, gives a duplicate time to show
// up, and returns exactly n.
func (f *alertFixture) alerts(t *testing.T, n int) []alertDoc {
	t.Helper()
	f.rcv.Wait(t, n, 3*time.Second)
	time.Sleep(100 * time.Millisecond)
	reqs := f.rcv.Requests()
	if len(reqs) != n {
		var bodies []string
		for _, r := range reqs {
			bodies = append(bodies, string(r.Body))
		}
		t.Fatalf("%d alerts, want exactly %d:\n%s", len(reqs), n, strings.Join(bodies, "\n"))
	}
	out := make([]alertDoc, n)
	for i, r := range reqs {
		if err := json.Unmarshal(r.Body, &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestAlertRateLimitedThenRecovered(t *testing.T) {
	f := newAlertFixture(t, store.KeyPolicy{})
	f.fake.Push(fakeupstream.Fault{Status: 429, Header: http.Header{"Retry-After": {"120"}}})
	if w := f.post(hiBody, nil); w.Code == http.StatusOK {
		t.Fatal("the 429 reached nobody")
	}
	// The account rests now; more requests find it resting and raise
	// nothing new.
	f.post(hiBody, nil)
	a := f.alerts(t, 1)[0]
	if a.Event != notify.AccountRateLimited || a.Account == nil || a.Account.ID != "a1" || a.Account.Name != "team-key" ||
		!strings.HasPrefix(a.Reason, "rate limited") || a.Until == nil || a.Until.Sub(f.clk.Now()) != 120*time.Second {
		t.Fatalf("alert %+v", a)
	}
	if !strings.Contains(a.Text, "Resting until: ") || !strings.Contains(a.Title, "Account rate-limited: team-key") {
		t.Errorf("text %q", a.Text)
	}
	f.clk.Advance(121 * time.Second)
	if r := f.alerts(t, 2)[1]; r.Event != notify.AccountRecovered || r.Was != notify.AccountRateLimited || r.Account.ID != "a1" {
		t.Fatalf("recovery %+v", r)
	}
	if w := f.post(hiBody, nil); w.Code != http.StatusOK {
		t.Fatalf("after recovery: %d %s", w.Code, w.Body)
	}
	f.alerts(t, 2)
}

func TestAlertBlockedAndCredentialDead(t *testing.T) {
	for _, c := range []struct {
		fault fakeupstream.Fault
		kind  notify.Kind
	}{
		{fakeupstream.Fault{Status: 403, Body: `{"type":"error","error":{"type":"permission_error","message":"This organization has been disabled."}}`}, notify.AccountBlocked},
		{fakeupstream.Fault{Status: 401}, notify.AccountCredentialDead},
	} {
		t.Run(string(c.kind), func(t *testing.T) {
			f := newAlertFixture(t, store.KeyPolicy{})
			f.fake.Push(c.fault)
			f.post(hiBody, nil)
			f.post(hiBody, nil)
			a := f.alerts(t, 1)[0]
			if a.Event != c.kind || a.Account == nil || a.Account.ID != "a1" {
				t.Fatalf("alert %+v", a)
			}
			if c.kind == notify.AccountBlocked && !strings.Contains(a.Text, "until `crs accounts reset a1`") {
				t.Errorf("text %q", a.Text)
			}
		})
	}
}

func TestAlertCoolingRepeatedly(t *testing.T) {
	f := newAlertFixture(t, store.KeyPolicy{})
	for i := range 3 {
		f.fake.Push(fakeupstream.Fault{Status: 500})
		f.post(hiBody, nil)
		if i < 2 {
			time.Sleep(50 * time.Millisecond)
			if n := len(f.rcv.Requests()); n != 0 {
				t.Fatalf("%d alerts after %d cooldowns", n, i+1)
			}
		}
		f.clk.Advance(2 * time.Minute) // the cooldown runs out
	}
	a := f.alerts(t, 1)[0]
	if a.Event != notify.AccountCoolingRepeatedly || a.Count != 3 || !strings.HasPrefix(a.Reason, "upstream error") {
		t.Fatalf("alert %+v", a)
	}
}

func TestAlertWindowWarningThenResumed(t *testing.T) {
	f := newAlertFixture(t, store.KeyPolicy{})
	reset := f.clk.Now().Add(90 * time.Minute).Truncate(time.Second)
	warn := fakeupstream.Fault{Header: http.Header{
		"Anthropic-Ratelimit-Unified-Status":    {"allowed_warning"},
		"Anthropic-Ratelimit-Unified-5h-Status": {"allowed_warning"},
		"Anthropic-Ratelimit-Unified-5h-Reset":  {strconv.FormatInt(reset.Unix(), 10)},
	}}
	for range 3 {
		f.fake.Push(warn)
		if w := f.post(hiBody, nil); w.Code != http.StatusOK {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	}
	a := f.alerts(t, 1)[0]
	if a.Event != notify.AccountWindowWarning || a.Until == nil || !a.Until.Equal(reset) || !strings.Contains(a.Text, "The window resets at ") {
		t.Fatalf("alert %+v", a)
	}
	f.clk.Advance(91 * time.Minute)
	if r := f.alerts(t, 2)[1]; r.Event != notify.AccountWindowResumed || r.Account.ID != "a1" {
		t.Fatalf("resumed %+v", r)
	}
}

// TestAlertKeyOverLimit: the second request in a one-request window is
// refused; the key's admin hears once, however often the key retries.
func TestAlertKeyOverLimit(t *testing.T) {
	f := newAlertFixture(t, store.KeyPolicy{RateWindow: time.Minute, RateRequests: 1})
	if w := f.post(hiBody, nil); w.Code != http.StatusOK {
		t.Fatalf("first: %d %s", w.Code, w.Body)
	}
	for range 3 {
		if w := f.post(hiBody, nil); w.Code != http.StatusTooManyRequests {
			t.Fatalf("over the window: %d %s", w.Code, w.Body)
		}
	}
	a := f.alerts(t, 1)[0]
	if a.Event != notify.KeyOverLimit || a.Key == nil || a.Key.ID != "k1" || a.Key.Name != "alice" ||
		a.Limit != policy.CodeRateWindowExceeded || a.Until == nil || a.Reason == "" {
		t.Fatalf("alert %+v", a)
	}
}

// TestAlertHungChannelDoesNotDelayRequests: with the only channel
// hanging (for its whole 5 s timeout), requests that raise alerts answer
// as fast as without.
func TestAlertHungChannelDoesNotDelayRequests(t *testing.T) {
	f := newAlertFixture(t, store.KeyPolicy{})
	f.rcv.SetDefault(notifytest.Reply{Hang: true})
	for i, fault := range []fakeupstream.Fault{
		{Status: 429, Header: http.Header{"Retry-After": {"1"}}},
		{Status: 500},
		{Status: 401},
	} {
		f.fake.Push(fault)
		start := time.Now()
		f.post(hiBody, nil)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("request %d took %v with a hung alert channel", i, d)
		}
		f.clk.Advance(2 * time.Minute)
	}
	// The first alert is stuck in the hung channel; it did reach it.
	f.rcv.Wait(t, 1, 3*time.Second)
}
