package fakeupstream

import (
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The real API answers every request made with a subscription OAuth token
// with anthropic-ratelimit-unified-* headers and refuses it with 429 once a
// window, or one model family's weekly allowance, is spent. A relay routes
// subscription accounts by those headers alone, so the fake reports and
// enforces them the same way. API-key requests carry none of them, as
// upstream.

// Window statuses, as the real API spells them.
const (
	windowAllowed  = "allowed"
	windowWarning  = "allowed_warning"
	windowRejected = "rejected"
)

const (
	fiveHours = 5 * time.Hour
	sevenDays = 7 * 24 * time.Hour
)

// quotaLimitMessage is the real API's message on a subscription-limit 429.
const quotaLimitMessage = "This request would exceed your account's rate limit. Please try again later."

// Utilizations reported for the 5-hour window by status, and for the
// 7-day window, which the fake never exhausts. The real API sends a
// fraction between 0 and 1.
const (
	utilizationAllowed  = "0.125"
	utilizationWarning  = "0.9"
	utilizationRejected = "1"
	utilization7d       = "0.34"
)

// Unified header names.
const (
	hdrUnifiedStatus = "anthropic-ratelimit-unified-status"
	hdrUnifiedReset  = "anthropic-ratelimit-unified-reset"
	hdrUnifiedClaim  = "anthropic-ratelimit-unified-representative-claim"
	hdr5hStatus      = "anthropic-ratelimit-unified-5h-status"
	hdr5hReset       = "anthropic-ratelimit-unified-5h-reset"
	hdr5hUtilization = "anthropic-ratelimit-unified-5h-utilization"
	hdr7dStatus      = "anthropic-ratelimit-unified-7d-status"
	hdr7dReset       = "anthropic-ratelimit-unified-7d-reset"
	hdr7dUtilization = "anthropic-ratelimit-unified-7d-utilization"
)

// quota is the subscription state of the one account the fake serves. It
// lives in Anthropic and is guarded by Anthropic.mu.
type quota struct {
	status5h string
	reset5h  time.Time
	reset7d  time.Time
	// families maps a limited model family to the end of its limit.
	families map[string]time.Time
}

func newQuota(now time.Time) quota {
	return quota{
		status5h: windowAllowed,
		reset5h:  windowEnd(now),
		reset7d:  now.Truncate(time.Hour).Add(sevenDays),
		families: map[string]time.Time{},
	}
}

// windowEnd is the end of a 5-hour window opened at now. Windows open at
// the full hour, so a fake started at 10:20 reports a reset at 15:00.
func windowEnd(now time.Time) time.Time {
	return now.Truncate(time.Hour).Add(fiveHours)
}

// roll ends what is over at now, as time does upstream: a 5-hour window
// past its reset gives way to a fresh allowed one, the 7-day reset moves
// on by weeks, and expired family limits are forgotten.
func (q *quota) roll(now time.Time) {
	if !now.Before(q.reset5h) {
		q.status5h = windowAllowed
		q.reset5h = windowEnd(now)
	}
	for !now.Before(q.reset7d) {
		q.reset7d = q.reset7d.Add(sevenDays)
	}
	for f, until := range q.families {
		if !now.Before(until) {
			delete(q.families, f)
		}
	}
}

// SetWindow sets the 5-hour window that every reply to an OAuth request
// reports: status is "allowed", "allowed_warning" or "rejected" ("" means
// allowed; any other value is reported verbatim, so a test can show a
// relay a status it does not know), and reset is when the window ends
// (zero keeps the current end). While the status is "rejected" every OAuth
// /v1/messages request is refused with 429 rate_limit_error, claim
// five_hour and reset at the window's end. When the end passes, a fresh
// allowed window opens, as upstream; an end at or before now does that at
// once.
func (a *Anthropic) SetWindow(status string, reset time.Time) {
	if status == "" {
		status = windowAllowed
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.quota.status5h = status
	if !reset.IsZero() {
		a.quota.reset5h = reset
	}
}

// LimitFamily spends the weekly allowance of one model family ("opus",
// "sonnet", "haiku") until the given time: an OAuth /v1/messages request
// whose model contains the family name is refused with 429
// rate_limit_error, unified status rejected, reset at until and claim
// seven_day_<family>, while the 5-hour and 7-day statuses stay as the
// window says. Other families keep working, which is what a relay must
// learn from the reply: the account is limited for one family only. A zero
// or past until lifts the limit.
func (a *Anthropic) LimitFamily(family string, until time.Time) {
	family = strings.ToLower(family)
	a.mu.Lock()
	defer a.mu.Unlock()
	if until.IsZero() || !time.Now().Before(until) {
		delete(a.quota.families, family)
		return
	}
	a.quota.families[family] = until
}

// quotaView is the quota as one request sees it, taken once so every
// header of a reply tells the same story.
type quotaView struct {
	status5h string
	reset5h  time.Time
	reset7d  time.Time
	families map[string]time.Time
}

func (a *Anthropic) quotaAt(now time.Time) *quotaView {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.quota.roll(now)
	return &quotaView{
		status5h: a.quota.status5h,
		reset5h:  a.quota.reset5h,
		reset7d:  a.quota.reset7d,
		families: maps.Clone(a.quota.families),
	}
}

// report sets the unified headers for a request the limits let through,
// or the window's rejection; refuse overrides the family-specific ones.
func (v *quotaView) report(rep replier) {
	rep.setHeader(hdrUnifiedStatus, v.status5h)
	rep.setHeader(hdrUnifiedReset, unixCeil(v.reset5h))
	rep.setHeader(hdrUnifiedClaim, "five_hour")
	rep.setHeader(hdr5hStatus, v.status5h)
	rep.setHeader(hdr5hReset, unixCeil(v.reset5h))
	rep.setHeader(hdr5hUtilization, utilization5h(v.status5h))
	rep.setHeader(hdr7dStatus, windowAllowed)
	rep.setHeader(hdr7dReset, unixCeil(v.reset7d))
	rep.setHeader(hdr7dUtilization, utilization7d)
}

// refuse answers 429 when the window is rejected or the model's family is
// limited, and reports whether it did.
func (v *quotaView) refuse(rep replier, model string) bool {
	if v.status5h != windowRejected {
		family, until, ok := v.limitedFamily(model)
		if !ok {
			return false
		}
		rep.setHeader(hdrUnifiedStatus, windowRejected)
		rep.setHeader(hdrUnifiedReset, unixCeil(until))
		rep.setHeader(hdrUnifiedClaim, "seven_day_"+family)
	}
	rep.error(http.StatusTooManyRequests, quotaLimitMessage, "")
	return true
}

// limitedFamily finds the limited family named in model. Families are
// tried in name order so a model naming two answers the same every time.
func (v *quotaView) limitedFamily(model string) (family string, until time.Time, ok bool) {
	model = strings.ToLower(model)
	for _, f := range slices.Sorted(maps.Keys(v.families)) {
		if strings.Contains(model, f) {
			return f, v.families[f], true
		}
	}
	return "", time.Time{}, false
}

func utilization5h(status string) string {
	switch status {
	case windowRejected:
		return utilizationRejected
	case windowWarning:
		return utilizationWarning
	}
	return utilizationAllowed
}

// unixCeil rounds up to whole seconds, so a relay that rests an account
// until the reported reset never comes back before the limit really ends.
func unixCeil(t time.Time) string {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return strconv.FormatInt(s, 10)
}
