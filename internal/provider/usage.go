package provider

import (
	"errors"
	"math"
	"strconv"

	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/pricing"
)

// TokenCount reads a token count from an upstream's usage report, clamping
// nonsense to the valid range: a negative count is 0 and one past int64 is
// math.MaxInt64, so a malformed report can never produce negative usage or
// wrap around. A count written as a string ("42", which the proto JSON
// mapping of Google's APIs allows) is read too; anything else is 0.
func TokenCount(r gjson.Result) int64 {
	switch r.Type {
	case gjson.Number:
		v, err := strconv.ParseInt(r.Raw, 10, 64)
		switch {
		case err == nil:
			return max(v, 0)
		case errors.Is(err, strconv.ErrRange):
			if r.Raw[0] == '-' {
				return 0
			}
			return math.MaxInt64
		}
		// A fraction or exponent (1.5e3): truncate, saturating.
		switch {
		case r.Num >= math.MaxInt64:
			return math.MaxInt64
		case r.Num > 0:
			return int64(r.Num)
		}
		return 0
	case gjson.String:
		v, err := strconv.ParseInt(r.Str, 10, 64)
		if err != nil {
			return 0
		}
		return max(v, 0)
	}
	return 0
}

// SatAdd adds two non-negative counts without wrapping.
func SatAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// AddTokens adds every token class of b to a, saturating.
func AddTokens(a, b pricing.Tokens) pricing.Tokens {
	return pricing.Tokens{
		Input:        SatAdd(a.Input, b.Input),
		Output:       SatAdd(a.Output, b.Output),
		CacheWrite5m: SatAdd(a.CacheWrite5m, b.CacheWrite5m),
		CacheWrite1h: SatAdd(a.CacheWrite1h, b.CacheWrite1h),
		CacheRead:    SatAdd(a.CacheRead, b.CacheRead),
	}
}
