package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/testkit"
)

// policyKey creates a key with the given policy flags and returns it.
func policyKey(t *testing.T, dir, name string, flags ...string) admin.CreatedKey {
	t.Helper()
	var k admin.CreatedKey
	testkit.MustJSON(t, cliRun(t, dir, "", append([]string{"keys", "create", "--name", name, "--json"}, flags...)...), &k)
	return k
}

// answer is what a test needs of one relay answer.
type answer struct {
	status int
	body   string
	header http.Header
}

func (a answer) errType() string { return gjson.Get(a.body, "error.type").String() }
func (a answer) code() string    { return gjson.Get(a.body, "error.code").String() }

func send(t *testing.T, url, key, path, body string, hdr ...string) answer {
	t.Helper()
	resp := rawPost(t, url+path, key, body, hdr...)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b), resp.Header}
}

// TestKeyPoliciesThroughTheRelay is the limits table end to end: each row
// is a key made with `crs keys create` flags, the requests it sends through
// the running relay, and the answer the last one must get (status, error
// type, machine code, retry headers). docs/limits.md describes the same
// rows; internal/policy tests the order in finer detail.
func TestKeyPoliciesThroughTheRelay(t *testing.T) {
	t.Parallel()
	up := fakeupstream.StartAnthropic(t, fakeupstream.Options{Name: "pool"})
	bound := fakeupstream.StartAnthropic(t, fakeupstream.Options{Name: "bound"})
	dir := newDataDir(t)
	addAccount(t, dir, up, "pool", 10)
	boundID := addAccount(t, dir, bound, "bound", 90)
	offID := addAccount(t, dir, bound, "off", 95)
	cliRun(t, dir, "", "accounts", "disable", offID)
	var grp admin.GroupView
	testkit.MustJSON(t, cliRun(t, dir, "", "groups", "create", "team", "--platform", "claude", "--json"), &grp)
	cliRun(t, dir, "", "groups", "add", string(grp.ID), boundID)

	sonnet := messagesBody("claude-sonnet-4-5", "hello")
	opus := messagesBody("claude-opus-4-5", "hello")
	// One default reply on claude-sonnet-4-5 costs $0.00016965.
	type row struct {
		name   string
		flags  []string
		before []string // bodies sent first, each must succeed
		body   string
		hdr    []string
		status int
		typ    string
		code   string
		served string // for a 200: which fake served ("pool" or "bound")
		retry  bool   // a Retry-After header is expected
	}
	rows := []row{
		{name: "permissions without claude", flags: []string{"--permissions", "openai"}, body: sonnet,
			status: 403, typ: "permission_error", code: "permission_denied"},
		{name: "deny-list covers dated variants", flags: []string{"--models-deny", "claude-opus-4"},
			body: messagesBody("claude-opus-4-20250514", "x"), status: 403, typ: "permission_error", code: "model_not_allowed"},
		{name: "deny-list leaves other versions", flags: []string{"--models-deny", "claude-opus-4"},
			body: messagesBody("claude-opus-4-1", "x"), status: 200, served: "pool"},
		{name: "allow-list", flags: []string{"--models-allow", "claude-sonnet-4-5"},
			before: []string{messagesBody("claude-sonnet-4-5-20250929", "dated")}, body: opus,
			status: 403, typ: "permission_error", code: "model_not_allowed"},
		{name: "client restriction", flags: []string{"--clients", "claude_code"}, body: sonnet, hdr: sdkHeaders,
			status: 403, typ: "permission_error", code: "client_not_allowed"},
		{name: "rate window: requests", flags: []string{"--rate-window", "1m", "--rate-requests", "1"},
			before: []string{sonnet}, body: sonnet, status: 429, typ: "rate_limit_error", code: "rate_window_exceeded", retry: true},
		{name: "rate window: tokens", flags: []string{"--rate-window", "1m", "--rate-tokens", "20"},
			before: []string{sonnet}, body: sonnet, status: 429, typ: "rate_limit_error", code: "rate_window_exceeded", retry: true},
		{name: "rate window: cost", flags: []string{"--rate-window", "1m", "--rate-cost", "0.0001"},
			before: []string{sonnet}, body: sonnet, status: 429, typ: "rate_limit_error", code: "rate_window_exceeded", retry: true},
		{name: "daily cost", flags: []string{"--daily-cost", "0.0001"},
			before: []string{sonnet}, body: sonnet, status: 402, typ: "billing_error", code: "daily_cost_limit_exceeded"},
		{name: "total cost", flags: []string{"--total-cost", "0.0001"},
			before: []string{sonnet}, body: sonnet, status: 402, typ: "billing_error", code: "total_cost_limit_exceeded"},
		{name: "weekly cost", flags: []string{"--weekly-cost", "0.0001"},
			before: []string{sonnet}, body: sonnet, status: 402, typ: "billing_error", code: "weekly_cost_limit_exceeded"},
		{name: "daily opus cost stops opus", flags: []string{"--daily-opus-cost", "0.0001"},
			before: []string{opus}, body: opus, status: 402, typ: "billing_error", code: "daily_opus_cost_limit_exceeded"},
		{name: "daily opus cost leaves sonnet", flags: []string{"--daily-opus-cost", "0.0001"},
			before: []string{opus}, body: sonnet, status: 200, served: "pool"},
		{name: "service rate counts toward limits", flags: []string{"--service-rates", "claude=10", "--daily-cost", "0.001"},
			before: []string{sonnet}, body: sonnet, status: 402, typ: "billing_error", code: "daily_cost_limit_exceeded"},
		{name: "without the rate the same limit passes", flags: []string{"--daily-cost", "0.001"},
			before: []string{sonnet}, body: sonnet, status: 200, served: "pool"},
		{name: "bound to an account", flags: []string{"--account", boundID}, body: sonnet, status: 200, served: "bound"},
		{name: "bound to a group", flags: []string{"--account", "group:" + string(grp.ID)}, body: sonnet, status: 200, served: "bound"},
		{name: "bound to a disabled account, no fallback", flags: []string{"--account", offID}, body: sonnet, status: 503, typ: "api_error"},
		{name: "bound to a disabled account, with fallback", flags: []string{"--account", offID, "--account-fallback"},
			body: sonnet, status: 200, served: "pool"},
	}
	keys := make([]admin.CreatedKey, len(rows))
	for i, r := range rows {
		keys[i] = policyKey(t, dir, "row"+strconv.Itoa(i), r.flags...)
	}
	srv := startRelay(t, dir, nil)
	for i, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			for _, b := range r.before {
				if a := send(t, srv.url, keys[i].Key, "/api/v1/messages", b); a.status != 200 {
					t.Fatalf("request before: %d %s", a.status, a.body)
				}
			}
			a := send(t, srv.url, keys[i].Key, "/api/v1/messages", r.body, r.hdr...)
			if a.status != r.status {
				t.Fatalf("status %d, want %d: %s", a.status, r.status, a.body)
			}
			if r.status == 200 {
				if got := a.header.Get("X-Fake-Upstream"); got != r.served && !strings.Contains(a.body, "msg_"+r.served+"_") {
					t.Fatalf("served by %q, want %q", got, r.served)
				}
				return
			}
			if a.errType() != r.typ || (r.code != "" && a.code() != r.code) {
				t.Fatalf("error %s/%s, want %s/%s: %s", a.errType(), a.code(), r.typ, r.code, a.body)
			}
			if gotRetry := a.header.Get("Retry-After") != ""; r.retry && !gotRetry {
				t.Fatalf("no Retry-After: %v", a.header)
			}
			if (r.status == 402 || r.status == 403) && a.header.Get("X-Should-Retry") != "false" {
				t.Fatalf("a %d without x-should-retry: false", r.status)
			}
			if r.status == 402 {
				if gjson.Get(a.body, "error.current_cost").String() == "" || gjson.Get(a.body, "error.cost_limit").String() == "" {
					t.Fatalf("402 lacks current_cost/cost_limit: %s", a.body)
				}
			}
		})
	}

	// The rated cost is recorded beside the real one.
	var u struct {
		Keys []struct {
			KeyName string          `json:"key_name"`
			Cost    json.RawMessage `json:"cost_usd"`
		} `json:"keys"`
	}
	testkit.MustJSON(t, cliRun(t, dir, "", "usage", "--json"), &u)
	if len(u.Keys) == 0 {
		t.Fatal("no usage recorded")
	}
}

// TestKeyActivationStartsAtFirstRealUse: an --activate-for key has no
// expiry until its first message (count_tokens does not count), then
// expires that long after it.
func TestKeyActivationStartsAtFirstRealUse(t *testing.T) {
	t.Parallel()
	up := fakeupstream.StartAnthropic(t, fakeupstream.Options{})
	dir := newDataDir(t)
	addAccount(t, dir, up, "a", 50)
	k := policyKey(t, dir, "trial", "--activate-for", "1h")
	srv := startRelay(t, dir, nil)
	if a := send(t, srv.url, k.Key, "/api/v1/messages/count_tokens", messagesBody("claude-sonnet-4-5", "x")); a.status != 200 {
		t.Fatalf("count_tokens: %d %s", a.status, a.body)
	}
	var v admin.KeyView
	testkit.MustJSON(t, cliRun(t, dir, "", "keys", "update", string(k.ID), "--json", "--name", "trial"), &v)
	if v.ActivatedAt != nil || v.ExpiresAt != nil {
		t.Fatalf("count_tokens activated the key: %+v", v)
	}
	before := time.Now()
	if a := send(t, srv.url, k.Key, "/api/v1/messages", messagesBody("claude-sonnet-4-5", "x")); a.status != 200 {
		t.Fatalf("first message: %d", a.status)
	}
	testkit.MustJSON(t, cliRun(t, dir, "", "keys", "update", string(k.ID), "--json", "--name", "trial"), &v)
	if v.ActivatedAt == nil || v.ExpiresAt == nil || v.ActivatedAt.Before(before.Add(-time.Second)) ||
		v.ExpiresAt.Sub(*v.ActivatedAt) != time.Hour {
		t.Fatalf("after the first message: activated %v expires %v", v.ActivatedAt, v.ExpiresAt)
	}
}

// TestKeyConcurrencyHoldsAtTheUpstream: 200 concurrent requests on a key
// with --concurrency 5 --queue never put more than 5 in flight at the
// upstream; the queue (room for 2× the limit) serves the 15 that fit and
// refuses the rest with 429 concurrency_limit_exceeded and Retry-After, as
// does a key without a queue beyond its 5.
func TestKeyConcurrencyHoldsAtTheUpstream(t *testing.T) {
	up := fakeupstream.StartAnthropic(t, fakeupstream.Options{Deltas: 1})
	up.SetDefault(fakeupstream.Fault{FirstByteDelay: 20 * time.Millisecond})
	dir := newDataDir(t)
	addAccount(t, dir, up, "a", 50)
	queued := policyKey(t, dir, "queued", "--concurrency", "5", "--queue")
	refused := policyKey(t, dir, "refused", "--concurrency", "5")
	srv := startRelay(t, dir, nil)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 200}}

	burst := func(key string, n int) (ok, limited int64) {
		var wg sync.WaitGroup
		var okN, limitedN atomic.Int64
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.url+"/api/v1/messages",
					strings.NewReader(messagesBody("claude-sonnet-4-5", "burst "+strconv.Itoa(i))))
				req.Header.Set("X-Api-Key", key)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode == 200:
					okN.Add(1)
				case resp.StatusCode == 429 && gjson.GetBytes(b, "error.code").String() == "concurrency_limit_exceeded" && resp.Header.Get("Retry-After") != "":
					limitedN.Add(1)
				default:
					t.Errorf("unexpected answer %d %s", resp.StatusCode, b)
				}
			}()
		}
		wg.Wait()
		return okN.Load(), limitedN.Load()
	}

	ok, limited := burst(queued.Key, 200)
	if ok+limited != 200 || ok < 15 {
		t.Fatalf("queued key: %d served, %d refused; want at least the 5 slots and 10 queue places served", ok, limited)
	}
	if m := up.MaxInFlight(); m > 5 || m < 2 {
		t.Fatalf("upstream saw %d requests in flight at once for a key limited to 5", m)
	}
	up.ResetMaxInFlight()
	ok, limited = burst(refused.Key, 50)
	if ok+limited != 50 || limited == 0 || ok < 5 {
		t.Fatalf("key without a queue: %d served, %d refused", ok, limited)
	}
	if m := up.MaxInFlight(); m > 5 {
		t.Fatalf("upstream saw %d in flight without a queue", m)
	}
}

// TestUserStatsThroughTheServer: the key holder's page answers the usage
// and limits of the key it is given, over the running server.
func TestUserStatsThroughTheServer(t *testing.T) {
	t.Parallel()
	up := fakeupstream.StartAnthropic(t, fakeupstream.Options{})
	dir := newDataDir(t)
	addAccount(t, dir, up, "a", 50)
	k := policyKey(t, dir, "alice", "--daily-cost", "5", "--service-rates", "claude=2")
	srv := startRelay(t, dir, nil)
	if a := send(t, srv.url, k.Key, "/api/v1/messages", messagesBody("claude-sonnet-4-5", "x")); a.status != 200 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	resp, err := http.Post(srv.url+"/apiStats/api/user-stats", "application/json", strings.NewReader(`{"apiKey":"`+k.Key+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	today := gjson.GetBytes(b, "usage.today.totals")
	if today.Get("requests").Int() != 1 || today.Get("cost_usd").String() != "0.00016965" || today.Get("rated_cost_usd").String() != "0.0003393" {
		t.Fatalf("today = %s", today.Raw)
	}
	daily := gjson.GetBytes(b, `limits.costs.#(kind=="daily")`)
	if daily.Get("used").Int() != 339_300_000 || daily.Get("limit").Int() != 5_000_000_000_000 {
		t.Fatalf("daily limit = %s (in %s)", daily.Raw, b)
	}
	var u struct {
		Keys []struct {
			Rated json.Number `json:"rated_cost_usd"`
		} `json:"keys"`
	}
	testkit.MustJSON(t, cliRun(t, dir, "", "usage", "--json"), &u)
	if len(u.Keys) != 1 || u.Keys[0].Rated.String() != "0.0003393" {
		t.Fatalf("usage rated cost: %+v", u)
	}
}
