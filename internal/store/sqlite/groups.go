package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/crs-relay/crs/internal/store"
)

// CreateGroup stores g with its Members in their order, in one transaction;
// store.ErrConflict if its ID or name exists, store.ErrNotFound (and
// nothing stored) if a member account does not exist. A member listed twice
// is stored once, at its first place.
func (s *Store) CreateGroup(ctx context.Context, g store.Group) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO groups (id, name, platform, created_at) VALUES (?, ?, ?, ?)`,
			string(g.ID), g.Name, string(g.Platform), ms(g.CreatedAt))
		if isUnique(err) {
			return store.ErrConflict
		}
		if err != nil {
			return err
		}
		for _, acct := range g.Members {
			if err := addMember(ctx, tx, g.ID, acct); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: create group %q: %w", g.ID, err)
	}
	return nil
}

// GetGroup returns the group with id and its members in the order they
// were added. The group and its members are read in one transaction, so a
// concurrent change is seen whole or not at all.
func (s *Store) GetGroup(ctx context.Context, id store.GroupID) (store.Group, error) {
	var g store.Group
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		g, err = scanGroup(tx.QueryRowContext(ctx,
			`SELECT id, name, platform, created_at FROM groups WHERE id = ?`, string(id)))
		if err != nil {
			return err
		}
		members, err := groupMembers(ctx, tx, `WHERE group_id = ?`, string(id))
		g.Members = members[g.ID]
		return err
	})
	if err != nil {
		return store.Group{}, fmt.Errorf("sqlite: get group %q: %w", id, err)
	}
	return g, nil
}

// ListGroups returns every group with its members, ordered by creation
// (ties in insertion order), all read in one transaction.
func (s *Store) ListGroups(ctx context.Context) ([]store.Group, error) {
	var out []store.Group
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx,
			`SELECT id, name, platform, created_at FROM groups ORDER BY created_at, rowid`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			g, err := scanGroup(rows)
			if err != nil {
				return err
			}
			out = append(out, g)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		members, err := groupMembers(ctx, tx, "")
		if err != nil {
			return err
		}
		for i := range out {
			out[i].Members = members[out[i].ID]
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: list groups: %w", err)
	}
	return out, nil
}

// DeleteGroup removes the group; the groups_del trigger removes its
// memberships in the same statement.
func (s *Store) DeleteGroup(ctx context.Context, id store.GroupID) error {
	res, err := s.write.ExecContext(ctx, `DELETE FROM groups WHERE id = ?`, string(id))
	if err != nil {
		return fmt.Errorf("sqlite: delete group %q: %w", id, err)
	}
	return rowsAffectedOrNotFound(res, fmt.Sprintf("delete group %q", id))
}

// AddGroupMember appends the account to the group's members, or does
// nothing if it is one already; store.ErrNotFound if the group or the
// account does not exist. The checks and the insert share one write
// transaction, so an account deleted at the same moment cannot be left
// behind as a member.
func (s *Store) AddGroupMember(ctx context.Context, id store.GroupID, acct store.AccountID) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if err := groupExists(ctx, tx, id); err != nil {
			return err
		}
		return addMember(ctx, tx, id, acct)
	})
	if err != nil {
		return fmt.Errorf("sqlite: add member %q to group %q: %w", acct, id, err)
	}
	return nil
}

// RemoveGroupMember takes the account out of the group; store.ErrNotFound
// if the group does not exist. Removing an account that is not a member
// does nothing, as adding one that is does nothing: the account may just
// have been deleted, which already removed it.
func (s *Store) RemoveGroupMember(ctx context.Context, id store.GroupID, acct store.AccountID) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if err := groupExists(ctx, tx, id); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM group_members WHERE group_id = ? AND account_id = ?`,
			string(id), string(acct))
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: remove member %q from group %q: %w", acct, id, err)
	}
	return nil
}

// addMember inserts one membership after the group's last member, unless
// the account is a member already; store.ErrNotFound if the account does
// not exist. The group must exist.
func addMember(ctx context.Context, tx *sql.Tx, id store.GroupID, acct store.AccountID) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM accounts WHERE id = ?`, string(acct)).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("account %q: %w", acct, store.ErrNotFound)
	}
	if err != nil {
		return err
	}
	// A position one past the group's highest keeps insertion order even
	// after members in the middle were removed.
	_, err = tx.ExecContext(ctx, `INSERT INTO group_members (group_id, account_id, position)
		SELECT ?, ?, COALESCE(MAX(position), 0) + 1 FROM group_members WHERE group_id = ?
		ON CONFLICT (group_id, account_id) DO NOTHING`,
		string(id), string(acct), string(id))
	return err
}

// groupExists returns store.ErrNotFound unless the group exists.
func groupExists(ctx context.Context, tx *sql.Tx, id store.GroupID) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM groups WHERE id = ?`, string(id)).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// groupMembers returns the members of the groups matched by where (a
// clause on group_members, empty for all), each group's in the order they
// were added.
func groupMembers(ctx context.Context, tx *sql.Tx, where string, args ...any) (map[store.GroupID][]store.AccountID, error) {
	rows, err := tx.QueryContext(ctx, `SELECT group_id, account_id FROM group_members `+where+
		` ORDER BY group_id, position`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[store.GroupID][]store.AccountID{}
	for rows.Next() {
		var id, acct string
		if err := rows.Scan(&id, &acct); err != nil {
			return nil, err
		}
		out[store.GroupID(id)] = append(out[store.GroupID(id)], store.AccountID(acct))
	}
	return out, rows.Err()
}

// scanGroup reads one group row without its members; a missing row is
// store.ErrNotFound.
func scanGroup(r scanner) (store.Group, error) {
	var (
		g            store.Group
		id, platform string
		created      int64
	)
	err := r.Scan(&id, &g.Name, &platform, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Group{}, store.ErrNotFound
	}
	if err != nil {
		return store.Group{}, err
	}
	g.ID = store.GroupID(id)
	g.Platform = store.Platform(platform)
	g.CreatedAt = fromMs(created)
	return g, nil
}
