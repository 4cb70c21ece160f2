package relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/provider"
	"github.com/crs-relay/crs/internal/provider/anthropic"
	"github.com/crs-relay/crs/internal/store"
)

// rest records a failed attempt's cooldown: for the whole account, or for
// one model family when the outcome is narrowed to it.
func (r *Relay) rest(ctx context.Context, acct store.Account, o provider.Outcome) {
	if o.Cooldown == store.CooldownNone && o.Family == "" {
		return // a failover that says nothing against the account
	}
	ctx = context.WithoutCancel(ctx)
	var err error
	if o.Family != "" {
		err = r.sched.LimitFamily(ctx, acct.ID, o.Family, o.Until)
	} else {
		err = r.sched.Rest(ctx, acct.ID, o.Cooldown, o.Until, o.Reason)
	}
	if err != nil {
		r.log.Error("cannot record cooldown", "account", acct.ID, "err", err)
	}
	// After the store has the rest, so the alert's recovery check finds it.
	r.alerts.AccountResting(acct, o.Family, o.Cooldown, o.Until, o.Reason) // alerts hook: never blocks
}

// observeLimits reads the subscription quota headers of any upstream answer
// (anthropic-ratelimit-unified-*): it keeps the account's 5-hour window
// current and, when the account asks for it, pauses the account once the
// window reaches allowed_warning, until the window resets. The pause is an
// ordinary rate_limited cooldown ending at the reset, so the account comes
// back by itself. API-key accounts get no such headers; nothing happens.
func (r *Relay) observeLimits(ctx context.Context, acct store.Account, status int, h http.Header) {
	lim, ok := anthropic.ReadLimits(h)
	if !ok {
		return
	}
	w, ok := lim.Window5h()
	if !ok {
		return
	}
	ctx = context.WithoutCancel(ctx)
	if err := r.sched.ObserveWindow(ctx, acct.ID, w); err != nil {
		r.log.Error("cannot record the 5-hour window", "account", acct.ID, "err", err)
	}
	r.alerts.WindowWarning(acct, w) // alerts hook: warns once per window at allowed_warning
	if status/100 == 2 && w.Status == store.WindowWarning && acct.Options.AutoPauseOnWarning && r.now().Before(w.End) {
		r.log.Info("account paused: its 5-hour window reached allowed_warning", "account", acct.ID, "until", w.End)
		if err := r.sched.Rest(ctx, acct.ID, store.CooldownRateLimited, w.End,
			"auto-paused: the 5-hour window reached allowed_warning; resumes when it resets"); err != nil {
			r.log.Error("cannot pause account", "account", acct.ID, "err", err)
		}
	}
}

// isSubscription reports whether the account is a Claude subscription
// (OAuth or setup-token) rather than an API key.
func isSubscription(a store.Account) bool {
	return a.Type == store.TypeOAuth || a.Type == store.TypeSetupToken
}

// accountLease bounds how long a crashed instance's slot on an account
// stays taken.
const accountLease = 15 * time.Minute

// errAccountFull says an account is at its max_concurrency.
var errAccountFull = errors.New("the account is at its concurrency limit")

// accountSlot takes one of the account's max_concurrency slots for the
// call, or says the account is full: the call then goes to another account
// without resting this one. The slot lives in the limit counters, so every
// instance counts against the same cap.
func (r *Relay) accountSlot(ctx context.Context, acct store.Account, c *call) (free func(), err error) {
	if r.counters == nil {
		return func() {}, nil
	}
	name := "acct-slots:" + string(acct.ID)
	holder := fmt.Sprintf("%s#%d", c.id, c.attempts)
	ok, err := r.counters.Acquire(ctx, name, holder, acct.Options.MaxConcurrency, accountLease)
	if err != nil {
		return nil, fmt.Errorf("concurrency counters: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("%w (%d)", errAccountFull, acct.Options.MaxConcurrency)
	}
	return func() {
		if err := r.counters.Release(context.WithoutCancel(ctx), name, holder); err != nil {
			r.log.Warn("cannot release an account slot; its lease will expire", "account", acct.ID, "err", err)
		}
	}, nil
}

// chargeAccount adds a recorded response's real cost to the account's
// spend today and, for an API-key account with a daily quota, rests the
// account until the next midnight (TIMEZONE) once the quota is reached.
// The rest is an ordinary rate_limited cooldown, so it survives restarts
// and every instance sees it.
func (r *Relay) chargeAccount(ctx context.Context, acct store.Account, rec store.UsageRecord) {
	quota := acct.Options.DailyQuota
	if quota <= 0 || acct.Type != store.TypeAPIKey || r.counters == nil {
		return
	}
	now := r.now().In(r.cfg.Location)
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, r.cfg.Location)
	next := day.AddDate(0, 0, 1)
	name := "acct-spend:" + string(acct.ID) + ":" + day.Format("2006-01-02")
	spent, err := seededAdd(ctx, r.counters, name, rec.CostPico, next.Add(time.Hour), func() (int64, error) {
		if r.spend == nil {
			return rec.CostPico, nil
		}
		sum, err := r.spend(ctx, store.UsageFilter{AccountID: acct.ID, From: day})
		if err != nil {
			return 0, err
		}
		var total int64
		for _, row := range sum.Accounts {
			total += row.CostPico
		}
		return total, nil
	})
	if err != nil {
		r.log.Warn("cannot count the account's daily spend", "account", acct.ID, "err", err)
		return
	}
	if spent >= quota {
		reason := fmt.Sprintf("daily quota of $%s reached ($%s spent); resumes at midnight",
			pricing.FromPico(quota).String(), pricing.FromPico(spent).StringFixed(2))
		if err := r.sched.Rest(context.WithoutCancel(ctx), acct.ID, store.CooldownRateLimited, next, reason); err != nil {
			r.log.Error("cannot rest an account over its daily quota", "account", acct.ID, "err", err)
		}
	}
}

// seededAdd adds delta to a spend counter, first seeding it from stored
// usage when the counter does not exist yet (after a restart, or on a new
// day): the seed already holds the record just stored, so the first
// caller adds the seed instead of delta. A marker counter makes sure only
// one caller seeds.
func seededAdd(ctx context.Context, c store.LimitCounters, name string, delta int64, expires time.Time, seed func() (int64, error)) (int64, error) {
	if _, ok, err := c.Get(ctx, name); err != nil {
		return 0, err
	} else if ok {
		return c.Add(ctx, name, delta, expires)
	}
	first, err := c.Add(ctx, name+":seeded", 1, expires)
	if err != nil {
		return 0, err
	}
	if first != 1 {
		return c.Add(ctx, name, delta, expires)
	}
	total, err := seed()
	if err != nil {
		// Unseeded, the counter would understate the spend for the rest
		// of the day: let the next caller try again.
		c.Add(ctx, name+":seeded", -1, expires)
		return 0, err
	}
	return c.Add(ctx, name, total, expires)
}
