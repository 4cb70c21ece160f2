package web

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/policy"
	"github.com/crs-relay/crs/internal/store"
)

// The keys page: every relay key with its limits as progress bars, found
// by search, tag and sort; actions that disable, remove (softly), restore
// and purge a key. Creating and editing keys is keys_form.go.
//
// Keys are few (hundreds at most), so the page lists them all and filters
// in Go; usage and limit counters are read once per key with limits.

func init() {
	page("GET "+Prefix+"/keys", false, func(c *Console) handler { return c.keysList })
	for _, action := range []string{"disable", "enable", "remove", "restore", "purge"} {
		page("POST "+Prefix+"/keys/{id}/"+action, false, func(c *Console) handler { return c.keysAction(action) })
	}
	messages(map[string]msg{
		"keys.title":             {"Keys", "密钥"},
		"keys.tab.active":        {"Keys (%d)", "密钥（%d）"},
		"keys.tab.deleted":       {"Deleted (%d)", "已删除（%d）"},
		"keys.new":               {"New key", "新建密钥"},
		"keys.batch":             {"Create several", "批量创建"},
		"keys.search":            {"Name, tag or ID", "名称、标签或 ID"},
		"keys.tag":               {"Tag", "标签"},
		"keys.tag.all":           {"All tags", "全部标签"},
		"keys.sort":              {"Sort", "排序"},
		"keys.sort.created":      {"Newest first", "最新创建"},
		"keys.sort.name":         {"Name", "名称"},
		"keys.sort.last_used":    {"Recently used", "最近使用"},
		"keys.sort.cost":         {"Highest cost", "费用最高"},
		"keys.col.tags":          {"Tags", "标签"},
		"keys.col.hint":          {"Key", "密钥"},
		"keys.col.created":       {"Created", "创建时间"},
		"keys.col.last_used":     {"Last used", "最近使用"},
		"keys.col.expires":       {"Expires", "到期"},
		"keys.col.deleted":       {"Deleted", "删除时间"},
		"keys.col.limits":        {"Limits", "限制"},
		"keys.col.cost":          {"Cost (all time)", "费用（累计）"},
		"keys.empty":             {"No keys yet. Create one to give someone access.", "还没有密钥。创建一个密钥即可让他人使用。"},
		"keys.empty_deleted":     {"No deleted keys.", "没有已删除的密钥。"},
		"keys.no_match":          {"No key matches.", "没有匹配的密钥。"},
		"keys.no_limits":         {"no limits", "无限制"},
		"keys.after_use":         {"%s after first use", "首次使用后 %s"},
		"keys.in":                {"in %s", "%s后"},
		"keys.resets_in":         {"resets in %s", "%s后重置"},
		"keys.window_idle":       {"no window open; the next request opens one", "当前无窗口，下一个请求开启新窗口"},
		"keys.limits_down":       {"usage unavailable", "用量暂不可用"},
		"keys.limit.window":      {"%s window · %s", "%s 窗口 · %s"},
		"keys.limit.daily":       {"Daily cost", "每日费用"},
		"keys.limit.weekly":      {"Weekly cost (Claude)", "每周费用（Claude）"},
		"keys.limit.total":       {"Total cost", "总费用"},
		"keys.limit.daily_opus":  {"Daily Opus cost", "每日 Opus 费用"},
		"keys.limit.concurrency": {"Requests at once", "并发请求"},
		"keys.status.active":     {"active", "启用"},
		"keys.status.disabled":   {"disabled", "已停用"},
		"keys.status.expired":    {"expired", "已过期"},
		"keys.status.deleted":    {"deleted", "已删除"},
		"keys.action.disable":    {"Disable", "停用"},
		"keys.action.enable":     {"Enable", "启用"},
		"keys.action.remove":     {"Remove", "删除"},
		"keys.action.restore":    {"Restore", "恢复"},
		"keys.action.purge":      {"Purge", "彻底删除"},
		"keys.confirm_remove":    {"Remove key %s? It stops working at once; you can restore it from Deleted.", "删除密钥 %s？它会立即失效，之后可在“已删除”中恢复。"},
		"keys.confirm_purge":     {"Purge key %s for good? This cannot be undone; its usage records stay.", "彻底删除密钥 %s？此操作无法撤销，其用量记录会保留。"},
		"keys.dur.d":             {"%dd", "%d 天"},
		"keys.dur.h":             {"%dh", "%d 小时"},
		"keys.dur.m":             {"%dm", "%d 分钟"},
		"keys.dur.lt_minute":     {"under a minute", "不到 1 分钟"},
		"flash.keys_saved":       {"Key saved.", "密钥已保存。"},
		"flash.keys_disabled":    {"Key disabled.", "密钥已停用。"},
		"flash.keys_enabled":     {"Key enabled.", "密钥已启用。"},
		"flash.keys_removed":     {"Key removed. It is listed under Deleted and can be restored.", "密钥已删除，可在“已删除”中恢复。"},
		"flash.keys_restored":    {"Key restored.", "密钥已恢复。"},
		"flash.keys_purged":      {"Key purged for good.", "密钥已彻底删除。"},
	})
}

// keysPage is the data of keys.html.
type keysPage struct {
	Q, Tag, Sort string
	Deleted      bool
	Active       int // keys not deleted
	Removed      int // soft-deleted keys
	Tags         []string
	Sorts        []keysOption
	Rows         []keysRow
	Back         string // this page's address, where actions return
}

// keysOption is one choice of a select or a group of checkboxes.
type keysOption struct {
	Value, Label string
	On           bool
}

// keysRow is one key of the table.
type keysRow struct {
	admin.KeyView
	StatusText  string
	StatusClass string // badge class: good, warn, bad
	Created     string // the day; the time is in the cell's title
	Expires     string // "—", a time, or "30d after first use"
	ExpiresIn   string // "in 3d 4h" for a coming expiry
	Limits      []keysLimit
	LimitsDown  bool // the counters could not be read
	CostPico    int64
}

// keysLimit is one limit of a key as progress toward it.
type keysLimit struct {
	Kind     string // window_requests, window_tokens, window_cost, daily, weekly, total, daily_opus, concurrency
	Label    string
	Used     string
	Max      string
	Value    int64
	Limit    int64
	High     int64 // the meter turns to "high" from here (80%)
	Resets   string
	ResetsAt string // the absolute time, for the tooltip
	Exceeded bool
}

// keysSorts are the orders the list offers; the first is the default.
var keysSorts = []string{"created", "name", "last_used", "cost"}

func (c *Console) keysList(w http.ResponseWriter, r *http.Request, v *view) {
	ctx, cancel := ctx(r)
	defer cancel()
	q := r.URL.Query()
	d := keysPage{Q: strings.TrimSpace(q.Get("q")), Tag: q.Get("tag"), Sort: q.Get("sort"), Deleted: q.Get("deleted") == "1", Back: r.URL.RequestURI()}
	if !slices.Contains(keysSorts, d.Sort) {
		d.Sort = keysSorts[0]
	}
	for _, s := range keysSorts {
		d.Sorts = append(d.Sorts, keysOption{Value: s, Label: keysSortLabel(v, s), On: s == d.Sort})
	}

	views, err := c.o.API.Service().ListKeys(ctx, true)
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	sum, err := c.o.Store.SummarizeUsage(ctx, store.UsageFilter{})
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	cost := make(map[store.KeyID]int64, len(sum.Keys))
	for _, k := range sum.Keys {
		cost[k.KeyID] = k.CostPico
	}
	// The policy engine reads a key's counters from the stored key.
	var raw map[store.KeyID]store.Key
	if c.o.Policy != nil && !d.Deleted {
		ks, err := c.o.Store.ListKeys(ctx, false)
		if err != nil {
			c.fail(w, r, v, err)
			return
		}
		raw = make(map[store.KeyID]store.Key, len(ks))
		for _, k := range ks {
			raw[k.ID] = k
		}
	}

	now := c.o.Now()
	tags := map[string]bool{}
	lq := strings.ToLower(d.Q)
	for _, k := range views {
		deleted := k.DeletedAt != nil
		if deleted {
			d.Removed++
		} else {
			d.Active++
		}
		if deleted != d.Deleted {
			continue
		}
		for _, t := range k.Tags {
			tags[t] = true
		}
		if d.Tag != "" && !slices.Contains(k.Tags, d.Tag) {
			continue
		}
		if lq != "" && !keysMatch(k, lq) {
			continue
		}
		row := keysRow{KeyView: k, CostPico: cost[k.ID]}
		row.StatusText, row.StatusClass = keysStatus(v, k.Status)
		row.Created = k.CreatedAt.In(c.o.Location).Format("2006-01-02")
		row.Expires = whenPtr(k.ExpiresAt, c.o.Location)
		if k.ExpiresAt == nil && k.ActivateFor != nil {
			row.Expires = v.T("keys.after_use", *k.ActivateFor)
		}
		if k.ExpiresAt != nil && k.ExpiresAt.After(now) {
			row.ExpiresIn = v.T("keys.in", keysSpan(v, k.ExpiresAt.Sub(now)))
		}
		if !deleted {
			row.Limits, row.LimitsDown = c.keysLimits(ctx, v, raw, k, now)
		}
		d.Rows = append(d.Rows, row)
	}
	d.Tags = slices.Sorted(func(yield func(string) bool) {
		for t := range tags {
			if !yield(t) {
				return
			}
		}
	})
	keysSortRows(d.Rows, d.Sort)
	c.render(w, r, v, http.StatusOK, "keys", d)
}

// keysMatch says whether a key's name, ID or one of its tags contains lq
// (lower case).
func keysMatch(k admin.KeyView, lq string) bool {
	if strings.Contains(strings.ToLower(k.Name), lq) || strings.Contains(strings.ToLower(string(k.ID)), lq) {
		return true
	}
	return slices.ContainsFunc(k.Tags, func(t string) bool { return strings.Contains(strings.ToLower(t), lq) })
}

func keysSortRows(rows []keysRow, by string) {
	// Ties fall back to the newest key first, so the order is stable.
	newest := func(a, b keysRow) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), strings.Compare(string(a.ID), string(b.ID)))
	}
	slices.SortFunc(rows, func(a, b keysRow) int {
		switch by {
		case "name":
			return cmp.Or(strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)), newest(a, b))
		case "last_used":
			// Never-used keys go last.
			var ta, tb time.Time
			if a.LastUsedAt != nil {
				ta = *a.LastUsedAt
			}
			if b.LastUsedAt != nil {
				tb = *b.LastUsedAt
			}
			return cmp.Or(tb.Compare(ta), newest(a, b))
		case "cost":
			return cmp.Or(cmp.Compare(b.CostPico, a.CostPico), newest(a, b))
		}
		return newest(a, b)
	})
}

func keysSortLabel(v *view, s string) string {
	switch s {
	case "name":
		return v.T("keys.sort.name")
	case "last_used":
		return v.T("keys.sort.last_used")
	case "cost":
		return v.T("keys.sort.cost")
	}
	return v.T("keys.sort.created")
}

// keysStatus is a status's words and badge class.
func keysStatus(v *view, status string) (string, string) {
	switch status {
	case store.KeyActive:
		return v.T("keys.status.active"), "good"
	case store.KeyDisabled:
		return v.T("keys.status.disabled"), "warn"
	case store.KeyExpired:
		return v.T("keys.status.expired"), "bad"
	case store.KeyDeleted:
		return v.T("keys.status.deleted"), "bad"
	}
	return status, ""
}

// keysLimits lists the limits a key sets, in the order the policy checks
// them, with what is used and when it resets as far as the policy engine
// can tell (nothing used without one). down reports counters that could
// not be read: the limits are listed without usage.
func (c *Console) keysLimits(ctx context.Context, v *view, raw map[store.KeyID]store.Key, k admin.KeyView, now time.Time) (out []keysLimit, down bool) {
	var st policy.KeyStatus
	if sk, ok := raw[k.ID]; ok && c.o.Policy != nil {
		var err error
		if st, err = c.o.Policy.Status(ctx, sk); err != nil {
			c.log.WarnContext(ctx, "console: key limits", "key", k.ID, "err", err)
			down, st = true, policy.KeyStatus{}
		}
	}
	if k.RateWindow != nil {
		var used policy.WindowStatus
		if st.Window != nil {
			used = *st.Window
		}
		resets, at := v.T("keys.window_idle"), ""
		if used.Active && !used.End.IsZero() {
			resets, at = v.T("keys.resets_in", keysSpan(v, used.End.Sub(now))), whenIn(used.End, c.o.Location)
		}
		for _, l := range []struct {
			kind, what    string
			used, limit   int64
			usedTx, limTx string
		}{
			{"window_requests", v.T("common.requests"), used.Requests, k.RateRequests, num(used.Requests), num(k.RateRequests)},
			{"window_tokens", v.T("common.tokens"), used.Tokens, k.RateTokens, num(used.Tokens), num(k.RateTokens)},
			{"window_cost", v.T("common.cost"), used.Cost, keysPico(k.RateCost), usd(used.Cost), usd(keysPico(k.RateCost))},
		} {
			if l.limit > 0 {
				out = append(out, keysLine(l.kind, v.T("keys.limit.window", *k.RateWindow, l.what), l.used, l.limit, l.usedTx, l.limTx, resets, at))
			}
		}
	}
	costs := map[string]policy.CostStatus{}
	for _, cs := range st.Costs {
		costs[cs.Kind] = cs
	}
	for _, l := range []struct {
		kind, label string
		limit       int64
	}{
		{"total", v.T("keys.limit.total"), keysPico(k.TotalCost)},
		{"weekly", v.T("keys.limit.weekly"), keysPico(k.WeeklyCost)},
		{"daily", v.T("keys.limit.daily"), keysPico(k.DailyCost)},
		{"daily_opus", v.T("keys.limit.daily_opus"), keysPico(k.DailyOpusCost)},
	} {
		if l.limit <= 0 {
			continue
		}
		cs := costs[l.kind]
		resets, at := "", ""
		if !cs.ResetAt.IsZero() {
			resets, at = v.T("keys.resets_in", keysSpan(v, cs.ResetAt.Sub(now))), whenIn(cs.ResetAt, c.o.Location)
		}
		out = append(out, keysLine(l.kind, l.label, cs.Used, l.limit, usd(cs.Used), usd(l.limit), resets, at))
	}
	if k.Concurrency > 0 {
		var inFlight int64
		if st.Concurrency != nil {
			inFlight = int64(st.Concurrency.InFlight)
		}
		lim := int64(k.Concurrency)
		out = append(out, keysLine("concurrency", v.T("keys.limit.concurrency"), inFlight, lim, num(inFlight), num(lim), "", ""))
	}
	return out, down
}

func keysLine(kind, label string, used, limit int64, usedTx, limitTx, resets, at string) keysLimit {
	return keysLimit{Kind: kind, Label: label, Used: usedTx, Max: limitTx, Value: min(max(used, 0), limit), Limit: limit,
		High: max(limit*8/10, 1), Resets: resets, ResetsAt: at, Exceeded: used >= limit}
}

// keysPico is a view's dollar amount in picodollars.
func keysPico(u admin.USD) int64 { return u.Shift(12).IntPart() }

// keysSpan says how long d is, to the nearest minute, in at most two
// units: "3d 4h", "2h 10m", "45m".
func keysSpan(v *view, d time.Duration) string {
	if d < time.Minute {
		return v.T("keys.dur.lt_minute")
	}
	d = d.Round(time.Minute)
	days := int(d / (24 * time.Hour))
	hours := int(d % (24 * time.Hour) / time.Hour)
	mins := int(d % time.Hour / time.Minute)
	var parts []string
	switch {
	case days > 0:
		parts = append(parts, v.T("keys.dur.d", days))
		if hours > 0 {
			parts = append(parts, v.T("keys.dur.h", hours))
		}
	case hours > 0:
		parts = append(parts, v.T("keys.dur.h", hours))
		if mins > 0 {
			parts = append(parts, v.T("keys.dur.m", mins))
		}
	default:
		parts = append(parts, v.T("keys.dur.m", mins))
	}
	return strings.Join(parts, " ")
}

// keysAction returns the handler of one row action. Each answers with a
// redirect back to the list it came from (the form's back field) and a
// notice.
func (c *Console) keysAction(action string) handler {
	return func(w http.ResponseWriter, r *http.Request, v *view) {
		ctx, cancel := ctx(r)
		defer cancel()
		svc := c.o.API.Service()
		id := store.KeyID(r.PathValue("id"))
		var err error
		switch action {
		case "disable", "enable":
			off := action == "disable"
			_, err = svc.UpdateKey(ctx, id, admin.KeyPatch{Disabled: &off})
		case "remove":
			err = svc.RemoveKey(ctx, id)
		case "restore":
			err = svc.RestoreKey(ctx, id)
		case "purge":
			err = svc.PurgeKey(ctx, id)
		}
		if err != nil {
			c.fail(w, r, v, err)
			return
		}
		switch action {
		case "disable":
			flash(w, "flash.keys_disabled")
		case "enable":
			flash(w, "flash.keys_enabled")
		case "remove":
			flash(w, "flash.keys_removed")
		case "restore":
			flash(w, "flash.keys_restored")
		case "purge":
			flash(w, "flash.keys_purged")
		}
		http.Redirect(w, r, keysBack(r.PostFormValue("back")), http.StatusSeeOther)
	}
}

// keysBack keeps a return address on the keys list.
func keysBack(back string) string {
	if back != Prefix+"/keys" && !strings.HasPrefix(back, Prefix+"/keys?") {
		return Prefix + "/keys"
	}
	return localNext(back)
}
