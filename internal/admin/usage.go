package admin

import (
	"context"

	"github.com/shopspring/decimal"

	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/store"
)

// USD is an amount of money that marshals to a plain JSON number written
// from the decimal ("0.000001", never "1e-06" and never through a float),
// so scripts summing costs get exactly what was recorded.
type USD struct{ decimal.Decimal }

// MarshalJSON writes the decimal in fixed-point notation without trailing
// zeros, as a JSON number.
func (u USD) MarshalJSON() ([]byte, error) { return []byte(u.String()), nil }

// UnmarshalJSON reads a JSON number (or a string holding one) exactly.
func (u *USD) UnmarshalJSON(b []byte) error { return u.Decimal.UnmarshalJSON(b) }

// UsageCounters are the summed figures of one usage row.
// CacheCreation is always CacheCreation5m + CacheCreation1h.
type UsageCounters struct {
	Requests        int64 `json:"requests"`
	Input           int64 `json:"input_tokens"`
	Output          int64 `json:"output_tokens"`
	CacheCreation   int64 `json:"cache_creation_input_tokens"`
	CacheCreation5m int64 `json:"cache_creation_5m_input_tokens"`
	CacheCreation1h int64 `json:"cache_creation_1h_input_tokens"`
	CacheRead       int64 `json:"cache_read_input_tokens"`
	CostUSD         USD   `json:"cost_usd"`
	// RatedCostUSD is the cost times the key's service rate: what its
	// cost limits count. Equal to CostUSD without service rates.
	RatedCostUSD USD `json:"rated_cost_usd"`
}

// KeyUsage is the total for one relay key. KeyName is "" once the key was
// purged.
type KeyUsage struct {
	KeyID   store.KeyID `json:"key_id"`
	KeyName string      `json:"key_name"`
	UsageCounters
}

// AccountUsage is the total for one upstream account. AccountName is ""
// once the account was removed.
type AccountUsage struct {
	AccountID   store.AccountID `json:"account_id"`
	AccountName string          `json:"account_name"`
	UsageCounters
}

// ModelUsage is the total for one model name, as the client sent it.
type ModelUsage struct {
	Model string `json:"model"`
	UsageCounters
}

// UsageView is what `crs usage --json` prints and GET /admin/usage sends.
// The three lists are never null.
type UsageView struct {
	Keys     []KeyUsage     `json:"keys"`
	Accounts []AccountUsage `json:"accounts"`
	Models   []ModelUsage   `json:"models"`
}

// UsageQuery narrows Usage; zero fields do not filter.
type UsageQuery struct {
	KeyID store.KeyID
}

func counters(c store.Counters) UsageCounters {
	return UsageCounters{
		Requests:        c.Requests,
		Input:           c.Input,
		Output:          c.Output,
		CacheCreation:   c.CacheWrite5m + c.CacheWrite1h,
		CacheCreation5m: c.CacheWrite5m,
		CacheCreation1h: c.CacheWrite1h,
		CacheRead:       c.CacheRead,
		CostUSD:         USD{pricing.FromPico(c.CostPico)},
		RatedCostUSD:    USD{pricing.FromPico(c.RatedPico)},
	}
}

// Usage totals all recorded usage per key, per account and per model,
// with names resolved from the current keys and accounts.
func (s *Service) Usage(ctx context.Context, q UsageQuery) (UsageView, error) {
	sum, err := s.Store.SummarizeUsage(ctx, store.UsageFilter{KeyID: q.KeyID})
	if err != nil {
		return UsageView{}, err
	}
	keys, err := s.Store.ListKeys(ctx, true)
	if err != nil {
		return UsageView{}, err
	}
	keyNames := make(map[store.KeyID]string, len(keys))
	for _, k := range keys {
		keyNames[k.ID] = k.Name
	}
	accts, err := s.Store.ListAccounts(ctx)
	if err != nil {
		return UsageView{}, err
	}
	acctNames := make(map[store.AccountID]string, len(accts))
	for _, a := range accts {
		acctNames[a.ID] = a.Name
	}
	v := UsageView{
		Keys:     make([]KeyUsage, 0, len(sum.Keys)),
		Accounts: make([]AccountUsage, 0, len(sum.Accounts)),
		Models:   make([]ModelUsage, 0, len(sum.Models)),
	}
	for _, r := range sum.Keys {
		v.Keys = append(v.Keys, KeyUsage{KeyID: r.KeyID, KeyName: keyNames[r.KeyID], UsageCounters: counters(r.Counters)})
	}
	for _, r := range sum.Accounts {
		v.Accounts = append(v.Accounts, AccountUsage{AccountID: r.AccountID, AccountName: acctNames[r.AccountID], UsageCounters: counters(r.Counters)})
	}
	for _, r := range sum.Models {
		v.Models = append(v.Models, ModelUsage{Model: r.Model, UsageCounters: counters(r.Counters)})
	}
	return v, nil
}

// usdOf is picodollars as USD.
func usdOf(pico int64) USD { return USD{pricing.FromPico(pico)} }

// limitPico checks a money limit typed by an admin (not negative, at most
// 12 decimals, at most a million dollars) and returns it in picodollars.
func limitPico(field string, u USD) (int64, error) {
	p, err := pricing.ParseUSD(u.String())
	if err != nil {
		return 0, invalid(field, "%s", err.Error())
	}
	return p, nil
}
