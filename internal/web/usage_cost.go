package web

import (
	"github.com/shopspring/decimal"

	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/store"
)

// Token classes of the usage page's cost breakdown, in the order shown.
const (
	usageClassInput = iota
	usageClassOutput
	usageClassCache5m
	usageClassCache1h
	usageClassCacheRead
	usageClassCount
)

// usageClassTokens returns a row's tokens per class.
func usageClassTokens(c store.Counters) [usageClassCount]int64 {
	return [usageClassCount]int64{c.Input, c.Output, c.CacheWrite5m, c.CacheWrite1h, c.CacheRead}
}

// usageSplitCost divides the recorded cost of each model row among its
// token classes. A record keeps one cost, not one per class, so the split
// weighs each class's tokens by the model's current prices (the base tier)
// and shares the recorded cost in those proportions: the classes add up to
// the recorded cost exactly, even where prices have changed since or a
// long-context tier applied. A model whose tokens are all priced at zero
// now cannot be split; its cost is returned as other.
func usageSplitCost(t *pricing.Table, rows []store.UsageRow) (cost [usageClassCount]int64, other int64) {
	for _, m := range rows {
		if m.CostPico == 0 {
			continue
		}
		p, _, _ := t.Lookup(m.Model)
		prices := [usageClassCount]decimal.Decimal{p.Input, p.Output, p.CacheWrite5m, p.CacheWrite1h, p.CacheRead}
		toks := usageClassTokens(m.Counters)
		var weights [usageClassCount]decimal.Decimal
		sum := decimal.Zero
		heaviest := 0
		for i := range usageClassCount {
			weights[i] = prices[i].Mul(decimal.NewFromInt(max(toks[i], 0)))
			sum = sum.Add(weights[i])
			if weights[i].GreaterThan(weights[heaviest]) {
				heaviest = i
			}
		}
		if !sum.IsPositive() {
			other += m.CostPico
			continue
		}
		recorded := decimal.NewFromInt(m.CostPico)
		left := m.CostPico
		for i := range usageClassCount {
			share := recorded.Mul(weights[i]).Div(sum).Floor().IntPart()
			cost[i] += share
			left -= share
		}
		// Rounding down leaves a few picodollars; the heaviest class
		// takes them, so the classes sum to the record.
		cost[heaviest] += left
	}
	return cost, other
}

// usageClasses is the breakdown table of the usage page.
func (c *Console) usageClasses(v *view, rows []store.UsageRow, total int64) []usageClass {
	var t *pricing.Table
	if c.o.Prices != nil {
		t = c.o.Prices.Table()
	}
	if t == nil {
		t = pricing.Default()
	}
	cost, other := usageSplitCost(t, rows)
	var toks [usageClassCount]int64
	for _, m := range rows {
		for i, n := range usageClassTokens(m.Counters) {
			toks[i] += n
		}
	}
	labels := [usageClassCount]string{v.T("usage.class.input"), v.T("usage.class.output"), v.T("usage.class.cache_5m"),
		v.T("usage.class.cache_1h"), v.T("usage.class.cache_read")}
	out := make([]usageClass, 0, usageClassCount+1)
	for i := range usageClassCount {
		out = append(out, usageClass{Label: labels[i], Tokens: toks[i], CostPico: cost[i], Share: pct(cost[i], total)})
	}
	if other != 0 {
		out = append(out, usageClass{Label: v.T("usage.class.other"), CostPico: other, Share: pct(other, total)})
	}
	return out
}
