package main

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/store"
)

func usageCmd(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "usage", "[--key ID] [--json]")
	key := fs.String("key", "", "only this relay key's usage")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("usage: unexpected argument %q", pos[0])}
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		v, err := e.Admin.Usage(ctx, admin.UsageQuery{KeyID: store.KeyID(*key)})
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(c.stdout, v)
		}
		if len(v.Keys) == 0 && len(v.Models) == 0 {
			fmt.Fprintln(c.stdout, "No usage recorded yet.")
			return nil
		}
		rows := func(title string, n int, label func(i int) string, counters func(i int) admin.UsageCounters) {
			fmt.Fprintf(c.stdout, "%s\n", title)
			tw := table(c.stdout)
			fmt.Fprintln(tw, "\tREQUESTS\tINPUT\tOUTPUT\tCACHE WRITE\t(5m\t1h)\tCACHE READ\tCOST USD")
			for i := range n {
				u := counters(i)
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", label(i), u.Requests, u.Input, u.Output,
					u.CacheCreation, u.CacheCreation5m, u.CacheCreation1h, u.CacheRead, u.CostUSD.StringFixed(6))
			}
			tw.Flush()
			fmt.Fprintln(c.stdout)
		}
		rows("Per key:", len(v.Keys), func(i int) string { return named(string(v.Keys[i].KeyID), v.Keys[i].KeyName) },
			func(i int) admin.UsageCounters { return v.Keys[i].UsageCounters })
		rows("Per account:", len(v.Accounts), func(i int) string { return named(string(v.Accounts[i].AccountID), v.Accounts[i].AccountName) },
			func(i int) admin.UsageCounters { return v.Accounts[i].UsageCounters })
		rows("Per model:", len(v.Models), func(i int) string { return v.Models[i].Model },
			func(i int) admin.UsageCounters { return v.Models[i].UsageCounters })
		return nil
	})
}

func named(id, name string) string {
	if name == "" {
		return id
	}
	return name + " (" + id + ")"
}

// version reports the module version and VCS revision the binary was built
// from, as far as the Go toolchain recorded them.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}

// versionCmd prints the binary's version and the price table it would
// use on this DATA_DIR: the one `crs prices update` stored, else the
// embedded one. A store it cannot read does not fail the command: it
// names the embedded table and says why on standard error.
func versionCmd(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "version", "[--data-dir DIR]")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("version: unexpected argument %q", pos[0])}
	}
	fmt.Fprintf(c.stdout, "crs %s\n", version())
	info, err := pricesInUse(ctx, c, *dataDir)
	if err != nil {
		fmt.Fprintf(c.stderr, "crs: note: the stored price table was not read (%s)\n", oneLine(describe(err)))
	}
	_, err = fmt.Fprintln(c.stdout, describePrices(info))
	return err
}
