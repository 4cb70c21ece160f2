package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/config"
	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store/sqlite"
)

// DBFile is the name of the SQLite database inside DATA_DIR.
const DBFile = "crs.db"

// env is what every command that touches state needs: the validated
// configuration, the open store, the credential box and the management
// service on top. `crs serve` builds on the same env, so the server and
// the CLI always agree on where state lives and how it is sealed.
type env struct {
	Config config.Config
	Store  *sqlite.Store
	Box    *secret.Box
	Admin  *admin.Service
	// Generated names the secrets (ENCRYPTION_KEY, JWT_SECRET) that this
	// call generated into DATA_DIR because neither the environment nor a
	// file had them.
	Generated []string
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
// overrides DATA_DIR), makes sure the secrets exist, and opens the store at
// DATA_DIR/crs.db. The caller closes the env.
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
	st, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, DBFile), sqlite.Options{Location: cfg.Location})
	if err != nil {
		return nil, err
	}
	return &env{
		Config:    cfg,
		Store:     st,
		Box:       box,
		Admin:     &admin.Service{Store: st, Box: box, OAuth: admin.OAuthDeps{Endpoints: cfg.ClaudeOAuth, OpenAI: cfg.OpenAIOAuth, Google: cfg.GoogleOAuth}},
		Generated: generated,
	}, nil
}

// Close closes the store.
func (e *env) Close() error { return e.Store.Close() }
