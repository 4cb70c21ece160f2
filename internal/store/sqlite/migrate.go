package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are applied in order; the schema version (PRAGMA user_version)
// is the number applied so far. Never edit a released migration: append a
// new one, so every existing file reaches the same schema.
var migrations = []string{
	// 1: the initial schema.
	`
CREATE TABLE meta (
	name  TEXT PRIMARY KEY,
	value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (name, value) VALUES ('change_version', 0);

-- Times are unix milliseconds (INTEGER); NULL means unset.
CREATE TABLE keys (
	id           TEXT PRIMARY KEY,
	name         TEXT NOT NULL,
	hash         TEXT NOT NULL UNIQUE,
	hint         TEXT NOT NULL,
	disabled     INTEGER NOT NULL DEFAULT 0,
	tags         TEXT NOT NULL DEFAULT '[]', -- JSON array of strings
	created_at   INTEGER NOT NULL,
	last_used_at INTEGER,
	expires_at   INTEGER,
	deleted_at   INTEGER
);
CREATE INDEX keys_created ON keys (created_at);

CREATE TABLE accounts (
	id              TEXT PRIMARY KEY,
	name            TEXT NOT NULL,
	platform        TEXT NOT NULL,
	type            TEXT NOT NULL,
	priority        INTEGER NOT NULL,
	disabled        INTEGER NOT NULL DEFAULT 0,
	unschedulable   INTEGER NOT NULL DEFAULT 0,
	base_url        TEXT NOT NULL DEFAULT '',
	sealed_secret   BLOB,
	sealed_proxy    BLOB,
	cooldown_until  INTEGER,
	cooldown_kind   TEXT NOT NULL DEFAULT '',
	cooldown_reason TEXT NOT NULL DEFAULT '',
	last_used_at    INTEGER,
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL
);
CREATE INDEX accounts_created ON accounts (created_at);

CREATE TABLE admin (
	id            INTEGER PRIMARY KEY CHECK (id = 1),
	username      TEXT NOT NULL,
	password_hash TEXT NOT NULL,
	updated_at    INTEGER NOT NULL
);

CREATE TABLE admin_sessions (
	token_hash TEXT PRIMARY KEY,
	username   TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX admin_sessions_expires ON admin_sessions (expires_at);

CREATE TABLE usage_records (
	id             INTEGER PRIMARY KEY,
	request_id     TEXT NOT NULL,
	attempt        INTEGER NOT NULL,
	key_id         TEXT NOT NULL,
	account_id     TEXT NOT NULL,
	model          TEXT NOT NULL,
	input          INTEGER NOT NULL,
	output         INTEGER NOT NULL,
	cache_write_5m INTEGER NOT NULL,
	cache_write_1h INTEGER NOT NULL,
	cache_read     INTEGER NOT NULL,
	cost_pico      INTEGER NOT NULL,
	stream         INTEGER NOT NULL,
	status         INTEGER NOT NULL,
	latency_ms     INTEGER NOT NULL,
	first_byte_ms  INTEGER NOT NULL,
	client_aborted INTEGER NOT NULL,
	created_at     INTEGER NOT NULL,
	UNIQUE (request_id, attempt)
);
-- Every index is paid on each insert, on the hot path. Per-account and
-- per-model figures come from usage_rollups; records are looked up by key
-- (a user's history) or by time.
CREATE INDEX usage_records_created ON usage_records (created_at);
CREATE INDEX usage_records_key ON usage_records (key_id, created_at);

-- period is the bucket start in unix ms: the UTC hour, or midnight of the
-- day in the store's zone. label is the same bucket for people reading the
-- file with the sqlite3 shell ("2025-01-02T15Z", "2025-01-02").
CREATE TABLE usage_rollups (
	granularity    TEXT NOT NULL,
	period         INTEGER NOT NULL,
	label          TEXT NOT NULL,
	key_id         TEXT NOT NULL,
	account_id     TEXT NOT NULL,
	model          TEXT NOT NULL,
	requests       INTEGER NOT NULL,
	input          INTEGER NOT NULL,
	output         INTEGER NOT NULL,
	cache_write_5m INTEGER NOT NULL,
	cache_write_1h INTEGER NOT NULL,
	cache_read     INTEGER NOT NULL,
	cost_pico      INTEGER NOT NULL,
	PRIMARY KEY (granularity, period, key_id, account_id, model)
) WITHOUT ROWID;

-- change_version: bumped on every change callers cache (keys, accounts,
-- admin). last_used_at is left out of the UPDATE OF lists on purpose:
-- touches happen on every request and must not flush caches.
CREATE TRIGGER keys_ins AFTER INSERT ON keys BEGIN
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;
CREATE TRIGGER keys_del AFTER DELETE ON keys BEGIN
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;
CREATE TRIGGER keys_upd AFTER UPDATE OF
	id, name, hash, hint, disabled, tags, created_at, expires_at, deleted_at
ON keys BEGIN
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;

CREATE TRIGGER accounts_ins AFTER INSERT ON accounts BEGIN
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;
CREATE TRIGGER accounts_del AFTER DELETE ON accounts BEGIN
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;
CREATE TRIGGER accounts_upd AFTER UPDATE OF
	id, name, platform, type, priority, disabled, unschedulable, base_url,
	sealed_secret, sealed_proxy, cooldown_until, cooldown_kind,
	cooldown_reason, created_at, updated_at
ON accounts BEGIN
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;

CREATE TRIGGER admin_ins AFTER INSERT ON admin BEGIN
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;
CREATE TRIGGER admin_del AFTER DELETE ON admin BEGIN
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;
CREATE TRIGGER admin_upd AFTER UPDATE ON admin BEGIN
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;
`,
	// 2: OAuth onboarding in progress, and leases. Neither has a trigger:
	// callers cache neither, so they must not bump change_version.
	`
CREATE TABLE oauth_pending (
	id         TEXT PRIMARY KEY,
	platform   TEXT NOT NULL,
	kind       TEXT NOT NULL,
	sealed     BLOB,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX oauth_pending_expires ON oauth_pending (expires_at);

CREATE TABLE locks (
	name       TEXT PRIMARY KEY,
	token      TEXT NOT NULL,
	expires_at INTEGER NOT NULL
) WITHOUT ROWID;
`,
	// 3: which clients a key admits; an account's plan, admin options and
	// last reported quota. The update triggers are recreated so that the
	// new columns bump change_version: every instance caches keys and
	// accounts, and routes on all of these.
	`
ALTER TABLE keys ADD COLUMN clients TEXT NOT NULL DEFAULT '[]'; -- JSON array of strings

ALTER TABLE accounts ADD COLUMN plan    TEXT NOT NULL DEFAULT '';
ALTER TABLE accounts ADD COLUMN options TEXT NOT NULL DEFAULT '{}'; -- JSON of store.AccountOptions
-- JSON of store.Quota with its times as unix ms, like every other time here.
ALTER TABLE accounts ADD COLUMN quota   TEXT NOT NULL DEFAULT '{}';

DROP TRIGGER keys_upd;
CREATE TRIGGER keys_upd AFTER UPDATE OF
	id, name, hash, hint, disabled, tags, clients, created_at, expires_at,
	deleted_at
ON keys BEGIN
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;

DROP TRIGGER accounts_upd;
CREATE TRIGGER accounts_upd AFTER UPDATE OF
	id, name, platform, type, priority, disabled, unschedulable, base_url,
	sealed_secret, sealed_proxy, cooldown_until, cooldown_kind,
	cooldown_reason, plan, options, created_at, updated_at
ON accounts BEGIN
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;
-- The relay records the quota the upstream reports as responses arrive,
-- mostly unchanged; rewriting the same quota must not flush every
-- instance's caches, so only a different value counts as a change.
CREATE TRIGGER accounts_quota_upd AFTER UPDATE OF quota ON accounts
WHEN OLD.quota IS NOT NEW.quota BEGIN
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;
`,
	// 4: key policies and first activation, account groups, and the rated
	// cost that key limits count. Every instance caches keys and groups and
	// enforces policies from them, so all of it bumps change_version.
	`
ALTER TABLE keys ADD COLUMN policy       TEXT NOT NULL DEFAULT '{}'; -- JSON of store.KeyPolicy
ALTER TABLE keys ADD COLUMN activated_at INTEGER;

DROP TRIGGER keys_upd;
CREATE TRIGGER keys_upd AFTER UPDATE OF
	id, name, hash, hint, disabled, tags, clients, policy, activated_at,
	created_at, expires_at, deleted_at
ON keys BEGIN
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;

CREATE TABLE groups (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL UNIQUE,
	platform   TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE INDEX groups_created ON groups (created_at);

-- position orders a group's members by when they were added. Memberships
-- are removed by the triggers below, not by foreign keys: a later
-- migration that rebuilds the accounts table (DROP + RENAME, inside the
-- migration's transaction, where foreign_keys cannot be switched off)
-- would otherwise cascade into every group.
CREATE TABLE group_members (
	group_id   TEXT NOT NULL,
	account_id TEXT NOT NULL,
	position   INTEGER NOT NULL,
	PRIMARY KEY (group_id, account_id)
) WITHOUT ROWID;
CREATE INDEX group_members_account ON group_members (account_id);

CREATE TRIGGER groups_ins AFTER INSERT ON groups BEGIN
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;
CREATE TRIGGER groups_del AFTER DELETE ON groups BEGIN
	DELETE FROM group_members WHERE group_id = OLD.id;
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;
CREATE TRIGGER groups_upd AFTER UPDATE ON groups BEGIN
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;
CREATE TRIGGER group_members_ins AFTER INSERT ON group_members BEGIN
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;
CREATE TRIGGER group_members_del AFTER DELETE ON group_members BEGIN
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;
CREATE TRIGGER group_members_upd AFTER UPDATE ON group_members BEGIN
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;
-- An account that is gone leaves every group it was in.
CREATE TRIGGER accounts_del_members AFTER DELETE ON accounts BEGIN
	DELETE FROM group_members WHERE account_id = OLD.id;
END;

ALTER TABLE usage_records ADD COLUMN rated_cost_pico INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_rollups ADD COLUMN rated_pico      INTEGER NOT NULL DEFAULT 0;
`,
	// 5: settings an admin changes at run time (notification channels,
	// console switches), each a named blob. They change what every
	// instance does, so they bump change_version.
	`
CREATE TABLE settings (
	name       TEXT PRIMARY KEY,
	value      BLOB NOT NULL,
	updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER settings_ins AFTER INSERT ON settings BEGIN
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;
CREATE TRIGGER settings_del AFTER DELETE ON settings BEGIN
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;
CREATE TRIGGER settings_upd AFTER UPDATE ON settings BEGIN
	UPDATE meta SET value = value + 1 WHERE name = 'change_version';
END;
`,
	// 6: the console pages usage records by account (each page reads
	// this index from its cursor on, as it reads usage_records_key for a
	// key), and SummarizeUsage totals whole days and hours from the
	// rollups, which records purged by retention leave behind: a key's
	// rollups are found without reading every key's.
	`
CREATE INDEX usage_records_account ON usage_records (account_id, created_at);
CREATE INDEX usage_rollups_key ON usage_rollups (key_id, granularity, period);
`,
	// 7: the same rollups summed two coarser ways, kept alongside by
	// InsertUsage: per account and model (no key), and per key (no
	// account, no model). Totals and trends that can be answered from
	// them (the console's usage page without a key, today's figures per
	// account and per key, every key's spend) read these: their rows
	// follow accounts × models or keys per period, where usage_rollups'
	// follow keys × accounts × models, and made such pages slower as the
	// log grew. Existing rollups are summed into them once.
	`
CREATE TABLE usage_account_rollups (
	granularity    TEXT NOT NULL,
	period         INTEGER NOT NULL,
	account_id     TEXT NOT NULL,
	model          TEXT NOT NULL,
	requests       INTEGER NOT NULL,
	input          INTEGER NOT NULL,
	output         INTEGER NOT NULL,
	cache_write_5m INTEGER NOT NULL,
	cache_write_1h INTEGER NOT NULL,
	cache_read     INTEGER NOT NULL,
	cost_pico      INTEGER NOT NULL,
	rated_pico     INTEGER NOT NULL,
	PRIMARY KEY (granularity, period, account_id, model)
) WITHOUT ROWID;
INSERT INTO usage_account_rollups
	SELECT granularity, period, account_id, model, SUM(requests), SUM(input), SUM(output),
		SUM(cache_write_5m), SUM(cache_write_1h), SUM(cache_read), SUM(cost_pico), SUM(rated_pico)
	FROM usage_rollups GROUP BY granularity, period, account_id, model;
CREATE TABLE usage_key_rollups (
	granularity    TEXT NOT NULL,
	period         INTEGER NOT NULL,
	key_id         TEXT NOT NULL,
	requests       INTEGER NOT NULL,
	input          INTEGER NOT NULL,
	output         INTEGER NOT NULL,
	cache_write_5m INTEGER NOT NULL,
	cache_write_1h INTEGER NOT NULL,
	cache_read     INTEGER NOT NULL,
	cost_pico      INTEGER NOT NULL,
	rated_pico     INTEGER NOT NULL,
	PRIMARY KEY (granularity, period, key_id)
) WITHOUT ROWID;
INSERT INTO usage_key_rollups
	SELECT granularity, period, key_id, SUM(requests), SUM(input), SUM(output),
		SUM(cache_write_5m), SUM(cache_write_1h), SUM(cache_read), SUM(cost_pico), SUM(rated_pico)
	FROM usage_rollups GROUP BY granularity, period, key_id;
`,
}

// schemaVersion is the version a fully migrated file has.
var schemaVersion = len(migrations)

// migrate brings the file to schemaVersion. The version is read inside the
// write transaction, so two processes opening a new file at once cannot
// both apply the same migration. A file with data gets a copy taken first
// (saveBeforeMigrating); if that copy cannot be made, nothing is migrated.
func (s *Store) migrate(ctx context.Context) error {
	if err := s.saveBeforeMigrating(ctx); err != nil {
		return err
	}
	for {
		done, err := s.migrateOne(ctx)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// migrateOne applies the next pending migration, if any, in its own
// transaction together with the new user_version.
func (s *Store) migrateOne(ctx context.Context) (done bool, err error) {
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		var v int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
			return err
		}
		switch {
		case v > schemaVersion:
			return fmt.Errorf("schema version %d is newer than this binary's %d; upgrade crs", v, schemaVersion)
		case v == schemaVersion:
			done = true
			return nil
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
		// PRAGMA takes no bound parameters; v+1 is our own integer.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("sqlite: migrate: %w", err)
	}
	return done, nil
}
