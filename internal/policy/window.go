package policy

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
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

// windowPlan is the window's part of an admission batch: the count's Add,
// and, when the window's start is known from Engine.starts, the Gets of
// its tokens and cost. count is -1 when the key has no window; tokens and
// cost are -1 when not in the batch.
type windowPlan struct {
	length       time.Duration
	names        windowNames
	at           time.Time // the admission, whole milliseconds
	count        int
	start        time.Time // the cached start, when cached
	cached       bool
	tokens, cost int
}

func (e *Engine) planWindow(a *admission, key store.Key, now time.Time) windowPlan {
	w := windowPlan{count: -1, tokens: -1, cost: -1, length: windowLength(key.Policy)}
	if w.length == 0 {
		return w
	}
	p := key.Policy
	w.names = windowCounters(key.ID, w.length)
	w.at = now.Truncate(time.Millisecond)
	w.count = a.add(store.CounterOp{Kind: store.OpAdd, Name: w.names.count, Delta: 1, Expires: w.at.Add(w.length)})
	if w.start, w.cached = e.starts.get(key.ID, w.length, now); w.cached {
		tokensName, costName := windowUsage(key.ID, w.length, w.start)
		if p.RateTokens > 0 {
			w.tokens = a.add(store.CounterOp{Kind: store.OpGet, Name: tokensName})
		}
		if p.RateCost > 0 {
			w.cost = a.add(store.CounterOp{Kind: store.OpGet, Name: costName})
		}
	}
	return w
}

// decideWindow applies the rate window from the batch's results: the
// request count, then tokens, then cost.
func (e *Engine) decideWindow(ctx context.Context, key store.Key, w windowPlan, ops []store.CounterOp) *Denial {
	if w.count < 0 {
		return nil
	}
	p := key.Policy
	n, err := ops[w.count].Value, ops[w.count].Err
	if err != nil {
		return unavailable("rate window", err)
	}
	start, known, batched := w.start, true, false
	switch {
	case n == 1:
		// This request opened the window. Its tokens and cost are named by
		// its start, so nothing can have counted in them yet.
		start = w.at
		if err := e.publishStart(ctx, w.names.start, start); err != nil {
			return unavailable("rate window", err)
		}
		e.starts.opened(key.ID, w.length, start)
	case w.cached:
		// The window the batch counted in is the cached one: it cannot
		// have ended (and another opened) before start+length, when the
		// count counter it created expires.
		batched = true
	default:
		if start, known, err = e.windowStart(ctx, w.names.start, w.length, windowStartWait); err != nil {
			return unavailable("rate window", err)
		}
		if known {
			e.starts.put(key.ID, w.length, start)
		}
	}
	end := start.Add(w.length)
	if !known {
		// The opener has not said when it opened; the window ends at the
		// latest one length from now.
		end = e.now().Add(w.length)
	}
	if p.RateRequests > 0 && n > p.RateRequests {
		return windowExceeded(fmt.Sprintf("%d requests", p.RateRequests), w.length, end, e.now())
	}
	if !known || n == 1 || (p.RateTokens <= 0 && p.RateCost <= 0) {
		return nil
	}
	used := func(op int, name string) (int64, error) {
		if batched {
			return ops[op].Value, ops[op].Err
		}
		v, _, err := e.counters.Get(ctx, name)
		return v, err
	}
	tokensName, costName := windowUsage(key.ID, w.length, start)
	if p.RateTokens > 0 {
		used, err := used(w.tokens, tokensName)
		if err != nil {
			return unavailable("rate window", err)
		}
		if used >= p.RateTokens {
			return windowExceeded(fmt.Sprintf("%d tokens", p.RateTokens), w.length, end, e.now())
		}
	}
	if p.RateCost > 0 {
		used, err := used(w.cost, costName)
		if err != nil {
			return unavailable("rate window", err)
		}
		if used >= p.RateCost {
			return windowExceeded(usd(p.RateCost)+" of rated cost", w.length, end, e.now())
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
// now, as operations of r's batch. A response that ends after its window
// closed counts in none: the next window starts with the next request.
// Finding the window costs no round trip when its start is cached, as it
// is for every window this instance admitted a request to.
func (e *Engine) recordWindow(ctx context.Context, r *recording, key store.Key, rec store.UsageRecord, now time.Time) error {
	length := windowLength(key.Policy)
	if length == 0 {
		return nil
	}
	tokens := rec.Input + rec.Output + rec.CacheWrite5m + rec.CacheWrite1h + rec.CacheRead
	if tokens == 0 && rec.RatedCostPico == 0 {
		return nil
	}
	start, ok := e.starts.get(key.ID, length, now)
	if !ok {
		names := windowCounters(key.ID, length)
		if _, open, err := e.counters.Get(ctx, names.count); err != nil || !open {
			return err
		}
		var err error
		if start, ok, err = e.windowStart(ctx, names.start, length, windowStartWait); err != nil || !ok {
			return err
		}
		e.starts.put(key.ID, length, start)
	}
	end := start.Add(length)
	tokensName, costName := windowUsage(key.ID, length, start)
	if tokens != 0 {
		r.addWindow(store.CounterOp{Kind: store.OpAdd, Name: tokensName, Delta: tokens, Expires: end})
	}
	if rec.RatedCostPico != 0 {
		r.addWindow(store.CounterOp{Kind: store.OpAdd, Name: costName, Delta: rec.RatedCostPico, Expires: end})
	}
	return nil
}

// windowStarts remembers the start of each key's open window, per window
// length, so admissions and records skip reading it. A start stays valid
// until start+length: the window's count counter was created to expire
// then, and no other window can open while it lives. (Across instances
// whose clocks disagree, a window may end a little early or late by the
// shared store's clock; the request count is then still exact, and the
// tokens and cost read are the previous window's for that moment, as when
// reading a start its opener has not published yet.)
//
// The memory is bounded: past maxWindowStarts entries it is dropped whole,
// and each window's next request reads its start again.
type windowStarts struct {
	m sync.Map // windowID → start in Unix milliseconds (int64)
	n atomic.Int64
}

type windowID struct {
	key    store.KeyID
	length time.Duration
}

const maxWindowStarts = 100_000

// get returns the cached start of the key's window of length, if one is
// cached and still open at now.
func (s *windowStarts) get(id store.KeyID, length time.Duration, now time.Time) (time.Time, bool) {
	v, ok := s.m.Load(windowID{id, length})
	if !ok {
		return time.Time{}, false
	}
	start := time.UnixMilli(v.(int64))
	if !now.Before(start.Add(length)) {
		return time.Time{}, false
	}
	return start, true
}

// put caches a start read from the counters, unless a later start is
// cached: a request that read an old window's start must not hide the
// newer window another request opened meanwhile.
func (s *windowStarts) put(id store.KeyID, length time.Duration, start time.Time) {
	k, ms := windowID{id, length}, start.UnixMilli()
	for {
		old, loaded := s.m.LoadOrStore(k, ms)
		if !loaded {
			s.count()
			return
		}
		if old.(int64) >= ms || s.m.CompareAndSwap(k, old, ms) {
			return
		}
	}
}

// opened caches the start of a window this instance just opened. The
// opener knows for sure, so it replaces whatever is cached, even a later
// start (a clock that stepped back).
func (s *windowStarts) opened(id store.KeyID, length time.Duration, start time.Time) {
	if _, loaded := s.m.Swap(windowID{id, length}, start.UnixMilli()); !loaded {
		s.count()
	}
}

// count counts a new entry and drops them all past maxWindowStarts.
func (s *windowStarts) count() {
	if s.n.Add(1) > maxWindowStarts {
		s.m.Clear()
		s.n.Store(0)
	}
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
