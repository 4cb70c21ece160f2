package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/shopspring/decimal"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/store"
)

// seed fills the store with what a small group's relay holds after two
// weeks: accounts of every platform (one resting), keys with and without
// limits, and usage spread over the days and hours, so every chart and
// table has something to show.
func seed(ctx context.Context, svc *admin.Service, st store.Store, loc *time.Location) error {
	var accounts []store.AccountID
	for _, a := range []admin.AccountInput{
		{Platform: "claude", Type: "api-key", Name: "anthropic-main", APIKey: "sk-ant-demo-1", Priority: 10},
		{Platform: "claude", Type: "api-key", Name: "anthropic-backup", APIKey: "sk-ant-demo-2", Priority: 50, Proxy: "socks5://127.0.0.1:1080"},
		{Platform: "openai", Type: "api-key", Name: "openai-team", APIKey: "sk-demo-openai", Priority: 50},
		{Platform: "gemini", Type: "api-key", Name: "gemini-free", APIKey: "AIza-demo-gemini", Priority: 50},
	} {
		v, err := svc.AddAccount(ctx, a)
		if err != nil {
			return fmt.Errorf("account %s: %w", a.Name, err)
		}
		accounts = append(accounts, v.ID)
	}
	if err := st.SetCooldown(ctx, accounts[1], store.CooldownRateLimited, time.Now().Add(37*time.Minute), "429 from upstream"); err != nil {
		return err
	}
	daily := admin.USD{Decimal: decimal.NewFromInt(5)}
	conc := 2
	var keys []store.KeyID
	for _, k := range []admin.KeyInput{
		{Name: "alice", Tags: []string{"team"}},
		{Name: "bob", Tags: []string{"team"}, Policy: admin.PolicyPatch{DailyCost: &daily, Concurrency: &conc}},
		{Name: "ci-bot", Tags: []string{"automation"}},
	} {
		v, _, err := svc.CreateKey(ctx, k)
		if err != nil {
			return fmt.Errorf("key %s: %w", k.Name, err)
		}
		keys = append(keys, v.ID)
	}
	models := []struct {
		name  string
		price int64 // picodollars per record, roughly
	}{{"claude-sonnet-4-5", 30_000_000_000}, {"claude-opus-4-5", 120_000_000_000}, {"claude-haiku-4-5", 4_000_000_000}, {"gpt-5-codex", 20_000_000_000}, {"gemini-2.5-pro", 15_000_000_000}}
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Now()
	var recs []store.UsageRecord
	for i := range 2400 {
		age := time.Duration(rng.Float64()*14*24) * time.Hour
		if i%3 == 0 {
			age = time.Duration(rng.Float64()*20) * time.Hour
		}
		m := models[rng.IntN(len(models))]
		acct := accounts[0]
		switch m.name {
		case "gpt-5-codex":
			acct = accounts[2]
		case "gemini-2.5-pro":
			acct = accounts[3]
		}
		in := int64(500 + rng.IntN(4000))
		recs = append(recs, store.UsageRecord{
			RequestID: fmt.Sprintf("req_demo_%05d", i), KeyID: keys[rng.IntN(len(keys))], AccountID: acct, Model: m.name,
			Input: in, Output: int64(100 + rng.IntN(1500)), CacheRead: int64(rng.IntN(20000)), CacheWrite5m: int64(rng.IntN(3000)),
			CostPico: m.price / 2 * int64(1+rng.IntN(3)), Stream: true, Status: 200,
			LatencyMs: int64(800 + rng.IntN(9000)), FirstByteMs: int64(300 + rng.IntN(1500)), CreatedAt: now.Add(-age).In(loc),
		})
	}
	for i := range recs {
		recs[i].RatedCostPico = recs[i].CostPico
	}
	for len(recs) > 0 {
		n := min(500, len(recs))
		if _, err := st.InsertUsage(ctx, recs[:n]); err != nil {
			return err
		}
		recs = recs[n:]
	}
	return nil
}
