package metrics

import (
	"context"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/store"
)

const ms = time.Millisecond

// TestOverheadExcludesUpstreamTime walks a request with a failed attempt,
// a second attempt whose usage is recorded while it is open, and
// bookkeeping after the end, and checks the overhead at each point against
// the definition: elapsed − open upstream time + bookkeeping inside it.
func TestOverheadExcludesUpstreamTime(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	x := NewExchange(t0)

	if got := x.Overhead(at(4 * ms)); got != 4*ms {
		t.Fatalf("before any upstream: overhead %v, want all 4ms", got)
	}
	x.openSpan(at(5 * ms)) // attempt 1 sent
	if got := x.Overhead(at(50 * ms)); got != 5*ms {
		t.Fatalf("while waiting on attempt 1: overhead %v, want 5ms", got)
	}
	x.closeSpan(at(105 * ms)) // attempt 1 failed after 100ms
	x.closeSpan(at(106 * ms)) // a second close is a no-op
	x.openSpan(at(108 * ms))  // 3ms between attempts are crs's
	x.openSpan(at(109 * ms))  // a second open keeps the first start
	x.addUsage(pricing.Tokens{Input: 10, Output: 4}, 7, 2*ms)
	x.closeSpan(at(308 * ms))                     // attempt 2 took 200ms, 2ms of it recording
	x.addUsage(pricing.Tokens{Input: 1}, 1, 9*ms) // after the span: already in elapsed, not added again

	end := at(310 * ms)
	s := x.Summary(end)
	// elapsed 310 − upstream (100 + 200) + 2 = 12.
	if s.Overhead != 12*ms || s.Upstream != 300*ms || s.Total != 310*ms {
		t.Fatalf("summary overhead %v upstream %v total %v, want 12ms 300ms 310ms", s.Overhead, s.Upstream, s.Total)
	}
	if !s.Usage || s.Tokens.Input != 11 || s.Tokens.Output != 4 || s.CostPico != 8 {
		t.Fatalf("usage %v %+v %d", s.Usage, s.Tokens, s.CostPico)
	}
	if s.FirstByte != 0 {
		t.Fatalf("first byte %v without a commit", s.FirstByte)
	}
}

// TestHooksFillTheExchangeWithoutMetrics: a relay built without metrics
// (nil *Metrics) still tells the access log who and what a request was.
func TestHooksFillTheExchangeWithoutMetrics(t *testing.T) {
	x := NewExchange(time.Now())
	ctx := WithExchange(context.Background(), x)
	var m *Metrics
	m.Authenticated(ctx, store.Key{ID: "k1", Name: "alice"})
	m.Serving(ctx, store.PlatformClaude, "claude-sonnet-4-5")
	m.Sending(ctx, store.Account{ID: "a1", Name: "main"})
	m.Committed(ctx, store.PlatformClaude, 200)
	m.StreamOpened(store.PlatformClaude)
	m.Recorded(ctx, store.PlatformClaude, "claude-sonnet-4-5", pricing.Tokens{Output: 5}, 3, 0)
	m.StreamClosed(store.PlatformClaude)
	m.UpstreamDone(ctx)
	m.RequestDone("POST /api/v1/messages", 200, x.Summary(time.Now()))

	s := x.Summary(time.Now())
	if s.KeyName != "alice" || s.Platform != store.PlatformClaude || s.Model != "claude-sonnet-4-5" ||
		s.AccountID != "a1" || s.AccountName != "main" || s.Attempts != 1 || s.FirstByte <= 0 ||
		s.Tokens.Output != 5 || s.CostPico != 3 {
		t.Fatalf("summary %+v", s)
	}
	// And hooks without an Exchange in the context do nothing at all.
	m.Sending(context.Background(), store.Account{})
	if ExchangeFrom(context.Background()) != nil {
		t.Fatal("an Exchange out of nowhere")
	}
}
