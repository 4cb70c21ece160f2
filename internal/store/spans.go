package store

import (
	"math"
	"time"
)

// Span is [Lo, Hi) in unix milliseconds; OpenStart and OpenEnd leave an
// end open.
type Span struct{ Lo, Hi int64 }

// Open ends of a Span.
const (
	OpenStart = math.MinInt64
	OpenEnd   = math.MaxInt64
)

// Span is the time span of f: [From, To), an end open where it is zero.
func (f UsageFilter) Span() Span {
	sp := Span{OpenStart, OpenEnd}
	if !f.From.IsZero() {
		sp.Lo = f.From.UnixMilli()
	}
	if !f.To.IsZero() {
		sp.Hi = f.To.UnixMilli()
	}
	return sp
}

// PlanSummary splits whole into what a backend reads to total it: the
// span of whole days in loc (daily rollups), the spans of whole UTC hours
// in the rest (hourly rollups), and the partial hours at the two ends
// (records). The parts are disjoint and cover whole, so every record is
// counted once, and the records read are at most four partial hours
// however long the span. Days of a zone off the hour (UTC+05:45) start
// inside a UTC hour; the hours and records then fill in around them.
func PlanSummary(whole Span, loc *time.Location) (days, hours, partial []Span) {
	edges := []Span{whole}
	if d0, d1 := CeilDay(whole.Lo, loc), FloorDay(whole.Hi, loc); d0 < d1 {
		days = []Span{{d0, d1}}
		edges = []Span{{whole.Lo, d0}, {d1, whole.Hi}}
	}
	for _, e := range edges {
		if e.Lo >= e.Hi {
			continue
		}
		h0, h1 := CeilHour(e.Lo), FloorHour(e.Hi)
		if h0 >= h1 {
			partial = append(partial, e)
			continue
		}
		hours = append(hours, Span{h0, h1})
		for _, p := range [...]Span{{e.Lo, h0}, {h1, e.Hi}} {
			if p.Lo < p.Hi {
				partial = append(partial, p)
			}
		}
	}
	return days, hours, partial
}

const hourMs = int64(time.Hour / time.Millisecond)

// openEnd reports whether ms is an open end of a span.
func openEnd(ms int64) bool { return ms == OpenStart || ms == OpenEnd }

// FloorHour is the start of the UTC hour holding ms; CeilHour the first
// hour start at or after ms. Open ends stay open.
func FloorHour(ms int64) int64 {
	if openEnd(ms) {
		return ms
	}
	h := ms / hourMs * hourMs
	if h > ms {
		h -= hourMs
	}
	return h
}

func CeilHour(ms int64) int64 {
	h := FloorHour(ms)
	if h == ms {
		return ms
	}
	return h + hourMs
}

// FloorDay is the start (midnight in loc) of the day holding ms; CeilDay
// the first day start at or after ms. Around a DST change a day is 23 or
// 25 hours; time.Date picks the right instant. Open ends stay open.
func FloorDay(ms int64, loc *time.Location) int64 {
	if openEnd(ms) {
		return ms
	}
	y, m, d := time.UnixMilli(ms).In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, loc).UnixMilli()
}

func CeilDay(ms int64, loc *time.Location) int64 {
	d := FloorDay(ms, loc)
	if d == ms {
		return ms
	}
	y, m, day := time.UnixMilli(d).In(loc).Date()
	return time.Date(y, m, day+1, 0, 0, 0, 0, loc).UnixMilli()
}
