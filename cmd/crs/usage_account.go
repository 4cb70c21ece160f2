package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/store"
)

const accountsUsageSynopsis = "ID [--json]"

// accountsUsage prints the live quota of a Claude subscription account.
func accountsUsage(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "accounts usage", accountsUsageSynopsis)
	asJSON := fs.Bool("json", false, "print the usage as JSON")
	id, err := oneID(fs, "accounts usage", "account", args)
	if err != nil {
		return err
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		v, err := e.Admin.AccountUsage(ctx, store.AccountID(id))
		var inv *admin.InvalidError
		switch {
		case errors.As(err, &inv) && inv.Field == "account":
			// The reason is about the account, not a flag.
			return fmt.Errorf("accounts usage %s: %s", id, inv.Reason)
		case err != nil:
			return fmt.Errorf("accounts usage %s: %s", id, describe(err))
		}
		if *asJSON {
			return printJSON(c.stdout, v)
		}
		tw := table(c.stdout)
		fmt.Fprintln(tw, "WINDOW\tUSED\tRESETS")
		for _, w := range []struct {
			name string
			v    *admin.QuotaWindowView
		}{
			{"5 hours", v.FiveHour}, {"7 days", v.SevenDay}, {"7 days Opus", v.SevenDayOpus}, {"7 days Sonnet", v.SevenDaySonnet},
		} {
			if w.v == nil {
				fmt.Fprintf(tw, "%s\t-\tnot reported\n", w.name)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s%%\t%s\n", w.name, strconv.FormatFloat(w.v.Utilization, 'f', -1, 64), when(w.v.ResetsAt))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "(fetched %s; answers are reused for %s)\n", v.FetchedAt.Local().Format("2006-01-02 15:04:05"), admin.QuotaCacheTTL)
		return nil
	})
}
