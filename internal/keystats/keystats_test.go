package keystats

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/policy"
	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/memcounters"
	"github.com/crs-relay/crs/internal/store/sqlite"
)

type env struct {
	st   *sqlite.Store
	h    *Handler
	key  string
	id   store.KeyID
	now  time.Time
	zone *time.Location
}

func newEnv(t *testing.T, min time.Duration) *env {
	t.Helper()
	zone := time.FixedZone("UTC+8", 8*3600)
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, zone)
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{Location: zone})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key := secret.NewRelayKey()
	k := store.Key{ID: "key_1", Name: "alice", Hash: secret.Hash(key), Hint: key[len(key)-4:], CreatedAt: now.Add(-60 * 24 * time.Hour),
		Policy: store.KeyPolicy{DailyCost: 5_000_000_000_000, Permissions: []store.Platform{store.PlatformClaude}}}
	if err := st.CreateKey(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return now }
	eng := policy.New(policy.Options{Counters: memcounters.New(clock), Spend: st.SummarizeUsage, Location: zone, Now: clock})
	h := New(Options{Keys: st, Usage: st, Policy: eng, Location: zone, MinDuration: min,
		ClientIP: func(r *http.Request) string { return r.Header.Get("X-Test-IP") }})
	return &env{st: st, h: h, key: key, id: k.ID, now: now, zone: zone}
}

func (e *env) record(t *testing.T, id string, at time.Time, model string, in, cost int64) {
	t.Helper()
	if _, err := e.st.InsertUsage(context.Background(), []store.UsageRecord{{RequestID: id, Attempt: 1, KeyID: e.id, AccountID: "acc",
		Model: model, Input: in, Output: 1, CostPico: cost, RatedCostPico: cost, Status: 200, CreatedAt: at}}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) ask(t *testing.T, body, ip string) (*httptest.ResponseRecorder, time.Duration) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, Path, strings.NewReader(body))
	req.Header.Set("X-Test-IP", ip)
	w := httptest.NewRecorder()
	start := time.Now()
	e.h.ServeHTTP(w, req)
	return w, time.Since(start)
}

func TestStatsForTheRightKey(t *testing.T) {
	e := newEnv(t, time.Millisecond)
	e.record(t, "r1", e.now.Add(-time.Hour), "claude-sonnet-4-5", 100, 1_000_000_000_000)         // today
	e.record(t, "r2", e.now.Add(-time.Hour), "claude-opus-4-5", 10, 2_000_000_000_000)            // today
	e.record(t, "r3", e.now.Add(-5*24*time.Hour), "claude-sonnet-4-5", 1000, 3_000_000_000_000)   // this month
	e.record(t, "r4", e.now.Add(-40*24*time.Hour), "claude-sonnet-4-5", 10000, 4_000_000_000_000) // last month
	w, _ := e.ask(t, `{"apiKey":"`+e.key+`"}`, "192.0.2.1")
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	var st Stats
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Key.Name != "alice" || st.Key.Status != "active" || len(st.Key.Permissions) != 1 {
		t.Fatalf("key = %+v", st.Key)
	}
	check := func(name string, p Period, requests, input int64, cost string, models int) {
		t.Helper()
		if p.Totals.Requests != requests || p.Totals.Input != input || p.Totals.CostUSD.String() != cost || len(p.Models) != models {
			t.Errorf("%s = %+v, want %d requests, %d input, $%s, %d models", name, p, requests, input, cost, models)
		}
	}
	check("today", st.Usage.Today, 2, 110, "3", 2)
	check("month", st.Usage.Month, 3, 1110, "6", 2)
	check("all time", st.Usage.AllTime, 4, 11110, "10", 2)
	if st.Usage.AllTime.From != nil || st.Usage.Today.From == nil || !st.Usage.Today.From.Equal(time.Date(2026, 11, 26, 0, 0, 0, 0, e.zone)) {
		t.Errorf("period starts: today %v, all time %v", st.Usage.Today.From, st.Usage.AllTime.From)
	}
	// The daily cost limit shows what is used and what is left.
	if st.Limits == nil || len(st.Limits.Costs) != 1 || st.Limits.Costs[0].Used != 3_000_000_000_000 || st.Limits.Costs[0].Left != 2_000_000_000_000 {
		t.Fatalf("limits = %+v", st.Limits)
	}
	if strings.Contains(w.Body.String(), e.key) || strings.Contains(w.Body.String(), secret.Hash(e.key)) {
		t.Fatal("the answer repeats the key or its hash")
	}
	// api_key is accepted too.
	if w, _ := e.ask(t, `{"api_key":"`+e.key+`"}`, "192.0.2.1"); w.Code != 200 {
		t.Fatalf("api_key: %d", w.Code)
	}
}

func TestWrongKeysLookAlikeAndAreThrottled(t *testing.T) {
	e := newEnv(t, 60*time.Millisecond)
	bad := []string{
		`{"apiKey":"cr_` + strings.Repeat("ab", 32) + `"}`, // well-formed, unknown
		`{"apiKey":"key_1"}`, // a key id is never accepted
		`{"apiKey":""}`,
	}
	for _, b := range bad {
		w, took := e.ask(t, b, "198.51.100.1")
		if w.Code != 401 || !strings.Contains(w.Body.String(), "invalid_key") {
			t.Fatalf("%s: %d %s", b, w.Code, w.Body)
		}
		if took < 60*time.Millisecond {
			t.Fatalf("%s answered in %v, under the fixed minimum", b, took)
		}
	}
	if w, took := e.ask(t, `{"apiKey":"`+e.key+`"}`, "198.51.100.9"); w.Code != 200 || took < 60*time.Millisecond {
		t.Fatalf("right key: %d in %v", w.Code, took)
	}
	if w, _ := e.ask(t, `not json`, "198.51.100.1"); w.Code != 400 {
		t.Fatalf("bad JSON: %d", w.Code)
	}
	// Ten unknown keys from one address, then even the right key is refused there.
	e.h.o.MinDuration = time.Millisecond
	for i := len(bad); i < maxFailures; i++ {
		e.ask(t, bad[0], "198.51.100.1")
	}
	w, _ := e.ask(t, `{"apiKey":"`+e.key+`"}`, "198.51.100.1")
	if w.Code != 429 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("after %d failures: %d %v", maxFailures, w.Code, w.Header())
	}
	if w, _ := e.ask(t, `{"apiKey":"`+e.key+`"}`, "198.51.100.2"); w.Code != 200 {
		t.Fatalf("another address: %d", w.Code)
	}
	// A soft-deleted key has no stats.
	k, _ := e.st.GetKey(context.Background(), e.id)
	gone := e.now
	k.DeletedAt = &gone
	if err := e.st.UpdateKey(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	if w, _ := e.ask(t, `{"apiKey":"`+e.key+`"}`, "198.51.100.3"); w.Code != 401 {
		t.Fatalf("deleted key: %d", w.Code)
	}
}
