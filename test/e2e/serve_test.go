package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/testkit"
)

// TestBinaryStreamAndUsage: the built binary relays a stream and a
// non-stream call from the SDK, and `crs usage --json`, run as a second
// process while the server still runs, shows both with every token class
// and the exact cost.
func TestBinaryStreamAndUsage(t *testing.T) {
	t.Parallel()
	per := fakeupstream.Usage{Input: 1000, Output: 500, CacheWrite5m: 200, CacheWrite1h: 100, CacheRead: 4000}
	fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{Deltas: 4, Usage: per})
	dir := t.TempDir()
	acct := addAccount(t, dir, fake, "main", 50)
	keyID, key := createKey(t, dir, "alice")
	srv := startCRS(t, dir)
	c := testkit.SDK(srv.url+"/api", key)
	ctx := testkit.Ctx(t, 30*time.Second)

	msg, err := testkit.Stream(ctx, c, testkit.Params("say pong"))
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if textOf(msg) != fakeupstream.ReplyText(4) || msg.Usage.OutputTokens != 500 || msg.Usage.CacheReadInputTokens != 4000 {
		t.Fatalf("stream reply %q usage %+v", textOf(msg), msg.Usage)
	}
	m, err := c.Messages.New(ctx, testkit.Params("say pong"))
	if err != nil {
		t.Fatalf("non-stream: %v", err)
	}
	if textOf(*m) != fakeupstream.ReplyText(4) || m.Usage.InputTokens != 1000 {
		t.Fatalf("non-stream reply %q usage %+v", textOf(*m), m.Usage)
	}

	// The server is still running: the CLI reads the same DATA_DIR beside it.
	u := usage(t, dir)
	if len(u.Keys) != 1 || len(u.Accounts) != 1 || len(u.Models) != 1 {
		t.Fatalf("usage rows: %+v", u)
	}
	k := u.Keys[0]
	if k.KeyID != keyID || k.Requests != 2 || k.Tokens() != times(per, 2) || k.CW != 600 {
		t.Fatalf("key usage = %+v, want 2 requests and %+v", k, times(per, 2))
	}
	if a := u.Accounts[0]; a.AccountID != acct || a.Requests != 2 || a.Tokens() != times(per, 2) {
		t.Fatalf("account usage = %+v", a)
	}
	if md := u.Models[0]; md.Model != "claude-sonnet-4-5" || md.Requests != 2 || md.Tokens() != times(per, 2) {
		t.Fatalf("model usage = %+v", md)
	}
	// claude-sonnet-4-5 at $3 in / $15 out / $3.75 5m / $6 1h / $0.30 read
	// per MTok: 0.003 + 0.0075 + 0.00075 + 0.0006 + 0.0012 = 0.01305 a call.
	if string(k.Cost) != "0.0261" {
		t.Fatalf("cost_usd = %s, want 0.0261", k.Cost)
	}
}

// TestSecondServeRefused: a second `crs serve` on a DATA_DIR in use exits
// non-zero at once with one line on stderr naming the first one's pid.
func TestSecondServeRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := startCRS(t, dir)
	start := time.Now()
	second := launchCRS(t, dir)
	st := second.waitExit(10 * time.Second)
	if st == nil {
		t.Fatalf("second crs serve still runs after 10s\nstdout: %s\nstderr: %s", second.stdout, second.stderr)
	}
	took := time.Since(start)
	errOut := second.stderr.String()
	if st.ExitCode() == 0 || !oneLine(errOut) || !strings.Contains(errOut, fmt.Sprintf("pid %d", first.pid())) {
		t.Fatalf("second serve: exit %d after %v, stderr %q; want non-zero and one line naming pid %d",
			st.ExitCode(), took, errOut, first.pid())
	}
	if strings.Contains(second.stdout.String(), "listening") {
		t.Fatalf("second serve listened: %s", second.stdout)
	}
	t.Logf("refused in %v: %s", took.Round(time.Millisecond), strings.TrimSpace(errOut))
	// The first one is unharmed.
	resp, err := http.Get(first.url + "/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("first server after the refused start: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestInvalidConfigNamesVariable: a bad variable stops the start with one
// line naming it, before anything listens.
func TestInvalidConfigNamesVariable(t *testing.T) {
	t.Parallel()
	cases := []struct{ env, name string }{
		{"PORT=abc", "PORT"},
		{"PORT=70000", "PORT"},
		{"UPSTREAM_FIRST_EVENT_TIMEOUT=soon", "UPSTREAM_FIRST_EVENT_TIMEOUT"},
		{"SHUTDOWN_TIMEOUT=-5s", "SHUTDOWN_TIMEOUT"},
	}
	for _, tc := range cases {
		t.Run(tc.env, func(t *testing.T) {
			t.Parallel()
			p := launchCRS(t, t.TempDir(), tc.env)
			st := p.waitExit(10 * time.Second)
			if st == nil {
				t.Fatalf("crs serve with %s still runs after 10s", tc.env)
			}
			errOut := p.stderr.String()
			if st.ExitCode() == 0 || !oneLine(errOut) || !strings.Contains(errOut, tc.name) {
				t.Fatalf("exit %d, stderr %q: want non-zero and one line naming %s", st.ExitCode(), errOut, tc.name)
			}
			if strings.Contains(p.stdout.String(), "listening") {
				t.Fatalf("listened despite %s", tc.env)
			}
		})
	}
}

// TestFirstEventTimeoutFailsOver: an account whose upstream sends nothing
// for 5 s is abandoned after UPSTREAM_FIRST_EVENT_TIMEOUT, the next account
// serves the stream, and the slow one rests.
func TestFirstEventTimeoutFailsOver(t *testing.T) {
	t.Parallel()
	slow := fakeupstream.StartAnthropic(t, fakeupstream.Options{Name: "slow", Deltas: 2})
	good := fakeupstream.StartAnthropic(t, fakeupstream.Options{Name: "good", Deltas: 2})
	dir := t.TempDir()
	slowID := addAccount(t, dir, slow, "slow", 10)
	goodID := addAccount(t, dir, good, "good", 20)
	_, key := createKey(t, dir, "k")
	srv := startCRS(t, dir, "UPSTREAM_FIRST_EVENT_TIMEOUT=500ms")
	slow.SetDefault(fakeupstream.Fault{FirstByteDelay: 5 * time.Second})

	start := time.Now()
	msg, err := testkit.Stream(testkit.Ctx(t, 20*time.Second), testkit.SDK(srv.url+"/api", key), testkit.Params("hi"))
	took := time.Since(start)
	if err != nil {
		t.Fatalf("stream failed after %v: %v", took, err)
	}
	if textOf(msg) != fakeupstream.ReplyText(2) || !strings.HasPrefix(msg.ID, "msg_good_") {
		t.Fatalf("reply %q from %s, want the good account's", textOf(msg), msg.ID)
	}
	// At least the timeout, and well under the slow upstream's 5 s.
	if took < 500*time.Millisecond || took > 3*time.Second {
		t.Fatalf("stream took %v, want between 500ms and 3s", took)
	}
	t.Logf("failed over after %v", took.Round(time.Millisecond))
	if slow.MessageCount() != 1 || good.MessageCount() != 1 {
		t.Fatalf("upstream calls: slow %d, good %d; want 1 and 1", slow.MessageCount(), good.MessageCount())
	}
	if a := accountByID(t, dir, slowID); a.Status != "cooling_down" || a.CooldownUntil == nil {
		t.Fatalf("slow account = %+v, want cooling_down with an end", a)
	}
	if a := accountByID(t, dir, goodID); a.Status != "active" {
		t.Fatalf("good account = %+v, want active", a)
	}
}

// TestGzipUpstreamStillRelayed: an upstream (or a proxy before it) that
// gzips although crs asked for identity still gets relayed, and its usage
// is counted.
func TestGzipUpstreamStillRelayed(t *testing.T) {
	t.Parallel()
	fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{Deltas: 3})
	dir := t.TempDir()
	addAccount(t, dir, fake, "a", 50)
	_, key := createKey(t, dir, "k")
	srv := startCRS(t, dir)
	c := testkit.SDK(srv.url+"/api", key)
	ctx := testkit.Ctx(t, 20*time.Second)

	fake.Push(fakeupstream.Fault{Gzip: true}, fakeupstream.Fault{Gzip: true})
	msg, err := testkit.Stream(ctx, c, testkit.Params("hi"))
	if err != nil || textOf(msg) != fakeupstream.ReplyText(3) || msg.Usage.OutputTokens != 7 {
		t.Fatalf("gzipped stream: %v, text %q, usage %+v", err, textOf(msg), msg.Usage)
	}
	m, err := c.Messages.New(ctx, testkit.Params("hi"))
	if err != nil || textOf(*m) != fakeupstream.ReplyText(3) {
		t.Fatalf("gzipped body: %v %+v", err, m)
	}
	if got := fake.MessageCount(); got != 2 {
		t.Fatalf("upstream calls = %d, want 2 (no retry)", got)
	}
	u := usage(t, dir)
	if len(u.Keys) != 1 || u.Keys[0].Requests != 2 || u.Keys[0].Tokens() != times(fakeupstream.DefaultUsage(), 2) {
		t.Fatalf("usage = %+v, want 2 requests of %+v", u.Keys, fakeupstream.DefaultUsage())
	}
}

// TestGzipBodyDecodedForIdentityClient: a gzipped non-stream answer goes
// to a client that accepts only identity as plain JSON, as the stream path
// already does.
//
// KNOWN CRS BUG (found by this test, left failing for the lead to fix in
// internal/relay): forwardBody copies the upstream's Content-Encoding: gzip
// and writes the compressed bytes to a client that sent
// Accept-Encoding: identity (curl, hand-rolled clients); the Go SDK only
// copes because its transport asked for gzip itself.
func TestGzipBodyDecodedForIdentityClient(t *testing.T) {
	t.Parallel()
	fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{Deltas: 3})
	dir := t.TempDir()
	addAccount(t, dir, fake, "a", 50)
	_, key := createKey(t, dir, "k")
	srv := startCRS(t, dir)
	fake.Push(fakeupstream.Fault{Gzip: true})

	req, _ := http.NewRequestWithContext(testkit.Ctx(t, 20*time.Second), http.MethodPost, srv.url+"/api/v1/messages",
		strings.NewReader(`{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Api-Key", key)
	req.Header.Set("Accept-Encoding", "identity")
	// RoundTrip, not Client.Do: the transport must not decode for us.
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m struct {
		Content []struct{ Text string } `json:"content"`
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		t.Fatalf("client accepting only identity got Content-Encoding %q (status %d, %d bytes)", ce, resp.StatusCode, len(b))
	}
	if err := json.Unmarshal(b, &m); err != nil || len(m.Content) != 1 || m.Content[0].Text != fakeupstream.ReplyText(3) {
		t.Fatalf("body %q: %v", b, err)
	}
}

// TestSIGTERMDrainsStreams: SIGTERM in the middle of a 2 s stream stops new
// connections at once, lets the stream finish through message_stop, exits 0
// within SHUTDOWN_TIMEOUT, and leaves the usage record behind.
func TestSIGTERMDrainsStreams(t *testing.T) {
	t.Parallel()
	const deltas = 20
	fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{Deltas: deltas, DeltaDelay: 100 * time.Millisecond})
	dir := t.TempDir()
	addAccount(t, dir, fake, "a", 50)
	_, key := createKey(t, dir, "k")
	const shutdownTimeout = 10 * time.Second
	srv := startCRS(t, dir, "SHUTDOWN_TIMEOUT="+shutdownTimeout.String())

	c := testkit.SDK(srv.url+"/api", key)
	s := c.Messages.NewStreaming(testkit.Ctx(t, 30*time.Second), testkit.Params("long"))
	defer s.Close()
	var (
		sent      time.Time
		refusedIn time.Duration
		events    []string
		msg       anthropic.Message
	)
	for s.Next() {
		ev := s.Current()
		events = append(events, ev.Type)
		if err := msg.Accumulate(ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type != "content_block_delta" || !sent.IsZero() {
			continue
		}
		// First content arrived: the stream is committed and has ~1.9 s to go.
		srv.signal(syscall.SIGTERM)
		sent = time.Now()
		refusedIn = waitRefused(t, srv.addr, 3*time.Second)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("stream broke after SIGTERM: %v (events %v)", err, events)
	}
	if sent.IsZero() {
		t.Fatal("no content_block_delta arrived")
	}
	streamEnd := time.Since(sent)
	if textOf(msg) != fakeupstream.ReplyText(deltas) || events[len(events)-1] != "message_stop" {
		t.Fatalf("after SIGTERM the client got %q, last event %q; want %q and message_stop",
			textOf(msg), events[len(events)-1], fakeupstream.ReplyText(deltas))
	}
	st := srv.waitExit(shutdownTimeout + 5*time.Second)
	if st == nil {
		t.Fatalf("crs still runs %v after SIGTERM", shutdownTimeout+5*time.Second)
	}
	exitIn := time.Since(sent)
	if st.ExitCode() != 0 || exitIn > shutdownTimeout {
		t.Fatalf("exit %v %v after SIGTERM; want 0 within %v\nstderr: %s", st, exitIn, shutdownTimeout, srv.stderr)
	}
	t.Logf("SIGTERM: new connections refused after %v, stream ended after %v, exit 0 after %v",
		refusedIn.Round(time.Millisecond), streamEnd.Round(time.Millisecond), exitIn.Round(time.Millisecond))
	u := usage(t, dir)
	if len(u.Keys) != 1 || u.Keys[0].Requests != 1 || u.Keys[0].Tokens() != fakeupstream.DefaultUsage() {
		t.Fatalf("usage after drain = %+v, want 1 request of %+v", u.Keys, fakeupstream.DefaultUsage())
	}
}

// TestSIGTERMCutsStreamsPastShutdownTimeout: a stream longer than
// SHUTDOWN_TIMEOUT is cut when the drain time is up, the process still
// exits 0 soon after, and the cut stream keeps its usage record (input and
// cache tokens from message_start).
func TestSIGTERMCutsStreamsPastShutdownTimeout(t *testing.T) {
	t.Parallel()
	fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{Deltas: 100, DeltaDelay: 100 * time.Millisecond})
	dir := t.TempDir()
	addAccount(t, dir, fake, "a", 50)
	_, key := createKey(t, dir, "k")
	const shutdownTimeout = time.Second
	srv := startCRS(t, dir, "SHUTDOWN_TIMEOUT="+shutdownTimeout.String())

	c := testkit.SDK(srv.url+"/api", key)
	s := c.Messages.NewStreaming(testkit.Ctx(t, 30*time.Second), testkit.Params("very long"))
	defer s.Close()
	var sent time.Time
	last := ""
	for s.Next() {
		last = s.Current().Type
		if last == "content_block_delta" && sent.IsZero() {
			srv.signal(syscall.SIGTERM)
			sent = time.Now()
		}
	}
	cut := time.Since(sent)
	if sent.IsZero() || last == "message_stop" {
		t.Fatalf("stream of 10 s was not cut (last event %q)", last)
	}
	if cut < shutdownTimeout || cut > shutdownTimeout+3*time.Second {
		t.Fatalf("stream cut %v after SIGTERM, want about SHUTDOWN_TIMEOUT=%v", cut, shutdownTimeout)
	}
	// The cut stream ends with a well-formed error event saying why, not a
	// bare close.
	var apiErr *anthropic.Error
	if err := s.Err(); !errors.As(err, &apiErr) || !strings.Contains(err.Error(), "shutting down") {
		t.Fatalf("cut stream ended with %v, want an error event saying crs is shutting down", err)
	}
	st := srv.waitExit(10 * time.Second)
	if st == nil || st.ExitCode() != 0 {
		t.Fatalf("exit after drain timeout: %v\nstderr: %s", st, srv.stderr)
	}
	t.Logf("stream cut %v after SIGTERM (err %v); exit 0 after %v", cut.Round(time.Millisecond), s.Err(), time.Since(sent).Round(time.Millisecond))
	d := fakeupstream.DefaultUsage()
	u := usage(t, dir)
	if len(u.Keys) != 1 {
		t.Fatalf("usage after a cut drain = %+v, want the cut stream's record", u)
	}
	if k := u.Keys[0]; k.Requests != 1 || k.Input != d.Input || k.CR != d.CacheRead || k.CW5m != d.CacheWrite5m || k.CW1h != d.CacheWrite1h {
		t.Fatalf("usage after a cut drain = %+v, want 1 request with message_start's input and cache tokens %+v", k, d)
	}
}

// waitRefused polls until a new TCP connection to addr is refused and
// returns how long that took.
func waitRefused(t *testing.T, addr string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		switch {
		case err == nil:
			conn.Close()
		case errors.Is(err, syscall.ECONNREFUSED):
			return time.Since(start)
		case errors.Is(err, syscall.ECONNRESET):
			// The handshake raced the listener's close; the kernel reset
			// it. Not served either, but keep going until a plain refusal.
		default:
			t.Fatalf("dial after SIGTERM: %v, want connection refused", err)
		}
		if time.Since(start) > limit {
			t.Fatalf("new connections still accepted %v after SIGTERM", limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
