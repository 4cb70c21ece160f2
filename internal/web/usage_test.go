package web

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/store"
)

const (
	usageModelA = "claude-sonnet-4-5"
	usageModelB = "claude-opus-4-1"
)

// usageFixture is a console with two keys on two accounts and their
// records: alice's 120 on account x (model A, status 200) in the last
// hour, 60 of them in one millisecond, and bob's 10 on account y (model B,
// status 429) a day earlier.
type usageFixture struct {
	*env
	alice, bob store.KeyID
	x, y       store.AccountID
	base       time.Time // the millisecond that 60 of alice's records share
	aliceIDs   []string  // alice's request ids, newest first
}

func newUsageFixture(t *testing.T) *usageFixture {
	t.Helper()
	e := newEnv(t)
	ctx := context.Background()
	f := &usageFixture{env: e}
	for name, id := range map[string]*store.KeyID{"alice": &f.alice, "bob": &f.bob} {
		kv, _, err := e.svc.CreateKey(ctx, admin.KeyInput{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		*id = kv.ID
	}
	for name, id := range map[string]*store.AccountID{"acct-x": &f.x, "acct-y": &f.y} {
		av, err := e.svc.AddAccount(ctx, admin.AccountInput{Platform: "claude", Type: "api-key", Name: name, APIKey: "sk-" + name, Priority: 50})
		if err != nil {
			t.Fatal(err)
		}
		*id = av.ID
	}
	f.base = e.clock.Now().Add(-time.Hour).Truncate(time.Millisecond)
	if !midnight(f.base, time.UTC).Equal(midnight(f.base.Add(10*time.Minute), time.UTC)) {
		f.base = f.base.Add(-11 * time.Minute) // keep each group of records in one day
	}
	table := pricing.Default()
	var recs []store.UsageRecord
	for i := range 120 {
		at := f.base
		if i >= 60 {
			at = f.base.Add(time.Duration(i-59) * time.Second)
		}
		tk := pricing.Tokens{Input: 1000, Output: 100, CacheRead: 500}
		recs = append(recs, store.UsageRecord{RequestID: fmt.Sprintf("a-%03d", i), KeyID: f.alice, AccountID: f.x, Model: usageModelA,
			Input: tk.Input, Output: tk.Output, CacheRead: tk.CacheRead, CostPico: table.CostPico(usageModelA, tk),
			RatedCostPico: table.CostPico(usageModelA, tk), Status: 200, Stream: true, LatencyMs: 900, FirstByteMs: 120, CreatedAt: at})
	}
	for i := range 10 {
		tk := pricing.Tokens{Input: 10, Output: 0}
		recs = append(recs, store.UsageRecord{RequestID: fmt.Sprintf("b-%03d", i), KeyID: f.bob, AccountID: f.y, Model: usageModelB,
			Input: tk.Input, CostPico: table.CostPico(usageModelB, tk), Status: 429,
			CreatedAt: f.base.Add(-24*time.Hour + time.Duration(i)*time.Minute)})
	}
	if _, err := e.st.InsertUsage(ctx, recs); err != nil {
		t.Fatal(err)
	}
	// Newest first: the 60 later ones by time, then the 60 of one
	// millisecond in reverse insertion (Seq) order.
	for i := 119; i >= 0; i-- {
		f.aliceIDs = append(f.aliceIDs, fmt.Sprintf("a-%03d", i))
	}
	e.login()
	return f
}

var (
	usageRowRE  = regexp.MustCompile(`<tr data-request="([^"]+)">`)
	usageNextRE = regexp.MustCompile(`href="([^"]+)" id="usage-next"`)
)

// usagePages follows "next page" links from path and returns the request
// ids of every page.
func (f *usageFixture) usagePages(path string) [][]string {
	f.t.Helper()
	var pages [][]string
	for path != "" {
		status, _, body := f.get(path)
		if status != http.StatusOK {
			f.t.Fatalf("GET %s: %d\n%.1000s", path, status, body)
		}
		var ids []string
		for _, m := range usageRowRE.FindAllStringSubmatch(body, -1) {
			ids = append(ids, m[1])
		}
		pages = append(pages, ids)
		path = ""
		if m := usageNextRE.FindStringSubmatch(body); m != nil {
			path = html.UnescapeString(m[1])
		}
		if len(pages) > 20 {
			f.t.Fatal("paging does not end")
		}
	}
	return pages
}

// TestUsagePaging: pages of 50, newest first, moved by a cursor that holds
// across records of the same millisecond; every record once, none twice.
func TestUsagePaging(t *testing.T) {
	f := newUsageFixture(t)
	pages := f.usagePages("/web/usage?key=" + string(f.alice))
	var sizes []int
	var all []string
	for _, p := range pages {
		sizes = append(sizes, len(p))
		all = append(all, p...)
	}
	if !slices.Equal(sizes, []int{50, 50, 20}) {
		t.Errorf("page sizes %v, want [50 50 20]", sizes)
	}
	if !slices.Equal(all, f.aliceIDs) {
		t.Errorf("records across pages:\n got %v\nwant %v", all, f.aliceIDs)
	}
	// Without a filter, bob's older records follow alice's.
	all = nil
	for _, p := range f.usagePages("/web/usage") {
		all = append(all, p...)
	}
	if len(all) != 130 || all[119] != "a-000" || all[120] != "b-009" {
		t.Errorf("unfiltered: %d records, %v", len(all), all[115:])
	}
	// A later page links back to the first, and keeps the filter.
	_, _, body := f.get("/web/usage?key=" + string(f.alice))
	next := html.UnescapeString(usageNextRE.FindStringSubmatch(body)[1])
	if !strings.Contains(next, "key="+string(f.alice)) || !strings.Contains(next, "before=") {
		t.Errorf("next link %q lacks the filter or the cursor", next)
	}
	_, _, body = f.get(next)
	if !strings.Contains(body, `id="usage-first"`) {
		t.Error("a later page has no link to the first")
	}
}

// TestUsageFilters: each filter narrows the records, the totals and the
// export; names show for ids.
func TestUsageFilters(t *testing.T) {
	f := newUsageFixture(t)
	bobIDs := func() []string {
		var out []string
		for i := 9; i >= 0; i-- {
			out = append(out, fmt.Sprintf("b-%03d", i))
		}
		return out
	}()
	loc := time.UTC
	for name, q := range map[string]url.Values{
		"key":     {"key": {string(f.bob)}},
		"account": {"account": {string(f.y)}},
		"model":   {"model": {usageModelB}},
		"status":  {"status": {"429"}},
		"time":    {"from": {f.base.Add(-25 * time.Hour).In(loc).Format(usageTimeLayout)}, "to": {f.base.Add(-time.Hour).In(loc).Format(usageTimeLayout)}},
	} {
		pages := f.usagePages("/web/usage?" + q.Encode())
		if len(pages) != 1 || !slices.Equal(pages[0], bobIDs) {
			t.Errorf("%s filter: %v, want bob's 10", name, pages)
		}
	}
	// Several filters at once.
	pages := f.usagePages("/web/usage?key=" + string(f.alice) + "&status=429")
	if len(pages) != 1 || len(pages[0]) != 0 {
		t.Errorf("alice with status 429: %v, want none", pages)
	}

	_, _, body := f.get("/web/usage?key=" + string(f.alice))
	if !strings.Contains(body, `id="usage-total-requests">120<`) {
		t.Errorf("alice's totals: want 120 requests\n%s", usageBetween(body, `id="usage-totals"`, `</section>`))
	}
	for _, want := range []string{">alice<", ">acct-x<", usageModelA, ">200<", "900 ms / 120 ms"} {
		if !strings.Contains(body, want) {
			t.Errorf("alice's page lacks %q", want)
		}
	}
	if strings.Contains(body, `id="usage-status-ignored"`) {
		t.Error("the status note shows without a status filter")
	}
	// The key select keeps the choice.
	if !strings.Contains(body, `value="`+string(f.alice)+`" selected`) {
		t.Error("the key select lost the filter")
	}
	_, _, body = f.get("/web/usage?status=429")
	if !strings.Contains(body, `id="usage-status-ignored"`) || !strings.Contains(body, `id="usage-total-requests">130<`) {
		t.Error("a status filter: totals must say they count every status (130)")
	}
}

func TestUsageBadFilter(t *testing.T) {
	f := newUsageFixture(t)
	for q, want := range map[string]string{
		"status=abc":                          "HTTP status code",
		"status=700":                          "HTTP status code",
		"from=yesterday":                      "start time",
		"to=2026-13-01T00:00":                 "end time",
		"from=2026-01-02T00:00&to=2026-01-01": "before the end",
		"before=12x":                          "page link is damaged",
	} {
		status, _, body := f.get("/web/usage?" + q)
		if status != http.StatusBadRequest || !strings.Contains(body, want) || !strings.Contains(body, `id="usage-error"`) {
			t.Errorf("?%s: %d, want 400 with %q", q, status, want)
		}
		if strings.Contains(body, `id="usage-table"`) {
			t.Errorf("?%s: records shown for a bad filter", q)
		}
		if status, _, _ := f.get("/web/usage.csv?" + q); status != http.StatusBadRequest {
			t.Errorf("export ?%s: %d, want 400", q, status)
		}
	}
}

// TestUsageSignedOut: neither the page nor the export is open without a
// session.
func TestUsageSignedOut(t *testing.T) {
	f := newUsageFixture(t)
	out := newClient(f.env)
	for _, p := range []string{"/web/usage", "/web/usage.csv"} {
		status, loc, body := out.get(p)
		if status != http.StatusSeeOther || !strings.HasPrefix(loc, "/web/login") || strings.Contains(body, "a-0") {
			t.Errorf("%s signed out: %d %q", p, status, loc)
		}
	}
}

// TestUsagePartialPage: a filter that matches rarely ends a page after a
// bounded scan, and the next page goes on to the match.
func TestUsagePartialPage(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := e.clock.Now()
	const scan = usagePageSize // the least a scan may be
	n := 2*usageScanCalls*scan + 10
	recs := []store.UsageRecord{{RequestID: "rare", KeyID: "k", AccountID: "a", Model: "m", Status: 500, CreatedAt: now.Add(-2 * time.Hour)}}
	for i := range n {
		recs = append(recs, store.UsageRecord{RequestID: fmt.Sprintf("r%d", i), KeyID: "k", AccountID: "a", Model: "m", Status: 200,
			CreatedAt: now.Add(-time.Hour + time.Duration(i)*time.Millisecond)})
	}
	if _, err := e.st.InsertUsage(ctx, recs); err != nil {
		t.Fatal(err)
	}
	f := store.UsageFilter{Status: 500}
	for page := 1; ; page++ {
		got, next, err := e.con.usageRecords(ctx, f, scan)
		if err != nil {
			t.Fatal(err)
		}
		if page < 3 {
			if len(got) != 0 || next == nil {
				t.Fatalf("page %d: %d records, next %v; want none and a next page", page, len(got), next)
			}
			f.Before = next
			continue
		}
		if len(got) != 1 || got[0].RequestID != "rare" || next != nil {
			t.Fatalf("page %d: %d records, next %v; want the rare one and no next page", page, len(got), next)
		}
		break
	}
	// A rarely matching filter with the default budget fills its page.
	e.login()
	_, _, body := e.get("/web/usage?status=500")
	if got := usageRowRE.FindAllStringSubmatch(body, -1); len(got) != 1 || strings.Contains(body, `id="usage-partial"`) {
		t.Errorf("the page: %v", got)
	}
}

// TestUsageCSV: the export holds every record of the filter with names,
// exact money and a header, as an attachment; a cell that would be a
// formula is defused.
func TestUsageCSV(t *testing.T) {
	f := newUsageFixture(t)
	if _, err := f.st.InsertUsage(context.Background(), []store.UsageRecord{{RequestID: "evil", KeyID: f.bob, AccountID: f.y,
		Model: "=HYPERLINK(\"http://x\")", Status: 200, CreatedAt: f.base.Add(-48 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	resp, err := f.hc.Get(f.srv.URL + "/web/usage.csv?key=" + string(f.alice))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") ||
		!strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment; filename=") {
		t.Fatalf("export: %d %v", resp.StatusCode, resp.Header)
	}
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rows[0], usageCSVHeader) {
		t.Errorf("header %v", rows[0])
	}
	var ids []string
	for _, r := range rows[1:] {
		ids = append(ids, r[1])
		if r[4] != "alice" || r[6] != "acct-x" || r[7] != usageModelA || r[8] != "200" || r[9] != "1000" || r[16] != "true" {
			t.Fatalf("row %v", r)
		}
	}
	if !slices.Equal(ids, f.aliceIDs) {
		t.Errorf("export ids %v", ids)
	}
	// 1000 input at $3/M, 100 output at $15/M, 500 cache reads at $0.30/M.
	if got := rows[1][14]; got != "0.004650000000" {
		t.Errorf("cost_usd %q, want 0.004650000000", got)
	}
	if got := rows[1][0]; got != f.base.Add(60*time.Second).UTC().Format("2006-01-02T15:04:05.000Z07:00") {
		t.Errorf("time %q", got)
	}

	_, _, body := f.get("/web/usage.csv?key=" + string(f.bob))
	rows, err = csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 12 || rows[11][7] != `'=HYPERLINK("http://x")` || rows[1][4] != "bob" || rows[1][8] != "429" {
		t.Errorf("bob's export: %d rows, last %v", len(rows), rows[len(rows)-1])
	}
	// The page links the export with its filter.
	_, _, page := f.get("/web/usage?key=" + string(f.bob) + "&status=429")
	if !strings.Contains(page, `href="/web/usage.csv?key=`+string(f.bob)+`&amp;status=429"`) {
		t.Error("the export link does not carry the filter")
	}
}

// TestUsageCSVCap: the export stops at its row cap and says so on its last
// line; at exactly the cap with nothing more, it says nothing.
func TestUsageCSVCap(t *testing.T) {
	f := newUsageFixture(t)
	ctx := context.Background()
	names, _, _, err := f.con.loadUsageNames(ctx, &view{Lang: langEN})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, notice, err := f.con.writeUsageCSV(ctx, &buf, store.UsageFilter{KeyID: f.alice}, names, 25)
	if err != nil || n != 25 || !strings.HasPrefix(notice, "# truncated") {
		t.Fatalf("capped export: %d rows, %q, %v", n, notice, err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 27 || !strings.HasPrefix(lines[26], "# truncated") {
		t.Errorf("capped export: %d lines, last %q", len(lines), lines[len(lines)-1])
	}
	buf.Reset()
	n, notice, err = f.con.writeUsageCSV(ctx, &buf, store.UsageFilter{KeyID: f.bob}, names, 10)
	if err != nil || n != 10 || notice != "" || strings.Contains(buf.String(), "#") {
		t.Errorf("export of exactly the cap: %d rows, %q, %v", n, notice, err)
	}
}

// TestUsageTrend: the daily trend counts the filter's key only, on the
// right days.
func TestUsageTrend(t *testing.T) {
	f := newUsageFixture(t)
	ctx := context.Background()
	day := func(tm time.Time) string { return midnight(tm, time.UTC).Format("01-02") }
	for _, tc := range []struct {
		filter store.UsageFilter
		want   map[string]float64
	}{
		{store.UsageFilter{KeyID: f.alice}, map[string]float64{day(f.base): 120}},
		{store.UsageFilter{AccountID: f.y}, map[string]float64{day(f.base.Add(-24 * time.Hour)): 10}},
		{store.UsageFilter{}, map[string]float64{day(f.base): 120, day(f.base.Add(-24 * time.Hour)): 10}},
		{store.UsageFilter{Model: "nope"}, map[string]float64{}},
	} {
		d, err := f.con.usageDaily(ctx, tc.filter)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Labels) != usageTrendDays {
			t.Errorf("%+v: %d days, want %d", tc.filter, len(d.Labels), usageTrendDays)
		}
		got := map[string]float64{}
		for i, n := range d.Requests {
			if n != 0 {
				got[d.Labels[i]] = n
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%+v: requests per day %v, want %v", tc.filter, got, tc.want)
		}
	}
	// A given range is drawn day by day, at most usageTrendMaxDays.
	to := midnight(f.base, time.UTC).AddDate(0, 0, 1)
	d, err := f.con.usageDaily(ctx, store.UsageFilter{From: to.AddDate(0, 0, -3), To: to})
	if err != nil || len(d.Labels) != 3 {
		t.Errorf("3-day range: %d days, %v", len(d.Labels), err)
	}
	d, _ = f.con.usageDaily(ctx, store.UsageFilter{From: to.AddDate(-3, 0, 0), To: to})
	if len(d.Labels) != usageTrendMaxDays {
		t.Errorf("3-year range: %d days, want %d", len(d.Labels), usageTrendMaxDays)
	}
	_, _, body := f.get("/web/usage?key=" + string(f.alice))
	if strings.Count(usageBetween(body, `id="usage-trend"`, `<section class="card">`+"\n<h2>"), "<polyline") != 3 {
		t.Error("the usage page does not draw the trend charts")
	}
}

// TestUsageSplitCost: the class split shares each model's recorded cost
// in the proportions of its prices, and adds up to it exactly.
func TestUsageSplitCost(t *testing.T) {
	table := pricing.Default()
	// claude-sonnet-4-5: $3 in, $15 out, $0.30 cache read per million.
	row := store.UsageRow{Model: usageModelA, Counters: store.Counters{Input: 1_000_000, Output: 100_000, CacheRead: 1_000_000}}
	for _, tc := range []struct {
		recorded int64
		want     [usageClassCount]int64
	}{
		{4_800_000_000_000, [usageClassCount]int64{3e12, 1.5e12, 0, 0, 0.3e12}},
		{9_600_000_000_000, [usageClassCount]int64{6e12, 3e12, 0, 0, 0.6e12}}, // a long-context or older price
		{1, [usageClassCount]int64{1, 0, 0, 0, 0}},                            // the remainder goes to the heaviest class
	} {
		row.CostPico = tc.recorded
		got, other := usageSplitCost(table, []store.UsageRow{row})
		if got != tc.want || other != 0 {
			t.Errorf("recorded %d: %v other %d, want %v", tc.recorded, got, other, tc.want)
		}
	}
	// Cost without tokens to weigh cannot be split.
	got, other := usageSplitCost(table, []store.UsageRow{{Model: usageModelA, Counters: store.Counters{CostPico: 7}}})
	if got != [usageClassCount]int64{} || other != 7 {
		t.Errorf("cost without tokens: %v other %d", got, other)
	}
	// The page shows the split, summing to the total.
	f := newUsageFixture(t)
	_, _, body := f.get("/web/usage?key=" + string(f.alice))
	br := usageBetween(body, `id="usage-breakdown"`, `</table>`)
	// 120 × (1000 × $3 + 100 × $15 + 500 × $0.30)/M = $0.36 + $0.18 + $0.018.
	for _, want := range []string{">$0.36<", ">$0.18<", ">$0.02<", ">$0.56<", ">60,000<"} {
		if !strings.Contains(br, want) {
			t.Errorf("breakdown lacks %q:\n%s", want, br)
		}
	}
}

// usageBetween is the part of s from the first start to the following end.
func usageBetween(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i:]
	if j := strings.Index(s[len(start):], end); j >= 0 {
		return s[:len(start)+j]
	}
	return s
}
