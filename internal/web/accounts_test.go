package web

import (
	"bufio"
	"context"
	"errors"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/oauth"
	"github.com/crs-relay/crs/internal/store"
)

// fakeTester stands in for the relay's account test: it records the
// accounts it was asked about and does what run says, in English (the
// relay's words in Chinese are TestAccountTestSpeaksChinese's, with the
// real relay).
type fakeTester struct {
	mu    sync.Mutex
	calls []store.AccountID
	run   func(ctx context.Context, w io.Writer) error
}

func (f *fakeTester) TestAccountSaying(ctx context.Context, id store.AccountID, w io.Writer, _ func(string, ...any) string) error {
	f.mu.Lock()
	f.calls = append(f.calls, id)
	run := f.run
	f.mu.Unlock()
	if run == nil {
		_, err := io.WriteString(w, "hello from "+string(id))
		return err
	}
	return run(ctx, w)
}

func (f *fakeTester) called() []store.AccountID {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]store.AccountID(nil), f.calls...)
}

func (f *fakeTester) setRun(run func(ctx context.Context, w io.Writer) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.run = run
}

// acctEnv is the console env with the service pointed at a fake Claude
// OAuth server and an account tester installed. Both are set before the
// first request reaches the server.
type acctEnv struct {
	*env
	fake   *fakeupstream.OAuth
	tester *fakeTester
}

func newAccountsEnv(t *testing.T) *acctEnv {
	t.Helper()
	e := newEnv(t)
	fake := fakeupstream.StartOAuth(t)
	e.svc.OAuth = admin.OAuthDeps{
		Endpoints: oauth.Endpoints{AuthorizeURL: fake.AuthorizeURL(), TokenURL: fake.TokenURL(), ProfileURL: fake.ProfileURL(), UsageURL: fake.UsageURL()},
		// The tests' proxies are names only: every OAuth request goes
		// direct to the fake on loopback.
		HTTPClient: func(string) (*http.Client, error) { return &http.Client{Timeout: 10 * time.Second}, nil },
	}
	tester := &fakeTester{}
	e.con.SetAccountTester(tester)
	return &acctEnv{env: e, fake: fake, tester: tester}
}

func (e *acctEnv) addKeyAccount(name, proxy string) admin.AccountView {
	e.t.Helper()
	v, err := e.svc.AddAccount(context.Background(), admin.AccountInput{Platform: "claude", Type: "api-key", Name: name,
		APIKey: "sk-ant-api03-" + name, Proxy: proxy, Priority: 50})
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

// approveLink does the browser's part for an authorize link shown on the
// page: the fake issues a code for its challenge and state.
func (e *acctEnv) approveLink(link string) string {
	e.t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		e.t.Fatal(err)
	}
	if base, _, _ := strings.Cut(link, "?"); base != e.fake.AuthorizeURL() {
		e.t.Fatalf("authorize link %s is not the fake's %s", link, e.fake.AuthorizeURL())
	}
	q := u.Query()
	return e.fake.IssueCode(q.Get("code_challenge"), q.Get("state"))
}

// onboard adds a Claude OAuth account through the service.
func (e *acctEnv) onboard(name string) admin.AccountView {
	e.t.Helper()
	ctx := context.Background()
	st, err := e.svc.StartOAuth(ctx, admin.OAuthStart{})
	if err != nil {
		e.t.Fatal(err)
	}
	v, err := e.svc.FinishOAuth(ctx, st.SessionID, admin.OAuthFinish{Code: e.approveLink(st.AuthURL), Name: name, Priority: 50})
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

// row is the table row of account id on page body.
func row(t *testing.T, body string, id store.AccountID) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)<tr id="acct-` + regexp.QuoteMeta(string(id)) + `".*?</tr>`).FindString(body)
	if m == "" {
		t.Fatalf("no row for %s in:\n%.3000s", id, body)
	}
	return m
}

func noInlineScriptOrStyle(t *testing.T, path, body string) {
	t.Helper()
	if regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`).MatchString(body) || strings.Contains(body, " style=") || regexp.MustCompile(`\son[a-z]+=`).MatchString(body) {
		t.Errorf("%s has inline script, style or handlers", path)
	}
}

// TestAccountsListSaysWhyNotRoutable: every account is in the table with
// its status in plain words, its redacted proxy and today's usage.
func TestAccountsListSaysWhyNotRoutable(t *testing.T) {
	e := newAccountsEnv(t)
	ctx := context.Background()
	now := e.clock.Now()
	loc := time.UTC
	at := func(t time.Time) string { return t.In(loc).Format("2006-01-02 15:04:05") }

	ok := e.addKeyAccount("ok", "http://user:hunter2@127.0.0.1:3128")
	cool := e.addKeyAccount("cool", "")
	dead := e.addKeyAccount("dead", "")
	off := e.addKeyAccount("off", "")
	fam := e.addKeyAccount("fam", "")
	coolUntil := now.Add(time.Hour).Truncate(time.Second)
	if err := e.st.SetCooldown(ctx, cool.ID, store.CooldownRateLimited, coolUntil, "429 rate_limit_error"); err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetCooldown(ctx, dead.ID, store.CooldownCredentialDead, now.Add(24*time.Hour), "401 invalid x-api-key"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.UpdateAccount(ctx, off.ID, admin.AccountPatch{Disabled: new(true)}); err != nil {
		t.Fatal(err)
	}
	winEnd := now.Add(4 * time.Hour).Truncate(time.Second)
	opusUntil := now.Add(2 * time.Hour).Truncate(time.Second)
	if err := e.st.SetAccountQuota(ctx, fam.ID, store.Quota{
		Window5h:     store.Window{Start: winEnd.Add(-5 * time.Hour), End: winEnd, Status: store.WindowWarning},
		FamilyLimits: map[string]time.Time{"opus": opusUntil},
	}); err != nil {
		t.Fatal(err)
	}
	// Today's usage of "ok": two requests; one more before midnight does
	// not count.
	today := midnight(now, loc)
	recs := []store.UsageRecord{
		{RequestID: "r1", KeyID: "key_x", AccountID: ok.ID, Model: "claude-sonnet-4-5", Input: 10, CostPico: 300_000_000_000, Status: 200, CreatedAt: now},
		{RequestID: "r2", KeyID: "key_x", AccountID: ok.ID, Model: "claude-sonnet-4-5", Input: 10, CostPico: 200_000_000_000, Status: 200, CreatedAt: today},
		{RequestID: "r3", KeyID: "key_x", AccountID: ok.ID, Model: "claude-sonnet-4-5", Input: 10, CostPico: 9_000_000_000_000, Status: 200, CreatedAt: today.Add(-time.Minute)},
	}
	if _, err := e.st.InsertUsage(ctx, recs); err != nil {
		t.Fatal(err)
	}

	e.login()
	status, _, body := e.get("/web/accounts")
	if status != 200 || !strings.Contains(body, `id="accounts-table"`) {
		t.Fatalf("list: %d\n%.2000s", status, body)
	}
	noInlineScriptOrStyle(t, "/web/accounts", body)
	if !strings.Contains(body, "2 of 5 accounts can serve now.") {
		t.Errorf("serving count wrong:\n%s", regexp.MustCompile(`<p id="acct-serving">.*?</p>`).FindString(body))
	}
	if strings.Contains(body, "hunter2") || strings.Contains(body, "sk-ant-api03") {
		t.Fatal("the page shows a proxy password or an API key")
	}

	r := row(t, body, ok.ID)
	for _, want := range []string{`data-routing="true"`, ">serving<", "http://user:***@127.0.0.1:3128", `class="num acct-today-requests">2<`, `class="num acct-today-cost">$0.50<`,
		`href="/web/accounts/` + string(ok.ID) + `/edit"`, `action="/web/accounts/` + string(ok.ID) + `/disable"`, `action="/web/accounts/` + string(ok.ID) + `/reset"`,
		`data-confirm="Remove this account`, `data-stream="/web/accounts/` + string(ok.ID) + `/test"`} {
		if !strings.Contains(r, want) {
			t.Errorf("ok row lacks %q:\n%s", want, r)
		}
	}
	r = row(t, body, cool.ID)
	for _, want := range []string{`data-routing="false"`, ">rate-limited<", "Rate-limited by the upstream until " + at(coolUntil), "Upstream said: 429 rate_limit_error", `class="num acct-today-requests">0<`} {
		if !strings.Contains(r, want) {
			t.Errorf("cool row lacks %q:\n%s", want, r)
		}
	}
	r = row(t, body, dead.ID)
	if !strings.Contains(r, ">credential dead<") || !strings.Contains(r, "refused the credential") || !strings.Contains(r, "401 invalid x-api-key") || !strings.Contains(r, "badge bad") {
		t.Errorf("dead row:\n%s", r)
	}
	r = row(t, body, off.ID)
	if !strings.Contains(r, ">disabled<") || !strings.Contains(r, "Disabled by an admin") || !strings.Contains(r, `/enable"`) || strings.Contains(r, `/disable"`) {
		t.Errorf("disabled row:\n%s", r)
	}
	r = row(t, body, fam.ID)
	for _, want := range []string{`data-routing="true"`, ">partly limited<", "Model family opus is rate-limited until " + at(opusUntil) + "; other models are still served.",
		"The upstream warns that the 5-hour window is near its limit.", `<meter class="acct-window" min="0" max="100" value="20"></meter> 5-hour window: 20% elapsed, resets at ` + at(winEnd)} {
		if !strings.Contains(r, want) {
			t.Errorf("family-limited row lacks %q:\n%s", want, r)
		}
	}

	// The same page in Chinese.
	e.get("/web/prefs?lang=zh-CN&back=/web/accounts")
	_, _, body = e.get("/web/accounts")
	if r := row(t, body, cool.ID); !strings.Contains(r, "被上游限流，直到 "+at(coolUntil)) || !strings.Contains(r, "已限流") {
		t.Errorf("Chinese row:\n%s", r)
	}
}

// TestAccountsListRejectedWindow: a used-up 5-hour window keeps an
// otherwise active account from serving and says until when.
func TestAccountsListRejectedWindow(t *testing.T) {
	e := newAccountsEnv(t)
	ctx := context.Background()
	a := e.addKeyAccount("spent", "")
	end := e.clock.Now().Add(30 * time.Minute).Truncate(time.Second)
	if err := e.st.SetAccountQuota(ctx, a.ID, store.Quota{Window5h: store.Window{Start: end.Add(-5 * time.Hour), End: end, Status: store.WindowRejected}}); err != nil {
		t.Fatal(err)
	}
	e.login()
	_, _, body := e.get("/web/accounts")
	r := row(t, body, a.ID)
	if !strings.Contains(r, `data-routing="false"`) || !strings.Contains(r, "used up; no requests until it resets at "+end.Format("2006-01-02 15:04:05")) ||
		!strings.Contains(r, "90% elapsed") || !strings.Contains(body, "0 of 1 accounts") {
		t.Errorf("rejected window row:\n%s", r)
	}
}

func TestAccountsListEmptyAndSignedOut(t *testing.T) {
	e := newEnv(t)
	if status, loc, _ := e.get("/web/accounts"); status != http.StatusSeeOther || !strings.HasPrefix(loc, "/web/login") {
		t.Fatalf("signed out: %d %q", status, loc)
	}
	e.login()
	status, _, body := e.get("/web/accounts")
	if status != 200 || !strings.Contains(body, `id="acct-none"`) || strings.Contains(body, "data-stream") {
		t.Fatalf("empty list: %d\n%.1500s", status, body)
	}
}

func TestAccountAddAPIKey(t *testing.T) {
	e := newAccountsEnv(t)
	ctx := context.Background()
	e.login()
	status, _, body := e.get("/web/accounts/new?platform=openai")
	if status != 200 || !strings.Contains(body, `id="acct-new-form"`) || !strings.Contains(body, `<option value="openai" selected>`) {
		t.Fatalf("form: %d\n%.1500s", status, body)
	}
	noInlineScriptOrStyle(t, "/web/accounts/new", body)
	tok := e.csrf("/web/accounts/new")
	form := url.Values{"csrf": {tok}, "platform": {"openai"}, "name": {"oai main"}, "api_key": {"sk-proj-secret123"},
		"base_url": {"https://api.openai.com/v1"}, "priority": {"7"}, "proxy": {"socks5://a:pw@127.0.0.1:1080"}}

	// Without the token nothing is added.
	noTok := url.Values{}
	for k, v := range form {
		if k != "csrf" {
			noTok[k] = v
		}
	}
	if status, _, _ := e.post("/web/accounts/new", noTok); status != http.StatusForbidden {
		t.Errorf("add without csrf: %d, want 403", status)
	}
	// Bad input shows the form again with the field named and the typed
	// values, but never the key.
	bad := url.Values{}
	for k, v := range form {
		bad[k] = v
	}
	bad.Set("priority", "0")
	status, _, body = e.post("/web/accounts/new", bad)
	if status != http.StatusBadRequest || !strings.Contains(body, `id="acct-form-error"`) || !strings.Contains(body, "Priority: ") ||
		!strings.Contains(body, `value="oai main"`) || strings.Contains(body, "sk-proj-secret123") {
		t.Fatalf("bad priority: %d\n%.2000s", status, body)
	}
	bad.Set("priority", "x")
	if status, _, body := e.post("/web/accounts/new", bad); status != http.StatusBadRequest || !strings.Contains(body, "want a whole number") {
		t.Fatalf("priority x: %d", status)
	}
	bad.Set("priority", "7")
	bad.Set("platform", "droid")
	if status, _, body := e.post("/web/accounts/new", bad); status != http.StatusBadRequest || !strings.Contains(body, "Platform: ") {
		t.Fatalf("droid: %d\n%.1000s", status, body)
	}
	if as, _ := e.svc.ListAccounts(ctx); len(as) != 0 {
		t.Fatalf("refused forms added %d accounts", len(as))
	}

	status, loc, _ := e.post("/web/accounts/new", form)
	if status != http.StatusSeeOther || loc != "/web/accounts" {
		t.Fatalf("add: %d %q", status, loc)
	}
	as, _ := e.svc.ListAccounts(ctx)
	if len(as) != 1 || as[0].Name != "oai main" || as[0].Platform != store.PlatformOpenAI || as[0].Type != store.TypeAPIKey ||
		as[0].Priority != 7 || as[0].BaseURL != "https://api.openai.com/v1" || as[0].Proxy != "socks5://a:***@127.0.0.1:1080" || !as[0].HasSecret {
		t.Fatalf("stored: %+v", as)
	}
	stored, _ := e.st.GetAccount(ctx, as[0].ID)
	if strings.Contains(string(stored.SealedSecret), "sk-proj-secret123") {
		t.Fatal("the API key is stored in the clear")
	}
	_, _, body = e.get("/web/accounts")
	if !strings.Contains(body, "Account added.") || !strings.Contains(row(t, body, as[0].ID), "oai main") {
		t.Error("no notice or no row after adding")
	}
}

func TestAccountEdit(t *testing.T) {
	e := newAccountsEnv(t)
	ctx := context.Background()
	a := e.addKeyAccount("k1", "http://u:pw@127.0.0.1:3128")
	e.login()
	editPath := "/web/accounts/" + string(a.ID) + "/edit"
	status, _, body := e.get(editPath)
	if status != 200 || !strings.Contains(body, `value="k1"`) || !strings.Contains(body, "keep: http://u:***@127.0.0.1:3128") ||
		!strings.Contains(body, `id="acct-schedulable" value="1" checked`) || !strings.Contains(body, `id="acct-daily-quota"`) || strings.Contains(body, "pw@") {
		t.Fatalf("edit form: %d\n%.3000s", status, body)
	}
	noInlineScriptOrStyle(t, editPath, body)
	tok := e.csrf(editPath)
	form := url.Values{"csrf": {tok}, "name": {"k1 renamed"}, "priority": {"3"}, "base_url": {"https://gw.example.com"},
		"models": {"claude-sonnet-4-5, claude-opus-4=claude-opus-4-1"}, "auto_pause": {"1"}, "serial_queue": {"1"},
		"unified_ua": {"1"}, "intercept_warmup": {"1"}, "max_concurrency": {"4"}, "daily_quota": {"12.50"}}
	// schedulable left unchecked: the account leaves scheduling.
	status, loc, _ := e.post(editPath, form)
	if status != http.StatusSeeOther || loc != "/web/accounts/"+string(a.ID) {
		t.Fatalf("save: %d %q", status, loc)
	}
	got, _ := e.svc.GetAccount(ctx, a.ID)
	if got.Name != "k1 renamed" || got.Priority != 3 || got.BaseURL != "https://gw.example.com" || got.Schedulable ||
		!got.AutoPauseOnWarning || !got.SerialQueue || !got.UnifiedUserAgent || !got.InterceptWarmup || got.MaxConcurrency != 4 ||
		got.DailyQuota.String() != "12.5" || len(got.Models) != 2 || got.Models["claude-opus-4"] != "claude-opus-4-1" ||
		got.Proxy != "http://u:***@127.0.0.1:3128" {
		t.Fatalf("after save: %+v", got)
	}
	stored, _ := e.st.GetAccount(ctx, a.ID)
	oldSecret := string(stored.SealedSecret)

	// A new proxy and key replace the old; then proxy_clear goes direct.
	form.Set("proxy", "socks5://n:pw2@10.0.0.1:1080")
	form.Set("api_key", "sk-ant-api03-new")
	if status, _, _ := e.post(editPath, form); status != http.StatusSeeOther {
		t.Fatalf("save proxy: %d", status)
	}
	got, _ = e.svc.GetAccount(ctx, a.ID)
	stored, _ = e.st.GetAccount(ctx, a.ID)
	if got.Proxy != "socks5://n:***@10.0.0.1:1080" || string(stored.SealedSecret) == oldSecret {
		t.Fatalf("proxy/key not replaced: %+v", got)
	}
	form.Del("proxy")
	form.Del("api_key")
	form.Set("proxy_clear", "1")
	form.Set("models", "")
	form.Set("schedulable", "1")
	if status, _, _ := e.post(editPath, form); status != http.StatusSeeOther {
		t.Fatalf("save clear: %d", status)
	}
	got, _ = e.svc.GetAccount(ctx, a.ID)
	if got.Proxy != "" || got.Models != nil || !got.Schedulable {
		t.Fatalf("after clearing: %+v", got)
	}

	// Bad input: the form again with the field named by its label;
	// nothing changes.
	labels := map[string]string{"models": "Models", "daily_quota": "Daily quota", "priority": "Priority", "max_concurrency": "Max concurrent requests", "base_url": "Base URL"}
	for field, val := range map[string]string{"models": "bad model", "daily_quota": "lots", "priority": "101", "max_concurrency": "-1", "base_url": "ftp://x"} {
		bad := url.Values{}
		for k, v := range form {
			bad[k] = v
		}
		bad.Set(field, val)
		status, _, body := e.post(editPath, bad)
		if status != http.StatusBadRequest || !strings.Contains(body, labels[field]+": ") || !strings.Contains(body, `id="acct-edit-form"`) {
			t.Errorf("bad %s: %d\n%.1500s", field, status, regexp.MustCompile(`(?s)<p class="error".*?</p>`).FindString(body))
		}
	}
	if after, _ := e.svc.GetAccount(ctx, a.ID); after.Priority != 3 || after.Name != "k1 renamed" {
		t.Fatalf("a refused form changed the account: %+v", after)
	}
	form.Del("csrf")
	form.Set("name", "sneaky")
	if status, _, _ := e.post(editPath, form); status != http.StatusForbidden {
		t.Errorf("save without csrf: %d", status)
	}
	if after, _ := e.svc.GetAccount(ctx, a.ID); after.Name != "k1 renamed" {
		t.Fatal("a CSRF-less form changed the account")
	}
	if status, _, _ := e.get("/web/accounts/acc_nope/edit"); status != http.StatusNotFound {
		t.Errorf("edit unknown: %d", status)
	}
	if status, _, _ := e.post("/web/accounts/acc_nope/edit", url.Values{"csrf": {tok}, "name": {"x"}}); status != http.StatusNotFound {
		t.Errorf("save unknown: %d", status)
	}
}

func TestAccountActions(t *testing.T) {
	e := newAccountsEnv(t)
	ctx := context.Background()
	a := e.addKeyAccount("act", "")
	b := e.addKeyAccount("bound", "")
	if _, _, err := e.svc.CreateKey(ctx, admin.KeyInput{Name: "pinned", Policy: admin.PolicyPatch{Account: new(string(b.ID))}}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetCooldown(ctx, a.ID, store.CooldownTransient, e.clock.Now().Add(time.Hour), "529 overloaded"); err != nil {
		t.Fatal(err)
	}
	e.login()
	tok := e.csrf("/web/accounts")
	base := "/web/accounts/" + string(a.ID)
	statusOf := func(id store.AccountID) string {
		v, err := e.svc.GetAccount(ctx, id)
		if err != nil {
			return err.Error()
		}
		return v.Status
	}

	// Every action refuses a form without the token and changes nothing.
	for _, act := range []string{"disable", "reset", "remove", "enable"} {
		if status, _, _ := e.post(base+"/"+act, url.Values{}); status != http.StatusForbidden {
			t.Errorf("%s without csrf: %d", act, status)
		}
	}
	if statusOf(a.ID) != "cooling_down" {
		t.Fatalf("CSRF-less actions changed the account: %s", statusOf(a.ID))
	}

	status, loc, _ := e.post(base+"/reset", url.Values{"csrf": {tok}, "back": {base}})
	if status != http.StatusSeeOther || loc != base || statusOf(a.ID) != "active" {
		t.Fatalf("reset: %d %q %s", status, loc, statusOf(a.ID))
	}
	status, loc, _ = e.post(base+"/disable", url.Values{"csrf": {tok}, "back": {"https://evil.example/"}})
	if status != http.StatusSeeOther || loc != "/web/accounts" || statusOf(a.ID) != "disabled" {
		t.Fatalf("disable: %d %q %s", status, loc, statusOf(a.ID))
	}
	if _, _, body := e.get("/web/accounts"); !strings.Contains(body, "Account disabled.") {
		t.Error("no notice after disabling")
	}
	if status, _, _ := e.post(base+"/enable", url.Values{"csrf": {tok}}); status != http.StatusSeeOther || statusOf(a.ID) != "active" {
		t.Fatalf("enable: %d %s", status, statusOf(a.ID))
	}

	// A bound account stays, and the page says which keys hold it.
	status, _, body := e.post("/web/accounts/"+string(b.ID)+"/remove", url.Values{"csrf": {tok}})
	if status != http.StatusConflict || !strings.Contains(body, "cannot be removed: keys key_") {
		t.Fatalf("remove bound: %d\n%.1000s", status, body)
	}
	if status, loc, _ := e.post(base+"/remove", url.Values{"csrf": {tok}}); status != http.StatusSeeOther || loc != "/web/accounts" {
		t.Fatalf("remove: %d %q", status, loc)
	}
	if _, err := e.svc.GetAccount(ctx, a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("removed account still there: %v", err)
	}
	for _, act := range []string{"disable", "enable", "reset", "remove"} {
		if status, _, _ := e.post("/web/accounts/acc_nope/"+act, url.Values{"csrf": {tok}}); status != http.StatusNotFound {
			t.Errorf("%s unknown: %d", act, status)
		}
	}
}

var oauthLinkRE = regexp.MustCompile(`<a href="([^"]+)" id="oauth-link" target="_blank" rel="noopener noreferrer"`)

func hiddenField(t *testing.T, body, name string) string {
	t.Helper()
	m := regexp.MustCompile(`name="` + name + `" value="([^"]*)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no field %s in:\n%.3000s", name, body)
	}
	return html.UnescapeString(m[1])
}

// TestAccountOAuthWizard: the whole browser flow against the fake Claude
// OAuth server: start, open the link, paste the code, the account exists.
func TestAccountOAuthWizard(t *testing.T) {
	e := newAccountsEnv(t)
	ctx := context.Background()
	e.login()
	status, _, body := e.get("/web/accounts/oauth")
	if status != 200 || !strings.Contains(body, `id="oauth-start-form"`) {
		t.Fatalf("wizard: %d", status)
	}
	noInlineScriptOrStyle(t, "/web/accounts/oauth", body)
	tok := e.csrf("/web/accounts/oauth")
	start := url.Values{"csrf": {tok}, "platform": {"claude"}, "kind": {"oauth"}, "name": {"max one"}, "priority": {"9"}, "proxy": {"http://u:pw@127.0.0.1:3128"}}

	if status, _, _ := e.post("/web/accounts/oauth", url.Values{"platform": {"claude"}}); status != http.StatusForbidden {
		t.Errorf("start without csrf: %d", status)
	}
	bad := url.Values{"csrf": {tok}, "platform": {"claude"}, "proxy": {"ftp://nope"}, "priority": {"9"}}
	if status, _, body := e.post("/web/accounts/oauth", bad); status != http.StatusBadRequest || !strings.Contains(body, "Proxy: ") || !strings.Contains(body, `id="oauth-start-form"`) {
		t.Fatalf("bad proxy: %d", status)
	}
	bad.Set("proxy", "")
	bad.Set("platform", "droid")
	if status, _, body := e.post("/web/accounts/oauth", bad); status != http.StatusBadRequest || !strings.Contains(body, "Platform: ") {
		t.Fatalf("bad platform: %d", status)
	}

	status, _, body = e.post("/web/accounts/oauth", start)
	m := oauthLinkRE.FindStringSubmatch(body)
	if status != 200 || m == nil {
		t.Fatalf("start: %d\n%.3000s", status, body)
	}
	noInlineScriptOrStyle(t, "step two", body)
	if strings.Contains(body, "pw@") {
		t.Fatal("step two carries the proxy's password")
	}
	link := html.UnescapeString(m[1])
	session := hiddenField(t, body, "session_id")
	if !strings.HasPrefix(session, "oas_") || !strings.Contains(body, `id="oauth-code"`) {
		t.Fatalf("step two lacks the session or the code field")
	}
	finish := url.Values{"csrf": {tok}, "session_id": {session}, "auth_url": {hiddenField(t, body, "auth_url")}, "expires_at": {hiddenField(t, body, "expires_at")},
		"platform": {hiddenField(t, body, "platform")}, "name": {hiddenField(t, body, "name")}, "priority": {hiddenField(t, body, "priority")}}

	// A typo does not cost the session: step two again, same session.
	finish.Set("code", "not a code at all")
	status, _, body = e.post("/web/accounts/oauth/finish", finish)
	if status != http.StatusBadRequest || !strings.Contains(body, "code:") || hiddenField(t, body, "session_id") != session || !oauthLinkRE.MatchString(body) {
		t.Fatalf("typo: %d\n%.3000s", status, body)
	}
	finish.Set("code", e.approveLink(link))
	if status, _, _ := e.post("/web/accounts/oauth/finish", url.Values{"session_id": {session}, "code": {finish.Get("code")}}); status != http.StatusForbidden {
		t.Errorf("finish without csrf: %d", status)
	}
	status, loc, _ := e.post("/web/accounts/oauth/finish", finish)
	if status != http.StatusSeeOther || loc != "/web/accounts" {
		t.Fatalf("finish: %d %q", status, loc)
	}
	as, _ := e.svc.ListAccounts(ctx)
	if len(as) != 1 || as[0].Name != "max one" || as[0].Type != store.TypeOAuth || as[0].Plan != "max" || as[0].Priority != 9 ||
		as[0].Proxy != "http://u:***@127.0.0.1:3128" {
		t.Fatalf("onboarded: %+v", as)
	}
	_, _, body = e.get("/web/accounts")
	if !strings.Contains(body, "Subscription account added.") || !strings.Contains(row(t, body, as[0].ID), "plan max") {
		t.Error("no notice or plan after onboarding")
	}
	// The session is spent.
	status, _, body = e.post("/web/accounts/oauth/finish", finish)
	if status != http.StatusBadRequest || !strings.Contains(body, "Onboarding session: ") {
		t.Fatalf("reused session: %d", status)
	}

	// The server refusing the code (issued for another challenge) spends
	// the session: the page says so and offers only a new start.
	_, _, body = e.post("/web/accounts/oauth", start)
	finish.Set("session_id", hiddenField(t, body, "session_id"))
	finish.Set("code", e.fake.IssueCode(strings.Repeat("A", 43), strings.Repeat("B", 43)))
	status, _, body = e.post("/web/accounts/oauth/finish", finish)
	if status != http.StatusBadGateway || !strings.Contains(body, "Codes work once") || strings.Contains(body, `name="session_id"`) || !strings.Contains(body, `id="oauth-again"`) {
		t.Fatalf("refused code: %d\n%.2000s", status, body)
	}
	if as, _ := e.svc.ListAccounts(ctx); len(as) != 1 {
		t.Fatalf("a refused code added an account: %d", len(as))
	}
}

func TestAccountDetailLiveUsage(t *testing.T) {
	e := newAccountsEnv(t)
	ctx := context.Background()
	e.fake.SetUsage(`{"five_hour":{"utilization":42.5,"resets_at":"2030-01-02T03:04:05Z"},"seven_day":{"utilization":77,"resets_at":"2030-01-05T00:00:00Z"},"seven_day_opus":{"utilization":0,"resets_at":null}}`)
	sub := e.onboard("sub")
	key := e.addKeyAccount("plain", "")
	e.login()

	path := "/web/accounts/" + string(sub.ID)
	status, _, body := e.get(path)
	if status != 200 || !strings.Contains(body, `id="acct-usage"`) {
		t.Fatalf("detail: %d\n%.2000s", status, body)
	}
	noInlineScriptOrStyle(t, path, body)
	for _, want := range []string{
		`<tr id="acct-usage-5h"><th>5 hours</th><td><meter min="0" max="100" low="70" high="90" optimum="0" value="42.5">`, "resets 2030-01-02 03:04:05",
		`<tr id="acct-usage-7d"><th>7 days</th><td><meter min="0" max="100" low="70" high="90" optimum="0" value="77.0">`,
		`id="acct-usage-7d-opus"`, "not started", `data-stream="` + path + `/test"`, `id="acct-test-output"`, `id="acct-` + string(sub.ID) + `"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("detail lacks %q", want)
		}
	}
	if strings.Contains(body, "acct-usage-7d-sonnet") {
		t.Error("a window the endpoint did not report is shown")
	}

	// An API-key account has no live usage.
	_, _, body = e.get("/web/accounts/" + string(key.ID))
	if !strings.Contains(body, "Claude subscription (OAuth) accounts only") || strings.Contains(body, "<meter min=\"0\" max=\"100\" low") {
		t.Errorf("api-key detail shows usage")
	}
	// A refused token is a message on the page, not an error page.
	a, _ := e.st.GetAccount(ctx, sub.ID)
	cred, _ := oauth.OpenCredential(e.svc.Box, a.SealedSecret)
	e.fake.Revoke(cred.RefreshToken)
	e.clock.Advance(admin.QuotaCacheTTL + time.Second)
	status, _, body = e.get(path)
	if status != 200 || !strings.Contains(body, `id="acct-usage-error"`) || !strings.Contains(body, "Could not read the subscription") || strings.Contains(body, cred.AccessToken) {
		t.Fatalf("revoked: %d\n%.2000s", status, regexp.MustCompile(`(?s)<section class="card" id="acct-usage">.*?</section>`).FindString(body))
	}
	if status, _, _ := e.get("/web/accounts/acc_nope"); status != http.StatusNotFound {
		t.Errorf("unknown detail: %d", status)
	}
}

// TestAccountTestStreams: the test's output reaches the browser as it is
// written, not when the test ends.
func TestAccountTestStreams(t *testing.T) {
	e := newAccountsEnv(t)
	a := e.addKeyAccount("t", "")
	release := make(chan struct{})
	e.tester.setRun(func(ctx context.Context, w io.Writer) error {
		io.WriteString(w, "first chunk\n")
		// Released only once the browser has read the first chunk; an
		// unflushed stream never gets there.
		select {
		case <-release:
		case <-time.After(5 * time.Second):
			return errors.New("the first chunk never reached the browser")
		case <-ctx.Done():
			return ctx.Err()
		}
		io.WriteString(w, "second chunk\n")
		return nil
	})
	e.login()
	tok := e.csrf("/web/accounts")
	post := func(path, token string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, nil)
		if token != "" {
			req.Header.Set("X-CSRF-Token", token)
		}
		resp, err := e.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := post("/web/accounts/"+string(a.ID)+"/test", tok)
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("test: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func() string {
		select {
		case l := <-lines:
			return l
		case <-time.After(5 * time.Second):
			t.Fatal("no streamed line within 5s: the output is not flushed")
			return ""
		}
	}
	if l := next(); !strings.Contains(l, "Testing account t") {
		t.Fatalf("first line %q", l)
	}
	if l := next(); l != "first chunk" {
		t.Fatalf("second line %q", l)
	}
	close(release)
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	if got := strings.Join(rest, "\n"); !strings.Contains(got, "second chunk") || !strings.Contains(got, "The account works.") {
		t.Fatalf("rest %q", got)
	}

	// A failure is said on the page.
	e.tester.setRun(func(context.Context, io.Writer) error { return errors.New("upstream answered 401") })
	resp2 := post("/web/accounts/"+string(a.ID)+"/test", tok)
	b, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if !strings.Contains(string(b), "Test failed: upstream answered 401") {
		t.Fatalf("failure: %q", b)
	}
	calls := len(e.tester.called())
	// No token, or no such account: the tester is not run.
	if r := post("/web/accounts/"+string(a.ID)+"/test", ""); r.StatusCode != http.StatusForbidden {
		t.Errorf("test without csrf: %d", r.StatusCode)
	} else {
		r.Body.Close()
	}
	if r := post("/web/accounts/acc_nope/test", tok); r.StatusCode != http.StatusNotFound {
		t.Errorf("test unknown: %d", r.StatusCode)
	} else {
		r.Body.Close()
	}
	if n := len(e.tester.called()); n != calls || calls != 2 {
		t.Fatalf("tester ran %d times, want 2", n)
	}
}

// TestAccountTestWithoutTester: a console without a tester shows no Test
// button and refuses the route.
func TestAccountTestWithoutTester(t *testing.T) {
	e := newEnv(t)
	a, err := e.svc.AddAccount(context.Background(), admin.AccountInput{Platform: "claude", Type: "api-key", Name: "x", APIKey: "sk-ant-api03-x", Priority: 50})
	if err != nil {
		t.Fatal(err)
	}
	e.login()
	_, _, body := e.get("/web/accounts")
	if strings.Contains(body, "data-stream") || strings.Contains(body, "acct-test-output") {
		t.Error("Test button shown without a tester")
	}
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/web/accounts/"+string(a.ID)+"/test", nil)
	req.Header.Set("X-CSRF-Token", e.csrf("/web/accounts"))
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotImplemented {
		t.Errorf("test without a tester: %d", resp.StatusCode)
	}
}
