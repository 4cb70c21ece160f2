package store

import (
	"cmp"
	"slices"
)

// UsageTotals are usage totals by what they count: a UsageRow without
// counters names the key, account and model, each empty where the totals
// are not kept apart by it. Backends sum rollups and records into them,
// then group them into the lists of SummarizeUsage and ModelTotals.
type UsageTotals map[UsageRow]*Counters

// Add adds c to the total of dims (its Counters are ignored).
func (t UsageTotals) Add(dims UsageRow, c Counters) {
	dims.Counters = Counters{}
	sum := t[dims]
	if sum == nil {
		sum = &Counters{}
		t[dims] = sum
	}
	sum.Merge(c)
}

// Rows groups the totals by what by keeps of their dims (ByKey,
// ByAccount, ByModel): one row each, ordered by key, account and model;
// nil when there are none.
func (t UsageTotals) Rows(by func(UsageRow) UsageRow) []UsageRow {
	grouped := UsageTotals{}
	for dims, c := range t {
		grouped.Add(by(dims), *c)
	}
	var rows []UsageRow
	for dims, c := range grouped {
		dims.Counters = *c
		rows = append(rows, dims)
	}
	slices.SortFunc(rows, func(a, b UsageRow) int {
		return cmp.Or(cmp.Compare(a.KeyID, b.KeyID), cmp.Compare(a.AccountID, b.AccountID), cmp.Compare(a.Model, b.Model))
	})
	return rows
}

// ByKey, ByAccount and ByModel keep one of a total's dims, for Rows.
func ByKey(d UsageRow) UsageRow     { return UsageRow{KeyID: d.KeyID} }
func ByAccount(d UsageRow) UsageRow { return UsageRow{AccountID: d.AccountID} }
func ByModel(d UsageRow) UsageRow   { return UsageRow{Model: d.Model} }
