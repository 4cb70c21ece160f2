package notify

import (
	"context"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// watch runs every WatchEvery on the Run goroutine: it pings the store,
// says so when an alerted account serves again or a warned 5-hour window
// resets, and forgets dedup entries that ran out.
func (d *Dispatcher) watch(ctx context.Context) {
	d.pingStore(ctx)
	d.checkRecoveries(ctx)
	d.checkWindows()
	d.prune()
}

// pingStore raises StoreUnreachable after StoreFailures failed pings in a
// row (and again every StoreWindow while it lasts), and StoreRecovered
// once the store answers after that.
func (d *Dispatcher) pingStore(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, min(max(d.opts.WatchEvery, time.Second), 5*time.Second))
	err := d.opts.Store.Ping(pctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	if err == nil {
		d.pingFails = 0
		if d.storeDown {
			d.storeDown = false
			// A new outage is news at once, whatever the last one's window.
			d.forget(string(StoreUnreachable) + "|" + string(StoreUnreachable))
			d.Notify(Event{Kind: StoreRecovered})
		}
		return
	}
	d.pingFails++
	if d.pingFails >= d.opts.StoreFailures {
		d.storeDown = true
		d.Notify(Event{Kind: StoreUnreachable, Reason: err.Error()})
	}
}

// checkRecoveries reads the accounts when an alert awaits its end and
// raises AccountRecovered for each that serves again. A rate limit ends
// when its rest runs out. A dead credential or a ban ends only when the
// cooldown was cleared (`crs accounts reset`, onboarding again) or the
// credential changed since the alert: their rest running out merely lets
// crs try the account once more. An account that was removed or disabled
// meanwhile is forgotten without a message.
func (d *Dispatcher) checkRecoveries(ctx context.Context) {
	if len(d.opens) == 0 {
		return
	}
	accts, err := d.opts.Store.ListAccounts(ctx)
	if err != nil {
		return // the ping reports an unreachable store
	}
	byID := make(map[store.AccountID]store.Account, len(accts))
	for _, a := range accts {
		byID[a.ID] = a
	}
	now := d.opts.Now()
	for key, o := range d.opens {
		a, ok := byID[o.account.ID]
		if !ok || a.Disabled {
			delete(d.opens, key)
			continue
		}
		resting := a.Status(now) != store.AccountActive
		if _, limited := a.Quota.FamilyLimited(o.family, now); o.family != "" && limited {
			resting = true
		}
		if resting {
			o.seen = true
			d.opens[key] = o
			continue
		}
		switch o.kind {
		case AccountRateLimited:
			if !o.seen && now.Before(o.until) {
				continue
			}
		default:
			cleared := o.seen && a.CooldownKind == store.CooldownNone
			if !cleared && !a.UpdatedAt.After(o.since) {
				continue
			}
		}
		delete(d.opens, key)
		d.Notify(Event{Kind: AccountRecovered, Account: accountRef(a), Family: o.family, Was: o.kind})
	}
}

// checkWindows raises AccountWindowResumed for each warned window that
// has reset.
func (d *Dispatcher) checkWindows() {
	now := d.opts.Now()
	for id, ev := range d.windows {
		if now.Before(ev.Until) {
			continue
		}
		delete(d.windows, id)
		d.Notify(Event{Kind: AccountWindowResumed, Account: ev.Account, Until: ev.Until})
	}
}

// prune drops dedup entries and cooldown counts that no longer matter.
func (d *Dispatcher) prune() {
	now := d.opts.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, until := range d.recent {
		if !now.Before(until) {
			delete(d.recent, k)
		}
	}
	for id, t := range d.cooling {
		if now.After(t.lastUntil) && (len(t.starts) == 0 || now.Sub(t.starts[len(t.starts)-1]) > CoolingSpan) {
			delete(d.cooling, id)
		}
	}
}
