package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
)

// isolate makes sure the machine running the tests cannot change their
// outcome: none of cliVars may be set. TestMain cleared them and tests
// restore what they set. It checks rather than clears, because t.Setenv
// would keep every test that calls it from running in parallel.
func isolate(t *testing.T) {
	t.Helper()
	for _, v := range cliVars {
		if val, ok := os.LookupEnv(v); ok {
			t.Fatalf("%s=%q is set: TestMain clears it, and a test that sets it must use t.Setenv", v, val)
		}
	}
}

// crs runs one command line in-process.
func crs(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// ok runs a command that must succeed and returns its stdout.
func ok(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	code, out, errs := crs(t, stdin, args...)
	if code != 0 {
		t.Fatalf("crs %s: exit %d, stderr %q", strings.Join(args, " "), code, errs)
	}
	return out
}

// fails runs a command that must fail with exit code and exactly one
// stderr line "crs: …" containing want.
func fails(t *testing.T, code int, want string, args ...string) {
	t.Helper()
	failsIn(t, "", code, want, args...)
}

func failsIn(t *testing.T, stdin string, code int, want string, args ...string) {
	t.Helper()
	got, out, errs := crs(t, stdin, args...)
	if got != code {
		t.Fatalf("crs %s: exit %d, want %d; stdout %q stderr %q", strings.Join(args, " "), got, code, out, errs)
	}
	if !strings.HasPrefix(errs, "crs: ") || strings.Count(errs, "\n") != 1 || !strings.HasSuffix(errs, "\n") {
		t.Fatalf("crs %s: stderr %q is not one line starting \"crs: \"", strings.Join(args, " "), errs)
	}
	if !strings.Contains(errs, want) {
		t.Fatalf("crs %s: stderr %q does not mention %q", strings.Join(args, " "), errs, want)
	}
}

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decoding %q: %v", s, err)
	}
}

// wantFields checks that m has exactly the listed JSON values (as raw
// JSON text), and that every name in present exists.
func wantFields(t *testing.T, what string, m map[string]json.RawMessage, exact map[string]string, present ...string) {
	t.Helper()
	for k, v := range exact {
		var got bytes.Buffer
		json.Compact(&got, m[k])
		if got.String() != v {
			t.Errorf("%s.%s = %s, want %s", what, k, got.String(), v)
		}
	}
	for _, k := range present {
		if _, has := m[k]; !has {
			t.Errorf("%s has no %q field: %v", what, k, m)
		}
	}
}

func TestHelpAndUsageErrors(t *testing.T) {
	isolate(t)
	code, _, errs := crs(t, "")
	if code != 2 || !strings.Contains(errs, "Usage: crs <command>") {
		t.Fatalf("no args: exit %d, stderr %q", code, errs)
	}
	for _, h := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		out := ok(t, "", h...)
		for _, c := range commands() {
			if !strings.Contains(out, "crs "+c.name+" ") {
				t.Errorf("%v: help lacks %q", h, c.name)
			}
		}
	}
	// A command's own help goes to stderr with its flags, exit 0.
	for _, h := range [][]string{{"help", "keys", "create"}, {"keys", "create", "-h"}, {"accounts", "add", "--help"}, {"usage", "-h"}} {
		code, _, errs := crs(t, "", h...)
		if code != 0 || !strings.Contains(errs, "-data-dir") {
			t.Errorf("%v: exit %d, stderr %q", h, code, errs)
		}
	}
	code, _, errs = crs(t, "", "keys", "-h")
	if code != 0 || !strings.Contains(errs, "crs keys create") || !strings.Contains(errs, "crs keys purge") {
		t.Fatalf("keys -h: exit %d, stderr %q", code, errs)
	}
	for _, args := range [][]string{{"frobnicate"}, {"keys"}, {"keys", "frob"}, {"accounts"}} {
		code, out, errs := crs(t, "", args...)
		if code != 2 || out != "" || !strings.Contains(errs, "Usage") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	// Unknown flags: the flag package's message plus the command usage.
	code, _, errs = crs(t, "", "keys", "list", "--colour")
	if code != 2 || !strings.Contains(errs, "flag provided but not defined: -colour") || !strings.Contains(errs, "Usage: crs keys list") {
		t.Fatalf("unknown flag: exit %d, stderr %q", code, errs)
	}
	code, _, _ = crs(t, "", "accounts", "add", "--priority", "high")
	if code != 2 {
		t.Fatalf("non-numeric priority: exit %d", code)
	}
}

func TestVersion(t *testing.T) {
	out := ok(t, "", "version")
	if !regexp.MustCompile(`^crs \S+.*\nprices \S+, as of \d{4}-\d\d-\d\d \(.+\)\n$`).MatchString(out) {
		t.Fatalf("version output %q", out)
	}
	fails(t, 2, "unexpected argument", "version", "extra")
}

func TestKeysCommands(t *testing.T) {
	t.Parallel()
	isolate(t)
	dir := t.TempDir()
	d := []string{"--data-dir", dir}

	// Required flag and bad values: one line, exit 2.
	fails(t, 2, "--name is required", append([]string{"keys", "create"}, d...)...)
	fails(t, 2, "--expires", append([]string{"keys", "create", "--name", "x", "--expires", "soon"}, d...)...)
	fails(t, 2, "--expires", append([]string{"keys", "create", "--name", "x", "--expires", "-3d"}, d...)...)
	fails(t, 1, "--expires", append([]string{"keys", "create", "--name", "x", "--expires", "2001-01-01T00:00:00Z"}, d...)...)
	fails(t, 1, "--tags", append([]string{"keys", "create", "--name", "x", "--tags", "a,,b"}, d...)...)
	fails(t, 2, "unexpected argument", append([]string{"keys", "create", "--name", "x", "extra"}, d...)...)

	// --json: exact shape.
	out := ok(t, "", append([]string{"keys", "create", "--name", "alice", "--tags", "team-a, ci", "--expires", "30d", "--json"}, d...)...)
	var alice map[string]json.RawMessage
	decodeJSON(t, out, &alice)
	var key, id string
	json.Unmarshal(alice["key"], &key)
	json.Unmarshal(alice["id"], &id)
	if !secret.LooksLikeRelayKey(key) || id == "" {
		t.Fatalf("create --json = %s", out)
	}
	wantFields(t, "created", alice, map[string]string{
		"name": `"alice"`, "status": `"active"`, "tags": `["team-a","ci"]`, "hint": `"` + key[len(key)-4:] + `"`,
		"last_used_at": "null", "deleted_at": "null",
	}, "created_at", "expires_at")
	var exp time.Time
	json.Unmarshal(alice["expires_at"], &exp)
	if d := time.Until(exp); d < 30*24*time.Hour-time.Minute || d > 30*24*time.Hour+time.Minute {
		t.Fatalf("--expires 30d gave %v", exp)
	}

	// RFC 3339 expiry and the human output, which shows the key once.
	out = ok(t, "", append([]string{"keys", "create", "--name", "bob", "--expires", "2099-01-02T03:04:05Z"}, d...)...)
	bobKey := regexp.MustCompile(`cr_[0-9a-f]{64}`).FindString(out)
	if bobKey == "" || !strings.Contains(out, "will not be shown again") {
		t.Fatalf("human create output %q", out)
	}
	out = ok(t, "", append([]string{"keys", "list", "--json"}, d...)...)
	var list []map[string]json.RawMessage
	decodeJSON(t, out, &list)
	if len(list) != 2 {
		t.Fatalf("list = %s", out)
	}
	wantFields(t, "list[0]", list[0], map[string]string{"id": `"` + id + `"`, "name": `"alice"`, "status": `"active"`, "tags": `["team-a","ci"]`},
		"hint", "created_at", "last_used_at", "expires_at")
	wantFields(t, "list[1]", list[1], map[string]string{"name": `"bob"`, "tags": `[]`, "expires_at": `"2099-01-02T03:04:05Z"`})
	if strings.Contains(out, key) || strings.Contains(out, bobKey) {
		t.Fatal("list shows a key")
	}

	status := func(deleted bool) map[string]string {
		args := append([]string{"keys", "list", "--json"}, d...)
		if deleted {
			args = append(args, "--deleted")
		}
		var l []struct{ ID, Status string }
		decodeJSON(t, ok(t, "", args...), &l)
		m := map[string]string{}
		for _, k := range l {
			m[k.ID] = k.Status
		}
		return m
	}
	// Flags may follow the ID.
	if out := ok(t, "", append([]string{"keys", "disable", id}, d...)...); !strings.Contains(out, "disabled") {
		t.Fatalf("disable output %q", out)
	}
	if s := status(false)[id]; s != "disabled" {
		t.Fatalf("after disable: %q", s)
	}
	human := ok(t, "", "keys", "list", "--data-dir", dir)
	if !strings.Contains(human, "alice") || !strings.Contains(human, "disabled") || !strings.Contains(human, "team-a,ci") {
		t.Fatalf("human list %q", human)
	}
	ok(t, "", "keys", "enable", "--data-dir", dir, id)
	if s := status(false)[id]; s != "active" {
		t.Fatalf("after enable: %q", s)
	}
	ok(t, "", append([]string{"keys", "remove", id}, d...)...)
	if _, listed := status(false)[id]; listed {
		t.Fatal("removed key still listed without --deleted")
	}
	if s := status(true)[id]; s != "deleted" {
		t.Fatalf("--deleted shows %q", s)
	}
	ok(t, "", append([]string{"keys", "restore", id}, d...)...)
	if s := status(false)[id]; s != "active" {
		t.Fatalf("after restore: %q", s)
	}
	ok(t, "", append([]string{"keys", "purge", id}, d...)...)
	if _, listed := status(true)[id]; listed {
		t.Fatal("purged key still listed")
	}

	for _, act := range []string{"disable", "enable", "remove", "restore", "purge"} {
		fails(t, 1, "not found", append([]string{"keys", act, "key_nope"}, d...)...)
		fails(t, 2, "exactly one key ID", append([]string{"keys", act}, d...)...)
		fails(t, 2, "exactly one key ID", append([]string{"keys", act, "a", "b"}, d...)...)
	}
}

func TestAccountsCommands(t *testing.T) {
	t.Parallel()
	isolate(t)
	dir := t.TempDir()
	d := []string{"--data-dir", dir}
	add := func(extra ...string) []string {
		return append(append([]string{"accounts", "add", "--platform", "claude", "--type", "api-key", "--name", "main"}, extra...), d...)
	}

	// Missing required flags and bad values: one line each.
	for _, missing := range []string{"platform", "type", "name", "api-key"} {
		args := []string{"accounts", "add"}
		for _, f := range [][2]string{{"platform", "claude"}, {"type", "api-key"}, {"name", "n"}, {"api-key", "k"}} {
			if f[0] != missing {
				args = append(args, "--"+f[0], f[1])
			}
		}
		fails(t, 2, "--"+missing+" is required", append(args, d...)...)
	}
	fails(t, 1, "--proxy", add("--api-key", "k", "--proxy", "ftp://h:1")...)
	fails(t, 1, "--proxy", add("--api-key", "k", "--proxy", "socks5://host-without-port")...)
	fails(t, 1, "--base-url", add("--api-key", "k", "--base-url", "not a url")...)
	fails(t, 1, "--base-url", add("--api-key", "k", "--base-url", "https://api.anthropic.com/v1/messages")...)
	fails(t, 1, "--priority", add("--api-key", "k", "--priority", "0")...)
	fails(t, 1, "--priority", add("--api-key", "k", "--priority", "101")...)
	fails(t, 1, "--platform", append([]string{"accounts", "add", "--platform", "bard", "--type", "api-key", "--name", "n", "--api-key", "k"}, d...)...)
	fails(t, 1, "not supported yet", append([]string{"accounts", "add", "--platform", "droid", "--type", "api-key", "--name", "n", "--api-key", "k"}, d...)...)
	failsIn(t, "  \n", 2, "stdin was empty", add("--api-key", "-")...)

	// Every flag, with --json.
	const apiKey = "sk-ant-api03-TESTSECRET-abcdef"
	out := ok(t, "", add("--api-key", apiKey, "--base-url", "http://127.0.0.1:9/", "--priority", "10",
		"--proxy", "socks5://user:proxypass@127.0.0.1:1080", "--json")...)
	if strings.Contains(out, apiKey) || strings.Contains(out, "proxypass") {
		t.Fatalf("add output leaks a secret: %s", out)
	}
	var acct map[string]json.RawMessage
	decodeJSON(t, out, &acct)
	wantFields(t, "account", acct, map[string]string{
		"name": `"main"`, "platform": `"claude"`, "type": `"api-key"`, "priority": "10", "status": `"active"`,
		"cooldown_until": "null", "cooldown_reason": `""`, "schedulable": "true", "base_url": `"http://127.0.0.1:9"`,
		"proxy": `"socks5://user:***@127.0.0.1:1080"`, "has_secret": "true", "last_used_at": "null",
	}, "id", "created_at")
	var id string
	json.Unmarshal(acct["id"], &id)

	// --api-key - reads stdin, trimmed; default priority 50; human output.
	out = ok(t, "  sk-from-stdin \n", append([]string{"accounts", "add", "--platform", "claude", "--type", "api-key", "--name", "second", "--api-key", "-"}, d...)...)
	if !strings.Contains(out, "Added account acc_") || !strings.Contains(out, "priority 50") {
		t.Fatalf("human add output %q", out)
	}
	e, err := openEnv(context.Background(), dir, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	as, err := e.Store.ListAccounts(context.Background())
	if err != nil || len(as) != 2 {
		t.Fatalf("accounts %v, %v", as, err)
	}
	for i, want := range []string{apiKey, "sk-from-stdin"} {
		pt, err := e.Box.Open(as[i].SealedSecret)
		if err != nil || string(pt) != want {
			t.Errorf("account %d secret %q, %v; want %q", i, pt, err, want)
		}
	}

	// list --json and the human table with a cooldown.
	until := time.Now().Add(10 * time.Minute).UTC().Truncate(time.Second)
	if err := e.Store.SetCooldown(context.Background(), store.AccountID(id), store.CooldownRateLimited, until, "429 rate limited"); err != nil {
		t.Fatal(err)
	}
	out = ok(t, "", append([]string{"accounts", "list", "--json"}, d...)...)
	var list []map[string]json.RawMessage
	decodeJSON(t, out, &list)
	if len(list) != 2 {
		t.Fatalf("list = %s", out)
	}
	wantFields(t, "list[0]", list[0], map[string]string{
		"id": `"` + id + `"`, "name": `"main"`, "platform": `"claude"`, "type": `"api-key"`, "priority": "10",
		"status": `"rate_limited"`, "cooldown_until": `"` + until.Format(time.RFC3339) + `"`,
	})
	wantFields(t, "list[1]", list[1], map[string]string{"priority": "50", "proxy": `""`, "base_url": `""`, "cooldown_until": "null"})
	human := ok(t, "", append([]string{"accounts", "list"}, d...)...)
	if !strings.Contains(human, "rate_limited") || !strings.Contains(human, until.Local().Format("2006-01-02 15:04")) ||
		!strings.Contains(human, "COOLDOWN UNTIL") {
		t.Fatalf("human list %q", human)
	}

	accStatus := func() string {
		var l []struct{ ID, Status string }
		decodeJSON(t, ok(t, "", append([]string{"accounts", "list", "--json"}, d...)...), &l)
		for _, a := range l {
			if a.ID == id {
				return a.Status
			}
		}
		return "(gone)"
	}
	ok(t, "", append([]string{"accounts", "reset", id}, d...)...)
	if s := accStatus(); s != "active" {
		t.Fatalf("after reset: %q", s)
	}
	ok(t, "", append([]string{"accounts", "disable", id}, d...)...)
	if s := accStatus(); s != "disabled" {
		t.Fatalf("after disable: %q", s)
	}
	ok(t, "", append([]string{"accounts", "enable", id}, d...)...)
	if s := accStatus(); s != "active" {
		t.Fatalf("after enable: %q", s)
	}
	ok(t, "", append([]string{"accounts", "remove", id}, d...)...)
	if s := accStatus(); s != "(gone)" {
		t.Fatalf("after remove: %q", s)
	}
	for _, act := range []string{"disable", "enable", "remove", "reset"} {
		fails(t, 1, "not found", append([]string{"accounts", act, "acc_nope"}, d...)...)
		fails(t, 2, "exactly one account ID", append([]string{"accounts", act}, d...)...)
	}
}

func TestUsageCommand(t *testing.T) {
	t.Parallel()
	isolate(t)
	dir := t.TempDir()
	d := []string{"--data-dir", dir}
	if out := ok(t, "", append([]string{"usage"}, d...)...); !strings.Contains(out, "No usage") {
		t.Fatalf("empty usage %q", out)
	}
	if out := ok(t, "", append([]string{"usage", "--json"}, d...)...); strings.TrimSpace(strings.Join(strings.Fields(out), "")) != `{"keys":[],"accounts":[],"models":[]}` {
		t.Fatalf("empty usage --json %q", out)
	}

	var k1, k2 struct{ ID string }
	decodeJSON(t, ok(t, "", append([]string{"keys", "create", "--name", "one", "--json"}, d...)...), &k1)
	decodeJSON(t, ok(t, "", append([]string{"keys", "create", "--name", "two", "--json"}, d...)...), &k2)
	var a struct{ ID string }
	decodeJSON(t, ok(t, "", append([]string{"accounts", "add", "--platform", "claude", "--type", "api-key", "--name", "acct", "--api-key", "k", "--json"}, d...)...), &a)

	e, err := openEnv(context.Background(), dir, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	_, err = e.Store.InsertUsage(context.Background(), []store.UsageRecord{
		{RequestID: "r1", KeyID: store.KeyID(k1.ID), AccountID: store.AccountID(a.ID), Model: "claude-x", Input: 100, Output: 50,
			CacheWrite5m: 7, CacheWrite1h: 3, CacheRead: 20, CostPico: 1_000_000, CreatedAt: now},
		{RequestID: "r2", KeyID: store.KeyID(k2.ID), AccountID: store.AccountID(a.ID), Model: "claude-y", Input: 1,
			CostPico: 123_456_789_012_345_678, CreatedAt: now},
	})
	e.Close()
	if err != nil {
		t.Fatal(err)
	}

	out := ok(t, "", append([]string{"usage", "--json", "--key", k1.ID}, d...)...)
	var u map[string][]map[string]json.RawMessage
	decodeJSON(t, out, &u)
	if len(u["keys"]) != 1 || len(u["accounts"]) != 1 || len(u["models"]) != 1 {
		t.Fatalf("usage --key = %s", out)
	}
	counters := map[string]string{
		"requests": "1", "input_tokens": "100", "output_tokens": "50", "cache_creation_input_tokens": "10",
		"cache_creation_5m_input_tokens": "7", "cache_creation_1h_input_tokens": "3", "cache_read_input_tokens": "20",
		"cost_usd": "0.000001",
	}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range counters {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	wantFields(t, "keys[0]", u["keys"][0], with(map[string]string{"key_id": `"` + k1.ID + `"`, "key_name": `"one"`}))
	wantFields(t, "accounts[0]", u["accounts"][0], with(map[string]string{"account_id": `"` + a.ID + `"`, "account_name": `"acct"`}))
	wantFields(t, "models[0]", u["models"][0], with(map[string]string{"model": `"claude-x"`}))

	// Unfiltered: both keys; the big cost is printed exactly, no exponent.
	out = ok(t, "", append([]string{"usage", "--json"}, d...)...)
	if !strings.Contains(out, `"cost_usd": 123456.789012345678`) || !strings.Contains(out, `"cost_usd": 123456.789013345678`) {
		t.Fatalf("usage --json costs: %s", out)
	}
	// Human tables: six decimals.
	out = ok(t, "", append([]string{"usage"}, d...)...)
	for _, s := range []string{"Per key:", "Per account:", "Per model:", "one (" + k1.ID + ")", "claude-y", "0.000001", "123456.789012", "123456.789013"} {
		if !strings.Contains(out, s) {
			t.Errorf("human usage lacks %q:\n%s", s, out)
		}
	}
}

// TestSecretsNeverStoredInPlaintext greps every file in DATA_DIR (the
// database, its WAL, the generated secrets) for the relay key and the
// upstream API key.
func TestSecretsNeverStoredInPlaintext(t *testing.T) {
	t.Parallel()
	isolate(t)
	dir := t.TempDir()
	var k struct{ Key string }
	decodeJSON(t, ok(t, "", "keys", "create", "--name", "n", "--json", "--data-dir", dir), &k)
	const apiKey = "sk-ant-api03-PLAINTEXT-MUST-NOT-APPEAR"
	ok(t, apiKey+"\n", "accounts", "add", "--platform", "claude", "--type", "api-key", "--name", "a", "--api-key", "-", "--data-dir", dir)
	ok(t, "", "accounts", "add", "--platform", "claude", "--type", "api-key", "--name", "b", "--api-key", apiKey+"2", "--data-dir", dir)

	files := 0
	err := filepath.WalkDir(dir, func(path string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, s := range []string{k.Key, k.Key[3:], apiKey} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s contains a plaintext secret %q", path, s[:12])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 3 {
		t.Fatalf("only %d files in DATA_DIR; the database is missing", files)
	}
	if _, err := os.Stat(filepath.Join(dir, DBFile)); err != nil {
		t.Fatal(err)
	}
	// But the hash is there, so the key works.
	e, err := openEnv(context.Background(), dir, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.Store.KeyByHash(context.Background(), secret.Hash(k.Key)); err != nil {
		t.Fatalf("key not found by hash: %v", err)
	}
}

func TestDataDirResolution(t *testing.T) {
	isolate(t)
	// Default: ./data.
	wd := t.TempDir()
	t.Chdir(wd)
	ok(t, "", "keys", "list")
	if _, err := os.Stat(filepath.Join(wd, "data", DBFile)); err != nil {
		t.Fatalf("default data dir not used: %v", err)
	}
	// DATA_DIR, and --data-dir over it.
	env := filepath.Join(wd, "from-env")
	t.Setenv("DATA_DIR", env)
	ok(t, "", "keys", "create", "--name", "e")
	flagDir := filepath.Join(wd, "from-flag")
	ok(t, "", "keys", "list", "--data-dir", flagDir)
	for _, p := range []string{filepath.Join(env, DBFile), filepath.Join(flagDir, DBFile)} {
		if _, err := os.Stat(p); err != nil {
			t.Fatal(err)
		}
	}
	var l []any
	decodeJSON(t, ok(t, "", "keys", "list", "--json", "--data-dir", flagDir), &l)
	if len(l) != 0 {
		t.Fatalf("--data-dir did not override DATA_DIR: %v", l)
	}
	// Secrets are generated once, mode 0600, and reused.
	fi, err := os.Stat(filepath.Join(env, "encryption.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("encryption.key: %v %v", fi, err)
	}
}

func TestConfigErrorsAreOneLine(t *testing.T) {
	isolate(t)
	t.Setenv("PORT", "99999")
	t.Setenv("LOG_LEVEL", "loud")
	fails(t, 1, "PORT", "keys", "list", "--data-dir", t.TempDir())
	fails(t, 1, "LOG_LEVEL", "keys", "list", "--data-dir", t.TempDir())
	t.Setenv("PORT", "")
	t.Setenv("LOG_LEVEL", "")
	t.Setenv("ENCRYPTION_KEY", "short")
	fails(t, 1, "ENCRYPTION_KEY", "accounts", "list", "--data-dir", t.TempDir())
}

// keyJSON runs a keys command with --json and returns the key view's
// fields as compact JSON text.
func keyJSON(t *testing.T, args ...string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	decodeJSON(t, ok(t, "", append(args, "--json")...), &m)
	return m
}

func TestKeyPolicyFlags(t *testing.T) {
	t.Parallel()
	isolate(t)
	dir := t.TempDir()
	d := []string{"--data-dir", dir}
	with := func(args ...string) []string { return append(args, d...) }

	var acct, grp struct{ ID string }
	decodeJSON(t, ok(t, "", with("accounts", "add", "--platform", "claude", "--type", "api-key", "--name", "a", "--api-key", "k", "--json")...), &acct)
	decodeJSON(t, ok(t, "", with("groups", "create", "team", "--platform", "claude", "--json")...), &grp)

	// Every policy flag on create.
	k := keyJSON(t, with("keys", "create", "--name", "full", "--description", "CI bot",
		"--permissions", "claude,codex", "--models-allow", "claude-sonnet-4-5, claude-haiku-*", "--models-deny", "claude-sonnet-4-5-20250929",
		"--concurrency", "3", "--queue", "--rate-window", "90m", "--rate-requests", "100", "--rate-tokens", "500000", "--rate-cost", "2.5",
		"--daily-cost", "10", "--total-cost", "$250.125", "--weekly-cost", "50", "--daily-opus-cost", "0.000001",
		"--weekly-reset-day", "fri", "--weekly-reset-hour", "18", "--activate-for", "30d",
		"--account", "group:"+grp.ID, "--account-fallback", "--service-rates", "claude=1.5, openai=0.8")...)
	wantFields(t, "created", k, map[string]string{
		"description": `"CI bot"`, "permissions": `["claude","openai"]`, "models_allow": `["claude-sonnet-4-5","claude-haiku-*"]`,
		"models_deny": `["claude-sonnet-4-5-20250929"]`, "concurrency": `3`, "queue": `true`, "rate_window": `"1h30m"`,
		"rate_requests": `100`, "rate_tokens": `500000`, "rate_cost": `2.5`, "daily_cost": `10`, "total_cost": `250.125`,
		"weekly_cost": `50`, "daily_opus_cost": `0.000001`, "weekly_reset_day": `5`, "weekly_reset_hour": `18`,
		"activate_for": `"30d"`, "activated_at": `null`, "expires_at": `null`, "account": `"group:` + grp.ID + `"`,
		"binding_fallback": `true`, "service_rates": `{"claude":1.5,"openai":0.8}`,
	}, "key")
	var id string
	json.Unmarshal(k["id"], &id)
	human := ok(t, "", with("keys", "list")...)
	if !strings.Contains(human, "30d after first use") || !strings.Contains(human, "group:"+grp.ID) {
		t.Fatalf("human list lacks the activation or binding:\n%s", human)
	}

	// A plain key: the defaults.
	wantFields(t, "plain", keyJSON(t, with("keys", "create", "--name", "plain")...), map[string]string{
		"permissions": `[]`, "queue": `null`, "rate_window": `null`, "weekly_reset_day": `1`, "service_rates": `{}`, "account": `""`,
	})

	// keys update changes exactly the flags given.
	update := func(flags ...string) map[string]json.RawMessage {
		t.Helper()
		return keyJSON(t, with(append([]string{"keys", "update", id}, flags...)...)...)
	}
	wantFields(t, "update 1", update("--description", "", "--permissions", "gemini", "--models-allow", "", "--models-deny", "claude-opus-*",
		"--concurrency", "0", "--queue=false", "--weekly-reset-day", "sun", "--weekly-reset-hour", "0"), map[string]string{
		"description": `""`, "permissions": `["gemini"]`, "models_allow": `[]`, "models_deny": `["claude-opus-*"]`, "concurrency": `0`,
		"queue": `false`, "weekly_reset_day": `0`, "weekly_reset_hour": `0`,
		// Untouched:
		"rate_window": `"1h30m"`, "daily_cost": `10`, "activate_for": `"30d"`, "account": `"group:` + grp.ID + `"`,
	})
	wantFields(t, "queue default", update("--queue=default"), map[string]string{"queue": `null`})
	wantFields(t, "queue bare", update("--queue"), map[string]string{"queue": `true`})
	// --rate-window 0 removes the window with its limits; a new window
	// needs a limit.
	wantFields(t, "window removed", update("--rate-window", "0"), map[string]string{
		"rate_window": `null`, "rate_requests": `0`, "rate_tokens": `0`, "rate_cost": `0`,
	})
	wantFields(t, "window back", update("--rate-window", "1d", "--rate-tokens", "42"), map[string]string{
		"rate_window": `"1d"`, "rate_tokens": `42`, "rate_requests": `0`,
	})
	wantFields(t, "money", update("--rate-cost", "0.5", "--daily-cost", "0", "--total-cost", "1", "--weekly-cost", "0", "--daily-opus-cost", "7"),
		map[string]string{"rate_cost": `0.5`, "daily_cost": `0`, "total_cost": `1`, "weekly_cost": `0`, "daily_opus_cost": `7`})
	// --expires replaces --activate-for and the other way round; never
	// removes either.
	k = update("--expires", "10d")
	wantFields(t, "fixed expiry", k, map[string]string{"activate_for": `null`}, "expires_at")
	if string(k["expires_at"]) == "null" {
		t.Fatal("--expires 10d left no expiry")
	}
	wantFields(t, "activation", update("--activate-for", "12h"), map[string]string{"activate_for": `"12h"`, "expires_at": `null`})
	wantFields(t, "no expiry", update("--activate-for", "never"), map[string]string{"activate_for": `null`, "expires_at": `null`})
	// Binding: fallback off, to an account, then back to the pool.
	wantFields(t, "fallback off", update("--account-fallback=false"), map[string]string{"binding_fallback": `false`})
	wantFields(t, "account", update("--account", acct.ID, "--account-fallback"), map[string]string{
		"account": `"` + acct.ID + `"`, "binding_fallback": `true`,
	})
	wantFields(t, "pool", update("--account", ""), map[string]string{"account": `""`, "binding_fallback": `false`})
	wantFields(t, "rates", update("--service-rates", "droid=2"), map[string]string{"service_rates": `{"droid":2}`})
	wantFields(t, "rates cleared", update("--service-rates", ""), map[string]string{"service_rates": `{}`})

	// Bad values the command line catches: exit 2, naming the flag. The
	// flag package's own errors come with the usage, so only the first
	// line is one line.
	for _, c := range []struct{ flag, val string }{
		{"concurrency", "many"}, {"rate-requests", "x"}, {"rate-tokens", "1.5"}, {"weekly-reset-hour", "noon"},
		{"queue", "maybe"}, {"account-fallback", "perhaps"},
	} {
		code, _, errs := crs(t, "", with("keys", "update", id, "--"+c.flag+"="+c.val)...)
		if code != 2 || !strings.Contains(strings.SplitN(errs, "\n", 2)[0], "-"+c.flag) {
			t.Errorf("--%s %s: exit %d, stderr %q", c.flag, c.val, code, errs)
		}
	}
	for _, cmd := range [][]string{{"keys", "create", "--name", "bad"}, {"keys", "update", id}} {
		for _, c := range []struct{ flag, val string }{
			{"rate-window", "soon"}, {"rate-window", "-5m"}, {"activate-for", "later"}, {"rate-cost", "abc"},
			{"daily-cost", "-1"}, {"total-cost", "2000000"}, {"weekly-cost", "1e"}, {"daily-opus-cost", "ten"},
			{"weekly-reset-day", "funday"}, {"weekly-reset-day", "7"}, {"service-rates", "claude"}, {"service-rates", "claude=lots"},
			{"service-rates", "claude=1,claude=2"},
		} {
			fails(t, 2, "--"+c.flag+":", with(append(append([]string{}, cmd...), "--"+c.flag, c.val)...)...)
		}
		// Bad values the service catches: exit 1, naming the flag.
		for _, c := range []struct {
			flag string
			args []string
		}{
			{"--description", []string{"--description", strings.Repeat("d", 501)}},
			{"--permissions", []string{"--permissions", "claude,bard"}},
			{"--models-allow", []string{"--models-allow", "claude opus"}},
			{"--models-deny", []string{"--models-deny", "*"}},
			{"--concurrency", []string{"--concurrency", "-1"}},
			{"--rate-window", []string{"--rate-window", "30s", "--rate-requests", "1"}},
			{"--rate-window", []string{"--rate-window", "31d", "--rate-requests", "1"}},
			// A window with nothing to count.
			{"--rate-window", []string{"--rate-window", "5m", "--rate-requests", "0", "--rate-tokens", "0", "--rate-cost", "0"}},
			{"--rate-requests", []string{"--rate-requests", "-1", "--rate-window", "5m"}},
			{"--rate-tokens", []string{"--rate-tokens", "-1", "--rate-window", "5m"}},
			{"--weekly-reset-hour", []string{"--weekly-reset-hour", "24"}},
			{"--activate-for", []string{"--activate-for", "30s"}},
			{"--activate-for", []string{"--activate-for", "3651d"}},
			{"--activate-for", []string{"--activate-for", "7d", "--expires", "2099-01-01T00:00:00Z"}},
			{"--account", []string{"--account", "acc_nope"}},
			{"--account", []string{"--account", "group:grp_nope"}},
			{"--account-fallback", []string{"--account-fallback"}},
			{"--service-rates", []string{"--service-rates", "claude=0"}},
			{"--service-rates", []string{"--service-rates", "openai=101"}},
			{"--service-rates", []string{"--service-rates", "bard=1"}},
		} {
			fails(t, 1, c.flag+":", with(append(append([]string{}, cmd...), c.args...)...)...)
		}
		// A limit without a window names the limit.
		fails(t, 1, "--rate-requests:", with(append(append([]string{}, cmd...), "--rate-window", "0", "--rate-requests", "5")...)...)
	}
	// None of the refused commands stored anything.
	var keys []map[string]json.RawMessage
	decodeJSON(t, ok(t, "", with("keys", "list", "--json")...), &keys)
	if len(keys) != 2 {
		t.Fatalf("%d keys after the refusals, want 2", len(keys))
	}
	wantFields(t, "after refusals", keys[0], map[string]string{"account": `""`, "concurrency": `0`, "rate_window": `"1d"`, "description": `""`})
}

func TestGroupsCommands(t *testing.T) {
	t.Parallel()
	isolate(t)
	dir := t.TempDir()
	d := []string{"--data-dir", dir}
	with := func(args ...string) []string { return append(args, d...) }

	code, _, errs := crs(t, "", "groups")
	if code != 2 || !strings.Contains(errs, "crs groups create NAME") || !strings.Contains(errs, "crs groups delete GROUP") {
		t.Fatalf("groups: exit %d, stderr %q", code, errs)
	}
	if out := ok(t, "", with("groups", "list")...); !strings.Contains(out, "No groups yet") {
		t.Fatalf("empty list %q", out)
	}
	if out := ok(t, "", with("groups", "list", "--json")...); strings.TrimSpace(out) != "[]" {
		t.Fatalf("empty list --json %q", out)
	}

	fails(t, 2, "exactly one group NAME", with("groups", "create", "--platform", "claude")...)
	fails(t, 2, "exactly one group NAME", with("groups", "create", "a", "b", "--platform", "claude")...)
	fails(t, 2, "--platform is required", with("groups", "create", "team")...)
	fails(t, 1, "--platform:", with("groups", "create", "team", "--platform", "bard")...)
	fails(t, 1, "NAME:", with("groups", "create", strings.Repeat("n", 101), "--platform", "claude")...)

	out := ok(t, "", with("groups", "create", "team", "--platform", "claude")...)
	gid := regexp.MustCompile(`grp_[0-9a-f]{16}`).FindString(out)
	if gid == "" || !strings.Contains(out, "Created group") {
		t.Fatalf("create output %q", out)
	}
	fails(t, 1, `a group named "team" already exists`, with("groups", "create", "team", "--platform", "openai")...)
	var other map[string]json.RawMessage
	decodeJSON(t, ok(t, "", with("groups", "create", "codex", "--platform", "openai", "--json")...), &other)
	wantFields(t, "openai group", other, map[string]string{"name": `"codex"`, "platform": `"openai"`, "members": `[]`}, "id", "created_at")

	var a1, a2 struct{ ID string }
	decodeJSON(t, ok(t, "", with("accounts", "add", "--platform", "claude", "--type", "api-key", "--name", "a1", "--api-key", "k", "--json")...), &a1)
	decodeJSON(t, ok(t, "", with("accounts", "add", "--platform", "claude", "--type", "api-key", "--name", "a2", "--api-key", "k", "--json")...), &a2)
	e, err := openEnv(context.Background(), dir, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	err = e.Store.CreateAccount(context.Background(), store.Account{ID: "acc_openai", Name: "o", Platform: store.PlatformOpenAI,
		Type: store.TypeAPIKey, Priority: 50, CreatedAt: now, UpdatedAt: now})
	e.Close()
	if err != nil {
		t.Fatal(err)
	}

	if out := ok(t, "", with("groups", "add", gid, a2.ID)...); !strings.Contains(out, "added (1 members)") {
		t.Fatalf("add output %q", out)
	}
	var g map[string]json.RawMessage
	decodeJSON(t, ok(t, "", with("groups", "add", gid, a1.ID, "--json")...), &g)
	wantFields(t, "group", g, map[string]string{"id": `"` + gid + `"`, "members": `["` + a2.ID + `","` + a1.ID + `"]`})
	fails(t, 1, "ACCOUNT: account acc_openai is a openai account", with("groups", "add", gid, "acc_openai")...)
	fails(t, 1, "ACCOUNT: no account", with("groups", "add", gid, "acc_nope")...)
	fails(t, 1, "not found", with("groups", "add", "grp_nope", a1.ID)...)
	fails(t, 2, "want a group ID and an account ID", with("groups", "add", gid)...)
	fails(t, 2, "want a group ID and an account ID", with("groups", "remove", gid, a1.ID, "extra")...)

	var list []map[string]json.RawMessage
	decodeJSON(t, ok(t, "", with("groups", "list", "--json")...), &list)
	if len(list) != 2 {
		t.Fatalf("list %v", list)
	}
	wantFields(t, "list[0]", list[0], map[string]string{"id": `"` + gid + `"`, "name": `"team"`, "platform": `"claude"`,
		"members": `["` + a2.ID + `","` + a1.ID + `"]`}, "created_at")
	human := ok(t, "", with("groups", "list")...)
	if !strings.Contains(human, "team") || !strings.Contains(human, a2.ID+","+a1.ID) || !strings.Contains(human, "MEMBERS") {
		t.Fatalf("human list:\n%s", human)
	}

	if out := ok(t, "", with("groups", "remove", gid, a2.ID)...); !strings.Contains(out, "removed (1 members)") {
		t.Fatalf("remove output %q", out)
	}
	if out := ok(t, "", with("groups", "remove", gid, a2.ID)...); !strings.Contains(out, "was not a member") {
		t.Fatalf("second remove output %q", out)
	}
	fails(t, 1, "not found", with("groups", "remove", "grp_nope", a2.ID)...)

	// A key bound to the group keeps it from being deleted.
	var key struct{ ID string }
	decodeJSON(t, ok(t, "", with("keys", "create", "--name", "bound", "--account", "group:"+gid, "--json")...), &key)
	fails(t, 1, "is bound by keys "+key.ID, with("groups", "delete", gid)...)
	ok(t, "", with("keys", "remove", key.ID)...)
	fails(t, 1, "is bound by keys "+key.ID, with("groups", "delete", gid)...)
	ok(t, "", with("keys", "update", key.ID, "--account", "")...)
	if out := ok(t, "", with("groups", "delete", gid)...); !strings.Contains(out, "deleted") {
		t.Fatalf("delete output %q", out)
	}
	fails(t, 1, "not found", with("groups", "delete", gid)...)
	fails(t, 2, "exactly one group ID", with("groups", "delete")...)
	fails(t, 1, "--account: no group", with("keys", "update", key.ID, "--account", "group:"+gid)...)
	decodeJSON(t, ok(t, "", with("groups", "list", "--json")...), &list)
	if len(list) != 1 || string(list[0]["name"]) != `"codex"` {
		t.Fatalf("after delete: %v", list)
	}
}
