// Package notify tells the admin of a relay when something needs them:
// an account rate-limited, banned or with a dead credential, a key over its
// limit, the store unreachable, usage records spooled. Events come in
// through a Dispatcher, which deduplicates them (one alert per subject and
// event per window), renders each in its channel's language and delivers
// it to every channel that wants it — generic JSON webhook, Telegram,
// Slack, Discord, DingTalk, Feishu, WeCom, Bark or e-mail — with retries
// and backoff, off the caller's goroutine: raising an event never blocks a
// request.
//
// Channels are data, not configuration: they live in the store under the
// setting "notify.channels", sealed as a whole with the credential box
// (webhook URLs carry tokens), and a running Dispatcher reloads them when
// the store's change version moves, so `crs notify add` takes effect
// without a restart.
package notify

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// Kind names an event. The names are stable: channels filter on them and
// the generic webhook sends them as "event".
type Kind string

// Events.
const (
	// AccountRateLimited: the upstream rate-limited an account (a 429 with
	// or without a reset, a usage limit, one model family's limit).
	AccountRateLimited Kind = "account.rate_limited"
	// AccountRecovered: an account an alert was sent about (rate-limited,
	// credential dead, blocked) serves again.
	AccountRecovered Kind = "account.recovered"
	// AccountCoolingRepeatedly: an account went into a short cooldown
	// (5xx, overload, timeouts) again and again.
	AccountCoolingRepeatedly Kind = "account.cooling_repeatedly"
	// AccountCredentialDead: the account's credential was refused or its
	// OAuth refresh failed for good; it needs onboarding again.
	AccountCredentialDead Kind = "account.credential_dead"
	// AccountBlocked: the upstream reports the account or its organization
	// disabled (a ban signal).
	AccountBlocked Kind = "account.blocked"
	// AccountWindowWarning: a subscription account's 5-hour window reached
	// allowed_warning.
	AccountWindowWarning Kind = "account.window_warning"
	// AccountWindowResumed: that window has reset.
	AccountWindowResumed Kind = "account.window_resumed"
	// KeyOverLimit: a relay key was refused for a rate window or a cost
	// limit.
	KeyOverLimit Kind = "key.over_limit"
	// StoreUnreachable: the store did not answer pings.
	StoreUnreachable Kind = "store.unreachable"
	// StoreRecovered: it answers again.
	StoreRecovered Kind = "store.recovered"
	// UsageSpooled: usage records went to the on-disk spool because the
	// store did not commit them in time.
	UsageSpooled Kind = "usage.spooled"
	// Test is the message `crs notify test` sends; it is never
	// deduplicated and every channel receives it whatever its filter.
	Test Kind = "test"
)

// Kinds lists every event a channel can subscribe to, in documentation
// order.
func Kinds() []Kind {
	return []Kind{
		AccountRateLimited, AccountRecovered, AccountCoolingRepeatedly, AccountCredentialDead, AccountBlocked,
		AccountWindowWarning, AccountWindowResumed, KeyOverLimit, StoreUnreachable, StoreRecovered, UsageSpooled,
	}
}

// ParseKinds reads a comma-separated event list ("account.blocked,
// key.over_limit"). "" and "all" mean every event (nil). A prefix with a
// star ("account.*") stands for every event under it.
func ParseKinds(s string) ([]Kind, error) {
	var out []Kind
	for _, f := range strings.Split(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		switch {
		case f == "":
			continue
		case f == "all" || f == "*":
			return nil, nil
		case strings.HasSuffix(f, ".*"):
			n := len(out)
			for _, k := range Kinds() {
				if strings.HasPrefix(string(k), strings.TrimSuffix(f, "*")) && !slices.Contains(out, k) {
					out = append(out, k)
				}
			}
			if len(out) == n {
				return nil, fmt.Errorf("no event matches %q", f)
			}
		case slices.Contains(Kinds(), Kind(f)):
			if !slices.Contains(out, Kind(f)) {
				out = append(out, Kind(f))
			}
		default:
			return nil, fmt.Errorf("unknown event %q (known: %s)", f, kindList())
		}
	}
	return out, nil
}

func kindList() string {
	names := make([]string, 0, len(Kinds()))
	for _, k := range Kinds() {
		names = append(names, string(k))
	}
	return strings.Join(names, ", ")
}

// Severity says how urgent an event is; the generic webhook sends it and
// e-mail subjects carry it.
type Severity string

// Severities.
const (
	SeverityInfo     Severity = "info"
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
	SeverityResolved Severity = "resolved"
)

// Severity of the event's kind.
func (k Kind) Severity() Severity {
	switch k {
	case AccountCredentialDead, AccountBlocked, StoreUnreachable:
		return SeverityCritical
	case AccountRecovered, AccountWindowResumed, StoreRecovered:
		return SeverityResolved
	case Test:
		return SeverityInfo
	}
	return SeverityWarning
}

// Dedup windows: after an alert, the same event about the same subject is
// not sent again before its window ends. They are the documented contract
// (docs/operations.md); change both together.
const (
	RateLimitedWindow = time.Hour
	CoolingWindow     = time.Hour
	DeadWindow        = 6 * time.Hour
	BlockedWindow     = 24 * time.Hour
	// WindowWarningWindow: the subject is the 5-hour window itself, so each
	// window warns at most once.
	WindowWarningWindow = 6 * time.Hour
	// KeyLimitMin and KeyLimitMax bound a key alert's window, which is
	// otherwise the time until the limit resets; a limit that never resets
	// (the total cost) repeats daily.
	KeyLimitMin     = time.Hour
	KeyLimitMax     = 7 * 24 * time.Hour
	KeyLimitNoReset = 24 * time.Hour
	StoreWindow     = time.Hour
	SpoolWindow     = time.Hour
)

// Cooling repeatedly: CoolingThreshold separate cooldowns of one account
// within CoolingSpan raise AccountCoolingRepeatedly. A cooldown counts only
// when the previous one had ended, so one burst of failing requests is one
// cooldown, not many.
const (
	CoolingThreshold = 3
	CoolingSpan      = 30 * time.Minute
)

// AccountRef names an account in an event.
type AccountRef struct {
	ID       store.AccountID `json:"id"`
	Name     string          `json:"name"`
	Platform store.Platform  `json:"platform"`
}

// KeyRef names a relay key in an event (never the key itself).
type KeyRef struct {
	ID   store.KeyID `json:"id"`
	Name string      `json:"name"`
}

// Event is one thing that happened. Which fields are set depends on Kind.
type Event struct {
	Kind Kind
	// At is when it happened; zero means when the Dispatcher took it.
	At      time.Time
	Account *AccountRef
	Key     *KeyRef
	// Family narrows an account rate limit to one model family ("opus").
	Family string
	// Reason is the upstream's or the component's own words.
	Reason string
	// Until is when a rest or a limit ends, or when a 5-hour window
	// resets; zero when unknown or never.
	Until time.Time
	// Paused: the account rests until the window resets (auto-pause).
	Paused bool
	// Limit is the refused key limit's code ("daily_cost_limit_exceeded").
	Limit string
	// Count is the number of cooldowns (cooling repeatedly) or of spooled
	// records.
	Count int
	// File is the spool file.
	File string
	// Was is what an account recovered from.
	Was Kind
	// Channel names the channel a test message goes to.
	Channel string
}

// subject is what dedup counts per: the account (and family, or window),
// the key and limit, or the component.
func (e Event) subject() string {
	switch {
	case e.Kind == AccountWindowWarning || e.Kind == AccountWindowResumed:
		return e.accountID() + "@" + e.Until.UTC().Format(time.RFC3339)
	case e.Account != nil && e.Family != "":
		return e.accountID() + "/" + e.Family
	case e.Account != nil:
		return e.accountID()
	case e.Key != nil:
		return "key:" + string(e.Key.ID) + "/" + e.Limit
	}
	return string(e.Kind)
}

func (e Event) accountID() string {
	if e.Account == nil {
		return "account:"
	}
	return "account:" + string(e.Account.ID)
}

// window is how long the event suppresses its repeats; 0 never
// suppresses (state changes such as recoveries are sent each time).
func (e Event) window(now time.Time) time.Duration {
	switch e.Kind {
	case AccountRateLimited:
		return RateLimitedWindow
	case AccountCoolingRepeatedly:
		return CoolingWindow
	case AccountCredentialDead:
		return DeadWindow
	case AccountBlocked:
		return BlockedWindow
	case AccountWindowWarning, AccountWindowResumed:
		return WindowWarningWindow
	case KeyOverLimit:
		if e.Until.IsZero() {
			return KeyLimitNoReset
		}
		return min(max(e.Until.Sub(now), KeyLimitMin), KeyLimitMax)
	case StoreUnreachable:
		return StoreWindow
	case UsageSpooled:
		return SpoolWindow
	}
	return 0
}
