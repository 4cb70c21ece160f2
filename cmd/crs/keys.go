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

// policyFlagsSynopsis lists the policy flags keys create and keys update
// share.
const policyFlagsSynopsis = "[--description TEXT] [--permissions LIST] [--models-allow LIST] [--models-deny LIST] " +
	"[--concurrency N] [--queue[=BOOL|default]] [--rate-window SPAN] [--rate-requests N] [--rate-tokens N] [--rate-cost USD] " +
	"[--daily-cost USD] [--total-cost USD] [--weekly-cost USD] [--daily-opus-cost USD] [--weekly-reset-day DAY] " +
	"[--weekly-reset-hour H] [--activate-for SPAN] [--account ID|group:ID] [--account-fallback[=BOOL]] " +
	"[--service-rates claude=1.5,…]"

const keysCreateSynopsis = "--name NAME [--tags a,b] [--clients LIST] [--expires RFC3339|30d] " + policyFlagsSynopsis + " [--json]"

func keysCreate(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "keys create", keysCreateSynopsis)
	name := fs.String("name", "", "who or what the key is for (required)")
	tags := fs.String("tags", "", "comma-separated tags")
	clients := fs.String("clients", "", "restrict the key to these clients: "+strings.Join(clientNames, ",")+" (default: every client)")
	expires := fs.String("expires", "", "expiry: an RFC 3339 time (2030-01-02T15:04:05Z) or a span from now (30d, 12h)")
	pf := addPolicyFlags(fs, false)
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
	if in.Policy, err = pf.patch(fs); err != nil {
		return usageError{"keys create: " + err.Error()}
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		v, key, err := e.Admin.CreateKey(ctx, in)
		if err != nil {
			return fmt.Errorf("keys create: %s", describe(err))
		}
		if *asJSON {
			return printJSON(c.stdout, admin.CreatedKey{KeyView: v, Key: key})
		}
		fmt.Fprintf(c.stdout, "Created key %s (%s):\n\n  %s\n\nCopy it now: it will not be shown again (only its hash is stored).\n", v.ID, v.Name, key)
		return nil
	})
}

// policyFlags holds the key policy flags of keys create and keys update.
// Only the flags given on the command line become part of the patch, so
// an update changes exactly what was typed.
type policyFlags struct {
	description, permissions, modelsAllow, modelsDeny *string
	concurrency                                       *int
	queue                                             queueFlag
	rateWindow                                        *string
	rateRequests, rateTokens                          *int64
	rateCost, dailyCost, totalCost, weeklyCost        *string
	dailyOpusCost                                     *string
	weeklyResetDay                                    *string
	weeklyResetHour                                   *int
	activateFor, account                              *string
	accountFallback                                   *bool
	serviceRates                                      *string
}

// addPolicyFlags defines the policy flags on fs; update words the help for
// changing a key (empty values clear).
func addPolicyFlags(fs *flag.FlagSet, update bool) *policyFlags {
	onUpdate := func(s string) string {
		if update {
			return s
		}
		return ""
	}
	pf := &policyFlags{}
	pf.description = fs.String("description", "", "a note on the key, up to 500 characters")
	pf.permissions = fs.String("permissions", "", "pools the key may use: claude,openai,gemini,droid (default: all)"+onUpdate("; empty allows all"))
	pf.modelsAllow = fs.String("models-allow", "", "the only models the key may use; a name covers its dated variants, a trailing * every model starting with the rest"+onUpdate("; empty allows all"))
	pf.modelsDeny = fs.String("models-deny", "", "models the key may not use (applied after --models-allow)"+onUpdate("; empty denies none"))
	pf.concurrency = fs.Int("concurrency", 0, "most requests in flight at once (0: no limit)")
	fs.Var(&pf.queue, "queue", "queue requests over --concurrency instead of refusing them: true, false, or default for the server's setting")
	pf.rateWindow = fs.String("rate-window", "", "length of the rate window, 1m to 30d (5m, 1h, 1d; 0 removes the window and its limits); needs a --rate-* limit")
	pf.rateRequests = fs.Int64("rate-requests", 0, "most requests per rate window (0: no limit)")
	pf.rateTokens = fs.Int64("rate-tokens", 0, "most tokens per rate window, every class counted (0: no limit)")
	pf.rateCost = fs.String("rate-cost", "", "most rated cost per rate window, in USD (0: no limit)")
	pf.dailyCost = fs.String("daily-cost", "", "most rated cost per day, in USD (0: no limit)")
	pf.totalCost = fs.String("total-cost", "", "most rated cost ever, in USD (0: no limit)")
	pf.weeklyCost = fs.String("weekly-cost", "", "most rated cost on Claude models per week, in USD (0: no limit)")
	pf.dailyOpusCost = fs.String("daily-opus-cost", "", "most rated cost on Opus models per day, in USD (0: no limit)")
	pf.weeklyResetDay = fs.String("weekly-reset-day", "", "day the week of --weekly-cost starts: mon…sun or 0 (Sunday) to 6 (default mon)")
	pf.weeklyResetHour = fs.Int("weekly-reset-hour", 0, "hour the week starts, 0–23 in TIMEZONE (default 0)")
	pf.activateFor = fs.String("activate-for", "", "expire this long after the first real use (30d, 12h) instead of at --expires"+onUpdate("; 0 or never removes it"))
	pf.account = fs.String("account", "", "bind the key to an account (acc_…) or a group (group:grp_…)"+onUpdate("; empty returns it to the shared pool"))
	pf.accountFallback = fs.Bool("account-fallback", false, "let a bound key use the shared pool when its binding cannot serve")
	pf.serviceRates = fs.String("service-rates", "", "cost multipliers per platform that limits count: claude=1.5,openai=1 (above 0, at most 100)"+onUpdate("; empty counts real cost"))
	return pf
}

// patch builds the policy patch from the flags given. Errors name the flag
// and are the command line's (exit 2); the service checks the rest.
func (pf *policyFlags) patch(fs *flag.FlagSet) (admin.PolicyPatch, error) {
	var p admin.PolicyPatch
	list := func(v *string) *[]string {
		l := splitList(*v)
		return &l
	}
	if isSet(fs, "description") {
		p.Description = pf.description
	}
	if isSet(fs, "permissions") {
		p.Permissions = list(pf.permissions)
	}
	if isSet(fs, "models-allow") {
		p.ModelsAllow = list(pf.modelsAllow)
	}
	if isSet(fs, "models-deny") {
		p.ModelsDeny = list(pf.modelsDeny)
	}
	if isSet(fs, "concurrency") {
		p.Concurrency = pf.concurrency
	}
	if pf.queue.set {
		q := pf.queue.value
		p.Queue = &q
	}
	for _, sp := range []struct {
		name string
		in   *string
		out  **time.Duration
	}{{"rate-window", pf.rateWindow, &p.RateWindow}, {"activate-for", pf.activateFor, &p.ActivateFor}} {
		if !isSet(fs, sp.name) {
			continue
		}
		d, err := parseSpanFlag(*sp.in)
		if err != nil {
			return admin.PolicyPatch{}, fmt.Errorf("--%s: %w", sp.name, err)
		}
		*sp.out = &d
	}
	if isSet(fs, "rate-requests") {
		p.RateRequests = pf.rateRequests
	}
	if isSet(fs, "rate-tokens") {
		p.RateTokens = pf.rateTokens
	}
	for _, m := range []struct {
		name string
		in   *string
		out  **admin.USD
	}{
		{"rate-cost", pf.rateCost, &p.RateCost}, {"daily-cost", pf.dailyCost, &p.DailyCost},
		{"total-cost", pf.totalCost, &p.TotalCost}, {"weekly-cost", pf.weeklyCost, &p.WeeklyCost},
		{"daily-opus-cost", pf.dailyOpusCost, &p.DailyOpusCost},
	} {
		if !isSet(fs, m.name) {
			continue
		}
		u, err := parseUSDFlag(m.name, *m.in)
		if err != nil {
			return admin.PolicyPatch{}, err
		}
		*m.out = &u
	}
	if isSet(fs, "weekly-reset-day") {
		d, err := admin.ParseWeekday(*pf.weeklyResetDay)
		if err != nil {
			return admin.PolicyPatch{}, fmt.Errorf("--weekly-reset-day: %w", err)
		}
		p.WeeklyResetDay = &d
	}
	if isSet(fs, "weekly-reset-hour") {
		p.WeeklyResetHour = pf.weeklyResetHour
	}
	if isSet(fs, "account") {
		p.Account = pf.account
	}
	if isSet(fs, "account-fallback") {
		p.BindingFallback = pf.accountFallback
	}
	if isSet(fs, "service-rates") {
		rates, err := parseRates(*pf.serviceRates)
		if err != nil {
			return admin.PolicyPatch{}, fmt.Errorf("--service-rates: %w", err)
		}
		p.ServiceRates = &rates
	}
	return p, nil
}

// parseSpanFlag reads a span flag; 0, never, none and "" remove the span.
func parseSpanFlag(s string) (time.Duration, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "0", "never", "none":
		return 0, nil
	}
	return admin.ParseDuration(s)
}

// parseRates reads platform=rate pairs ("claude=1.5,openai=1"); the
// service checks the platforms and the range.
func parseRates(s string) (map[string]float64, error) {
	rates := map[string]float64{}
	for _, item := range splitList(s) {
		name, val, ok := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("%q: want platform=rate, such as claude=1.5", item)
		}
		r, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return nil, fmt.Errorf("%q: the rate is not a number", item)
		}
		if _, dup := rates[name]; dup {
			return nil, fmt.Errorf("%s is given twice", name)
		}
		rates[name] = r
	}
	return rates, nil
}

// queueFlag is --queue: a boolean flag (bare --queue means true) that
// also takes "default" to return the key to the server's setting.
type queueFlag struct {
	set   bool
	value *bool // nil: the server's setting
}

func (q *queueFlag) String() string {
	if q == nil || q.value == nil {
		return "default"
	}
	return strconv.FormatBool(*q.value)
}

func (q *queueFlag) Set(s string) error {
	q.set = true
	if strings.EqualFold(strings.TrimSpace(s), "default") {
		q.value = nil
		return nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("want true, false or default")
	}
	q.value = &b
	return nil
}

// IsBoolFlag lets --queue stand alone, as the flag package does for bools.
func (q *queueFlag) IsBoolFlag() bool { return true }

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
		fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tKEY\tTAGS\tCREATED\tLAST USED\tEXPIRES\tBOUND TO")
		for _, k := range ks {
			expires := when(k.ExpiresAt)
			if k.ExpiresAt == nil && k.ActivateFor != nil {
				expires = *k.ActivateFor + " after first use"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\tcr_…%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Status, k.Hint,
				orDash(strings.Join(k.Tags, ",")), when(&k.CreatedAt), when(k.LastUsedAt), expires, orDash(k.Account))
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
