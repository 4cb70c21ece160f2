package pricing

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// TestEmbeddedTableParses makes a broken prices.json a test failure rather
// than a silent fall back to the default price in production.
func TestEmbeddedTableParses(t *testing.T) {
	tbl, err := Parse(embeddedPrices)
	if err != nil {
		t.Fatal(err)
	}
	if tbl.Source() == "" || tbl.AsOf() == "" {
		t.Fatal("prices.json must say where its prices come from and when they were checked")
	}
	if len(tbl.Models()) < 30 {
		t.Fatalf("only %d models", len(tbl.Models()))
	}
	if got := len(Default().Models()); got != len(tbl.Models()) {
		t.Fatalf("Default has %d models, want %d", got, len(tbl.Models()))
	}
}

// TestListPrices pins the public list prices the brief names, per million
// tokens, so an edit of prices.json that changes them is deliberate.
func TestListPrices(t *testing.T) {
	tbl := Default()
	tests := []struct {
		model                   string
		in, out, w5m, w1h, read string
	}{
		{"claude-opus-4", "15", "75", "18.75", "30", "1.5"},
		{"claude-opus-4-1", "15", "75", "18.75", "30", "1.5"},
		{"claude-opus-4-5", "5", "25", "6.25", "10", "0.5"},
		{"claude-opus-4-8", "5", "25", "6.25", "10", "0.5"},
		{"claude-opus-5", "5", "25", "6.25", "10", "0.5"},
		{"claude-opus-5-5", "4", "20", "5", "8", "0.2"},
		{"claude-sonnet-4", "3", "15", "3.75", "6", "0.3"},
		{"claude-sonnet-4-5", "3", "15", "3.75", "6", "0.3"},
		{"claude-sonnet-4-6", "3", "15", "3.75", "6", "0.3"},
		{"claude-sonnet-5", "2", "10", "2.5", "4", "0.2"},
		{"claude-haiku-4-5", "1", "5", "1.25", "2", "0.1"},
		{"claude-3-5-haiku", "0.8", "4", "1", "1.6", "0.08"},
		{"claude-3-haiku", "0.25", "1.25", "0.3", "0.5", "0.03"},
		{"claude-fable-5-1", "10", "50", "12.5", "20", "0.25"},
		{"gpt-5", "1.25", "10", "1.5625", "2.5", "0.125"},
		{"gpt-5-mini", "0.25", "2", "0.3125", "0.5", "0.025"},
		{"gpt-4.1", "2", "8", "2.5", "4", "0.5"},
		{"gpt-4o", "2.5", "10", "3.125", "5", "1.25"},
		{"gemini-2.5-pro", "1.25", "10", "1.5625", "2.5", "0.125"},
		{"gemini-2.5-flash", "0.3", "2.5", "0.375", "0.6", "0.03"},
	}
	for _, tt := range tests {
		p, matched, exact := tbl.Lookup(tt.model)
		if matched != tt.model || !exact {
			t.Errorf("%s: matched %q exact %v", tt.model, matched, exact)
			continue
		}
		for _, c := range []struct {
			class string
			got   decimal.Decimal
			want  string
		}{{"input", p.Input, tt.in}, {"output", p.Output, tt.out}, {"5m write", p.CacheWrite5m, tt.w5m},
			{"1h write", p.CacheWrite1h, tt.w1h}, {"read", p.CacheRead, tt.read}} {
			if !c.got.Equal(dec(c.want)) {
				t.Errorf("%s %s: got %s, want %s", tt.model, c.class, c.got, c.want)
			}
		}
	}
}

// TestCostPerClass prices one million tokens of each class on its own, so
// a class wired to the wrong price shows up by name.
func TestCostPerClass(t *testing.T) {
	tbl := Default()
	const M = 1_000_000
	tests := []struct {
		name  string
		model string
		tk    Tokens
		want  string
	}{
		{"input", "claude-opus-4-1", Tokens{Input: M}, "15"},
		{"output", "claude-opus-4-1", Tokens{Output: M}, "75"},
		{"cache write 5m", "claude-opus-4-1", Tokens{CacheWrite5m: M}, "18.75"},
		{"cache write 1h", "claude-opus-4-1", Tokens{CacheWrite1h: M}, "30"},
		{"cache read", "claude-opus-4-1", Tokens{CacheRead: M}, "1.5"},
		{"all five", "claude-opus-4-1", Tokens{M, M, M, M, M}, "140.25"},
		{"single tokens", "claude-sonnet-4-6", Tokens{1, 1, 1, 1, 1}, "0.00002805"},
		{"a real Claude Code turn", "claude-opus-5-5",
			Tokens{Input: 11, Output: 3, CacheWrite5m: 7, CacheRead: 5}, "0.00014"}, // 44+60+35+1 per million
		{"cheapest class is exact", "claude-haiku-5-5", Tokens{CacheRead: 1}, "0.00000001"},
		{"zero", "claude-opus-5-5", Tokens{}, "0"},
		{"negative counts ignored", "claude-opus-5-5", Tokens{Input: -5, Output: M}, "20"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tbl.Cost(tt.model, tt.tk)
			if !got.Equal(dec(tt.want)) {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestLongContextTier(t *testing.T) {
	tbl := Default()
	tests := []struct {
		name  string
		model string
		tk    Tokens
		want  string
	}{
		// Sonnet 4.5 bills the whole request at the 1M-context rate once
		// the prompt, cache included, passes 200K tokens.
		{"sonnet 4.5 at 200K", "claude-sonnet-4-5", Tokens{Input: 200_000, Output: 1_000}, "0.615"},
		{"sonnet 4.5 over 200K", "claude-sonnet-4-5", Tokens{Input: 200_001, Output: 1_000}, "1.222506"},
		{"cache counts toward the prompt", "claude-sonnet-4-5[1m]",
			Tokens{Input: 1_000, CacheRead: 150_000, CacheWrite1h: 60_000, Output: 1_000},
			// 1000*6 + 150000*0.6 + 60000*12 + 1000*22.5 per million
			"0.8385"},
		{"opus 4.6 is flat", "claude-opus-4-6", Tokens{Input: 900_000}, "4.5"},
		{"haiku 5.5 over 100K", "claude-haiku-5-5", Tokens{Input: 100_001}, "0.0500005"},
		{"haiku 5.5 at 100K", "claude-haiku-5-5", Tokens{Input: 100_000}, "0.01"},
		{"gemini 2.5 pro over 200K", "gemini-2.5-pro", Tokens{Input: 300_000, Output: 10_000}, "0.9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tbl.Cost(tt.model, tt.tk); !got.Equal(dec(tt.want)) {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestLookupFallbacks(t *testing.T) {
	tbl := Default()
	tests := []struct {
		model   string
		matched string
		exact   bool
	}{
		{"claude-opus-4-5", "claude-opus-4-5", true},
		{"CLAUDE-OPUS-4-5", "claude-opus-4-5", true},
		{" claude-opus-4-5 ", "claude-opus-4-5", true},
		{"claude-opus-4-0", "claude-opus-4", true}, // alias
		{"claude-opus-4-5-20251101", "claude-opus-4-5", false},
		{"claude-opus-4-20250514", "claude-opus-4", false},
		{"claude-sonnet-4-5-20250929", "claude-sonnet-4-5", false},
		{"claude-3-5-haiku-latest", "claude-3-5-haiku", false},
		{"claude-opus-4-8[1m]", "claude-opus-4-8", false},
		{"claude-sonnet-4-5-20250929[1m]", "claude-sonnet-4-5", false},
		{"us.anthropic.claude-opus-4-5-20251101-v1:0", "claude-opus-4-5", false},
		{"anthropic.claude-3-haiku-20240307-v1:0", "claude-3-haiku", false},
		{"claude-opus-4-5@20251101", "claude-opus-4-5", false},
		{"anthropic/claude-sonnet-4-6", "claude-sonnet-4-6", false},
		{"gpt-4o-2024-08-06", "gpt-4o", false},
		{"gpt-5-mini-2025-08-07", "gpt-5-mini", false},
		{"models/gemini-2.5-pro", "gemini-2.5-pro", false},
		// Family fallback: a Claude model newer than the table, or a
		// variant it does not list, is priced like its family's newest.
		{"claude-opus-9-9", "claude-opus-5-5", false},
		{"claude-opus-5-5-thinking", "claude-opus-5-5", false},
		{"claude-sonnet-7", "claude-sonnet-5-5", false},
		{"claude-haiku-6-20270101", "claude-haiku-5-5", false},
		{"claude-3-opus-20240229", "claude-3-opus", false},
		{"claude-fable-9", "claude-fable-5-2", false},
		{"claude-mythos-6", "claude-mythos-5-1", false},
		// Default.
		{"claude-unknown-1", "", false},
		{"opus", "", false}, // no "claude" part: not guessed
		{"llama-3-70b", "", false},
		{"", "", false},
		{"-20250514", "", false},
	}
	for _, tt := range tests {
		_, matched, exact := tbl.Lookup(tt.model)
		if matched != tt.matched || exact != tt.exact {
			t.Errorf("Lookup(%q) = %q, %v; want %q, %v", tt.model, matched, exact, tt.matched, tt.exact)
		}
	}
}

func TestDefaultPrice(t *testing.T) {
	tbl := Default()
	p, matched, exact := tbl.Lookup("some-new-model")
	if matched != "" || exact {
		t.Fatalf("matched %q exact %v", matched, exact)
	}
	want := Price{Input: dec("3"), Output: dec("15"), CacheWrite5m: dec("3.75"), CacheWrite1h: dec("6"), CacheRead: dec("0.3")}
	if !samePrice(p, want) {
		t.Fatalf("default %+v", p)
	}
	if got := tbl.Cost("some-new-model", Tokens{1e6, 1e6, 1e6, 1e6, 1e6}); !got.Equal(dec("28.05")) {
		t.Fatalf("default cost %s", got)
	}
	// A file without a default entry gets the same built-in default.
	bare, err := Parse([]byte(`{"models":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	if !samePrice(bare.Default(), want) {
		t.Fatalf("built-in default %+v", bare.Default())
	}
}

func samePrice(a, b Price) bool {
	return a.Input.Equal(b.Input) && a.Output.Equal(b.Output) && a.CacheWrite5m.Equal(b.CacheWrite5m) &&
		a.CacheWrite1h.Equal(b.CacheWrite1h) && a.CacheRead.Equal(b.CacheRead)
}

func TestParseDerivesCachePrices(t *testing.T) {
	tbl, err := Parse([]byte(`{
		"default": {"input": 1, "output": 2, "cache_read": 0},
		"models": [
			{"id": "m", "input": 0.8, "output": 4},
			{"id": "n", "input": 2, "output": 8, "cache_write_5m": 9, "long_context": {"above_tokens": 10, "input": 4, "output": 16}}
		]}`))
	if err != nil {
		t.Fatal(err)
	}
	p, _, _ := tbl.Lookup("m")
	if !samePrice(p, Price{Input: dec("0.8"), Output: dec("4"), CacheWrite5m: dec("1"), CacheWrite1h: dec("1.6"), CacheRead: dec("0.08")}) {
		t.Fatalf("derived %+v", p)
	}
	p, _, _ = tbl.Lookup("n")
	if !p.CacheWrite5m.Equal(dec("9")) || !p.CacheWrite1h.Equal(dec("4")) {
		t.Fatalf("explicit 5m, derived 1h: %+v", p)
	}
	long := p.For(Tokens{Input: 11})
	if !samePrice(long, Price{Input: dec("4"), Output: dec("16"), CacheWrite5m: dec("5"), CacheWrite1h: dec("8"), CacheRead: dec("0.4")}) {
		t.Fatalf("long tier %+v", long)
	}
	// An explicit zero is kept, not replaced by the multiplier.
	if d := tbl.Default(); !d.CacheRead.IsZero() || !d.CacheWrite5m.Equal(dec("1.25")) {
		t.Fatalf("default %+v", d)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, json, want string }{
		{"not json", `{`, "unexpected EOF"},
		{"unknown field", `{"models":[{"id":"m","input":1,"output":1,"inptu":2}]}`, "unknown field"},
		{"missing output", `{"models":[{"id":"m","input":1}]}`, "required"},
		{"negative", `{"models":[{"id":"m","input":1,"output":1,"cache_read":-1}]}`, "negative"},
		{"empty id", `{"models":[{"id":"","input":1,"output":1}]}`, "empty id"},
		{"duplicate", `{"models":[{"id":"m","input":1,"output":1},{"id":"M","input":1,"output":1}]}`, "twice"},
		{"alias duplicate", `{"models":[{"id":"m","input":1,"output":1},{"id":"n","aliases":["m"],"input":1,"output":1}]}`, "twice"},
		{"bad date", `{"models":[{"id":"m","family":"opus","released":"May 2025","input":1,"output":1}]}`, "YYYY-MM-DD"},
		{"family without date", `{"models":[{"id":"m","family":"opus","input":1,"output":1}]}`, "released"},
		{"bad tier", `{"models":[{"id":"m","input":1,"output":1,"long_context":{"input":1,"output":1}}]}`, "above_tokens"},
		{"bad default", `{"default":{"input":1},"models":[]}`, "default"},
		{"price as float text", `{"models":[{"id":"m","input":"abc","output":1}]}`, "pricing"},
		{"trailing data", `{"models":[]} {}`, "trailing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.json))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestFamilyTieKeepsFirstListed(t *testing.T) {
	tbl, err := Parse([]byte(`{"models":[
		{"id":"claude-opus-a","family":"opus","released":"2026-01-01","input":1,"output":1},
		{"id":"claude-opus-b","family":"opus","released":"2026-01-01","input":2,"output":2},
		{"id":"claude-opus-old","family":"opus","released":"2025-01-01","input":3,"output":3}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, m, _ := tbl.Lookup("claude-opus-z"); m != "claude-opus-a" {
		t.Fatalf("got %q", m)
	}
}

func TestPico(t *testing.T) {
	tests := []struct {
		usd  string
		pico int64
	}{
		{"0", 0},
		{"1", 1_000_000_000_000},
		{"0.000000000001", 1},
		{"0.0000000000005", 0},  // half to even: 0
		{"0.0000000000015", 2},  // half to even: 2
		{"0.0000000000025", 2},  // half to even: 2
		{"0.00000000000251", 3}, // above half rounds up
		{"-0.0000000000015", -2},
		{"140.25", 140_250_000_000_000},
		{"0.000139", 139_000_000},
		{"1e30", math.MaxInt64},
		{"-1e30", math.MinInt64},
	}
	for _, tt := range tests {
		if got := ToPico(dec(tt.usd)); got != tt.pico {
			t.Errorf("ToPico(%s) = %d, want %d", tt.usd, got, tt.pico)
		}
	}
	// Round trip is exact for every int64 in range, including the ends.
	for _, p := range []int64{0, 1, -1, 999, 123_456_789_012_345, math.MaxInt64, math.MinInt64} {
		if got := ToPico(FromPico(p)); got != p {
			t.Errorf("round trip %d -> %s -> %d", p, FromPico(p), got)
		}
	}
	if got := FromPico(1_500_000_000_000); !got.Equal(dec("1.5")) {
		t.Errorf("FromPico = %s", got)
	}
	// Every price in the table has at most 6 decimals per million tokens,
	// so a cost is a whole number of picodollars: no rounding at all.
	tbl := Default()
	for _, m := range tbl.Models() {
		c := tbl.Cost(m.ID, Tokens{1, 3, 5, 7, 11})
		if !FromPico(ToPico(c)).Equal(c) {
			t.Errorf("%s: cost %s is not a whole number of picodollars", m.ID, c)
		}
	}
	if got := tbl.CostPico("claude-opus-5-5", Tokens{Input: 11, Output: 3, CacheWrite5m: 7, CacheRead: 5}); got != 140_000_000 {
		t.Errorf("CostPico = %d", got)
	}
}

// TestNoFloat keeps money out of binary floating point: no float type may
// appear in the package's code.
func TestNoFloat(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"float32", "float64", "InexactFloat64", "NewFromFloat", "ParseFloat"} {
			if strings.Contains(string(src), bad) {
				t.Errorf("%s mentions %s", f, bad)
			}
		}
	}
}

func BenchmarkCost(b *testing.B) {
	tbl := Default()
	tk := Tokens{Input: 11, Output: 300, CacheWrite5m: 7000, CacheRead: 50000}
	for b.Loop() {
		_ = tbl.CostPico("claude-opus-4-8[1m]", tk)
	}
}

func TestParseUSD(t *testing.T) {
	for in, want := range map[string]int64{"12.50": 12_500_000_000_000, "$3": 3_000_000_000_000, "0": 0, " 0.000000000001 ": 1, "1000000": 1_000_000 * 1_000_000_000_000} {
		if got, err := ParseUSD(in); err != nil || got != want {
			t.Errorf("ParseUSD(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "$", "abc", "-1", "1e", "0.0000000000001", "1000000.01", "NaN"} {
		if _, err := ParseUSD(in); err == nil {
			t.Errorf("ParseUSD(%q) accepted", in)
		}
	}
}
