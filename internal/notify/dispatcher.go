package notify

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
)

// Dispatcher defaults.
const (
	DefaultAttempts    = 4
	DefaultBackoff     = 2 * time.Second
	DefaultQueueSize   = 256
	DefaultOutboxSize  = 64
	DefaultWatchEvery  = 30 * time.Second
	DefaultReloadEvery = time.Second
	// DefaultStoreFailures is how many pings in a row must fail before the
	// store counts as unreachable, so one slow answer is not an outage.
	DefaultStoreFailures = 2
)

// Options configure a Dispatcher. Store and Box are required.
type Options struct {
	// Store holds the channel list (a sealed setting); the Dispatcher also
	// pings it and reads accounts to see them recover.
	Store store.Store
	// Box opens the channel list.
	Box *secret.Box
	// Counters, when set, deduplicate across instances too (shared mode):
	// of several instances that see the same event, one sends it. nil
	// deduplicates within this process.
	Counters store.LimitCounters
	// HTTP sends webhook requests; nil means http.DefaultClient (which
	// honours HTTPS_PROXY).
	HTTP *http.Client
	// Timeout bounds one delivery attempt; 0 means DefaultTimeout.
	Timeout time.Duration
	// Attempts is how often one message is tried per channel; 0 means
	// DefaultAttempts. Waits between tries start at Backoff (0 means
	// DefaultBackoff) and double.
	Attempts int
	Backoff  time.Duration
	// QueueSize bounds events waiting for the dispatcher; OutboxSize the
	// messages waiting for one channel. Past either, alerts are dropped
	// (and logged), never waited for.
	QueueSize  int
	OutboxSize int
	// WatchEvery is how often the store is pinged and resting accounts
	// are checked for recovery; ReloadEvery how often the store's change
	// version is polled for channel changes.
	WatchEvery  time.Duration
	ReloadEvery time.Duration
	// StoreFailures is the number of failed pings in a row that make the
	// store unreachable; 0 means DefaultStoreFailures.
	StoreFailures int
	// Instance names this crs in messages; "" means the host name.
	Instance string
	// Location is the zone times are shown in; nil means local.
	Location *time.Location
	// Logger receives deliveries and failures (never URLs or tokens); nil
	// discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Dispatcher turns events into delivered alerts. Its event methods
// (AccountResting, WindowWarning, KeyOverLimit, UsageSpooled, Notify) are
// safe for concurrent use, never block, and do nothing on a nil
// *Dispatcher; delivery happens only while Run runs.
type Dispatcher struct {
	opts  Options
	log   *slog.Logger
	send  *Sender
	queue chan Event

	mu      sync.Mutex
	recent  map[string]time.Time // kind and subject → repeats suppressed until
	cooling map[store.AccountID]*coolingTrack

	chMu     sync.RWMutex
	channels []Channel

	obMu     sync.Mutex
	outboxes map[string]chan Event
	workers  sync.WaitGroup

	// Owned by the Run goroutine.
	opens     map[string]openRest
	windows   map[store.AccountID]Event
	pingFails int
	storeDown bool
	version   uint64
}

// openRest is an account alert that was sent and whose end is awaited,
// so a recovery message can follow.
type openRest struct {
	account AccountRef
	kind    Kind
	family  string
	since   time.Time // when the alert was raised
	until   time.Time // when the rest was to end
	// seen: a watch found the account resting. Until then the store may
	// not show the rest yet (another instance writes it, or the write is
	// still on its way), and an account that looks fine has not
	// recovered.
	seen bool
}

// coolingTrack counts an account's separate short cooldowns.
type coolingTrack struct {
	starts    []time.Time
	lastUntil time.Time
}

// New returns a Dispatcher; start delivering with Run.
func New(opts Options) *Dispatcher {
	if opts.Attempts <= 0 {
		opts.Attempts = DefaultAttempts
	}
	if opts.Backoff <= 0 {
		opts.Backoff = DefaultBackoff
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.OutboxSize <= 0 {
		opts.OutboxSize = DefaultOutboxSize
	}
	if opts.WatchEvery <= 0 {
		opts.WatchEvery = DefaultWatchEvery
	}
	if opts.ReloadEvery <= 0 {
		opts.ReloadEvery = DefaultReloadEvery
	}
	if opts.StoreFailures <= 0 {
		opts.StoreFailures = DefaultStoreFailures
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Dispatcher{
		opts:     opts,
		log:      log,
		send:     &Sender{HTTP: opts.HTTP, Timeout: opts.Timeout, Instance: opts.Instance, Location: opts.Location, Now: opts.Now},
		queue:    make(chan Event, opts.QueueSize),
		recent:   map[string]time.Time{},
		cooling:  map[store.AccountID]*coolingTrack{},
		outboxes: map[string]chan Event{},
		opens:    map[string]openRest{},
		windows:  map[store.AccountID]Event{},
	}
}

func accountRef(a store.Account) *AccountRef {
	return &AccountRef{ID: a.ID, Name: a.Name, Platform: a.Platform}
}

// AccountResting hears that an account was put to rest (the relay's
// cooldowns, the OAuth refresher's dead credentials): a rate limit (of
// the whole account, or of one model family when family is set), a dead
// credential or a ban alert at once; short cooldowns only when they keep
// coming back (CoolingThreshold within CoolingSpan).
func (d *Dispatcher) AccountResting(acct store.Account, family string, kind store.CooldownKind, until time.Time, reason string) {
	if d == nil {
		return
	}
	ev := Event{Account: accountRef(acct), Family: family, Until: until, Reason: reason}
	switch {
	case family != "" || kind == store.CooldownRateLimited:
		ev.Kind = AccountRateLimited
	case kind == store.CooldownCredentialDead:
		ev.Kind = AccountCredentialDead
	case kind == store.CooldownBlocked:
		ev.Kind = AccountBlocked
	case kind == store.CooldownTransient:
		n := d.countCooling(acct.ID, until)
		if n < CoolingThreshold {
			return
		}
		ev.Kind, ev.Count, ev.Until = AccountCoolingRepeatedly, n, time.Time{}
	default:
		return
	}
	d.Notify(ev)
}

// countCooling records a short cooldown ending at until and returns how
// many separate ones the account had within CoolingSpan. A cooldown
// reported while the previous one still runs (concurrent requests failing
// together) is the same one.
func (d *Dispatcher) countCooling(id store.AccountID, until time.Time) int {
	now := d.opts.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.cooling[id]
	if t == nil {
		t = &coolingTrack{}
		d.cooling[id] = t
	}
	if now.Before(t.lastUntil) {
		t.lastUntil = later(t.lastUntil, until)
		return 0
	}
	t.lastUntil = until
	t.starts = append(slices.DeleteFunc(t.starts, func(s time.Time) bool { return now.Sub(s) > CoolingSpan }), now)
	return len(t.starts)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// WindowWarning hears a subscription account's 5-hour window as the
// upstream reported it; only allowed_warning raises an alert, once per
// window. When the window resets a resumed message follows.
func (d *Dispatcher) WindowWarning(acct store.Account, w store.Window) {
	if d == nil || w.Status != store.WindowWarning || !d.opts.Now().Before(w.End) {
		return
	}
	d.Notify(Event{Kind: AccountWindowWarning, Account: accountRef(acct), Until: w.End, Paused: acct.Options.AutoPauseOnWarning})
}

// KeyOverLimit hears that a key was refused for one of its limits (limit
// is the refusal's code, message its text, resetAt when the limit resets,
// zero for never); one alert per key and limit per period, at least
// KeyLimitMin apart.
func (d *Dispatcher) KeyOverLimit(k store.Key, limit string, resetAt time.Time, message string) {
	if d == nil {
		return
	}
	d.Notify(Event{Kind: KeyOverLimit, Key: &KeyRef{ID: k.ID, Name: k.Name}, Limit: limit, Until: resetAt, Reason: message})
}

// UsageSpooled hears that usage records went to the spool file.
func (d *Dispatcher) UsageSpooled(records int, file string) {
	if d == nil {
		return
	}
	d.Notify(Event{Kind: UsageSpooled, Count: records, File: file})
}

// Notify raises ev unless the same event about the same subject was
// raised within its window. It never waits: when the queue is full the
// alert is dropped and logged.
func (d *Dispatcher) Notify(ev Event) {
	if d == nil {
		return
	}
	now := d.opts.Now()
	if ev.At.IsZero() {
		ev.At = now
	}
	key := string(ev.Kind) + "|" + ev.subject()
	d.mu.Lock()
	if until, ok := d.recent[key]; ok && now.Before(until) {
		d.mu.Unlock()
		return
	}
	if w := ev.window(now); w > 0 {
		d.recent[key] = now.Add(w)
	}
	d.mu.Unlock()
	select {
	case d.queue <- ev:
	default:
		d.forget(key)
		d.log.Warn("alert queue full; alert dropped", "event", ev.Kind, "subject", ev.subject())
	}
}

// forget lifts the dedup of one kind and subject.
func (d *Dispatcher) forget(key string) {
	d.mu.Lock()
	delete(d.recent, key)
	d.mu.Unlock()
}

// Reload reads the channel list from the store now. Run also reloads by
// itself when the store's change version moves.
func (d *Dispatcher) Reload(ctx context.Context) error {
	chs, err := LoadChannels(ctx, d.opts.Store, d.opts.Box)
	if err != nil {
		return err
	}
	d.chMu.Lock()
	d.channels = chs
	d.chMu.Unlock()
	return nil
}

// Channels returns the channels the Dispatcher delivers to now.
func (d *Dispatcher) Channels() []Channel {
	d.chMu.RLock()
	defer d.chMu.RUnlock()
	return slices.Clone(d.channels)
}

func (d *Dispatcher) channel(id string) (Channel, bool) {
	d.chMu.RLock()
	defer d.chMu.RUnlock()
	for _, c := range d.channels {
		if c.ID == id {
			return c, true
		}
	}
	return Channel{}, false
}

// Run delivers alerts until ctx ends: it takes queued events, pings the
// store, watches resting accounts for recovery and reloads the channels
// when they change. It returns once every delivery has stopped.
func (d *Dispatcher) Run(ctx context.Context) {
	if v, err := d.opts.Store.ChangeVersion(ctx); err == nil {
		d.version = v
	}
	if err := d.Reload(ctx); err != nil {
		d.log.Error("alert channels not loaded", "err", err)
	}
	watch := time.NewTicker(d.opts.WatchEvery)
	defer watch.Stop()
	reload := time.NewTicker(d.opts.ReloadEvery)
	defer reload.Stop()
	changes := d.opts.Store.Changes()
	for {
		select {
		case <-ctx.Done():
			d.workers.Wait()
			return
		case ev := <-d.queue:
			d.dispatch(ctx, ev)
		case <-watch.C:
			d.watch(ctx)
		case <-reload.C:
			d.reloadIfChanged(ctx)
		case <-changes:
			d.reloadIfChanged(ctx)
		}
	}
}

func (d *Dispatcher) reloadIfChanged(ctx context.Context) {
	v, err := d.opts.Store.ChangeVersion(ctx)
	if err != nil || v == d.version {
		return
	}
	if err := d.Reload(ctx); err != nil {
		d.log.Error("alert channels not reloaded", "err", err)
		return
	}
	d.version = v
}

// sharedClaim asks the shared counters whether this instance is the first
// to raise ev in its window. Store events are left out: each instance
// reports its own view of the store, and the counters may live in it.
func (d *Dispatcher) sharedClaim(ctx context.Context, ev Event) bool {
	if d.opts.Counters == nil || ev.Kind == StoreUnreachable || ev.Kind == StoreRecovered {
		return true
	}
	now := d.opts.Now()
	w := ev.window(now)
	if w <= 0 {
		return true
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	n, err := d.opts.Counters.Add(cctx, "notify:"+string(ev.Kind)+":"+ev.subject(), 1, now.Add(w))
	// When the counters fail, sending twice beats not sending.
	return err != nil || n <= 1
}

// dispatch sends ev to every channel that wants it.
func (d *Dispatcher) dispatch(ctx context.Context, ev Event) {
	if !d.sharedClaim(ctx, ev) {
		return
	}
	d.track(ev)
	var targets []Channel
	for _, c := range d.Channels() {
		if c.Wants(ev.Kind) {
			targets = append(targets, c)
		}
	}
	d.log.Info("alert", "event", ev.Kind, "subject", ev.subject(), "channels", len(targets))
	for _, c := range targets {
		d.enqueue(ctx, c, ev)
	}
}

// track remembers sent account alerts whose end is awaited.
func (d *Dispatcher) track(ev Event) {
	if ev.Account == nil {
		return
	}
	switch ev.Kind {
	case AccountRateLimited, AccountCredentialDead, AccountBlocked:
		d.opens[string(ev.Account.ID)+"/"+ev.Family] = openRest{account: *ev.Account, kind: ev.Kind, family: ev.Family, since: ev.At, until: ev.Until}
	case AccountWindowWarning:
		d.windows[ev.Account.ID] = ev
	}
}

// enqueue hands ev to the channel's own worker, so a slow or hung channel
// holds up only its own messages.
func (d *Dispatcher) enqueue(ctx context.Context, c Channel, ev Event) {
	d.obMu.Lock()
	ob := d.outboxes[c.ID]
	if ob == nil {
		ob = make(chan Event, d.opts.OutboxSize)
		d.outboxes[c.ID] = ob
		d.workers.Add(1)
		go d.work(ctx, c.ID, ob)
	}
	d.obMu.Unlock()
	select {
	case ob <- ev:
	default:
		d.log.Error("alert dropped: the channel's backlog is full", "channel", c.Name, "type", c.Type, "event", ev.Kind)
	}
}

// work delivers one channel's messages in order until ctx ends or the
// channel is removed.
func (d *Dispatcher) work(ctx context.Context, id string, ob chan Event) {
	defer d.workers.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-ob:
			c, ok := d.channel(id)
			if !ok {
				d.obMu.Lock()
				delete(d.outboxes, id)
				d.obMu.Unlock()
				return
			}
			d.deliver(ctx, c, ev)
		}
	}
}

// deliver tries one message on one channel, waiting Backoff, then twice
// that, and so on between tries; the last failure is logged as an error.
func (d *Dispatcher) deliver(ctx context.Context, c Channel, ev Event) {
	wait := d.opts.Backoff
	for attempt := 1; ; attempt++ {
		err := d.send.Send(ctx, c, ev)
		if err == nil {
			d.log.Info("alert sent", "channel", c.Name, "type", c.Type, "event", ev.Kind, "attempt", attempt)
			return
		}
		if ctx.Err() != nil {
			return
		}
		if attempt >= d.opts.Attempts || IsPermanent(err) {
			d.log.Error("alert not delivered", "channel", c.Name, "type", c.Type, "event", ev.Kind, "attempts", attempt, "err", err)
			return
		}
		d.log.Warn("alert delivery failed; retrying", "channel", c.Name, "type", c.Type, "event", ev.Kind,
			"attempt", attempt, "retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait *= 2
	}
}
