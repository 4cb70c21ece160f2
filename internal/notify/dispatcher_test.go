package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/notify/notifytest"
	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/memcounters"
)

// logBuffer collects a Dispatcher's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond for up to 3 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// harness is a running Dispatcher on a real store with its log.
type harness struct {
	d    *Dispatcher
	st   store.Store
	cs   ChannelStore
	log  *logBuffer
	stop func()
}

func startDispatcher(t *testing.T, st store.Store, opts Options, chs ...Channel) *harness {
	t.Helper()
	if st == nil {
		s, _ := testStore(t)
		st = s
	}
	box := opts.Box
	if box == nil {
		box, _ = secret.NewBox(strings.Repeat("k", 32))
	}
	cs := ChannelStore{Settings: st, Box: box}
	for _, c := range chs {
		if _, err := cs.Add(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	lb := &logBuffer{}
	opts.Store, opts.Box = st, box
	opts.Logger = slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opts.Backoff == 0 {
		opts.Backoff = 10 * time.Millisecond
	}
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.WatchEvery == 0 {
		opts.WatchEvery = 20 * time.Millisecond
	}
	if opts.ReloadEvery == 0 {
		opts.ReloadEvery = 20 * time.Millisecond
	}
	opts.Location = time.UTC
	d := New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	h := &harness{d: d, st: st, cs: cs, log: lb, stop: func() { cancel(); <-done }}
	t.Cleanup(h.stop)
	return h
}

func hook(r *notifytest.Receiver, name string) Channel {
	return Channel{Name: name, Type: TypeWebhook, URL: r.URL() + "/" + name}
}

func events(t *testing.T, reqs []notifytest.Request) []webhookDoc {
	t.Helper()
	out := make([]webhookDoc, len(reqs))
	for i, r := range reqs {
		if err := json.Unmarshal(r.Body, &out[i]); err != nil {
			t.Fatalf("not a webhook document: %s", r.Body)
		}
	}
	return out
}

// settle waits a little and checks that exactly n requests arrived: a
// duplicate would have had time to show up.
func settle(t *testing.T, r *notifytest.Receiver, n int) []notifytest.Request {
	t.Helper()
	r.Wait(t, n, 3*time.Second)
	time.Sleep(100 * time.Millisecond)
	got := r.Requests()
	if len(got) != n {
		t.Fatalf("%d messages, want exactly %d", len(got), n)
	}
	return got
}

var acct1 = store.Account{ID: "acc_1", Name: "team-max", Platform: store.PlatformClaude}

func TestDedupPerSubjectAndWindow(t *testing.T) {
	t.Parallel()
	rcv := notifytest.NewReceiver(t)
	clk := &clock{t: time.Now()}
	h := startDispatcher(t, nil, Options{Now: clk.Now}, hook(rcv, "a"))
	until := clk.Now().Add(time.Minute)
	for range 5 {
		h.d.AccountResting(acct1, "", store.CooldownRateLimited, until, "429")
	}
	h.d.AccountResting(store.Account{ID: "acc_2", Name: "b"}, "", store.CooldownRateLimited, until, "429")
	h.d.AccountResting(acct1, "opus", store.CooldownRateLimited, until, "opus limit")
	h.d.AccountResting(acct1, "", store.CooldownBlocked, until, "banned")
	got := events(t, settle(t, rcv, 4))
	seen := map[string]int{}
	for _, e := range got {
		seen[string(e.Event)+" "+string(e.Account.ID)+" "+e.Family]++
	}
	want := map[string]int{"account.rate_limited acc_1 ": 1, "account.rate_limited acc_2 ": 1, "account.rate_limited acc_1 opus": 1, "account.blocked acc_1 ": 1}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("messages %v, want %v", seen, want)
	}
	// Within the window: still suppressed. After it: sent again.
	clk.Advance(RateLimitedWindow - time.Second)
	h.d.AccountResting(acct1, "", store.CooldownRateLimited, until, "429")
	clk.Advance(2 * time.Second)
	h.d.AccountResting(acct1, "", store.CooldownRateLimited, until, "429")
	settle(t, rcv, 5)
}

func TestKeyOverLimitOncePerPeriod(t *testing.T) {
	t.Parallel()
	rcv := notifytest.NewReceiver(t)
	clk := &clock{t: time.Now()}
	h := startDispatcher(t, nil, Options{Now: clk.Now}, hook(rcv, "a"))
	k := store.Key{ID: "key_1", Name: "alice"}
	reset := clk.Now().Add(3 * time.Hour)
	for range 3 {
		h.d.KeyOverLimit(k, "daily_cost_limit_exceeded", reset, "daily cost limit of $5.00 reached ($5.01 spent)")
	}
	h.d.KeyOverLimit(k, "rate_window_exceeded", clk.Now().Add(time.Minute), "60 requests per 1m0s")
	got := events(t, settle(t, rcv, 2))
	if got[0].Key == nil || got[0].Key.Name != "alice" || got[0].Limit != "daily_cost_limit_exceeded" || got[0].Until == nil || !got[0].Until.Equal(reset.UTC().Truncate(time.Nanosecond)) {
		t.Errorf("first %+v", got[0])
	}
	if !strings.Contains(got[0].Text, "Detail: daily cost limit of $5.00 reached ($5.01 spent)") {
		t.Errorf("text %q", got[0].Text)
	}
	// The short window's alert repeats after KeyLimitMin, not after a
	// minute; the daily one not before it resets.
	clk.Advance(KeyLimitMin + time.Second)
	h.d.KeyOverLimit(k, "rate_window_exceeded", clk.Now().Add(time.Minute), "again")
	h.d.KeyOverLimit(k, "daily_cost_limit_exceeded", reset, "again")
	settle(t, rcv, 3)
}

func TestRetriedWithBackoffThenSent(t *testing.T) {
	t.Parallel()
	rcv := notifytest.NewReceiver(t)
	rcv.Push(notifytest.Reply{Status: 500}, notifytest.Reply{Status: 502})
	h := startDispatcher(t, nil, Options{Backoff: 40 * time.Millisecond}, hook(rcv, "a"))
	h.d.UsageSpooled(3, "/data/spool/spool-20250101.jsonl")
	reqs := settle(t, rcv, 3)
	// Waits of 40 ms then 80 ms between the tries.
	if gap1, gap2 := reqs[1].Time.Sub(reqs[0].Time), reqs[2].Time.Sub(reqs[1].Time); gap1 < 40*time.Millisecond || gap2 < 80*time.Millisecond {
		t.Errorf("backoff gaps %v, %v", gap1, gap2)
	}
	e := events(t, reqs[2:])[0]
	if e.Event != UsageSpooled || e.Count != 3 || !strings.Contains(e.Text, "3 usage records were not committed to the store in time and went to /data/spool/spool-20250101.jsonl") {
		t.Errorf("message %+v", e)
	}
	waitFor(t, "the delivery in the log", func() bool { return strings.Contains(h.log.String(), "alert sent") })
	log := h.log.String()
	if strings.Count(log, "alert delivery failed; retrying") != 2 || !strings.Contains(log, `msg="alert sent" channel=a type=webhook event=usage.spooled attempt=3`) {
		t.Errorf("log:\n%s", log)
	}
}

// TestFailingChannelIsReported: a channel that keeps failing gets every
// try, then one error in the log; the other channel is served at once and
// nothing else breaks.
func TestFailingChannelIsReported(t *testing.T) {
	t.Parallel()
	bad, good := notifytest.NewReceiver(t), notifytest.NewReceiver(t)
	bad.SetDefault(notifytest.Reply{Status: 503})
	badCh := hook(bad, "broken")
	badCh.URL += "?token=TOPSECRET"
	h := startDispatcher(t, nil, Options{Attempts: 3}, badCh, hook(good, "fine"))
	h.d.AccountResting(acct1, "", store.CooldownCredentialDead, time.Now().Add(time.Hour), "refresh rejected: invalid_grant")
	good.Wait(t, 1, 3*time.Second)
	settle(t, bad, 3)
	waitFor(t, "the failure in the log", func() bool { return strings.Contains(h.log.String(), "alert not delivered") })
	log := h.log.String()
	if !strings.Contains(log, `level=ERROR msg="alert not delivered" channel=broken type=webhook event=account.credential_dead attempts=3`) {
		t.Errorf("log:\n%s", log)
	}
	if strings.Contains(log, "TOPSECRET") {
		t.Errorf("the log reveals the channel's token:\n%s", log)
	}
	// The dispatcher still works.
	h.d.UsageSpooled(1, "f")
	good.Wait(t, 2, 3*time.Second)
}

func TestPermanentFailureNotRetried(t *testing.T) {
	t.Parallel()
	rcv := notifytest.NewReceiver(t)
	rcv.SetDefault(notifytest.Reply{Status: 404, Body: "no such hook"})
	h := startDispatcher(t, nil, Options{}, hook(rcv, "gone"))
	h.d.UsageSpooled(1, "f")
	settle(t, rcv, 1)
	waitFor(t, "the failure in the log", func() bool { return strings.Contains(h.log.String(), "alert not delivered") })
	if !strings.Contains(h.log.String(), "attempts=1") || !strings.Contains(h.log.String(), "no such hook") {
		t.Errorf("log:\n%s", h.log.String())
	}
}

// TestNeverBlocks: raising events costs the caller microseconds even
// when a channel hangs, when the dispatcher is not running, and when its
// queue is full; a hung channel delays no other channel.
func TestNeverBlocks(t *testing.T) {
	t.Parallel()
	hung, fine := notifytest.NewReceiver(t), notifytest.NewReceiver(t)
	hung.SetDefault(notifytest.Reply{Hang: true})
	h := startDispatcher(t, nil, Options{Timeout: time.Minute}, hook(hung, "hung"), hook(fine, "fine"))
	hung.Push(notifytest.Reply{Hang: true})
	start := time.Now()
	var slowest time.Duration
	for i := range 2000 {
		t0 := time.Now()
		h.d.AccountResting(store.Account{ID: store.AccountID(fmt.Sprint("acc_", i))}, "", store.CooldownRateLimited, time.Now().Add(time.Minute), "429")
		slowest = max(slowest, time.Since(t0))
	}
	total := time.Since(start)
	t.Logf("2000 events raised in %v, slowest call %v", total, slowest)
	// A design that waited on delivery would hold a caller for the
	// minute-long timeout; these bounds only absorb a loaded machine.
	if total > 10*time.Second || slowest > 5*time.Second {
		t.Errorf("raising events took %v (slowest %v)", total, slowest)
	}
	// The healthy channel got the first messages although the other
	// hangs on its first.
	fine.Wait(t, 1, 3*time.Second)
	if strings.Contains(h.log.String(), "level=ERROR") && !strings.Contains(h.log.String(), "backlog is full") {
		t.Errorf("log:\n%s", h.log.String())
	}

	// Not running, tiny queue: extra events are dropped and logged.
	lb := &logBuffer{}
	st, box := testStore(t)
	idle := New(Options{Store: st, Box: box, QueueSize: 2, Logger: slog.New(slog.NewTextHandler(lb, nil))})
	start = time.Now()
	for i := range 100 {
		idle.UsageSpooled(i, "f")
		idle.KeyOverLimit(store.Key{ID: store.KeyID(fmt.Sprint(i))}, "x", time.Time{}, "")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a full queue held the caller for %v", d)
	}
	if !strings.Contains(lb.String(), "alert queue full; alert dropped") {
		t.Errorf("no drop logged:\n%s", lb.String())
	}

	// A nil Dispatcher is a valid, silent sink.
	var none *Dispatcher
	none.AccountResting(acct1, "", store.CooldownBlocked, time.Now(), "x")
	none.WindowWarning(acct1, store.Window{Status: store.WindowWarning, End: time.Now().Add(time.Hour)})
	none.KeyOverLimit(store.Key{}, "", time.Time{}, "")
	none.UsageSpooled(1, "")
	none.Notify(Event{Kind: Test})
}

func TestChannelFilterAndLanguage(t *testing.T) {
	t.Parallel()
	keys, all := notifytest.NewReceiver(t), notifytest.NewReceiver(t)
	kc := hook(keys, "keys")
	kc.Events, kc.Lang = []Kind{KeyOverLimit}, LangChinese
	h := startDispatcher(t, nil, Options{}, kc, hook(all, "all"))
	h.d.AccountResting(acct1, "", store.CooldownRateLimited, time.Now().Add(time.Minute), "429")
	h.d.KeyOverLimit(store.Key{ID: "key_1", Name: "alice"}, "total_cost_limit_exceeded", time.Time{}, "total cost limit reached")
	settle(t, all, 2)
	got := events(t, settle(t, keys, 1))
	if got[0].Event != KeyOverLimit || got[0].Lang != LangChinese || got[0].Title != "[crs] Key 超出限额：alice" ||
		!strings.Contains(got[0].Text, "该限额不会自动重置") {
		t.Errorf("zh key message %+v", got[0])
	}
}

func TestCoolingRepeatedly(t *testing.T) {
	t.Parallel()
	rcv := notifytest.NewReceiver(t)
	clk := &clock{t: time.Now()}
	h := startDispatcher(t, nil, Options{Now: clk.Now}, hook(rcv, "a"))
	rest := func(d time.Duration) {
		h.d.AccountResting(acct1, "", store.CooldownTransient, clk.Now().Add(d), "upstream error: overloaded")
	}
	rest(time.Minute)
	clk.Advance(10 * time.Second)
	rest(time.Minute) // the same cooldown, seen by a concurrent request
	clk.Advance(2 * time.Minute)
	rest(time.Minute)
	time.Sleep(50 * time.Millisecond)
	if n := len(rcv.Requests()); n != 0 {
		t.Fatalf("%d messages after two cooldowns", n)
	}
	clk.Advance(2 * time.Minute)
	rest(time.Minute) // the third
	clk.Advance(2 * time.Minute)
	rest(time.Minute) // the fourth: within the dedup window
	e := events(t, settle(t, rcv, 1))[0]
	if e.Event != AccountCoolingRepeatedly || e.Count != 3 || !strings.Contains(e.Text, "3 cooldowns within 30m") ||
		!strings.Contains(e.Text, "Last reason: upstream error: overloaded") {
		t.Errorf("message %+v", e)
	}
	// Cooldowns older than the span do not count.
	other := store.Account{ID: "acc_2", Name: "b"}
	for range 3 {
		h.d.AccountResting(other, "", store.CooldownTransient, clk.Now().Add(time.Minute), "x")
		clk.Advance(CoolingSpan/2 + time.Minute)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(rcv.Requests()); n != 1 {
		t.Fatalf("spread-out cooldowns raised an alert (%d messages)", n)
	}
}

func TestReloadPicksUpChannels(t *testing.T) {
	t.Parallel()
	rcv := notifytest.NewReceiver(t)
	h := startDispatcher(t, nil, Options{})
	h.d.UsageSpooled(1, "before")
	time.Sleep(50 * time.Millisecond)
	if _, err := h.cs.Add(context.Background(), hook(rcv, "late")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reload", func() bool { return len(h.d.Channels()) == 1 })
	h.d.KeyOverLimit(store.Key{ID: "k"}, "x", time.Time{}, "")
	if e := events(t, settle(t, rcv, 1))[0]; e.Event != KeyOverLimit {
		t.Fatalf("got %s", e.Event)
	}
	// Removing it stops deliveries.
	if _, err := h.cs.Remove(context.Background(), "late"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reload", func() bool { return len(h.d.Channels()) == 0 })
	h.d.KeyOverLimit(store.Key{ID: "k2"}, "x", time.Time{}, "")
	settle(t, rcv, 1)
}

// TestSharedDedup: two instances sharing limit counters send one message
// for an event both see.
func TestSharedDedup(t *testing.T) {
	t.Parallel()
	rcv := notifytest.NewReceiver(t)
	st, box := testStore(t)
	counters := memcounters.New(nil)
	a := startDispatcher(t, st, Options{Box: box, Counters: counters}, hook(rcv, "a"))
	b := startDispatcher(t, st, Options{Box: box, Counters: counters})
	waitFor(t, "b's channels", func() bool { return len(b.d.Channels()) == 1 })
	a.d.AccountResting(acct1, "", store.CooldownBlocked, time.Now().Add(time.Hour), "banned")
	b.d.AccountResting(acct1, "", store.CooldownBlocked, time.Now().Add(time.Hour), "banned")
	settle(t, rcv, 1)
}
