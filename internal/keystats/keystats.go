// Package keystats is the key holder's own view: POST
// /apiStats/api/user-stats with {"apiKey":"cr_…"} answers what that key used
// (today, this month, all time, per model), where it stands against its
// limits, and when it expires. It is public — the key is the credential —
// so it is built not to help anyone guess keys: only a whole key is
// accepted (never a key id), lookups are throttled per address, and a
// wrong key costs the same time as a right one.
package keystats

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/crs-relay/crs/internal/policy"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/throttle"
)

// Path is where the handler is mounted (the original's path, kept so its
// console and scripts work).
const Path = "/apiStats/api/user-stats"

// Defaults for Options.
const (
	DefaultMinDuration = 250 * time.Millisecond
	// maxFailures unknown keys from one address within failureWindow
	// refuse further lookups from it until the oldest leaves the window.
	maxFailures   = 10
	failureWindow = 15 * time.Minute
	maxBody       = 4 << 10
)

// Options configure the handler.
type Options struct {
	Keys  store.Keys
	Usage store.Usage
	// Policy reports limits; nil leaves "limits" out.
	Policy *policy.Engine
	// ClientIP names the caller for throttling.
	ClientIP func(*http.Request) string
	// Location is the zone of "today" and "this month" (TIMEZONE).
	Location *time.Location
	// MinDuration is the least time every answer takes, found key or not
	// (default 250 ms).
	MinDuration time.Duration
	Now         func() time.Time
	Logger      *slog.Logger
	// sleep waits; tests replace it.
	sleep func(context.Context, time.Duration)
}

// Handler serves the key holder's stats.
type Handler struct {
	o        Options
	throttle *throttle.Throttle
}

// New returns the handler.
func New(o Options) *Handler {
	if o.Location == nil {
		o.Location = time.Local
	}
	if o.MinDuration <= 0 {
		o.MinDuration = DefaultMinDuration
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ClientIP == nil {
		o.ClientIP = func(r *http.Request) string { return r.RemoteAddr }
	}
	if o.sleep == nil {
		o.sleep = func(ctx context.Context, d time.Duration) {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
			}
		}
	}
	return &Handler{o: o, throttle: throttle.New(maxFailures, failureWindow, o.Now)}
}

// Stats is the answer.
type Stats struct {
	Key    KeyInfo           `json:"key"`
	Usage  Usage             `json:"usage"`
	Limits *policy.KeyStatus `json:"limits,omitempty"`
}

// KeyInfo is the key as its holder may see it (no id-guessing help: no
// hash, no hint beyond what the holder typed).
type KeyInfo struct {
	Name        string     `json:"name"`
	Status      string     `json:"status"`
	CreatedAt   time.Time  `json:"created_at"`
	LastUsedAt  *time.Time `json:"last_used_at"`
	ExpiresAt   *time.Time `json:"expires_at"`
	ActivatedAt *time.Time `json:"activated_at"`
	Permissions []string   `json:"permissions"`
}

// Usage totals three periods.
type Usage struct {
	Today   Period `json:"today"`
	Month   Period `json:"month"`
	AllTime Period `json:"all_time"`
}

// Period is the usage of one period, in total and per model.
type Period struct {
	From   *time.Time `json:"from"` // nil for all time
	Totals Counters   `json:"totals"`
	Models []Model    `json:"models"`
}

// Model is one model's usage in a period.
type Model struct {
	Model string `json:"model"`
	Counters
}

// Counters are summed figures; costs are exact decimal USD.
type Counters struct {
	Requests     int64           `json:"requests"`
	Input        int64           `json:"input_tokens"`
	Output       int64           `json:"output_tokens"`
	CacheWrite5m int64           `json:"cache_creation_5m_input_tokens"`
	CacheWrite1h int64           `json:"cache_creation_1h_input_tokens"`
	CacheRead    int64           `json:"cache_read_input_tokens"`
	CostUSD      decimal.Decimal `json:"cost_usd"`
	RatedCostUSD decimal.Decimal `json:"rated_cost_usd"`
}

type request struct {
	APIKey  string `json:"apiKey"`
	APIKey2 string `json:"api_key"`
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

// ServeHTTP answers POST Path.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req request
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil || json.Unmarshal(body, &req) != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", `send {"apiKey":"cr_…"} as JSON`)
		return
	}
	token := strings.TrimSpace(req.APIKey)
	if token == "" {
		token = strings.TrimSpace(req.APIKey2)
	}
	stats, err := h.Look(r, token)
	var throttled *ThrottledError
	switch {
	case errors.As(err, &throttled):
		w.Header().Set("Retry-After", retryAfter(throttled.Wait))
		writeError(w, http.StatusTooManyRequests, "too_many_attempts", "too many lookups with unknown keys from this address; try again later")
	case errors.Is(err, ErrUnknownKey):
		writeError(w, http.StatusUnauthorized, "invalid_key", "no such key: give the whole relay key (cr_…), not its id")
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "unavailable", "usage is unavailable; try again shortly")
	default:
		writeJSON(w, http.StatusOK, stats)
	}
}

// ErrUnknownKey is a token that names no live key.
var ErrUnknownKey = errors.New("no such key")

// ThrottledError says that too many lookups with unknown keys came from the
// request's address.
type ThrottledError struct{ Wait time.Duration }

func (e *ThrottledError) Error() string { return "too many lookups with unknown keys" }

// Look finds the key token names and returns its stats, for this route and
// for the console's key-holder page alike: lookups are throttled per
// address, and every answer, found or not, takes at least MinDuration, so
// response time says nothing about the key. Errors: *ThrottledError,
// ErrUnknownKey, or the store's.
func (h *Handler) Look(r *http.Request, token string) (Stats, error) {
	start := h.o.Now()
	defer func() {
		if d := h.o.MinDuration - h.o.Now().Sub(start); d > 0 {
			h.o.sleep(r.Context(), d)
		}
	}()
	addr := h.o.ClientIP(r)
	if ok, wait := h.throttle.Allow(addr); !ok {
		return Stats{}, &ThrottledError{Wait: wait}
	}
	token = strings.TrimSpace(token)
	// The lookup runs for every well-formed request, so a malformed and a
	// wrong key differ only in the message, not in work or time.
	var key store.Key
	found := false
	if secret.LooksLikeRelayKey(token) {
		k, err := h.o.Keys.KeyByHash(r.Context(), secret.Hash(token))
		switch {
		case err == nil && k.DeletedAt == nil:
			key, found = k, true
		case err != nil && !errors.Is(err, store.ErrNotFound):
			h.o.Logger.Error("user stats: key lookup failed", "err", err)
			return Stats{}, err
		}
	} else {
		h.o.Keys.KeyByHash(r.Context(), secret.Hash("cr_"+strings.Repeat("0", 64)))
	}
	if !found {
		h.throttle.Fail(addr)
		return Stats{}, ErrUnknownKey
	}
	stats, err := h.stats(r.Context(), key)
	if err != nil {
		h.o.Logger.Error("user stats failed", "key", key.ID, "err", err)
		return Stats{}, err
	}
	return stats, nil
}

func (h *Handler) stats(ctx context.Context, k store.Key) (Stats, error) {
	now := h.o.Now().In(h.o.Location)
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, h.o.Location)
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, h.o.Location)
	st := Stats{Key: KeyInfo{
		Name: k.Name, Status: k.Status(now), CreatedAt: k.CreatedAt.UTC(),
		LastUsedAt: k.LastUsedAt, ExpiresAt: k.ExpiresAt, ActivatedAt: k.ActivatedAt,
		Permissions: []string{},
	}}
	for _, p := range k.Policy.Permissions {
		st.Key.Permissions = append(st.Key.Permissions, string(p))
	}
	var err error
	if st.Usage.Today, err = h.period(ctx, k.ID, today); err != nil {
		return Stats{}, err
	}
	if st.Usage.Month, err = h.period(ctx, k.ID, month); err != nil {
		return Stats{}, err
	}
	if st.Usage.AllTime, err = h.period(ctx, k.ID, time.Time{}); err != nil {
		return Stats{}, err
	}
	if h.o.Policy != nil {
		ks, err := h.o.Policy.Status(ctx, k)
		if err != nil {
			return Stats{}, err
		}
		st.Limits = &ks
		if ks.Expiry.ExpiresAt != nil {
			st.Key.ExpiresAt = ks.Expiry.ExpiresAt
		}
	}
	return st, nil
}

func (h *Handler) period(ctx context.Context, id store.KeyID, from time.Time) (Period, error) {
	sum, err := h.o.Usage.SummarizeUsage(ctx, store.UsageFilter{KeyID: id, From: from})
	if err != nil {
		return Period{}, err
	}
	p := Period{Models: []Model{}}
	if !from.IsZero() {
		f := from.UTC()
		p.From = &f
	}
	var total store.Counters
	for _, row := range sum.Models {
		p.Models = append(p.Models, Model{Model: row.Model, Counters: counters(row.Counters)})
		total.Merge(row.Counters)
	}
	sort.Slice(p.Models, func(i, j int) bool { return p.Models[i].Model < p.Models[j].Model })
	p.Totals = counters(total)
	return p, nil
}

func counters(c store.Counters) Counters {
	return Counters{
		Requests: c.Requests, Input: c.Input, Output: c.Output,
		CacheWrite5m: c.CacheWrite5m, CacheWrite1h: c.CacheWrite1h, CacheRead: c.CacheRead,
		CostUSD: pricing.FromPico(c.CostPico), RatedCostUSD: pricing.FromPico(c.RatedPico),
	}
}

func retryAfter(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return decimal.NewFromInt(s).String()
}
