// Package pricing turns token counts into US dollars, exactly.
//
// Prices come from a JSON table embedded in the binary (prices.json, with
// its source and date inside); Parse reads the same format so an operator's
// file can replace it without a rebuild (live.go: `crs prices update`
// stores one, and a running server switches to it). Money is
// shopspring/decimal throughout and is stored as integer picodollars
// (ToPico), never as a float, so sums over millions of requests do not
// drift.
//
// Each model has a price per million tokens for five classes: input,
// output, cache write with a 5-minute TTL, cache write with a 1-hour TTL,
// and cache read. Where the table gives no cache price, it is derived from
// the input price the way Anthropic prices caching: 5m write 1.25×, 1h write
// 2×, read 0.1×. A model may also carry a long-context tier that replaces
// all its prices for a request whose prompt is over a threshold (Sonnet 4
// and 4.5 above 200K tokens, Haiku 5.5 above 100K, Gemini 2.5 Pro above
// 200K).
//
// Lookup resolves a model name in this order, stopping at the first hit:
//
//  1. the exact id or alias, compared case-insensitively (exact = true);
//  2. the id with decorations removed one at a time, the table checked after
//     each: a provider path ("anthropic/…", "models/…"), a Bedrock region
//     and vendor prefix ("us.anthropic.…"), a Vertex "@date" or Bedrock
//     "-v1:0" suffix, a trailing "[1m]"-style tag, "-latest", and a date
//     suffix ("-20250514" or "-2024-08-06");
//  3. for a Claude model (a name with a "claude" part) of a known family
//     (opus, sonnet, haiku, fable, mythos): the newest model of that family
//     in the table, by its release date — a model newer than the table is
//     priced like its latest sibling rather than like an unknown model;
//  4. the table's default price ($3 input / $15 output per million tokens,
//     cache prices by the multipliers above), reported with matched "".
package pricing

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

//go:embed prices.json
var embeddedPrices []byte

// Tokens counts the tokens of one response by price class.
type Tokens struct {
	Input        int64 // uncached input
	Output       int64 // output, thinking included
	CacheWrite5m int64 // input written to the cache with a 5-minute TTL
	CacheWrite1h int64 // input written to the cache with a 1-hour TTL
	CacheRead    int64 // input read from the cache
}

// CacheWrite is the total written to the cache, both TTLs.
func (t Tokens) CacheWrite() int64 { return t.CacheWrite5m + t.CacheWrite1h }

// Prompt is the whole prompt size (uncached input plus cache writes and
// reads); long-context tiers are chosen by it.
func (t Tokens) Prompt() int64 { return t.Input + t.CacheWrite() + t.CacheRead }

// Total is every token of the response.
func (t Tokens) Total() int64 { return t.Prompt() + t.Output }

// Price is what one model costs, in USD per million tokens of each class.
type Price struct {
	Input, Output, CacheWrite5m, CacheWrite1h, CacheRead decimal.Decimal

	// LongContextAbove and LongContext, when LongContext is not nil,
	// replace the prices above for a whole request whose prompt has more
	// than LongContextAbove tokens.
	LongContextAbove int64
	LongContext      *Price
}

// For returns the prices that apply to a request of tk: the long-context
// tier if the prompt is over its threshold, else p itself.
func (p Price) For(tk Tokens) Price {
	if p.LongContext != nil && tk.Prompt() > p.LongContextAbove {
		return *p.LongContext
	}
	return p
}

// Cost is the exact price of tk in USD. Negative counts are taken as zero,
// so a malformed usage report can never produce a credit.
func (p Price) Cost(tk Tokens) decimal.Decimal {
	p = p.For(tk)
	sum := p.Input.Mul(decimal.NewFromInt(max(tk.Input, 0))).
		Add(p.Output.Mul(decimal.NewFromInt(max(tk.Output, 0)))).
		Add(p.CacheWrite5m.Mul(decimal.NewFromInt(max(tk.CacheWrite5m, 0)))).
		Add(p.CacheWrite1h.Mul(decimal.NewFromInt(max(tk.CacheWrite1h, 0)))).
		Add(p.CacheRead.Mul(decimal.NewFromInt(max(tk.CacheRead, 0))))
	// Prices are per million tokens; shifting the decimal point is exact,
	// where dividing would round at decimal.DivisionPrecision.
	return sum.Shift(-6)
}

// ModelPrice is one row of the table, for listing.
type ModelPrice struct {
	ID       string
	Aliases  []string
	Family   string    // "" outside the Claude family fallback
	Released time.Time // zero if not given
	Price    Price
}

// Table is a parsed price table. It is immutable and safe for concurrent
// use.
type Table struct {
	source, asOf, version string
	origin                string                 // where the table was loaded from; see Info
	updatedAt             time.Time              // when it was stored; zero for the embedded one
	byID                  map[string]*ModelPrice // ids and aliases, lower case
	newest                map[string]*ModelPrice // family → newest model
	models                []*ModelPrice          // in file order
	def                   Price
}

// Source says where the table's prices were taken from.
func (t *Table) Source() string { return t.source }

// AsOf is the date the prices were last checked, as written in the file.
func (t *Table) AsOf() string { return t.asOf }

// Version names the table: the file's "version" when it has one, else
// the first 12 hex digits of the SHA-256 of the file, so two tables with
// the same version are the same table.
func (t *Table) Version() string { return t.version }

// Default returns the price of a model the table does not know.
func (t *Table) Default() Price { return t.def }

// Table returns t itself: a fixed *Table is a Source.
func (t *Table) Table() *Table { return t }

// Models lists the table's models in file order.
func (t *Table) Models() []ModelPrice {
	out := make([]ModelPrice, len(t.models))
	for i, m := range t.models {
		out[i] = *m
	}
	return out
}

// Lookup finds the price for model, following the order in the package
// documentation. matched is the table id that was used ("" for the
// default price); exact reports whether model named it directly (an id or
// alias, ignoring case).
func (t *Table) Lookup(model string) (p Price, matched string, exact bool) {
	s := strings.ToLower(strings.TrimSpace(model))
	if m, ok := t.byID[s]; ok {
		return m.Price, m.ID, true
	}
	for changed := true; changed; {
		changed = false
		for _, strip := range decorations {
			n := strip(s)
			if n == s || n == "" {
				continue
			}
			s, changed = n, true
			if m, ok := t.byID[s]; ok {
				return m.Price, m.ID, false
			}
		}
	}
	if m := t.familyOf(s); m != nil {
		return m.Price, m.ID, false
	}
	return t.def, "", false
}

// Cost is the price of tk on model, in USD.
func (t *Table) Cost(model string, tk Tokens) decimal.Decimal {
	p, _, _ := t.Lookup(model)
	return p.Cost(tk)
}

// CostPico is Cost in picodollars, the unit usage records store.
func (t *Table) CostPico(model string, tk Tokens) int64 {
	return ToPico(t.Cost(model, tk))
}

// familyOf returns the newest model of the Claude family model belongs to.
func (t *Table) familyOf(model string) *ModelPrice {
	parts := strings.FieldsFunc(model, func(r rune) bool { return r == '-' || r == '.' || r == '_' || r == '/' })
	claude := false
	for _, p := range parts {
		if p == "claude" {
			claude = true
		}
	}
	if !claude {
		return nil
	}
	for _, p := range parts {
		if m, ok := t.newest[p]; ok {
			return m
		}
	}
	return nil
}

// decorations are the removals Lookup tries, in order, until none applies.
var decorations = []func(string) string{
	stripPath,
	stripBedrockPrefix,
	stripVertexVersion,
	stripBedrockVersion,
	stripTag,
	stripLatest,
	stripDate,
}

// stripPath drops a provider path: "anthropic/claude-…", "models/gemini-…".
func stripPath(s string) string {
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// stripBedrockPrefix drops a Bedrock region and vendor prefix:
// "us.anthropic.claude-…", "global.anthropic.claude-…".
func stripBedrockPrefix(s string) string {
	if i := strings.Index(s, "anthropic."); i >= 0 {
		return s[i+len("anthropic."):]
	}
	return s
}

// stripVertexVersion drops a Vertex "@20251101" or "@latest" suffix.
func stripVertexVersion(s string) string {
	if i := strings.IndexByte(s, '@'); i >= 0 {
		return s[:i]
	}
	return s
}

// stripBedrockVersion drops a Bedrock "-v1:0" (or "-v2") suffix.
func stripBedrockVersion(s string) string {
	i := strings.LastIndex(s, "-v")
	if i < 0 {
		return s
	}
	major, minor, hasMinor := strings.Cut(s[i+2:], ":")
	if !allDigits(major) || hasMinor && !allDigits(minor) {
		return s
	}
	return s[:i]
}

// stripTag drops a trailing bracketed tag such as Claude Code's "[1m]".
func stripTag(s string) string {
	if strings.HasSuffix(s, "]") {
		if i := strings.LastIndexByte(s, '['); i >= 0 {
			return s[:i]
		}
	}
	return s
}

func stripLatest(s string) string { return strings.TrimSuffix(s, "-latest") }

// stripDate drops a snapshot date: "-20250514" (Anthropic) or
// "-2024-08-06" (OpenAI).
func stripDate(s string) string {
	if n := len(s); n > 9 && s[n-9] == '-' && allDigits(s[n-8:]) && s[n-8:n-6] == "20" {
		return s[:n-9]
	}
	if n := len(s); n > 11 && s[n-11] == '-' && s[n-6] == '-' && s[n-3] == '-' &&
		allDigits(s[n-10:n-6]) && allDigits(s[n-5:n-3]) && allDigits(s[n-2:]) && s[n-10:n-8] == "20" {
		return s[:n-11]
	}
	return s
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ToPico converts USD to integer picodollars (1e-12 USD), rounding half to
// even, the unit usage records and counters keep. Values beyond the int64
// range (over about 9.2 million USD) saturate.
func ToPico(usd decimal.Decimal) int64 {
	p := usd.Shift(12).RoundBank(0)
	switch {
	case p.Cmp(maxPico) > 0:
		return math.MaxInt64
	case p.Cmp(minPico) < 0:
		return math.MinInt64
	}
	return p.IntPart()
}

// FromPico converts picodollars back to USD, exactly.
func FromPico(p int64) decimal.Decimal { return decimal.New(p, -12) }

var (
	maxPico = decimal.NewFromInt(math.MaxInt64)
	minPico = decimal.NewFromInt(math.MinInt64)
)

// Multipliers on the input price for cache classes the table leaves out.
var (
	cacheWrite5mFactor = decimal.New(125, -2)
	cacheWrite1hFactor = decimal.NewFromInt(2)
	cacheReadFactor    = decimal.New(1, -1)
)

// fileFormat is the JSON shape of prices.json.
type fileFormat struct {
	Version string      `json:"version"`
	Source  string      `json:"source"`
	AsOf    string      `json:"as_of"`
	Unit    string      `json:"unit"`
	Notes   []string    `json:"notes"`
	Default *filePrice  `json:"default"`
	Models  []fileModel `json:"models"`
}

type fileModel struct {
	ID       string   `json:"id"`
	Aliases  []string `json:"aliases"`
	Family   string   `json:"family"`
	Released string   `json:"released"`
	filePrice
	LongContext *fileLongContext `json:"long_context"`
}

type filePrice struct {
	Input        *decimal.Decimal `json:"input"`
	Output       *decimal.Decimal `json:"output"`
	CacheWrite5m *decimal.Decimal `json:"cache_write_5m"`
	CacheWrite1h *decimal.Decimal `json:"cache_write_1h"`
	CacheRead    *decimal.Decimal `json:"cache_read"`
}

type fileLongContext struct {
	AboveTokens int64 `json:"above_tokens"`
	filePrice
}

// builtinDefault is the price used when a file has no "default" entry:
// $3 input / $15 output per million tokens, a mid-range Claude price, so an
// unknown model is neither free nor wildly overcharged.
func builtinDefault() filePrice {
	in, out := decimal.NewFromInt(3), decimal.NewFromInt(15)
	return filePrice{Input: &in, Output: &out}
}

// Default returns the table embedded in the binary. It never panics: if
// the embedded file were broken (a test catches that), it returns a table
// that prices every model at the default price.
func Default() *Table {
	t, err := Parse(embeddedPrices)
	if err != nil {
		t, _ = Parse([]byte(`{"models":[]}`))
	}
	return t
}

// Parse reads a price table in the prices.json format. Unknown fields are
// refused so a typo in an override file fails loudly instead of silently
// pricing at the default.
func Parse(data []byte) (*Table, error) {
	var f fileFormat
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("pricing: %w", err)
	}
	if dec.More() {
		return nil, errors.New("pricing: trailing data after the table")
	}
	t := &Table{
		source:  f.Source,
		asOf:    f.AsOf,
		version: strings.TrimSpace(f.Version),
		origin:  OriginEmbedded,
		byID:    make(map[string]*ModelPrice),
		newest:  make(map[string]*ModelPrice),
	}
	if t.version == "" {
		t.version = digest(data)
	}
	def := builtinDefault()
	if f.Default != nil {
		def = *f.Default
	}
	var err error
	if t.def, err = def.price(); err != nil {
		return nil, fmt.Errorf("pricing: default: %w", err)
	}
	for i, fm := range f.Models {
		m, err := fm.model()
		if err != nil {
			return nil, fmt.Errorf("pricing: model %d (%q): %w", i, fm.ID, err)
		}
		for _, name := range append([]string{m.ID}, m.Aliases...) {
			if _, dup := t.byID[name]; dup {
				return nil, fmt.Errorf("pricing: model id %q listed twice", name)
			}
			t.byID[name] = m
		}
		t.models = append(t.models, m)
		if m.Family != "" {
			// The first listed wins a tie on the release date.
			if cur, ok := t.newest[m.Family]; !ok || m.Released.After(cur.Released) {
				t.newest[m.Family] = m
			}
		}
	}
	return t, nil
}

// digest is the version of a table file without one: the start of the
// SHA-256 of its compact form, so re-indenting a file (or storing it, which
// compacts it) does not change its version.
func digest(data []byte) string {
	var c bytes.Buffer
	if err := json.Compact(&c, data); err == nil {
		data = c.Bytes()
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:6])
}

func (fm fileModel) model() (*ModelPrice, error) {
	id := strings.ToLower(strings.TrimSpace(fm.ID))
	if id == "" {
		return nil, errors.New("empty id")
	}
	m := &ModelPrice{ID: id, Family: strings.ToLower(fm.Family)}
	for _, a := range fm.Aliases {
		a = strings.ToLower(strings.TrimSpace(a))
		if a == "" {
			return nil, errors.New("empty alias")
		}
		m.Aliases = append(m.Aliases, a)
	}
	if fm.Released != "" {
		r, err := time.Parse(time.DateOnly, fm.Released)
		if err != nil {
			return nil, fmt.Errorf("released: want YYYY-MM-DD, got %q", fm.Released)
		}
		m.Released = r
	}
	if m.Family != "" && m.Released.IsZero() {
		return nil, errors.New("a model with a family needs a released date to order it")
	}
	var err error
	if m.Price, err = fm.price(); err != nil {
		return nil, err
	}
	if lc := fm.LongContext; lc != nil {
		if lc.AboveTokens <= 0 {
			return nil, errors.New("long_context.above_tokens must be positive")
		}
		long, err := lc.price()
		if err != nil {
			return nil, fmt.Errorf("long_context: %w", err)
		}
		m.Price.LongContextAbove = lc.AboveTokens
		m.Price.LongContext = &long
	}
	return m, nil
}

// price fills in missing cache prices from the input price and checks
// that nothing is negative.
func (fp filePrice) price() (Price, error) {
	if fp.Input == nil || fp.Output == nil {
		return Price{}, errors.New("input and output prices are required")
	}
	p := Price{Input: *fp.Input, Output: *fp.Output}
	p.CacheWrite5m = orDerived(fp.CacheWrite5m, p.Input, cacheWrite5mFactor)
	p.CacheWrite1h = orDerived(fp.CacheWrite1h, p.Input, cacheWrite1hFactor)
	p.CacheRead = orDerived(fp.CacheRead, p.Input, cacheReadFactor)
	for _, d := range []decimal.Decimal{p.Input, p.Output, p.CacheWrite5m, p.CacheWrite1h, p.CacheRead} {
		if d.IsNegative() {
			return Price{}, fmt.Errorf("negative price %s", d)
		}
	}
	return p, nil
}

func orDerived(v *decimal.Decimal, input, factor decimal.Decimal) decimal.Decimal {
	if v != nil {
		return *v
	}
	return input.Mul(factor)
}

// ParseUSD reads a money amount typed by a person ("12.50", "$3", "0")
// into picodollars. It refuses negative amounts, more than 12 decimals and
// amounts over one million dollars: a limit that large is a typo.
func ParseUSD(s string) (int64, error) {
	t := strings.TrimPrefix(strings.TrimSpace(s), "$")
	d, err := decimal.NewFromString(t)
	if err != nil || t == "" {
		return 0, fmt.Errorf("%q is not an amount in US dollars (such as 12.50)", s)
	}
	switch {
	case d.IsNegative():
		return 0, fmt.Errorf("%q is negative", s)
	case d.Exponent() < -12:
		return 0, fmt.Errorf("%q has more than 12 decimals", s)
	case d.GreaterThan(decimal.New(1_000_000, 0)):
		return 0, fmt.Errorf("%q is over one million dollars", s)
	}
	return ToPico(d), nil
}
