package relay

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/netx"
	"github.com/crs-relay/crs/internal/oauth"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/reqid"
	"github.com/crs-relay/crs/internal/scheduler"
	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/sqlite"
	"github.com/crs-relay/crs/internal/usage"
)

// testEnv is a Relay with every upstream faked: the Anthropic, OpenAI and
// Gemini APIs, each checking credentials against its own OAuth fake, and
// accounts of every kind added through the real store.
type testEnv struct {
	relay   *Relay
	st      store.Store
	box     *secret.Box
	anth    *fakeupstream.Anthropic
	oa      *fakeupstream.OpenAI
	gem     *fakeupstream.Gemini
	claudeA *fakeupstream.OAuth
	openaiA *fakeupstream.OpenAIOAuth
	googleA *fakeupstream.GoogleOAuth
	// secrets are each account's credentials in clear, which no output
	// may show.
	secrets map[store.AccountID][]string
}

// The fakes' API keys; long enough to be scrubbed, distinct per pool.
const (
	claudeKey = "sk-ant-api03-test-claude-key-0001"
	openaiKey = "sk-proj-test-openai-key-0002"
	geminiKey = "AIzaSy-test-gemini-key-0003"
)

func newTestEnv(t *testing.T, opts fakeupstream.Options) *testEnv {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	box, _ := secret.NewBox(strings.Repeat("x", 32))
	e := &testEnv{st: st, box: box, secrets: map[store.AccountID][]string{},
		claudeA: fakeupstream.StartOAuth(t), openaiA: fakeupstream.StartOpenAIOAuth(t), googleA: fakeupstream.StartGoogleOAuth(t)}
	opts.APIKeys, opts.OAuth = []string{claudeKey}, e.claudeA
	if opts.Deltas == 0 {
		opts.Deltas = 3
	}
	e.anth = fakeupstream.StartAnthropic(t, opts)
	e.oa = fakeupstream.StartOpenAI(t, fakeupstream.OpenAIOptions{APIKeys: []string{openaiKey}, OAuth: e.openaiA, Deltas: 3})
	e.gem = fakeupstream.StartGemini(t, fakeupstream.GeminiOptions{APIKeys: []string{geminiKey}, OAuth: e.googleA, Chunks: 3})

	claudeEP := oauth.Endpoints{AuthorizeURL: e.claudeA.AuthorizeURL(), TokenURL: e.claudeA.TokenURL(),
		ProfileURL: e.claudeA.ProfileURL(), UsageURL: e.claudeA.UsageURL()}
	openaiEP := oauth.OpenAIEndpoints{AuthorizeURL: e.openaiA.AuthorizeURL(), TokenURL: e.openaiA.TokenURL()}
	googleEP := oauth.GoogleEndpoints{AuthorizeURL: e.googleA.AuthorizeURL(), TokenURL: e.googleA.TokenURL()}
	tokens := &oauth.Refresher{Store: st, Box: box, Client: func(a store.Account) (oauth.Renewer, error) {
		switch a.Platform {
		case store.PlatformOpenAI:
			return &oauth.OpenAIClient{Endpoints: openaiEP, HTTP: &http.Client{}}, nil
		case store.PlatformGemini:
			return &oauth.GoogleClient{Endpoints: googleEP, HTTP: &http.Client{}}, nil
		}
		return &oauth.Client{Endpoints: claudeEP, HTTP: &http.Client{}}, nil
	}}
	rec := usage.NewRecorder(st, usage.Options{SpoolDir: t.TempDir()})
	rec.Start()
	t.Cleanup(func() { rec.Close(context.Background()) })
	e.relay = New(Config{
		ClaudeBaseURL: e.anth.URL(), OpenAIBaseURL: e.oa.URL() + "/v1", CodexBaseURL: e.oa.CodexURL(),
		GeminiBaseURL: e.gem.URL(), CodeAssistBaseURL: e.gem.URL(),
		MaxBodyBytes: 1 << 20, FirstEventTimeout: 5 * time.Second, Location: time.UTC,
	}, Deps{
		Keys: NewKeyCache(st, nil), Scheduler: scheduler.New(st, scheduler.Options{}), Recorder: rec,
		Prices: pricing.Default(), Pool: netx.NewPool(netx.Options{}), Box: box, Tokens: tokens,
	})

	// One account of every kind.
	e.addKey(t, "claude-key", store.PlatformClaude, claudeKey)
	e.addOAuth(t, "claude-oauth", store.PlatformClaude, store.TypeOAuth, e.claudeCredential(t, oauth.KindOAuth, claudeEP))
	e.addOAuth(t, "claude-setup", store.PlatformClaude, store.TypeSetupToken, e.claudeCredential(t, oauth.KindSetupToken, claudeEP))
	e.addKey(t, "openai-key", store.PlatformOpenAI, openaiKey)
	e.addOAuth(t, "openai-oauth", store.PlatformOpenAI, store.TypeOAuth, e.openaiCredential(t, openaiEP))
	e.addKey(t, "gemini-key", store.PlatformGemini, geminiKey)
	e.addOAuth(t, "gemini-oauth", store.PlatformGemini, store.TypeOAuth, e.googleCredential(t, googleEP))
	if err := e.relay.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *testEnv) create(t *testing.T, a store.Account) {
	t.Helper()
	now := time.Now()
	a.Name, a.Priority, a.CreatedAt, a.UpdatedAt = string(a.ID), 50, now, now
	if err := e.st.CreateAccount(context.Background(), a); err != nil {
		t.Fatal(err)
	}
}

func (e *testEnv) addKey(t *testing.T, id string, p store.Platform, key string) {
	e.create(t, store.Account{ID: store.AccountID(id), Platform: p, Type: store.TypeAPIKey, SealedSecret: e.box.Seal([]byte(key))})
	e.secrets[store.AccountID(id)] = []string{key}
}

func (e *testEnv) addOAuth(t *testing.T, id string, p store.Platform, typ store.AccountType, c oauth.Credential) {
	sealed, err := c.Seal(e.box)
	if err != nil {
		t.Fatal(err)
	}
	e.create(t, store.Account{ID: store.AccountID(id), Platform: p, Type: typ, SealedSecret: sealed})
	e.secrets[store.AccountID(id)] = []string{c.AccessToken, c.RefreshToken}
}

func pending(t *testing.T, kind oauth.Kind) oauth.Pending {
	t.Helper()
	p, err := oauth.NewPending(kind, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// claudeCredential onboards a Claude subscription. The OAuth one is
// stored already expired, so its test has to refresh it first.
func (e *testEnv) claudeCredential(t *testing.T, kind oauth.Kind, ep oauth.Endpoints) oauth.Credential {
	t.Helper()
	p := pending(t, kind)
	tok, err := (&oauth.Client{Endpoints: ep, HTTP: &http.Client{}}).Exchange(context.Background(), p, e.claudeA.IssueCode(p.Challenge(), p.State))
	if err != nil {
		t.Fatal(err)
	}
	c := oauth.CredentialFromToken(tok)
	if kind == oauth.KindOAuth {
		c.ExpiresAt = time.Now().Add(-time.Minute)
	}
	return c
}

func (e *testEnv) openaiCredential(t *testing.T, ep oauth.OpenAIEndpoints) oauth.Credential {
	t.Helper()
	p := pending(t, oauth.KindOAuth)
	tok, err := (&oauth.OpenAIClient{Endpoints: ep, HTTP: &http.Client{}}).Exchange(context.Background(), p, e.openaiA.IssueCode(p.Challenge(), p.State))
	if err != nil {
		t.Fatal(err)
	}
	return oauth.CredentialFromToken(tok)
}

func (e *testEnv) googleCredential(t *testing.T, ep oauth.GoogleEndpoints) oauth.Credential {
	t.Helper()
	p := pending(t, oauth.KindOAuth)
	tok, err := (&oauth.GoogleClient{Endpoints: ep, HTTP: &http.Client{}}).Exchange(context.Background(), p, e.googleA.IssueCode(p.Challenge()))
	if err != nil {
		t.Fatal(err)
	}
	c := oauth.CredentialFromToken(tok)
	c.ProjectID = fakeupstream.DefaultGeminiProject
	return c
}

// run tests one account and returns its output and error, checking that
// neither shows any credential the account ever had.
func (e *testEnv) run(t *testing.T, ctx context.Context, id store.AccountID) (string, error) {
	t.Helper()
	return e.runSaying(t, ctx, id, nil)
}

// runSaying is run in say's words; nil is TestAccount's English.
func (e *testEnv) runSaying(t *testing.T, ctx context.Context, id store.AccountID, say func(string, ...any) string) (string, error) {
	t.Helper()
	var out strings.Builder
	var err error
	if say == nil {
		err = e.relay.TestAccount(ctx, id, &out)
	} else {
		err = e.relay.TestAccountSaying(ctx, id, &out, say)
	}
	text := out.String()
	if err != nil {
		text += "\nerror: " + err.Error()
	}
	secrets := append([]string(nil), e.secrets[id]...)
	if a, err := e.st.GetAccount(context.Background(), id); err == nil && a.Type != store.TypeAPIKey {
		c, _ := oauth.OpenCredential(e.box, a.SealedSecret)
		secrets = append(secrets, c.AccessToken, c.RefreshToken)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Fatalf("the test output of %s shows a credential:\n%s", id, text)
		}
	}
	return out.String(), err
}

// usageRows is how many accounts have usage recorded.
func (e *testEnv) usageRows(t *testing.T) int {
	t.Helper()
	sum, err := e.st.SummarizeUsage(context.Background(), store.UsageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return len(sum.Accounts)
}

// TestAccountTestEveryKind: each kind of account answers a test through
// its own credential and upstream, the text streams out with the status
// and token counts, and no usage is recorded.
func TestAccountTestEveryKind(t *testing.T) {
	e := newTestEnv(t, fakeupstream.Options{})
	ctx := context.Background()
	cases := []struct {
		id     store.AccountID
		model  string
		counts string
		// sent finds the request on its fake and checks it was the
		// account's: its route and credential.
		sent func(t *testing.T) fakeupstream.Request
	}{
		{"claude-key", "claude-haiku-4-5", "11 input / 7 output tokens, 3 cache read / 7 cache write", func(t *testing.T) fakeupstream.Request {
			r := last(t, e.anth.Requests())
			if r.Header.Get("X-Api-Key") != claudeKey {
				t.Errorf("sent with x-api-key %q", r.Header.Get("X-Api-Key"))
			}
			return r
		}},
		{"claude-oauth", "claude-haiku-4-5", "11 input / 7 output tokens", func(t *testing.T) fakeupstream.Request {
			return bearerOf(t, e, last(t, e.anth.Requests()), "claude-oauth")
		}},
		{"claude-setup", "claude-haiku-4-5", "11 input / 7 output tokens", func(t *testing.T) fakeupstream.Request {
			return bearerOf(t, e, last(t, e.anth.Requests()), "claude-setup")
		}},
		{"openai-key", "gpt-5-mini", "output tokens", func(t *testing.T) fakeupstream.Request {
			r := last(t, e.oa.Requests())
			if r.Path != "/v1/responses" || r.Header.Get("Authorization") != "Bearer "+openaiKey {
				t.Errorf("sent to %s with %q", r.Path, r.Header.Get("Authorization"))
			}
			return r
		}},
		{"openai-oauth", "gpt-5-codex-mini", "output tokens", func(t *testing.T) fakeupstream.Request {
			r := bearerOf(t, e, last(t, e.oa.Requests()), "openai-oauth")
			if !strings.HasSuffix(r.Path, "/backend-api/codex/responses") || gjson.GetBytes(r.Body, "max_output_tokens").Exists() {
				t.Errorf("codex request to %s: %s", r.Path, r.Body)
			}
			return r
		}},
		{"gemini-key", "gemini-2.5-flash", "output tokens", func(t *testing.T) fakeupstream.Request {
			r := last(t, e.gem.Requests())
			if r.Path != "/v1beta/models/gemini-2.5-flash:streamGenerateContent" || r.Header.Get("X-Goog-Api-Key") != geminiKey {
				t.Errorf("sent to %s with key %q", r.Path, r.Header.Get("X-Goog-Api-Key"))
			}
			return r
		}},
		{"gemini-oauth", "gemini-2.5-flash", "output tokens", func(t *testing.T) fakeupstream.Request {
			r := bearerOf(t, e, last(t, e.gem.Requests()), "gemini-oauth")
			if r.Path != "/v1internal:streamGenerateContent" || gjson.GetBytes(r.Body, "project").String() != fakeupstream.DefaultGeminiProject {
				t.Errorf("code assist request to %s: %s", r.Path, r.Body)
			}
			return r
		}},
	}
	for _, c := range cases {
		t.Run(string(c.id), func(t *testing.T) {
			out, err := e.run(t, ctx, c.id)
			if err != nil {
				t.Fatalf("test failed: %v\n%s", err, out)
			}
			for _, want := range []string{"→ " + c.model + " via " + string(c.id) + "\n", fakeupstream.ReplyText(3),
				"\n✓ 200 in ", c.counts, "not recorded as usage"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			r := c.sent(t)
			if got := gjson.GetBytes(r.Body, "model").String(); got != c.model && !strings.Contains(r.Path, c.model) {
				t.Errorf("upstream asked for model %q (path %s)", got, r.Path)
			}
		})
	}
	if e.claudeA.RefreshCalls() != 1 {
		t.Errorf("the expired Claude token was refreshed %d times, want 1", e.claudeA.RefreshCalls())
	}
	if n := e.usageRows(t); n != 0 {
		t.Fatalf("tests recorded usage for %d accounts", n)
	}
	// The same store does record a relayed request: the check above can
	// fail.
	key := secret.NewRelayKey()
	if err := e.st.CreateKey(ctx, store.Key{ID: "k1", Name: "k1", Hash: secret.Hash(key), Hint: key[len(key)-4:], CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	e.relay.Refresh(ctx)
	req := httptest.NewRequest(http.MethodPost, "/api/v1/messages", strings.NewReader(`{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`))
	req = req.WithContext(reqid.With(req.Context(), reqid.New()))
	req.Header.Set("X-Api-Key", key)
	w := httptest.NewRecorder()
	e.relay.Messages(w, req)
	if w.Code != 200 || e.usageRows(t) != 1 {
		t.Fatalf("control request: %d, usage rows %d", w.Code, e.usageRows(t))
	}
}

func last(t *testing.T, rs []fakeupstream.Request) fakeupstream.Request {
	t.Helper()
	if len(rs) == 0 {
		t.Fatal("the fake got no request")
	}
	return rs[len(rs)-1]
}

// bearerOf checks r carried the account's current stored access token.
func bearerOf(t *testing.T, e *testEnv, r fakeupstream.Request, id store.AccountID) fakeupstream.Request {
	t.Helper()
	a, _ := e.st.GetAccount(context.Background(), id)
	c, err := oauth.OpenCredential(e.box, a.SealedSecret)
	if err != nil {
		t.Fatal(err)
	}
	if r.Header.Get("Authorization") != "Bearer "+c.AccessToken {
		t.Errorf("sent without the account's stored access token")
	}
	return r
}

// TestAccountTestUpstreamErrors: an upstream refusal is returned in words
// with its status, secrets an error body quotes back are scrubbed, and the
// account is not rested for it.
func TestAccountTestUpstreamErrors(t *testing.T) {
	e := newTestEnv(t, fakeupstream.Options{})
	ctx := context.Background()
	cases := []struct {
		name  string
		fault fakeupstream.Fault
		want  []string
	}{
		{"401", fakeupstream.Fault{Status: 401}, []string{"the upstream answered 401 after", "credential refused"}},
		{"401 quoting the key", fakeupstream.Fault{Status: 401,
			Body: `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key ` + claudeKey + `"}}`},
			[]string{"answered 401", "invalid x-api-key [redacted]"}},
		{"429", fakeupstream.Fault{Status: 429, Header: http.Header{"Retry-After": {"120"}}},
			[]string{"the upstream answered 429 after", "rate limited", "(relayed traffic would rest the account until ", "; this test did not)"}},
		{"error event", fakeupstream.Fault{ErrorEventAfter: 2}, []string{"the upstream reported an error in the stream", "overloaded"}},
		{"cut", fakeupstream.Fault{CutAfterEvents: 3}, []string{"the stream broke off"}},
		{"no last event", fakeupstream.Fault{Status: 200, Body: "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-haiku-4-5\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n" +
			"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"po\"}}\n\n"},
			[]string{"the stream ended before the answer was complete"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.anth.Push(c.fault)
			out, err := e.run(t, ctx, "claude-key")
			if err == nil {
				t.Fatalf("the test passed:\n%s", out)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(out, "✓") {
				t.Errorf("a failed test shows success:\n%s", out)
			}
			if a, _ := e.st.GetAccount(ctx, "claude-key"); a.Status(time.Now()) != store.AccountActive {
				t.Errorf("the test rested the account: %s", a.Status(time.Now()))
			}
		})
	}
	// A gzipped answer (a proxy on the way) is read all the same.
	e.anth.Push(fakeupstream.Fault{Gzip: true})
	if out, err := e.run(t, ctx, "claude-key"); err != nil || !strings.Contains(out, "pong\n✓ 200") {
		t.Errorf("gzipped stream: %v\n%s", err, out)
	}
	// So is a whole answer from a gateway that ignored "stream".
	e.anth.Push(fakeupstream.Fault{Status: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: `{"type":"message","model":"claude-haiku-4-5","content":[{"type":"text","text":"hello there"}],"usage":{"input_tokens":4,"output_tokens":2}}`})
	if out, err := e.run(t, ctx, "claude-key"); err != nil || !strings.Contains(out, "hello there\n✓ 200") || !strings.Contains(out, "4 input / 2 output tokens") {
		t.Errorf("whole answer: %v\n%s", err, out)
	}
	// Gemini and OpenAI errors read the same way.
	e.gem.Push(fakeupstream.GeminiFault{Status: 429, Reason: "RATE_LIMIT_EXCEEDED", RetryDelay: 30 * time.Second})
	if _, err := e.run(t, ctx, "gemini-key"); err == nil || !strings.Contains(err.Error(), "answered 429") {
		t.Errorf("gemini 429: %v", err)
	}
	e.oa.Push(fakeupstream.OpenAIFault{Status: 401})
	if _, err := e.run(t, ctx, "openai-key"); err == nil || !strings.Contains(err.Error(), "answered 401") {
		t.Errorf("openai 401: %v", err)
	}
	if n := e.usageRows(t); n != 0 {
		t.Fatalf("failed tests recorded usage for %d accounts", n)
	}
}

// TestAccountTestRefreshesAfter401: an OAuth token refused upstream is
// refreshed once and the test tried again with the new one, as a relayed
// request would be.
func TestAccountTestRefreshesAfter401(t *testing.T) {
	e := newTestEnv(t, fakeupstream.Options{})
	ctx := context.Background()
	if _, err := e.run(t, ctx, "openai-oauth"); err != nil {
		t.Fatal(err)
	}
	before := e.openaiA.RefreshCalls()
	e.oa.Push(fakeupstream.OpenAIFault{Status: 401})
	out, err := e.run(t, ctx, "openai-oauth")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "refreshed, trying once more") || !strings.Contains(out, "✓ 200") || e.openaiA.RefreshCalls() != before+1 {
		t.Fatalf("refreshes %d→%d, output:\n%s", before, e.openaiA.RefreshCalls(), out)
	}
	bearerOf(t, e, last(t, e.oa.Requests()), "openai-oauth")
	// A second 401 in a row is the answer.
	e.oa.Push(fakeupstream.OpenAIFault{Status: 401}, fakeupstream.OpenAIFault{Status: 401})
	if _, err := e.run(t, ctx, "openai-oauth"); err == nil || !strings.Contains(err.Error(), "answered 401") {
		t.Fatalf("two 401s: %v", err)
	}
}

// TestAccountTestOutsideScheduling: disabled, resting and unschedulable
// accounts are tested all the same, and the output says what state they
// are in.
func TestAccountTestOutsideScheduling(t *testing.T) {
	e := newTestEnv(t, fakeupstream.Options{})
	ctx := context.Background()
	a, _ := e.st.GetAccount(ctx, "claude-key")
	a.Disabled = true
	if err := e.st.UpdateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetCooldown(ctx, "gemini-key", store.CooldownRateLimited, time.Now().Add(time.Hour), "rate limited: quota"); err != nil {
		t.Fatal(err)
	}
	e.relay.Refresh(ctx)
	for id, note := range map[store.AccountID]string{
		"claude-key": "(the account is disabled; tested anyway)",
		"gemini-key": "(the account is resting (rate_limited) until ",
	} {
		out, err := e.run(t, ctx, id)
		if err != nil || !strings.Contains(out, note) || !strings.Contains(out, "✓ 200") {
			t.Errorf("%s: %v\n%s", id, err, out)
		}
	}
	if _, err := e.run(t, ctx, "acc_nope"); err == nil || !strings.Contains(err.Error(), "no account acc_nope") {
		t.Errorf("unknown account: %v", err)
	}
}

// TestAccountTestStreamsAndStops: text reaches the writer while the
// upstream is still answering, and the context ends a hung test.
func TestAccountTestStreamsAndStops(t *testing.T) {
	e := newTestEnv(t, fakeupstream.Options{Deltas: 4, DeltaDelay: 150 * time.Millisecond})
	w := &timedWriter{}
	start := time.Now()
	if err := e.relay.TestAccount(context.Background(), "claude-key", w); err != nil {
		t.Fatal(err)
	}
	total := time.Since(start)
	first, ok := w.firstWith("p")
	if !ok || total-first < 300*time.Millisecond {
		t.Fatalf("the first text arrived %v into a %v test: not streamed", first, total)
	}

	e.anth.Push(fakeupstream.Fault{Hang: true})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err := e.run(t, ctx, "claude-key")
	if err == nil || !strings.Contains(err.Error(), "ran out of time") || time.Since(start) > 2*time.Second {
		t.Fatalf("hung upstream: %v after %v", err, time.Since(start))
	}
}

// timedWriter records when each write arrived.
type timedWriter struct {
	mu     sync.Mutex
	start  time.Time
	writes []string
	at     []time.Duration
}

func (w *timedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.start.IsZero() {
		w.start = time.Now()
	}
	w.writes = append(w.writes, string(p))
	w.at = append(w.at, time.Since(w.start))
	return len(p), nil
}

func (w *timedWriter) firstWith(s string) (time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, p := range w.writes {
		if p == s {
			return w.at[i], true
		}
	}
	return 0, false
}

// TestAccountTestModel: the test asks for the pool's cheap model, or for
// one the account's allow-list has, sent under the account's name for it.
func TestAccountTestModel(t *testing.T) {
	for _, c := range []struct {
		models map[string]string
		def    string
		want   string
	}{
		{nil, "claude-haiku-4-5", "claude-haiku-4-5"},
		{map[string]string{"claude-haiku-4-5": "", "claude-opus-4-1": ""}, "claude-haiku-4-5", "claude-haiku-4-5"},
		{map[string]string{"claude-opus-4-1": "", "claude-sonnet-4-5": "", "claude-3-5-haiku": ""}, "claude-haiku-4-5", "claude-3-5-haiku"},
		{map[string]string{"gpt-5": "", "gpt-5.1": ""}, "gpt-5-mini", "gpt-5"},
		{map[string]string{"gemini-2.5-pro": "", "gemini-2.5-flash-lite": "x"}, "gemini-2.5-flash", "gemini-2.5-flash-lite"},
	} {
		if got := testModel(c.models, c.def); got != c.want {
			t.Errorf("testModel(%v, %s) = %s, want %s", c.models, c.def, got, c.want)
		}
	}

	e := newTestEnv(t, fakeupstream.Options{})
	ctx := context.Background()
	a, _ := e.st.GetAccount(ctx, "claude-key")
	a.Options.Models = map[string]string{"claude-sonnet-4-5": "claude-sonnet-4-5-20250929"}
	if err := e.st.UpdateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	out, err := e.run(t, ctx, "claude-key")
	if err != nil || !strings.HasPrefix(out, "→ claude-sonnet-4-5 (sent as claude-sonnet-4-5-20250929) via claude-key\n") {
		t.Fatalf("%v\n%s", err, out)
	}
	if got := gjson.GetBytes(last(t, e.anth.Requests()).Body, "model").String(); got != "claude-sonnet-4-5-20250929" {
		t.Fatalf("upstream asked for %q", got)
	}
}

// TestAccountTestSpeaksThroughSay: every word the test writes or fails
// with is say's, the answer's own text aside, so the console can render
// all of it in the page's language; and what say makes is scrubbed of the
// account's secrets like the rest, even when a translation moves an
// argument to another place.
func TestAccountTestSpeaksThroughSay(t *testing.T) {
	e := newTestEnv(t, fakeupstream.Options{})
	ctx := context.Background()
	// say marks what it makes and, as a translation that reorders the
	// arguments might, shows them first.
	say := func(format string, args ...any) string {
		return "⟦" + fmt.Sprint(args...) + " | " + fmt.Sprintf(format, args...) + "⟧"
	}
	reply := fakeupstream.ReplyText(3)
	// check: out is say's words around the answer (the start of it, for
	// a test that failed), and the error is say's alone.
	check := func(name string, out string, err error, answer string, failed bool) {
		t.Helper()
		if failed != (err != nil) {
			t.Fatalf("%s: error %v, want failed=%v\n%s", name, err, failed, out)
		}
		if got := unmarked(out); got != answer && (!failed || !strings.HasPrefix(answer, got)) {
			t.Errorf("%s: the output has words that are not say's: %q\n%s", name, got, out)
		}
		if err != nil && unmarked(err.Error()) != "" {
			t.Errorf("%s: the error has words that are not say's: %q", name, err)
		}
	}

	out, err := e.runSaying(t, ctx, "claude-key", say)
	check("streamed", out, err, reply, false)
	if !strings.Contains(out, "input / ") || !strings.Contains(out, "→ claude-haiku-4-5 via claude-key") {
		t.Errorf("say did not get the test's lines:\n%s", out)
	}

	e.anth.Push(fakeupstream.Fault{Status: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: `{"type":"message","model":"claude-haiku-4-5","content":[{"type":"text","text":"hello there"}],"usage":{"input_tokens":4,"output_tokens":2}}`})
	out, err = e.runSaying(t, ctx, "claude-key", say)
	check("whole answer", out, err, "hello there", false)

	// The key quoted back is an argument, which this say repeats: it is
	// scrubbed in both places (runSaying fails on any trace of it).
	e.anth.Push(fakeupstream.Fault{Status: 401,
		Body: `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key ` + claudeKey + `"}}`})
	out, err = e.runSaying(t, ctx, "claude-key", say)
	check("401", out, err, "", true)
	if strings.Count(err.Error(), "invalid x-api-key [redacted]") != 2 {
		t.Errorf("the quoted key is not scrubbed where say put it: %v", err)
	}

	e.anth.Push(fakeupstream.Fault{Status: 429, Header: http.Header{"Retry-After": {"120"}}})
	out, err = e.runSaying(t, ctx, "claude-key", say)
	check("429", out, err, "", true)
	if !strings.Contains(err.Error(), "relayed traffic would rest") {
		t.Errorf("429: %v", err)
	}

	e.anth.Push(fakeupstream.Fault{CutAfterEvents: 3})
	out, err = e.runSaying(t, ctx, "claude-key", say)
	check("cut", out, err, reply, true)

	e.anth.Push(fakeupstream.Fault{Status: 401})
	out, err = e.runSaying(t, ctx, "claude-setup", say)
	check("refreshed", out, err, reply, false)
	if !strings.Contains(out, "trying once more") {
		t.Errorf("no retry after the refused token:\n%s", out)
	}

	out, err = e.runSaying(t, ctx, "acc_nope", say)
	check("unknown", out, err, "", true)

	a, _ := e.st.GetAccount(ctx, "claude-key")
	a.Disabled = true
	a.Options.Models = map[string]string{"claude-sonnet-4-5": "claude-sonnet-4-5-20250929"}
	if err := e.st.UpdateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetCooldown(ctx, "claude-oauth", store.CooldownRateLimited, time.Now().Add(time.Hour), "rate limited: quota"); err != nil {
		t.Fatal(err)
	}
	out, err = e.runSaying(t, ctx, "claude-key", say)
	check("disabled, renamed", out, err, reply, false)
	if !strings.Contains(out, "sent as") || !strings.Contains(out, "disabled") {
		t.Errorf("say did not get the note or the model's name:\n%s", out)
	}
	out, err = e.runSaying(t, ctx, "claude-oauth", say)
	check("resting", out, err, reply, false)
	if !strings.Contains(out, "| rate_limited⟧") {
		t.Errorf("the cooldown's kind is not say's:\n%s", out)
	}

	e.anth.Push(fakeupstream.Fault{Hang: true})
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	out, err = e.runSaying(t, short, "claude-key", say)
	check("timed out", out, err, "", true)
}

// unmarked is s without the ⟦…⟧ TestAccountTestSpeaksThroughSay's say
// makes (nested ones included).
func unmarked(s string) string {
	var b strings.Builder
	depth := 0
	for _, r := range s {
		switch {
		case r == '⟦':
			depth++
		case r == '⟧':
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestAccountTestWordsAreFormats: every sentence in accounttest.go is the
// format of a printf, errorf or say call, so none reaches the output
// around say: not one returned as it is, made by fmt or errors.New, or
// glued together with +. With the console's test that every such format
// has a translation (internal/web i18n_formats_test.go), this keeps the
// console's test page in its language. The prompt is the one exception:
// the model reads it, the admin does not.
func TestAccountTestWordsAreFormats(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "accounttest.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[*ast.BasicLit]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.CallExpr:
			if sel, ok := x.Fun.(*ast.SelectorExpr); ok && len(x.Args) > 0 &&
				(sel.Sel.Name == "printf" || sel.Sel.Name == "errorf" || sel.Sel.Name == "say") {
				if lit, ok := x.Args[0].(*ast.BasicLit); ok {
					allowed[lit] = true
				}
			}
		case *ast.ValueSpec:
			if len(x.Names) == 1 && x.Names[0].Name == "testPrompt" {
				allowed[x.Values[0].(*ast.BasicLit)] = true
			}
		}
		return true
	})
	if len(allowed) < 20 {
		t.Fatalf("found only %d formats; the scan is broken", len(allowed))
	}
	// A sentence is a quoted literal with two words in it, as opposed to
	// a path, a header name ("Bearer "), a time layout or a JSON body
	// (`…`).
	words := regexp.MustCompile(`[A-Za-z]\s+[a-z]|[a-z]\s+[A-Za-z]`)
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING || strings.HasPrefix(lit.Value, "`") || allowed[lit] {
			return true
		}
		s, _ := strconv.Unquote(lit.Value)
		if words.MatchString(s) {
			t.Errorf("%s: %s is not a format of printf, errorf or say, so say never sees it", fset.Position(lit.Pos()), lit.Value)
		}
		return true
	})
}
