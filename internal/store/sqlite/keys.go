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

const keyColumns = `id, name, hash, hint, disabled, tags, created_at, last_used_at, expires_at, deleted_at,
	clients, policy, activated_at`

// CreateKey stores k; store.ErrConflict if its ID or Hash exists.
func (s *Store) CreateKey(ctx context.Context, k store.Key) error {
	tags, err := encodeList("tags", k.Tags)
	if err != nil {
		return err
	}
	clients, err := encodeList("clients", k.Clients)
	if err != nil {
		return err
	}
	policy, err := encodePolicy(k.Policy)
	if err != nil {
		return fmt.Errorf("sqlite: create key %q: %w", k.ID, err)
	}
	_, err = s.write.ExecContext(ctx, `INSERT INTO keys (`+keyColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		string(k.ID), k.Name, k.Hash, k.Hint, boolInt(k.Disabled), tags,
		ms(k.CreatedAt), msPtr(k.LastUsedAt), msPtr(k.ExpiresAt), msPtr(k.DeletedAt), clients,
		policy, msPtr(k.ActivatedAt))
	if isUnique(err) {
		return fmt.Errorf("sqlite: create key %q: %w", k.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("sqlite: create key %q: %w", k.ID, err)
	}
	return nil
}

// GetKey returns the key with id, soft-deleted or not.
func (s *Store) GetKey(ctx context.Context, id store.KeyID) (store.Key, error) {
	row := s.read.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM keys WHERE id = ?`, string(id))
	k, err := scanKey(row)
	if err != nil {
		return store.Key{}, fmt.Errorf("sqlite: get key %q: %w", id, err)
	}
	return k, nil
}

// KeyByHash finds a key by its hash, soft-deleted ones included.
func (s *Store) KeyByHash(ctx context.Context, hash string) (store.Key, error) {
	row := s.read.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM keys WHERE hash = ?`, hash)
	k, err := scanKey(row)
	if err != nil {
		// The hash stays out of the message: it identifies a credential.
		return store.Key{}, fmt.Errorf("sqlite: key by hash: %w", err)
	}
	return k, nil
}

// ListKeys returns keys ordered by creation (ties in insertion order);
// soft-deleted ones only when includeDeleted.
func (s *Store) ListKeys(ctx context.Context, includeDeleted bool) ([]store.Key, error) {
	q := `SELECT ` + keyColumns + ` FROM keys`
	if !includeDeleted {
		q += ` WHERE deleted_at IS NULL`
	}
	q += ` ORDER BY created_at, rowid`
	rows, err := s.read.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list keys: %w", err)
	}
	defer rows.Close()
	var out []store.Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list keys: %w", err)
	}
	return out, nil
}

// UpdateKey replaces the mutable fields (Name, Disabled, Tags, Clients,
// Policy, ExpiresAt, DeletedAt) of the key with k.ID; the others in k are
// ignored. activated_at is left out of the statement: the relay sets it on
// first use, and an admin edit built from a key read before that use must
// not take the activation back.
func (s *Store) UpdateKey(ctx context.Context, k store.Key) error {
	tags, err := encodeList("tags", k.Tags)
	if err != nil {
		return err
	}
	clients, err := encodeList("clients", k.Clients)
	if err != nil {
		return err
	}
	policy, err := encodePolicy(k.Policy)
	if err != nil {
		return fmt.Errorf("sqlite: update key %q: %w", k.ID, err)
	}
	res, err := s.write.ExecContext(ctx,
		`UPDATE keys SET name = ?, disabled = ?, tags = ?, clients = ?, policy = ?, expires_at = ?, deleted_at = ?
		WHERE id = ?`,
		k.Name, boolInt(k.Disabled), tags, clients, policy, msPtr(k.ExpiresAt), msPtr(k.DeletedAt), string(k.ID))
	if err != nil {
		return fmt.Errorf("sqlite: update key %q: %w", k.ID, err)
	}
	return rowsAffectedOrNotFound(res, fmt.Sprintf("update key %q", k.ID))
}

// ActivateKey sets activated_at to at unless it is already set, and
// returns the stored value. The UPDATE only matches a NULL activated_at,
// and the read-back shares its write transaction, so when several
// instances (or the CLI) activate one key at once, the first commit wins
// and everyone reads that one. A key already active is not written, so
// repeated activations leave ChangeVersion alone.
func (s *Store) ActivateKey(ctx context.Context, id store.KeyID, at time.Time) (time.Time, error) {
	var stored sql.NullInt64
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`UPDATE keys SET activated_at = ? WHERE id = ? AND activated_at IS NULL`, ms(at), string(id)); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, `SELECT activated_at FROM keys WHERE id = ?`, string(id)).Scan(&stored)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("sqlite: activate key %q: %w", id, err)
	}
	if !stored.Valid {
		// The transaction set it if it was unset and held the write lock
		// throughout, so this is a broken file, not a race to retry.
		return time.Time{}, fmt.Errorf("sqlite: activate key %q: activated_at still unset", id)
	}
	return fromMs(stored.Int64), nil
}

// PurgeKey removes the key for good. Its usage records stay: they are
// history, and name the key only by ID.
func (s *Store) PurgeKey(ctx context.Context, id store.KeyID) error {
	res, err := s.write.ExecContext(ctx, `DELETE FROM keys WHERE id = ?`, string(id))
	if err != nil {
		return fmt.Errorf("sqlite: purge key %q: %w", id, err)
	}
	return rowsAffectedOrNotFound(res, fmt.Sprintf("purge key %q", id))
}

// TouchKeys sets last_used_at for many keys in one transaction. Keys that
// no longer exist are skipped: a purge may race a batched touch.
func (s *Store) TouchKeys(ctx context.Context, used map[store.KeyID]time.Time) error {
	return touch(ctx, s, "keys", used)
}

// touch sets last_used_at of the rows of table (keys or accounts) in one
// transaction; rows that no longer exist are skipped.
func touch[ID ~string](ctx context.Context, s *Store, table string, used map[ID]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `UPDATE `+table+` SET last_used_at = ? WHERE id = ?`)
		if err != nil {
			return err
		}
		defer st.Close()
		for id, t := range used {
			if _, err := st.ExecContext(ctx, ms(t), string(id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: touch %s: %w", table, err)
	}
	return nil
}

// scanner is the Scan method shared by *sql.Row and *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// scanKey reads one row of keyColumns; a missing row is store.ErrNotFound.
func scanKey(r scanner) (store.Key, error) {
	var (
		k                          store.Key
		id                         string
		disabled                   int
		tags, clients              string
		created                    int64
		lastUsed, expires, deleted sql.NullInt64
		policy                     string
		activated                  sql.NullInt64
	)
	err := r.Scan(&id, &k.Name, &k.Hash, &k.Hint, &disabled, &tags, &created, &lastUsed, &expires, &deleted,
		&clients, &policy, &activated)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Key{}, store.ErrNotFound
	}
	if err != nil {
		return store.Key{}, err
	}
	k.ID = store.KeyID(id)
	k.Disabled = disabled != 0
	if k.Tags, err = decodeList(tags); err != nil {
		return store.Key{}, fmt.Errorf("key %q: tags: %w", id, err)
	}
	if k.Clients, err = decodeList(clients); err != nil {
		return store.Key{}, fmt.Errorf("key %q: clients: %w", id, err)
	}
	k.CreatedAt = fromMs(created)
	k.LastUsedAt = fromNullMs(lastUsed)
	k.ExpiresAt = fromNullMs(expires)
	k.DeletedAt = fromNullMs(deleted)
	if k.Policy, err = decodePolicy(policy); err != nil {
		return store.Key{}, fmt.Errorf("key %q: policy: %w", id, err)
	}
	k.ActivatedAt = fromNullMs(activated)
	return k, nil
}

// encodePolicy stores a key policy as JSON with store.KeyPolicy's own tags
// (durations as nanosecond numbers). The zero policy is "{}", the column
// default, since every field is omitted when unset.
func encodePolicy(p store.KeyPolicy) (string, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("policy: %w", err)
	}
	return string(b), nil
}

// decodePolicy reads the policy column back. Empty lists and an empty rate
// map read as nil, the zero value's form, so a policy round-trips equal
// whichever way its empty parts were written.
func decodePolicy(stored string) (store.KeyPolicy, error) {
	var p store.KeyPolicy
	if err := json.Unmarshal([]byte(stored), &p); err != nil {
		return store.KeyPolicy{}, err
	}
	if len(p.Permissions) == 0 {
		p.Permissions = nil
	}
	if len(p.ModelsAllow) == 0 {
		p.ModelsAllow = nil
	}
	if len(p.ModelsDeny) == 0 {
		p.ModelsDeny = nil
	}
	if len(p.ServiceRates) == 0 {
		p.ServiceRates = nil
	}
	return p, nil
}

// encodeList stores a string list (the column named what) as a JSON array;
// nil and empty both become "[]", the column default.
func encodeList(what string, list []string) (string, error) {
	if len(list) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(list)
	if err != nil {
		return "", fmt.Errorf("sqlite: %s: %w", what, err)
	}
	return string(b), nil
}

// decodeList reads a JSON array column back; an empty list reads as nil,
// so a stored list has one form whichever way it was written.
func decodeList(stored string) ([]string, error) {
	var list []string
	if err := json.Unmarshal([]byte(stored), &list); err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, nil
	}
	return list, nil
}
