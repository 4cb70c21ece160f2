package openai

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// codexPrefix starts every header in which the Codex backend reports a
// ChatGPT plan's usage. API-key accounts never get them.
const codexPrefix = "X-Codex-"

// Window lengths the Codex backend reports, in minutes.
const (
	FiveHourMinutes = 5 * 60
	WeekMinutes     = 7 * 24 * 60
)

// CodexLimits is what one Codex backend response says about the plan's
// usage, read from its x-codex-* headers. Primary is the short window
// (five hours) and Secondary the weekly one on the plans seen so far, but
// a plan may report only a weekly window, as primary; FiveHour and Weekly
// pick by the reported length.
type CodexLimits struct {
	Primary   CodexWindow // x-codex-primary-*
	Secondary CodexWindow // x-codex-secondary-*
	// PlanType is x-codex-plan-type ("plus", "pro", "team"…), "" when
	// absent.
	PlanType string
}

// CodexWindow is one usage window as the headers describe it. A value the
// response did not carry, or carried in a form that could not be read, is
// zero.
type CodexWindow struct {
	// Reported: the response carried this window's used percent.
	Reported bool
	// UsedPercent is the share of the window used, nominally 0–100; left
	// as reported, so a value past 100 stays visible.
	UsedPercent float64
	// WindowMinutes is the window's length (300, 10080).
	WindowMinutes int64
	// ResetAfter is how long after the response the window resets
	// (-reset-after-seconds).
	ResetAfter time.Duration
	// ResetAt is when the window resets (-reset-at, epoch seconds), as
	// newer backends also report it.
	ResetAt time.Time
}

// ReadCodexLimits reads the Codex usage headers of an upstream response:
// x-codex-{primary,secondary}-{used-percent,window-minutes,
// reset-after-seconds,reset-at} and x-codex-plan-type. ok is false when
// neither window's used percent is there, which is how API-key accounts
// and other providers answer. Malformed values never fail the read: each
// is left zero on its own, because a response the client is already
// receiving must not be spoiled by an odd header.
func ReadCodexLimits(h http.Header) (CodexLimits, bool) {
	l := CodexLimits{
		Primary:   readWindow(h, "Primary"),
		Secondary: readWindow(h, "Secondary"),
		PlanType:  strings.ToLower(strings.TrimSpace(h.Get(codexPrefix + "Plan-Type"))),
	}
	if !l.Primary.Reported && !l.Secondary.Reported {
		return CodexLimits{}, false
	}
	return l, true
}

func readWindow(h http.Header, which string) CodexWindow {
	get := func(suffix string) string {
		return strings.TrimSpace(h.Get(codexPrefix + which + "-" + suffix))
	}
	var w CodexWindow
	if v := get("Used-Percent"); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) && f >= 0 {
			w.Reported, w.UsedPercent = true, f
		}
	}
	if v := get("Window-Minutes"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 && n <= 366*24*60 {
			w.WindowMinutes = n
		}
	}
	if v := get("Reset-After-Seconds"); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			w.ResetAfter = seconds(f)
		}
	}
	if v := get("Reset-At"); v != "" {
		if sec, err := strconv.ParseInt(v, 10, 64); err == nil && sec > 0 && sec <= 253402300799 {
			w.ResetAt = time.Unix(sec, 0)
		}
	}
	return w
}

// Reset is when the window resets, for a response received at now: ResetAt
// when reported, else now + ResetAfter, else zero.
func (w CodexWindow) Reset(now time.Time) time.Time {
	switch {
	case !w.ResetAt.IsZero():
		return w.ResetAt
	case w.ResetAfter > 0:
		return now.Add(w.ResetAfter)
	}
	return time.Time{}
}

// Exhausted reports whether the window is used up.
func (w CodexWindow) Exhausted() bool { return w.Reported && w.UsedPercent >= 100 }

// FiveHour is the short window: the reported window of at most a day,
// else the primary window when its length was not reported. Reported is
// false when there is none.
func (l CodexLimits) FiveHour() CodexWindow {
	for _, w := range []CodexWindow{l.Primary, l.Secondary} {
		if w.Reported && w.WindowMinutes > 0 && w.WindowMinutes <= 24*60 {
			return w
		}
	}
	if l.Primary.Reported && l.Primary.WindowMinutes == 0 {
		return l.Primary
	}
	return CodexWindow{}
}

// Weekly is the long window: the reported window of more than a day, else
// the secondary window when its length was not reported. Reported is false
// when there is none.
func (l CodexLimits) Weekly() CodexWindow {
	for _, w := range []CodexWindow{l.Primary, l.Secondary} {
		if w.Reported && w.WindowMinutes > 24*60 {
			return w
		}
	}
	if l.Secondary.Reported && l.Secondary.WindowMinutes == 0 {
		return l.Secondary
	}
	return CodexWindow{}
}

// Exhausted reports whether a window is used up, so that no request can
// succeed on the account until the returned time: the later reset when
// both are, since the account stays unusable until both have reset. until
// is zero when an exhausted window gives no reset; the caller chooses a
// default rest.
func (l CodexLimits) Exhausted(now time.Time) (until time.Time, ok bool) {
	for _, w := range []CodexWindow{l.Primary, l.Secondary} {
		if !w.Exhausted() {
			continue
		}
		ok = true
		if r := w.Reset(now); r.After(until) {
			until = r
		}
	}
	return until, ok
}

// Window5h is the current five-hour window, for store.Quota, from a
// response received at now. ok is false when the response did not say
// when that window ends: a start and end guessed from the clock would
// overwrite a better one reported earlier.
func (l CodexLimits) Window5h(now time.Time) (store.Window, bool) {
	w := l.FiveHour()
	end := w.Reset(now)
	if !w.Reported || end.IsZero() {
		return store.Window{}, false
	}
	length := time.Duration(w.WindowMinutes) * time.Minute
	if length == 0 {
		length = FiveHourMinutes * time.Minute
	}
	st := store.WindowAllowed
	if w.Exhausted() {
		st = store.WindowRejected
	}
	return store.Window{Start: end.Add(-length), End: end, Status: st}, true
}
