package store_test

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
	_ "time/tzdata" // America/New_York for the DST cases, on any machine

	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/storetest"
)

// TestPlanSummary checks that the plan covers a span exactly once with
// whole days and whole hours, and reads records only in what is left: less
// than four hours in all, however long the span. (In a zone off the hour,
// an edge from 17:06 to a day start at 18:15 holds no whole hour.) Both
// backends total usage by this plan.
func TestPlanSummary(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2025, time.March, 8, 21, 37, 0, 0, time.UTC) // a DST change in New York follows
	rng := rand.New(rand.NewPCG(9, 10))
	for _, loc := range []*time.Location{storetest.Zone(), ny, time.UTC} {
		for range 2000 {
			lo := base.UnixMilli() + rng.Int64N(40*24*3600*1000)
			hi := lo + rng.Int64N(30*24*3600*1000)
			switch rng.IntN(5) {
			case 0:
				lo = store.OpenStart
			case 1:
				hi = store.OpenEnd
			case 2:
				lo = store.FloorDay(lo, loc)
			case 3:
				hi = store.FloorHour(hi)
			}
			if lo >= hi {
				continue // callers answer an empty span themselves
			}
			whole := store.Span{Lo: lo, Hi: hi}
			days, hours, partial := store.PlanSummary(whole, loc)
			for _, d := range days {
				if store.FloorDay(d.Lo, loc) != d.Lo || (d.Hi != store.OpenEnd && store.FloorDay(d.Hi, loc) != d.Hi) {
					t.Fatalf("%v: day span %v is not whole days in %v", whole, d, loc)
				}
			}
			for _, h := range hours {
				if store.FloorHour(h.Lo) != h.Lo || store.FloorHour(h.Hi) != h.Hi {
					t.Fatalf("%v: hour span %v is not whole hours", whole, h)
				}
			}
			if len(partial) > 4 {
				t.Fatalf("%v: %d partial spans", whole, len(partial))
			}
			var recordMs int64
			for _, p := range partial {
				if p.Lo == store.OpenStart || p.Hi == store.OpenEnd {
					t.Fatalf("%v: partial span %v is open", whole, p)
				}
				recordMs += p.Hi - p.Lo
			}
			if recordMs >= 4*int64(time.Hour/time.Millisecond) {
				t.Fatalf("%v: records read over %v", whole, time.Duration(recordMs)*time.Millisecond)
			}
			all := slices.Concat(days, hours, partial)
			slices.SortFunc(all, func(a, b store.Span) int { return cmp.Compare(a.Lo, b.Lo) })
			at := lo
			for _, p := range all {
				if p.Lo != at || p.Hi <= p.Lo {
					t.Fatalf("%v: parts %v do not tile it", whole, all)
				}
				at = p.Hi
			}
			if at != hi {
				t.Fatalf("%v: parts %v end at %d", whole, all, at)
			}
		}
	}
}
