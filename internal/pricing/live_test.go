package pricing_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/sqlite"
)

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// table is a small valid replacement table pricing claude-sonnet-4-5 at
// input dollars per million input tokens.
func table(version, input string) []byte {
	v := ""
	if version != "" {
		v = `"version": "` + version + `", `
	}
	return []byte(`{` + v + `"source": "test", "as_of": "2027-01-15", "models": [
		{"id": "claude-sonnet-4-5", "input": ` + input + `, "output": 1},
		{"id": "gpt-5", "input": 1, "output": 1}]}`)
}

func costOf(tb *pricing.Table) int64 {
	return tb.CostPico("claude-sonnet-4-5", pricing.Tokens{Input: 1_000_000})
}

const usd = 1_000_000_000_000 // picodollars

func TestSaveLoadReset(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	embedded := pricing.Default().Info()
	if tb, err := pricing.Load(ctx, st); err != nil || tb.Info() != embedded || embedded.Origin != pricing.OriginEmbedded {
		t.Fatalf("nothing stored: %+v, %v; want the embedded %+v", tb.Info(), err, embedded)
	}
	now := time.Date(2027, 1, 16, 8, 30, 0, 0, time.UTC)
	saved, err := pricing.Save(ctx, st, table("jan-27", "100"), "/etc/crs/prices.json", now)
	if err != nil {
		t.Fatal(err)
	}
	want := pricing.Info{Version: "jan-27", AsOf: "2027-01-15", Source: "test", Origin: "/etc/crs/prices.json", UpdatedAt: now, Models: 2}
	if saved.Info() != want {
		t.Fatalf("saved %+v, want %+v", saved.Info(), want)
	}
	loaded, err := pricing.Load(ctx, st)
	if err != nil || loaded.Info() != want || costOf(loaded) != 100*usd {
		t.Fatalf("loaded %+v (cost %d), %v", loaded.Info(), costOf(loaded), err)
	}
	if err := pricing.Reset(ctx, st); err != nil {
		t.Fatal(err)
	}
	if tb, err := pricing.Load(ctx, st); err != nil || tb.Info() != embedded {
		t.Fatalf("after reset: %+v, %v", tb.Info(), err)
	}
}

// TestUpdateRefused: each malformed replacement is refused with an error
// that says why, and the stored table stays the one in use.
func TestUpdateRefused(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	if _, err := pricing.Save(ctx, st, table("good", "7"), "good.json", time.Now()); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, data, want string }{
		{"empty", "", "empty"},
		{"blank", " \n\t", "empty"},
		{"truncated", `{"as_of": "2027-01-15", "models": [`, "unexpected EOF"},
		{"not a table", `[1, 2, 3]`, "cannot unmarshal"},
		{"html error page", `<html>502 Bad Gateway</html>`, "invalid character"},
		{"no models", `{"as_of": "2027-01-15", "models": []}`, "no models"},
		{"models missing", `{"as_of": "2027-01-15"}`, "no models"},
		{"no date", `{"models": [{"id": "m", "input": 1, "output": 1}]}`, "as_of"},
		{"bad date", `{"as_of": "January", "models": [{"id": "m", "input": 1, "output": 1}]}`, "YYYY-MM-DD"},
		{"typo", `{"as_of": "2027-01-15", "models": [{"id": "m", "input": 1, "ouptut": 1}]}`, "unknown field"},
		{"negative", `{"as_of": "2027-01-15", "models": [{"id": "m", "input": -1, "output": 1}]}`, "negative"},
		{"too large", `{"as_of": "2027-01-15", "source": "` + strings.Repeat("x", pricing.MaxTableBytes) + `"}`, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pricing.Save(ctx, st, []byte(tt.data), tt.name, time.Now())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want it to mention %q", err, tt.want)
			}
			if tb, err := pricing.Load(ctx, st); err != nil || tb.Version() != "good" || costOf(tb) != 7*usd {
				t.Fatalf("the stored table changed: %+v, %v", tb.Info(), err)
			}
		})
	}
}

// TestVersionIsContent: a file without "version" is named by its content,
// the same however it is indented and whether it went through the store.
func TestVersionIsContent(t *testing.T) {
	compact, err := pricing.Parse([]byte(`{"as_of":"2027-01-15","models":[{"id":"m","input":1,"output":2}]}`))
	if err != nil {
		t.Fatal(err)
	}
	indented, err := pricing.Parse([]byte("{\n  \"as_of\": \"2027-01-15\",\n  \"models\": [\n    {\"id\": \"m\", \"input\": 1, \"output\": 2}\n  ]\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := pricing.Parse([]byte(`{"as_of":"2027-01-15","models":[{"id":"m","input":1,"output":3}]}`))
	if compact.Version() != indented.Version() || len(compact.Version()) != 12 || compact.Version() == other.Version() {
		t.Fatalf("versions %q %q %q", compact.Version(), indented.Version(), other.Version())
	}
	if pricing.Default().Version() == "" {
		t.Fatal("the embedded table has no version")
	}
	st := openStore(t)
	saved, err := pricing.Save(context.Background(), st, table("", "2"), "f", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	direct, _ := pricing.Parse(table("", "2"))
	if saved.Version() != direct.Version() {
		t.Fatalf("stored version %q, parsed %q", saved.Version(), direct.Version())
	}
}

// TestLiveReload: a Live serves the embedded table until a table is
// stored, swaps it in on Reload while readers keep pricing, reports a
// broken stored value once and keeps its table, and goes back to the
// embedded table after a reset.
func TestLiveReload(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	live := pricing.NewLive(st)
	embeddedCost := costOf(pricing.Default())
	if costOf(live.Table()) != embeddedCost {
		t.Fatal("a new Live does not start on the embedded table")
	}
	if changed, err := live.Reload(ctx); err != nil || !changed {
		t.Fatalf("first reload: changed %v, %v", changed, err)
	}
	if changed, err := live.Reload(ctx); err != nil || changed {
		t.Fatalf("nothing stored, second reload: changed %v, %v", changed, err)
	}

	// Readers price continuously while the table is replaced under them;
	// each sees the old or the new table, never anything else.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sawNew atomic.Bool
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				switch c := costOf(live.Table()); c {
				case embeddedCost:
				case 50 * usd:
					sawNew.Store(true)
				default:
					t.Errorf("a reader priced at %d", c)
					return
				}
			}
		}()
	}
	if _, err := pricing.Save(ctx, st, table("v2", "50"), "v2.json", time.Now()); err != nil {
		t.Fatal(err)
	}
	if changed, err := live.Reload(ctx); err != nil || !changed || live.Table().Version() != "v2" {
		t.Fatalf("after an update: changed %v, %v, version %q", changed, err, live.Table().Version())
	}
	deadline := time.Now().Add(2 * time.Second)
	for !sawNew.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if !sawNew.Load() {
		t.Fatal("no reader saw the new table")
	}

	// A value this crs cannot read (a newer format, a hand edit) is
	// reported once; the table in use stays.
	if err := st.SetSetting(ctx, pricing.SettingName, []byte(`{"table": {"models": [{"id": "m", "input": 1, "output": 1, "tier": 2}]}}`)); err != nil {
		t.Fatal(err)
	}
	if changed, err := live.Reload(ctx); err == nil || changed || !strings.Contains(err.Error(), "still using v2") {
		t.Fatalf("broken stored table: changed %v, err %v", changed, err)
	}
	if changed, err := live.Reload(ctx); err != nil || changed || costOf(live.Table()) != 50*usd {
		t.Fatalf("broken stored table, again: changed %v, err %v", changed, err)
	}

	if err := pricing.Reset(ctx, st); err != nil {
		t.Fatal(err)
	}
	if changed, err := live.Reload(ctx); err != nil || !changed || live.Table().Info().Origin != pricing.OriginEmbedded {
		t.Fatalf("after reset: changed %v, %v, %+v", changed, err, live.Table().Info())
	}
}
