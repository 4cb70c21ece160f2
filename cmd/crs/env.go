package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/config"
	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/backend"
)

// DBFile is the name of the SQLite database inside DATA_DIR.
const DBFile = backend.DBFile

// env is what every command that touches state needs: the validated
// configuration, the open store, the credential box and the management
// service on top. `crs serve` builds on the same env, so the server and
// the CLI always agree on where state lives and how it is sealed.
type env struct {
	Config config.Config
	Store  store.Store
	Box    *secret.Box
	Admin  *admin.Service
	// Generated names the secrets (ENCRYPTION_KEY, JWT_SECRET) that this
	// call generated into DATA_DIR because neither the environment nor a
	// file had them.
	Generated []string
	// KeyWarning is set when the embedded store's credentials were sealed
	// with another ENCRYPTION_KEY (a restore without encryption.key):
	// relay keys work, accounts' credentials cannot be opened.
	KeyWarning string
}

// withDataDir is getenv with DATA_DIR overridden by the --data-dir flag,
// when one was given.
func withDataDir(getenv func(string) string, dataDirFlag string) func(string) string {
	if dataDirFlag == "" {
		return getenv
	}
	return func(k string) string {
		if k == "DATA_DIR" {
			return dataDirFlag
		}
		return getenv(k)
	}
}

// openEnv loads the configuration through getenv (dataDirFlag, when set,
// overrides DATA_DIR), makes sure the secrets exist, and opens the store:
// DATA_DIR/crs.db, or the shared Redis in shared mode. The caller closes
// the env.
func openEnv(ctx context.Context, dataDirFlag string, getenv func(string) string) (*env, error) {
	cfg, err := config.Load(withDataDir(getenv, dataDirFlag))
	if err != nil {
		return nil, err
	}
	generated, err := cfg.EnsureSecrets(secret.RandomHex)
	if err != nil {
		return nil, err
	}
	box, err := secret.NewBox(cfg.EncryptionKey)
	if err != nil {
		return nil, fmt.Errorf("ENCRYPTION_KEY: %w", err)
	}
	st, err := backend.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	keyWarning, err := checkKey(ctx, st, box, cfg.Shared())
	if err != nil {
		st.Close()
		return nil, err
	}
	return &env{
		Config:     cfg,
		Store:      st,
		Box:        box,
		Admin:      &admin.Service{Store: st, Box: box, OAuth: admin.OAuthDeps{Endpoints: cfg.ClaudeOAuth, OpenAI: cfg.OpenAIOAuth, Google: cfg.GoogleOAuth}},
		Generated:  generated,
		KeyWarning: keyWarning,
	}, nil
}

// Close closes the store.
func (e *env) Close() error { return e.Store.Close() }

// keyCheckSetting holds a value sealed with the ENCRYPTION_KEY the store was
// first used with.
const keyCheckSetting = "crs.key_check"

// checkKey compares ENCRYPTION_KEY with the key the store's credentials are
// sealed with (the first use records a check). In shared mode a mismatch is
// refused: one instance started with another key would save credentials no
// other instance can read. In embedded mode it is a warning: relay keys are
// hashes and keep working, and the admin re-adds the accounts or puts the
// old key back.
func checkKey(ctx context.Context, st store.Store, box *secret.Box, strict bool) (warning string, err error) {
	sealed, err := st.GetSetting(ctx, keyCheckSetting)
	if errors.Is(err, store.ErrNotFound) {
		return "", st.SetSetting(ctx, keyCheckSetting, box.Seal([]byte("crs")))
	}
	if err != nil {
		return "", err
	}
	if _, err := box.Open(sealed); err == nil {
		return "", nil
	}
	if strict {
		return "", errors.New("ENCRYPTION_KEY is not the key this shared store's credentials are sealed with; every instance must use the same one")
	}
	return "ENCRYPTION_KEY is not the key the stored account credentials were sealed with: relay keys work, but accounts cannot be used until the old key is back or they are added again", nil
}
