// Package store defines the persistent state of crs and the interfaces its
// backends implement. It imports nothing of ours: the types here are plain
// data, and every package above it speaks them.
package store

import (
	"errors"
	"time"
)

// ErrNotFound is returned when a key, account or session does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a unique value (a key hash, a name) is taken.
var ErrConflict = errors.New("conflict")

// KeyID identifies a relay key. IDs are opaque strings.
type KeyID string

// AccountID identifies an upstream account. IDs are opaque strings.
type AccountID string

// Platform names an upstream family.
type Platform string

// Platforms known to crs.
const (
	PlatformClaude Platform = "claude"
	PlatformOpenAI Platform = "openai"
	PlatformGemini Platform = "gemini"
	PlatformDroid  Platform = "droid"
)

// AccountType says how an account authenticates upstream.
type AccountType string

// Account types.
const (
	TypeAPIKey     AccountType = "api-key"
	TypeOAuth      AccountType = "oauth"
	TypeSetupToken AccountType = "setup-token"
)

// Key is a relay key (cr_…). Only the SHA-256 of the key is stored.
type Key struct {
	ID         KeyID
	Name       string
	Hash       string // hex SHA-256 of the whole key string
	Hint       string // last 4 characters of the key, for display
	Disabled   bool
	Tags       []string
	CreatedAt  time.Time
	LastUsedAt *time.Time
	ExpiresAt  *time.Time
	DeletedAt  *time.Time // soft delete; purge removes the row
	// Clients restricts which client programs may use the key ("claude_code",
	// "gemini_cli", "codex_cli", "droid_cli"); empty allows every client.
	Clients []string
	// Policy holds the key's limits and restrictions.
	Policy KeyPolicy
	// ActivatedAt is when a key with Policy.ActivateFor was first used for
	// real; its expiry is ActivatedAt + ActivateFor. Only ActivateKey sets it.
	ActivatedAt *time.Time
}

// KeyPolicy is what a key may do and how much. Zero values mean "no
// limit" / "everything", so the zero policy is an unrestricted key. Money
// is in picodollars (1e-12 USD), like every cost in the store.
type KeyPolicy struct {
	Description string `json:"description,omitempty"`
	// Permissions lists the pools the key may use; empty means all.
	Permissions []Platform `json:"permissions,omitempty"`
	// ModelsAllow, when set, lists the only models the key may ask for;
	// ModelsDeny lists models it may not. Allow applies first, then deny.
	// Vendor prefixes are ignored and a name covers its dated variants.
	ModelsAllow []string `json:"models_allow,omitempty"`
	ModelsDeny  []string `json:"models_deny,omitempty"`
	// Concurrency bounds the key's requests in flight; 0 is unlimited.
	Concurrency int `json:"concurrency,omitempty"`
	// Queue, when set, overrides the global choice of queueing requests
	// over the concurrency limit instead of refusing them.
	Queue *bool `json:"queue,omitempty"`
	// A rate window of RateWindow starts with the first request after the
	// previous one ended; within it at most RateRequests requests, RateTokens
	// tokens (all classes) and RateCost (rated) may be used. Zero = no limit.
	RateWindow   time.Duration `json:"rate_window,omitempty"`
	RateRequests int64         `json:"rate_requests,omitempty"`
	RateTokens   int64         `json:"rate_tokens,omitempty"`
	RateCost     int64         `json:"rate_cost,omitempty"`
	// Cost limits (rated cost): per day (the store's zone), all time, per
	// week (from WeeklyResetDay/Hour), and per day on Opus models only.
	DailyCost     int64 `json:"daily_cost,omitempty"`
	TotalCost     int64 `json:"total_cost,omitempty"`
	WeeklyCost    int64 `json:"weekly_cost,omitempty"`
	DailyOpusCost int64 `json:"daily_opus_cost,omitempty"`
	// WeeklyResetDay is the weekday the week starts (0 = Sunday … 6; the
	// default 1 is Monday, stored as 1) at WeeklyResetHour (0–23).
	WeeklyResetDay  int `json:"weekly_reset_day,omitempty"`
	WeeklyResetHour int `json:"weekly_reset_hour,omitempty"`
	// ActivateFor, when set, makes the key expire this long after its first
	// real use instead of at a fixed ExpiresAt.
	ActivateFor time.Duration `json:"activate_for,omitempty"`
	// Account binds the key to one account ("acc_…") or a group
	// ("group:grp_…"); empty uses the shared pool. BindingFallback lets
	// requests go to the pool when the binding cannot serve.
	Account         string `json:"account,omitempty"`
	BindingFallback bool   `json:"binding_fallback,omitempty"`
	// ServiceRates multiply the real cost per platform into the rated cost
	// that limits count; a missing platform is 1.
	ServiceRates map[Platform]float64 `json:"service_rates,omitempty"`
}

// GroupID identifies an account group.
type GroupID string

// Group is a named set of accounts of one platform that keys can bind to.
type Group struct {
	ID        GroupID
	Name      string
	Platform  Platform
	Members   []AccountID // in the order they were added
	CreatedAt time.Time
}

// Key statuses as shown to users.
const (
	KeyActive   = "active"
	KeyDisabled = "disabled"
	KeyExpired  = "expired"
	KeyDeleted  = "deleted"
)

// Status reports the key's state at now.
func (k Key) Status(now time.Time) string {
	switch {
	case k.DeletedAt != nil:
		return KeyDeleted
	case k.Disabled:
		return KeyDisabled
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		return KeyExpired
	}
	return KeyActive
}

// CooldownKind says why an account is resting; it decides the status shown.
type CooldownKind string

// Cooldown kinds. The empty kind means no cooldown.
const (
	CooldownNone           CooldownKind = ""
	CooldownTransient      CooldownKind = "cooling_down"    // 5xx, 529, timeouts
	CooldownRateLimited    CooldownKind = "rate_limited"    // 429 with a reset
	CooldownCredentialDead CooldownKind = "credential_dead" // 401/403
	CooldownBlocked        CooldownKind = "blocked"         // organization disabled
)

// Account statuses as shown to users.
const (
	AccountActive   = "active"
	AccountDisabled = "disabled"
)

// Account is an upstream account. Secrets are sealed (encrypted) by the
// caller before they reach the store; the store never sees plaintext.
type Account struct {
	ID             AccountID
	Name           string
	Platform       Platform
	Type           AccountType
	Priority       int // 1–100, lower first
	Disabled       bool
	Unschedulable  bool   // kept out of scheduling while still enabled
	BaseURL        string // API root; empty means the platform default
	SealedSecret   []byte // sealed credential (API key, or OAuth JSON)
	SealedProxy    []byte // sealed proxy URL; empty means direct
	CooldownUntil  *time.Time
	CooldownKind   CooldownKind
	CooldownReason string
	// Plan is a subscription account's plan ("max", "pro", "free"; "" when
	// unknown or not a subscription). Routing reads it: no Opus on free.
	Plan string
	// Options are the admin's per-account switches.
	Options AccountOptions
	// Quota is what the upstream last said about the account's limits. Only
	// SetAccountQuota writes it.
	Quota      Quota
	LastUsedAt *time.Time
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// AccountOptions are an admin's per-account switches. The zero value is
// the default: every model, no pausing, no queue, clients' own user agents,
// nothing answered locally.
type AccountOptions struct {
	// Models limits the models the account serves and maps them: a request
	// for a listed model (or a dated variant of it) is sent upstream as the
	// mapped name, or as requested when the mapped name is "". Empty means
	// every model, sent as requested.
	Models map[string]string `json:"models,omitempty"`
	// AutoPauseOnWarning rests the account when its 5-hour window reaches
	// allowed_warning, until the window resets.
	AutoPauseOnWarning bool `json:"auto_pause_on_warning,omitempty"`
	// SerialQueue lets at most one user turn at a time reach the account,
	// with a minimum gap between turns.
	SerialQueue bool `json:"serial_queue,omitempty"`
	// UnifiedUserAgent sends every request of the account with one user
	// agent: the newest real Claude Code one seen.
	UnifiedUserAgent bool `json:"unified_user_agent,omitempty"`
	// InterceptWarmup answers Claude Code's warmup and title requests
	// locally instead of spending the account's quota on them.
	InterceptWarmup bool `json:"intercept_warmup,omitempty"`
	// MaxConcurrency bounds the account's requests in flight; requests
	// over it go to another account or wait. 0 is unlimited.
	MaxConcurrency int `json:"max_concurrency,omitempty"`
	// DailyQuota (picodollars of real cost per day in the store's zone)
	// takes an API-key account out of scheduling once reached, until the
	// next day. 0 is unlimited.
	DailyQuota int64 `json:"daily_quota,omitempty"`
}

// Window statuses, as the upstream's anthropic-ratelimit-unified-5h-status
// reports them.
const (
	WindowAllowed  = "allowed"
	WindowWarning  = "allowed_warning"
	WindowRejected = "rejected"
)

// Window is one quota window of a subscription account.
type Window struct {
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Status string    `json:"status"` // WindowAllowed, WindowWarning, WindowRejected
}

// Quota is the upstream's latest word on an account's limits.
type Quota struct {
	// Window5h is the current 5-hour window; zero when never reported.
	Window5h Window `json:"window_5h"`
	// FamilyLimits maps a model family ("opus", "sonnet", "haiku") to the
	// time its rate limit ends. A limited family is not routed to the
	// account; the others still are.
	FamilyLimits map[string]time.Time `json:"family_limits,omitempty"`
}

// FamilyLimited reports whether family is rate limited at now, and until when.
func (q Quota) FamilyLimited(family string, now time.Time) (time.Time, bool) {
	t, ok := q.FamilyLimits[family]
	return t, ok && now.Before(t)
}

// Status reports the account's state at now: active, disabled, or the
// cooldown kind while a cooldown runs.
func (a Account) Status(now time.Time) string {
	if a.Disabled {
		return AccountDisabled
	}
	if a.CooldownKind != CooldownNone && a.CooldownUntil != nil && now.Before(*a.CooldownUntil) {
		return string(a.CooldownKind)
	}
	return AccountActive
}

// Available reports whether the scheduler may pick the account at now.
func (a Account) Available(now time.Time) bool {
	return a.Status(now) == AccountActive && !a.Unschedulable
}

// UsageRecord is one upstream response that reported usage. (RequestID,
// Attempt) is unique: inserting the same pair twice stores it once.
type UsageRecord struct {
	// Seq is assigned by the store when the record is inserted: unique
	// among stored records and increasing in insertion order, so it orders
	// records of the same millisecond. ListUsage and ScanUsage set it;
	// InsertUsage ignores it.
	Seq          int64
	RequestID    string
	Attempt      int
	KeyID        KeyID
	AccountID    AccountID
	Model        string
	Input        int64
	Output       int64
	CacheWrite5m int64
	CacheWrite1h int64
	CacheRead    int64
	CostPico     int64 // cost in 1e-12 USD: exact integer money
	// RatedCostPico is CostPico times the key's service rate for the
	// platform: what the key's cost limits count.
	RatedCostPico int64
	Stream        bool
	Status        int   // HTTP status the upstream answered with
	LatencyMs     int64 // request start to last byte
	FirstByteMs   int64 // request start to first upstream event
	ClientAborted bool  // the client went away before the end
	CreatedAt     time.Time
}

// Counters are summed token and cost figures.
type Counters struct {
	Requests     int64
	Input        int64
	Output       int64
	CacheWrite5m int64
	CacheWrite1h int64
	CacheRead    int64
	CostPico     int64
	RatedPico    int64
}

// Merge adds the figures of o to c.
func (c *Counters) Merge(o Counters) {
	c.Requests += o.Requests
	c.Input += o.Input
	c.Output += o.Output
	c.CacheWrite5m += o.CacheWrite5m
	c.CacheWrite1h += o.CacheWrite1h
	c.CacheRead += o.CacheRead
	c.CostPico += o.CostPico
	c.RatedPico += o.RatedPico
}

// Add adds one record's figures to c.
func (c *Counters) Add(r UsageRecord) {
	c.Requests++
	c.Input += r.Input
	c.Output += r.Output
	c.CacheWrite5m += r.CacheWrite5m
	c.CacheWrite1h += r.CacheWrite1h
	c.CacheRead += r.CacheRead
	c.CostPico += r.CostPico
	c.RatedPico += r.RatedCostPico
}

// UsageFilter narrows a usage query. Zero fields do not filter.
type UsageFilter struct {
	KeyID     KeyID
	AccountID AccountID
	Model     string    // exact model name
	Status    int       // exact HTTP status
	From, To  time.Time // [From, To) on the record time; zero = unbounded
	// Before, when set, keeps only the records that come after the cursor
	// in the newest-first order of ListUsage: created earlier, or in the
	// same millisecond with a smaller Seq. A page's last record, or a
	// ScanUsage Next, is the cursor of the following page. The cursor's
	// record need not exist any more (purged) nor be in the filter.
	Before *UsageCursor
}

// UsageCursor is a position in the newest-first order of usage records:
// the record time (milliseconds count) and the record's Seq.
type UsageCursor struct {
	CreatedAt time.Time
	Seq       int64
}

// Cursor is the position of r, for UsageFilter.Before.
func (r UsageRecord) Cursor() *UsageCursor {
	return &UsageCursor{CreatedAt: r.CreatedAt, Seq: r.Seq}
}

// UsagePage is what one ScanUsage call found.
type UsagePage struct {
	// Records are the matches found, newest first.
	Records []UsageRecord
	// Next is where the following call continues (pass it as
	// UsageFilter.Before): the last record looked at, so no record of
	// the filter lies between the last of Records and Next. Nil only when
	// the filter has no record after Records.
	Next *UsageCursor
}

// DefaultUsageScan is the scan budget of ScanUsage when the caller gives
// none: enough for a page of 50 when 1 record in 100 matches, and little
// enough that a call takes 5 ms (embedded) to 20 ms (shared store, in
// script calls of 1000) at most on 2 cores (docs/benchmarks.md).
const DefaultUsageScan = 5000

// ErrFilterUnsupported is returned by SummarizeUsage for a filter it
// cannot apply.
var ErrFilterUnsupported = errors.New("filter not supported")

// UsageRow is a Counters total for one key, account or model.
type UsageRow struct {
	KeyID     KeyID
	AccountID AccountID
	Model     string
	Counters
}

// UsageSummary groups totals three ways.
type UsageSummary struct {
	Keys     []UsageRow
	Accounts []UsageRow
	Models   []UsageRow
}

// Granularity selects hourly or daily rollups.
type Granularity string

// Rollup granularities.
const (
	Hourly Granularity = "hour"
	Daily  Granularity = "day"
)

// Rollup is the total for one (period, key, account, model). Period is the
// bucket start: an hour in UTC, or midnight of a day in the store's zone.
type Rollup struct {
	Period    time.Time
	KeyID     KeyID
	AccountID AccountID
	Model     string
	Counters
}

// Admin is the single admin login.
type Admin struct {
	Username     string
	PasswordHash string // bcrypt
	UpdatedAt    time.Time
}

// AdminSession is a logged-in admin. Only a hash of the token is stored.
type AdminSession struct {
	TokenHash string
	Username  string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// OAuthPending is an OAuth onboarding between its start (authorize URL
// shown) and its finish (code pasted back).
type OAuthPending struct {
	ID       string
	Platform Platform
	Kind     string // "oauth" or "setup-token"
	// Sealed holds the PKCE verifier, state and proxy, sealed by the caller.
	Sealed    []byte
	CreatedAt time.Time
	ExpiresAt time.Time
}
