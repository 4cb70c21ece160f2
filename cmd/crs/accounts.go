package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/store"
)

// maxStdinSecret bounds what `--api-key -` reads.
const maxStdinSecret = 64 << 10

const accountsAddSynopsis = "--platform claude --type api-key --name NAME --api-key SECRET|- [--base-url URL] [--priority N] [--proxy URL] " +
	accountOptionsSynopsis + " [--json]"

func accountsAdd(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "accounts add", accountsAddSynopsis)
	platform := fs.String("platform", "", "claude, openai, gemini or droid (required; only claude for now)")
	typ := fs.String("type", "", "api-key, oauth or setup-token (required; only api-key for now)")
	name := fs.String("name", "", "a name to recognise the account by (required)")
	apiKey := fs.String("api-key", "", "the upstream API key, or - to read it from stdin (required)")
	baseURL := fs.String("base-url", "", "API root the relay appends /v1/messages to (default: CLAUDE_API_URL, https://api.anthropic.com)")
	priority := fs.Int("priority", admin.DefaultPriority, "1–100, lower is tried first")
	proxy := fs.String("proxy", "", "outbound proxy: http://, https:// or socks5://[user:pass@]host:port")
	readOptions := accountOptionFlags(fs)
	asJSON := fs.Bool("json", false, "print the account as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("accounts add: unexpected argument %q", pos[0])}
	}
	var opts admin.AccountPatch
	if err := readOptions(&opts); err != nil {
		return usageError{"accounts add: " + err.Error()}
	}
	for _, req := range []struct{ flag, val string }{
		{"platform", *platform}, {"type", *typ}, {"name", *name}, {"api-key", *apiKey},
	} {
		if strings.TrimSpace(req.val) == "" {
			return usageError{"accounts add: --" + req.flag + " is required"}
		}
	}
	secret := *apiKey
	if secret == "-" {
		b, err := io.ReadAll(io.LimitReader(c.stdin, maxStdinSecret+1))
		if err != nil {
			return fmt.Errorf("accounts add: reading --api-key from stdin: %w", err)
		}
		if len(b) > maxStdinSecret {
			return fmt.Errorf("accounts add: --api-key from stdin: more than %d bytes", maxStdinSecret)
		}
		secret = strings.TrimSpace(string(b))
		if secret == "" {
			return usageError{"accounts add: --api-key -: stdin was empty"}
		}
	}
	in := admin.AccountInput{
		Platform: *platform, Type: *typ, Name: *name, APIKey: secret,
		BaseURL: *baseURL, Proxy: *proxy, Priority: *priority, Options: opts,
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		v, err := e.Admin.AddAccount(ctx, in)
		if err != nil {
			return fmt.Errorf("accounts add: %s", describe(err))
		}
		if *asJSON {
			return printJSON(c.stdout, v)
		}
		fmt.Fprintf(c.stdout, "Added account %s (%s, %s %s, priority %d).\n", v.ID, v.Name, v.Platform, v.Type, v.Priority)
		return nil
	})
}

func accountsList(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "accounts list", "[--json]")
	asJSON := fs.Bool("json", false, "print a JSON array")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("accounts list: unexpected argument %q", pos[0])}
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		as, err := e.Admin.ListAccounts(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(c.stdout, as)
		}
		if len(as) == 0 {
			fmt.Fprintln(c.stdout, "No accounts yet. Add one with: crs accounts add --platform claude --type api-key --name NAME --api-key -")
			return nil
		}
		tw := table(c.stdout)
		fmt.Fprintln(tw, "ID\tNAME\tPLATFORM\tTYPE\tPLAN\tPRIORITY\tSTATUS\tCOOLDOWN UNTIL\t5H WINDOW\tSCHEDULABLE\tBASE URL\tPROXY\tLAST USED")
		for _, a := range as {
			status := a.Status
			if a.CooldownReason != "" {
				status += " (" + a.CooldownReason + ")"
			}
			for _, fam := range slices.Sorted(maps.Keys(a.FamilyLimits)) {
				status += fmt.Sprintf("; %s limited until %s", fam, when(ptr(a.FamilyLimits[fam])))
			}
			window := "-"
			if w := a.Window5h; w != nil {
				window = fmt.Sprintf("%s, resets %s", w.Status, when(&w.End))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Name, a.Platform, a.Type, orDash(a.Plan), a.Priority,
				status, when(a.CooldownUntil), window, yesNo(a.Schedulable), orDash(a.BaseURL), orDash(a.Proxy), when(a.LastUsedAt))
		}
		return tw.Flush()
	})
}

// accountsSet returns the command that applies action to one account.
func accountsSet(action string) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		fs, dataDir := newFlags(c, "accounts "+action, "ID")
		id, err := oneID(fs, "accounts "+action, "account", args)
		if err != nil {
			return err
		}
		return c.withEnv(ctx, *dataDir, func(e *env) error {
			s := e.Admin
			aid := store.AccountID(id)
			var err error
			switch action {
			case "disable", "enable":
				disabled := action == "disable"
				_, err = s.UpdateAccount(ctx, aid, admin.AccountPatch{Disabled: &disabled})
			case "remove":
				err = s.RemoveAccount(ctx, aid)
			case "reset":
				err = s.ResetCooldown(ctx, aid)
			}
			if err != nil {
				return fmt.Errorf("accounts %s %s: %s", action, id, describe(err))
			}
			fmt.Fprintf(c.stdout, "account %s: %s\n", id, pastTense(action))
			return nil
		})
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func ptr[T any](v T) *T { return &v }
