package openai

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

func TestReadCodexLimits(t *testing.T) {
	tests := []struct {
		name string
		h    http.Header
		ok   bool
		want CodexLimits
	}{
		{"plus: 5h primary, weekly secondary", hdr(
			"X-Codex-Primary-Used-Percent", "42", "X-Codex-Primary-Window-Minutes", "300", "X-Codex-Primary-Reset-After-Seconds", "18000",
			"X-Codex-Secondary-Used-Percent", "94.5", "X-Codex-Secondary-Window-Minutes", "10080", "X-Codex-Secondary-Reset-After-Seconds", "486400",
			"X-Codex-Plan-Type", "Plus", "X-Codex-Active-Limit", "premium", "X-Codex-Credits-Has-Credits", "False"), true,
			CodexLimits{
				Primary:   CodexWindow{Reported: true, UsedPercent: 42, WindowMinutes: 300, ResetAfter: 5 * time.Hour},
				Secondary: CodexWindow{Reported: true, UsedPercent: 94.5, WindowMinutes: 10080, ResetAfter: 486400 * time.Second},
				PlanType:  "plus",
			}},
		{"reset-at alongside", hdr("X-Codex-Primary-Used-Percent", "0.81", "X-Codex-Primary-Reset-At", "1800003600"), true,
			CodexLimits{Primary: CodexWindow{Reported: true, UsedPercent: 0.81, ResetAt: time.Unix(1800003600, 0)}}},
		{"malformed values left zero", hdr("X-Codex-Primary-Used-Percent", "12", "X-Codex-Primary-Window-Minutes", "-300",
			"X-Codex-Primary-Reset-After-Seconds", "soon", "X-Codex-Primary-Reset-At", "99999999999999",
			"X-Codex-Secondary-Used-Percent", "NaN"), true,
			CodexLimits{Primary: CodexWindow{Reported: true, UsedPercent: 12}}},
		{"negative or infinite percent is no report", hdr("X-Codex-Primary-Used-Percent", "-1", "X-Codex-Secondary-Used-Percent", "+Inf"), false, CodexLimits{}},
		{"only a window length", hdr("X-Codex-Primary-Window-Minutes", "300"), false, CodexLimits{}},
		{"api key answer", hdr("X-Ratelimit-Remaining-Requests", "499"), false, CodexLimits{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ReadCodexLimits(tt.h)
			if ok != tt.ok || got != tt.want {
				t.Fatalf("got %+v, %v\nwant %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestCodexLimitsWindows(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	plus := CodexLimits{
		Primary:   CodexWindow{Reported: true, UsedPercent: 100, WindowMinutes: 300, ResetAfter: time.Hour},
		Secondary: CodexWindow{Reported: true, UsedPercent: 60, WindowMinutes: 10080, ResetAt: now.Add(72 * time.Hour)},
	}
	weeklyOnly := CodexLimits{Primary: CodexWindow{Reported: true, UsedPercent: 37, WindowMinutes: 10080, ResetAt: now.Add(time.Hour)}}
	unlabeled := CodexLimits{
		Primary:   CodexWindow{Reported: true, UsedPercent: 10, ResetAfter: time.Minute},
		Secondary: CodexWindow{Reported: true, UsedPercent: 20},
	}
	if w := plus.FiveHour(); w != plus.Primary {
		t.Errorf("plus FiveHour = %+v", w)
	}
	if w := plus.Weekly(); w != plus.Secondary {
		t.Errorf("plus Weekly = %+v", w)
	}
	if w := weeklyOnly.FiveHour(); w.Reported {
		t.Errorf("weekly-only plan has a five-hour window: %+v", w)
	}
	if w := weeklyOnly.Weekly(); w != weeklyOnly.Primary {
		t.Errorf("weekly-only Weekly = %+v", w)
	}
	if unlabeled.FiveHour() != unlabeled.Primary || unlabeled.Weekly() != unlabeled.Secondary {
		t.Errorf("without lengths the positions decide: %+v %+v", unlabeled.FiveHour(), unlabeled.Weekly())
	}

	if until, ok := plus.Exhausted(now); !ok || !until.Equal(now.Add(time.Hour)) {
		t.Errorf("plus Exhausted = %v, %v", until, ok)
	}
	both := plus
	both.Secondary.UsedPercent = 100.5
	if until, ok := both.Exhausted(now); !ok || !until.Equal(now.Add(72*time.Hour)) {
		t.Errorf("both exhausted: %v, %v; want the later reset", until, ok)
	}
	if _, ok := weeklyOnly.Exhausted(now); ok {
		t.Errorf("37%% used is not exhausted")
	}
	noReset := CodexLimits{Primary: CodexWindow{Reported: true, UsedPercent: 100}}
	if until, ok := noReset.Exhausted(now); !ok || !until.IsZero() {
		t.Errorf("exhausted without reset: %v, %v", until, ok)
	}

	w, ok := plus.Window5h(now)
	want := store.Window{Start: now.Add(time.Hour - 5*time.Hour), End: now.Add(time.Hour), Status: store.WindowRejected}
	if !ok || w != want {
		t.Errorf("Window5h = %+v, %v; want %+v", w, ok, want)
	}
	open := CodexLimits{Primary: CodexWindow{Reported: true, UsedPercent: 3, WindowMinutes: 300, ResetAt: now.Add(4 * time.Hour)}}
	if w, ok := open.Window5h(now); !ok || w.Status != store.WindowAllowed || !w.Start.Equal(now.Add(-time.Hour)) {
		t.Errorf("open Window5h = %+v, %v", w, ok)
	}
	if _, ok := weeklyOnly.Window5h(now); ok {
		t.Errorf("weekly-only plan reported a five-hour window")
	}
	if _, ok := (CodexLimits{Primary: CodexWindow{Reported: true, UsedPercent: 3, WindowMinutes: 300}}).Window5h(now); ok {
		t.Errorf("a window without a reset was reported")
	}
}

func TestReadCodexLimitsFromHeadersRoundTrip(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h := hdr("X-Codex-Primary-Used-Percent", "100", "X-Codex-Primary-Window-Minutes", "300",
		"X-Codex-Primary-Reset-At", strconv.FormatInt(now.Add(2*time.Hour).Unix(), 10), "X-Codex-Primary-Reset-After-Seconds", "60")
	l, ok := ReadCodexLimits(h)
	if !ok {
		t.Fatal("not read")
	}
	// reset-at is absolute and wins over the relative value.
	if r := l.Primary.Reset(now); !r.Equal(now.Add(2 * time.Hour)) {
		t.Fatalf("reset = %v", r)
	}
}
