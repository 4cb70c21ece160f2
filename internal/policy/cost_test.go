package policy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/memcounters"
)

func TestWeekStart(t *testing.T) {
	tokyo := time.FixedZone("UTC+9", 9*3600)
	at := func(d, h, m int) time.Time { return time.Date(2026, time.March, d, h, m, 0, 0, tokyo) } // March 2026: the 2nd is a Monday
	tests := []struct {
		name      string
		t         time.Time
		day, hour int
		want      time.Time
	}{
		{"monday midnight, midweek", at(4, 10, 0), 1, 0, at(2, 0, 0)},
		{"monday midnight, on the reset", at(2, 0, 0), 1, 0, at(2, 0, 0)},
		{"monday midnight, just before", at(1, 23, 59), 1, 0, at(-5, 0, 0)}, // Feb 23
		{"wednesday 9:00, at 8:59 that day", at(4, 8, 59), 3, 9, at(-3, 9, 0)},
		{"wednesday 9:00, at 9:00 that day", at(4, 9, 0), 3, 9, at(4, 9, 0)},
		{"sunday is 0", at(4, 10, 0), 0, 0, at(1, 0, 0)},
		{"saturday 23:00", at(7, 22, 0), 6, 23, at(0, 23, 0)}, // Feb 28
		{"out of range day means monday", at(4, 10, 0), 9, 0, at(2, 0, 0)},
	}
	for _, tc := range tests {
		if got := weekStart(tc.t, tc.day, tc.hour); !got.Equal(tc.want) {
			t.Errorf("%s: weekStart = %v, want %v", tc.name, got, tc.want)
		}
	}
	// Across a daylight-saving change the reset stays at local 00:00.
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	// DST began Sunday 2026-03-08; the week from Monday 03-02 is 167 h long.
	got := weekStart(time.Date(2026, time.March, 9, 12, 0, 0, 0, ny), 1, 0)
	if want := time.Date(2026, time.March, 9, 0, 0, 0, 0, ny); !got.Equal(want) {
		t.Errorf("after DST: %v, want %v", got, want)
	}
}

// TestWeeklyResetInZone: a weekly limit resetting Wednesday 09:00 in the
// store's zone (UTC+8, not UTC) counts only spend since that instant, and
// names the next reset.
func TestWeeklyResetInZone(t *testing.T) {
	c := newClock(time.Date(2026, time.March, 4, 8, 0, 0, 0, shanghai)) // Wednesday 08:00
	e := newEngine(c, nil)
	key := store.Key{ID: "k", Policy: store.KeyPolicy{WeeklyCost: usdPico(10), WeeklyResetDay: 3, WeeklyResetHour: 9}}
	spend := func(dollars float64) {
		mustAdmit(t, e, key, messages())
		record(t, e, key, store.UsageRecord{KeyID: key.ID, Model: "claude-sonnet-4-5", RatedCostPico: usdPico(dollars)})
	}
	spend(9)
	c.Set(time.Date(2026, time.March, 4, 8, 59, 0, 0, shanghai))
	spend(1)
	d := admit(t, e, key, messages())
	wantReset := time.Date(2026, time.March, 4, 9, 0, 0, 0, shanghai)
	if d == nil || d.Code != CodeWeeklyCostExceeded || !d.ResetAt.Equal(wantReset) || retryAfter(d) != "60" {
		t.Fatalf("at 08:59: %v, want reset %v and Retry-After 60", d, wantReset)
	}
	if d.Current != usdPico(10) || d.Limit != usdPico(10) {
		t.Errorf("current %d limit %d", d.Current, d.Limit)
	}
	// 09:00 in UTC+8 is 01:00 UTC: a week computed in UTC would not reset.
	c.Set(wantReset)
	spend(4)
	st, err := e.Status(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	want := CostStatus{Kind: "weekly", Code: CodeWeeklyCostExceeded, Used: usdPico(4), Limit: usdPico(10), Left: usdPico(6),
		PeriodStart: wantReset, ResetAt: wantReset.AddDate(0, 0, 7)}
	if len(st.Costs) != 1 || !sameCost(st.Costs[0], want) {
		t.Errorf("status %+v, want %+v", st.Costs, want)
	}
	// GPT spend does not count toward the weekly (Claude) limit.
	record(t, e, key, store.UsageRecord{KeyID: key.ID, Model: "gpt-5-codex", RatedCostPico: usdPico(100)})
	mustAdmit(t, e, key, messages())
}

func sameCost(a, b CostStatus) bool {
	return a.Kind == b.Kind && a.Code == b.Code && a.Used == b.Used && a.Limit == b.Limit && a.Left == b.Left &&
		a.PeriodStart.Equal(b.PeriodStart) && a.ResetAt.Equal(b.ResetAt)
}

// TestDailyOpus: only Opus spend counts, only Opus requests are refused,
// and the day resets at midnight in the store's zone.
func TestDailyOpus(t *testing.T) {
	c := newClock(time.Date(2026, time.March, 4, 23, 0, 0, 0, shanghai))
	e := newEngine(c, nil)
	key := store.Key{ID: "k", Policy: store.KeyPolicy{DailyOpusCost: usdPico(3), DailyCost: usdPico(50)}}
	opus := messages()
	opus.Model = "us.anthropic.claude-opus-4-1-20250805-v1:0"
	record(t, e, key, store.UsageRecord{KeyID: key.ID, Model: "claude-sonnet-4-5", RatedCostPico: usdPico(20)})
	mustAdmit(t, e, key, opus)
	record(t, e, key, store.UsageRecord{KeyID: key.ID, Model: "claude-opus-4-1-20250805", RatedCostPico: usdPico(3)})
	d := admit(t, e, key, opus)
	if d == nil || d.Code != CodeDailyOpusCostExceeded || d.Status != 402 || d.Type != TypeBilling || retryAfter(d) != "3600" {
		t.Fatalf("Opus after $3 of Opus: %v", d)
	}
	mustAdmit(t, e, key, messages()) // Sonnet goes on
	st, _ := e.Status(t.Context(), key)
	if len(st.Costs) != 2 || st.Costs[0].Kind != "daily" || st.Costs[0].Used != usdPico(23) || st.Costs[1].Kind != "daily_opus" || st.Costs[1].Used != usdPico(3) {
		t.Errorf("status %+v", st.Costs)
	}
	c.Set(time.Date(2026, time.March, 5, 0, 0, 0, 0, shanghai))
	mustAdmit(t, e, key, opus)
}

// TestSpendSurvivesRestart seeds spend counters from a real SQLite store:
// a new engine with fresh counters (a restart) sees the same totals as the
// engine that recorded them, counting every record exactly once.
func TestSpendSurvivesRestart(t *testing.T) {
	ctx := t.Context()
	c := newClock(t0) // Wednesday 10:00 UTC+8
	st := openStore(t, t.TempDir(), c)
	key := store.Key{ID: "k", Policy: store.KeyPolicy{
		DailyCost: usdPico(10), WeeklyCost: usdPico(30), TotalCost: usdPico(100), DailyOpusCost: usdPico(4), WeeklyResetDay: 1,
	}}
	n := 0
	rec := func(model string, dollars float64, at time.Time) store.UsageRecord {
		n++
		return store.UsageRecord{RequestID: fmt.Sprintf("r%d", n), KeyID: key.ID, AccountID: "a", Model: model,
			CostPico: usdPico(dollars), RatedCostPico: usdPico(dollars), Status: 200, CreatedAt: at}
	}
	insert := func(recs ...store.UsageRecord) {
		if _, err := st.InsertUsage(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	insert(
		rec("claude-sonnet-4-5", 50, t0.AddDate(0, 0, -10)),           // total only
		rec("claude-sonnet-4-5", 20, t0.AddDate(0, 0, -1)),            // Tuesday: this week
		rec("gpt-5-codex", 7, t0.AddDate(0, 0, -1)),                   // not Claude: total only
		rec("claude-opus-4-1-20250805", 2, t0.Add(-time.Hour)),        // today
		rec("claude-sonnet-4-5", 3, t0.Add(-time.Minute)),             // today
		rec("claude-sonnet-4-5", 1000, t0.Add(-time.Minute)),          // today
		rec("claude-opus-4-1-20250805", 0.5, t0.Add(-10*time.Hour-1)), // yesterday 23:59:59 in UTC+8
	)
	// Another key's spend is not this key's.
	if _, err := st.InsertUsage(ctx, []store.UsageRecord{{RequestID: "other", KeyID: "someone-else", Model: "claude-sonnet-4-5",
		RatedCostPico: usdPico(1000), CreatedAt: t0}}); err != nil {
		t.Fatal(err)
	}
	open := func() *Engine {
		return newEngine(c, func(o *Options) { o.Spend = st.SummarizeUsage })
	}
	want := map[string]int64{
		"total":      usdPico(50 + 20 + 7 + 2 + 3 + 1000 + 0.5),
		"weekly":     usdPico(20 + 2 + 3 + 1000 + 0.5), // Monday 00:00 on: yesterday 23:59 is Tuesday
		"daily":      usdPico(2 + 3 + 1000),
		"daily_opus": usdPico(2),
	}
	check := func(e *Engine, label string) {
		t.Helper()
		s, err := e.Status(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		for _, cs := range s.Costs {
			if cs.Used != want[cs.Kind] {
				t.Errorf("%s: %s used %d, want %d", label, cs.Kind, cs.Used, want[cs.Kind])
			}
		}
		if len(s.Costs) != 4 {
			t.Errorf("%s: %d cost limits, want 4", label, len(s.Costs))
		}
	}
	e1 := open()
	check(e1, "first start")

	// A new response: the relay stores it and records it. Both engines
	// must count it once.
	c.Advance(time.Second)
	r := rec("claude-opus-4-1-20250805", 1, c.Now())
	insert(r)
	record(t, e1, key, r)
	for k := range want {
		want[k] += usdPico(1)
	}
	check(e1, "after a record")
	c.Advance(time.Millisecond) // a restart takes time
	check(open(), "after a restart")

	// A record stored before a new engine seeds (so the seed read it) and
	// recorded after: counted by the seed only.
	c.Advance(time.Second)
	late := rec("claude-sonnet-4-5", 0.25, c.Now())
	insert(late)
	c.Advance(time.Millisecond)
	e3 := open()
	for k := range want {
		if k != "daily_opus" {
			want[k] += usdPico(0.25)
		}
	}
	check(e3, "seeded with the late record")
	record(t, e3, key, late)
	check(e3, "late record recorded after the seed")

	// $1 more of Opus brings the day's Opus spend to $4 of $4: the engine
	// that recorded it and a restarted one both refuse Opus. (The total,
	// passed long ago by the $1000 record, answers first while it is set.)
	c.Advance(time.Second)
	more := rec("claude-opus-4-1", 1, c.Now())
	insert(more)
	record(t, e3, key, more)
	opus := messages()
	opus.Model = "claude-opus-4-1"
	if d := e3.Admit(ctx, key, opus); d == nil || d.Code != CodeTotalCostExceeded {
		t.Fatalf("all limits set: %v, want %s", d, CodeTotalCostExceeded)
	}
	key.Policy.TotalCost, key.Policy.WeeklyCost, key.Policy.DailyCost = 0, 0, 0
	c.Advance(time.Millisecond)
	for _, e := range []*Engine{e3, open()} {
		if d := e.Admit(ctx, key, opus); d == nil || d.Code != CodeDailyOpusCostExceeded || d.Current != usdPico(4) {
			t.Fatalf("Opus: %v, want %s at $4", d, CodeDailyOpusCostExceeded)
		}
	}
}

// TestSeedOnce: many requests reaching a fresh counter at once read the
// stored usage once per counter, and all see the seeded total.
func TestSeedOnce(t *testing.T) {
	c := newClock(t0)
	var calls sync.Map // period start → *atomic.Int32
	spend := func(ctx context.Context, f store.UsageFilter) (store.UsageSummary, error) {
		v, _ := calls.LoadOrStore(f.From, new(atomic.Int32))
		v.(*atomic.Int32).Add(1)
		time.Sleep(20 * time.Millisecond) // a slow store widens the race
		return store.UsageSummary{Models: []store.UsageRow{
			{Model: "claude-sonnet-4-5", Counters: store.Counters{RatedPico: usdPico(5)}},
		}}, nil
	}
	e := newEngine(c, func(o *Options) { o.Spend = spend })
	key := store.Key{ID: "k", Policy: store.KeyPolicy{DailyCost: usdPico(5), TotalCost: usdPico(50)}}
	var wg sync.WaitGroup
	var refused atomic.Int32
	for range 50 {
		wg.Go(func() {
			if d := e.Admit(t.Context(), key, messages()); d != nil && d.Code == CodeDailyCostExceeded {
				refused.Add(1)
			} else {
				t.Errorf("got %v, want %s", d, CodeDailyCostExceeded)
			}
		})
	}
	wg.Wait()
	n := 0
	calls.Range(func(k, v any) bool {
		n++
		if got := v.(*atomic.Int32).Load(); got != 1 {
			t.Errorf("period from %v read %d times, want once", k, got)
		}
		return true
	})
	if n != 2 {
		t.Errorf("%d periods read, want 2 (daily, total)", n)
	}
}

// TestSeedFailureRetries: a failed read of stored usage refuses the
// request (503, not unmetered) and the next request seeds again.
func TestSeedFailureRetries(t *testing.T) {
	c := newClock(t0)
	fail := true
	spend := func(ctx context.Context, f store.UsageFilter) (store.UsageSummary, error) {
		if fail {
			return store.UsageSummary{}, fmt.Errorf("disk on fire")
		}
		return store.UsageSummary{Models: []store.UsageRow{{Model: "m", Counters: store.Counters{RatedPico: 7}}}}, nil
	}
	e := newEngine(c, func(o *Options) { o.Spend = spend })
	key := store.Key{ID: "k", Policy: store.KeyPolicy{DailyCost: 7}}
	d := e.Admit(t.Context(), key, messages())
	if d == nil || d.Status != 503 || d.Code != CodeLimitsUnavailable {
		t.Fatalf("failing store: %v", d)
	}
	fail = false
	if d := e.Admit(t.Context(), key, messages()); d == nil || d.Code != CodeDailyCostExceeded {
		t.Fatalf("after recovery: %v", d)
	}
}

// TestSeederDiedHalfway: a seeder that set the counter but died before
// marking it seeded (a crashed instance in shared mode) is repaired, not
// added to.
func TestSeederDiedHalfway(t *testing.T) {
	c := newClock(t0)
	counters := memcounters.New(c.Now)
	spend := func(ctx context.Context, f store.UsageFilter) (store.UsageSummary, error) {
		return store.UsageSummary{Models: []store.UsageRow{{Model: "m", Counters: store.Counters{RatedPico: 40}}}}, nil
	}
	e := New(Options{Counters: counters, Spend: spend, Now: c.Now, Location: shanghai})
	key := store.Key{ID: "k", Policy: store.KeyPolicy{DailyCost: 100}}
	per := e.periodAt(key.ID, key.Policy, spendDaily, t0)
	if _, err := counters.Add(t.Context(), per.name, 40, per.end); err != nil { // the dead seeder's work
		t.Fatal(err)
	}
	st, err := e.Status(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if st.Costs[0].Used != 40 {
		t.Errorf("used %d, want 40", st.Costs[0].Used)
	}
}

// staleMarker makes the next read of a "seeded" marker miss, as a request
// does that read just before another finished seeding.
type staleMarker struct {
	store.LimitCounters
	stale atomic.Bool
}

func (s *staleMarker) Get(ctx context.Context, name string) (int64, bool, error) {
	if strings.HasSuffix(name, ":seeded") && s.stale.CompareAndSwap(true, false) {
		return 0, false, nil
	}
	return s.LimitCounters.Get(ctx, name)
}

// TestSeedRecheckUnderLease: a request that saw the counter unseeded, and
// gets the seeding lease only after the seeder finished, re-checks and
// does not seed again.
func TestSeedRecheckUnderLease(t *testing.T) {
	c := newClock(t0)
	counters := &staleMarker{LimitCounters: memcounters.New(c.Now)}
	var calls atomic.Int32
	spend := func(ctx context.Context, f store.UsageFilter) (store.UsageSummary, error) {
		calls.Add(1)
		return store.UsageSummary{Models: []store.UsageRow{{Model: "m", Counters: store.Counters{RatedPico: 40}}}}, nil
	}
	e := New(Options{Counters: counters, Spend: spend, Now: c.Now, Location: shanghai})
	key := store.Key{ID: "k", Policy: store.KeyPolicy{DailyCost: 100}}
	for range 2 {
		if d := e.Admit(t.Context(), key, messages()); d != nil {
			t.Fatal(d)
		}
		counters.stale.Store(true)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("stored usage read %d times, want once", n)
	}
	if st, _ := e.Status(t.Context(), key); st.Costs[0].Used != 40 {
		t.Errorf("used %d, want 40", st.Costs[0].Used)
	}
}
