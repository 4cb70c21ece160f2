package web

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/store"
)

// The CSV export of the usage page: GET /web/usage.csv with the page's
// filter. It streams every matching record, newest first, reading the log
// in cursor pages so memory stays flat, and stops after usageCSVMaxRows
// rows. A line that starts with "#" is a notice, always the last line: the
// export stopped at the row cap, or on an error after the header was sent.
// Columns are named in English for scripts; times are RFC 3339 in the
// console's zone; money is USD with 12 decimals, exactly what is stored.

const (
	// usageCSVMaxRows bounds one export: about 250 MB of CSV.
	usageCSVMaxRows = 1_000_000
	// usageCSVPage is the records read per store call, and usageCSVScan
	// the candidates one call may look at (see store.Usage.ScanUsage).
	usageCSVPage = 1000
	usageCSVScan = 20_000
	// usageCSVPageTimeout bounds each store call; the export as a whole
	// runs as long as the client keeps reading.
	usageCSVPageTimeout = 30 * time.Second
)

// usageCSVHeader names the columns.
var usageCSVHeader = []string{"time", "request_id", "attempt", "key_id", "key_name", "account_id", "account_name",
	"model", "status", "input_tokens", "output_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens",
	"cache_read_tokens", "cost_usd", "rated_cost_usd", "stream", "latency_ms", "first_byte_ms", "client_aborted"}

func (c *Console) usageCSV(w http.ResponseWriter, r *http.Request, v *view) {
	u, bad := c.parseUsageQuery(r.URL.Query())
	if bad != "" {
		http.Error(w, v.T(bad), http.StatusBadRequest)
		return
	}
	nctx, cancel := ctx(r)
	names, _, _, err := c.loadUsageNames(nctx, v)
	cancel()
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="crs-usage-`+c.o.Now().In(c.o.Location).Format("20060102-150405")+`.csv"`)
	h.Set("Cache-Control", "no-store")
	rows, stop, err := c.writeUsageCSV(r.Context(), w, u.f, names, usageCSVMaxRows)
	if err != nil {
		c.log.WarnContext(r.Context(), "console: usage export stopped", "rows", rows, "err", err)
	} else if stop != "" {
		c.log.InfoContext(r.Context(), "console: usage export capped", "rows", rows)
	}
}

// writeUsageCSV writes the header and the records of f to w, at most
// maxRows of them, flushing after each store page. It returns the rows
// written and, when it stopped before the end, the notice it wrote last;
// err is the store's or the writer's error.
func (c *Console) writeUsageCSV(ctx context.Context, w io.Writer, f store.UsageFilter, names usageNames, maxRows int) (int, string, error) {
	cw := csv.NewWriter(w)
	flusher, _ := w.(http.Flusher)
	flush := func() error {
		cw.Flush()
		if flusher != nil {
			flusher.Flush()
		}
		return cw.Error()
	}
	if err := cw.Write(usageCSVHeader); err != nil {
		return 0, "", err
	}
	rows := 0
	for {
		pctx, cancel := context.WithTimeout(ctx, usageCSVPageTimeout)
		pg, err := c.o.Store.ScanUsage(pctx, f, min(usageCSVPage, maxRows-rows), usageCSVScan)
		cancel()
		if err != nil {
			notice := "# error: the export stopped early; run it again, or narrow the filter"
			cw.Write([]string{notice})
			flush()
			return rows, notice, err
		}
		for _, rec := range pg.Records {
			if err := cw.Write(usageCSVRow(c.o.Location, rec, names)); err != nil {
				return rows, "", err
			}
			rows++
		}
		if err := flush(); err != nil {
			return rows, "", err
		}
		if pg.Next == nil {
			return rows, "", nil
		}
		if rows >= maxRows {
			notice := fmt.Sprintf("# truncated: the export stops at %d rows; narrow the filter (time range) for the rest", maxRows)
			cw.Write([]string{notice})
			return rows, notice, flush()
		}
		f.Before = pg.Next
	}
}

func usageCSVRow(loc *time.Location, r store.UsageRecord, n usageNames) []string {
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	return []string{
		r.CreatedAt.In(loc).Format("2006-01-02T15:04:05.000Z07:00"),
		usageCSVText(r.RequestID), strconv.Itoa(r.Attempt),
		usageCSVText(string(r.KeyID)), usageCSVText(n.keys[r.KeyID]),
		usageCSVText(string(r.AccountID)), usageCSVText(n.accounts[r.AccountID]),
		usageCSVText(r.Model), strconv.Itoa(r.Status),
		i(r.Input), i(r.Output), i(r.CacheWrite5m), i(r.CacheWrite1h), i(r.CacheRead),
		pricing.FromPico(r.CostPico).StringFixed(12), pricing.FromPico(r.RatedCostPico).StringFixed(12),
		strconv.FormatBool(r.Stream), i(r.LatencyMs), i(r.FirstByteMs), strconv.FormatBool(r.ClientAborted),
	}
}

// usageCSVText keeps a text field from being read as a formula by a
// spreadsheet: model names come from clients, key and account names from
// admins, and a cell starting with = + - @ (or a tab or CR) would run.
func usageCSVText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
