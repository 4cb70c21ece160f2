package web

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/store"
)

// TestDashboard: today's totals, requests per minute, the charts (SVG
// drawn from the rollups), models and top keys, and the accounts that
// cannot serve, all from the store.
func TestDashboard(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	kv, _, err := e.svc.CreateKey(ctx, admin.KeyInput{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	acct, err := e.svc.AddAccount(ctx, admin.AccountInput{Platform: "claude", Type: "api-key", Name: "resting", APIKey: "sk-ant-x", Priority: 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetCooldown(ctx, acct.ID, store.CooldownRateLimited, e.clock.Now().Add(time.Hour), "429"); err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	var recs []store.UsageRecord
	for i, age := range []time.Duration{10 * time.Second, 20 * time.Second, 3 * time.Hour, 50 * time.Hour} {
		recs = append(recs, store.UsageRecord{RequestID: "r" + string(rune('a'+i)), KeyID: kv.ID, AccountID: acct.ID, Model: "claude-opus-4-5",
			Input: 1000, Output: 100, CostPico: 2_000_000_000_000, RatedCostPico: 2_000_000_000_000, Status: 200, CreatedAt: now.Add(-age)})
	}
	if _, err := e.st.InsertUsage(ctx, recs); err != nil {
		t.Fatal(err)
	}
	e.login()
	_, _, body := e.get("/web")
	today := 0
	for _, r := range recs {
		if !r.CreatedAt.Before(midnight(now, time.UTC)) {
			today++
		}
	}
	for _, want := range []string{
		`id="today-requests">` + num(int64(today)) + `<`,
		`id="rpm">2<`, `id="tpm">2,200<`,
		`claude-opus-4-5`, `>alice</a>`, `resting</a>`, `rate_limited`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}
	if !strings.Contains(body, "0 of 1 accounts can serve now") {
		t.Error("account health line missing")
	}
	// Two line charts (24 h, 14 days) and the model bars, as inline SVG.
	if n := strings.Count(body, `<svg class="chart"`); n != 3 {
		t.Errorf("%d charts, want 3", n)
	}
	points := regexp.MustCompile(`<polyline class="s0" points="([^"]+)"`).FindAllStringSubmatch(body, -1)
	if len(points) < 2 || len(strings.Fields(points[0][1])) != 24 || len(strings.Fields(points[1][1])) != 14 {
		t.Errorf("chart series: %v", points)
	}
}

func TestChartHelpers(t *testing.T) {
	for v, want := range map[float64]float64{0: 1, 0.3: 0.5, 7: 10, 12: 20, 480: 500, 1001: 2000} {
		if got := niceCeil(v); got != want {
			t.Errorf("niceCeil(%v) = %v, want %v", v, got, want)
		}
	}
	for v, want := range map[float64]string{0: "0", 12.5: "12.5", 1500: "1.5k", 2_000_000: "2M", 3e9: "3G"} {
		if got := short(v); got != want {
			t.Errorf("short(%v) = %q, want %q", v, got, want)
		}
	}
	svg := string(lineChart([]string{"a", "b"}, []series{{Name: "<x>", Values: []float64{1, 2}}}, 300, 100))
	if !strings.Contains(svg, "&lt;x&gt;") || strings.Contains(svg, "<x>") {
		t.Error("series names are not escaped")
	}
	bars := string(barChart([]string{"m<1>"}, []float64{5}, func(f float64) string { return "5" }, 300))
	if !strings.Contains(bars, "m&lt;1&gt;") || !strings.Contains(bars, "<rect") {
		t.Errorf("bar chart %s", bars)
	}
}
