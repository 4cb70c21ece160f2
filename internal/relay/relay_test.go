package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/netx"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/reqid"
	"github.com/crs-relay/crs/internal/scheduler"
	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/sqlite"
	"github.com/crs-relay/crs/internal/usage"
)

// fixture is a Relay on a real SQLite store with one account on a fake
// upstream and one relay key.
type fixture struct {
	relay *Relay
	store store.Store
	fake  *fakeupstream.Anthropic
	key   string
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "crs.db"), sqlite.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	box, _ := secret.NewBox(strings.Repeat("x", 32))
	fake := fakeupstream.StartAnthropic(tb, fakeupstream.Options{APIKeys: []string{"sk-ant-test"}, Deltas: deltas(tb)})
	now := time.Now()
	if err := st.CreateAccount(ctx, store.Account{ID: "a1", Name: "a1", Platform: store.PlatformClaude, Type: store.TypeAPIKey,
		Priority: 50, BaseURL: fake.URL(), SealedSecret: box.Seal([]byte("sk-ant-test")), CreatedAt: now, UpdatedAt: now}); err != nil {
		tb.Fatal(err)
	}
	key := secret.NewRelayKey()
	if err := st.CreateKey(ctx, store.Key{ID: "k1", Name: "k1", Hash: secret.Hash(key), Hint: key[len(key)-4:], CreatedAt: now}); err != nil {
		tb.Fatal(err)
	}
	rec := usage.NewRecorder(st, usage.Options{SpoolDir: tb.TempDir()})
	rec.Start()
	tb.Cleanup(func() { rec.Close(context.Background()) })
	r := New(Config{MaxBodyBytes: 1 << 20, FirstEventTimeout: 5 * time.Second}, Deps{
		Keys: NewKeyCache(st, nil), Scheduler: scheduler.New(st, scheduler.Options{}), Recorder: rec,
		Prices: pricing.Default(), Pool: netx.NewPool(netx.Options{}), Box: box,
	})
	if err := r.Refresh(ctx); err != nil {
		tb.Fatal(err)
	}
	return &fixture{relay: r, store: st, fake: fake, key: key}
}

func (f *fixture) post(body string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/api/v1/messages", strings.NewReader(body))
	req = req.WithContext(reqid.With(req.Context(), reqid.New()))
	req.Header.Set("X-Api-Key", f.key)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	f.relay.Messages(w, req)
	return w
}

func TestSessionID(t *testing.T) {
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	cases := []struct {
		name string
		hdr  http.Header
		body string
		want string
	}{
		{"header wins", h("X-Claude-Code-Session-Id", "abc"), `{"metadata":{"user_id":"{\"session_id\":\"zzz\"}"}}`, "abc"},
		{"json user_id", nil, `{"metadata":{"user_id":"{\"device_id\":\"d\",\"account_uuid\":\"\",\"session_id\":\"s-1\"}"}}`, "s-1"},
		{"legacy user_id", nil, `{"metadata":{"user_id":"user_abc_account__session_0f0e-11"}}`, "0f0e-11"},
		{"system string", nil, `{"system":"be brief","messages":[{"role":"user","content":"hi"}]}`, hashPrompt(`"be brief"`)},
		{"system blocks", nil, `{"system":[{"type":"text","text":"a"}]}`, hashPrompt(`[{"type":"text","text":"a"}]`)},
		{"first message", nil, `{"messages":[{"role":"user","content":[{"type":"text","text":"hello"}]}]}`, hashPrompt(`{"role":"user","content":[{"type":"text","text":"hello"}]}`)},
		{"first message, later turn", nil, `{"messages":[ {"role":"user","content":[{"type":"text","text":"hello"}]},{"role":"assistant","content":"hi"}]}`, hashPrompt(`{"role":"user","content":[{"type":"text","text":"hello"}]}`)},
		{"empty system falls to first message", nil, `{"system":"","messages":[{"content":"x"}]}`, hashPrompt(`{"content":"x"}`)},
		{"no messages", nil, `{"messages":[ ]}`, ""},
		{"nothing", nil, `{"messages":[]}`, ""},
	}
	// Long prompts that differ only past the hashed prefix still differ by
	// length; equal ones agree.
	long := strings.Repeat("y", 20<<10)
	if hashPrompt(long) == hashPrompt(long+"z") || hashPrompt(long) != hashPrompt(strings.Clone(long)) {
		t.Fatal("prompt hashing does not tell long prompts apart by length")
	}
	// A first message longer than the hashed prefix keeps its session as
	// the conversation grows.
	big := `{"role":"user","content":"` + long + `"}`
	turn1, _ := readMessagesFields([]byte(`{"messages":[` + big + `]}`))
	turn2, _ := readMessagesFields([]byte(`{"messages":[` + big + `,{"role":"assistant","content":"ok"},{"role":"user","content":"more"}]}`))
	if a, b := sessionID(http.Header{}, turn1), sessionID(http.Header{}, turn2); a == "" || a != b {
		t.Fatalf("long first message: session %q then %q", a, b)
	}
	for _, c := range cases {
		if c.hdr == nil {
			c.hdr = http.Header{}
		}
		f, _ := readMessagesFields([]byte(c.body))
		if got := sessionID(c.hdr, f); got != c.want {
			t.Errorf("%s: sessionID = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestExtractKey(t *testing.T) {
	for _, c := range []struct {
		hdr  [2]string
		want string
	}{
		{[2]string{"X-Api-Key", " cr_x "}, "cr_x"},
		{[2]string{"Authorization", "Bearer cr_y"}, "cr_y"},
		{[2]string{"Authorization", "bearer cr_y"}, "cr_y"},
		{[2]string{"Authorization", "Basic abc"}, ""},
		{[2]string{"X-Goog-Api-Key", "cr_z"}, "cr_z"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set(c.hdr[0], c.hdr[1])
		if got := ExtractKey(r); got != c.want {
			t.Errorf("%v: %q, want %q", c.hdr, got, c.want)
		}
	}
}

func TestKeyCacheStatuses(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.relay.keys.Authenticate(f.key); err != nil {
		t.Fatal(err)
	}
	k, _ := f.store.GetKey(ctx, "k1")
	past := time.Now().Add(-time.Minute)
	k.ExpiresAt = &past
	f.store.UpdateKey(ctx, k)
	f.relay.keys.Reload(ctx)
	if _, err := f.relay.keys.Authenticate(f.key); err != ErrKeyExpired {
		t.Fatalf("expired: %v", err)
	}
	k.ExpiresAt, k.DeletedAt = nil, &past
	f.store.UpdateKey(ctx, k)
	f.relay.keys.Reload(ctx)
	if _, err := f.relay.keys.Authenticate(f.key); err != ErrKeyUnknown {
		t.Fatalf("deleted: %v", err)
	}
	if err := f.relay.keys.FlushTouches(ctx); err != nil {
		t.Fatal(err)
	}
	if k, _ := f.store.GetKey(ctx, "k1"); k.LastUsedAt == nil {
		t.Fatal("last_used_at not flushed")
	}
}

// TestAbortedClientWhileWaiting: a client that leaves before the first
// event gets nothing written and the account is not blamed.
func TestAbortedClientBeforeFirstEvent(t *testing.T) {
	f := newFixture(t)
	f.fake.Push(fakeupstream.Fault{FirstByteDelay: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/messages", strings.NewReader(`{"model":"claude-sonnet-4-5","max_tokens":5,"stream":true,"messages":[]}`)).WithContext(ctx)
	req.Header.Set("X-Api-Key", f.key)
	w := httptest.NewRecorder()
	f.relay.Messages(w, req)
	if w.Body.Len() != 0 {
		t.Fatalf("wrote %q to a client that left", w.Body.String())
	}
	a, _ := f.store.GetAccount(context.Background(), "a1")
	if a.Status(time.Now()) != store.AccountActive {
		t.Fatalf("account blamed for the client leaving: %s", a.Status(time.Now()))
	}
}

// FuzzMessagesRequest: no request body makes the handler panic, and every
// answer the relay makes itself is in Anthropic's error shape.
func FuzzMessagesRequest(f *testing.F) {
	fx := newFixture(f)
	for _, s := range []string{
		`{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"claude-sonnet-4-5","max_tokens":5,"stream":true,"messages":[]}`,
		`{"model":"x","metadata":{"user_id":"{\"session_id\":1}"},"system":[{"text":null}]}`,
		`{"model":5}`, `[]`, `{`, "", "\x00", `{"model":"a","messages":{"0":{"content":[1,{"text":2}]}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := fx.post(string(body), nil)
		if w.Code == http.StatusOK {
			return
		}
		var e struct {
			Type  string
			Error struct{ Type, Message string }
		}
		b, _ := io.ReadAll(w.Body)
		if err := json.Unmarshal(b, &e); err != nil || e.Type != "error" || e.Error.Type == "" {
			t.Fatalf("status %d with a body not in Anthropic's error shape: %q", w.Code, b)
		}
	})
}

// BenchmarkRelayStream measures one streamed request through the relay
// (50 deltas) against the in-process fake upstream, client included.
func BenchmarkRelayStream(b *testing.B) {
	for _, size := range []int{300, 64 << 10} {
		b.Run(fmt.Sprintf("body=%d", size), func(b *testing.B) {
			fx := newFixture(b)
			fx.fake.SetDefault(fakeupstream.Fault{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fx.relay.Messages(w, r.WithContext(reqid.With(r.Context(), reqid.New())))
			}))
			defer srv.Close()
			pad := strings.Repeat("x", max(0, size-200))
			body := `{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"` + pad + `"}]}`
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
				req.Header.Set("X-Api-Key", fx.key)
				req.Header.Set("Anthropic-Version", "2023-06-01")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatal(resp.Status)
				}
			}
		})
	}
}

// deltas is 50 for benchmarks (the bench workload) and 2 for tests.
func deltas(tb testing.TB) int {
	if _, ok := tb.(*testing.B); ok {
		return 50
	}
	return 2
}

// countingKeys counts KeyByHash calls.
type countingKeys struct {
	store.Keys
	lookups atomic.Int32
}

func (c *countingKeys) KeyByHash(ctx context.Context, hash string) (store.Key, error) {
	c.lookups.Add(1)
	return c.Keys.KeyByHash(ctx, hash)
}

// TestKeyCacheFindsNewKeys: a key created after the last reload (in the
// console, with the CLI, on another instance) works at once; made-up keys
// cost at most missLookupsPerSecond store lookups a second.
func TestKeyCacheFindsNewKeys(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	keys := &countingKeys{Keys: f.store}
	now := time.Unix(1_800_000_000, 0)
	cache := NewKeyCache(keys, func() time.Time { return now })
	if err := cache.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	token := "cr_" + strings.Repeat("ab", 32)
	if err := f.store.CreateKey(ctx, store.Key{ID: "k-new", Name: "new", Hash: secret.Hash(token), Hint: "abab", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if k, err := cache.Authenticate(token); err != nil || k.ID != "k-new" {
		t.Fatalf("new key before a reload: %v, %v", k.ID, err)
	}
	before := keys.lookups.Load()
	if _, err := cache.Authenticate(token); err != nil || keys.lookups.Load() != before {
		t.Errorf("a found key is not kept: %v, %d more lookups", err, keys.lookups.Load()-before)
	}
	before = keys.lookups.Load()
	for i := range 100 {
		if _, err := cache.Authenticate(fmt.Sprintf("cr_%064x", i)); err != ErrKeyUnknown {
			t.Fatalf("made-up key: %v", err)
		}
	}
	if n := keys.lookups.Load() - before; n > missLookupsPerSecond {
		t.Errorf("100 made-up keys in one second made %d store lookups, want at most %d", n, missLookupsPerSecond)
	}
	now = now.Add(time.Second)
	before = keys.lookups.Load()
	cache.Authenticate(fmt.Sprintf("cr_%064x", 999))
	if keys.lookups.Load() != before+1 {
		t.Error("the next second's lookups are not allowed again")
	}
}
