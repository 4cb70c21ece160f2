package web

import (
	"cmp"
	"context"
	"html"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// The usage page: every upstream response that reported usage, newest
// first, filtered by key, account, model, status and time; what the filter
// cost, split by token class; a daily trend; and a CSV export of the same
// records (usage_csv.go).
//
// Pages move by keyset: the "next page" link carries the position of the
// last record looked at (its time and Seq), never an offset, and nothing
// counts the records of the filter, so the hundredth page costs what the
// first does however large the log grows. Totals and the trend come from
// ModelTotals and Trend, which read rollups whose rows follow the periods,
// accounts and models of the filter, not the records.

const (
	// usagePageSize is the number of records a page shows.
	usagePageSize = 50
	// usageScanCalls bounds the ScanUsage calls that fill one page: a
	// Model or Status filter that matches rarely ends the page early, with
	// a link to go on, rather than reading the whole log in one request.
	usageScanCalls = 4
	// usageTrendDays is the span of the trend when the filter gives no
	// start, and usageTrendMaxDays the longest span it draws.
	usageTrendDays    = 30
	usageTrendMaxDays = 366
	// usageTimeLayout is the value format of <input type="datetime-local">.
	usageTimeLayout = "2006-01-02T15:04"
)

func init() {
	page("GET "+Prefix+"/usage", false, func(c *Console) handler { return c.usageList })
	page("GET "+Prefix+"/usage.csv", false, func(c *Console) handler { return c.usageCSV })
	messages(map[string]msg{
		"usage.title":            {"Usage", "用量"},
		"usage.any_key":          {"all keys", "全部密钥"},
		"usage.any_account":      {"all accounts", "全部账户"},
		"usage.model_any":        {"any model", "任意模型"},
		"usage.status_any":       {"any status", "任意状态"},
		"usage.from":             {"From", "开始时间"},
		"usage.to":               {"To", "结束时间"},
		"usage.apply":            {"Apply", "应用"},
		"usage.clear":            {"Clear", "清除"},
		"usage.export":           {"Export CSV", "导出 CSV"},
		"usage.export_note":      {"The export holds every record of the filter, at most %s rows; a last line starting with # says it stopped early.", "导出包含筛选条件下的全部记录，最多 %s 行；若最后一行以 # 开头，表示导出提前结束。"},
		"usage.records":          {"Requests", "请求记录"},
		"usage.col.time":         {"Time", "时间"},
		"usage.col.key":          {"Key", "密钥"},
		"usage.col.account":      {"Account", "账户"},
		"usage.col.model":        {"Model", "模型"},
		"usage.col.status":       {"Status", "状态"},
		"usage.col.latency":      {"Latency / first byte", "耗时 / 首字节"},
		"usage.col.stream":       {"Stream", "流式"},
		"usage.ms":               {"%s ms", "%s 毫秒"},
		"usage.aborted":          {"client left", "客户端已断开"},
		"usage.none":             {"No requests match this filter.", "没有符合筛选条件的请求。"},
		"usage.no_more":          {"No more requests match this filter.", "没有更多符合筛选条件的请求。"},
		"usage.partial":          {"This page stopped early to stay fast: few recent requests match the filter. The next page goes on searching older ones.", "为保持响应速度，本页提前结束：近期符合条件的请求很少。下一页会继续查找更早的请求。"},
		"usage.totals":           {"Totals for this filter", "筛选范围合计"},
		"usage.totals_no_status": {"Totals and trend count every status: the rollups they are read from keep no status.", "合计与趋势统计所有状态：它们读取的汇总数据不记录状态。"},
		"usage.breakdown":        {"Cost by token class", "按 Token 类别的费用"},
		"usage.breakdown_note":   {"Each model's recorded cost, split by token class in the proportions of the current price table.", "每个模型的已记录费用，按当前价格表的比例拆分到各 Token 类别。"},
		"usage.class":            {"Token class", "Token 类别"},
		"usage.class.input":      {"Input", "输入"},
		"usage.class.output":     {"Output", "输出"},
		"usage.class.cache_5m":   {"Cache write (5 min)", "缓存写入（5 分钟）"},
		"usage.class.cache_1h":   {"Cache write (1 hour)", "缓存写入（1 小时）"},
		"usage.class.cache_read": {"Cache read", "缓存读取"},
		"usage.class.other":      {"Not attributable (model priced at zero now)", "无法归类（该模型当前价格为零）"},
		"usage.rated":            {"Rated cost (what key limits count)", "计费费用（密钥限额计入的金额）"},
		"usage.trend":            {"Per day, %s to %s", "按天，%s 至 %s"},
		"usage.trend_whole_days": {"The trend counts whole days.", "趋势按整天统计。"},
		"usage.series.cost":      {"cost (USD)", "费用（美元）"},
		"usage.series.requests":  {"requests", "请求数"},
		"usage.series.tokens_k":  {"tokens (thousands)", "Token 数（千）"},
		"usage.bad.status":       {"Status must be an HTTP status code, 100 to 599.", "状态必须是 100 到 599 之间的 HTTP 状态码。"},
		"usage.bad.from":         {"The start time is not a date and time.", "开始时间不是有效的日期时间。"},
		"usage.bad.to":           {"The end time is not a date and time.", "结束时间不是有效的日期时间。"},
		"usage.bad.range":        {"The start time must be before the end time.", "开始时间必须早于结束时间。"},
		"usage.bad.cursor":       {"The page link is damaged; start again from the first page.", "分页链接已损坏，请从第一页重新开始。"},
		"usage.deleted_key":      {"%s (deleted)", "%s（已删除）"},
		"usage.unknown":          {"unknown (%s)", "未知（%s）"},
	})
}

// usageQuery is the page's filter: the form's fields as given (echoed back
// into the form and its links) and the store filter they make.
type usageQuery struct {
	Key, Account, Model, Status, From, To string
	Before                                string // the cursor, "" on the first page
	f                                     store.UsageFilter
}

// parseUsageQuery reads the filter from q; a field that does not parse is
// reported by its message key.
func (c *Console) parseUsageQuery(q url.Values) (usageQuery, string) {
	u := usageQuery{
		Key: strings.TrimSpace(q.Get("key")), Account: strings.TrimSpace(q.Get("account")),
		Model: strings.TrimSpace(q.Get("model")), Status: strings.TrimSpace(q.Get("status")),
		From: strings.TrimSpace(q.Get("from")), To: strings.TrimSpace(q.Get("to")),
		Before: strings.TrimSpace(q.Get("before")),
	}
	u.f = store.UsageFilter{KeyID: store.KeyID(u.Key), AccountID: store.AccountID(u.Account), Model: u.Model}
	if u.Status != "" {
		n, err := strconv.Atoi(u.Status)
		if err != nil || n < 100 || n > 599 {
			return u, "usage.bad.status"
		}
		u.f.Status = n
	}
	var ok bool
	if u.f.From, ok = usageParseTime(u.From, c.o.Location); !ok {
		return u, "usage.bad.from"
	}
	if u.f.To, ok = usageParseTime(u.To, c.o.Location); !ok {
		return u, "usage.bad.to"
	}
	if !u.f.From.IsZero() && !u.f.To.IsZero() && !u.f.From.Before(u.f.To) {
		return u, "usage.bad.range"
	}
	if u.Before != "" {
		cur, ok := parseUsageCursor(u.Before)
		if !ok {
			return u, "usage.bad.cursor"
		}
		u.f.Before = cur
	}
	return u, ""
}

// usageParseTime reads a datetime-local value (seconds optional) in loc;
// "" is the zero time (no bound).
func usageParseTime(s string, loc *time.Location) (time.Time, bool) {
	if s == "" {
		return time.Time{}, true
	}
	for _, layout := range []string{usageTimeLayout, usageTimeLayout + ":05", time.DateOnly} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// A cursor travels in links as "<unix milliseconds>-<seq>".
func formatUsageCursor(c *store.UsageCursor) string {
	return strconv.FormatInt(c.CreatedAt.UnixMilli(), 10) + "-" + strconv.FormatInt(c.Seq, 10)
}

func parseUsageCursor(s string) (*store.UsageCursor, bool) {
	msPart, seqPart, ok := strings.Cut(s, "-")
	if !ok {
		return nil, false
	}
	ms, err1 := strconv.ParseInt(msPart, 10, 64)
	seq, err2 := strconv.ParseInt(seqPart, 10, 64)
	if err1 != nil || err2 != nil || ms < 0 || seq < 0 {
		return nil, false
	}
	return &store.UsageCursor{CreatedAt: time.UnixMilli(ms), Seq: seq}, true
}

// values is the filter as query parameters, without the cursor.
func (u usageQuery) values() url.Values {
	q := url.Values{}
	for _, kv := range [][2]string{{"key", u.Key}, {"account", u.Account}, {"model", u.Model},
		{"status", u.Status}, {"from", u.From}, {"to", u.To}} {
		if kv[1] != "" {
			q.Set(kv[0], kv[1])
		}
	}
	return q
}

// link is a console URL of path with the filter and, when given, a cursor.
func (u usageQuery) link(path string, cursor *store.UsageCursor) string {
	q := u.values()
	if cursor != nil {
		q.Set("before", formatUsageCursor(cursor))
	}
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// usageOption is one choice of a select.
type usageOption struct {
	Value, Label string
	Selected     bool
}

// usageLine is one record as the table shows it.
// Its cells are formatted here, once, rather than by template functions,
// and its figures are written as ready cells: each value a template
// prints costs an escaper call by reflection, and on a page of 50 lines
// those calls were most of its time (docs/benchmarks.md).
type usageLine struct {
	RequestID, KeyID, AccountID, KeyName, AccountName, Model, When string
	Status                                                         int
	OK, Aborted                                                    bool
	// Figures are the cells of input, output, cache write and read,
	// cost, latency and stream, escaped.
	Figures template.HTML
}

// usageLineOf formats rec for v.
func (c *Console) usageLineOf(v *view, names usageNames, rec store.UsageRecord) usageLine {
	stream := v.T("common.no")
	if rec.Stream {
		stream = v.T("common.yes")
	}
	var b strings.Builder
	for _, f := range [...]string{num(rec.Input), num(rec.Output), num(rec.CacheWrite5m + rec.CacheWrite1h),
		num(rec.CacheRead), usd(rec.CostPico),
		v.T("usage.ms", num(rec.LatencyMs)) + " / " + v.T("usage.ms", num(rec.FirstByteMs))} {
		b.WriteString(`<td class="num">` + html.EscapeString(f) + `</td>`)
	}
	b.WriteString(`<td>` + html.EscapeString(stream) + `</td>`)
	return usageLine{RequestID: rec.RequestID, KeyID: string(rec.KeyID), AccountID: string(rec.AccountID),
		KeyName: names.key(v, rec.KeyID), AccountName: names.account(v, rec.AccountID), Model: rec.Model,
		When: whenIn(rec.CreatedAt, c.o.Location), Status: rec.Status, OK: rec.Status >= 200 && rec.Status < 300,
		Aborted: rec.ClientAborted, Figures: template.HTML(b.String())}
}

// usageClass is one token class of the cost breakdown.
type usageClass struct {
	Label    string
	Tokens   int64
	CostPico int64
	Share    int64 // percent of the total cost
}

type usagePage struct {
	Q        usageQuery
	Error    string
	Keys     []usageOption
	Accounts []usageOption
	Models   []string

	Lines   []usageLine
	Next    string // the next page's URL; "" when no record follows
	First   string // the first page's URL, on later pages
	Partial bool   // the scan budget ended the page before it was full
	CSV     string
	CSVMax  string

	Totals        store.Counters
	TotalTokens   int64
	Classes       []usageClass
	StatusIgnored bool

	TrendTitle  string
	CostChart   template.HTML
	CountChart  template.HTML
	CostLegend  []string
	CountLegend []string
}

// usageNames resolves key and account IDs to names, deleted keys included.
type usageNames struct {
	keys     map[store.KeyID]string
	accounts map[store.AccountID]string
}

func (c *Console) loadUsageNames(ctx context.Context, v *view) (usageNames, []usageOption, []usageOption, error) {
	n := usageNames{keys: map[store.KeyID]string{}, accounts: map[store.AccountID]string{}}
	keys, err := c.o.API.Service().ListKeys(ctx, true)
	if err != nil {
		return n, nil, nil, err
	}
	accts, err := c.o.API.Service().ListAccounts(ctx)
	if err != nil {
		return n, nil, nil, err
	}
	var ko, ao []usageOption
	for _, k := range keys {
		name := k.Name
		if k.Status == "deleted" {
			name = v.T("usage.deleted_key", k.Name)
		}
		n.keys[k.ID] = name
		ko = append(ko, usageOption{Value: string(k.ID), Label: name})
	}
	for _, a := range accts {
		n.accounts[a.ID] = a.Name
		ao = append(ao, usageOption{Value: string(a.ID), Label: a.Name + " (" + string(a.Platform) + ")"})
	}
	byLabel := func(a, b usageOption) int { return cmp.Compare(strings.ToLower(a.Label), strings.ToLower(b.Label)) }
	slices.SortFunc(ko, byLabel)
	slices.SortFunc(ao, byLabel)
	return n, ko, ao, nil
}

func (n usageNames) key(v *view, id store.KeyID) string {
	if s, ok := n.keys[id]; ok {
		return s
	}
	return v.T("usage.unknown", string(id))
}

func (n usageNames) account(v *view, id store.AccountID) string {
	if s, ok := n.accounts[id]; ok {
		return s
	}
	return v.T("usage.unknown", string(id))
}

// usageMarkSelected marks the option whose value is sel, adding one for an ID
// no longer listed so the form still shows what is filtered.
func usageMarkSelected(opts []usageOption, sel string) []usageOption {
	if sel == "" {
		return opts
	}
	for i := range opts {
		if opts[i].Value == sel {
			opts[i].Selected = true
			return opts
		}
	}
	return append(opts, usageOption{Value: sel, Label: sel, Selected: true})
}

func (c *Console) usageList(w http.ResponseWriter, r *http.Request, v *view) {
	ctx, cancel := ctx(r)
	defer cancel()
	u, bad := c.parseUsageQuery(r.URL.Query())
	names, keys, accts, err := c.loadUsageNames(ctx, v)
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	d := usagePage{Q: u, Keys: usageMarkSelected(keys, u.Key), Accounts: usageMarkSelected(accts, u.Account),
		CSVMax: num(usageCSVMaxRows)}
	if bad != "" {
		d.Error = v.T(bad)
		c.render(w, r, v, http.StatusBadRequest, "usage", d)
		return
	}
	d.CSV = u.link(Prefix+"/usage.csv", nil)
	if u.f.Before != nil {
		d.First = u.link(Prefix+"/usage", nil)
	}

	recs, next, err := c.usageRecords(ctx, u.f, 0)
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	d.Partial = next != nil && len(recs) < usagePageSize
	if next != nil {
		d.Next = u.link(Prefix+"/usage", next)
	}
	for _, rec := range recs {
		d.Lines = append(d.Lines, c.usageLineOf(v, names, rec))
	}

	// Totals: the rollups keep no status, so a status filter is dropped
	// there, and said so.
	sf := store.UsageFilter{KeyID: u.f.KeyID, AccountID: u.f.AccountID, Model: u.f.Model, From: u.f.From, To: u.f.To}
	d.StatusIgnored = u.f.Status != 0
	models, err := c.o.Store.ModelTotals(ctx, sf)
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	for _, m := range models {
		d.Totals.Merge(m.Counters)
		d.Models = append(d.Models, m.Model)
	}
	d.TotalTokens = tokens(d.Totals)
	d.Classes = c.usageClasses(v, models, d.Totals.CostPico)
	if c.o.Prices != nil {
		for _, m := range c.o.Prices.Table().Models() {
			if !slices.Contains(d.Models, m.ID) {
				d.Models = append(d.Models, m.ID)
			}
		}
	}

	if err := c.usageTrend(ctx, v, u.f, &d); err != nil {
		c.fail(w, r, v, err)
		return
	}
	c.render(w, r, v, http.StatusOK, "usage", d)
}

// usageRecords reads one page of f: up to usagePageSize records in at
// most usageScanCalls calls of ScanUsage, each looking at no more than scan
// candidates (0: the store's default). next is where the following page
// starts; nil when no record of f follows.
func (c *Console) usageRecords(ctx context.Context, f store.UsageFilter, scan int) ([]store.UsageRecord, *store.UsageCursor, error) {
	var recs []store.UsageRecord
	var next *store.UsageCursor
	for range usageScanCalls {
		pg, err := c.o.Store.ScanUsage(ctx, f, usagePageSize-len(recs), scan)
		if err != nil {
			return nil, nil, err
		}
		recs = append(recs, pg.Records...)
		next = pg.Next
		if next == nil || len(recs) >= usagePageSize {
			break
		}
		f.Before = next
	}
	return recs, next, nil
}

// usageDays is the daily trend of a filter: one point per day of
// [First, Last], in the console's zone.
type usageDays struct {
	First, Last time.Time
	Labels      []string
	Cost        []float64 // USD
	Requests    []float64
	TokensK     []float64 // thousands
}

// usageDaily reads the filter's daily trend (Trend: whole days, from
// rollups, which keep no status).
// The span is the filter's, in whole days; without a start, the last
// usageTrendDays days up to its end; never more than usageTrendMaxDays.
func (c *Console) usageDaily(ctx context.Context, f store.UsageFilter) (usageDays, error) {
	loc := c.o.Location
	end := f.To
	if end.IsZero() {
		end = c.o.Now()
	}
	var d usageDays
	d.Last = midnight(end.Add(-time.Millisecond), loc)
	d.First = d.Last.AddDate(0, 0, -(usageTrendDays - 1))
	if !f.From.IsZero() {
		d.First = midnight(f.From, loc)
	}
	if earliest := d.Last.AddDate(0, 0, -(usageTrendMaxDays - 1)); d.First.Before(earliest) {
		d.First = earliest
	}
	if d.First.After(d.Last) {
		d.First = d.Last
	}
	index := map[string]int{}
	for day := d.First; !day.After(d.Last); day = day.AddDate(0, 0, 1) {
		index[day.Format(time.DateOnly)] = len(d.Labels)
		d.Labels = append(d.Labels, day.Format("01-02"))
	}
	rows, err := c.o.Store.Trend(ctx, store.Daily, store.UsageFilter{KeyID: f.KeyID, AccountID: f.AccountID,
		Model: f.Model, From: d.First, To: d.Last.AddDate(0, 0, 1)})
	if err != nil {
		return d, err
	}
	d.Cost = make([]float64, len(d.Labels))
	d.Requests = make([]float64, len(d.Labels))
	d.TokensK = make([]float64, len(d.Labels))
	for _, ru := range rows {
		i, ok := index[ru.Period.In(loc).Format(time.DateOnly)]
		if !ok {
			continue
		}
		d.Cost[i] += float64(ru.CostPico) / 1e12
		d.Requests[i] += float64(ru.Requests)
		d.TokensK[i] += float64(tokens(ru.Counters)) / 1000
	}
	return d, nil
}

// usageTrend draws the filter's daily trend into d.
func (c *Console) usageTrend(ctx context.Context, v *view, f store.UsageFilter, d *usagePage) error {
	days, err := c.usageDaily(ctx, f)
	if err != nil {
		return err
	}
	d.TrendTitle = v.T("usage.trend", days.First.Format(time.DateOnly), days.Last.Format(time.DateOnly))
	d.CostLegend = []string{v.T("usage.series.cost")}
	d.CountLegend = []string{v.T("usage.series.requests"), v.T("usage.series.tokens_k")}
	d.CostChart = lineChart(days.Labels, []series{{Name: d.CostLegend[0], Values: days.Cost}}, 640, 220)
	d.CountChart = lineChart(days.Labels, []series{{Name: d.CountLegend[0], Values: days.Requests},
		{Name: d.CountLegend[1], Values: days.TokensK}}, 640, 220)
	return nil
}
