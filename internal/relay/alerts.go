package relay

import (
	"time"

	"github.com/crs-relay/crs/internal/policy"
	"github.com/crs-relay/crs/internal/store"
)

// Alerts hears what the relay learns that an admin should be told about.
// notify.Dispatcher implements it. Every call must return at once: the
// relay makes them on the request's path.
type Alerts interface {
	// AccountResting: an account was put to rest (a cooldown of kind until
	// the given time, or a limit on one model family when family is set).
	AccountResting(acct store.Account, family string, kind store.CooldownKind, until time.Time, reason string)
	// WindowWarning: the upstream reported the account's 5-hour window
	// (called on every answer that carries it; the receiver filters).
	WindowWarning(acct store.Account, w store.Window)
	// KeyOverLimit: a key was refused for a limit (the denial's code),
	// which resets at resetAt (zero: never by itself).
	KeyOverLimit(k store.Key, limit string, resetAt time.Time, message string)
}

// noAlerts is the Alerts of a relay built without one.
type noAlerts struct{}

func (noAlerts) AccountResting(store.Account, string, store.CooldownKind, time.Time, string) {}
func (noAlerts) WindowWarning(store.Account, store.Window)                                   {}
func (noAlerts) KeyOverLimit(store.Key, string, time.Time, string)                           {}

// alertDenial reports a key refused for one of its limits — the rate
// window, a cost limit, its concurrency — and not for a full wait, a
// client that left or limit counters that failed, which say nothing about
// the key.
func (r *Relay) alertDenial(k store.Key, d *policy.Denial) {
	switch d.Code {
	case policy.CodeRateWindowExceeded, policy.CodeTotalCostExceeded, policy.CodeWeeklyCostExceeded,
		policy.CodeDailyCostExceeded, policy.CodeDailyOpusCostExceeded, policy.CodeConcurrencyExceeded:
		r.alerts.KeyOverLimit(k, d.Code, d.ResetAt, d.Message)
	}
}
