package policy

import (
	"testing"

	"github.com/crs-relay/crs/internal/store"
)

func TestModelMatching(t *testing.T) {
	tests := []struct {
		entry, model string
		want         bool
	}{
		{"claude-opus-4", "claude-opus-4", true},
		{"claude-opus-4", "claude-opus-4-20250514", true},
		{"claude-opus-4", "claude-opus-4-1", false},
		{"claude-opus-4", "claude-opus-4-1-20250805", false},
		{"claude-opus-4", "claude-opus-45", false},
		{"claude-opus-4", "claude-opus", false},
		{"claude-opus-4", "claude-opus-4-latest", true},
		{"claude-opus-4", "claude-opus-4-2025051", false},   // seven digits is no date
		{"claude-opus-4", "claude-opus-4-20250514x", false}, // nor is a date with a tail
		{"claude-opus-4-1", "claude-opus-4-1-20250805", true},
		{"claude-opus-4-20250514", "claude-opus-4", false}, // a dated entry covers only itself
		// Case and vendor prefixes do not matter, on either side.
		{"Claude-Opus-4", "claude-opus-4-20250514", true},
		{"anthropic/claude-opus-4", "claude-opus-4-20250514", true},
		{"claude-opus-4", "anthropic/claude-opus-4-20250514", true},
		{"claude-opus-4", "us.anthropic.claude-opus-4-20250514-v1:0", true},
		{"claude-opus-4", "anthropic.claude-opus-4-20250514-v1", true},
		{"claude-opus-4", "claude-opus-4@20250514", true},
		{"claude-opus-4", "ccr,claude-opus-4-20250514", true},
		{"claude-opus-4-8", "claude-opus-4-8[1m]", true},
		{"gemini-2.5-pro", "models/gemini-2.5-pro", true},
		{"gemini-2.5-pro", "gemini-2.5-pro-preview-05-06", false},
		{"gpt-4o", "gpt-4o-2024-08-06", true},
		{"gpt-4o", "gpt-4o-mini", false},
		{"gpt-4.1", "gpt-4.1", true}, // a dot inside the name is not a vendor prefix
		{"claude-opus-4", "us.anthropic.claude-opus-4-20250514-vx", false},
		// A trailing * covers a family.
		{"claude-opus-*", "claude-opus-4-1-20250805", true},
		{"claude-opus-*", "claude-sonnet-4-5", false},
		{"", "claude-opus-4", false},
	}
	for _, tc := range tests {
		if got := modelMatches(normalizeModel(tc.entry), normalizeModel(tc.model)); got != tc.want {
			t.Errorf("entry %q, model %q: matches = %v, want %v", tc.entry, tc.model, got, tc.want)
		}
	}
}

func TestModelAllowDeny(t *testing.T) {
	tests := []struct {
		name        string
		allow, deny []string
		model       string
		want        bool
	}{
		{"no lists", nil, nil, "anything", true},
		{"no model named", []string{"claude-sonnet-4-5"}, nil, "", true},
		{"allowed", []string{"claude-sonnet-4-5"}, nil, "claude-sonnet-4-5-20250929", true},
		{"not allowed", []string{"claude-sonnet-4-5"}, nil, "claude-opus-4-1", false},
		{"denied", nil, []string{"claude-opus-4-1"}, "claude-opus-4-1-20250805", false},
		{"not denied", nil, []string{"claude-opus-4-1"}, "claude-opus-4", true},
		{"allowed, then denied", []string{"claude-opus-4-1"}, []string{"claude-opus-4-1-20250805"}, "claude-opus-4-1-20250805", false},
		{"allowed, other date denied", []string{"claude-opus-4-1"}, []string{"claude-opus-4-1-20250805"}, "claude-opus-4-1-20260101", true},
		{"deny does not widen allow", []string{"claude-sonnet-4-5"}, []string{"claude-opus-4"}, "gpt-5", false},
	}
	for _, tc := range tests {
		key := store.Key{Policy: store.KeyPolicy{ModelsAllow: tc.allow, ModelsDeny: tc.deny}}
		if got := ModelAllowed(key, tc.model); got != tc.want {
			t.Errorf("%s: ModelAllowed(%q) = %v, want %v", tc.name, tc.model, got, tc.want)
		}
	}
}

func TestRatedCost(t *testing.T) {
	key := store.Key{Policy: store.KeyPolicy{ServiceRates: map[store.Platform]float64{
		store.PlatformClaude: 0.8, store.PlatformOpenAI: 1.5, store.PlatformGemini: 0,
	}}}
	tests := []struct {
		platform store.Platform
		cost     int64
		want     int64
	}{
		{store.PlatformClaude, 3_000_000_000_000, 2_400_000_000_000}, // exact: 0.8 is not 0.8000000000000000444
		{store.PlatformClaude, 7, 6},                                 // 5.6 rounds to 6
		{store.PlatformOpenAI, 1_000_000_000_001, 1_500_000_000_002}, // 1.5000000000015 rounds up
		{store.PlatformGemini, 1_000, 0},
		{store.PlatformDroid, 1_234, 1_234}, // no rate: 1
	}
	for _, tc := range tests {
		if got := RatedCost(key, tc.platform, tc.cost); got != tc.want {
			t.Errorf("RatedCost(%s, %d) = %d, want %d", tc.platform, tc.cost, got, tc.want)
		}
	}
}
