package admin

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/crs-relay/crs/internal/store"
)

// Bounds of key policy fields. Each is far beyond real use, so hitting one
// is a typo or a script bug rather than a wish.
const (
	maxDescriptionLen = 500
	maxModelList      = 100
	maxModelName      = 200
	minRateWindow     = time.Minute
	maxRateWindow     = 30 * 24 * time.Hour
	minActivateFor    = time.Minute
	maxActivateFor    = 3650 * 24 * time.Hour
	maxServiceRate    = 100
)

// DefaultWeeklyResetDay is the weekday a key's week starts on unless it
// says otherwise: Monday, as the store documents. It is written on create
// because the stored 0 means Sunday, not "unset".
const DefaultWeeklyResetDay = int(time.Monday)

// groupPrefix marks a key binding to an account group, as the scheduler
// reads it ("group:grp_…").
const groupPrefix = "group:"

// PolicyPatch sets fields of a key's policy (store.KeyPolicy); nil fields
// stay as they are. Creating a key applies it to the default policy, so the
// same rules hold for `keys create` and `keys update`, the CLI and the API.
//
// Zero values remove a limit: Concurrency 0, a money limit of 0, RateWindow
// 0, ActivateFor 0, Account "". Removing the rate window also removes its
// limits unless the same patch sets them (and then it is refused: a limit
// needs a window to count in).
type PolicyPatch struct {
	Description *string
	// Permissions lists the pools the key may use (claude, openai — or
	// codex —, gemini, droid); empty allows all.
	Permissions *[]string
	ModelsAllow *[]string
	ModelsDeny  *[]string
	Concurrency *int
	// Queue is a pointer to a pointer so that "back to the global setting"
	// (non-nil pointer to nil) differs from "leave it" (nil).
	Queue        **bool
	RateWindow   *time.Duration
	RateRequests *int64
	RateTokens   *int64
	RateCost     *USD
	DailyCost    *USD
	TotalCost    *USD
	WeeklyCost   *USD
	// DailyOpusCost limits the day's cost on Opus models only.
	DailyOpusCost   *USD
	WeeklyResetDay  *int // 0 = Sunday … 6 = Saturday
	WeeklyResetHour *int // 0–23, in the store's zone
	// ActivateFor makes the key expire this long after its first real
	// use. Setting it clears a fixed expiry, and a fixed expiry clears it:
	// a key has one or the other.
	ActivateFor *time.Duration
	// Account binds the key to an account ("acc_…") or a group
	// ("group:grp_…"), which must exist; "" returns it to the shared pool
	// and turns BindingFallback off.
	Account *string
	// BindingFallback lets a bound key use the shared pool when its
	// binding cannot serve; it needs a binding.
	BindingFallback *bool
	// ServiceRates maps a platform to the multiplier of its cost that the
	// key's limits count (0 < rate ≤ 100); an empty map counts real cost.
	ServiceRates *map[string]float64
}

// applyPolicy validates p and applies it to k. Fields are checked in the
// order they are declared, so the first bad one is reported.
func (s *Service) applyPolicy(ctx context.Context, k *store.Key, p PolicyPatch) error {
	pol := &k.Policy
	if p.Description != nil {
		d, err := checkDescription(*p.Description)
		if err != nil {
			return err
		}
		pol.Description = d
	}
	if p.Permissions != nil {
		perms, err := checkPermissions(*p.Permissions)
		if err != nil {
			return err
		}
		pol.Permissions = perms
	}
	if p.ModelsAllow != nil {
		m, err := checkModelList("models_allow", *p.ModelsAllow)
		if err != nil {
			return err
		}
		pol.ModelsAllow = m
	}
	if p.ModelsDeny != nil {
		m, err := checkModelList("models_deny", *p.ModelsDeny)
		if err != nil {
			return err
		}
		pol.ModelsDeny = m
	}
	if p.Concurrency != nil {
		if *p.Concurrency < 0 || *p.Concurrency > maxConcurrency {
			return invalid("concurrency", "want 0 (no limit) to %d, got %d", maxConcurrency, *p.Concurrency)
		}
		pol.Concurrency = *p.Concurrency
	}
	if p.Queue != nil {
		pol.Queue = nil
		if *p.Queue != nil {
			q := **p.Queue
			pol.Queue = &q
		}
	}
	if err := applyRateWindow(pol, p); err != nil {
		return err
	}
	for _, m := range []struct {
		field string
		in    *USD
		out   *int64
	}{
		{"daily_cost", p.DailyCost, &pol.DailyCost},
		{"total_cost", p.TotalCost, &pol.TotalCost},
		{"weekly_cost", p.WeeklyCost, &pol.WeeklyCost},
		{"daily_opus_cost", p.DailyOpusCost, &pol.DailyOpusCost},
	} {
		if m.in == nil {
			continue
		}
		v, err := limitPico(m.field, *m.in)
		if err != nil {
			return err
		}
		*m.out = v
	}
	if p.WeeklyResetDay != nil {
		if d := *p.WeeklyResetDay; d < 0 || d > 6 {
			return invalid("weekly_reset_day", "want 0 (Sunday) to 6 (Saturday) or a day name, got %d", d)
		}
		pol.WeeklyResetDay = *p.WeeklyResetDay
	}
	if p.WeeklyResetHour != nil {
		if h := *p.WeeklyResetHour; h < 0 || h > 23 {
			return invalid("weekly_reset_hour", "want 0 to 23, got %d", h)
		}
		pol.WeeklyResetHour = *p.WeeklyResetHour
	}
	if p.ActivateFor != nil {
		d := *p.ActivateFor
		if d != 0 && (d < minActivateFor || d > maxActivateFor) {
			return invalid("activate_for", "want 0 (none) or %s to %s, got %s",
				FormatDuration(minActivateFor), FormatDuration(maxActivateFor), FormatDuration(d))
		}
		pol.ActivateFor = d
		if d != 0 {
			k.ExpiresAt = nil
		}
	}
	if p.Account != nil {
		acct, err := s.checkBinding(ctx, *p.Account)
		if err != nil {
			return err
		}
		pol.Account = acct
		if acct == "" {
			pol.BindingFallback = false
		}
	}
	if p.BindingFallback != nil {
		if *p.BindingFallback && pol.Account == "" {
			return invalid("binding_fallback", "needs a binding: bind the key to an account or a group first")
		}
		pol.BindingFallback = *p.BindingFallback
	}
	if p.ServiceRates != nil {
		rates, err := checkServiceRates(*p.ServiceRates)
		if err != nil {
			return err
		}
		pol.ServiceRates = rates
	}
	return nil
}

// applyRateWindow sets the window and its limits together, since neither
// means anything without the other.
func applyRateWindow(pol *store.KeyPolicy, p PolicyPatch) error {
	if p.RateWindow != nil {
		w := *p.RateWindow
		if w != 0 && (w < minRateWindow || w > maxRateWindow) {
			return invalid("rate_window", "want 0 (none) or %s to %s, got %s",
				FormatDuration(minRateWindow), FormatDuration(maxRateWindow), FormatDuration(w))
		}
		pol.RateWindow = w
		if w == 0 {
			// Removing the window removes what it counted; a limit given
			// in the same patch is caught below.
			pol.RateRequests, pol.RateTokens, pol.RateCost = 0, 0, 0
		}
	}
	if p.RateRequests != nil {
		if *p.RateRequests < 0 {
			return invalid("rate_requests", "must not be negative")
		}
		pol.RateRequests = *p.RateRequests
	}
	if p.RateTokens != nil {
		if *p.RateTokens < 0 {
			return invalid("rate_tokens", "must not be negative")
		}
		pol.RateTokens = *p.RateTokens
	}
	if p.RateCost != nil {
		v, err := limitPico("rate_cost", *p.RateCost)
		if err != nil {
			return err
		}
		pol.RateCost = v
	}
	if pol.RateWindow == 0 {
		for _, l := range []struct {
			field string
			v     int64
		}{{"rate_requests", pol.RateRequests}, {"rate_tokens", pol.RateTokens}, {"rate_cost", pol.RateCost}} {
			if l.v != 0 {
				return invalid(l.field, "needs a rate window to count in")
			}
		}
	} else if pol.RateRequests == 0 && pol.RateTokens == 0 && pol.RateCost == 0 {
		return invalid("rate_window", "a window needs a request, token or cost limit")
	}
	return nil
}

func checkDescription(d string) (string, error) {
	d = strings.TrimSpace(d)
	switch {
	case utf8.RuneCountInString(d) > maxDescriptionLen:
		return "", invalid("description", "longer than %d characters", maxDescriptionLen)
	case strings.ContainsFunc(d, func(r rune) bool { return (r < ' ' && r != '\n' && r != '\t') || r == 0x7f }):
		return "", invalid("description", "must not contain control characters")
	}
	return d, nil
}

// parsePlatform reads a platform name; "codex" is the pool's other name
// for openai, as the issue and the original call it.
func parsePlatform(field, s string) (store.Platform, error) {
	p := store.Platform(strings.ToLower(strings.TrimSpace(s)))
	switch p {
	case store.PlatformClaude, store.PlatformOpenAI, store.PlatformGemini, store.PlatformDroid:
		return p, nil
	case "codex":
		return store.PlatformOpenAI, nil
	case "":
		return "", invalid(field, "a platform must not be empty (claude, openai, gemini or droid)")
	}
	return "", invalid(field, "%q is not one of claude, openai, gemini, droid", s)
}

// checkPermissions reads a pool list, dropping duplicates and keeping the
// order given.
func checkPermissions(in []string) ([]store.Platform, error) {
	var out []store.Platform
	for _, s := range in {
		p, err := parsePlatform("permissions", s)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// checkModelList validates model names as the policy matches them: the
// characters model ids are made of, optionally ending in "*" to cover
// every model that starts with the rest.
func checkModelList(field string, in []string) ([]string, error) {
	var out []string
	for _, m := range in {
		m = strings.TrimSpace(m)
		name := strings.TrimSuffix(m, "*")
		switch {
		case m == "" || name == "":
			return nil, invalid(field, "a model name must not be empty")
		case len(m) > maxModelName:
			return nil, invalid(field, "model name %q is longer than %d bytes", m, maxModelName)
		case strings.ContainsFunc(name, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._:/@-[]", r))
		}):
			return nil, invalid(field, "%q: a model name has only letters, digits and . _ : / @ - [ ], and may end in *", m)
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	if len(out) > maxModelList {
		return nil, invalid(field, "at most %d models", maxModelList)
	}
	return out, nil
}

// checkBinding resolves a binding to an existing account or group.
func (s *Service) checkBinding(ctx context.Context, b string) (string, error) {
	b = strings.TrimSpace(b)
	if b == "" {
		return "", nil
	}
	if id, ok := strings.CutPrefix(b, groupPrefix); ok {
		if _, err := s.Store.GetGroup(ctx, store.GroupID(id)); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return "", invalid("account", "no group %q (see the groups list)", id)
			}
			return "", err
		}
		return b, nil
	}
	if _, err := s.Store.GetAccount(ctx, store.AccountID(b)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", invalid("account", "no account %q (see the accounts list; a group is group:ID)", b)
		}
		return "", err
	}
	return b, nil
}

func checkServiceRates(in map[string]float64) (map[store.Platform]float64, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make(map[store.Platform]float64, len(in))
	for _, name := range slices.Sorted(maps.Keys(in)) {
		p, err := parsePlatform("service_rates", name)
		if err != nil {
			return nil, err
		}
		r := in[name]
		if math.IsNaN(r) || r <= 0 || r > maxServiceRate {
			return nil, invalid("service_rates", "rate for %s must be above 0 and at most %d, got %v", p, maxServiceRate, r)
		}
		if _, dup := out[p]; dup {
			return nil, invalid("service_rates", "%s is given twice", p)
		}
		out[p] = r
	}
	return out, nil
}

// ParseDuration reads a span as people type it for a key: a number of days
// ("30d") or a Go duration ("90m", "1h30m"). "0" is zero. The CLI and the
// API both read spans with it, so "30d" works in both.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err == nil && days >= 0 && days <= 36500 {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return d, nil
	}
	return 0, fmt.Errorf("want a span such as 30d, 12h or 90m, got %q", s)
}

// FormatDuration writes a span the way ParseDuration reads it, as short as
// it goes: whole days as "30d", otherwise a Go duration without zero tails
// ("1h", "1h30m", "90s" stays "1m30s").
func FormatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d > 0 && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	s := d.String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

// weekdays are the names ParseWeekday knows, Sunday first as in
// time.Weekday.
var weekdays = []string{"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"}

// ParseWeekday reads a week's reset day: a number 0 (Sunday) to 6, or a
// day name, whole or its first three letters ("mon", "Monday").
func ParseWeekday(s string) (int, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if n, err := strconv.Atoi(t); err == nil && n >= 0 && n <= 6 {
		return n, nil
	}
	for i, name := range weekdays {
		if len(t) >= 3 && strings.HasPrefix(name, t) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("want mon, tue, wed, thu, fri, sat, sun or 0 (Sunday) to 6, got %q", s)
}

// effectiveExpiry is when the key stops working: its fixed expiry, or for
// an activation key that was activated, the activation plus the span.
func effectiveExpiry(k store.Key) *time.Time {
	if k.ExpiresAt != nil {
		return utc(k.ExpiresAt)
	}
	if k.Policy.ActivateFor > 0 && k.ActivatedAt != nil {
		t := k.ActivatedAt.Add(k.Policy.ActivateFor).UTC()
		return &t
	}
	return nil
}
