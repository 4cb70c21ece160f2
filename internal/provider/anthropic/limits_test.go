package anthropic

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// unified builds response headers from suffix/value pairs of the
// anthropic-ratelimit-unified-* family.
func unified(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Set("anthropic-ratelimit-unified-"+kv[i], kv[i+1])
	}
	return h
}

func unix(sec int64) string { return strconv.FormatInt(sec, 10) }

func TestReadLimits(t *testing.T) {
	const r5, r7, rAll = 1_800_000_000, 1_800_400_000, 1_800_000_100
	cases := []struct {
		name   string
		header http.Header
		ok     bool
		want   Limits
	}{
		{"no headers", http.Header{}, false, Limits{}},
		{"api-key account headers only", http.Header{
			"Anthropic-Ratelimit-Requests-Limit":     {"50"},
			"Anthropic-Ratelimit-Requests-Remaining": {"49"},
			"Retry-After":                            {"3"},
		}, false, Limits{}},
		{"full subscription answer", unified(
			"status", "allowed",
			"reset", unix(rAll),
			"5h-status", "allowed_warning",
			"5h-reset", unix(r5),
			"5h-utilization", "0.91",
			"7d-status", "allowed",
			"7d-reset", unix(r7),
			"7d-utilization", "0.4",
			"representative-claim", "five_hour",
		), true, Limits{
			Status:   "allowed",
			Reset:    time.Unix(rAll, 0),
			FiveHour: LimitWindow{Status: store.WindowWarning, Reset: time.Unix(r5, 0), Utilization: 0.91},
			SevenDay: LimitWindow{Status: store.WindowAllowed, Reset: time.Unix(r7, 0), Utilization: 0.4},
			Claim:    ClaimFiveHour,
		}},
		{"only an unrelated unified header still marks a subscription",
			unified("fallback-percentage", "0.5"), true, Limits{}},
		{"statuses and claim normalised", unified(
			"status", " Rejected ",
			"5h-status", "REJECTED",
			"representative-claim", "Seven_Day_Opus",
		), true, Limits{
			Status:   store.WindowRejected,
			FiveHour: LimitWindow{Status: store.WindowRejected},
			Claim:    ClaimSevenDayOpus,
		}},
		{"resets as RFC 3339", unified(
			"reset", "2027-01-15T08:00:00Z",
			"5h-reset", "2027-01-15T10:00:00+02:00",
		), true, Limits{
			Reset:    time.Date(2027, 1, 15, 8, 0, 0, 0, time.UTC),
			FiveHour: LimitWindow{Reset: time.Date(2027, 1, 15, 8, 0, 0, 0, time.UTC)},
		}},
		{"bad numbers leave only their own field zero", unified(
			"status", "allowed",
			"reset", "soon",
			"5h-reset", "-5",
			"5h-utilization", "NaN",
			"5h-status", "allowed",
			"7d-reset", "99999999999999999999",
			"7d-utilization", "-0.2",
		), true, Limits{
			Status:   "allowed",
			FiveHour: LimitWindow{Status: "allowed"},
		}},
		{"more bad numbers", unified(
			"reset", "0",
			"5h-utilization", "+Inf",
			"7d-utilization", "0,5",
			"7d-reset", "1800000000.5",
		), true, Limits{}},
		{"utilization past one kept", unified("5h-utilization", "1.02"), true,
			Limits{FiveHour: LimitWindow{Utilization: 1.02}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := ReadLimits(c.header)
			if ok != c.ok {
				t.Fatalf("ok = %v, want %v", ok, c.ok)
			}
			if !sameLimits(got, c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

// sameLimits compares with time.Equal, since RFC 3339 resets keep their
// zone.
func sameLimits(a, b Limits) bool {
	sameWindow := func(x, y LimitWindow) bool {
		return x.Status == y.Status && x.Reset.Equal(y.Reset) && x.Utilization == y.Utilization
	}
	return a.Status == b.Status && a.Reset.Equal(b.Reset) && a.Claim == b.Claim &&
		sameWindow(a.FiveHour, b.FiveHour) && sameWindow(a.SevenDay, b.SevenDay)
}

func TestWindow5h(t *testing.T) {
	end := time.Unix(1_800_018_000, 0)
	cases := []struct {
		name   string
		header http.Header
		ok     bool
		want   store.Window
	}{
		{"reset and status", unified("5h-reset", unix(end.Unix()), "5h-status", "allowed_warning"), true,
			store.Window{Start: end.Add(-5 * time.Hour), End: end, Status: store.WindowWarning}},
		{"status missing means allowed", unified("5h-reset", unix(end.Unix())), true,
			store.Window{Start: end.Add(-5 * time.Hour), End: end, Status: store.WindowAllowed}},
		{"rejected", unified("5h-reset", unix(end.Unix()), "5h-status", "rejected"), true,
			store.Window{Start: end.Add(-5 * time.Hour), End: end, Status: store.WindowRejected}},
		{"no 5h reset", unified("5h-status", "rejected", "reset", unix(end.Unix())), false, store.Window{}},
		{"unreadable 5h reset", unified("5h-reset", "tomorrow", "5h-status", "allowed"), false, store.Window{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, _ := ReadLimits(c.header)
			got, ok := l.Window5h()
			if ok != c.ok || got != c.want {
				t.Errorf("Window5h() = %+v, %v; want %+v, %v", got, ok, c.want, c.ok)
			}
		})
	}
}

func TestAccountWide(t *testing.T) {
	const r5, r7, rAll = 1_800_000_000, 1_800_400_000, 1_800_000_100
	cases := []struct {
		name   string
		header http.Header
		ok     bool
		until  int64 // unix seconds; 0 = zero time
	}{
		{"all allowed", unified("status", "allowed", "5h-status", "allowed", "5h-reset", unix(r5),
			"7d-status", "allowed", "7d-reset", unix(r7), "representative-claim", "five_hour"), false, 0},
		{"warning is not exhausted", unified("5h-status", "allowed_warning", "5h-reset", unix(r5)), false, 0},
		{"5h rejected", unified("status", "rejected", "5h-status", "rejected", "5h-reset", unix(r5),
			"7d-status", "allowed", "7d-reset", unix(r7)), true, r5},
		{"7d rejected", unified("5h-status", "allowed", "5h-reset", unix(r5),
			"7d-status", "rejected", "7d-reset", unix(r7)), true, r7},
		{"both rejected: the later reset", unified("5h-status", "rejected", "5h-reset", unix(r5),
			"7d-status", "rejected", "7d-reset", unix(r7)), true, r7},
		{"both rejected, later one first", unified("5h-status", "rejected", "5h-reset", unix(r7),
			"7d-status", "rejected", "7d-reset", unix(r5)), true, r7},
		{"claim five_hour with overall rejected", unified("status", "rejected", "reset", unix(rAll),
			"representative-claim", "five_hour", "5h-reset", unix(r5)), true, r5},
		{"claim seven_day with overall rejected", unified("status", "rejected", "reset", unix(rAll),
			"representative-claim", "seven_day", "7d-reset", unix(r7)), true, r7},
		{"claim without window reset falls back to overall reset", unified("status", "rejected",
			"reset", unix(rAll), "representative-claim", "seven_day"), true, rAll},
		{"rejected window without any reset", unified("7d-status", "rejected"), true, 0},
		{"claim five_hour but overall allowed", unified("status", "allowed",
			"representative-claim", "five_hour", "5h-reset", unix(r5)), false, 0},
		{"opus weekly limit is per family", unified("status", "rejected", "reset", unix(r7),
			"representative-claim", "seven_day_opus", "5h-status", "allowed", "7d-status", "allowed"), false, 0},
		{"sonnet weekly limit is per family", unified("status", "rejected", "reset", unix(r7),
			"representative-claim", "seven_day_sonnet"), false, 0},
		{"overall rejected without claim", unified("status", "rejected", "reset", unix(rAll)), false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, _ := ReadLimits(c.header)
			until, ok := l.AccountWide()
			want := time.Time{}
			if c.until != 0 {
				want = time.Unix(c.until, 0)
			}
			if ok != c.ok || !until.Equal(want) {
				t.Errorf("AccountWide() = %v, %v; want %v, %v", until, ok, want, c.ok)
			}
		})
	}
}

// FuzzReadLimits checks that no header value makes ReadLimits panic or
// report a reset before the epoch or a utilization that is not a number.
func FuzzReadLimits(f *testing.F) {
	f.Add("rejected", "1800000000", "0.5", "five_hour")
	f.Add("", "2027-01-15T08:00:00Z", "NaN", "")
	f.Add("x", "-1", "-Inf", "seven_day")
	f.Fuzz(func(t *testing.T, status, reset, util, claim string) {
		h := unified("status", status, "reset", reset, "5h-status", status, "5h-reset", reset,
			"5h-utilization", util, "7d-status", status, "7d-reset", reset, "7d-utilization", util,
			"representative-claim", claim)
		l, ok := ReadLimits(h)
		if !ok {
			t.Fatal("headers present but ok = false")
		}
		for _, w := range []LimitWindow{l.FiveHour, l.SevenDay} {
			if !w.Reset.IsZero() && w.Reset.Unix() <= 0 {
				t.Fatalf("reset %v at or before the epoch", w.Reset)
			}
			if w.Utilization != w.Utilization || w.Utilization < 0 {
				t.Fatalf("utilization %v", w.Utilization)
			}
		}
		l.Window5h()
		l.AccountWide()
	})
}
