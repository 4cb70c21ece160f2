package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/redis/redistest"
)

// deployment is one crs deployment a test exports from or imports into:
// the environment its commands see. An embedded one has DATA_DIR and
// ENCRYPTION_KEY; a shared one adds what openEnv needs to open Redis
// (REDIS_URL, REDIS_KEY_PREFIX), and the same tests run on it.
type deployment struct {
	name string
	vars map[string]string
}

// deploymentKind makes a fresh deployment sealed with key.
type deploymentKind func(t *testing.T, key string) deployment

// embedded is a deployment in a DATA_DIR of its own.
func embedded(t *testing.T, key string) deployment {
	return deployment{name: "embedded", vars: map[string]string{"DATA_DIR": t.TempDir(), "ENCRYPTION_KEY": key}}
}

// shared is a deployment on the test Redis under a key prefix of its own
// (removed when the test ends), with a DATA_DIR of its own.
func shared(t *testing.T, key string) deployment {
	d := deployment{name: "shared", vars: map[string]string{
		"DATA_DIR": t.TempDir(), "ENCRYPTION_KEY": key, "JWT_SECRET": "export-test-jwt-secret-0123456789abcdef",
		"REDIS_URL": "redis://" + redistest.Addr(t), "REDIS_KEY_PREFIX": redistest.Prefix(t, redistest.Client(t)),
	}}
	if b := d.open(t).Store.Backend(); b != "redis" {
		t.Fatalf("a shared deployment opens %s", b)
	}
	return d
}

// importTargets are the kinds of deployment an export is imported into.
func importTargets() map[string]deploymentKind {
	return map[string]deploymentKind{"embedded": embedded, "shared": shared}
}

// Distinct ENCRYPTION_KEYs, so re-sealing is proven, not assumed.
const (
	keyA = "source-encryption-key-0123456789abcdef"
	keyB = "target-encryption-key-0123456789abcdef"
	keyC = "third--encryption-key-0123456789abcdef"
)

func (d deployment) getenv(k string) string { return d.vars[k] }

// with returns d with more variables set.
func (d deployment) with(kv ...string) deployment {
	vars := map[string]string{}
	for k, v := range d.vars {
		vars[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		vars[kv[i]] = kv[i+1]
	}
	return deployment{d.name, vars}
}

// run runs one crs command line against d in-process, as run does for
// the real process but with d's environment. The command's words may come
// as one argument ("keys create").
func (d deployment) run(stdin string, args ...string) (code int, stdout, stderr string) {
	if len(args) > 0 {
		args = append(strings.Fields(args[0]), args[1:]...)
	}
	var out, errb bytes.Buffer
	c := &cli{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: d.getenv}
	for _, cmd := range commands() {
		words := strings.Fields(cmd.name)
		if cmd.run != nil && len(args) >= len(words) && strings.Join(args[:len(words)], " ") == cmd.name {
			return c.exit(cmd.run(context.Background(), c, args[len(words):])), out.String(), errb.String()
		}
	}
	panic("no command " + strings.Join(args, " "))
}

// ok runs a command on d that must succeed and returns stdout and stderr.
func (d deployment) ok(t *testing.T, stdin string, args ...string) (string, string) {
	t.Helper()
	code, out, errs := d.run(stdin, args...)
	if code != 0 {
		t.Fatalf("%s: crs %s: exit %d, stderr %q", d.name, strings.Join(args, " "), code, errs)
	}
	return out, errs
}

// open opens d's store and box as the commands do; closed when t ends.
func (d deployment) open(t *testing.T) *env {
	t.Helper()
	e, err := openEnv(context.Background(), "", d.getenv)
	if err != nil {
		t.Fatalf("%s: open: %v", d.name, err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

const adminPassword = "correct horse battery staple"

// populate fills d with one of everything export carries: keys with
// policies (one soft-deleted, one activated), an account of each platform
// and type with sealed credentials and proxies, cooldowns and quota,
// groups with members, the admin, settings, and usage over several days.
// It returns the number of usage records.
func populate(t *testing.T, d deployment) int {
	t.Helper()
	ctx := context.Background()
	d.ok(t, "", "keys create", "--name", "alice", "--tags", "team-a,ops", "--clients", "claude_code",
		"--daily-cost", "5", "--permissions", "claude,openai", "--models-allow", "claude-sonnet-4,gpt-5",
		"--concurrency", "3", "--rate-window", "1h", "--rate-requests", "100", "--weekly-cost", "20",
		"--service-rates", "claude=1.5", "--expires", "2031-01-02T03:04:05Z", "--description", "the first")
	d.ok(t, "", "keys create", "--name", "bob", "--activate-for", "30d")
	gone, _ := d.ok(t, "", "keys create", "--name", "gone", "--json")
	var goneKey struct{ ID string }
	decodeJSON(t, gone, &goneKey)
	d.ok(t, "", "keys remove", goneKey.ID)
	d.ok(t, "", "accounts add", "--platform", "claude", "--type", "api-key", "--name", "claude-api",
		"--api-key", "sk-ant-api03-claude-secret", "--proxy", "socks5://user:pw@10.0.0.1:1080", "--models", "claude-sonnet-4")
	d.ok(t, "", "accounts add", "--platform", "gemini", "--type", "api-key", "--name", "gemini-api",
		"--api-key", "AIza-gemini-secret", "--priority", "7")

	e := d.open(t)
	var st store.Store = e.Store
	now := time.Now().UTC().Truncate(time.Millisecond)
	for _, a := range []store.Account{
		{ID: "acc_claude_oauth", Name: "claude-max", Platform: store.PlatformClaude, Type: store.TypeOAuth, Priority: 10,
			SealedSecret: e.Box.Seal([]byte(`{"access_token":"at-claude","refresh_token":"rt-claude"}`)),
			SealedProxy:  e.Box.Seal([]byte("http://proxy.example:3128")), Plan: "max",
			Options: store.AccountOptions{AutoPauseOnWarning: true, SerialQueue: true, MaxConcurrency: 2, DailyQuota: 7_000_000},
			Quota: store.Quota{Window5h: store.Window{Start: now.Add(-time.Hour), End: now.Add(4 * time.Hour), Status: store.WindowWarning},
				FamilyLimits: map[string]time.Time{"opus": now.Add(2 * time.Hour)}}},
		{ID: "acc_codex", Name: "chatgpt", Platform: store.PlatformOpenAI, Type: store.TypeOAuth, Priority: 20,
			SealedSecret: e.Box.Seal([]byte(`{"access_token":"at-codex","account_id":"u-1"}`)), Unschedulable: true},
		{ID: "acc_gemini_oauth", Name: "gemini-cli", Platform: store.PlatformGemini, Type: store.TypeOAuth, Priority: 30,
			SealedSecret: e.Box.Seal([]byte(`{"refresh_token":"rt-google","project":"p-1"}`)), Disabled: true},
		{ID: "acc_setup", Name: "claude-setup", Platform: store.PlatformClaude, Type: store.TypeSetupToken, Priority: 40,
			SealedSecret: e.Box.Seal([]byte("sk-ant-oat01-setup")), BaseURL: "https://mirror.example"},
		{ID: "acc_openai_api", Name: "openai-api", Platform: store.PlatformOpenAI, Type: store.TypeAPIKey, Priority: 50,
			SealedSecret: e.Box.Seal([]byte("sk-proj-openai")), SealedProxy: e.Box.Seal([]byte("socks5://10.0.0.2:1080"))},
	} {
		a.CreatedAt, a.UpdatedAt = now, now
		if err := st.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	must(t, st.SetCooldown(ctx, "acc_codex", store.CooldownRateLimited, now.Add(3*time.Hour), "429 from upstream"))
	must(t, st.TouchAccounts(ctx, map[store.AccountID]time.Time{"acc_claude_oauth": now.Add(-time.Minute)}))

	d.ok(t, "", "groups create", "claude-team", "--platform", "claude")
	groups, err := st.ListGroups(ctx)
	if err != nil || len(groups) != 1 {
		t.Fatalf("groups: %v %v", groups, err)
	}
	d.ok(t, "", "groups add", string(groups[0].ID), "acc_claude_oauth")
	d.ok(t, "", "groups add", string(groups[0].ID), "acc_setup")
	d.ok(t, "", "groups create", "empty", "--platform", "gemini")

	keys, err := st.ListKeys(ctx, false)
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys: %v %v", keys, err)
	}
	if _, err := st.ActivateKey(ctx, keys[1].ID, now.Add(-48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	must(t, st.TouchKeys(ctx, map[store.KeyID]time.Time{keys[0].ID: now.Add(-2 * time.Minute)}))
	d.ok(t, "", "keys update", string(keys[1].ID), "--account", "group:"+string(groups[0].ID), "--account-fallback")

	hash, err := bcrypt.GenerateFromPassword([]byte(adminPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	must(t, st.SetAdmin(ctx, store.Admin{Username: "boss", PasswordHash: string(hash), UpdatedAt: now}))
	must(t, st.SetSetting(ctx, "notify.channels", e.Box.Seal([]byte(`[{"type":"webhook","url":"https://hooks.example/secret-path"}]`))))
	// A price table override as the pricing package stores it: the
	// embedded table, noted as given from a file.
	prices, err := os.ReadFile("../../internal/pricing/prices.json")
	must(t, err)
	override, err := json.Marshal(map[string]any{"origin": "/etc/crs/prices.json", "updated_at": now, "table": json.RawMessage(prices)})
	must(t, err)
	must(t, st.SetSetting(ctx, "prices.table", override))

	// Usage over four days, several keys, accounts and models; some
	// records share a millisecond, and retries share a request ID.
	var recs []store.UsageRecord
	models := []string{"claude-sonnet-4", "claude-opus-4", "gpt-5", "gemini-2.5-pro"}
	accts := []store.AccountID{"acc_claude_oauth", "acc_setup", "acc_codex", "acc_gemini_oauth"}
	for i := range 400 {
		rec := store.UsageRecord{RequestID: fmt.Sprintf("req_%04d", i/2), Attempt: i % 2,
			KeyID: keys[i%2].ID, AccountID: accts[i%4], Model: models[i%4],
			Input: int64(100 + i), Output: int64(50 + i), CacheWrite5m: int64(i % 7), CacheWrite1h: int64(i % 5),
			CacheRead: int64(i * 3), CostPico: int64(i) * 1_000_003, RatedCostPico: int64(i) * 1_500_004,
			Stream: i%3 == 0, Status: 200, LatencyMs: int64(800 + i), FirstByteMs: int64(90 + i),
			ClientAborted: i%50 == 0, CreatedAt: now.Add(-time.Duration(i/3) * 17 * time.Minute)}
		recs = append(recs, rec)
	}
	if n, err := st.InsertUsage(ctx, recs); err != nil || n != len(recs) {
		t.Fatalf("insert usage: %d %v", n, err)
	}
	return len(recs)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// snapshot is everything a deployment holds that export carries, with
// sealed values opened, so two deployments under different keys compare.
type snapshot struct {
	Keys     []exportKey
	Accounts []exportAccount
	Secrets  map[store.AccountID][2]string // opened credential and proxy
	Groups   []exportGroup
	Admin    store.Admin
	Notify   string
	Prices   string
	Usage    []exportUsage
	Count    int64 // usage records per the daily rollups
	Summary  store.UsageSummary
	Hourly   []store.Rollup
	Daily    []store.Rollup
}

// usageTotals is the usage part of a snapshot without the records.
func usageTotals(t *testing.T, d deployment) snapshot {
	t.Helper()
	ctx := context.Background()
	var st store.Store = d.open(t).Store
	var s snapshot
	var err error
	s.Count, err = usageCount(ctx, st)
	must(t, err)
	s.Summary, err = st.SummarizeUsage(ctx, store.UsageFilter{})
	must(t, err)
	s.Hourly, err = st.Rollups(ctx, store.Hourly, time.Time{}, time.Time{})
	must(t, err)
	s.Daily, err = st.Rollups(ctx, store.Daily, time.Time{}, time.Time{})
	must(t, err)
	return s
}

func takeSnapshot(t *testing.T, d deployment) snapshot {
	t.Helper()
	ctx := context.Background()
	e := d.open(t)
	var st store.Store = e.Store
	var s snapshot
	keys, err := st.ListKeys(ctx, true)
	must(t, err)
	for _, k := range keys {
		s.Keys = append(s.Keys, fromKey(k))
	}
	accts, err := st.ListAccounts(ctx)
	must(t, err)
	s.Secrets = map[store.AccountID][2]string{}
	for _, a := range accts {
		cred, err := e.Box.Open(a.SealedSecret)
		must(t, err)
		proxy, err := e.Box.Open(a.SealedProxy)
		must(t, err)
		s.Secrets[a.ID] = [2]string{string(cred), string(proxy)}
		a.SealedSecret, a.SealedProxy = nil, nil
		s.Accounts = append(s.Accounts, fromAccount(a))
	}
	groups, err := st.ListGroups(ctx)
	must(t, err)
	for _, g := range groups {
		s.Groups = append(s.Groups, fromGroup(g))
	}
	if s.Admin, err = st.GetAdmin(ctx); err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	if v, err := st.GetSetting(ctx, "notify.channels"); err == nil {
		pt, err := e.Box.Open(v)
		must(t, err)
		s.Notify = string(pt)
	}
	if v, err := st.GetSetting(ctx, "prices.table"); err == nil {
		s.Prices = string(v)
	}
	recs, err := st.ListUsage(ctx, store.UsageFilter{}, 0)
	must(t, err)
	for _, r := range recs {
		s.Usage = append(s.Usage, fromUsage(r))
	}
	// Records of one millisecond have no order of their own.
	slices.SortFunc(s.Usage, func(a, b exportUsage) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), strings.Compare(a.RequestID, b.RequestID), a.Attempt-b.Attempt)
	})
	totals := usageTotals(t, d)
	s.Count, s.Summary, s.Hourly, s.Daily = totals.Count, totals.Summary, totals.Hourly, totals.Daily
	return s
}

// sameSnapshot compares two snapshots as JSON, section by section, so a
// difference names its section.
func sameSnapshot(t *testing.T, what string, want, got snapshot) {
	t.Helper()
	wv, gv := reflect.ValueOf(want), reflect.ValueOf(got)
	for i := range wv.NumField() {
		w, _ := json.Marshal(wv.Field(i).Interface())
		g, _ := json.Marshal(gv.Field(i).Interface())
		if !bytes.Equal(w, g) {
			t.Errorf("%s: %s differ:\nwant %s\n got %s", what, wv.Type().Field(i).Name, clip(w), clip(g))
		}
	}
}

func clip(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + "…"
	}
	return string(b)
}

// TestExportImportBothWays moves a populated embedded deployment into
// each target kind under another ENCRYPTION_KEY, and from there back into
// a fresh embedded one under a third key: everything arrives, credentials
// open to the same plaintext under the new key only, usage, its summary
// and its rollups are equal, and the admin logs in with the old password.
func TestExportImportBothWays(t *testing.T) {
	t.Parallel()
	for name, kind := range importTargets() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := embedded(t, keyA)
			nUsage := populate(t, src)
			want := takeSnapshot(t, src)
			if len(want.Keys) != 3 || len(want.Accounts) != 7 || len(want.Groups) != 2 || len(want.Usage) != nUsage ||
				want.Notify == "" || want.Prices == "" || want.Admin.Username != "boss" {
				t.Fatalf("populate fell short: %d keys, %d accounts, %d groups, %d usage", len(want.Keys), len(want.Accounts), len(want.Groups), len(want.Usage))
			}

			file := filepath.Join(t.TempDir(), "crs-export.json")
			out, _ := src.ok(t, "", "export", "--out", file)
			if !strings.Contains(out, "exported 3 keys, 7 accounts, 2 groups, 2 settings, 400 usage records and the admin login to "+file) {
				t.Errorf("export summary: %q", out)
			}
			raw, err := os.ReadFile(file)
			must(t, err)
			for _, plain := range []string{"sk-ant-api03-claude-secret", "AIza-gemini-secret", "rt-claude", "user:pw", "hooks.example", keyA} {
				if bytes.Contains(raw, []byte(plain)) {
					t.Errorf("the export holds %q in plain text", plain)
				}
			}
			if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("export file mode: %v %v", fi.Mode(), err)
			}

			dst := kind(t, keyB)
			out, _ = dst.with(sourceKeyVar, keyA).ok(t, "", "import", "--file", file)
			if !strings.Contains(out, "3 keys, 7 accounts, 2 groups, 2 settings, 400 usage records, the admin login;") ||
				!strings.Contains(out, "re-sealed") || strings.Contains(out, "already here") {
				t.Errorf("import summary: %q", out)
			}
			sameSnapshot(t, "source → "+name, want, takeSnapshot(t, dst))
			// The target's credentials are sealed with its own key: the
			// source key no longer opens them.
			srcBox, _ := secret.NewBox(keyA)
			accts, err := dst.open(t).Store.ListAccounts(context.Background())
			must(t, err)
			for _, a := range accts {
				if _, err := srcBox.Open(a.SealedSecret); err == nil {
					t.Errorf("account %s: still sealed with the source key", a.ID)
				}
			}

			// And back, into a fresh embedded deployment under a third key,
			// through standard output and input, the key from a file.
			keyFile := filepath.Join(t.TempDir(), "target.key")
			must(t, os.WriteFile(keyFile, []byte(keyB+"\n"), 0o600))
			doc, errs := dst.ok(t, "", "export")
			if !strings.Contains(errs, "exported 3 keys") {
				t.Errorf("export to stdout: summary on stderr %q", errs)
			}
			back := embedded(t, keyC)
			back.ok(t, doc, "import", "--file", "-", "--source-key-file", keyFile)
			sameSnapshot(t, name+" → embedded", want, takeSnapshot(t, back))

			srv := startRelay(t, back.vars["DATA_DIR"], map[string]string{"ENCRYPTION_KEY": keyC})
			for pw, code := range map[string]int{adminPassword: http.StatusOK, "wrong password!": http.StatusUnauthorized} {
				body := fmt.Sprintf(`{"username":"boss","password":%q}`, pw)
				resp, err := http.Post(srv.url+"/admin/login", "application/json", strings.NewReader(body))
				must(t, err)
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != code {
					t.Errorf("admin login with %q after the move: %d %s, want %d", pw, resp.StatusCode, b, code)
				}
			}
		})
	}
}

// TestImportTwiceSkips re-runs an import: nothing is added twice, every
// record is counted as already there, and the store is unchanged.
func TestImportTwiceSkips(t *testing.T) {
	t.Parallel()
	src := embedded(t, keyA)
	populate(t, src)
	file := filepath.Join(t.TempDir(), "x.json")
	src.ok(t, "", "export", "--out", file)
	for name, kind := range importTargets() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dst := kind(t, keyB).with(sourceKeyVar, keyA)
			dst.ok(t, "", "import", "--file", file)
			before := takeSnapshot(t, dst)
			out, _ := dst.ok(t, "", "import", "--file", file, "--json")
			var sum importSummary
			decodeJSON(t, out, &sum)
			want := importSummary{From: "sqlite", Into: dst.open(t).Store.Backend(), Admin: "unchanged",
				Keys: importCount{0, 3}, Accounts: importCount{0, 7}, Groups: importCount{0, 2},
				Settings: importCount{0, 2}, Usage: importCount{0, 400}}
			sum.ExportedAt = time.Time{}
			if !reflect.DeepEqual(sum, want) {
				t.Errorf("second import: %+v\nwant %+v", sum, want)
			}
			sameSnapshot(t, "after the second import", before, takeSnapshot(t, dst))
			out, _ = dst.ok(t, "", "import", "--file", file)
			if !strings.Contains(out, "already here, skipped: 3 keys, 7 accounts, 2 groups, 2 settings, 400 usage records, the admin login") {
				t.Errorf("text summary of a re-run: %q", out)
			}
		})
	}
}

// TestImportSameKey needs no source key when the target's key is the
// source's, and keeps the sealed values as they were.
func TestImportSameKey(t *testing.T) {
	t.Parallel()
	src := embedded(t, keyA)
	populate(t, src)
	file := filepath.Join(t.TempDir(), "x.json")
	src.ok(t, "", "export", "--out", file)
	dst := embedded(t, keyA)
	out, _ := dst.ok(t, "", "import", "--file", file)
	if !strings.Contains(out, "same ENCRYPTION_KEY") {
		t.Errorf("summary: %q", out)
	}
	sameSnapshot(t, "same key", takeSnapshot(t, src), takeSnapshot(t, dst))
}

// emptyStore fails the test if d holds anything import writes.
func emptyStore(t *testing.T, d deployment) {
	t.Helper()
	s := takeSnapshot(t, d)
	if len(s.Keys)+len(s.Accounts)+len(s.Groups)+len(s.Usage) != 0 || s.Admin.Username != "" || s.Notify != "" || s.Prices != "" {
		t.Errorf("a refused import wrote: %d keys, %d accounts, %d groups, %d usage, admin %q, settings %q %q",
			len(s.Keys), len(s.Accounts), len(s.Groups), len(s.Usage), s.Admin.Username, s.Notify, s.Prices)
	}
}

// failsOn runs a command on d that must fail with exit code and one
// stderr line mentioning want.
func (d deployment) failsOn(t *testing.T, code int, want string, args ...string) {
	t.Helper()
	got, _, errs := d.run("", args...)
	if got != code || !strings.HasPrefix(errs, "crs: ") || !strings.Contains(errs, want) {
		t.Fatalf("crs %s: exit %d (want %d), stderr %q (want it to mention %q)", strings.Join(args, " "), got, code, errs, want)
	}
	if lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n"); !strings.HasPrefix(lines[len(lines)-1], "crs: ") {
		t.Fatalf("crs %s: the error is not the last line: %q", strings.Join(args, " "), errs)
	}
}

// TestImportRefusesBeforeWriting: a missing or wrong source key, a damaged
// credential, a file that is no export or is from a later version, and a
// running embedded server are all refused with a clear reason, and
// nothing is written.
func TestImportRefusesBeforeWriting(t *testing.T) {
	t.Parallel()
	src := embedded(t, keyA)
	populate(t, src)
	dir := t.TempDir()
	file := filepath.Join(dir, "x.json")
	src.ok(t, "", "export", "--out", file)
	raw, err := os.ReadFile(file)
	must(t, err)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	// One account's credential altered: the key check passes, the
	// credential does not open.
	damaged := regexp.MustCompile(`"sealed_secret":"A`).ReplaceAllLiteralString(string(raw), `"sealed_secret":"B`)
	later := strings.Replace(string(raw), `"version":1`, `"version":2`, 1)
	wrongKeyFile := write("wrong.key", "another-key-that-is-long-enough-000000\n")

	dst := embedded(t, keyB)
	for _, c := range []struct {
		name string
		d    deployment
		args []string
		code int
		want string
	}{
		{"no source key", dst, []string{"--file", file}, exitError, "--source-key-file PATH"},
		{"wrong key in the variable", dst.with(sourceKeyVar, "another-key-that-is-long-enough-111111"), []string{"--file", file}, exitError, "does not open this export"},
		{"wrong key file", dst, []string{"--file", file, "--source-key-file", wrongKeyFile}, exitError, "not the ENCRYPTION_KEY of the deployment that exported it"},
		{"short key", dst.with(sourceKeyVar, "short"), []string{"--file", file}, exitError, "at least 32 characters"},
		{"damaged credential", dst.with(sourceKeyVar, keyA), []string{"--file", write("damaged.json", damaged)}, exitError, "its credential does not open"},
		{"later version", dst.with(sourceKeyVar, keyA), []string{"--file", write("v2.json", later)}, exitError, "version 2; this crs reads version 1"},
		{"not an export", dst, []string{"--file", write("other.json", `{"hello":"world"}`)}, exitError, "not a crs export"},
		{"not an object", dst, []string{"--file", write("array.json", `[1,2]`)}, exitError, "not a crs export"},
		{"a crs backup", dst, []string{"--file", write("crs.db", "SQLite format 3\x00")}, exitError, "not a crs export"},
		{"no file", dst, nil, exitUsage, "--file is required"},
		{"missing file", dst, []string{"--file", filepath.Join(dir, "nope.json")}, exitError, "no such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.d.failsOn(t, c.code, c.want, append([]string{"import"}, c.args...)...)
		})
	}
	emptyStore(t, dst)

	running := embedded(t, keyB)
	srv := startRelay(t, running.vars["DATA_DIR"], map[string]string{"ENCRYPTION_KEY": keyB})
	running.with(sourceKeyVar, keyA).failsOn(t, exitError, "stop it first", "import", "--file", file)
	must(t, srv.Stop())
	// The server's first start created an admin; nothing else is there.
	s := takeSnapshot(t, running)
	if len(s.Keys)+len(s.Accounts)+len(s.Usage) != 0 || s.Admin.Username != "admin" {
		t.Errorf("import under a running server wrote: %+v", s)
	}
	// Once the server stopped, the import goes through and the exported
	// admin replaces the one the first start made, with a warning.
	_, errs := running.with(sourceKeyVar, keyA).ok(t, "", "import", "--file", file)
	if !strings.Contains(errs, "the admin login is now the exported one (boss)") {
		t.Errorf("no warning about the replaced admin: %q", errs)
	}
}

// TestExportLargeUsage moves ten pages of usage records into each target
// kind and out again: export pages through them and prints progress,
// import writes them in batches and prints progress, and the totals match.
// The times are logged.
func TestExportLargeUsage(t *testing.T) {
	t.Parallel()
	// Ten pages is the fewest for which no export page (nor import batch)
	// is more than a tenth of the total, so progress shows every tenth
	// however fast the machine is; more records only take longer.
	const n = 10 * usagePage
	src := embedded(t, keyA)
	e := src.open(t)
	var st store.Store = e.Store
	ctx := context.Background()
	base := time.Now().UTC().Truncate(time.Millisecond).Add(-30 * 24 * time.Hour)
	batch := make([]store.UsageRecord, 0, 1000)
	for i := range n {
		batch = append(batch, store.UsageRecord{RequestID: fmt.Sprintf("req_%06d", i), KeyID: store.KeyID(fmt.Sprintf("key_%d", i%9)),
			AccountID: store.AccountID(fmt.Sprintf("acc_%d", i%5)), Model: "claude-sonnet-4", Input: int64(i), Output: 7,
			CostPico: int64(i) * 11, RatedCostPico: int64(i) * 13, Status: 200,
			// Three records per millisecond, so pages end inside one.
			CreatedAt: base.Add(time.Duration(i/3) * 127 * time.Millisecond)})
		if len(batch) == cap(batch) {
			if _, err := st.InsertUsage(ctx, batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	file := filepath.Join(t.TempDir(), "big.json")
	start := time.Now()
	_, errs := src.ok(t, "", "export", "--out", file)
	exportTook := time.Since(start)
	wantProgress(t, errs, "export: usage", n)
	fi, err := os.Stat(file)
	must(t, err)

	t.Logf("%d usage records: export from embedded %v (%s)", n, exportTook.Round(time.Millisecond), byteSize(fi.Size()))
	want := usageTotals(t, src)
	for name, kind := range importTargets() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dst := kind(t, keyB).with(sourceKeyVar, keyA)
			start := time.Now()
			out, errs := dst.ok(t, "", "import", "--file", file)
			importTook := time.Since(start)
			if !strings.Contains(out, fmt.Sprintf("%d usage records", n)) {
				t.Errorf("import summary: %q", out)
			}
			wantProgress(t, errs, "import: usage", n)
			// Record by record equality is TestExportImportBothWays's; here
			// the count, the summary and the rollups, cheap at this size.
			got := usageTotals(t, dst)
			if got.Count != n {
				t.Fatalf("%d usage records arrived, want %d", got.Count, n)
			}
			sameSnapshot(t, fmt.Sprintf("%d records", n), want, got)
			t.Logf("%d usage records: import into %s %v", n, name, importTook.Round(time.Millisecond))
			if name == "embedded" {
				return // its export was measured above
			}
			start = time.Now()
			_, errs = dst.ok(t, "", "export", "--out", filepath.Join(t.TempDir(), "again.json"))
			wantProgress(t, errs, "export: usage", n)
			t.Logf("%d usage records: export from %s %v", n, name, time.Since(start).Round(time.Millisecond))
		})
	}
}

// wantProgress checks that stderr shows what's progress at least every
// tenth of n, rising, and ends at n/n.
func wantProgress(t *testing.T, stderr, what string, n int) {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(what) + ` (\d+)/` + fmt.Sprint(n) + ` \((\d+)%\)$`)
	lines := re.FindAllStringSubmatch(stderr, -1)
	if len(lines) < 10 {
		t.Fatalf("%d progress lines of %q, want at least 10:\n%s", len(lines), what, stderr)
	}
	prev := -1
	for _, l := range lines {
		var done int
		fmt.Sscan(l[1], &done)
		if done <= prev {
			t.Errorf("progress goes back: %q", l[0])
		}
		prev = done
	}
	if last := lines[len(lines)-1][0]; last != fmt.Sprintf("%s %d/%d (100%%)", what, n, n) {
		t.Errorf("last progress line %q", last)
	}
}

// TestEachUsagePageEdges walks usage with pages far smaller than the
// number of records sharing one millisecond: every record comes exactly
// once, newest first.
func TestEachUsagePageEdges(t *testing.T) {
	t.Parallel()
	d := embedded(t, keyA)
	var st store.Store = d.open(t).Store
	ctx := context.Background()
	base := time.Now().UTC().Truncate(time.Millisecond)
	var recs []store.UsageRecord
	for i := range 97 {
		// 40 records in one millisecond, then runs of 3, then singles.
		at := base
		switch {
		case i >= 70:
			at = base.Add(-time.Duration(i) * time.Second)
		case i >= 40:
			at = base.Add(-time.Duration(1+(i-40)/3) * time.Millisecond)
		}
		recs = append(recs, store.UsageRecord{RequestID: fmt.Sprintf("r%d", i/2), Attempt: i % 2, KeyID: "k", AccountID: "a", Model: "m", CreatedAt: at})
	}
	if _, err := st.InsertUsage(ctx, recs); err != nil {
		t.Fatal(err)
	}
	for _, page := range []int{1, 3, 7, 40, 41, 200} {
		got := map[usageID]int{}
		var last time.Time
		pages := 0
		err := eachUsage(ctx, st, page, func(rs []store.UsageRecord) error {
			pages++
			for _, r := range rs {
				got[usageID{r.RequestID, r.Attempt}]++
				if !last.IsZero() && r.CreatedAt.After(last) {
					t.Errorf("page %d: %s after a newer record", page, r.CreatedAt)
				}
				last = r.CreatedAt
			}
			return nil
		})
		must(t, err)
		if len(got) != len(recs) {
			t.Errorf("page %d: %d distinct records, want %d", page, len(got), len(recs))
		}
		for id, n := range got {
			if n != 1 {
				t.Errorf("page %d: %v came %d times", page, id, n)
			}
		}
	}
}

// fill sets every exported field reachable from v to a non-zero value.
func fill(v reflect.Value, seed *int) {
	*seed++
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.UnixMilli(1_700_000_000_000 + int64(*seed)).UTC()))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), seed)
			}
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), seed)
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", *seed))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(int64(*seed))
	case reflect.Uint8:
		v.SetUint(uint64(*seed % 256))
	case reflect.Float64:
		v.SetFloat(float64(*seed) + 0.5)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fill(v.Index(i), seed)
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, seed)
		fill(e, seed)
		v.SetMapIndex(k, e)
	default:
		panic("fill: no case for " + v.Type().String())
	}
}

// roundTrip fills a S with every field set, turns it into its export
// record R, through JSON and back, and wants what went in.
func roundTrip[S, R any](t *testing.T, seed *int, to func(S) R, from func(R) S) {
	t.Helper()
	var in S
	fill(reflect.ValueOf(&in).Elem(), seed)
	b, err := json.Marshal(to(in))
	must(t, err)
	var rec R
	must(t, json.Unmarshal(b, &rec))
	// A usage record's Seq is the store's, assigned on insert: an import
	// numbers the records anew, so it is not carried.
	if seq := reflect.ValueOf(&in).Elem().FieldByName("Seq"); seq.IsValid() {
		seq.SetZero()
	}
	if out := from(rec); !reflect.DeepEqual(in, out) {
		t.Errorf("%T lost a field on its way through the export:\n in %+v\nout %+v", in, in, out)
	}
}

// TestExportRecordsCarryEveryField round-trips each stored type with every
// field set through its export record: a field added to the store and
// forgotten here fails this test instead of vanishing in a migration.
func TestExportRecordsCarryEveryField(t *testing.T) {
	seed := 0
	roundTrip(t, &seed, fromKey, exportKey.key)
	roundTrip(t, &seed, fromAccount, exportAccount.account)
	roundTrip(t, &seed, fromGroup, exportGroup.group)
	roundTrip(t, &seed, fromUsage, exportUsage.record)
	roundTrip(t, &seed, fromAdmin, exportAdmin.admin)
}
