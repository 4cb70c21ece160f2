package policy

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// The rate window is fixed: it starts with the first request after the
// previous one ended and lasts RateWindow. Three kinds of counter carry it:
//
//   - count: every admission adds 1. It is created (so the window opens)
//     by the request that finds it absent, with the window's end as its
//     expiry; that request gets 1 back and knows it opened the window.
//   - start: the opener's time, for everyone else. It never expires and
//     only openers write it, one per window, so it holds either the
//     current window's start or, for the instant before the opener wrote,
//     an older one that has visibly ended.
//   - tokens and cost: named by the window's start, so a window's usage
//     can never leak into the next one, and expiring with it.
//
// Names carry the window length, so changing a key's RateWindow starts a
// fresh window instead of misreading the old one.

// windowStartWait bounds how long a request waits for the opener of a
// window to publish its start (microseconds in memory, a round trip in
// Redis). Past it the request is judged on its request count alone.
const windowStartWait = 500 * time.Millisecond

type windowNames struct{ count, start string }

func windowCounters(id store.KeyID, length time.Duration) windowNames {
	base := fmt.Sprintf("policy:%s:win:%d", id, length.Milliseconds())
	return windowNames{count: base + ":count", start: base + ":start"}
}

func windowUsage(id store.KeyID, length time.Duration, start time.Time) (tokens, cost string) {
	base := fmt.Sprintf("policy:%s:win:%d:%d", id, length.Milliseconds(), start.UnixMilli())
	return base + ":tokens", base + ":cost"
}

// windowLength is the key's window, whole milliseconds (the counters'
// resolution); 0 when the key has none.
func windowLength(p store.KeyPolicy) time.Duration {
	if p.RateWindow < time.Millisecond {
		return 0
	}
	return p.RateWindow.Truncate(time.Millisecond)
}

func (e *Engine) admitWindow(ctx context.Context, key store.Key, now time.Time) *Denial {
	p := key.Policy
	length := windowLength(p)
	if length == 0 {
		return nil
	}
	names := windowCounters(key.ID, length)
	now = now.Truncate(time.Millisecond)
	n, err := e.counters.Add(ctx, names.count, 1, now.Add(length))
	if err != nil {
		return unavailable("rate window", err)
	}
	var start time.Time
	known := true
	if n == 1 {
		start = now
		if err := e.publishStart(ctx, names.start, now); err != nil {
			return unavailable("rate window", err)
		}
	} else if start, known, err = e.windowStart(ctx, names.start, length, windowStartWait); err != nil {
		return unavailable("rate window", err)
	}
	end := start.Add(length)
	if !known {
		// The opener has not said when it opened; the window ends at the
		// latest one length from now.
		end = e.now().Add(length)
	}
	if p.RateRequests > 0 && n > p.RateRequests {
		return windowExceeded(fmt.Sprintf("%d requests", p.RateRequests), length, end, e.now())
	}
	if !known || (p.RateTokens <= 0 && p.RateCost <= 0) {
		return nil
	}
	tokensName, costName := windowUsage(key.ID, length, start)
	if p.RateTokens > 0 {
		used, _, err := e.counters.Get(ctx, tokensName)
		if err != nil {
			return unavailable("rate window", err)
		}
		if used >= p.RateTokens {
			return windowExceeded(fmt.Sprintf("%d tokens", p.RateTokens), length, end, e.now())
		}
	}
	if p.RateCost > 0 {
		used, _, err := e.counters.Get(ctx, costName)
		if err != nil {
			return unavailable("rate window", err)
		}
		if used >= p.RateCost {
			return windowExceeded(usd(p.RateCost)+" of rated cost", length, end, e.now())
		}
	}
	return nil
}

func windowExceeded(what string, length time.Duration, end, now time.Time) *Denial {
	return &Denial{
		Status: http.StatusTooManyRequests,
		Type:   TypeRateLimit,
		Code:   CodeRateWindowExceeded,
		Message: fmt.Sprintf("this key may use %s per %s; the current window ends at %s",
			what, humanDuration(length), end.Format(time.RFC3339)),
		RetryAfter: atLeastSecond(end.Sub(now)),
		ResetAt:    end,
	}
}

// publishStart makes at the window's start for everyone. Only the opener
// writes, so reading and then adding the difference is safe.
func (e *Engine) publishStart(ctx context.Context, name string, at time.Time) error {
	old, _, err := e.counters.Get(ctx, name)
	if err != nil {
		return err
	}
	_, err = e.counters.Add(ctx, name, at.UnixMilli()-old, time.Time{})
	return err
}

// windowStart reads the start of the window that is open now, waiting up
// to wait for its opener to publish it. known is false when it did not.
func (e *Engine) windowStart(ctx context.Context, name string, length, wait time.Duration) (start time.Time, known bool, err error) {
	deadline := time.Now().Add(wait)
	for pause := 100 * time.Microsecond; ; pause = min(2*pause, 10*time.Millisecond) {
		v, ok, err := e.counters.Get(ctx, name)
		if err != nil {
			return time.Time{}, false, err
		}
		start = time.UnixMilli(v)
		if ok && e.now().Before(start.Add(length)) {
			return start, true, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, false, nil
		}
		if err := sleep(ctx, pause); err != nil {
			return time.Time{}, false, err
		}
	}
}

// recordWindow adds a response's tokens and rated cost to the window open
// now. A response that ends after its window closed counts in none: the
// next window starts with the next request.
func (e *Engine) recordWindow(ctx context.Context, key store.Key, rec store.UsageRecord, now time.Time) error {
	length := windowLength(key.Policy)
	if length == 0 {
		return nil
	}
	tokens := rec.Input + rec.Output + rec.CacheWrite5m + rec.CacheWrite1h + rec.CacheRead
	if tokens == 0 && rec.RatedCostPico == 0 {
		return nil
	}
	names := windowCounters(key.ID, length)
	if _, open, err := e.counters.Get(ctx, names.count); err != nil || !open {
		return err
	}
	start, known, err := e.windowStart(ctx, names.start, length, windowStartWait)
	if err != nil || !known {
		return err
	}
	end := start.Add(length)
	tokensName, costName := windowUsage(key.ID, length, start)
	if tokens != 0 {
		if _, err := e.counters.Add(ctx, tokensName, tokens, end); err != nil {
			return err
		}
	}
	if rec.RatedCostPico != 0 {
		if _, err := e.counters.Add(ctx, costName, rec.RatedCostPico, end); err != nil {
			return err
		}
	}
	return nil
}

// humanDuration prints a window length the way an admin set it: "5m",
// "1h30m", "2h".
func humanDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
