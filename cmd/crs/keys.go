package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/store"
)

const keysCreateSynopsis = "--name NAME [--tags a,b] [--clients LIST] [--expires RFC3339|30d] [--json]"

func keysCreate(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "keys create", keysCreateSynopsis)
	name := fs.String("name", "", "who or what the key is for (required)")
	tags := fs.String("tags", "", "comma-separated tags")
	clients := fs.String("clients", "", "restrict the key to these clients: "+strings.Join(clientNames, ",")+" (default: every client)")
	expires := fs.String("expires", "", "expiry: an RFC 3339 time (2030-01-02T15:04:05Z) or a span from now (30d, 12h)")
	asJSON := fs.Bool("json", false, "print JSON: the key view plus \"key\"")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("keys create: unexpected argument %q", pos[0])}
	}
	if strings.TrimSpace(*name) == "" {
		return usageError{"keys create: --name is required"}
	}
	in := admin.KeyInput{Name: *name, Tags: splitTags(*tags), Clients: splitList(*clients)}
	if *expires != "" {
		t, err := parseExpiry(*expires, time.Now())
		if err != nil {
			return usageError{"keys create: --expires: " + err.Error()}
		}
		in.ExpiresAt = &t
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		v, key, err := e.Admin.CreateKey(ctx, in)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(c.stdout, admin.CreatedKey{KeyView: v, Key: key})
		}
		fmt.Fprintf(c.stdout, "Created key %s (%s):\n\n  %s\n\nCopy it now: it will not be shown again (only its hash is stored).\n", v.ID, v.Name, key)
		return nil
	})
}

func splitTags(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// parseExpiry reads an RFC 3339 time, a number of days ("30d"), or a Go
// duration ("12h", "90m") counted from now.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err == nil && n > 0 && n <= 36500 {
			return now.AddDate(0, 0, n), nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(d), nil
	}
	return time.Time{}, fmt.Errorf("want an RFC 3339 time such as 2030-01-02T15:04:05Z or a span such as 30d or 12h, got %q", s)
}

func keysList(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "keys list", "[--deleted] [--json]")
	deleted := fs.Bool("deleted", false, "include soft-deleted keys")
	asJSON := fs.Bool("json", false, "print a JSON array")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("keys list: unexpected argument %q", pos[0])}
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		ks, err := e.Admin.ListKeys(ctx, *deleted)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(c.stdout, ks)
		}
		if len(ks) == 0 {
			fmt.Fprintln(c.stdout, "No keys yet. Create one with: crs keys create --name NAME")
			return nil
		}
		tw := table(c.stdout)
		fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tKEY\tTAGS\tCREATED\tLAST USED\tEXPIRES")
		for _, k := range ks {
			fmt.Fprintf(tw, "%s\t%s\t%s\tcr_…%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Status, k.Hint,
				orDash(strings.Join(k.Tags, ",")), when(&k.CreatedAt), when(k.LastUsedAt), when(k.ExpiresAt))
		}
		return tw.Flush()
	})
}

// keysSet returns the command that applies action to one key.
func keysSet(action string) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		fs, dataDir := newFlags(c, "keys "+action, "ID")
		id, err := oneID(fs, "keys "+action, "key", args)
		if err != nil {
			return err
		}
		return c.withEnv(ctx, *dataDir, func(e *env) error {
			s := e.Admin
			kid := store.KeyID(id)
			var err error
			switch action {
			case "disable", "enable":
				disabled := action == "disable"
				_, err = s.UpdateKey(ctx, kid, admin.KeyPatch{Disabled: &disabled})
			case "remove":
				err = s.RemoveKey(ctx, kid)
			case "restore":
				err = s.RestoreKey(ctx, kid)
			case "purge":
				err = s.PurgeKey(ctx, kid)
			}
			if err != nil {
				return fmt.Errorf("keys %s %s: %s", action, id, describe(err))
			}
			fmt.Fprintf(c.stdout, "key %s: %s\n", id, pastTense(action))
			return nil
		})
	}
}

// oneID parses a command that takes exactly one ID.
func oneID(fs *flag.FlagSet, name, what string, args []string) (string, error) {
	pos, err := parse(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 || strings.TrimSpace(pos[0]) == "" {
		return "", usageError{fmt.Sprintf("%s: want exactly one %s ID, got %d arguments", name, what, len(pos))}
	}
	return pos[0], nil
}

func pastTense(action string) string {
	switch action {
	case "disable", "enable", "remove", "restore", "purge":
		return action + "d"
	case "reset":
		return "cooldown cleared"
	}
	return action + " done"
}

// ---- output helpers ----

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// when prints a time for humans, in the local zone to the minute; "-" for
// none.
func when(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
