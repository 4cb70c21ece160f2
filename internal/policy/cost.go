package policy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/shopspring/decimal"

	"github.com/crs-relay/crs/internal/store"
)

// RatedCost is the cost a key's limits count: the real cost times the
// key's service rate for the platform (1 when the key sets none). It is
// computed in decimal, so a rate of 0.8 is 0.8 and not its nearest binary
// fraction, and rounded to the nearest picodollar.
func RatedCost(key store.Key, platform store.Platform, costPico int64) int64 {
	rate, ok := key.Policy.ServiceRates[platform]
	if !ok || rate == 1 || math.IsNaN(rate) || math.IsInf(rate, 0) {
		return costPico
	}
	if rate <= 0 {
		return 0
	}
	return decimal.New(costPico, 0).Mul(decimal.NewFromFloat(rate)).Round(0).IntPart()
}

// spendKind is one of the cost limits. They are listed in the order Admit
// checks them: the one that resets last first, so a request over several
// limits is told the longest wait.
type spendKind int

const (
	spendTotal spendKind = iota
	spendWeekly
	spendDaily
	spendDailyOpus
)

var spendKinds = []spendKind{spendTotal, spendWeekly, spendDaily, spendDailyOpus}

func (k spendKind) String() string {
	return [...]string{"total", "weekly", "daily", "daily_opus"}[k]
}

func (k spendKind) code() string {
	return [...]string{CodeTotalCostExceeded, CodeWeeklyCostExceeded, CodeDailyCostExceeded, CodeDailyOpusCostExceeded}[k]
}

func (k spendKind) limit(p store.KeyPolicy) int64 {
	return [...]int64{p.TotalCost, p.WeeklyCost, p.DailyCost, p.DailyOpusCost}[k]
}

// covers reports whether a model's spend counts toward the limit. The
// weekly limit covers the Claude family, as the original's (widened from
// Opus) does; the daily Opus limit covers Opus.
func (k spendKind) covers(model string) bool {
	switch k {
	case spendWeekly:
		return isClaude(model)
	case spendDailyOpus:
		return isOpus(model)
	}
	return true
}

// period is the span one spend counter covers. end is zero for the total.
type period struct {
	kind       spendKind
	start, end time.Time
	name       string
}

// periodAt is the kind's period around t in the engine's zone.
func (e *Engine) periodAt(id store.KeyID, p store.KeyPolicy, k spendKind, t time.Time) period {
	t = t.In(e.loc)
	var start, end time.Time
	var label string
	switch k {
	case spendTotal:
		label = "all"
	case spendWeekly:
		start = weekStart(t, p.WeeklyResetDay, p.WeeklyResetHour)
		end = start.AddDate(0, 0, 7)
		label = start.Format("20060102T15")
	default:
		start = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, e.loc)
		end = start.AddDate(0, 0, 1)
		label = start.Format("20060102")
	}
	return period{kind: k, start: start, end: end, name: fmt.Sprintf("policy:%s:spend:%s:%s", id, k, label)}
}

// weekStart is the latest reset (weekday day at hour, in t's zone) not
// after t. An out-of-range day means Monday; an out-of-range hour, 0.
func weekStart(t time.Time, day, hour int) time.Time {
	if day < 0 || day > 6 {
		day = int(time.Monday)
	}
	if hour < 0 || hour > 23 {
		hour = 0
	}
	back := (int(t.Weekday()) - day + 7) % 7
	start := time.Date(t.Year(), t.Month(), t.Day()-back, hour, 0, 0, 0, t.Location())
	if start.After(t) {
		start = time.Date(t.Year(), t.Month(), t.Day()-back-7, hour, 0, 0, 0, t.Location())
	}
	return start
}

func costExceeded(per period, used, limit int64, now time.Time) *Denial {
	d := &Denial{
		Status:  http.StatusPaymentRequired,
		Type:    TypeBilling,
		Code:    per.kind.code(),
		Current: used,
		Limit:   limit,
		ResetAt: per.end,
	}
	what := map[spendKind]string{
		spendTotal:     "total cost limit",
		spendWeekly:    "weekly cost limit (Claude models)",
		spendDaily:     "daily cost limit",
		spendDailyOpus: "daily Opus cost limit",
	}[per.kind]
	if per.end.IsZero() {
		d.Message = fmt.Sprintf("this key has used %s of its %s of %s; it does not reset, ask the relay's admin to raise it",
			usd(used), what, usd(limit))
		return d
	}
	d.RetryAfter = atLeastSecond(per.end.Sub(now))
	d.Message = fmt.Sprintf("this key has used %s of its %s of %s; it resets at %s",
		usd(used), what, usd(limit), per.end.Format(time.RFC3339))
	return d
}

// recordSpend adds a record's rated cost to every spend counter it counts
// toward, as operations of r's batch, and returns the errors of seeding.
// Only limits the key has are counted: a counter nobody reads costs a
// shared store a round trip per request, and a limit set later seeds its
// counter from the stored records at its first use. A record the seeding
// already read (created before the counter was seeded) is skipped, so
// nothing is counted twice; a record for a day or week that has ended is
// skipped, since nothing reads its counter again.
func (e *Engine) recordSpend(ctx context.Context, r *recording, key store.Key, rec store.UsageRecord, now time.Time) []error {
	if rec.RatedCostPico == 0 {
		return nil
	}
	var errs []error
	for _, k := range spendKinds {
		if k.limit(key.Policy) <= 0 || !k.covers(rec.Model) {
			continue
		}
		per := e.periodAt(key.ID, key.Policy, k, rec.CreatedAt)
		if !per.end.IsZero() && !now.Before(per.end) {
			continue
		}
		seededAt, err := e.seed(ctx, key.ID, per)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy: record %s spend: %w", k, err))
			continue
		}
		if rec.CreatedAt.UnixMilli() < seededAt {
			continue
		}
		r.addSpend(k, store.CounterOp{Kind: store.OpAdd, Name: per.name, Delta: rec.RatedCostPico, Expires: per.end})
	}
	return errs
}

// spent is the rated spend in a period, seeding the counter first.
func (e *Engine) spent(ctx context.Context, id store.KeyID, per period) (int64, error) {
	if _, err := e.seed(ctx, id, per); err != nil {
		return 0, err
	}
	v, _, err := e.counters.Get(ctx, per.name)
	return v, err
}

// Seeding. A spend counter that does not exist yet (first use after a
// start, or a new day) is filled from the stored usage records once:
//
//   - One seeder at a time holds a lease (a slot with limit 1); the
//     others wait for it, so no request is judged on an unseeded total.
//   - The seeder sums the records created before its seeding time T,
//     sets the counter to that sum, and then publishes T in a marker
//     counter. The marker's existence means "seeded"; it expires with
//     the counter.
//   - Record adds only records created at or after T. A record is thus
//     counted by the seed or by Record, never by both. (One created just
//     before T but committed just after the seeding read is counted by
//     neither: a rare, small under-count at a counter's first use,
//     preferred to a double count.)
//   - A seeder that died after setting the counter but before the marker
//     is repaired by the next one, which sets the counter to its own sum
//     instead of adding to it.

const (
	seedLease = 30 * time.Second
	seedWait  = 10 * time.Second
)

// seed makes sure per's counter is seeded and returns the seeding time in
// Unix milliseconds.
func (e *Engine) seed(ctx context.Context, id store.KeyID, per period) (int64, error) {
	marker, lock := per.name+":seeded", per.name+":seeding"
	// A published marker never changes (a new period has a new name), so
	// once seen it is remembered: the hot path then reads no marker.
	if at, ok := e.seeded.Load(marker); ok {
		return at.(int64), nil
	}
	deadline := time.Now().Add(seedWait)
	holder := e.holder("seed")
	for pause := 100 * time.Microsecond; ; pause = min(2*pause, 10*time.Millisecond) {
		at, ok, err := e.counters.Get(ctx, marker)
		if err == nil && ok {
			e.rememberSeeded(marker, at)
		}
		if err != nil || ok {
			return at, err
		}
		got, err := e.counters.Acquire(ctx, lock, holder, 1, seedLease)
		if err != nil {
			return 0, err
		}
		if got {
			at, err := e.seedLocked(ctx, id, per, marker)
			if err == nil {
				e.rememberSeeded(marker, at)
			}
			if rerr := e.counters.Release(context.WithoutCancel(ctx), lock, holder); err == nil {
				err = rerr
			}
			return at, err
		}
		if time.Now().After(deadline) {
			return 0, errors.New("timed out waiting for another seeder")
		}
		if err := sleep(ctx, pause); err != nil {
			return 0, err
		}
	}
}

// isSeeded reports whether per's counter is known to be seeded, so it can
// be read without seeding.
func (e *Engine) isSeeded(per period) bool {
	_, ok := e.seeded.Load(per.name + ":seeded")
	return ok
}

// rememberSeeded notes a published marker. The memory is bounded: it is
// dropped whole when it grows past maxSeeded markers (old days' markers
// are never asked for again).
func (e *Engine) rememberSeeded(marker string, at int64) {
	if e.seededN.Add(1) > maxSeeded {
		e.seeded.Clear()
		e.seededN.Store(0)
	}
	e.seeded.Store(marker, at)
}

const maxSeeded = 100_000

func (e *Engine) seedLocked(ctx context.Context, id store.KeyID, per period, marker string) (int64, error) {
	// The previous holder may have finished between our read and our
	// lease.
	if at, ok, err := e.counters.Get(ctx, marker); err != nil || ok {
		return at, err
	}
	seededAt := e.now().Truncate(time.Millisecond)
	var sum int64
	if e.spend != nil {
		s, err := e.spend(ctx, store.UsageFilter{KeyID: id, From: per.start, To: seededAt})
		if err != nil {
			return 0, fmt.Errorf("reading stored usage: %w", err)
		}
		for _, row := range s.Models {
			if per.kind.covers(row.Model) {
				sum += row.RatedPico
			}
		}
	}
	cur, _, err := e.counters.Get(ctx, per.name)
	if err != nil {
		return 0, err
	}
	if _, err := e.counters.Add(ctx, per.name, sum-cur, per.end); err != nil {
		return 0, err
	}
	if _, err := e.counters.Add(ctx, marker, seededAt.UnixMilli(), per.end); err != nil {
		return 0, err
	}
	return seededAt.UnixMilli(), nil
}
