package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/crs-relay/crs/internal/config"
	"github.com/crs-relay/crs/internal/pricing"
)

const pricesUpdateSynopsis = "[--file FILE|- | --url URL] [--json]"

// fetchTimeout bounds the download of a price table.
const fetchTimeout = 30 * time.Second

// pricesShow prints the table in use: the stored one, else the embedded
// one.
func pricesShow(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "prices show", "[--json]")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("prices show: unexpected argument %q", pos[0])}
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		t, err := pricing.Load(ctx, e.Store)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(c.stdout, t.Info())
		}
		i := t.Info()
		tw := table(c.stdout)
		fmt.Fprintf(tw, "version\t%s\n", i.Version)
		fmt.Fprintf(tw, "as of\t%s\n", i.AsOf)
		fmt.Fprintf(tw, "origin\t%s\n", i.Origin)
		if !i.UpdatedAt.IsZero() {
			fmt.Fprintf(tw, "updated\t%s\n", i.UpdatedAt.Format(time.RFC3339))
		}
		fmt.Fprintf(tw, "models\t%d\n", i.Models)
		fmt.Fprintf(tw, "source\t%s\n", i.Source)
		return tw.Flush()
	})
}

// pricesUpdate stores a new table read from a file, standard input or a
// URL ($PRICES_URL when neither flag is given). A table that does not
// pass pricing.CheckUpdate is refused and the one in use stays.
func pricesUpdate(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "prices update", pricesUpdateSynopsis)
	file := fs.String("file", "", "read the table from FILE (- for standard input)")
	from := fs.String("url", "", "fetch the table from URL (default $PRICES_URL)")
	asJSON := fs.Bool("json", false, "print the stored table's description as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("prices update: unexpected argument %q", pos[0])}
	}
	if *file != "" && *from != "" {
		return usageError{"prices update: give --file or --url, not both"}
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		old, err := pricing.Load(ctx, e.Store)
		if err != nil {
			// The stored table is unreadable; replacing it is the fix.
			old = pricing.Default()
		}
		var data []byte
		var origin string
		switch {
		case *file != "":
			data, origin, err = readTableFile(c, *file)
		case *from != "" || e.Config.PricesURL != "":
			u := *from
			if u == "" {
				u = e.Config.PricesURL
			}
			data, origin, err = fetchTable(ctx, u)
		default:
			return usageError{"prices update: give --file FILE or --url URL, or set PRICES_URL"}
		}
		if err == nil {
			var t *pricing.Table
			if t, err = pricing.Save(ctx, e.Store, data, origin, time.Now()); err == nil {
				if *asJSON {
					return printJSON(c.stdout, t.Info())
				}
				i := t.Info()
				_, err := fmt.Fprintf(c.stdout, "Stored price table %s (as of %s, %d models) from %s; it was %s. Running servers switch to it within seconds.\n",
					i.Version, i.AsOf, i.Models, i.Origin, old.Version())
				return err
			}
		}
		return fmt.Errorf("prices update: %w; the table in use is unchanged (%s)", err, old.Version())
	})
}

// pricesReset removes the stored table.
func pricesReset(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "prices reset", "")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("prices reset: unexpected argument %q", pos[0])}
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		if err := pricing.Reset(ctx, e.Store); err != nil {
			return err
		}
		_, err := fmt.Fprintf(c.stdout, "Back to the embedded price table %s (as of %s).\n", pricing.Default().Version(), pricing.Default().AsOf())
		return err
	})
}

// readTableFile reads a table from path, or standard input for "-",
// refusing to read more than a table can be.
func readTableFile(c *cli, path string) (data []byte, origin string, err error) {
	var r io.Reader
	if path == "-" {
		r, origin = c.stdin, "standard input"
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, "", err
		}
		defer f.Close()
		r = f
		if origin, err = filepath.Abs(path); err != nil {
			origin = path
		}
	}
	data, err = io.ReadAll(io.LimitReader(r, pricing.MaxTableBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", origin, err)
	}
	return data, origin, nil
}

// fetchTable downloads a table. Errors and the returned origin name the
// URL without its query and credentials, which may be secret.
func fetchTable(ctx context.Context, raw string) (data []byte, origin string, err error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, "", errors.New("want an http:// or https:// URL of a price table")
	}
	origin = shownURL(u)
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", origin, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "crs/"+version())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the whole URL
		}
		return nil, "", fmt.Errorf("fetching %s: %w", origin, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("fetching %s: the server answered %s", origin, resp.Status)
	}
	data, err = io.ReadAll(io.LimitReader(resp.Body, pricing.MaxTableBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("fetching %s: %w", origin, err)
	}
	return data, origin, nil
}

// shownURL is u fit to print and store: no user info, no query, no
// fragment.
func shownURL(u *url.URL) string {
	c := *u
	c.User, c.RawQuery, c.ForceQuery, c.Fragment, c.RawFragment = nil, "", false, "", ""
	return c.String()
}

// pricesInUse describes the table a server on this DATA_DIR (or shared
// store) uses, for `crs version`. Without any state yet it is the
// embedded table, and nothing is created to find that out.
func pricesInUse(ctx context.Context, c *cli, dataDir string) (pricing.Info, error) {
	embedded := pricing.Default().Info()
	cfg, err := config.Load(withDataDir(c.getenv, dataDir))
	if err != nil {
		return embedded, err
	}
	if !cfg.Shared() {
		if _, err := os.Stat(filepath.Join(cfg.DataDir, DBFile)); err != nil {
			return embedded, nil
		}
	}
	info := embedded
	err = c.withEnv(ctx, dataDir, func(e *env) error {
		t, err := pricing.Load(ctx, e.Store)
		if err == nil {
			info = t.Info()
		}
		return err
	})
	return info, err
}

// describePrices is the one-line description `crs version` prints.
func describePrices(i pricing.Info) string {
	s := fmt.Sprintf("prices %s, as of %s (%s", i.Version, i.AsOf, i.Origin)
	if !i.UpdatedAt.IsZero() {
		s += ", stored " + i.UpdatedAt.Format(time.RFC3339)
	}
	return s + ")"
}
