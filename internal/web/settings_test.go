package web

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/pricing"
)

// newSettingsEnv is a signed-in console with a live price table, as the
// server wires it.
func newSettingsEnv(t *testing.T) (*env, *pricing.Live) {
	t.Helper()
	e := newEnv(t)
	live := pricing.NewLive(e.st)
	if _, err := live.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.con.o.Prices = live
	e.login()
	return e, live
}

// upload posts a price table file to the settings page's form.
func (e *env) upload(csrf, filename string, data []byte) (int, string, string) {
	e.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if csrf != "" {
		mw.WriteField("csrf", csrf)
	}
	if filename != "" {
		fw, _ := mw.CreateFormFile("file", filename)
		fw.Write(data)
	}
	mw.Close()
	resp, err := e.hc.Post(e.srv.URL+"/web/settings/prices", mw.FormDataContentType(), &body)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

// TestSettingsServerSwitches: the start-up settings show with their
// variables' names once the server reports them.
func TestSettingsServerSwitches(t *testing.T) {
	e, _ := newSettingsEnv(t)
	status, _, body := e.get("/web/settings")
	if status != 200 || !strings.Contains(body, `id="settings-env-unknown"`) {
		t.Fatalf("settings without a view: %d", status)
	}
	e.con.SetSettingsView(func() SettingsInfo {
		return SettingsInfo{ClaudeCodeOnly: true, ConcurrencyQueueTimeout: 30 * time.Second, UserMessageQueueDelay: 200 * time.Millisecond,
			UserMessageQueueTimeout: time.Minute, StickyTTL: time.Hour, Timezone: "Asia/Shanghai"}
	})
	_, _, body = e.get("/web/settings")
	for _, want := range []string{
		`<tr data-env="CLAUDE_CODE_ONLY"><th>Subscription accounts serve only Claude Code</th><td>on</td>`,
		`<tr data-env="CONCURRENCY_QUEUE"><th>Requests over a key&#39;s concurrency limit wait</th><td>off</td>`,
		`data-env="CONCURRENCY_QUEUE_TIMEOUT"><th>Longest wait in a key&#39;s concurrency queue</th><td>30s</td>`,
		`data-env="USER_MESSAGE_QUEUE_DELAY">`, `<td>200ms</td>`, `data-env="STICKY_SESSION_TTL_HOURS">`, `<td>1h</td>`, `data-env="USER_MESSAGE_QUEUE_TIMEOUT"><th>Longest wait for the serial queue</th><td>1m</td>`,
		`<td>Asia/Shanghai</td>`, "<code>USER_MESSAGE_QUEUE_TIMEOUT</code>",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("settings lack %q", want)
		}
	}
	// And in Chinese.
	e.get("/web/prefs?lang=zh-CN&back=/web/settings")
	_, _, body = e.get("/web/settings")
	if !strings.Contains(body, "订阅账户仅服务 Claude Code</th><td>开启</td>") {
		t.Error("the Chinese page lacks the translated switch")
	}
}

// TestSettingsServiceRates: keys with service rates are listed, with a way
// to change them.
func TestSettingsServiceRates(t *testing.T) {
	e, _ := newSettingsEnv(t)
	_, _, body := e.get("/web/settings")
	if !strings.Contains(body, `id="settings-rates-none"`) {
		t.Error("no key has rates, yet the page lists some")
	}
	rates := map[string]float64{"claude": 1.5, "openai": 0.8}
	kv, _, err := e.svc.CreateKey(context.Background(), admin.KeyInput{Name: "reseller", Policy: admin.PolicyPatch{ServiceRates: &rates}})
	if err != nil {
		t.Fatal(err)
	}
	_, _, body = e.get("/web/settings")
	if !strings.Contains(body, `<a href="/web/keys/`+string(kv.ID)+`/edit">reseller</a></th><td>claude ×1.5, openai ×0.8</td>`) {
		t.Errorf("rates:\n%s", usageBetween(body, `id="rates"`, "</section>"))
	}
	if !strings.Contains(body, "--service-rates") {
		t.Error("the page does not say how to set rates")
	}
}

// TestSettingsPrices: a price table uploaded on the page is checked,
// stored and in use at once; a bad one is refused with its reason and
// changes nothing; reset brings the built-in table back; both need the
// form's token.
func TestSettingsPrices(t *testing.T) {
	e, live := newSettingsEnv(t)
	ctx := context.Background()
	embedded := pricing.Default().Info()
	_, _, body := e.get("/web/settings")
	if !strings.Contains(body, `id="prices-version">`+embedded.Version+`<`) || !strings.Contains(body, `id="prices-origin">built into this binary<`) ||
		strings.Contains(body, `id="prices-reset"`) {
		t.Fatalf("embedded table:\n%s", usageBetween(body, `id="prices"`, "</section>"))
	}

	raw, err := os.ReadFile("../pricing/prices.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	doc["version"] = "console-test-1"
	doc["as_of"] = "2030-01-02"
	good, _ := json.Marshal(doc)

	csrf := e.csrf("/web/settings")
	// Refused: no token, no file, a table without models, not JSON.
	if status, _, _ := e.upload("", "prices.json", good); status != http.StatusForbidden {
		t.Errorf("upload without csrf: %d, want 403", status)
	}
	status, _, body := e.upload(csrf, "", nil)
	if status != http.StatusBadRequest || !strings.Contains(body, "Choose a price table file") {
		t.Errorf("upload without a file: %d", status)
	}
	for name, data := range map[string]string{
		"no models": `{"as_of": "2030-01-01", "models": []}`,
		"not json":  `<html>`,
	} {
		status, _, body := e.upload(csrf, "bad.json", []byte(data))
		if status != http.StatusBadRequest || !strings.Contains(body, `id="prices-error">The price table was not saved: `) {
			t.Errorf("%s: %d\n%s", name, status, usageBetween(body, `id="prices"`, "</form>"))
		}
	}
	if v, err := e.st.GetSetting(ctx, pricing.SettingName); err == nil {
		t.Fatalf("a refused upload stored %s", v)
	}

	status, loc, _ := e.upload(csrf, `C:\tables\new-prices.json`, good)
	if status != http.StatusSeeOther || loc != "/web/settings#prices" {
		t.Fatalf("upload: %d %q", status, loc)
	}
	if got := live.Table().Version(); got != "console-test-1" {
		t.Errorf("table in use after the upload: %q", got)
	}
	stored, err := pricing.Load(ctx, e.st)
	if err != nil || stored.Version() != "console-test-1" {
		t.Fatalf("stored table: %v %v", stored, err)
	}
	_, _, body = e.get("/web/settings")
	for _, want := range []string{"Price table saved and in use.", `id="prices-version">console-test-1<`, `id="prices-as-of">2030-01-02<`,
		`id="prices-origin">console upload: new-prices.json<`, `id="prices-reset"`} {
		if !strings.Contains(body, want) {
			t.Errorf("after the upload the page lacks %q", want)
		}
	}

	if status, _, _ := e.post("/web/settings/prices/reset", url.Values{}); status != http.StatusForbidden {
		t.Errorf("reset without csrf: %d, want 403", status)
	}
	if live.Table().Version() != "console-test-1" {
		t.Error("a refused reset changed the table")
	}
	status, loc, _ = e.post("/web/settings/prices/reset", url.Values{"csrf": {csrf}})
	if status != http.StatusSeeOther || loc != "/web/settings#prices" {
		t.Fatalf("reset: %d %q", status, loc)
	}
	if got := live.Table().Version(); got != embedded.Version {
		t.Errorf("table in use after the reset: %q, want %q", got, embedded.Version)
	}
	_, _, body = e.get("/web/settings")
	if !strings.Contains(body, "The built-in price table is in use again.") || !strings.Contains(body, `id="prices-origin">built into this binary<`) {
		t.Error("the page does not show the reset")
	}
}

// TestSettingsWithoutPrices: a console without a price table says so.
func TestSettingsWithoutPrices(t *testing.T) {
	e := newEnv(t)
	e.login()
	status, _, body := e.get("/web/settings")
	if status != 200 || !strings.Contains(body, `id="prices-none"`) {
		t.Errorf("settings without prices: %d", status)
	}
}

// TestSettingsChannels: a webhook channel added on the page is listed with
// its URL masked, a test reaches it, and it can be removed; bad input and
// a taken name are refused with the reason; every write needs the token.
func TestSettingsChannels(t *testing.T) {
	e, _ := newSettingsEnv(t)
	var hits atomic.Int32
	var lastBody atomic.Value
	var refuse atomic.Bool
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		lastBody.Store(string(b))
		hits.Add(1)
		if refuse.Load() {
			http.Error(w, "nope", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()

	_, _, body := e.get("/web/settings")
	if !strings.Contains(body, `id="channels-none"`) {
		t.Fatal("a fresh console lists channels")
	}
	csrf := e.csrf("/web/settings")
	form := url.Values{"csrf": {csrf}, "type": {"webhook"}, "name": {"ops"}, "url": {hook.URL + "/hook/s3cret-token"},
		"secret": {"sign-me"}, "lang": {"zh-CN"}, "events": {"account.*"}}
	noToken := url.Values{}
	for k, v := range form {
		if k != "csrf" {
			noToken[k] = v
		}
	}
	if status, _, _ := e.post("/web/settings/channels", noToken); status != http.StatusForbidden {
		t.Errorf("add without csrf: %d, want 403", status)
	}
	if chs, _ := e.svc.ListChannels(context.Background()); len(chs) != 0 {
		t.Fatal("a refused add stored a channel")
	}

	status, loc, _ := e.post("/web/settings/channels", form)
	if status != http.StatusSeeOther || loc != "/web/settings#channels" {
		t.Fatalf("add: %d %q", status, loc)
	}
	chs, err := e.svc.ListChannels(context.Background())
	if err != nil || len(chs) != 1 || chs[0].Name != "ops" || !chs[0].HasSecret || chs[0].Lang != "zh-CN" {
		t.Fatalf("stored channels: %+v %v", chs, err)
	}
	id := chs[0].ID
	_, _, body = e.get("/web/settings")
	row := usageBetween(body, `id="channel-`+id+`"`, "</tr>")
	if !strings.Contains(body, "Channel added") || !strings.Contains(row, ">ops<") || !strings.Contains(row, "account.") {
		t.Errorf("listed channel:\n%s", row)
	}
	if strings.Contains(body, "s3cret-token") || strings.Contains(body, "sign-me") {
		t.Error("the page shows the channel's secrets")
	}

	// Refused input keeps the form's harmless fields and says why.
	bad := url.Values{"csrf": {csrf}, "type": {"webhook"}, "name": {"ops2"}, "url": {"ftp://example.com/x"}, "lang": {"en"}}
	status, _, body = e.post("/web/settings/channels", bad)
	if status != http.StatusBadRequest || !strings.Contains(body, `id="channel-error">URL: `) || !strings.Contains(body, `value="ops2"`) {
		t.Errorf("bad URL: %d\n%s", status, usageBetween(body, `id="channel-error"`, "</p>"))
	}
	// The same in Chinese: notify's reason, passed on by the service,
	// reads in the page's language.
	e.setLang(langZH)
	status, _, body = e.post("/web/settings/channels", bad)
	if msg := usageBetween(body, `id="channel-error"`, "</p>"); status != http.StatusBadRequest ||
		!strings.Contains(msg, "URL：应为 http:// 或 https:// 开头的 URL") {
		t.Errorf("bad URL in Chinese: %d %s", status, msg)
	}
	e.setLang(langEN)
	bad = url.Values{"csrf": {csrf}, "type": {"webhook"}, "name": {"ops3"}, "url": {hook.URL}, "events": {"nonsense"}}
	if status, _, body = e.post("/web/settings/channels", bad); status != http.StatusBadRequest || !strings.Contains(body, "Events: ") {
		t.Errorf("bad events: %d", status)
	}
	if status, _, body = e.post("/web/settings/channels", form); status != http.StatusConflict || !strings.Contains(body, "A channel with this name exists.") {
		t.Errorf("taken name: %d", status)
	}

	// Test.
	if status, _, _ := e.post("/web/settings/channels/"+id+"/test", url.Values{}); status != http.StatusForbidden || hits.Load() != 0 {
		t.Errorf("test without csrf: %d, %d deliveries", status, hits.Load())
	}
	status, _, body = e.post("/web/settings/channels/"+id+"/test", url.Values{"csrf": {csrf}})
	if status != 200 || hits.Load() != 1 || !regexp.MustCompile(`id="channel-test-result">Test message to ops delivered in \d+ ms.`).MatchString(body) {
		t.Errorf("test: %d, %d deliveries\n%s", status, hits.Load(), usageBetween(body, `id="channels"`, "</table>"))
	}
	if b, _ := lastBody.Load().(string); !strings.Contains(b, "test") {
		t.Errorf("the webhook got %q", b)
	}
	refuse.Store(true)
	_, _, body = e.post("/web/settings/channels/"+id+"/test", url.Values{"csrf": {csrf}})
	if !strings.Contains(body, `id="channel-test-result">Test message to ops failed: `) {
		t.Error("a failed test is not reported")
	}
	if status, _, _ := e.post("/web/settings/channels/nope/test", url.Values{"csrf": {csrf}}); status != http.StatusNotFound {
		t.Errorf("test of an unknown channel: %d, want 404", status)
	}

	// Remove.
	if status, _, _ := e.post("/web/settings/channels/"+id+"/remove", url.Values{}); status != http.StatusForbidden {
		t.Errorf("remove without csrf: %d, want 403", status)
	}
	status, loc, _ = e.post("/web/settings/channels/"+id+"/remove", url.Values{"csrf": {csrf}})
	if status != http.StatusSeeOther || loc != "/web/settings#channels" {
		t.Fatalf("remove: %d %q", status, loc)
	}
	if chs, _ := e.svc.ListChannels(context.Background()); len(chs) != 0 {
		t.Errorf("after remove: %+v", chs)
	}
	_, _, body = e.get("/web/settings")
	if !strings.Contains(body, "Channel removed.") || !strings.Contains(body, `id="channels-none"`) {
		t.Error("the page does not show the removal")
	}
	if status, _, _ := e.post("/web/settings/channels/"+id+"/remove", url.Values{"csrf": {csrf}}); status != http.StatusNotFound {
		t.Errorf("remove again: %d, want 404", status)
	}
}

// TestUsageSettingsNoInline: the pages carry no inline script, style or
// handler the CSP would block.
func TestUsageSettingsNoInline(t *testing.T) {
	e, _ := newSettingsEnv(t)
	e.con.SetSettingsView(func() SettingsInfo { return SettingsInfo{} })
	inline := regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]|\sstyle=|\son[a-z]+=`)
	for _, p := range []string{"/web/usage", "/web/settings"} {
		status, _, body := e.get(p)
		if status != 200 {
			t.Fatalf("%s: %d", p, status)
		}
		if m := inline.FindString(body); m != "" {
			t.Errorf("%s has inline %q", p, m)
		}
	}
}
