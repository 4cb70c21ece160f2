package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/policy"
	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/memcounters"
)

// keysEnv is a signed-in console with a policy engine on the same store
// and clock, as crs serve wires it.
func keysEnv(t *testing.T) (*env, *policy.Engine) {
	t.Helper()
	e := newEnv(t)
	// 10:00 tomorrow: hours added by a test stay in one day, so daily
	// limits do not reset under it.
	e.clock.Advance(midnight(e.clock.Now(), time.UTC).Add(34 * time.Hour).Sub(e.clock.Now()))
	eng := policy.New(policy.Options{Counters: memcounters.New(e.clock.Now), Spend: e.st.SummarizeUsage, Location: time.UTC, Now: e.clock.Now})
	e.con.o.Policy = eng // before the first request
	// Tests move the clock by hours; the idle sign-out is not theirs.
	e.con.o.IdleTimeout = 1000 * time.Hour
	e.login()
	return e, eng
}

// keysRowOf is the table row of key id in a list page, or "".
func keysRowOf(body string, id store.KeyID) string {
	start := strings.Index(body, `<tr id="key-`+string(id)+`"`)
	if start < 0 {
		return ""
	}
	end := strings.Index(body[start:], "</tr>")
	return body[start : start+end]
}

// keysLimitOf is the limit line of kind in a row.
func keysLimitOf(row, kind string) string {
	start := strings.Index(row, `data-kind="`+kind+`"`)
	if start < 0 {
		return ""
	}
	end := strings.Index(row[start:], "</div>")
	return row[start : start+end]
}

// keysFormValues is a form as the new-key page posts it untouched, plus
// the csrf token and the given fields.
func keysFormValues(csrf string, set map[string]string) url.Values {
	f := url.Values{"csrf": {csrf}, "name": {""}, "description": {""}, "tags": {""}, "models_allow": {""}, "models_deny": {""},
		"concurrency": {""}, "queue": {"default"}, "rate_window": {""}, "rate_requests": {""}, "rate_tokens": {""}, "rate_cost": {""},
		"daily_cost": {""}, "weekly_cost": {""}, "total_cost": {""}, "daily_opus_cost": {""}, "weekly_reset_day": {"1"},
		"weekly_reset_hour": {""}, "expires_at": {""}, "activate_for": {""}, "account": {""},
		"rate_claude": {""}, "rate_openai": {""}, "rate_gemini": {""}, "rate_droid": {""}}
	for k, v := range set {
		f[k] = []string{v}
	}
	return f
}

var newKeyRE = regexp.MustCompile(`id="new-key">(cr_[0-9a-f]{64})<`)

func TestKeysListShowsLimitsAndCountdowns(t *testing.T) {
	e, eng := keysEnv(t)
	ctx := context.Background()
	five := keysUSD("5")
	window, reqs, conc := 5*time.Hour, int64(100), 3
	kv, plain, err := e.svc.CreateKey(ctx, admin.KeyInput{Name: "alice", Tags: []string{"team-a"}, Policy: admin.PolicyPatch{
		RateWindow: &window, RateRequests: &reqs, DailyCost: &five, Concurrency: &conc}})
	if err != nil {
		t.Fatal(err)
	}
	free, _, err := e.svc.CreateKey(ctx, admin.KeyInput{Name: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	sk, err := e.st.GetKey(ctx, kv.ID)
	if err != nil {
		t.Fatal(err)
	}
	// $3 was spent today; one request opened the window 2h50m ago; one
	// holds a slot now.
	if _, err := e.st.InsertUsage(ctx, []store.UsageRecord{{RequestID: "r1", KeyID: kv.ID, AccountID: "a1", Model: "claude-sonnet-4-5",
		Input: 10, CostPico: 3e12, RatedCostPico: 3e12, Status: 200, CreatedAt: e.clock.Now().Add(-time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	if d := eng.Admit(ctx, sk, policy.Request{}); d != nil {
		t.Fatal(d)
	}
	e.clock.Advance(2*time.Hour + 50*time.Minute)
	release, d := eng.Acquire(ctx, sk, policy.Request{RequestID: "r-hold"})
	if d != nil {
		t.Fatal(d)
	}
	defer release()

	status, _, body := e.get("/web/keys")
	if status != 200 || !strings.Contains(body, `id="keys-table"`) {
		t.Fatalf("list: %d\n%.1000s", status, body)
	}
	row := keysRowOf(body, kv.ID)
	if row == "" || keysRowOf(body, free.ID) == "" {
		t.Fatalf("rows missing:\n%s", body)
	}
	if !strings.Contains(row, "alice") || !strings.Contains(row, "team-a") || !strings.Contains(row, "cr_…"+plain[len(plain)-4:]) ||
		!strings.Contains(row, `data-status="active"`) {
		t.Errorf("row lacks name, tag, hint or status:\n%s", row)
	}
	if strings.Contains(body, plain) {
		t.Fatal("the list shows the whole key")
	}
	win := keysLimitOf(row, "window_requests")
	if !strings.Contains(win, `<meter min="0" max="100" value="1"`) || !strings.Contains(win, "1 / 100") || !strings.Contains(win, "resets in 2h 10m") {
		t.Errorf("window line:\n%s", win)
	}
	daily := keysLimitOf(row, "daily")
	if !strings.Contains(daily, `max="5000000000000" value="3000000000000"`) || !strings.Contains(daily, "$3.00 / $5.00") || !strings.Contains(daily, "resets in ") {
		t.Errorf("daily cost line:\n%s", daily)
	}
	if cc := keysLimitOf(row, "concurrency"); !strings.Contains(cc, "1 / 3") {
		t.Errorf("concurrency line:\n%s", cc)
	}
	if keysLimitOf(row, "window_tokens") != "" || keysLimitOf(row, "total") != "" {
		t.Error("a limit the key does not set is shown")
	}
	if !strings.Contains(row, "$3.00") {
		t.Error("the cost column lacks the key's spend")
	}
	if r := keysRowOf(body, free.ID); !strings.Contains(r, "no limits") || strings.Contains(r, "<meter") {
		t.Errorf("a key without limits:\n%s", r)
	}

	// Past the window's end, no window is open.
	e.clock.Advance(2*time.Hour + 11*time.Minute)
	_, _, body = e.get("/web/keys")
	if win := keysLimitOf(keysRowOf(body, kv.ID), "window_requests"); !strings.Contains(win, "no window open") || !strings.Contains(win, `value="0"`) {
		t.Errorf("after the window:\n%s", win)
	}

	// In Chinese.
	e.get("/web/prefs?lang=zh-CN&back=/web/keys")
	_, _, body = e.get("/web/keys")
	if !strings.Contains(body, "每日费用") || !strings.Contains(body, "后重置") || !strings.Contains(body, "无限制") {
		t.Error("the list is not in Chinese")
	}
}

// TestKeysListWithoutPolicy: without a policy engine the limits are listed
// with nothing counted.
func TestKeysListWithoutPolicy(t *testing.T) {
	e := newEnv(t)
	e.login()
	five := keysUSD("5")
	kv, _, err := e.svc.CreateKey(context.Background(), admin.KeyInput{Name: "alice", Policy: admin.PolicyPatch{TotalCost: &five}})
	if err != nil {
		t.Fatal(err)
	}
	status, _, body := e.get("/web/keys")
	if tot := keysLimitOf(keysRowOf(body, kv.ID), "total"); status != 200 || !strings.Contains(tot, "$0 / $5.00") {
		t.Fatalf("%d total line:\n%s", status, tot)
	}
}

func TestKeysSearchTagSortAndTabs(t *testing.T) {
	e, _ := keysEnv(t)
	ctx := context.Background()
	mk := func(name string, tags ...string) store.KeyID {
		kv, _, err := e.svc.CreateKey(ctx, admin.KeyInput{Name: name, Tags: tags})
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Second)
		return kv.ID
	}
	alice, bob, carol := mk("alice", "team-a"), mk("Bob", "team-b"), mk("carol", "team-a", "vip")
	gone := mk("dave", "team-a")
	if err := e.svc.RemoveKey(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.InsertUsage(ctx, []store.UsageRecord{
		{RequestID: "r1", KeyID: bob, AccountID: "a", Model: "m", CostPico: 9e12, RatedCostPico: 9e12, Status: 200, CreatedAt: e.clock.Now()},
		{RequestID: "r2", KeyID: alice, AccountID: "a", Model: "m", CostPico: 1e12, RatedCostPico: 1e12, Status: 200, CreatedAt: e.clock.Now()},
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.TouchKeys(ctx, map[store.KeyID]time.Time{alice: e.clock.Now(), carol: e.clock.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// shown lists the key rows of a page in order.
	shown := func(query string) []store.KeyID {
		t.Helper()
		status, _, body := e.get("/web/keys" + query)
		if status != 200 {
			t.Fatalf("%s: %d", query, status)
		}
		var ids []store.KeyID
		for _, m := range regexp.MustCompile(`<tr id="key-([^"]+)"`).FindAllStringSubmatch(body, -1) {
			ids = append(ids, store.KeyID(m[1]))
		}
		return ids
	}
	for _, c := range []struct {
		query string
		want  []store.KeyID
	}{
		{"", []store.KeyID{carol, bob, alice}}, // newest first
		{"?q=ALI", []store.KeyID{alice}},
		{"?q=team-b", []store.KeyID{bob}},
		{"?q=" + string(carol), []store.KeyID{carol}},
		{"?tag=team-a", []store.KeyID{carol, alice}},
		{"?tag=vip&q=alice", nil},
		{"?sort=name", []store.KeyID{alice, bob, carol}},
		{"?sort=cost", []store.KeyID{bob, alice, carol}},
		{"?sort=last_used", []store.KeyID{alice, carol, bob}},
		{"?sort=bogus", []store.KeyID{carol, bob, alice}},
		{"?deleted=1", []store.KeyID{gone}},
		{"?deleted=1&q=zzz", nil},
	} {
		if got := shown(c.query); !slices.Equal(got, c.want) {
			t.Errorf("%q: got %v, want %v", c.query, got, c.want)
		}
	}
	_, _, body := e.get("/web/keys")
	if !strings.Contains(body, "Keys (3)") || !strings.Contains(body, "Deleted (1)") || !strings.Contains(body, `<option value="vip">`) {
		t.Error("tabs or tag choices missing")
	}
	_, _, body = e.get("/web/keys?q=zzz")
	if !strings.Contains(body, `id="keys-empty"`) || !strings.Contains(body, "No key matches") {
		t.Error("no empty-result notice")
	}
	// The deleted tab offers restore and purge (asking first), not disable.
	row := keysRowOf(mustGet(t, e, "/web/keys?deleted=1"), gone)
	if !strings.Contains(row, `data-action="restore"`) || !strings.Contains(row, `data-action="purge"`) || strings.Contains(row, `data-action="disable"`) ||
		!regexp.MustCompile(`<form[^>]+/purge"[^>]+data-confirm="[^"]+"`).MatchString(row) {
		t.Errorf("deleted row:\n%s", row)
	}
	row = keysRowOf(mustGet(t, e, "/web/keys"), alice)
	if !regexp.MustCompile(`<form[^>]+/remove"[^>]+data-confirm="[^"]+"`).MatchString(row) || !strings.Contains(row, `data-action="disable"`) {
		t.Errorf("active row:\n%s", row)
	}
}

func mustGet(t *testing.T, e *env, path string) string {
	t.Helper()
	status, _, body := e.get(path)
	if status != 200 {
		t.Fatalf("GET %s: %d", path, status)
	}
	return body
}

// keysUSD is dollars as the service takes them.
func keysUSD(s string) admin.USD { return admin.USD{Decimal: decimal.RequireFromString(s)} }

// TestKeysCreateShowsTheKeyOnce: every field of the form reaches the key;
// the key is on the answer and nowhere afterwards.
func TestKeysCreateShowsTheKeyOnce(t *testing.T) {
	e, _ := keysEnv(t)
	ctx := context.Background()
	acct, err := e.svc.AddAccount(ctx, admin.AccountInput{Platform: "claude", Type: "api-key", Name: "main", APIKey: "k", Priority: 50})
	if err != nil {
		t.Fatal(err)
	}
	status, _, body := e.get("/web/keys/new")
	if status != 200 || !strings.Contains(body, `id="key-form"`) {
		t.Fatalf("form: %d", status)
	}
	for _, field := range []string{"name", "description", "tags", "clients", "permissions", "models_allow", "models_deny", "concurrency",
		"queue", "rate_window", "rate_requests", "rate_tokens", "rate_cost", "daily_cost", "weekly_cost", "total_cost", "daily_opus_cost",
		"weekly_reset_day", "weekly_reset_hour", "expires_at", "activate_for", "account", "binding_fallback", "rate_claude", "rate_openai"} {
		if !strings.Contains(body, `name="`+field+`"`) {
			t.Errorf("the form has no field %s", field)
		}
	}
	if !strings.Contains(body, `<option value="`+string(acct.ID)+`"`) {
		t.Error("the binding choices lack the account")
	}
	exp := e.clock.Now().Add(48 * time.Hour).Truncate(time.Minute)
	form := keysFormValues(e.csrf("/web/keys/new"), map[string]string{
		"name": "alice", "description": "for the demo", "tags": "team-a, vip,", "models_allow": "claude-sonnet-4-5\nclaude-haiku*",
		"models_deny": "claude-opus-4-1", "concurrency": "4", "queue": "true", "rate_window": "5h", "rate_requests": "100",
		"rate_tokens": "200000", "rate_cost": "2.5", "daily_cost": "10", "weekly_cost": "$50", "total_cost": "500",
		"daily_opus_cost": "3", "weekly_reset_day": "3", "weekly_reset_hour": "8", "expires_at": exp.Format("2006-01-02T15:04"),
		"account": string(acct.ID), "binding_fallback": "1", "rate_claude": "1.5"})
	form["clients"] = []string{"claude_code"}
	form["permissions"] = []string{"claude", "openai"}
	status, _, body = e.post("/web/keys/new", form)
	m := newKeyRE.FindStringSubmatch(body)
	if status != 200 || m == nil {
		t.Fatalf("create: %d\n%.2000s", status, body)
	}
	plain := m[1]
	if !strings.Contains(body, `data-copy="#new-key"`) || !strings.Contains(body, `data-replace-url="/web/keys"`) {
		t.Error("the key has no copy button, or reloading would send the form again")
	}
	k, err := e.st.KeyByHash(ctx, secret.Hash(plain))
	if err != nil {
		t.Fatal(err)
	}
	p := k.Policy
	if k.Name != "alice" || !slices.Equal(k.Tags, []string{"team-a", "vip"}) || !slices.Equal(k.Clients, []string{"claude_code"}) ||
		k.ExpiresAt == nil || !k.ExpiresAt.Equal(exp) {
		t.Errorf("key = %+v", k)
	}
	if p.Description != "for the demo" || !slices.Equal(p.Permissions, []store.Platform{"claude", "openai"}) ||
		!slices.Equal(p.ModelsAllow, []string{"claude-sonnet-4-5", "claude-haiku*"}) || !slices.Equal(p.ModelsDeny, []string{"claude-opus-4-1"}) ||
		p.Concurrency != 4 || p.Queue == nil || !*p.Queue || p.RateWindow != 5*time.Hour || p.RateRequests != 100 || p.RateTokens != 200000 ||
		p.RateCost != 2.5e12 || p.DailyCost != 10e12 || p.WeeklyCost != 50e12 || p.TotalCost != 500e12 || p.DailyOpusCost != 3e12 ||
		p.WeeklyResetDay != 3 || p.WeeklyResetHour != 8 || p.Account != string(acct.ID) || !p.BindingFallback ||
		len(p.ServiceRates) != 1 || p.ServiceRates["claude"] != 1.5 {
		t.Errorf("policy = %+v", p)
	}
	// Nowhere again: not on the list, the edit page, nor a fresh GET of the form.
	for _, path := range []string{"/web/keys", "/web/keys/" + string(k.ID) + "/edit", "/web/keys/new", "/web"} {
		if body := mustGet(t, e, path); strings.Contains(body, plain) || strings.Contains(body, plain[3:20]) {
			t.Errorf("%s shows the key", path)
		}
	}

	// An activation key: expires a span after its first use.
	status, _, body = e.post("/web/keys/new", keysFormValues(e.csrf("/web/keys/new"), map[string]string{"name": "trial", "activate_for": "30d"}))
	if status != 200 || newKeyRE.FindStringSubmatch(body) == nil {
		t.Fatalf("activation key: %d", status)
	}
	row := keysRowOf(mustGet(t, e, "/web/keys?q=trial"), keysOnlyID(t, e, "trial"))
	if !strings.Contains(row, "30d after first use") {
		t.Errorf("activation key's expiry:\n%s", row)
	}
}

// keysOnlyID is the ID of the key named name.
func keysOnlyID(t *testing.T, e *env, name string) store.KeyID {
	t.Helper()
	ks, err := e.svc.ListKeys(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range ks {
		if k.Name == name {
			return k.ID
		}
	}
	t.Fatalf("no key %q", name)
	return ""
}

// TestKeysCreateRefusesBadInput: the form comes back with the reason next
// to the field, what was typed kept, and no key made.
func TestKeysCreateRefusesBadInput(t *testing.T) {
	e, _ := keysEnv(t)
	past := e.clock.Now().Add(-time.Hour).Format("2006-01-02T15:04")
	soon := e.clock.Now().Add(time.Hour).Format("2006-01-02T15:04")
	for _, c := range []struct {
		name  string
		set   map[string]string
		field string // aria-invalid on this field
		says  string
	}{
		{"no name", map[string]string{"name": " "}, "name", "Name: must not be empty"},
		{"concurrency not a number", map[string]string{"name": "x", "concurrency": "lots"}, "concurrency", "enter a whole number"},
		{"negative concurrency", map[string]string{"name": "x", "concurrency": "-1"}, "concurrency", "Requests at once"},
		{"window without a limit", map[string]string{"name": "x", "rate_window": "5m"}, "rate_window", "a window needs"},
		{"limit without a window", map[string]string{"name": "x", "rate_requests": "10"}, "rate_requests", "needs a rate window"},
		{"bad span", map[string]string{"name": "x", "rate_window": "five", "rate_requests": "1"}, "rate_window", "enter a span"},
		{"bad money", map[string]string{"name": "x", "daily_cost": "ten"}, "daily_cost", "amount in US dollars"},
		{"negative money", map[string]string{"name": "x", "total_cost": "-1"}, "total_cost", "negative"},
		{"past expiry", map[string]string{"name": "x", "expires_at": past}, "expires_at", "not in the future"},
		{"bad time", map[string]string{"name": "x", "expires_at": "tomorrow"}, "expires_at", "enter a date and time"},
		{"both expiries", map[string]string{"name": "x", "expires_at": soon, "activate_for": "30d"}, "activate_for", "not both"},
		{"fallback without binding", map[string]string{"name": "x", "binding_fallback": "1"}, "binding_fallback", "needs a binding"},
		{"unknown account", map[string]string{"name": "x", "account": "acc_nope"}, "account", "no account"},
		{"bad rate", map[string]string{"name": "x", "rate_gemini": "0"}, "rate_gemini", "above 0"},
		{"rate not a number", map[string]string{"name": "x", "rate_gemini": "x2"}, "rate_gemini", "enter a number for Gemini"},
		{"bad model", map[string]string{"name": "x", "models_allow": "claude sonnet!"}, "models_allow", "a model name has only"},
		{"reset hour", map[string]string{"name": "x", "weekly_reset_hour": "24"}, "weekly_reset_hour", "want 0 to 23"},
	} {
		status, _, body := e.post("/web/keys/new", keysFormValues(e.csrf("/web/keys/new"), c.set))
		if status != http.StatusBadRequest || !strings.Contains(body, `id="key-error"`) || !strings.Contains(body, c.says) {
			t.Errorf("%s: %d, want 400 saying %q:\n%s", c.name, status, c.says, errLine(body))
			continue
		}
		if !regexp.MustCompile(`id="f-` + c.field + `"[^>]*aria-invalid="true"`).MatchString(body) {
			t.Errorf("%s: field %s not marked", c.name, c.field)
		}
		if v := c.set["name"]; v != " " && !strings.Contains(body, `id="f-name" required maxlength="100" value="`+v+`"`) {
			t.Errorf("%s: the typed name is lost", c.name)
		}
	}
	// A checkbox value from elsewhere.
	form := keysFormValues(e.csrf("/web/keys/new"), map[string]string{"name": "x"})
	form["clients"] = []string{"curl"}
	if status, _, body := e.post("/web/keys/new", form); status != http.StatusBadRequest || !strings.Contains(body, "is not one of") {
		t.Errorf("unknown client: %d", status)
	}
	if ks, _ := e.svc.ListKeys(context.Background(), true); len(ks) != 0 {
		t.Fatalf("refused forms made %d keys", len(ks))
	}
	// In Chinese, the field is named in Chinese.
	e.get("/web/prefs?lang=zh-CN&back=/web/keys")
	_, _, body := e.post("/web/keys/new", keysFormValues(e.csrf("/web/keys/new"), map[string]string{"name": "x", "concurrency": "lots"}))
	if !strings.Contains(body, "并发请求数：请输入整数") {
		t.Errorf("Chinese error: %s", errLine(body))
	}
}

func errLine(body string) string {
	i := strings.Index(body, `id="key-error"`)
	if i < 0 {
		return "(no error shown)"
	}
	return body[i:min(len(body), i+300)]
}

func TestKeysBatch(t *testing.T) {
	e, _ := keysEnv(t)
	ctx := context.Background()
	status, _, body := e.get("/web/keys/batch")
	if status != 200 || !strings.Contains(body, `name="count"`) || !strings.Contains(body, `name="prefix"`) || !strings.Contains(body, `name="daily_cost"`) {
		t.Fatalf("batch form: %d", status)
	}
	status, _, body = e.post("/web/keys/batch", keysFormValues(e.csrf("/web/keys/batch"), map[string]string{
		"count": "3", "prefix": "class", "tags": "course", "daily_cost": "1"}))
	m := regexp.MustCompile(`(?s)id="batch-keys">(.*?)</pre>`).FindStringSubmatch(body)
	if status != 200 || m == nil {
		t.Fatalf("batch: %d\n%.1500s", status, body)
	}
	lines := strings.Split(m[1], "\n")
	if len(lines) != 3 {
		t.Fatalf("batch shows %d keys: %q", len(lines), m[1])
	}
	for i, l := range lines {
		k, err := e.st.KeyByHash(ctx, secret.Hash(l))
		if err != nil {
			t.Fatalf("line %d %q is no key: %v", i, l, err)
		}
		if want := []string{"class-01", "class-02", "class-03"}[i]; k.Name != want || k.Policy.DailyCost != 1e12 || !slices.Equal(k.Tags, []string{"course"}) {
			t.Errorf("key %d = %s %+v", i, k.Name, k.Policy)
		}
		if !strings.Contains(body, `<tr id="key-`+string(k.ID)+`">`) {
			t.Errorf("the table lacks %s", k.ID)
		}
	}
	if !strings.Contains(body, `data-copy="#batch-keys"`) {
		t.Error("no copy button")
	}
	list := mustGet(t, e, "/web/keys")
	for _, l := range lines {
		if strings.Contains(list, l) {
			t.Fatal("the list shows a batch key")
		}
	}
	// Refused: counts out of range, no prefix, a bad policy field.
	for _, c := range []struct {
		set  map[string]string
		says string
	}{
		{map[string]string{"count": "0", "prefix": "p"}, "enter 1 to 100"},
		{map[string]string{"count": "101", "prefix": "p"}, "enter 1 to 100"},
		{map[string]string{"count": "x", "prefix": "p"}, "enter 1 to 100"},
		{map[string]string{"count": "2", "prefix": ""}, "a name prefix is required"},
		{map[string]string{"count": "2", "prefix": "p", "daily_cost": "-3"}, "negative"},
	} {
		status, _, body := e.post("/web/keys/batch", keysFormValues(e.csrf("/web/keys/batch"), c.set))
		if status != http.StatusBadRequest || !strings.Contains(body, c.says) {
			t.Errorf("%v: %d %s", c.set, status, errLine(body))
		}
	}
	if ks, _ := e.svc.ListKeys(ctx, true); len(ks) != 3 {
		t.Errorf("%d keys after refused batches, want 3", len(ks))
	}
	// Many keys: names keep one width.
	_, _, body = e.post("/web/keys/batch", keysFormValues(e.csrf("/web/keys/batch"), map[string]string{"count": "100", "prefix": "big"}))
	if !strings.Contains(body, ">big-001<") || !strings.Contains(body, ">big-100<") {
		t.Error("100 keys are not named big-001 … big-100")
	}
	if ks, _ := e.svc.ListKeys(ctx, true); len(ks) != 103 {
		t.Errorf("%d keys, want 103", len(ks))
	}
}

func TestKeysEdit(t *testing.T) {
	e, _ := keysEnv(t)
	ctx := context.Background()
	grp, err := e.svc.CreateGroup(ctx, admin.GroupInput{Name: "team", Platform: "claude"})
	if err != nil {
		t.Fatal(err)
	}
	ten, window, reqs, day := keysUSD("10"), time.Hour, int64(50), 5
	exp := e.clock.Now().Add(time.Hour)
	kv, _, err := e.svc.CreateKey(ctx, admin.KeyInput{Name: "alice", Tags: []string{"a"}, ExpiresAt: &exp, Policy: admin.PolicyPatch{
		DailyCost: &ten, RateWindow: &window, RateRequests: &reqs, WeeklyResetDay: &day}})
	if err != nil {
		t.Fatal(err)
	}
	path := "/web/keys/" + string(kv.ID) + "/edit"
	body := mustGet(t, e, path)
	for _, want := range []string{`value="alice"`, `id="f-daily_cost" inputmode="decimal" placeholder="no limit" value="10"`, `value="1h"`, `value="50"`,
		`<option value="5" selected>`, `value="` + exp.Format("2006-01-02T15:04") + `"`, `<option value="group:` + string(grp.ID) + `"`} {
		if !strings.Contains(body, want) {
			t.Errorf("edit form lacks %s", want)
		}
	}
	// Change some fields, clear others.
	form := keysFormValues(e.csrf(path), map[string]string{"name": "alice2", "tags": "b, c", "daily_cost": "", "total_cost": "99",
		"rate_window": "", "rate_requests": "", "weekly_reset_day": "0", "expires_at": "", "account": "group:" + string(grp.ID),
		"queue": "false", "rate_openai": "2"})
	status, loc, _ := e.post(path, form)
	if status != http.StatusSeeOther || loc != "/web/keys" {
		t.Fatalf("save: %d %q", status, loc)
	}
	k, _ := e.st.GetKey(ctx, kv.ID)
	p := k.Policy
	if k.Name != "alice2" || !slices.Equal(k.Tags, []string{"b", "c"}) || k.ExpiresAt != nil || p.DailyCost != 0 || p.TotalCost != 99e12 ||
		p.RateWindow != 0 || p.RateRequests != 0 || p.WeeklyResetDay != 0 || p.Account != "group:"+string(grp.ID) || p.Queue == nil || *p.Queue ||
		p.ServiceRates["openai"] != 2 {
		t.Errorf("after edit: %+v %+v", k, p)
	}
	if body := mustGet(t, e, "/web/keys"); !strings.Contains(body, "Key saved.") {
		t.Error("no notice after saving")
	}

	// A key that has expired can be edited without touching its expiry.
	soon := e.clock.Now().Add(time.Minute)
	old, _, err := e.svc.CreateKey(ctx, admin.KeyInput{Name: "old", ExpiresAt: &soon})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	opath := "/web/keys/" + string(old.ID) + "/edit"
	body = mustGet(t, e, opath)
	shown := regexp.MustCompile(`name="expires_at" id="f-expires_at" type="datetime-local" value="([^"]*)"`).FindStringSubmatch(body)
	if shown == nil || shown[1] == "" {
		t.Fatalf("expired key's form shows no expiry")
	}
	status, _, body = e.post(opath, keysFormValues(e.csrf(opath), map[string]string{"name": "old-renamed", "expires_at": shown[1]}))
	if status != http.StatusSeeOther {
		t.Fatalf("editing an expired key: %d %s", status, errLine(body))
	}
	if k, _ := e.st.GetKey(ctx, old.ID); k.Name != "old-renamed" || k.ExpiresAt == nil || k.ExpiresAt.Sub(soon).Abs() >= time.Millisecond {
		t.Errorf("expired key after edit: %s %v, want expiry %v kept", k.Name, k.ExpiresAt, soon)
	}

	// Refused edits change nothing and keep what was typed.
	status, _, body = e.post(path, keysFormValues(e.csrf(path), map[string]string{"name": "alice3", "rate_tokens": "5"}))
	if status != http.StatusBadRequest || !strings.Contains(body, "needs a rate window") || !strings.Contains(body, `value="alice3"`) {
		t.Errorf("bad edit: %d %s", status, errLine(body))
	}
	if k, _ := e.st.GetKey(ctx, kv.ID); k.Name != "alice2" {
		t.Error("a refused edit changed the key")
	}
	if status, _, _ := e.get("/web/keys/key_nope/edit"); status != http.StatusNotFound {
		t.Errorf("edit of an unknown key: %d", status)
	}
	if status, _, _ := e.post("/web/keys/key_nope/edit", keysFormValues(e.csrf(path), map[string]string{"name": "x"})); status != http.StatusNotFound {
		t.Errorf("save of an unknown key: %d", status)
	}
}

func TestKeysActions(t *testing.T) {
	e, _ := keysEnv(t)
	ctx := context.Background()
	kv, _, err := e.svc.CreateKey(ctx, admin.KeyInput{Name: "alice", Tags: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	base := "/web/keys/" + string(kv.ID) + "/"
	act := func(action, back string) (int, string) {
		t.Helper()
		status, loc, _ := e.post(base+action, url.Values{"csrf": {e.csrf("/web/keys")}, "back": {back}})
		return status, loc
	}
	state := func() (string, error) {
		v, err := e.svc.GetKey(ctx, kv.ID)
		return v.Status, err
	}
	for _, c := range []struct {
		action, back, wantLoc, wantStatus, notice string
	}{
		{"disable", "/web/keys?tag=t", "/web/keys?tag=t", "disabled", "Key disabled."},
		{"enable", "https://evil.example/", "/web/keys", "active", "Key enabled."},
		{"remove", "/web/stats", "/web/keys", "deleted", "Key removed."},
		{"restore", "/web/keys?deleted=1", "/web/keys?deleted=1", "active", "Key restored."},
	} {
		status, loc := act(c.action, c.back)
		if status != http.StatusSeeOther || loc != c.wantLoc {
			t.Errorf("%s: %d %q, want 303 %q", c.action, status, loc, c.wantLoc)
		}
		if st, err := state(); err != nil || st != c.wantStatus {
			t.Errorf("after %s: %s %v, want %s", c.action, st, err, c.wantStatus)
		}
		if body := mustGet(t, e, "/web/keys"); !strings.Contains(body, c.notice) {
			t.Errorf("after %s: no notice %q", c.action, c.notice)
		}
	}
	// A disabled key offers enable.
	act("disable", "")
	if row := keysRowOf(mustGet(t, e, "/web/keys"), kv.ID); !strings.Contains(row, `data-action="enable"`) || !strings.Contains(row, "disabled") {
		t.Errorf("disabled row:\n%s", row)
	}
	// A removed key leaves the list for the deleted tab.
	act("remove", "")
	if keysRowOf(mustGet(t, e, "/web/keys"), kv.ID) != "" || keysRowOf(mustGet(t, e, "/web/keys?deleted=1"), kv.ID) == "" {
		t.Error("a removed key is not (only) under Deleted")
	}
	if status, _ := act("purge", "/web/keys?deleted=1"); status != http.StatusSeeOther {
		t.Fatalf("purge: %d", status)
	}
	if _, err := state(); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after purge: %v", err)
	}
	for _, a := range []string{"disable", "enable", "remove", "restore", "purge"} {
		if status, _ := act(a, ""); status != http.StatusNotFound {
			t.Errorf("%s of a purged key: %d, want 404", a, status)
		}
	}
}

// TestKeysWritesNeedCSRF: every write of the keys pages without the form's
// token is refused and changes nothing.
func TestKeysWritesNeedCSRF(t *testing.T) {
	e, _ := keysEnv(t)
	ctx := context.Background()
	kv, _, err := e.svc.CreateKey(ctx, admin.KeyInput{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	id := string(kv.ID)
	for _, path := range []string{"/web/keys/new", "/web/keys/batch", "/web/keys/" + id + "/edit", "/web/keys/" + id + "/disable",
		"/web/keys/" + id + "/remove", "/web/keys/" + id + "/purge"} {
		for _, tok := range []string{"", "00000000000000000000000000000000"} {
			form := keysFormValues(tok, map[string]string{"name": "mallory", "count": "2", "prefix": "m"})
			if status, _, _ := e.post(path, form); status != http.StatusForbidden {
				t.Errorf("POST %s with csrf %q: %d, want 403", path, tok, status)
			}
		}
	}
	ks, _ := e.svc.ListKeys(ctx, true)
	if len(ks) != 1 || ks[0].Name != "alice" || ks[0].Status != "active" {
		t.Errorf("refused writes changed the keys: %+v", ks)
	}
	// Signed out, the pages send to sign-in.
	out := newClient(e)
	if status, loc, _ := out.get("/web/keys"); status != http.StatusSeeOther || !strings.HasPrefix(loc, "/web/login") {
		t.Errorf("signed out: %d %q", status, loc)
	}
}

// TestKeysPagesHaveNoInlineScript: the pages keep to the CSP.
func TestKeysPagesHaveNoInlineScript(t *testing.T) {
	e, _ := keysEnv(t)
	kv, _, err := e.svc.CreateKey(context.Background(), admin.KeyInput{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, created := e.post("/web/keys/new", keysFormValues(e.csrf("/web/keys/new"), map[string]string{"name": "bob"}))
	pages := map[string]string{"created": created}
	for _, p := range []string{"/web/keys", "/web/keys?deleted=1", "/web/keys/new", "/web/keys/batch", "/web/keys/" + string(kv.ID) + "/edit"} {
		pages[p] = mustGet(t, e, p)
	}
	for p, body := range pages {
		if regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`).MatchString(body) || strings.Contains(body, " style=") || regexp.MustCompile(`\son[a-z]+=`).MatchString(body) {
			t.Errorf("%s has inline script or style", p)
		}
	}
}

func TestKeysSpan(t *testing.T) {
	for _, lang := range []string{langEN, langZH} {
		v := &view{Lang: lang}
		for _, c := range []struct {
			d      time.Duration
			en, zh string
		}{
			{30 * time.Second, "under a minute", "不到 1 分钟"},
			{45 * time.Minute, "45m", "45 分钟"},
			{2*time.Hour + 10*time.Minute + 20*time.Second, "2h 10m", "2 小时 10 分钟"},
			{2*time.Hour + 9*time.Minute + 59*time.Second, "2h 10m", "2 小时 10 分钟"},
			{2 * time.Hour, "2h", "2 小时"},
			{26*time.Hour + 5*time.Minute, "1d 2h", "1 天 2 小时"},
			{72 * time.Hour, "3d", "3 天"},
		} {
			want := c.en
			if lang == langZH {
				want = c.zh
			}
			if got := keysSpan(v, c.d); got != want {
				t.Errorf("%s %v: %q, want %q", lang, c.d, got, want)
			}
		}
	}
}
