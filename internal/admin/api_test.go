package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
)

// routePath turns a route pattern into a concrete method and path.
func routePath(r Route) (method, path string) {
	method = r.Method
	if method == "" {
		method = http.MethodGet
	}
	path = r.Pattern
	if i := strings.IndexByte(path, ' '); i >= 0 {
		path = path[i+1:]
	}
	path = regexp.MustCompile(`\{[^}]+\}`).ReplaceAllString(path, "nosuchid")
	if strings.HasSuffix(path, "/") {
		path += "no-such-endpoint"
	}
	return method, path
}

// TestEveryPrivateRouteRefusesWithoutSession walks Routes(), so a route
// added later is checked without anyone remembering to add it here. The
// original project shipped a full admin auth bypass; this is the fence.
func TestEveryPrivateRouteRefusesWithoutSession(t *testing.T) {
	e := newTestEnv(t)

	// An expired session: logged in, then a day and a bit passes.
	expired := e.login()
	e.clock.Advance(DefaultSessionTTL + time.Minute)
	valid := e.login()

	random := secret.RandomHex(32)
	wrongMAC := random + "." + sessionMAC("another secret entirely, 32+ chars", random)
	// Signed with the real secret but never issued: passes the MAC check,
	// must still fail at the store.
	unissued := random + "." + sessionMAC(testJWT, random)

	bad := []struct {
		name string
		hdr  []string
	}{
		{"no auth", nil},
		{"garbage bearer", []string{"Authorization", "Bearer garbage"}},
		{"empty bearer", []string{"Authorization", "Bearer "}},
		{"token without scheme", []string{"Authorization", valid}},
		{"basic scheme", []string{"Authorization", "Basic " + valid}},
		{"forged MAC", []string{"Authorization", "Bearer " + wrongMAC}},
		{"unissued but signed", []string{"Authorization", "Bearer " + unissued}},
		{"token hash as token", []string{"Authorization", "Bearer " + secret.Hash(valid)}},
		{"cookie only", []string{"Cookie", "token=" + valid + "; adminToken=" + valid}},
		{"x-admin-token only", []string{"X-Admin-Token", valid}},
		{"expired session", []string{"Authorization", "Bearer " + expired}},
	}

	var public []string
	routes := e.api.Routes()
	if len(routes) < 15 {
		t.Fatalf("only %d routes; the table looks broken", len(routes))
	}
	for _, r := range routes {
		if r.Public {
			public = append(public, r.Pattern)
			continue
		}
		method, path := routePath(r)
		for _, b := range bad {
			res := e.do(method, path, "{}", b.hdr...)
			if res.status != http.StatusUnauthorized || res.errorCode() != "unauthorized" {
				t.Errorf("%s %s with %s: %d %s, want 401 unauthorized", method, path, b.name, res.status, res.body)
			}
		}
		// With a valid session the same request gets past authentication,
		// which proves the request above really reached this route. (A
		// fresh session each time: one of the routes is logout.)
		if res := e.authed(e.login(), method, path, "{}"); res.status == http.StatusUnauthorized {
			t.Errorf("%s %s with a valid session: 401 %s", method, path, res.body)
		}
	}
	if strings.Join(public, ",") != "POST /admin/login" {
		t.Errorf("public routes = %v, want only POST /admin/login", public)
	}
}

func TestLoginLogout(t *testing.T) {
	e := newTestEnv(t)

	for _, c := range []struct{ user, pass string }{
		{testUser, "wrong password"},
		{"admin", testPassword},
		{"", ""},
	} {
		r := e.do("POST", "/admin/login", map[string]string{"username": c.user, "password": c.pass})
		want(t, r, http.StatusUnauthorized, "invalid_credentials")
	}
	want(t, e.do("POST", "/admin/login", `{"username":"root"`), http.StatusBadRequest, "invalid_request")
	want(t, e.do("POST", "/admin/login", `{"username":"root","password":"x","otp":1}`), http.StatusBadRequest, "invalid_request")

	r := e.do("POST", "/admin/login", map[string]string{"username": testUser, "password": testPassword})
	want(t, r, http.StatusOK, "")
	var tr TokenResponse
	r.json(t, &tr)
	if !regexp.MustCompile(`^[0-9a-f]{64}\.[0-9a-f]{64}$`).MatchString(tr.Token) {
		t.Fatalf("token %q has an unexpected shape", tr.Token)
	}
	if d := tr.ExpiresAt.Sub(e.clock.Now()); d < DefaultSessionTTL-time.Second || d > DefaultSessionTTL+time.Second {
		t.Fatalf("expires_at %v is %v from now, want %v", tr.ExpiresAt, d, DefaultSessionTTL)
	}
	// Only the hash is stored.
	if _, err := e.st.GetSession(context.Background(), secret.Hash(tr.Token)); err != nil {
		t.Fatalf("session not stored by hash: %v", err)
	}
	if _, err := e.st.GetSession(context.Background(), tr.Token); err == nil {
		t.Fatal("session stored under the plaintext token")
	}

	r = e.authed(tr.Token, "GET", "/admin/session", nil)
	want(t, r, http.StatusOK, "")
	var sv SessionView
	r.json(t, &sv)
	if sv.Username != testUser {
		t.Fatalf("session user %q", sv.Username)
	}

	want(t, e.authed(tr.Token, "POST", "/admin/logout", nil), http.StatusNoContent, "")
	want(t, e.authed(tr.Token, "GET", "/admin/keys", nil), http.StatusUnauthorized, "unauthorized")
	// Unknown admin paths are 404 only once logged in.
	other := e.login()
	want(t, e.authed(other, "GET", "/admin/nope", nil), http.StatusNotFound, "not_found")
}

func TestLoginThrottle(t *testing.T) {
	e := newTestEnv(t)
	login := func(ip, pass string) response {
		return e.do("POST", "/admin/login", map[string]string{"username": testUser, "password": pass}, "X-Test-Client", ip)
	}
	const ip = "203.0.113.7"

	// A success resets the count: 4 failures, a success, 4 more failures
	// are all answered normally.
	for range 4 {
		want(t, login(ip, "nope"), http.StatusUnauthorized, "invalid_credentials")
	}
	want(t, login(ip, testPassword), http.StatusOK, "")
	for range 4 {
		want(t, login(ip, "nope"), http.StatusUnauthorized, "invalid_credentials")
	}
	e.clock.Advance(time.Minute)
	want(t, login(ip, "nope"), http.StatusUnauthorized, "invalid_credentials") // the 5th

	// Now even the right password is refused, with Retry-After.
	r := login(ip, testPassword)
	want(t, r, http.StatusTooManyRequests, "too_many_attempts")
	ra, err := strconv.Atoi(r.header.Get("Retry-After"))
	// The oldest of the five failures was a minute ago.
	if err != nil || ra != int((loginWindow-time.Minute).Seconds()) {
		t.Fatalf("Retry-After = %q, want %d", r.header.Get("Retry-After"), int((loginWindow - time.Minute).Seconds()))
	}
	// Another address is not affected; the same IPv4 address is.
	want(t, login("203.0.113.8", testPassword), http.StatusOK, "")

	// Once the oldest failure leaves the window, one more try is allowed.
	e.clock.Advance(loginWindow - time.Minute)
	want(t, login(ip, testPassword), http.StatusOK, "")
}

func TestKeysOverHTTP(t *testing.T) {
	e := newTestEnv(t)
	tok := e.login()
	ctx := context.Background()

	exp := e.clock.Now().Add(48 * time.Hour).Truncate(time.Second)
	r := e.authed(tok, "POST", "/admin/keys", map[string]any{"name": " alice ", "tags": []string{"team-a", "ci", "ci"}, "expires_at": exp})
	want(t, r, http.StatusCreated, "")
	var created map[string]any
	r.json(t, &created)
	key, _ := created["key"].(string)
	if !secret.LooksLikeRelayKey(key) {
		t.Fatalf("key %q is not cr_ + 64 hex", key)
	}
	id, _ := created["id"].(string)
	if id == "" || created["name"] != "alice" || created["status"] != "active" || created["hint"] != key[len(key)-4:] ||
		created["expires_at"] != exp.UTC().Format(time.RFC3339) || created["deleted_at"] != nil || created["last_used_at"] != nil {
		t.Fatalf("created = %v", created)
	}
	if tags, _ := json.Marshal(created["tags"]); string(tags) != `["team-a","ci"]` {
		t.Fatalf("tags = %s", tags)
	}
	if _, err := time.Parse(time.RFC3339, created["created_at"].(string)); err != nil || !strings.HasSuffix(created["created_at"].(string), "Z") {
		t.Fatalf("created_at = %v", created["created_at"])
	}
	// Stored by hash only.
	k, err := e.st.KeyByHash(ctx, secret.Hash(key))
	if err != nil || string(k.ID) != id || strings.Contains(k.Hash, key) {
		t.Fatalf("KeyByHash: %v %v", k, err)
	}

	// A key without tags lists tags as [], not null.
	r = e.authed(tok, "POST", "/admin/keys", map[string]any{"name": "bob"})
	want(t, r, http.StatusCreated, "")
	if !strings.Contains(string(r.body), `"tags":[]`) {
		t.Fatalf("tags not []: %s", r.body)
	}
	var bob CreatedKey
	r.json(t, &bob)

	// Validation errors name the field.
	for _, c := range []struct {
		body  any
		field string
	}{
		{map[string]any{"name": ""}, "name"},
		{map[string]any{"name": strings.Repeat("x", 101)}, "name"},
		{map[string]any{"name": "x", "tags": []string{""}}, "tags"},
		{map[string]any{"name": "x", "expires_at": "yesterday"}, "expires_at"},
		{map[string]any{"name": "x", "expires_at": e.clock.Now().Add(-time.Hour)}, "expires_at"},
		{map[string]any{"name": "x", "colour": "red"}, "colour"},
		{map[string]any{"name": 7}, "name"},
		{`{"name":"x"} {"name":"y"}`, "body"},
		{`not json`, "body"},
		{``, "body"},
	} {
		r := e.authed(tok, "POST", "/admin/keys", c.body)
		want(t, r, http.StatusBadRequest, "invalid_request")
		if !strings.HasPrefix(r.errorMessage(), c.field+":") {
			t.Errorf("body %v: message %q does not name %s", c.body, r.errorMessage(), c.field)
		}
	}
	// Bodies over 1 MiB are refused.
	big := `{"name":"` + strings.Repeat("x", maxBodyBytes) + `"}`
	want(t, e.authed(tok, "POST", "/admin/keys", big), http.StatusRequestEntityTooLarge, "too_large")

	// List, get.
	r = e.authed(tok, "GET", "/admin/keys", nil)
	want(t, r, http.StatusOK, "")
	var list []KeyView
	r.json(t, &list)
	if len(list) != 2 || string(list[0].ID) != id || list[1].ID != bob.ID {
		t.Fatalf("list = %+v", list)
	}
	want(t, e.authed(tok, "GET", "/admin/keys/"+id, nil), http.StatusOK, "")
	want(t, e.authed(tok, "GET", "/admin/keys/key_nope", nil), http.StatusNotFound, "not_found")

	// Patch: disable, rename, clear expiry; absent fields stay.
	r = e.authed(tok, "PATCH", "/admin/keys/"+id, `{"disabled":true,"name":"alice2","expires_at":null}`)
	want(t, r, http.StatusOK, "")
	var kv KeyView
	r.json(t, &kv)
	if kv.Status != "disabled" || kv.Name != "alice2" || kv.ExpiresAt != nil || strings.Join(kv.Tags, ",") != "team-a,ci" {
		t.Fatalf("patched = %+v", kv)
	}
	r = e.authed(tok, "PATCH", "/admin/keys/"+id, `{"disabled":false,"tags":[]}`)
	r.json(t, &kv)
	if kv.Status != "active" || len(kv.Tags) != 0 || kv.Name != "alice2" {
		t.Fatalf("patched = %+v", kv)
	}
	r = e.authed(tok, "PATCH", "/admin/keys/"+id, `{"clients":["Claude_Code"," claude_code"]}`)
	r.json(t, &kv)
	if strings.Join(kv.Clients, ",") != "claude_code" {
		t.Fatalf("clients = %v", kv.Clients)
	}
	want(t, e.authed(tok, "PATCH", "/admin/keys/"+id, `{"clients":["netscape"]}`), http.StatusBadRequest, "invalid_request")
	r = e.authed(tok, "PATCH", "/admin/keys/"+id, `{"clients":[]}`)
	r.json(t, &kv)
	if kv.Clients == nil || len(kv.Clients) != 0 {
		t.Fatalf("cleared clients = %#v (want [])", kv.Clients)
	}
	want(t, e.authed(tok, "PATCH", "/admin/keys/"+id, `{"expires_at":"2001-01-01T00:00:00Z"}`), http.StatusBadRequest, "invalid_request")
	want(t, e.authed(tok, "PATCH", "/admin/keys/key_nope", `{"disabled":true}`), http.StatusNotFound, "not_found")

	// Expiry shows as status expired once passed.
	soon := e.clock.Now().Add(time.Hour)
	r = e.authed(tok, "PATCH", "/admin/keys/"+id, map[string]any{"expires_at": soon})
	want(t, r, http.StatusOK, "")
	e.clock.Advance(2 * time.Hour)
	tok = e.login() // the session outlives two hours, but be explicit about time moving
	r = e.authed(tok, "GET", "/admin/keys/"+id, nil)
	r.json(t, &kv)
	if kv.Status != "expired" {
		t.Fatalf("status %q, want expired", kv.Status)
	}

	// Soft delete, list with and without deleted, restore.
	r = e.authed(tok, "DELETE", "/admin/keys/"+id, nil)
	want(t, r, http.StatusOK, "")
	r.json(t, &kv)
	if kv.Status != "deleted" || kv.DeletedAt == nil {
		t.Fatalf("removed = %+v", kv)
	}
	r = e.authed(tok, "GET", "/admin/keys", nil)
	r.json(t, &list)
	if len(list) != 1 || list[0].ID != bob.ID {
		t.Fatalf("list after remove = %+v", list)
	}
	r = e.authed(tok, "GET", "/admin/keys?deleted=1", nil)
	r.json(t, &list)
	if len(list) != 2 {
		t.Fatalf("list with deleted = %+v", list)
	}
	r = e.authed(tok, "POST", "/admin/keys/"+id+"/restore", nil)
	want(t, r, http.StatusOK, "")
	r.json(t, &kv)
	if kv.DeletedAt != nil || kv.Status != "expired" {
		t.Fatalf("restored = %+v", kv)
	}

	// Purge works on any key and is final.
	want(t, e.authed(tok, "DELETE", "/admin/keys/"+id+"/purge", nil), http.StatusNoContent, "")
	want(t, e.authed(tok, "GET", "/admin/keys/"+id, nil), http.StatusNotFound, "not_found")
	want(t, e.authed(tok, "DELETE", "/admin/keys/"+id+"/purge", nil), http.StatusNotFound, "not_found")
	want(t, e.authed(tok, "POST", "/admin/keys/"+id+"/restore", nil), http.StatusNotFound, "not_found")
	if _, err := e.st.KeyByHash(ctx, secret.Hash(key)); err == nil {
		t.Fatal("purged key still found by hash")
	}
}

func TestAccountsOverHTTP(t *testing.T) {
	e := newTestEnv(t)
	tok := e.login()
	ctx := context.Background()
	const apiKey = "sk-ant-api03-secretsecretsecret"

	r := e.authed(tok, "POST", "/admin/accounts", map[string]any{
		"platform": "claude", "type": "api-key", "name": "console-1", "api_key": apiKey,
		"base_url": "https://example.test/", "proxy": "socks5://user:hunter2@127.0.0.1:1080",
	})
	want(t, r, http.StatusCreated, "")
	if strings.Contains(string(r.body), apiKey) || strings.Contains(string(r.body), "hunter2") {
		t.Fatalf("response leaks a secret: %s", r.body)
	}
	var got map[string]any
	r.json(t, &got)
	id, _ := got["id"].(string)
	for k, v := range map[string]any{
		"name": "console-1", "platform": "claude", "type": "api-key", "priority": float64(50),
		"status": "active", "cooldown_until": nil, "cooldown_reason": "", "schedulable": true,
		"base_url": "https://example.test", "proxy": "socks5://user:***@127.0.0.1:1080",
		"has_secret": true, "last_used_at": nil,
	} {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if _, ok := got["created_at"].(string); !ok || id == "" {
		t.Fatalf("account = %v", got)
	}
	// The store holds sealed values only.
	a, err := e.st.GetAccount(ctx, store.AccountID(id))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(a.SealedSecret), apiKey) || strings.Contains(string(a.SealedProxy), "hunter2") {
		t.Fatal("plaintext in the store")
	}
	if pt, err := e.svc.Box.Open(a.SealedSecret); err != nil || string(pt) != apiKey {
		t.Fatalf("sealed secret opens to %q, %v", pt, err)
	}

	// Validation names the field.
	base := func(over map[string]any) map[string]any {
		m := map[string]any{"platform": "claude", "type": "api-key", "name": "n", "api_key": "k"}
		for k, v := range over {
			m[k] = v
		}
		return m
	}
	for _, c := range []struct {
		over  map[string]any
		field string
	}{
		{map[string]any{"platform": "bard"}, "platform"},
		{map[string]any{"platform": ""}, "platform"},
		{map[string]any{"type": "password"}, "type"},
		{map[string]any{"platform": "droid"}, "platform"},                                                     // not supported yet
		{map[string]any{"platform": "openai", "base_url": "https://api.openai.com/v1/responses"}, "base_url"}, // an endpoint, not a root
		{map[string]any{"type": "oauth"}, "type"},
		{map[string]any{"name": " "}, "name"},
		{map[string]any{"api_key": ""}, "api_key"},
		{map[string]any{"api_key": "two words"}, "api_key"},
		{map[string]any{"base_url": "ftp://x"}, "base_url"},
		{map[string]any{"base_url": "https://api.anthropic.com/v1/messages"}, "base_url"},
		{map[string]any{"proxy": "socks4://h:1"}, "proxy"},
		{map[string]any{"proxy": "http://h"}, "proxy"},
		{map[string]any{"priority": 0}, "priority"},
		{map[string]any{"priority": 101}, "priority"},
		{map[string]any{"priority": "high"}, "priority"},
	} {
		r := e.authed(tok, "POST", "/admin/accounts", base(c.over))
		want(t, r, http.StatusBadRequest, "invalid_request")
		if !strings.HasPrefix(r.errorMessage(), c.field+":") {
			t.Errorf("%v: message %q does not name %s", c.over, r.errorMessage(), c.field)
		}
	}
	r = e.authed(tok, "POST", "/admin/accounts", base(map[string]any{"proxy": "http://u:secretpw@h:8080/x"}))
	if strings.Contains(string(r.body), "secretpw") {
		t.Fatalf("proxy error repeats the password: %s", r.body)
	}

	// Patch every field.
	r = e.authed(tok, "PATCH", "/admin/accounts/"+id, map[string]any{
		"name": "renamed", "priority": 10, "schedulable": false, "proxy": "", "base_url": "", "api_key": "sk-new",
	})
	want(t, r, http.StatusOK, "")
	var av AccountView
	r.json(t, &av)
	if av.Name != "renamed" || av.Priority != 10 || av.Schedulable || av.Proxy != "" || av.BaseURL != "" || !av.HasSecret {
		t.Fatalf("patched = %+v", av)
	}
	a, _ = e.st.GetAccount(ctx, store.AccountID(id))
	if pt, _ := e.svc.Box.Open(a.SealedSecret); string(pt) != "sk-new" || len(a.SealedProxy) != 0 {
		t.Fatalf("patched secret %q proxy %d bytes", pt, len(a.SealedProxy))
	}
	want(t, e.authed(tok, "PATCH", "/admin/accounts/"+id, `{"priority":1000}`), http.StatusBadRequest, "invalid_request")
	want(t, e.authed(tok, "PATCH", "/admin/accounts/"+id, `{"api_key":""}`), http.StatusBadRequest, "invalid_request")
	r = e.authed(tok, "PATCH", "/admin/accounts/"+id, `{"disabled":true}`)
	r.json(t, &av)
	if av.Status != "disabled" {
		t.Fatalf("status %q, want disabled", av.Status)
	}
	r = e.authed(tok, "PATCH", "/admin/accounts/"+id, `{"disabled":false,"schedulable":true}`)
	r.json(t, &av)
	if av.Status != "active" || !av.Schedulable {
		t.Fatalf("re-enabled = %+v", av)
	}

	// Per-account options: set, shown, cleared; a bad model list is refused.
	r = e.authed(tok, "PATCH", "/admin/accounts/"+id, map[string]any{
		"models":                map[string]string{"claude-sonnet-4-5": "", "claude-opus-4-1": "claude-opus-4-5"},
		"auto_pause_on_warning": true, "serial_queue": true, "unified_user_agent": true, "intercept_warmup": true,
	})
	want(t, r, http.StatusOK, "")
	r.json(t, &av)
	if len(av.Models) != 2 || av.Models["claude-opus-4-1"] != "claude-opus-4-5" || !av.AutoPauseOnWarning || !av.SerialQueue ||
		!av.UnifiedUserAgent || !av.InterceptWarmup {
		t.Fatalf("options = %+v", av)
	}
	want(t, e.authed(tok, "PATCH", "/admin/accounts/"+id, `{"models":{"bad name!":""}}`), http.StatusBadRequest, "invalid_request")
	r = e.authed(tok, "PATCH", "/admin/accounts/"+id, `{"models":{},"serial_queue":false}`)
	r.json(t, &av)
	if av.Models != nil || av.SerialQueue || !av.InterceptWarmup {
		t.Fatalf("after clearing = %+v", av)
	}
	// The relay's quota state shows: the live window and family limits.
	winEnd := e.clock.Now().Add(2 * time.Hour).Truncate(time.Second)
	if err := e.st.SetAccountQuota(ctx, store.AccountID(id), store.Quota{
		Window5h:     store.Window{Start: winEnd.Add(-5 * time.Hour), End: winEnd, Status: store.WindowWarning},
		FamilyLimits: map[string]time.Time{"opus": winEnd, "haiku": e.clock.Now().Add(-time.Minute)},
	}); err != nil {
		t.Fatal(err)
	}
	r = e.authed(tok, "GET", "/admin/accounts/"+id, nil)
	var raw map[string]any
	r.json(t, &raw)
	w5, _ := raw["window_5h"].(map[string]any)
	fl, _ := raw["family_limits"].(map[string]any)
	if w5["status"] != "allowed_warning" || w5["end"] != winEnd.UTC().Format(time.RFC3339) || len(fl) != 1 || fl["opus"] != winEnd.UTC().Format(time.RFC3339) {
		t.Fatalf("window_5h %v family_limits %v (an ended limit must not show)", w5, fl)
	}

	// A cooldown shows in the view; reset clears it.
	until := e.clock.Now().Add(10 * time.Minute).Truncate(time.Millisecond)
	if err := e.st.SetCooldown(ctx, store.AccountID(id), store.CooldownRateLimited, until, "429 from upstream"); err != nil {
		t.Fatal(err)
	}
	r = e.authed(tok, "GET", "/admin/accounts", nil)
	var list []map[string]any
	r.json(t, &list)
	if len(list) != 1 || list[0]["status"] != "rate_limited" || list[0]["cooldown_reason"] != "429 from upstream" ||
		list[0]["cooldown_until"] != until.UTC().Format(time.RFC3339Nano) {
		t.Fatalf("cooling list = %v", list)
	}
	r = e.authed(tok, "POST", "/admin/accounts/"+id+"/reset", nil)
	want(t, r, http.StatusOK, "")
	r.json(t, &av)
	if av.Status != "active" || av.CooldownUntil != nil {
		t.Fatalf("after reset = %+v", av)
	}
	want(t, e.authed(tok, "POST", "/admin/accounts/acc_nope/reset", nil), http.StatusNotFound, "not_found")

	want(t, e.authed(tok, "GET", "/admin/accounts/"+id, nil), http.StatusOK, "")
	want(t, e.authed(tok, "DELETE", "/admin/accounts/"+id, nil), http.StatusNoContent, "")
	want(t, e.authed(tok, "GET", "/admin/accounts/"+id, nil), http.StatusNotFound, "not_found")
	want(t, e.authed(tok, "DELETE", "/admin/accounts/"+id, nil), http.StatusNotFound, "not_found")
}

func TestPasswordChange(t *testing.T) {
	e := newTestEnv(t)
	tok := e.login()
	other := e.login()
	e.clock.Advance(time.Second)

	want(t, e.authed(tok, "POST", "/admin/password", map[string]string{"current_password": "wrong", "new_password": "long enough"}),
		http.StatusBadRequest, "invalid_request")
	r := e.authed(tok, "POST", "/admin/password", map[string]string{"current_password": testPassword, "new_password": "short"})
	want(t, r, http.StatusBadRequest, "invalid_request")
	if !strings.HasPrefix(r.errorMessage(), "new_password:") {
		t.Fatalf("message %q", r.errorMessage())
	}

	r = e.authed(tok, "POST", "/admin/password", map[string]string{"current_password": testPassword, "new_password": "a new password"})
	want(t, r, http.StatusOK, "")
	var tr TokenResponse
	r.json(t, &tr)

	// Every earlier session ended; the returned one works.
	want(t, e.authed(tok, "GET", "/admin/keys", nil), http.StatusUnauthorized, "unauthorized")
	want(t, e.authed(other, "GET", "/admin/keys", nil), http.StatusUnauthorized, "unauthorized")
	want(t, e.authed(tr.Token, "GET", "/admin/keys", nil), http.StatusOK, "")

	// init.json keeps the username but not the password, mode 0600.
	path := filepath.Join(e.dataDir, InitFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if _, has := f["adminPassword"]; has || f["adminUsername"] != testUser || f["note"] == nil || strings.Contains(string(b), testPassword) {
		t.Fatalf("init.json after change: %s", b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("init.json mode %v", fi.Mode().Perm())
	}

	want(t, e.do("POST", "/admin/login", map[string]string{"username": testUser, "password": testPassword}), http.StatusUnauthorized, "invalid_credentials")
	want(t, e.do("POST", "/admin/login", map[string]string{"username": testUser, "password": "a new password"}), http.StatusOK, "")
}

func TestUsageOverHTTP(t *testing.T) {
	e := newTestEnv(t)
	tok := e.login()
	ctx := context.Background()

	kv, _, err := e.svc.CreateKey(ctx, KeyInput{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	av, err := e.svc.AddAccount(ctx, AccountInput{Platform: "claude", Type: "api-key", Name: "acct", APIKey: "k", Priority: 50})
	if err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	recs := []store.UsageRecord{
		{RequestID: "r1", KeyID: kv.ID, AccountID: av.ID, Model: "claude-a", Input: 10, Output: 20, CacheWrite5m: 3, CacheWrite1h: 4, CacheRead: 5, CostPico: 1_000_000, CreatedAt: now},
		{RequestID: "r2", KeyID: kv.ID, AccountID: av.ID, Model: "claude-b", Input: 1, CostPico: 123_456_789_012_345_678, CreatedAt: now},
		{RequestID: "r3", KeyID: "key_gone", AccountID: av.ID, Model: "claude-a", CostPico: 0, CreatedAt: now},
	}
	if _, err := e.st.InsertUsage(ctx, recs); err != nil {
		t.Fatal(err)
	}

	r := e.authed(tok, "GET", "/admin/usage?key="+string(kv.ID), nil)
	want(t, r, http.StatusOK, "")
	body := string(r.body)
	// cost_usd is a JSON number, exactly the decimal, no exponent.
	var raw struct {
		Keys     []map[string]json.RawMessage `json:"keys"`
		Accounts []map[string]json.RawMessage `json:"accounts"`
		Models   []map[string]json.RawMessage `json:"models"`
	}
	r.json(t, &raw)
	if len(raw.Keys) != 1 || len(raw.Accounts) != 1 || len(raw.Models) != 2 {
		t.Fatalf("usage = %s", body)
	}
	k := raw.Keys[0]
	for f, v := range map[string]string{
		"key_id": `"` + string(kv.ID) + `"`, "key_name": `"alice"`, "requests": "2", "input_tokens": "11",
		"output_tokens": "20", "cache_creation_input_tokens": "7", "cache_creation_5m_input_tokens": "3",
		"cache_creation_1h_input_tokens": "4", "cache_read_input_tokens": "5", "cost_usd": "123456.789013345678",
	} {
		if string(k[f]) != v {
			t.Errorf("keys[0].%s = %s, want %s", f, k[f], v)
		}
	}
	if a := raw.Accounts[0]; string(a["account_id"]) != `"`+string(av.ID)+`"` || string(a["account_name"]) != `"acct"` {
		t.Errorf("accounts[0] = %v", a)
	}
	models := map[string]string{}
	for _, m := range raw.Models {
		models[string(m["model"])] = string(m["cost_usd"])
	}
	if models[`"claude-a"`] != "0.000001" || models[`"claude-b"`] != "123456.789012345678" {
		t.Errorf("model costs = %v", models)
	}

	// Unfiltered: the purged key's usage shows with an empty name and zero cost.
	r = e.authed(tok, "GET", "/admin/usage", nil)
	r.json(t, &raw)
	found := false
	for _, k := range raw.Keys {
		if string(k["key_id"]) == `"key_gone"` {
			found = true
			if string(k["key_name"]) != `""` || string(k["cost_usd"]) != "0" {
				t.Errorf("gone key row = %v", k)
			}
		}
	}
	if !found {
		t.Errorf("usage of a purged key missing: %s", r.body)
	}

	// No usage at all: empty arrays, not null.
	e2 := newTestEnv(t)
	r = e2.authed(e2.login(), "GET", "/admin/usage", nil)
	if strings.TrimSpace(string(r.body)) != `{"keys":[],"accounts":[],"models":[]}` {
		t.Fatalf("empty usage = %s", r.body)
	}
}

// keyFields fetches a key over HTTP and returns its view as raw JSON
// fields, compacted, so tests compare exact JSON text.
func keyFields(t *testing.T, r response) map[string]string {
	t.Helper()
	var raw map[string]json.RawMessage
	r.json(t, &raw)
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		var b strings.Builder
		var c bytes.Buffer
		json.Compact(&c, v)
		b.Write(c.Bytes())
		out[k] = b.String()
	}
	return out
}

func wantKeyFields(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s = %s, want %s", what, k, got[k], v)
		}
	}
}

func TestKeyPolicyOverHTTP(t *testing.T) {
	e := newTestEnv(t)
	tok := e.login()
	ctx := context.Background()
	acct, err := e.svc.AddAccount(ctx, AccountInput{Platform: "claude", Type: "api-key", Name: "a", APIKey: "k", Priority: 50})
	if err != nil {
		t.Fatal(err)
	}
	grp, err := e.svc.CreateGroup(ctx, GroupInput{Name: "team", Platform: "claude"})
	if err != nil {
		t.Fatal(err)
	}

	// A key without a policy shows every field, unlimited, lists [] and
	// the week starting Monday 00:00.
	r := e.authed(tok, "POST", "/admin/keys", map[string]any{"name": "plain"})
	want(t, r, http.StatusCreated, "")
	wantKeyFields(t, "plain key", keyFields(t, r), map[string]string{
		"description": `""`, "permissions": `[]`, "models_allow": `[]`, "models_deny": `[]`, "concurrency": `0`,
		"queue": `null`, "rate_window": `null`, "rate_requests": `0`, "rate_tokens": `0`, "rate_cost": `0`,
		"daily_cost": `0`, "total_cost": `0`, "weekly_cost": `0`, "daily_opus_cost": `0`, "weekly_reset_day": `1`,
		"weekly_reset_hour": `0`, "activate_for": `null`, "activated_at": `null`, "account": `""`,
		"binding_fallback": `false`, "service_rates": `{}`, "expires_at": `null`,
	})

	// Every policy field on create.
	full := map[string]any{
		"name": "full", "description": " for the CI bot ", "permissions": []string{"claude", "Codex", "claude"},
		"models_allow": []string{"claude-sonnet-4-5", "claude-haiku-*"}, "models_deny": []string{"claude-sonnet-4-5-20250929"},
		"concurrency": 4, "queue": true, "rate_window": "90m", "rate_requests": 100, "rate_tokens": 5000000,
		"rate_cost": 2.5, "daily_cost": 10, "total_cost": "250.125", "weekly_cost": 50, "daily_opus_cost": 0.000001,
		"weekly_reset_day": "fri", "weekly_reset_hour": 18, "activate_for": "30d",
		"account": "group:" + string(grp.ID), "binding_fallback": true,
		"service_rates": map[string]float64{"claude": 1.5, "openai": 0.8},
	}
	r = e.authed(tok, "POST", "/admin/keys", full)
	want(t, r, http.StatusCreated, "")
	got := keyFields(t, r)
	wantKeyFields(t, "full key", got, map[string]string{
		"description": `"for the CI bot"`, "permissions": `["claude","openai"]`,
		"models_allow": `["claude-sonnet-4-5","claude-haiku-*"]`, "models_deny": `["claude-sonnet-4-5-20250929"]`,
		"concurrency": `4`, "queue": `true`, "rate_window": `"1h30m"`, "rate_requests": `100`, "rate_tokens": `5000000`,
		"rate_cost": `2.5`, "daily_cost": `10`, "total_cost": `250.125`, "weekly_cost": `50`, "daily_opus_cost": `0.000001`,
		"weekly_reset_day": `5`, "weekly_reset_hour": `18`, "activate_for": `"30d"`, "activated_at": `null`,
		"expires_at": `null`, "account": `"group:` + string(grp.ID) + `"`, "binding_fallback": `true`,
		"service_rates": `{"claude":1.5,"openai":0.8}`,
	})
	var id string
	json.Unmarshal([]byte(got["id"]), &id)
	// The store holds exactly that, in picodollars and durations.
	k, err := e.st.GetKey(ctx, store.KeyID(id))
	if err != nil {
		t.Fatal(err)
	}
	if p := k.Policy; p.RateWindow != 90*time.Minute || p.ActivateFor != 30*24*time.Hour || p.TotalCost != 250_125_000_000_000 ||
		p.DailyOpusCost != 1_000_000 || p.Queue == nil || !*p.Queue || p.WeeklyResetDay != 5 || p.ServiceRates[store.PlatformOpenAI] != 0.8 {
		t.Fatalf("stored policy %+v", p)
	}

	// The view's spans go back in as they came out.
	r = e.authed(tok, "PATCH", "/admin/keys/"+id, `{"rate_window":"1h30m","weekly_reset_day":0,"queue":false}`)
	want(t, r, http.StatusOK, "")
	wantKeyFields(t, "patched", keyFields(t, r), map[string]string{
		"rate_window": `"1h30m"`, "weekly_reset_day": `0`, "queue": `false`, "concurrency": `4`, "rate_requests": `100`,
	})

	// null returns queue to the server's setting; absent fields stay.
	r = e.authed(tok, "PATCH", "/admin/keys/"+id, `{"queue":null}`)
	wantKeyFields(t, "queue null", keyFields(t, r), map[string]string{"queue": `null`, "concurrency": `4`})

	// Removing the window removes its limits.
	r = e.authed(tok, "PATCH", "/admin/keys/"+id, `{"rate_window":null}`)
	want(t, r, http.StatusOK, "")
	wantKeyFields(t, "window removed", keyFields(t, r), map[string]string{
		"rate_window": `null`, "rate_requests": `0`, "rate_tokens": `0`, "rate_cost": `0`, "daily_cost": `10`,
	})
	r = e.authed(tok, "PATCH", "/admin/keys/"+id, `{"rate_window":"1d","rate_tokens":7}`)
	wantKeyFields(t, "window back", keyFields(t, r), map[string]string{"rate_window": `"1d"`, "rate_tokens": `7`})

	// A fixed expiry replaces activation, and activation a fixed expiry.
	exp := e.clock.Now().Add(72 * time.Hour).UTC().Truncate(time.Second)
	r = e.authed(tok, "PATCH", "/admin/keys/"+id, map[string]any{"expires_at": exp})
	wantKeyFields(t, "fixed expiry", keyFields(t, r), map[string]string{"activate_for": `null`, "expires_at": `"` + exp.Format(time.RFC3339) + `"`})
	r = e.authed(tok, "PATCH", "/admin/keys/"+id, `{"activate_for":"12h"}`)
	wantKeyFields(t, "activation", keyFields(t, r), map[string]string{"activate_for": `"12h"`, "expires_at": `null`})

	// Once activated, the view shows the activation and the expiry it
	// makes, and the status follows it.
	at := e.clock.Now().UTC().Truncate(time.Millisecond)
	if _, err := e.st.ActivateKey(ctx, store.KeyID(id), at); err != nil {
		t.Fatal(err)
	}
	r = e.authed(tok, "GET", "/admin/keys/"+id, nil)
	wantKeyFields(t, "activated", keyFields(t, r), map[string]string{
		"activated_at": `"` + at.Format(time.RFC3339Nano) + `"`, "expires_at": `"` + at.Add(12*time.Hour).Format(time.RFC3339Nano) + `"`,
		"status": `"active"`,
	})
	e.clock.Advance(13 * time.Hour)
	tok = e.login()
	r = e.authed(tok, "GET", "/admin/keys/"+id, nil)
	wantKeyFields(t, "activation over", keyFields(t, r), map[string]string{"status": `"expired"`})

	// Unbinding turns the fallback off; binding to an account works.
	r = e.authed(tok, "PATCH", "/admin/keys/"+id, `{"account":""}`)
	wantKeyFields(t, "unbound", keyFields(t, r), map[string]string{"account": `""`, "binding_fallback": `false`})
	r = e.authed(tok, "PATCH", "/admin/keys/"+id, map[string]any{"account": string(acct.ID), "service_rates": map[string]float64{}})
	wantKeyFields(t, "bound", keyFields(t, r), map[string]string{"account": `"` + string(acct.ID) + `"`, "service_rates": `{}`})

	// Bad values are refused naming the field, on create and on patch.
	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"description": strings.Repeat("d", 501)}, "description"},
		{map[string]any{"description": "bell\a"}, "description"},
		{map[string]any{"permissions": []string{"bard"}}, "permissions"},
		{map[string]any{"permissions": []string{""}}, "permissions"},
		{map[string]any{"permissions": "claude"}, "permissions"},
		{map[string]any{"models_allow": []string{"claude opus"}}, "models_allow"},
		{map[string]any{"models_allow": []string{"*"}}, "models_allow"},
		{map[string]any{"models_deny": []string{strings.Repeat("m", 201)}}, "models_deny"},
		{map[string]any{"concurrency": -1}, "concurrency"},
		{map[string]any{"concurrency": 10001}, "concurrency"},
		{map[string]any{"concurrency": "5"}, "concurrency"},
		{map[string]any{"queue": "yes"}, "queue"},
		{map[string]any{"rate_window": "30s", "rate_requests": 1}, "rate_window"},
		{map[string]any{"rate_window": "31d", "rate_requests": 1}, "rate_window"},
		{map[string]any{"rate_window": "soon", "rate_requests": 1}, "rate_window"},
		{map[string]any{"rate_window": 300, "rate_requests": 1}, "rate_window"},
		{map[string]any{"rate_window": "5m"}, "rate_window"},
		{map[string]any{"rate_requests": 5}, "rate_requests"},
		{map[string]any{"rate_tokens": 5}, "rate_tokens"},
		{map[string]any{"rate_cost": 1}, "rate_cost"},
		{map[string]any{"rate_window": "5m", "rate_requests": -1}, "rate_requests"},
		{map[string]any{"rate_window": "5m", "rate_tokens": -1}, "rate_tokens"},
		{map[string]any{"rate_window": "5m", "rate_cost": -1}, "rate_cost"},
		{map[string]any{"daily_cost": -1}, "daily_cost"},
		{map[string]any{"total_cost": 2000000}, "total_cost"},
		{map[string]any{"weekly_cost": "0.0000000000001"}, "weekly_cost"},
		{map[string]any{"daily_opus_cost": "ten"}, "daily_opus_cost"},
		{map[string]any{"weekly_reset_day": 7}, "weekly_reset_day"},
		{map[string]any{"weekly_reset_day": "someday"}, "weekly_reset_day"},
		{map[string]any{"weekly_reset_day": true}, "weekly_reset_day"},
		{map[string]any{"weekly_reset_hour": 24}, "weekly_reset_hour"},
		{map[string]any{"weekly_reset_hour": -1}, "weekly_reset_hour"},
		{map[string]any{"activate_for": "30s"}, "activate_for"},
		{map[string]any{"activate_for": "3651d"}, "activate_for"},
		{map[string]any{"activate_for": "-1h"}, "activate_for"},
		{map[string]any{"activate_for": "7d", "expires_at": e.clock.Now().Add(time.Hour)}, "activate_for"},
		{map[string]any{"account": "acc_nope"}, "account"},
		{map[string]any{"account": "group:grp_nope"}, "account"},
		{map[string]any{"binding_fallback": true}, "binding_fallback"},
		{map[string]any{"account": "", "binding_fallback": true}, "binding_fallback"},
		{map[string]any{"service_rates": map[string]float64{"claude": 0}}, "service_rates"},
		{map[string]any{"service_rates": map[string]float64{"claude": 100.5}}, "service_rates"},
		{map[string]any{"service_rates": map[string]float64{"bard": 1}}, "service_rates"},
		{map[string]any{"service_rates": map[string]float64{"openai": 1, "codex": 2}}, "service_rates"},
		{map[string]any{"service_rates": map[string]any{"claude": "1.5"}}, "service_rates"},
	} {
		create := map[string]any{"name": "bad"}
		for k, v := range c.body {
			create[k] = v
		}
		r := e.authed(tok, "POST", "/admin/keys", create)
		want(t, r, http.StatusBadRequest, "invalid_request")
		if !strings.HasPrefix(r.errorMessage(), c.field+":") {
			t.Errorf("create %v: message %q does not name %s", c.body, r.errorMessage(), c.field)
		}
		// The patch goes to an unbound key with no window, so the
		// binding and window rows fail for the same reason.
		r = e.authed(tok, "PATCH", "/admin/keys/"+string(mustKey(t, e, "plain")), c.body)
		want(t, r, http.StatusBadRequest, "invalid_request")
		if !strings.HasPrefix(r.errorMessage(), c.field+":") {
			t.Errorf("patch %v: message %q does not name %s", c.body, r.errorMessage(), c.field)
		}
	}
	// Nothing bad was stored: only the two keys exist, and "plain" is as
	// it was.
	var list []KeyView
	e.authed(tok, "GET", "/admin/keys", nil).json(t, &list)
	if len(list) != 2 || list[0].Name != "plain" || list[0].Concurrency != 0 || list[0].Account != "" || list[0].RateWindow != nil {
		t.Fatalf("after refusals: %+v", list)
	}
}

// mustKey returns the ID of the key named name.
func mustKey(t *testing.T, e *testEnv, name string) store.KeyID {
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

func TestGroupsOverHTTP(t *testing.T) {
	e := newTestEnv(t)
	tok := e.login()
	ctx := context.Background()

	// The group routes are in the table TestEveryPrivateRouteRefusesWithoutSession walks.
	patterns := map[string]bool{}
	for _, r := range e.api.Routes() {
		if !r.Public {
			patterns[r.Pattern] = true
		}
	}
	for _, p := range []string{"GET /admin/groups", "POST /admin/groups", "GET /admin/groups/{id}", "DELETE /admin/groups/{id}",
		"POST /admin/groups/{id}/members", "DELETE /admin/groups/{id}/members/{account}"} {
		if !patterns[p] {
			t.Errorf("route %q is not a private route", p)
		}
	}

	a1, err := e.svc.AddAccount(ctx, AccountInput{Platform: "claude", Type: "api-key", Name: "a1", APIKey: "k", Priority: 50})
	if err != nil {
		t.Fatal(err)
	}
	a2, err := e.svc.AddAccount(ctx, AccountInput{Platform: "claude", Type: "api-key", Name: "a2", APIKey: "k", Priority: 50})
	if err != nil {
		t.Fatal(err)
	}
	// The admin cannot add other platforms yet; the store can.
	if err := e.st.CreateAccount(ctx, store.Account{ID: "acc_openai", Name: "o", Platform: store.PlatformOpenAI,
		Type: store.TypeAPIKey, Priority: 50, CreatedAt: e.clock.Now(), UpdatedAt: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}

	r := e.authed(tok, "GET", "/admin/groups", nil)
	want(t, r, http.StatusOK, "")
	if strings.TrimSpace(string(r.body)) != "[]" {
		t.Fatalf("no groups = %s", r.body)
	}

	r = e.authed(tok, "POST", "/admin/groups", map[string]any{"name": " team ", "platform": "claude"})
	want(t, r, http.StatusCreated, "")
	g := keyFields(t, r)
	wantKeyFields(t, "created group", g, map[string]string{"name": `"team"`, "platform": `"claude"`, "members": `[]`})
	var gid string
	json.Unmarshal([]byte(g["id"]), &gid)
	if !strings.HasPrefix(gid, "grp_") {
		t.Fatalf("group id %q", gid)
	}
	if _, err := time.Parse(time.RFC3339, strings.Trim(g["created_at"], `"`)); err != nil {
		t.Fatalf("created_at %s", g["created_at"])
	}

	for _, c := range []struct {
		body  any
		field string
	}{
		{map[string]any{"name": "", "platform": "claude"}, "name"},
		{map[string]any{"name": "x", "platform": ""}, "platform"},
		{map[string]any{"name": "x", "platform": "bard"}, "platform"},
		{map[string]any{"name": "x", "platform": "claude", "members": []string{}}, "members"},
	} {
		r := e.authed(tok, "POST", "/admin/groups", c.body)
		want(t, r, http.StatusBadRequest, "invalid_request")
		if !strings.HasPrefix(r.errorMessage(), c.field+":") {
			t.Errorf("%v: message %q does not name %s", c.body, r.errorMessage(), c.field)
		}
	}
	want(t, e.authed(tok, "POST", "/admin/groups", map[string]any{"name": "team", "platform": "openai"}), http.StatusConflict, "conflict")

	// Members: in the order added, each once; wrong platform and unknown
	// accounts are refused naming account_id; an unknown group is 404.
	members := func(r response) string {
		t.Helper()
		want(t, r, http.StatusOK, "")
		return keyFields(t, r)["members"]
	}
	if m := members(e.authed(tok, "POST", "/admin/groups/"+gid+"/members", map[string]any{"account_id": a2.ID})); m != `["`+string(a2.ID)+`"]` {
		t.Fatalf("members %s", m)
	}
	e.authed(tok, "POST", "/admin/groups/"+gid+"/members", map[string]any{"account_id": a1.ID})
	if m := members(e.authed(tok, "POST", "/admin/groups/"+gid+"/members", map[string]any{"account_id": a2.ID})); m != `["`+string(a2.ID)+`","`+string(a1.ID)+`"]` {
		t.Fatalf("members after re-adding %s", m)
	}
	for _, acct := range []string{"acc_openai", "acc_nope", ""} {
		r := e.authed(tok, "POST", "/admin/groups/"+gid+"/members", map[string]any{"account_id": acct})
		want(t, r, http.StatusBadRequest, "invalid_request")
		if !strings.HasPrefix(r.errorMessage(), "account_id:") {
			t.Errorf("account %q: message %q", acct, r.errorMessage())
		}
	}
	r = e.authed(tok, "POST", "/admin/groups/grp_nope/members", map[string]any{"account_id": a1.ID})
	want(t, r, http.StatusNotFound, "not_found")
	if r.errorMessage() != "no such group" {
		t.Fatalf("message %q", r.errorMessage())
	}
	want(t, e.authed(tok, "GET", "/admin/groups/grp_nope", nil), http.StatusNotFound, "not_found")
	want(t, e.authed(tok, "DELETE", "/admin/groups/grp_nope", nil), http.StatusNotFound, "not_found")
	want(t, e.authed(tok, "DELETE", "/admin/groups/grp_nope/members/"+string(a1.ID), nil), http.StatusNotFound, "not_found")

	if m := members(e.authed(tok, "GET", "/admin/groups/"+gid, nil)); m != `["`+string(a2.ID)+`","`+string(a1.ID)+`"]` {
		t.Fatalf("get members %s", m)
	}
	if m := members(e.authed(tok, "DELETE", "/admin/groups/"+gid+"/members/"+string(a2.ID), nil)); m != `["`+string(a1.ID)+`"]` {
		t.Fatalf("after remove %s", m)
	}
	// Removing a non-member is not an error.
	if m := members(e.authed(tok, "DELETE", "/admin/groups/"+gid+"/members/"+string(a2.ID), nil)); m != `["`+string(a1.ID)+`"]` {
		t.Fatalf("after second remove %s", m)
	}
	var gl []GroupView
	e.authed(tok, "GET", "/admin/groups", nil).json(t, &gl)
	if len(gl) != 1 || string(gl[0].ID) != gid || len(gl[0].Members) != 1 {
		t.Fatalf("list = %+v", gl)
	}

	// A group that keys are bound to (a removed one too) is not deleted;
	// the answer names the keys.
	bound, _, err := e.svc.CreateKey(ctx, KeyInput{Name: "bound", Policy: PolicyPatch{Account: ptrTo("group:" + gid)}})
	if err != nil {
		t.Fatal(err)
	}
	removed, _, err := e.svc.CreateKey(ctx, KeyInput{Name: "removed", Policy: PolicyPatch{Account: ptrTo("group:" + gid)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RemoveKey(ctx, removed.ID); err != nil {
		t.Fatal(err)
	}
	r = e.authed(tok, "DELETE", "/admin/groups/"+gid, nil)
	want(t, r, http.StatusConflict, "conflict")
	if msg := r.errorMessage(); !strings.Contains(msg, string(bound.ID)) || !strings.Contains(msg, string(removed.ID)) {
		t.Fatalf("in-use message %q does not name both keys", msg)
	}
	want(t, e.authed(tok, "GET", "/admin/groups/"+gid, nil), http.StatusOK, "")
	for _, id := range []store.KeyID{bound.ID, removed.ID} {
		want(t, e.authed(tok, "PATCH", "/admin/keys/"+string(id), `{"account":""}`), http.StatusOK, "")
	}
	want(t, e.authed(tok, "DELETE", "/admin/groups/"+gid, nil), http.StatusNoContent, "")
	want(t, e.authed(tok, "GET", "/admin/groups/"+gid, nil), http.StatusNotFound, "not_found")
	// A key cannot bind to the deleted group any more.
	r = e.authed(tok, "PATCH", "/admin/keys/"+string(bound.ID), map[string]any{"account": "group:" + gid})
	want(t, r, http.StatusBadRequest, "invalid_request")
}

func ptrTo[T any](v T) *T { return &v }
