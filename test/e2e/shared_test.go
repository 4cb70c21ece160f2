package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/store/redis/redistest"
	"github.com/crs-relay/crs/internal/testkit"
)

// A shared deployment in these tests: N `crs serve` processes, each with its
// own DATA_DIR, on one Redis under a prefix of the test's own, with the
// secrets given explicitly as shared mode requires.
type shared struct {
	t   *testing.T
	env []string // REDIS_*, secrets, upstream URLs; DATA_DIR is per process
}

const (
	sharedEncryptionKey = "e2e-shared-encryption-key-0123456789abcdef"
	sharedJWTSecret     = "e2e-shared-jwt-secret-0123456789abcdef0123"
)

// newShared prepares a shared deployment on the test Redis (single node) or,
// with cluster, on a 3-node Redis Cluster the harness starts.
func newShared(t *testing.T, cluster bool, extra ...string) *shared {
	t.Helper()
	var url, prefix string
	if cluster {
		addrs := redistest.Cluster(t)
		prefix = redistest.Prefix(t, redistest.ClusterClient(t, addrs))
		url = "redis://" + strings.Join(addrs, ",")
	} else {
		prefix = redistest.Prefix(t, redistest.Client(t))
		url = "redis://" + redistest.Addr(t)
	}
	env := []string{"REDIS_URL=" + url, "REDIS_KEY_PREFIX=" + prefix,
		"ENCRYPTION_KEY=" + sharedEncryptionKey, "JWT_SECRET=" + sharedJWTSecret}
	return &shared{t: t, env: append(env, extra...)}
}

// start runs one more instance.
func (s *shared) start(extra ...string) *crsProc {
	s.t.Helper()
	return startCRS(s.t, s.t.TempDir(), append(append([]string{}, s.env...), extra...)...)
}

// cli runs management commands against the shared store, from a DATA_DIR
// no server uses.
func (s *shared) cli() testkit.CLI {
	dir := s.t.TempDir()
	return func(t testing.TB, stdin string, args ...string) string {
		t.Helper()
		r := crsExec(t.(*testing.T), stdin, append([]string{"DATA_DIR=" + dir}, s.env...), args...)
		if r.code != 0 {
			t.Fatalf("crs %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
		}
		return r.stdout
	}
}

func (s *shared) run(args ...string) string {
	s.t.Helper()
	return s.cli()(s.t, "", args...)
}

// post sends one Messages request (streaming when stream) and returns the
// status, the body read to its end, and the error code of a refusal.
func post(ctx context.Context, c *http.Client, base, key string, stream bool, hdr ...string) (int, string, error) {
	body := fmt.Sprintf(`{"model":"claude-sonnet-4-5","max_tokens":64,"stream":%v,"messages":[{"role":"user","content":"hi"}]}`, stream)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/messages", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Anthropic-Version", "2023-06-01")
	req.Header.Set("X-Api-Key", key)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

func errorCode(body string) string { return gjson.Get(body, "error.code").String() }

// TestSharedConcurrencyLimitHoldsAcrossInstances: a key limited to 5
// requests at once, under 200 concurrent requests split over two instances,
// never has more than 5 in flight upstream; the rest are refused with the
// concurrency code. It runs on a single Redis and on a 3-node Cluster.
func TestSharedConcurrencyLimitHoldsAcrossInstances(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		t.Run(map[bool]string{false: "single", true: "cluster"}[cluster], func(t *testing.T) {
			fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{Deltas: 5, DeltaDelay: 40 * time.Millisecond})
			sh := newShared(t, cluster, "CLAUDE_API_URL="+fake.URL())
			testkit.AddAccount(t, sh.cli(), fake.URL(), "a", 50)
			var k struct{ Key string }
			testkit.MustJSON(t, sh.run("keys", "create", "--name", "five", "--concurrency", "5", "--json"), &k)
			a, b := sh.start(), sh.start()

			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 200, MaxIdleConnsPerHost: 200}}
			defer client.CloseIdleConnections()
			var ok, refused, other atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range 200 {
				base := []string{a.url, b.url}[i%2]
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					status, body, err := post(ctx, client, base, k.Key, true)
					switch {
					case err == nil && status == 200 && strings.Contains(body, "message_stop"):
						ok.Add(1)
					case status == 429 && errorCode(body) == "concurrency_limit_exceeded":
						refused.Add(1)
					default:
						other.Add(1)
						t.Errorf("unexpected answer: %d %v %.200s", status, err, body)
					}
				}()
			}
			close(start)
			wg.Wait()
			t.Logf("served %d, refused %d, most in flight upstream %d", ok.Load(), refused.Load(), fake.MaxInFlight())
			if m := fake.MaxInFlight(); m > 5 || m < 1 {
				t.Errorf("most requests in flight upstream = %d, want 1..5", m)
			}
			if ok.Load() < 5 || ok.Load()+refused.Load() != 200 {
				t.Errorf("served %d, refused %d of 200", ok.Load(), refused.Load())
			}
		})
	}
}

// TestSharedRateWindowAdmitsExactly: a window of 50 requests admits exactly
// 50 of 80 concurrent requests over two instances.
func TestSharedRateWindowAdmitsExactly(t *testing.T) {
	fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{Deltas: 1})
	sh := newShared(t, false)
	testkit.AddAccount(t, sh.cli(), fake.URL(), "a", 50)
	var k struct{ Key string }
	testkit.MustJSON(t, sh.run("keys", "create", "--name", "fifty", "--rate-window", "1h", "--rate-requests", "50", "--json"), &k)
	a, b := sh.start(), sh.start()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var ok, limited atomic.Int32
	var wg sync.WaitGroup
	for i := range 80 {
		base := []string{a.url, b.url}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, body, err := post(ctx, http.DefaultClient, base, k.Key, false)
			switch {
			case err == nil && status == 200:
				ok.Add(1)
			case status == 429 && errorCode(body) == "rate_window_exceeded":
				limited.Add(1)
			default:
				t.Errorf("unexpected answer: %d %v %.200s", status, err, body)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 50 || limited.Load() != 30 {
		t.Errorf("admitted %d and limited %d of 80; want exactly 50 and 30", ok.Load(), limited.Load())
	}
	if n := fake.MessageCount(); n != 50 {
		t.Errorf("upstream served %d, want 50", n)
	}
}

// TestSharedStickySessionFollowsTheConversation: a conversation started on
// instance A stays on its account when it continues through instance B, for
// several conversations (so a lucky pick cannot pass).
func TestSharedStickySessionFollowsTheConversation(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		t.Run(map[bool]string{false: "single", true: "cluster"}[cluster], func(t *testing.T) {
			fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{Deltas: 1})
			sh := newShared(t, cluster)
			for _, name := range []string{"a", "b", "c"} {
				testkit.AddAccount(t, sh.cli(), fake.URL(), name, 50)
			}
			var k struct{ Key string }
			testkit.MustJSON(t, sh.run("keys", "create", "--name", "k", "--json"), &k)
			a, b := sh.start(), sh.start()
			ctx := testkit.Ctx(t, 60*time.Second)
			accountOf := func(i int) string {
				reqs := fake.Requests()
				return reqs[i].Header.Get("X-Api-Key")
			}
			for conv := range 6 {
				session := fmt.Sprintf("0000000%d-1111-2222-3333-444444444444", conv)
				n := len(fake.Requests())
				if status, body, err := post(ctx, http.DefaultClient, a.url, k.Key, false, "X-Claude-Code-Session-Id", session); err != nil || status != 200 {
					t.Fatalf("first turn on A: %d %v %s", status, err, body)
				}
				first := accountOf(n)
				for turn := range 3 {
					if status, body, err := post(ctx, http.DefaultClient, b.url, k.Key, false, "X-Claude-Code-Session-Id", session); err != nil || status != 200 {
						t.Fatalf("turn %d on B: %d %v %s", turn, status, err, body)
					}
					if got := accountOf(n + 1 + turn); got != first {
						t.Fatalf("conversation %d moved from %s to %s on instance B", conv, first, got)
					}
				}
			}
		})
	}
}

// TestSharedTokenRefreshedOnce: a subscription token that comes due while
// both instances serve it is refreshed exactly once (the fake OAuth server
// accepts each refresh token once), and no request fails.
func TestSharedTokenRefreshedOnce(t *testing.T) {
	o := fakeupstream.StartOAuth(t)
	api := fakeupstream.StartAnthropic(t, fakeupstream.Options{OAuth: o, Deltas: 1})
	sh := newShared(t, false,
		"CLAUDE_API_URL="+api.URL(),
		"CLAUDE_OAUTH_AUTHORIZE_URL="+o.AuthorizeURL(),
		"CLAUDE_OAUTH_TOKEN_URL="+o.TokenURL(),
		"CLAUDE_OAUTH_PROFILE_URL="+o.ProfileURL(),
		"CLAUDE_OAUTH_USAGE_URL="+o.UsageURL(),
		"CLAUDE_OAUTH_REFRESH_AHEAD=2s",
	)
	// The first token lives 5 s: due 3 s after onboarding, while the load
	// below runs. Its successor lives an hour, so one refresh is all that
	// is due.
	o.SetAccessTTL(5 * time.Second)
	var started struct {
		SessionID string `json:"session_id"`
		AuthURL   string `json:"auth_url"`
	}
	testkit.MustJSON(t, sh.run("accounts", "oauth", "start", "--platform", "claude", "--json"), &started)
	q := mustQuery(t, started.AuthURL)
	code := o.IssueCode(q.Get("code_challenge"), q.Get("state"))
	sh.run("accounts", "oauth", "finish", started.SessionID, "--code", code+"#"+q.Get("state"), "--name", "max", "--json")
	onboarded := time.Now()
	o.SetAccessTTL(time.Hour)
	var k struct{ Key string }
	testkit.MustJSON(t, sh.run("keys", "create", "--name", "k", "--json"), &k)
	a, b := sh.start(), sh.start()

	ctx := testkit.Ctx(t, 60*time.Second)
	var wg sync.WaitGroup
	var served atomic.Int32
	for _, srv := range []*crsProc{a, b} {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Since(onboarded) < 7*time.Second {
					status, body, err := post(ctx, http.DefaultClient, srv.url, k.Key, false)
					if err != nil || status != 200 {
						t.Errorf("request failed around the refresh: %d %v %.200s", status, err, body)
						return
					}
					served.Add(1)
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
	}
	wg.Wait()
	if n := o.RefreshCalls(); n != 1 {
		t.Errorf("token refreshed %d times by two instances, want exactly 1", n)
	}
	t.Logf("%d requests served across the refresh", served.Load())
}

// TestSharedKilledInstanceFreesItsSlots: slots held by an instance killed
// mid-stream are free again within CONCURRENCY_LEASE.
func TestSharedKilledInstanceFreesItsSlots(t *testing.T) {
	const lease = 2 * time.Second
	fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{Deltas: 200, DeltaDelay: 50 * time.Millisecond})
	sh := newShared(t, false, "CONCURRENCY_LEASE="+lease.String())
	testkit.AddAccount(t, sh.cli(), fake.URL(), "a", 50)
	var k struct{ Key string }
	testkit.MustJSON(t, sh.run("keys", "create", "--name", "two", "--concurrency", "2", "--json"), &k)
	a, b := sh.start(), sh.start()

	// Two long streams through A take both slots.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 2 {
		go post(ctx, http.DefaultClient, a.url, k.Key, true)
	}
	deadline := time.Now().Add(10 * time.Second)
	for fake.MaxInFlight() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the two streams did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if status, body, _ := post(context.Background(), http.DefaultClient, b.url, k.Key, false); status != 429 || errorCode(body) != "concurrency_limit_exceeded" {
		t.Fatalf("B while A holds both slots: %d %s", status, body)
	}
	a.signal(syscall.SIGKILL)
	killed := time.Now()
	if a.waitExit(5*time.Second) == nil {
		t.Fatal("A did not die")
	}
	for {
		status, body, err := post(context.Background(), http.DefaultClient, b.url, k.Key, false)
		if err == nil && status == 200 {
			break
		}
		if status != 429 {
			t.Fatalf("B after the kill: %d %v %s", status, err, body)
		}
		if time.Since(killed) > lease+2*time.Second {
			t.Fatalf("slots of the killed instance still held %v after the kill (lease %v)", time.Since(killed), lease)
		}
		time.Sleep(50 * time.Millisecond)
	}
	freed := time.Since(killed)
	t.Logf("slots free %v after the kill (lease %v)", freed, lease)
	if freed > lease+time.Second {
		t.Errorf("slots freed after %v, want within the lease %v (+1 s)", freed, lease)
	}
}

// TestSharedChangesReachEveryInstanceWithinASecond: a key disabled and an
// account added through the CLI (another process) take effect on both
// instances within 1 s.
func TestSharedChangesReachEveryInstanceWithinASecond(t *testing.T) {
	fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{Deltas: 1})
	sh := newShared(t, false)
	var k struct{ Key, ID string }
	testkit.MustJSON(t, sh.run("keys", "create", "--name", "k", "--json"), &k)
	a, b := sh.start(), sh.start()
	ctx := testkit.Ctx(t, 60*time.Second)

	// No account yet: both answer 529 until the CLI adds one.
	for _, srv := range []*crsProc{a, b} {
		if status, _, _ := post(ctx, http.DefaultClient, srv.url, k.Key, false); status == 200 {
			t.Fatal("served without an account")
		}
	}
	within := func(what string, ok func(*crsProc) bool) {
		t.Helper()
		changed := time.Now()
		for _, srv := range []*crsProc{a, b} {
			for !ok(srv) {
				if time.Since(changed) > time.Second {
					t.Fatalf("%s: instance %s still behind after 1 s", what, srv.addr)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		t.Logf("%s reached both instances in %v", what, time.Since(changed))
	}
	testkit.AddAccount(t, sh.cli(), fake.URL(), "new", 50)
	within("an added account", func(srv *crsProc) bool {
		status, _, _ := post(ctx, http.DefaultClient, srv.url, k.Key, false)
		return status == 200
	})
	sh.run("keys", "disable", k.ID)
	within("a disabled key", func(srv *crsProc) bool {
		status, _, _ := post(ctx, http.DefaultClient, srv.url, k.Key, false)
		return status == 401 || status == 403
	})
}

// TestSharedUsageExactlyOnceFromAnyInstance: requests served by two
// instances are recorded once each, and every instance's view (the CLI and
// the key holder's stats) shows the same totals.
func TestSharedUsageExactlyOnceFromAnyInstance(t *testing.T) {
	fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{Deltas: 2})
	sh := newShared(t, false)
	testkit.AddAccount(t, sh.cli(), fake.URL(), "a", 50)
	var k struct{ Key, ID string }
	testkit.MustJSON(t, sh.run("keys", "create", "--name", "k", "--json"), &k)
	a, b := sh.start(), sh.start()
	ctx := testkit.Ctx(t, 60*time.Second)
	const n = 30
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if status, body, err := post(ctx, http.DefaultClient, []string{a.url, b.url}[i%2], k.Key, i%3 == 0); err != nil || status != 200 {
				t.Errorf("request: %d %v %.200s", status, err, body)
			}
		}()
	}
	wg.Wait()
	a.stop() // drains A's usage queue
	b.stop()
	u := testkit.Usage(t, sh.cli())
	if got := u.TotalRequests(); got != n {
		t.Errorf("usage shows %d requests, want %d", got, n)
	}
	if len(u.Keys) != 1 || u.Keys[0].Tokens() != times(fakeupstream.DefaultUsage(), n) {
		t.Errorf("usage %+v, want %d requests of %+v", u.Keys, n, fakeupstream.DefaultUsage())
	}
}

// TestSharedRoundTripsPerRequest reads crs's own count of Redis round trips
// (crs_store_round_trips_total, a go-redis hook: a command, a pipeline or a
// script is one) over sequential Claude Code-shaped requests: a key without
// limits costs the sticky session's one GETEX plus its share of the batched
// usage writes; a key with every limit adds one batch to admit, one to
// record and one release.
func TestSharedRoundTripsPerRequest(t *testing.T) {
	fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{Deltas: 1})
	sh := newShared(t, false)
	testkit.AddAccount(t, sh.cli(), fake.URL(), "a", 50)
	var plain, limited struct{ Key string }
	testkit.MustJSON(t, sh.run("keys", "create", "--name", "plain", "--json"), &plain)
	testkit.MustJSON(t, sh.run("keys", "create", "--name", "limited", "--concurrency", "8", "--rate-window", "1h",
		"--rate-requests", "100000", "--daily-cost", "1000", "--json"), &limited)
	srv := sh.start()
	ctx := testkit.Ctx(t, 60*time.Second)
	trips := func() float64 {
		resp, err := http.Get(srv.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "crs_store_round_trips_total" {
				var v float64
				fmt.Sscan(f[1], &v)
				return v
			}
		}
		t.Fatalf("no crs_store_round_trips_total in /metrics:\n%s", b)
		return 0
	}
	// Background work (the change-version poll, twice a second) runs
	// whatever the traffic; it is measured idle and taken off.
	idleStart, t0 := trips(), time.Now()
	time.Sleep(time.Second)
	idlePerSecond := (trips() - idleStart - 1) / time.Since(t0).Seconds() // -1: the scrape itself
	perRequest := func(key string) float64 {
		// Warm: a conversation's first request binds its account (one
		// SET more); a key's first opens its window and seeds its counters.
		for i := range 10 {
			post(ctx, http.DefaultClient, srv.url, key, true, "X-Claude-Code-Session-Id", fmt.Sprintf("%s-%012d", key[:12], i))
		}
		const n = 200
		before, start := trips(), time.Now()
		for i := range n {
			session := fmt.Sprintf("%s-%012d", key[:12], i%10)
			if status, body, err := post(ctx, http.DefaultClient, srv.url, key, true, "X-Claude-Code-Session-Id", session); err != nil || status != 200 {
				t.Fatalf("request: %d %v %.200s", status, err, body)
			}
		}
		return (trips() - before - 1 - idlePerSecond*time.Since(start).Seconds()) / n
	}
	p := perRequest(plain.Key)
	l := perRequest(limited.Key)
	t.Logf("Redis round trips per request (background %.1f/s taken off): key without limits %.2f, key with every limit %.2f",
		idlePerSecond, p, l)
	// Sequential requests commit their usage one by one (concurrent ones
	// share a batch): plain = sticky GETEX + usage; limited adds the
	// admission batch, the record batch and the slot's release.
	if p > 2.02 {
		t.Errorf("a key without limits costs %.2f round trips per request, want 2 (sticky + usage)", p)
	}
	if l > 5.02 {
		t.Errorf("a key with every limit costs %.2f round trips per request, want 5", l)
	}
}
