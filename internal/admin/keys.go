package admin

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
)

// Limits on user-chosen key fields. They keep listings readable and stop a
// script bug from storing megabytes in a name.
const (
	maxNameLen = 100
	maxTags    = 20
	maxTagLen  = 40
)

// KeyView is a relay key as shown to users and scripts (`crs keys list
// --json`, GET /admin/keys). It never carries the key or its hash.
type KeyView struct {
	ID     store.KeyID `json:"id"`
	Name   string      `json:"name"`
	Status string      `json:"status"` // active|disabled|expired|deleted
	Tags   []string    `json:"tags"`   // never null
	// Clients restricts the client programs that may use the key
	// (claude_code, …); empty allows every client. Never null.
	Clients    []string   `json:"clients"`
	Hint       string     `json:"hint"` // last 4 characters of the key
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	// ExpiresAt is when the key stops working: the fixed expiry, or for a
	// key with ActivateFor, its activation plus that span once activated
	// (null before).
	ExpiresAt *time.Time `json:"expires_at"`
	DeletedAt *time.Time `json:"deleted_at"`

	// The key's policy (store.KeyPolicy). Lists and maps are never null;
	// 0 means "no limit"; money is USD.
	Description string           `json:"description"`
	Permissions []store.Platform `json:"permissions"`
	ModelsAllow []string         `json:"models_allow"`
	ModelsDeny  []string         `json:"models_deny"`
	Concurrency int              `json:"concurrency"`
	// Queue is null when the key follows the server's queue setting.
	Queue *bool `json:"queue"`
	// RateWindow and ActivateFor are spans as FormatDuration writes them
	// ("5m", "1h30m", "30d"), null when unset; they can be sent back as is.
	RateWindow      *string `json:"rate_window"`
	RateRequests    int64   `json:"rate_requests"`
	RateTokens      int64   `json:"rate_tokens"`
	RateCost        USD     `json:"rate_cost"`
	DailyCost       USD     `json:"daily_cost"`
	TotalCost       USD     `json:"total_cost"`
	WeeklyCost      USD     `json:"weekly_cost"`
	DailyOpusCost   USD     `json:"daily_opus_cost"`
	WeeklyResetDay  int     `json:"weekly_reset_day"` // 0 = Sunday … 6
	WeeklyResetHour int     `json:"weekly_reset_hour"`
	ActivateFor     *string `json:"activate_for"`
	// ActivatedAt is the first real use of a key with ActivateFor.
	ActivatedAt *time.Time `json:"activated_at"`
	// Account is the binding: "acc_…", "group:grp_…", or "" for the pool.
	Account         string                     `json:"account"`
	BindingFallback bool                       `json:"binding_fallback"`
	ServiceRates    map[store.Platform]float64 `json:"service_rates"`
}

// CreatedKey is the answer to creating a key: the view plus the key itself,
// which exists nowhere else afterwards (only its hash is stored).
type CreatedKey struct {
	KeyView
	Key string `json:"key"`
}

// KeyInput describes a key to create.
type KeyInput struct {
	Name      string
	Tags      []string
	Clients   []string   // empty: every client
	ExpiresAt *time.Time // nil: never expires (or Policy.ActivateFor)
	// Policy is applied to the default policy: no limits, weeks starting
	// on Monday at 00:00.
	Policy PolicyPatch
}

// KeyPatch changes a key; nil fields stay as they are. ExpiresAt is a
// pointer to a pointer so that "clear the expiry" (non-nil pointer to nil)
// differs from "leave it" (nil).
type KeyPatch struct {
	Name      *string
	Tags      *[]string
	Clients   *[]string
	Disabled  *bool
	ExpiresAt **time.Time
	Policy    PolicyPatch
}

func (s *Service) keyView(k store.Key) KeyView {
	p := k.Policy
	// The status counts an activated key's expiry too.
	exp := effectiveExpiry(k)
	withExp := k
	withExp.ExpiresAt = exp
	v := KeyView{
		ID:         k.ID,
		Name:       k.Name,
		Status:     withExp.Status(s.now()),
		Tags:       nonNil(k.Tags),
		Clients:    nonNil(k.Clients),
		Hint:       k.Hint,
		CreatedAt:  k.CreatedAt.UTC(),
		LastUsedAt: utc(k.LastUsedAt),
		ExpiresAt:  exp,
		DeletedAt:  utc(k.DeletedAt),

		Description:     p.Description,
		Permissions:     nonNil(p.Permissions),
		ModelsAllow:     nonNil(p.ModelsAllow),
		ModelsDeny:      nonNil(p.ModelsDeny),
		Concurrency:     p.Concurrency,
		Queue:           p.Queue,
		RateWindow:      span(p.RateWindow),
		RateRequests:    p.RateRequests,
		RateTokens:      p.RateTokens,
		RateCost:        usdOf(p.RateCost),
		DailyCost:       usdOf(p.DailyCost),
		TotalCost:       usdOf(p.TotalCost),
		WeeklyCost:      usdOf(p.WeeklyCost),
		DailyOpusCost:   usdOf(p.DailyOpusCost),
		WeeklyResetDay:  p.WeeklyResetDay,
		WeeklyResetHour: p.WeeklyResetHour,
		ActivateFor:     span(p.ActivateFor),
		ActivatedAt:     utc(k.ActivatedAt),
		Account:         p.Account,
		BindingFallback: p.BindingFallback,
		ServiceRates:    map[store.Platform]float64{},
	}
	maps.Copy(v.ServiceRates, p.ServiceRates)
	return v
}

// nonNil returns s, or an empty slice for nil, so views print [] not null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// span formats a set duration for a view; nil when unset.
func span(d time.Duration) *string {
	if d == 0 {
		return nil
	}
	s := FormatDuration(d)
	return &s
}

func checkName(name string) (string, error) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return "", invalid("name", "must not be empty")
	case utf8.RuneCountInString(name) > maxNameLen:
		return "", invalid("name", "longer than %d characters", maxNameLen)
	case strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return "", invalid("name", "must not contain control characters")
	}
	return name, nil
}

// checkTags trims, drops duplicates and keeps the order given.
func checkTags(tags []string) ([]string, error) {
	out := make([]string, 0, len(tags))
	seen := make(map[string]bool, len(tags))
	for _, t := range tags {
		t = strings.TrimSpace(t)
		switch {
		case t == "":
			return nil, invalid("tags", "a tag must not be empty")
		case utf8.RuneCountInString(t) > maxTagLen:
			return nil, invalid("tags", "tag %q is longer than %d characters", t, maxTagLen)
		case strings.ContainsFunc(t, func(r rune) bool { return r < ' ' || r == 0x7f || r == ',' }):
			return nil, invalid("tags", "tag %q must not contain commas or control characters", t)
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	if len(out) > maxTags {
		return nil, invalid("tags", "at most %d tags", maxTags)
	}
	return out, nil
}

// Clients a key can be restricted to. Only Claude Code is recognised on
// the Claude routes today; the others name the clients of pools still to
// come, so a key can be prepared for them.
var knownClients = []string{"claude_code", "gemini_cli", "codex_cli", "droid_cli"}

// checkClients trims, lower-cases and deduplicates a client list.
func checkClients(in []string) ([]string, error) {
	var out []string
	for _, c := range in {
		c = strings.ToLower(strings.TrimSpace(c))
		if c == "" {
			continue
		}
		if !slices.Contains(knownClients, c) {
			return nil, invalid("clients", "%q is not one of %s", c, strings.Join(knownClients, ", "))
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

func (s *Service) checkExpiry(t *time.Time) (*time.Time, error) {
	if t == nil {
		return nil, nil
	}
	if !t.After(s.now()) {
		return nil, invalid("expires_at", "%s is not in the future", t.UTC().Format(time.RFC3339))
	}
	return utc(t), nil
}

// CreateKey makes a new relay key and returns its view and the key itself.
// The key is shown once: only its SHA-256 is stored.
func (s *Service) CreateKey(ctx context.Context, in KeyInput) (KeyView, string, error) {
	name, err := checkName(in.Name)
	if err != nil {
		return KeyView{}, "", err
	}
	tags, err := checkTags(in.Tags)
	if err != nil {
		return KeyView{}, "", err
	}
	clients, err := checkClients(in.Clients)
	if err != nil {
		return KeyView{}, "", err
	}
	exp, err := s.checkExpiry(in.ExpiresAt)
	if err != nil {
		return KeyView{}, "", err
	}
	if exp != nil && in.Policy.ActivateFor != nil && *in.Policy.ActivateFor != 0 {
		return KeyView{}, "", errBothExpiries
	}
	plain := secret.NewRelayKey()
	k := store.Key{
		ID:        store.KeyID(newID("key_")),
		Name:      name,
		Hash:      secret.Hash(plain),
		Hint:      plain[len(plain)-4:],
		Tags:      tags,
		Clients:   clients,
		CreatedAt: s.now().UTC(),
		ExpiresAt: exp,
		Policy:    store.KeyPolicy{WeeklyResetDay: DefaultWeeklyResetDay},
	}
	if err := s.applyPolicy(ctx, &k, in.Policy); err != nil {
		return KeyView{}, "", err
	}
	if err := s.Store.CreateKey(ctx, k); err != nil {
		return KeyView{}, "", err
	}
	return s.keyView(k), plain, nil
}

// ListKeys returns keys in creation order; soft-deleted ones only when
// includeDeleted.
func (s *Service) ListKeys(ctx context.Context, includeDeleted bool) ([]KeyView, error) {
	ks, err := s.Store.ListKeys(ctx, includeDeleted)
	if err != nil {
		return nil, err
	}
	out := make([]KeyView, 0, len(ks))
	for _, k := range ks {
		out = append(out, s.keyView(k))
	}
	return out, nil
}

// GetKey returns one key, soft-deleted or not.
func (s *Service) GetKey(ctx context.Context, id store.KeyID) (KeyView, error) {
	k, err := s.Store.GetKey(ctx, id)
	if err != nil {
		return KeyView{}, err
	}
	return s.keyView(k), nil
}

// UpdateKey applies p to the key. A soft-deleted key can be changed too, so
// it can be fixed before it is restored.
func (s *Service) UpdateKey(ctx context.Context, id store.KeyID, p KeyPatch) (KeyView, error) {
	return s.changeKey(ctx, id, func(k *store.Key) error {
		if p.Name != nil {
			name, err := checkName(*p.Name)
			if err != nil {
				return err
			}
			k.Name = name
		}
		if p.Tags != nil {
			tags, err := checkTags(*p.Tags)
			if err != nil {
				return err
			}
			k.Tags = tags
		}
		if p.Clients != nil {
			clients, err := checkClients(*p.Clients)
			if err != nil {
				return err
			}
			k.Clients = clients
		}
		if p.Disabled != nil {
			k.Disabled = *p.Disabled
		}
		if p.ExpiresAt != nil {
			exp, err := s.checkExpiry(*p.ExpiresAt)
			if err != nil {
				return err
			}
			if exp != nil && p.Policy.ActivateFor != nil && *p.Policy.ActivateFor != 0 {
				return errBothExpiries
			}
			k.ExpiresAt = exp
			if exp != nil {
				// A fixed expiry replaces expiry after activation.
				k.Policy.ActivateFor = 0
			}
		}
		return s.applyPolicy(ctx, k, p.Policy)
	})
}

// errBothExpiries refuses a key that would expire both ways at once.
var errBothExpiries = invalid("activate_for", "a key expires either at a fixed time or a span after its first use, not both")

// RemoveKey soft-deletes a key: it stops working at once but stays listed
// under `--deleted` and can be restored, so a slip costs nothing.
func (s *Service) RemoveKey(ctx context.Context, id store.KeyID) error {
	_, err := s.changeKey(ctx, id, func(k *store.Key) error {
		if k.DeletedAt == nil {
			now := s.now().UTC()
			k.DeletedAt = &now
		}
		return nil
	})
	return err
}

// RestoreKey undoes RemoveKey.
func (s *Service) RestoreKey(ctx context.Context, id store.KeyID) error {
	_, err := s.changeKey(ctx, id, func(k *store.Key) error {
		k.DeletedAt = nil
		return nil
	})
	return err
}

// PurgeKey removes a key for good, whether or not it was removed first:
// purging is the explicit, irreversible act, so it needs no second step.
// Its usage records stay (they are the accounting) and show the key ID
// without a name.
func (s *Service) PurgeKey(ctx context.Context, id store.KeyID) error {
	if _, err := s.Store.GetKey(ctx, id); err != nil {
		return err
	}
	return s.Store.PurgeKey(ctx, id)
}

func (s *Service) changeKey(ctx context.Context, id store.KeyID, change func(*store.Key) error) (KeyView, error) {
	k, err := s.Store.GetKey(ctx, id)
	if err != nil {
		return KeyView{}, err
	}
	if err := change(&k); err != nil {
		return KeyView{}, err
	}
	if err := s.Store.UpdateKey(ctx, k); err != nil {
		return KeyView{}, err
	}
	return s.keyView(k), nil
}
