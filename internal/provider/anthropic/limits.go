package anthropic

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// unifiedPrefix starts every header in which Anthropic reports a
// subscription's quota. API-key accounts get the classic
// anthropic-ratelimit-requests-* headers instead and none of these.
const unifiedPrefix = "Anthropic-Ratelimit-Unified-"

// Representative claims: which of the subscription's limits the upstream
// considers the binding one right now.
const (
	ClaimFiveHour       = "five_hour"
	ClaimSevenDay       = "seven_day"
	ClaimSevenDayOpus   = "seven_day_opus"
	ClaimSevenDaySonnet = "seven_day_sonnet"
)

// FiveHourWindow is the length of a subscription's rolling session window.
// The upstream only reports when a window ends; its start is derived.
const FiveHourWindow = 5 * time.Hour

// Limits is what one response says about a subscription account's quota,
// read from the anthropic-ratelimit-unified-* headers. Statuses are
// lowercased ("allowed", "allowed_warning", "rejected"); a field the
// response did not carry, or carried in a form that could not be read, is
// zero.
type Limits struct {
	// Status is the overall verdict (-status): rejected means this request
	// was refused for quota, whichever limit caused it.
	Status string
	// Reset is when the overall verdict changes (-reset).
	Reset time.Time
	// FiveHour is the rolling session window (-5h-*).
	FiveHour LimitWindow
	// SevenDay is the weekly limit (-7d-*).
	SevenDay LimitWindow
	// Claim names the limit the upstream considers binding
	// (-representative-claim): ClaimFiveHour, ClaimSevenDay,
	// ClaimSevenDayOpus, ClaimSevenDaySonnet, or a newer name.
	Claim string
}

// LimitWindow is one quota window as the headers describe it.
type LimitWindow struct {
	Status string
	Reset  time.Time
	// Utilization is the fraction of the window used, nominally 0–1; it
	// is left as reported, so a value just past 1 stays visible.
	Utilization float64
}

// ReadLimits reads the quota headers of an upstream response. ok is false
// when the response carries none of them, which is how API-key accounts
// answer; then there is no subscription quota to track. Malformed values
// never fail the read: each is left zero on its own, because a response
// the client is already receiving must not be spoiled by an odd header.
func ReadLimits(h http.Header) (Limits, bool) {
	found := false
	for name := range h {
		if len(name) > len(unifiedPrefix) && strings.EqualFold(name[:len(unifiedPrefix)], unifiedPrefix) {
			found = true
			break
		}
	}
	if !found {
		return Limits{}, false
	}
	get := func(suffix string) string {
		return strings.TrimSpace(h.Get(unifiedPrefix + suffix))
	}
	status := func(suffix string) string { return strings.ToLower(get(suffix)) }
	window := func(prefix string) LimitWindow {
		return LimitWindow{
			Status:      status(prefix + "-Status"),
			Reset:       parseReset(get(prefix + "-Reset")),
			Utilization: parseUtilization(get(prefix + "-Utilization")),
		}
	}
	return Limits{
		Status:   status("Status"),
		Reset:    parseReset(get("Reset")),
		FiveHour: window("5h"),
		SevenDay: window("7d"),
		Claim:    strings.ToLower(get("Representative-Claim")),
	}, true
}

// Window5h is the current five-hour window, for store.Quota. ok is false
// when the response did not say when the window ends: a start and end
// guessed from the clock would overwrite a better one reported earlier.
func (l Limits) Window5h() (store.Window, bool) {
	if l.FiveHour.Reset.IsZero() {
		return store.Window{}, false
	}
	st := l.FiveHour.Status
	if st == "" {
		st = store.WindowAllowed
	}
	return store.Window{
		Start:  l.FiveHour.Reset.Add(-FiveHourWindow),
		End:    l.FiveHour.Reset,
		Status: st,
	}, true
}

// AccountWide reports whether a limit that covers every model is
// exhausted, so that no request of any model family can succeed on the
// account until the returned time. A per-model weekly limit (Opus, Sonnet)
// is not account-wide: other families still work, so it is left to the
// family buckets.
//
// Both the per-window statuses and the overall status with its claim count:
// a response may carry only one of them. When both windows are exhausted
// the later reset wins, since the account stays unusable until both have
// reset. A window without its own reset falls back to the overall reset;
// until is zero when the headers give no reset at all, and the caller
// chooses a default rest.
func (l Limits) AccountWide() (until time.Time, ok bool) {
	overall := l.Status == store.WindowRejected
	consider := func(w LimitWindow, claim string) {
		if w.Status != store.WindowRejected && !(overall && l.Claim == claim) {
			return
		}
		ok = true
		reset := w.Reset
		if reset.IsZero() {
			reset = l.Reset
		}
		if reset.After(until) {
			until = reset
		}
	}
	consider(l.FiveHour, ClaimFiveHour)
	consider(l.SevenDay, ClaimSevenDay)
	return until, ok
}

// parseReset reads a reset time: unix seconds as Anthropic sends them, or
// RFC 3339 as some gateways rewrite them. Anything else, and any time at or
// before the epoch, is zero.
func parseReset(v string) time.Time {
	if v == "" {
		return time.Time{}
	}
	if sec, err := strconv.ParseInt(v, 10, 64); err == nil {
		// Past year 9999 is nonsense, and would overflow time arithmetic
		// further on.
		if sec <= 0 || sec > 253402300799 {
			return time.Time{}
		}
		return time.Unix(sec, 0)
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil && t.Unix() > 0 {
		return t
	}
	return time.Time{}
}

// parseUtilization reads a used fraction. NaN, infinities and negative
// numbers are not fractions of anything and read as zero.
func parseUtilization(v string) float64 {
	if v == "" {
		return 0
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0
	}
	return f
}
