package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

const accountColumns = `id, name, platform, type, priority, disabled, unschedulable, base_url,
	sealed_secret, sealed_proxy, cooldown_until, cooldown_kind, cooldown_reason,
	last_used_at, created_at, updated_at, plan, options, quota`

// CreateAccount stores a; store.ErrConflict if its ID exists.
func (s *Store) CreateAccount(ctx context.Context, a store.Account) error {
	options, err := encodeOptions(a.Options)
	if err != nil {
		return fmt.Errorf("sqlite: create account %q: %w", a.ID, err)
	}
	quota, err := store.EncodeQuota(a.Quota)
	if err != nil {
		return fmt.Errorf("sqlite: create account %q: %w", a.ID, err)
	}
	_, err = s.write.ExecContext(ctx, `INSERT INTO accounts (`+accountColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		string(a.ID), a.Name, string(a.Platform), string(a.Type), a.Priority,
		boolInt(a.Disabled), boolInt(a.Unschedulable), a.BaseURL,
		blob(a.SealedSecret), blob(a.SealedProxy),
		msPtr(a.CooldownUntil), string(a.CooldownKind), a.CooldownReason,
		msPtr(a.LastUsedAt), ms(a.CreatedAt), ms(a.UpdatedAt),
		a.Plan, options, quota)
	if isUnique(err) {
		return fmt.Errorf("sqlite: create account %q: %w", a.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("sqlite: create account %q: %w", a.ID, err)
	}
	return nil
}

// GetAccount returns the account with id.
func (s *Store) GetAccount(ctx context.Context, id store.AccountID) (store.Account, error) {
	row := s.read.QueryRowContext(ctx, `SELECT `+accountColumns+` FROM accounts WHERE id = ?`, string(id))
	a, err := scanAccount(row)
	if err != nil {
		return store.Account{}, fmt.Errorf("sqlite: get account %q: %w", id, err)
	}
	return a, nil
}

// ListAccounts returns all accounts ordered by creation (ties in insertion
// order).
func (s *Store) ListAccounts(ctx context.Context) ([]store.Account, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+accountColumns+` FROM accounts ORDER BY created_at, rowid`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list accounts: %w", err)
	}
	defer rows.Close()
	var out []store.Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list accounts: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list accounts: %w", err)
	}
	return out, nil
}

// UpdateAccount replaces the fields an admin edits. The cooldown, quota and
// last_used_at columns are left out of the statement: the relay writes them
// while the admin edits, and an edit built from an account read a moment
// earlier must not put back a cooldown that has since been set or cleared.
func (s *Store) UpdateAccount(ctx context.Context, a store.Account) error {
	options, err := encodeOptions(a.Options)
	if err != nil {
		return fmt.Errorf("sqlite: update account %q: %w", a.ID, err)
	}
	res, err := s.write.ExecContext(ctx, `UPDATE accounts SET
		name = ?, platform = ?, type = ?, priority = ?, disabled = ?, unschedulable = ?,
		base_url = ?, sealed_secret = ?, sealed_proxy = ?, plan = ?, options = ?,
		updated_at = ?
		WHERE id = ?`,
		a.Name, string(a.Platform), string(a.Type), a.Priority,
		boolInt(a.Disabled), boolInt(a.Unschedulable), a.BaseURL,
		blob(a.SealedSecret), blob(a.SealedProxy), a.Plan, options,
		ms(a.UpdatedAt),
		string(a.ID))
	if err != nil {
		return fmt.Errorf("sqlite: update account %q: %w", a.ID, err)
	}
	return rowsAffectedOrNotFound(res, fmt.Sprintf("update account %q", a.ID))
}

// DeleteAccount removes the account. Its usage records stay as history.
func (s *Store) DeleteAccount(ctx context.Context, id store.AccountID) error {
	res, err := s.write.ExecContext(ctx, `DELETE FROM accounts WHERE id = ?`, string(id))
	if err != nil {
		return fmt.Errorf("sqlite: delete account %q: %w", id, err)
	}
	return rowsAffectedOrNotFound(res, fmt.Sprintf("delete account %q", id))
}

// SetCooldown records a cooldown, or with kind store.CooldownNone clears it
// (until and reason are then ignored). It bumps ChangeVersion, so every
// instance's scheduler sees the account rest.
func (s *Store) SetCooldown(ctx context.Context, id store.AccountID, kind store.CooldownKind, until time.Time, reason string) error {
	var untilV any = ms(until)
	if kind == store.CooldownNone {
		untilV, reason = nil, ""
	}
	res, err := s.write.ExecContext(ctx,
		`UPDATE accounts SET cooldown_until = ?, cooldown_kind = ?, cooldown_reason = ? WHERE id = ?`,
		untilV, string(kind), reason, string(id))
	if err != nil {
		return fmt.Errorf("sqlite: set cooldown %q: %w", id, err)
	}
	return rowsAffectedOrNotFound(res, fmt.Sprintf("set cooldown %q", id))
}

// SetAccountSecret replaces only sealed_secret and updated_at (the store's
// clock), so a refreshed OAuth token is saved without overwriting a
// concurrent edit of other fields. It bumps ChangeVersion (sealed_secret is
// in the accounts_upd trigger), so every instance reloads the credential.
func (s *Store) SetAccountSecret(ctx context.Context, id store.AccountID, sealed []byte) error {
	res, err := s.write.ExecContext(ctx,
		`UPDATE accounts SET sealed_secret = ?, updated_at = ? WHERE id = ?`,
		blob(sealed), ms(s.now()), string(id))
	if err != nil {
		return fmt.Errorf("sqlite: set account secret %q: %w", id, err)
	}
	return rowsAffectedOrNotFound(res, fmt.Sprintf("set account secret %q", id))
}

// TouchAccounts sets last_used_at for many accounts in one transaction.
// Accounts that no longer exist are skipped.
func (s *Store) TouchAccounts(ctx context.Context, used map[store.AccountID]time.Time) error {
	return touch(ctx, s, "accounts", used)
}

// scanAccount reads one row of accountColumns; a missing row is
// store.ErrNotFound.
func scanAccount(r scanner) (store.Account, error) {
	var (
		a                       store.Account
		id, platform, typ, kind string
		disabled, unsched       int
		cooldownUntil, lastUsed sql.NullInt64
		created, updated        int64
		options, quota          string
	)
	err := r.Scan(&id, &a.Name, &platform, &typ, &a.Priority, &disabled, &unsched, &a.BaseURL,
		&a.SealedSecret, &a.SealedProxy, &cooldownUntil, &kind, &a.CooldownReason,
		&lastUsed, &created, &updated, &a.Plan, &options, &quota)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Account{}, store.ErrNotFound
	}
	if err != nil {
		return store.Account{}, err
	}
	a.ID = store.AccountID(id)
	a.Platform = store.Platform(platform)
	a.Type = store.AccountType(typ)
	a.Disabled = disabled != 0
	a.Unschedulable = unsched != 0
	a.CooldownUntil = fromNullMs(cooldownUntil)
	a.CooldownKind = store.CooldownKind(kind)
	a.LastUsedAt = fromNullMs(lastUsed)
	a.CreatedAt = fromMs(created)
	a.UpdatedAt = fromMs(updated)
	if len(a.SealedSecret) == 0 {
		a.SealedSecret = nil
	}
	if len(a.SealedProxy) == 0 {
		a.SealedProxy = nil
	}
	if a.Options, err = decodeOptions(options); err != nil {
		return store.Account{}, fmt.Errorf("account %q: options: %w", id, err)
	}
	if a.Quota, err = store.DecodeQuota(quota); err != nil {
		return store.Account{}, fmt.Errorf("account %q: quota: %w", id, err)
	}
	return a, nil
}

// encodeOptions stores the admin's switches as JSON. The zero value is
// "{}", the column default, since every field is omitted when unset.
func encodeOptions(o store.AccountOptions) (string, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return "", fmt.Errorf("options: %w", err)
	}
	return string(b), nil
}

// decodeOptions reads the options column back. An empty model map reads as
// nil, the form the zero value has, so options round-trip equal.
func decodeOptions(stored string) (store.AccountOptions, error) {
	var o store.AccountOptions
	if err := json.Unmarshal([]byte(stored), &o); err != nil {
		return store.AccountOptions{}, err
	}
	if len(o.Models) == 0 {
		o.Models = nil
	}
	return o, nil
}

// blob stores an empty byte slice as NULL, so "no proxy" has one form.
func blob(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}
