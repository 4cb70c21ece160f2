package admin

import (
	"context"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/config"
	"github.com/crs-relay/crs/internal/netx"
	"github.com/crs-relay/crs/internal/provider/anthropic"
	"github.com/crs-relay/crs/internal/store"
)

// Account priorities: lower is tried first.
const (
	MinPriority     = 1
	MaxPriority     = 100
	DefaultPriority = 50
)

// maxConcurrency bounds a concurrency cap; more is a typo.
const maxConcurrency = 10000

// maxSecretLen bounds a pasted credential; real API keys are ~100 bytes.
const maxSecretLen = 8192

// AccountView is an upstream account as shown to users and scripts (`crs
// accounts list --json`, GET /admin/accounts). It never carries the
// credential; the proxy URL has its password masked.
type AccountView struct {
	ID             store.AccountID   `json:"id"`
	Name           string            `json:"name"`
	Platform       store.Platform    `json:"platform"`
	Type           store.AccountType `json:"type"`
	Priority       int               `json:"priority"`
	Status         string            `json:"status"` // active|cooling_down|rate_limited|blocked|credential_dead|disabled
	CooldownUntil  *time.Time        `json:"cooldown_until"`
	CooldownReason string            `json:"cooldown_reason"`
	Schedulable    bool              `json:"schedulable"`
	BaseURL        string            `json:"base_url"` // "" means the platform default
	Proxy          string            `json:"proxy"`    // redacted; "" means direct
	HasSecret      bool              `json:"has_secret"`
	// Plan is the subscription of an OAuth account as its profile said at
	// onboarding (max, pro, free), "" when unknown or not a subscription.
	Plan string `json:"plan"`
	// Window5h is the subscription's current 5-hour window as the upstream
	// last reported it; null when none is known or it has ended.
	Window5h *WindowView `json:"window_5h"`
	// FamilyLimits maps a model family under a rate limit to when the limit
	// ends; the account still serves the other families. Never null.
	FamilyLimits map[string]time.Time `json:"family_limits"`
	// Models is the account's model allow-list and mapping (requested →
	// sent; "" sends the name as requested); null serves every model.
	Models             map[string]string `json:"models"`
	AutoPauseOnWarning bool              `json:"auto_pause_on_warning"`
	SerialQueue        bool              `json:"serial_queue"`
	UnifiedUserAgent   bool              `json:"unified_user_agent"`
	InterceptWarmup    bool              `json:"intercept_warmup"`
	// MaxConcurrency caps the account's requests in flight (0: no cap);
	// DailyQuota ends an account's day once its real cost reaches it (0:
	// no quota).
	MaxConcurrency int        `json:"max_concurrency"`
	DailyQuota     USD        `json:"daily_quota"`
	LastUsedAt     *time.Time `json:"last_used_at"`
	CreatedAt      time.Time  `json:"created_at"`
}

// WindowView is a quota window.
type WindowView struct {
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Status string    `json:"status"` // allowed|allowed_warning|rejected
}

// AccountInput describes an account to add. Priority must be given
// (front ends fill in DefaultPriority), so a typed 0 is refused rather
// than silently becoming the default. BaseURL "" means the platform default, chosen at relay
// time (CLAUDE_API_URL), so changing that default moves every account that
// did not pin its own. Proxy "" means a direct connection.
type AccountInput struct {
	Platform string `json:"platform"`
	Type     string `json:"type"`
	Name     string `json:"name"`
	APIKey   string `json:"api_key"`
	BaseURL  string `json:"base_url"`
	Proxy    string `json:"proxy"`
	Priority int    `json:"priority"`
	// Options are set as by UpdateAccount (models, max concurrency, daily
	// quota, switches); nil fields keep their defaults.
	Options AccountPatch `json:"-"`
}

// AccountPatch changes an account; nil fields stay as they are. An empty
// BaseURL returns to the platform default and an empty Proxy to a direct
// connection; an empty APIKey is refused.
type AccountPatch struct {
	Name        *string
	BaseURL     *string
	Proxy       *string
	APIKey      *string
	Priority    *int
	Disabled    *bool
	Schedulable *bool
	// Models replaces the model allow-list and mapping; an empty map
	// serves every model again.
	Models             *map[string]string
	AutoPauseOnWarning *bool
	SerialQueue        *bool
	UnifiedUserAgent   *bool
	InterceptWarmup    *bool
	MaxConcurrency     *int
	DailyQuota         *USD
}

func (s *Service) accountView(a store.Account) AccountView {
	now := s.now()
	v := AccountView{
		ID:          a.ID,
		Name:        a.Name,
		Platform:    a.Platform,
		Type:        a.Type,
		Priority:    a.Priority,
		Status:      a.Status(now),
		Schedulable: !a.Unschedulable,
		BaseURL:     a.BaseURL,
		HasSecret:   len(a.SealedSecret) > 0,
		Plan:        a.Plan,
		LastUsedAt:  utc(a.LastUsedAt),
		CreatedAt:   a.CreatedAt.UTC(),

		FamilyLimits:       map[string]time.Time{},
		Models:             a.Options.Models,
		AutoPauseOnWarning: a.Options.AutoPauseOnWarning,
		SerialQueue:        a.Options.SerialQueue,
		UnifiedUserAgent:   a.Options.UnifiedUserAgent,
		InterceptWarmup:    a.Options.InterceptWarmup,
		MaxConcurrency:     a.Options.MaxConcurrency,
		DailyQuota:         usdOf(a.Options.DailyQuota),
	}
	if w := a.Quota.Window5h; !w.End.IsZero() && now.Before(w.End) {
		v.Window5h = &WindowView{Start: w.Start.UTC(), End: w.End.UTC(), Status: w.Status}
	}
	for fam, until := range a.Quota.FamilyLimits {
		if now.Before(until) {
			v.FamilyLimits[fam] = until.UTC()
		}
	}
	// A cooldown that has run out is history, not state: show it only
	// while it still keeps the account out of scheduling (also when the
	// account is disabled, so the admin sees what re-enabling will meet).
	if a.CooldownKind != store.CooldownNone && a.CooldownUntil != nil && now.Before(*a.CooldownUntil) {
		v.CooldownUntil = utc(a.CooldownUntil)
		v.CooldownReason = a.CooldownReason
	}
	if len(a.SealedProxy) > 0 {
		p, err := s.Box.Open(a.SealedProxy)
		if err != nil {
			// Listing must keep working when ENCRYPTION_KEY changed; the
			// relay will report the account as broken on use.
			v.Proxy = "(cannot decrypt: wrong ENCRYPTION_KEY?)"
		} else {
			v.Proxy = netx.RedactProxyURL(string(p))
		}
	}
	return v
}

func checkPlatformType(platform, typ string) (store.Platform, store.AccountType, error) {
	p := store.Platform(strings.TrimSpace(platform))
	t := store.AccountType(strings.TrimSpace(typ))
	switch p {
	case store.PlatformClaude, store.PlatformOpenAI, store.PlatformGemini, store.PlatformDroid:
	case "":
		return "", "", invalid("platform", "must not be empty (claude, openai, gemini or droid)")
	default:
		return "", "", invalid("platform", "%q is not one of claude, openai, gemini, droid", p)
	}
	switch t {
	case store.TypeAPIKey, store.TypeOAuth, store.TypeSetupToken:
	case "":
		return "", "", invalid("type", "must not be empty (api-key, oauth or setup-token)")
	default:
		return "", "", invalid("type", "%q is not one of api-key, oauth, setup-token", t)
	}
	if p == store.PlatformDroid {
		return "", "", invalid("platform", "droid accounts are not supported yet")
	}
	if t != store.TypeAPIKey {
		return "", "", invalid("type", "%s %s accounts are onboarded with crs accounts oauth start --platform %s, not added with a key", p, t, p)
	}
	return p, t, nil
}

func checkAPIKey(k string) (string, error) {
	k = strings.TrimSpace(k)
	switch {
	case k == "":
		return "", invalid("api_key", "must not be empty")
	case len(k) > maxSecretLen:
		return "", invalid("api_key", "longer than %d bytes", maxSecretLen)
	case strings.ContainsFunc(k, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		// A header value cannot carry these; catching it here beats a
		// confusing upstream 401 later.
		return "", invalid("api_key", "must not contain spaces or control characters")
	}
	return k, nil
}

// checkBaseURL validates an account's API root. A Claude root must not end
// in /v1: the relay appends /v1/messages. OpenAI-compatible roots may
// (https://api.openai.com/v1, https://openrouter.ai/api/v1): the relay keeps
// the version a root names and adds /v1 only when it names none.
func checkBaseURL(platform store.Platform, u string) (string, error) {
	u = strings.TrimSpace(u)
	if u == "" {
		return "", nil
	}
	if err := config.CheckBaseURL(u); err != nil {
		return "", invalid("base_url", "%s", err.Error())
	}
	u = strings.TrimRight(u, "/")
	if platform == store.PlatformClaude && (strings.HasSuffix(u, "/v1/messages") || strings.HasSuffix(u, "/v1")) {
		return "", invalid("base_url", "give the API root (such as https://api.anthropic.com); the relay appends /v1/messages")
	}
	if strings.HasSuffix(u, "/responses") || strings.Contains(u, ":generateContent") {
		return "", invalid("base_url", "give the API root, not an endpoint; the relay appends the path the client asked for")
	}
	return u, nil
}

func checkProxy(p string) (string, error) {
	if err := netx.ValidateProxyURL(p); err != nil {
		return "", invalid("proxy", "%s", err.Error())
	}
	return p, nil
}

// applyOptions validates and applies the per-account options of p to a.
func applyOptions(a *store.Account, p AccountPatch) error {
	if p.Models != nil {
		m, err := checkModels(*p.Models)
		if err != nil {
			return err
		}
		a.Options.Models = m
	}
	setBool(&a.Options.AutoPauseOnWarning, p.AutoPauseOnWarning)
	setBool(&a.Options.SerialQueue, p.SerialQueue)
	setBool(&a.Options.UnifiedUserAgent, p.UnifiedUserAgent)
	setBool(&a.Options.InterceptWarmup, p.InterceptWarmup)
	if p.MaxConcurrency != nil {
		if *p.MaxConcurrency < 0 || *p.MaxConcurrency > maxConcurrency {
			return invalid("max_concurrency", "want 0 (no cap) to %d, got %d", maxConcurrency, *p.MaxConcurrency)
		}
		a.Options.MaxConcurrency = *p.MaxConcurrency
	}
	if p.DailyQuota != nil {
		quota, err := limitPico("daily_quota", *p.DailyQuota)
		if err != nil {
			return err
		}
		if a.Type != store.TypeAPIKey && quota != 0 {
			// A subscription's quota is its plan's; a dollar cap on it
			// would only hide the real one.
			return invalid("daily_quota", "only API-key accounts have a daily quota in dollars; %s is a %s account", a.ID, a.Type)
		}
		a.Options.DailyQuota = quota
	}
	return nil
}

// checkModels validates a model allow-list and mapping with the rules of
// its command-line form (names, count); empty means every model.
func checkModels(m map[string]string) (map[string]string, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out, err := anthropic.ParseModels(anthropic.FormatModels(m))
	if err != nil {
		return nil, invalid("models", "%s", err.Error())
	}
	return out, nil
}

func setBool(dst *bool, v *bool) {
	if v != nil {
		*dst = *v
	}
}

func checkPriority(p int) (int, error) {
	if p < MinPriority || p > MaxPriority {
		return 0, invalid("priority", "want a whole number from %d to %d, got %d", MinPriority, MaxPriority, p)
	}
	return p, nil
}

// AddAccount validates in, seals its credential and proxy, and stores the
// account. Only Claude API-key accounts are accepted for now; the other
// platform/type pairs are refused with a clear "not supported yet".
func (s *Service) AddAccount(ctx context.Context, in AccountInput) (AccountView, error) {
	platform, typ, err := checkPlatformType(in.Platform, in.Type)
	if err != nil {
		return AccountView{}, err
	}
	name, err := checkName(in.Name)
	if err != nil {
		return AccountView{}, err
	}
	key, err := checkAPIKey(in.APIKey)
	if err != nil {
		return AccountView{}, err
	}
	base, err := checkBaseURL(platform, in.BaseURL)
	if err != nil {
		return AccountView{}, err
	}
	proxy, err := checkProxy(in.Proxy)
	if err != nil {
		return AccountView{}, err
	}
	prio, err := checkPriority(in.Priority)
	if err != nil {
		return AccountView{}, err
	}
	a := store.Account{
		Name:         name,
		Platform:     platform,
		Type:         typ,
		Priority:     prio,
		BaseURL:      base,
		SealedSecret: s.Box.Seal([]byte(key)),
		SealedProxy:  s.Box.Seal([]byte(proxy)),
	}
	if err := applyOptions(&a, in.Options); err != nil {
		return AccountView{}, err
	}
	return s.createAccount(ctx, a)
}

// createAccount gives a new account its id and times, stores it, and
// returns its view.
func (s *Service) createAccount(ctx context.Context, a store.Account) (AccountView, error) {
	now := s.now().UTC()
	a.ID = store.AccountID(newID("acc_"))
	a.CreatedAt, a.UpdatedAt = now, now
	if err := s.Store.CreateAccount(ctx, a); err != nil {
		return AccountView{}, err
	}
	return s.accountView(a), nil
}

// ListAccounts returns every account in creation order.
func (s *Service) ListAccounts(ctx context.Context) ([]AccountView, error) {
	as, err := s.Store.ListAccounts(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]AccountView, 0, len(as))
	for _, a := range as {
		out = append(out, s.accountView(a))
	}
	return out, nil
}

// GetAccount returns one account.
func (s *Service) GetAccount(ctx context.Context, id store.AccountID) (AccountView, error) {
	a, err := s.Store.GetAccount(ctx, id)
	if err != nil {
		return AccountView{}, err
	}
	return s.accountView(a), nil
}

// UpdateAccount applies p to the account. Every field is validated as in
// AddAccount before anything is written.
func (s *Service) UpdateAccount(ctx context.Context, id store.AccountID, p AccountPatch) (AccountView, error) {
	a, err := s.Store.GetAccount(ctx, id)
	if err != nil {
		return AccountView{}, err
	}
	if p.Name != nil {
		if a.Name, err = checkName(*p.Name); err != nil {
			return AccountView{}, err
		}
	}
	if p.BaseURL != nil {
		if a.BaseURL, err = checkBaseURL(a.Platform, *p.BaseURL); err != nil {
			return AccountView{}, err
		}
	}
	if p.Proxy != nil {
		proxy, err := checkProxy(*p.Proxy)
		if err != nil {
			return AccountView{}, err
		}
		a.SealedProxy = s.Box.Seal([]byte(proxy))
	}
	if p.APIKey != nil {
		if a.Type != store.TypeAPIKey {
			// An API key in place of a sealed OAuth credential would break
			// the account on its next request.
			return AccountView{}, invalid("api_key", "account %s is a %s account; onboard it again with crs accounts oauth instead", a.ID, a.Type)
		}
		key, err := checkAPIKey(*p.APIKey)
		if err != nil {
			return AccountView{}, err
		}
		a.SealedSecret = s.Box.Seal([]byte(key))
	}
	if p.Priority != nil {
		if a.Priority, err = checkPriority(*p.Priority); err != nil {
			return AccountView{}, err
		}
	}
	if p.Disabled != nil {
		a.Disabled = *p.Disabled
	}
	if p.Schedulable != nil {
		a.Unschedulable = !*p.Schedulable
	}
	if err := applyOptions(&a, p); err != nil {
		return AccountView{}, err
	}
	a.UpdatedAt = s.now().UTC()
	if err := s.Store.UpdateAccount(ctx, a); err != nil {
		return AccountView{}, err
	}
	return s.accountView(a), nil
}

// RemoveAccount deletes an account for good (accounts have no soft delete:
// the credential is the valuable part and should not linger). Its usage
// records stay and show the account ID without a name.
// A key bound to the account (removed keys included) must be rebound
// first: it would otherwise serve nothing (*InUseError).
func (s *Service) RemoveAccount(ctx context.Context, id store.AccountID) error {
	if _, err := s.Store.GetAccount(ctx, id); err != nil {
		return err
	}
	bound, err := s.boundKeys(ctx, string(id))
	if err != nil {
		return err
	}
	if len(bound) > 0 {
		return &InUseError{What: "account", ID: string(id), Keys: bound}
	}
	return s.Store.DeleteAccount(ctx, id)
}

// ResetCooldown clears an account's cooldown so the scheduler may pick it
// again at once, e.g. after the admin fixed its credential.
func (s *Service) ResetCooldown(ctx context.Context, id store.AccountID) error {
	if _, err := s.Store.GetAccount(ctx, id); err != nil {
		return err
	}
	return s.Store.SetCooldown(ctx, id, store.CooldownNone, time.Time{}, "")
}
