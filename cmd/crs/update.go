package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/provider/anthropic"
	"github.com/crs-relay/crs/internal/store"
)

// accountOptionsSynopsis lists the per-account option flags of accounts
// add and accounts update.
const accountOptionsSynopsis = "[--models LIST] [--max-concurrency N] [--daily-quota USD] [--auto-pause-on-warning=BOOL] " +
	"[--serial-queue=BOOL] [--unified-user-agent=BOOL] [--intercept-warmup=BOOL]"

const accountsUpdateSynopsis = "ID [--name N] [--priority N] [--base-url URL] [--proxy URL] [--schedulable=BOOL] " +
	accountOptionsSynopsis + " [--json]"

// accountOptionFlags declares the per-account option flags on fs; the
// returned function reads those given into p (after fs was parsed).
func accountOptionFlags(fs *flag.FlagSet) func(p *admin.AccountPatch) error {
	models := fs.String("models", "", "model allow-list and mapping: a,b,from=to (a listed name covers its dated variants); empty serves every model")
	autoPause := fs.Bool("auto-pause-on-warning", false, "pause the account when its 5-hour window reaches allowed_warning, until it resets")
	serial := fs.Bool("serial-queue", false, "at most one user turn at a time on the account, with a minimum gap (USER_MESSAGE_QUEUE_DELAY)")
	unifiedUA := fs.Bool("unified-user-agent", false, "send every request with the newest Claude Code user agent seen")
	warmup := fs.Bool("intercept-warmup", false, "answer Claude Code's warmup and title requests locally")
	maxConc := fs.Int("max-concurrency", 0, "cap on the account's requests in flight; more go to another account (0: no cap)")
	dailyQuota := fs.String("daily-quota", "", "API-key accounts: stop using the account for the day once its cost reaches this many USD (0: no quota)")
	return func(p *admin.AccountPatch) error {
		set := func(flagName string, apply func()) {
			if isSet(fs, flagName) {
				apply()
			}
		}
		set("auto-pause-on-warning", func() { p.AutoPauseOnWarning = autoPause })
		set("serial-queue", func() { p.SerialQueue = serial })
		set("unified-user-agent", func() { p.UnifiedUserAgent = unifiedUA })
		set("intercept-warmup", func() { p.InterceptWarmup = warmup })
		set("max-concurrency", func() { p.MaxConcurrency = maxConc })
		if isSet(fs, "daily-quota") {
			q, err := parseUSDFlag("daily-quota", *dailyQuota)
			if err != nil {
				return err
			}
			p.DailyQuota = &q
		}
		if isSet(fs, "models") {
			m, err := anthropic.ParseModels(*models)
			if err != nil {
				return fmt.Errorf("--models: %s", err.Error())
			}
			p.Models = &m
		}
		return nil
	}
}

// accountsUpdate changes the given fields of one account; flags left out
// keep their value.
func accountsUpdate(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "accounts update", accountsUpdateSynopsis)
	name := fs.String("name", "", "new name")
	priority := fs.Int("priority", admin.DefaultPriority, "1–100, lower is tried first")
	baseURL := fs.String("base-url", "", "API root; empty returns to the platform default")
	proxy := fs.String("proxy", "", "outbound proxy URL; empty means a direct connection")
	schedulable := fs.Bool("schedulable", true, "false keeps the account out of scheduling while enabled")
	readOptions := accountOptionFlags(fs)
	asJSON := fs.Bool("json", false, "print the account as JSON")
	id, err := oneID(fs, "accounts update", "account", args)
	if err != nil {
		return err
	}
	var p admin.AccountPatch
	set := func(flagName string, apply func()) {
		if isSet(fs, flagName) {
			apply()
		}
	}
	set("name", func() { p.Name = name })
	set("priority", func() { p.Priority = priority })
	set("base-url", func() { p.BaseURL = baseURL })
	set("proxy", func() { p.Proxy = proxy })
	set("schedulable", func() { p.Schedulable = schedulable })
	if err := readOptions(&p); err != nil {
		return usageError{"accounts update: " + err.Error()}
	}
	if p == (admin.AccountPatch{}) {
		return usageError{"accounts update: nothing to change; give at least one flag (see crs accounts update -h)"}
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		v, err := e.Admin.UpdateAccount(ctx, store.AccountID(id), p)
		if err != nil {
			return fmt.Errorf("accounts update %s: %s", id, describe(err))
		}
		if *asJSON {
			return printJSON(c.stdout, v)
		}
		fmt.Fprintf(c.stdout, "account %s: updated\n", v.ID)
		return nil
	})
}

const keysUpdateSynopsis = "ID [--name N] [--tags a,b] [--clients LIST] [--expires RFC3339|30d|never] " + policyFlagsSynopsis + " [--json]"

// keysUpdate changes the given fields of one key; flags left out keep
// their value.
func keysUpdate(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "keys update", keysUpdateSynopsis)
	name := fs.String("name", "", "new name")
	tags := fs.String("tags", "", "comma-separated tags (replaces the old ones; empty clears them)")
	clients := fs.String("clients", "", "restrict the key to these clients: "+strings.Join(clientNames, ",")+"; empty allows every client")
	expires := fs.String("expires", "", "expiry: an RFC 3339 time, a span from now (30d, 12h), or never")
	pf := addPolicyFlags(fs, true)
	asJSON := fs.Bool("json", false, "print the key as JSON")
	id, err := oneID(fs, "keys update", "key", args)
	if err != nil {
		return err
	}
	var p admin.KeyPatch
	if isSet(fs, "name") {
		p.Name = name
	}
	if isSet(fs, "tags") {
		t := splitTags(*tags)
		p.Tags = &t
	}
	if isSet(fs, "clients") {
		cl := splitList(*clients)
		p.Clients = &cl
	}
	if isSet(fs, "expires") {
		exp, err := parseExpiryOrNever(*expires)
		if err != nil {
			return usageError{"keys update: --expires: " + err.Error()}
		}
		p.ExpiresAt = &exp
	}
	if p.Policy, err = pf.patch(fs); err != nil {
		return usageError{"keys update: " + err.Error()}
	}
	if p == (admin.KeyPatch{}) {
		return usageError{"keys update: nothing to change; give at least one flag (see crs keys update -h)"}
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		v, err := e.Admin.UpdateKey(ctx, store.KeyID(id), p)
		if err != nil {
			return fmt.Errorf("keys update %s: %s", id, describe(err))
		}
		if *asJSON {
			return printJSON(c.stdout, v)
		}
		fmt.Fprintf(c.stdout, "key %s: updated\n", v.ID)
		return nil
	})
}

// clientNames are the values --clients takes.
var clientNames = []string{"claude_code", "gemini_cli", "codex_cli", "droid_cli"}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// parseExpiryOrNever is parseExpiry, or nil for "never".
func parseExpiryOrNever(s string) (*time.Time, error) {
	if strings.EqualFold(strings.TrimSpace(s), "never") {
		return nil, nil
	}
	t, err := parseExpiry(strings.TrimSpace(s), time.Now())
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// parseUSDFlag reads a dollar amount flag.
func parseUSDFlag(name, v string) (admin.USD, error) {
	p, err := pricing.ParseUSD(v)
	if err != nil {
		return admin.USD{}, fmt.Errorf("--%s: %s", name, err.Error())
	}
	return admin.USD{Decimal: pricing.FromPico(p)}, nil
}
