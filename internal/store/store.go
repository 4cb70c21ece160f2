package store

import (
	"context"
	"errors"
	"time"
)

// Store is the whole persistent state. The embedded backend (sqlite) and the
// shared backend (redis) implement it and pass the same suite in storetest;
// nothing outside internal/store knows which one runs.
type Store interface {
	Keys
	Accounts
	Usage
	Sticky
	AdminAuth
	OAuthSessions
	Locks
	Groups
	Settings

	// Backend names the implementation ("sqlite", "redis").
	Backend() string
	// Ping checks that the store answers.
	Ping(ctx context.Context) error
	// ChangeVersion returns a number that changes whenever keys, accounts
	// or the admin change, also when another process (the CLI) changed
	// them. Callers poll it to invalidate caches. Usage writes and
	// last-used touches do not change it.
	ChangeVersion(ctx context.Context) (uint64, error)
	// Changes returns a channel that receives soon after any process
	// changed what ChangeVersion covers, so caches reload at once instead
	// of at the next poll. Sends are coalesced and may be spurious; nil
	// when the backend cannot push (callers then rely on polling). Callers
	// must still poll: a missed message is possible.
	Changes() <-chan struct{}
	// Counters returns the limit counters of this backend: in this
	// process for the embedded store (one server per data directory), in
	// the shared store for the shared one.
	Counters() LimitCounters
	Close() error
}

// Keys stores relay keys.
type Keys interface {
	// CreateKey stores k; ErrConflict if its ID or Hash exists.
	CreateKey(ctx context.Context, k Key) error
	GetKey(ctx context.Context, id KeyID) (Key, error)
	// KeyByHash finds a key by its hash, soft-deleted ones included.
	KeyByHash(ctx context.Context, hash string) (Key, error)
	// ListKeys returns keys ordered by creation; soft-deleted ones only
	// when includeDeleted.
	ListKeys(ctx context.Context, includeDeleted bool) ([]Key, error)
	// UpdateKey replaces the mutable fields (Name, Disabled, Tags, Clients,
	// Policy, ExpiresAt, DeletedAt) of the key with k.ID. ActivatedAt is
	// left alone.
	UpdateKey(ctx context.Context, k Key) error
	// ActivateKey sets ActivatedAt to at unless it is already set, and
	// returns the stored value (the first activation wins, also across
	// instances).
	ActivateKey(ctx context.Context, id KeyID, at time.Time) (time.Time, error)
	// PurgeKey removes the key for good.
	PurgeKey(ctx context.Context, id KeyID) error
	// TouchKeys sets last_used_at for many keys at once.
	TouchKeys(ctx context.Context, used map[KeyID]time.Time) error
}

// Accounts stores upstream accounts.
type Accounts interface {
	CreateAccount(ctx context.Context, a Account) error
	GetAccount(ctx context.Context, id AccountID) (Account, error)
	// ListAccounts returns all accounts ordered by creation.
	ListAccounts(ctx context.Context) ([]Account, error)
	// UpdateAccount replaces the fields an admin edits: Name, Platform,
	// Type, Priority, Disabled, Unschedulable, BaseURL, SealedSecret,
	// SealedProxy, Plan, Options and UpdatedAt. Cooldowns, Quota and
	// LastUsedAt have their own setters and are left alone, so an edit never
	// wipes a cooldown the relay just set.
	UpdateAccount(ctx context.Context, a Account) error
	DeleteAccount(ctx context.Context, id AccountID) error
	// SetCooldown records (or, with kind CooldownNone, clears) a cooldown.
	SetCooldown(ctx context.Context, id AccountID, kind CooldownKind, until time.Time, reason string) error
	// TouchAccounts sets last_used_at for many accounts at once.
	TouchAccounts(ctx context.Context, used map[AccountID]time.Time) error
	// SetAccountSecret replaces only the sealed credential (and
	// UpdatedAt), so saving a rotated OAuth token never overwrites a
	// concurrent change to other fields. ErrNotFound if the account is gone.
	SetAccountSecret(ctx context.Context, id AccountID, sealed []byte) error
	// SetAccountQuota replaces only the Quota. It changes ChangeVersion, so
	// every instance routes around a limited model family.
	SetAccountQuota(ctx context.Context, id AccountID, q Quota) error
}

// Usage stores usage records and their rollups.
type Usage interface {
	// InsertUsage stores records in one transaction, skipping any whose
	// (RequestID, Attempt) is already stored, and adds each new one to its
	// hourly and daily rollups in the same transaction. It returns how
	// many were new.
	InsertUsage(ctx context.Context, recs []UsageRecord) (int, error)
	// ListUsage returns the records in f, newest first (CreatedAt
	// descending, then Seq descending), at most limit (limit <= 0: all).
	// It returns fewer than limit only when no more records are in f. A
	// filter on KeyID, AccountID and time alone reads an index from the
	// cursor on, so any page costs about the same however many records are
	// stored; a Model or Status filter is checked record by record and may
	// look at many records to fill a page: pages for people use ScanUsage.
	ListUsage(ctx context.Context, f UsageFilter, limit int) ([]UsageRecord, error)
	// ScanUsage is ListUsage with a bound on the work of one call, for
	// pages shown to people. Candidates are the records matching f's
	// KeyID, AccountID, From, To and Before, which every backend reads
	// from an index in the newest-first order; Model and Status are
	// checked on each candidate. A call looks at no more than scan
	// candidates (scan <= 0: DefaultUsageScan; a scan below limit is
	// raised to limit) and returns at most limit (> 0) matches, the first
	// ones in that order, with where to continue. So a page never scans a
	// million records; fewer than limit matches with a non-nil Next means
	// the budget ran out, and the caller may ask again from Next.
	ScanUsage(ctx context.Context, f UsageFilter, limit, scan int) (UsagePage, error)
	// SummarizeUsage totals records per key, per account and per model,
	// honouring f's KeyID, AccountID, Model, From and To; a Status or a
	// Before is ErrFilterUnsupported (the rollups keep no status). Whole
	// hours and days of the span are read from the rollups, so records
	// PurgeUsage removed still count there; only in the partial hours at
	// the span's ends are the stored records counted.
	SummarizeUsage(ctx context.Context, f UsageFilter) (UsageSummary, error)
	// ModelTotals is SummarizeUsage's Models alone, for the same filters
	// and with the same errors: f's totals per model, ordered by model.
	// Without a KeyID it reads rollups kept per account and model over all
	// keys, so its cost follows the periods, accounts and models in the
	// span. SummarizeUsage reads the same for its Accounts and Models, and
	// rollups per key for its Keys, but when an account or model narrows
	// the keys' totals only rollups per key, account and model can answer
	// them: pages that show what was spent, not who spent it, use this.
	ModelTotals(ctx context.Context, f UsageFilter) ([]UsageRow, error)
	// Trend returns f's totals per period of g: one row for each period
	// with Period in [f.From, f.To) that holds records of f's KeyID,
	// AccountID and Model, ordered by period, with those three fields as
	// f gives them. Periods count whole (a period starting inside the span
	// counts to its end); they are read from the rollups ModelTotals
	// reads. A Status or Before is ErrFilterUnsupported.
	Trend(ctx context.Context, g Granularity, f UsageFilter) ([]Rollup, error)
	// Rollups returns rollup rows of granularity g with Period in [from, to).
	Rollups(ctx context.Context, g Granularity, from, to time.Time) ([]Rollup, error)
	// PurgeUsage removes the records created before before and returns how
	// many it removed. Rollups are kept: they are the long-term totals. It
	// works in batches, each a short transaction (a short script on the
	// shared store), so relaying goes on meanwhile; on an error the
	// batches done stay done. A removed record's identity is forgotten:
	// inserting it again stores it again.
	PurgeUsage(ctx context.Context, before time.Time) (int, error)
}

// Sticky maps a conversation to the account that served it.
type Sticky interface {
	// GetSticky returns the account bound to session, if the binding
	// lives. When renew > 0 a live binding is extended to renew from now
	// in the same step, so a hit costs one call.
	GetSticky(ctx context.Context, session string, renew time.Duration) (AccountID, bool, error)
	// SetSticky binds session to id for ttl (renewing it).
	SetSticky(ctx context.Context, session string, id AccountID, ttl time.Duration) error
	DeleteSticky(ctx context.Context, session string) error
}

// AdminAuth stores the admin login and sessions.
type AdminAuth interface {
	// GetAdmin returns ErrNotFound before the first start created one.
	GetAdmin(ctx context.Context) (Admin, error)
	SetAdmin(ctx context.Context, a Admin) error
	CreateSession(ctx context.Context, s AdminSession) error
	// GetSession returns ErrNotFound for unknown or expired sessions.
	GetSession(ctx context.Context, tokenHash string) (AdminSession, error)
	DeleteSession(ctx context.Context, tokenHash string) error
}

// OAuthSessions keeps onboarding that was started and not yet finished. It
// lives in the store, not in memory, so any instance can finish what
// another started.
type OAuthSessions interface {
	// CreateOAuthPending stores p; ErrConflict if its ID exists.
	CreateOAuthPending(ctx context.Context, p OAuthPending) error
	// TakeOAuthPending returns the pending session and deletes it, so a
	// code is exchanged at most once. ErrNotFound when unknown or expired.
	TakeOAuthPending(ctx context.Context, id string) (OAuthPending, error)
}

// Groups stores account groups. Changes move ChangeVersion.
type Groups interface {
	// CreateGroup stores g; ErrConflict if its ID or name exists.
	CreateGroup(ctx context.Context, g Group) error
	GetGroup(ctx context.Context, id GroupID) (Group, error)
	// ListGroups returns groups ordered by creation.
	ListGroups(ctx context.Context) ([]Group, error)
	DeleteGroup(ctx context.Context, id GroupID) error
	// AddGroupMember adds the account (no-op if present); ErrNotFound if
	// the group or the account does not exist.
	AddGroupMember(ctx context.Context, id GroupID, acct AccountID) error
	RemoveGroupMember(ctx context.Context, id GroupID, acct AccountID) error
}

// Settings are named values an admin changes at run time (notification
// channels, console switches). A value is an opaque blob its owner encodes
// (and seals, when it holds secrets). Changes move ChangeVersion.
type Settings interface {
	// GetSetting returns the value of name; ErrNotFound when unset.
	GetSetting(ctx context.Context, name string) ([]byte, error)
	// SetSetting stores value under name; a nil value removes it.
	SetSetting(ctx context.Context, name string, value []byte) error
}

// LimitCounters are the hot numbers limits check: fixed windows, spend and
// in-flight slots. The embedded mode keeps them in memory (spend is
// re-read from usage records after a restart); the shared mode keeps them
// in Redis so every instance sees the same. Implementations are safe for
// concurrent use.
type LimitCounters interface {
	// Add adds delta to the counter name and returns the new value. A new
	// counter starts at 0 and is dropped at expires (zero: never).
	Add(ctx context.Context, name string, delta int64, expires time.Time) (int64, error)
	// Get returns the counter's value, 0 when it does not exist, and
	// whether it exists.
	Get(ctx context.Context, name string) (int64, bool, error)
	// Acquire takes one of limit slots of name for holder, until lease ends
	// (a crashed holder's slot frees itself); false when all are taken.
	Acquire(ctx context.Context, name, holder string, limit int, lease time.Duration) (bool, error)
	// Release frees holder's slot of name (no-op when it holds none).
	Release(ctx context.Context, name, holder string) error
	// InUse counts the live slots of name.
	InUse(ctx context.Context, name string) (int, error)
}

// Locks are short leases that serialise work across instances, such as one
// OAuth refresh per account at a time.
type Locks interface {
	// TryLock takes the lease name for ttl when it is free or expired, and
	// returns the token that owns it; ok is false when another holds it.
	TryLock(ctx context.Context, name string, ttl time.Duration) (token string, ok bool, err error)
	// Unlock releases the lease if token still owns it (a lease that
	// expired and was taken by another is left alone).
	Unlock(ctx context.Context, name, token string) error
	// RenewLock extends the lease to ttl from now if token still owns it,
	// and reports whether it did (false: the lease expired and is gone or
	// another took it).
	RenewLock(ctx context.Context, name, token string, ttl time.Duration) (bool, error)
}

// CounterOpKind says what a CounterOp does.
type CounterOpKind int

// Operations a batch can hold: LimitCounters' Add, Get and Acquire.
const (
	OpAdd CounterOpKind = iota + 1
	OpGet
	OpAcquire
)

// CounterOp is one LimitCounters operation of a batch: its inputs, and its
// results once the batch ran.
type CounterOp struct {
	Kind CounterOpKind
	Name string
	// Add's inputs.
	Delta   int64
	Expires time.Time
	// Acquire's inputs.
	Holder string
	Limit  int
	Lease  time.Duration

	// Value is Add's new value or Get's value; Exists is Get's second
	// result; Acquired is Acquire's. Err is this operation's error.
	Value    int64
	Exists   bool
	Acquired bool
	Err      error
}

// CounterBatcher is implemented by LimitCounters that can run several
// operations in one round trip (a Redis pipeline). Each operation is atomic
// on its own, as if called alone; the batch as a whole is not.
type CounterBatcher interface {
	// Batch runs ops in order and fills in their results. It returns an
	// error only when the batch could not run at all; an operation's own
	// failure is in its Err.
	Batch(ctx context.Context, ops []CounterOp) error
}

// RunCounterOps runs ops on c: in one batch when c is a CounterBatcher,
// else one call at a time. Each op's result and error are filled in.
func RunCounterOps(ctx context.Context, c LimitCounters, ops []CounterOp) error {
	if b, ok := c.(CounterBatcher); ok {
		return b.Batch(ctx, ops)
	}
	for i := range ops {
		op := &ops[i]
		switch op.Kind {
		case OpAdd:
			op.Value, op.Err = c.Add(ctx, op.Name, op.Delta, op.Expires)
		case OpGet:
			op.Value, op.Exists, op.Err = c.Get(ctx, op.Name)
		case OpAcquire:
			op.Acquired, op.Err = c.Acquire(ctx, op.Name, op.Holder, op.Limit, op.Lease)
		default:
			op.Err = errors.New("store: unknown counter operation")
		}
	}
	return nil
}
