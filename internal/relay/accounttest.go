package relay

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/crs-relay/crs/internal/oauth"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/provider"
	"github.com/crs-relay/crs/internal/provider/anthropic"
	"github.com/crs-relay/crs/internal/reqid"
	"github.com/crs-relay/crs/internal/sse"
	"github.com/crs-relay/crs/internal/store"
)

// The models an account test asks for when the account serves every
// model: the cheapest current one of each pool that every plan has.
const (
	testModelClaude = "claude-haiku-4-5"
	testModelOpenAI = "gpt-5-mini"
	testModelCodex  = "gpt-5-codex-mini"
	testModelGemini = "gemini-2.5-flash"
)

// testPrompt asks for an answer a few tokens long.
const testPrompt = "Reply with a short greeting of at most five words."

// TestAccount sends one tiny real request (a cheap model, a short answer,
// streamed) through the account's own credential, proxy and base URL and
// writes what happens to w as it happens: the model and the account's
// name, the answer's text as it streams, then the status, the time taken
// and the tokens the upstream counted. It is the console's Test button
// (web.AccountTester).
//
// Scheduling is skipped on purpose: a disabled, unschedulable or resting
// account is tested all the same, since "does it work again?" is the
// question an admin asks about exactly those. An OAuth token is refreshed
// the way a relayed request does it (and once more after a 401), so a
// refresh the test causes is saved. Nothing else about the account
// changes: an upstream error is reported, not turned into a cooldown, and
// the test is not recorded as usage or charged to any quota — the output
// says so. The error, when the test fails, says why in words safe to show
// an admin; neither it nor w ever carries a key, token or proxy password.
//
// The words are English; TestAccountSaying is the same test in other
// words.
func (r *Relay) TestAccount(ctx context.Context, id store.AccountID, w io.Writer) error {
	return r.TestAccountSaying(ctx, id, w, fmt.Sprintf)
}

// TestAccountSaying is TestAccount with every line it writes and its error
// rendered by say from an English format and its arguments; TestAccount
// passes fmt.Sprintf. The console passes one that looks the format up in
// its catalog, so the test speaks the page's language while the command
// line stays English. The formats are the literals of this file's
// printf, errorf and say calls, and only those: the console's tests read
// them from here and fail on one without a translation. The answer's own
// text is not passed to say. What say returns is scrubbed of the
// account's secrets like everything else, so a translation that moves an
// argument cannot show one. A nil say is fmt.Sprintf.
func (r *Relay) TestAccountSaying(ctx context.Context, id store.AccountID, w io.Writer, say func(format string, args ...any) string) error {
	if say == nil {
		say = fmt.Sprintf
	}
	out := &testWriter{w: w, say: say}
	acct, err := r.sched.Account(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return out.errorf("no account %s", id)
	}
	if err != nil {
		return out.errorf("cannot read the account: %v", err)
	}
	out.forget(r.accountSecrets(acct)...)
	c, err := r.testCall(out, acct)
	if err != nil {
		return out.scrub(err)
	}
	if m, renamed := mappedModel(c, acct); renamed {
		out.printf("→ %s (sent as %s) via %s\n", c.model, m, acct.Name)
	} else {
		out.printf("→ %s via %s\n", c.model, acct.Name)
	}
	if note := r.testNote(out, acct); note != "" {
		out.printf("(%s; tested anyway)\n", note)
	}
	start := time.Now()
	for {
		f, err := r.testOnce(ctx, out, c, acct, start)
		if f == nil {
			return out.scrub(err)
		}
		if !r.refreshAfter401(ctx, c, acct, f) {
			return out.scrub(err)
		}
		// The token was refused and has been replaced: once more with
		// the stored new one.
		if acct, err = r.sched.Account(ctx, id); err != nil {
			return out.scrub(out.errorf("cannot read the account: %v", err))
		}
		out.forget(r.accountSecrets(acct)...)
		out.printf("(the access token was refused; it was refreshed, trying once more)\n")
	}
}

// testCall builds the call of an account's test: the native route of its
// pool, streamed, never metered.
func (r *Relay) testCall(out *testWriter, acct store.Account) (*call, error) {
	c := &call{platform: acct.Platform, header: http.Header{}, stream: true, start: r.now(), id: reqid.New()}
	var def string
	switch acct.Platform {
	case store.PlatformClaude:
		c.d, c.path, def = r.claude, "/v1/messages", testModelClaude
	case store.PlatformOpenAI:
		c.d, c.path, def = r.openai, "/responses", testModelOpenAI
		if acct.Type == store.TypeOAuth {
			def = testModelCodex
		}
	case store.PlatformGemini:
		c.d, def = r.gemini, testModelGemini
		c.action = "streamGenerateContent"
	default:
		return nil, out.errorf("crs cannot test %s accounts", acct.Platform)
	}
	c.model = testModel(acct.Options.Models, def)
	upstream, _ := anthropic.ResolveModel(acct.Options.Models, c.model)
	var err error
	switch acct.Platform {
	case store.PlatformClaude:
		c.body, err = sjson.SetBytes([]byte(`{"max_tokens":32,"stream":true,"messages":[{"role":"user","content":""}]}`), "model", c.model)
		if err == nil {
			c.body, err = sjson.SetBytes(c.body, "messages.0.content", testPrompt)
		}
	case store.PlatformOpenAI:
		c.body, err = openAITestBody(acct.Type == store.TypeOAuth, c.model, upstream)
	case store.PlatformGemini:
		// The path names the model, so it carries the account's name
		// for it.
		c.path = "/v1beta/models/" + upstream + ":streamGenerateContent"
		c.body, err = geminiTestBody(upstream)
	}
	if err != nil {
		return nil, out.errorf("cannot build the test request: %v", err)
	}
	return c, nil
}

// testModel is the model a test asks for: def when the account serves it,
// else one of the account's allowed models, a cheap-sounding one first.
func testModel(models map[string]string, def string) string {
	if _, ok := anthropic.ResolveModel(models, def); ok {
		return def
	}
	names := make([]string, 0, len(models))
	for name := range models {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, cheap := range []string{"haiku", "nano", "mini", "flash-lite", "flash"} {
		for _, name := range names {
			if strings.Contains(name, cheap) {
				return name
			}
		}
	}
	return names[0] // len(models) > 0: an empty list serves def
}

// openAITestBody is a Responses request. The Codex backend wants
// instructions, a list input and no output limit (it refuses
// max_output_tokens); the API gets a small limit, and GPT-5's small models
// minimal reasoning so the limit is not spent thinking. upstream is the
// model's name after the account's mapping.
func openAITestBody(codex bool, model, upstream string) ([]byte, error) {
	if codex {
		b, err := sjson.SetBytes([]byte(`{"instructions":"You are a connectivity check. Answer in one short line.","input":[{"type":"message","role":"user","content":[{"type":"input_text","text":""}]}],"stream":true,"store":false}`), "model", model)
		if err != nil {
			return nil, err
		}
		return sjson.SetBytes(b, "input.0.content.0.text", testPrompt)
	}
	b, err := sjson.SetBytes([]byte(`{"max_output_tokens":64,"stream":true,"store":false}`), "model", model)
	if err != nil {
		return nil, err
	}
	if upstream == "gpt-5" || strings.HasPrefix(upstream, "gpt-5-mini") || strings.HasPrefix(upstream, "gpt-5-nano") {
		if b, err = sjson.SetBytes(b, "reasoning.effort", "minimal"); err != nil {
			return nil, err
		}
	}
	return sjson.SetBytes(b, "input", testPrompt)
}

// geminiTestBody is a native generateContent request (Code Assist
// accounts get it wrapped by the Gemini dialect). Flash models can skip
// thinking, so their small limit goes to the answer; other models think
// whatever they are told, so they get no limit.
func geminiTestBody(upstream string) ([]byte, error) {
	b, err := sjson.SetBytes([]byte(`{"contents":[{"role":"user","parts":[{"text":""}]}]}`), "contents.0.parts.0.text", testPrompt)
	if err != nil || !strings.Contains(upstream, "flash") {
		return b, err
	}
	return sjson.SetRawBytes(b, "generationConfig", []byte(`{"maxOutputTokens":64,"thinkingConfig":{"thinkingBudget":0}}`))
}

// testNote says why the account would not be scheduled now, if it would
// not.
func (r *Relay) testNote(out *testWriter, acct store.Account) string {
	now := r.now()
	switch {
	case acct.Disabled:
		return out.say("the account is disabled")
	case acct.Status(now) != store.AccountActive:
		kind, until := out.cooldownKind(acct.CooldownKind), acct.CooldownUntil.In(r.cfg.Location).Format(testTimeFormat)
		if acct.CooldownReason != "" {
			// The reason is the upstream's or the relay's own words,
			// shown as they were recorded.
			return out.say("the account is resting (%s) until %s: %s", kind, until, acct.CooldownReason)
		}
		return out.say("the account is resting (%s) until %s", kind, until)
	case acct.Unschedulable:
		return out.say("the account is kept out of scheduling")
	}
	return ""
}

// testOnce sends the test request once. f is set when the attempt failed
// in a way the pipeline would retry on the same account (a 401 of an
// OAuth account); err says what went wrong, nil when the test passed.
func (r *Relay) testOnce(ctx context.Context, out *testWriter, c *call, acct store.Account, start time.Time) (f *failure, err error) {
	client, err := r.clientFor(acct)
	if err != nil {
		return nil, err
	}
	req := &http.Request{Method: http.MethodPost, Header: http.Header{}, URL: &url.URL{Path: c.path}}
	if acct.Platform == store.PlatformGemini {
		req.URL.RawQuery = "alt=sse"
	}
	up, o := c.d.build(ctx, req, c, acct)
	if o != nil {
		if ctx.Err() != nil {
			return nil, out.stopped(ctx)
		}
		return nil, out.errorf("the account cannot be used: %s", o.Reason)
	}
	for _, h := range []string{"Authorization", "X-Api-Key", "X-Goog-Api-Key"} {
		out.forget(strings.TrimPrefix(up.Header.Get(h), "Bearer "))
	}
	resp, err := client.Do(up)
	if err != nil {
		if ctx.Err() != nil {
			return nil, out.stopped(ctx)
		}
		return nil, out.errorf("could not reach the upstream: %v", err)
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		o := c.d.classify(r.now(), resp.StatusCode, resp.Header, decoded(resp.Header, raw), c)
		took := out.seconds(time.Since(start))
		if o.Kind == provider.Failover && o.Cooldown != store.CooldownNone && o.Until.After(r.now()) {
			// What the answer means for the account, which the test
			// itself leaves alone.
			return &failure{outcome: o, account: acct}, out.errorf("the upstream answered %d after %s: %s (relayed traffic would rest the account until %s; this test did not)",
				resp.StatusCode, took, o.Reason, o.Until.In(r.cfg.Location).Format(testTimeFormat))
		}
		return &failure{outcome: o, account: acct}, out.errorf("the upstream answered %d after %s: %s", resp.StatusCode, took, o.Reason)
	}

	var tk pricing.Tokens
	reported := false
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		tk, reported, err = r.testStream(ctx, out, c, resp)
		if err != nil {
			return nil, err
		}
	} else {
		// A gateway on the way may ignore "stream": the answer comes whole.
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			if ctx.Err() != nil {
				return nil, out.stopped(ctx)
			}
			return nil, out.errorf("the answer broke off: %v", err)
		}
		body = c.bodyOut(decoded(resp.Header, body))
		out.answer(answerText(acct.Platform, body))
		_, tk, reported = c.d.bodyUsage(body)
	}
	var counts string
	cw := tk.CacheWrite5m + tk.CacheWrite1h
	switch {
	case !reported:
		counts = out.say("no token counts reported")
	case tk.CacheRead > 0 || cw > 0:
		counts = out.say("%d input / %d output tokens, %d cache read / %d cache write", tk.Input, tk.Output, tk.CacheRead, cw)
	default:
		counts = out.say("%d input / %d output tokens", tk.Input, tk.Output)
	}
	out.printf("\n✓ %d in %s, %s (a test: not recorded as usage)\n", resp.StatusCode, out.seconds(time.Since(start)), counts)
	return nil, nil
}

// testStream copies a streamed answer's text to out as it arrives and
// returns the tokens the stream reported. A stream that reports an error,
// breaks off, or ends before its last event is a failed test.
func (r *Relay) testStream(ctx context.Context, out *testWriter, c *call, resp *http.Response) (pricing.Tokens, bool, error) {
	var body io.Reader = resp.Body
	if strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return pricing.Tokens{}, false, out.errorf("the answer is not readable: %v", err)
		}
		body = zr
	}
	rd := sse.NewReader(body)
	su := c.d.newUsage()
	finished := false
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return pricing.Tokens{}, false, out.stopped(ctx)
			}
			return pricing.Tokens{}, false, out.errorf("the stream broke off: %v", err)
		}
		su.Observe(ev)
		if o, isErr := c.d.streamError(r.now(), ev, resp.Header, c); isErr {
			return pricing.Tokens{}, false, out.errorf("the upstream reported an error in the stream: %s", o.Reason)
		}
		if c.d.final(ev) {
			finished = true
		}
		out.answer(deltaText(c.platform, ev))
	}
	_, tk, reported := su.Usage()
	if c.platform == store.PlatformGemini {
		// A Gemini stream has no last event; an answer with its usage is
		// complete.
		finished = reported
	}
	if !finished {
		return pricing.Tokens{}, false, out.errorf("the stream ended before the answer was complete")
	}
	return tk, reported, nil
}

// deltaText is the answer text an event adds, "" when it adds none
// (thinking, tool calls, bookkeeping events).
func deltaText(p store.Platform, ev sse.Event) string {
	switch p {
	case store.PlatformClaude:
		if eventName(ev) == "content_block_delta" {
			if d := gjson.GetBytes(ev.Data, "delta"); d.Get("type").String() == "text_delta" {
				return d.Get("text").String()
			}
		}
	case store.PlatformOpenAI:
		if eventName(ev) == "response.output_text.delta" {
			return gjson.GetBytes(ev.Data, "delta").String()
		}
	case store.PlatformGemini:
		return geminiText(gjson.ParseBytes(ev.Data))
	}
	return ""
}

// geminiText is the answer text of a Gemini chunk or whole answer (native,
// or Code Assist's {"response":…}), thoughts left out.
func geminiText(root gjson.Result) string {
	if inner := root.Get("response"); inner.IsObject() {
		root = inner
	}
	var b strings.Builder
	root.Get("candidates.0.content.parts").ForEach(func(_, part gjson.Result) bool {
		if !part.Get("thought").Bool() {
			b.WriteString(part.Get("text").String())
		}
		return true
	})
	return b.String()
}

// answerText is the text of a whole (non-streamed) answer.
func answerText(p store.Platform, body []byte) string {
	var b strings.Builder
	switch p {
	case store.PlatformClaude:
		gjson.GetBytes(body, "content").ForEach(func(_, blk gjson.Result) bool {
			if blk.Get("type").String() == "text" {
				b.WriteString(blk.Get("text").String())
			}
			return true
		})
	case store.PlatformOpenAI:
		gjson.GetBytes(body, "output").ForEach(func(_, item gjson.Result) bool {
			item.Get("content").ForEach(func(_, part gjson.Result) bool {
				if part.Get("type").String() == "output_text" {
					b.WriteString(part.Get("text").String())
				}
				return true
			})
			return true
		})
	case store.PlatformGemini:
		b.WriteString(geminiText(gjson.ParseBytes(body)))
	}
	return b.String()
}

// accountSecrets are the account's credential and proxy in clear, for the
// test's output to be scrubbed of: an upstream or transport error may
// quote them back.
func (r *Relay) accountSecrets(acct store.Account) []string {
	var s []string
	if acct.Type == store.TypeOAuth || acct.Type == store.TypeSetupToken {
		if cred, err := oauth.OpenCredential(r.box, acct.SealedSecret); err == nil {
			s = append(s, cred.AccessToken, cred.RefreshToken)
		}
	} else if key, err := r.box.Open(acct.SealedSecret); err == nil {
		s = append(s, string(key))
	}
	if proxy, err := r.box.Open(acct.SealedProxy); err == nil && len(proxy) > 0 {
		s = append(s, string(proxy))
		if u, err := url.Parse(string(proxy)); err == nil && u.User != nil {
			pw, _ := u.User.Password()
			s = append(s, pw, u.User.String())
		}
	}
	return s
}

// testTimeFormat shows a cooldown's end in the test's output (TIMEZONE).
const testTimeFormat = "2006-01-02 15:04:05 MST"

// testWriter is the test's output: every write, and the final error, has
// the account's secrets replaced, however the text came to hold them. Its
// words are say's (TestAccountSaying).
type testWriter struct {
	w       io.Writer
	say     func(format string, args ...any) string
	secrets []string
}

// stopped says why a test ended before the upstream finished.
func (t *testWriter) stopped(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return t.errorf("the test ran out of time before the upstream finished")
	}
	return t.errorf("the test was stopped before the upstream finished")
}

func (t *testWriter) seconds(d time.Duration) string { return t.say("%.1f s", d.Seconds()) }

// cooldownKind names a cooldown kind. Each is a format of its own, so
// say can word it; in English it is the kind's identifier, as an
// account's status shows it in the CLI and the JSON API.
func (t *testWriter) cooldownKind(k store.CooldownKind) string {
	switch k {
	case store.CooldownTransient:
		return t.say("cooling_down")
	case store.CooldownRateLimited:
		return t.say("rate_limited")
	case store.CooldownCredentialDead:
		return t.say("credential_dead")
	case store.CooldownBlocked:
		return t.say("blocked")
	}
	return string(k)
}

// minSecret is the length below which a string is not scrubbed: no real
// credential is that short, and scrubbing "a" would garble the text.
const minSecret = 8

// forget adds secrets to scrub, longest first so one that contains
// another is replaced whole.
func (t *testWriter) forget(secrets ...string) {
	for _, s := range secrets {
		if len(s) >= minSecret && !slices.Contains(t.secrets, s) {
			t.secrets = append(t.secrets, s)
		}
	}
	slices.SortFunc(t.secrets, func(a, b string) int { return len(b) - len(a) })
}

func (t *testWriter) clean(s string) string {
	for _, secret := range t.secrets {
		s = strings.ReplaceAll(s, secret, "[redacted]")
	}
	return s
}

// printf writes a line of the test's own, in say's words.
func (t *testWriter) printf(format string, args ...any) {
	if s := t.clean(t.say(format, args...)); s != "" {
		io.WriteString(t.w, s)
	}
}

// answer writes text of the upstream's answer as it is: the model's words,
// not the test's.
func (t *testWriter) answer(text string) {
	if s := t.clean(text); s != "" {
		io.WriteString(t.w, s)
	}
}

// errorf is a failure of the test in say's words. It takes %v, not %w:
// the error is only ever shown, and say formats like fmt.Sprintf, which
// has no %w.
func (t *testWriter) errorf(format string, args ...any) error {
	return errors.New(t.say(format, args...))
}

// scrub returns err with its text cleaned, nil for nil.
func (t *testWriter) scrub(err error) error {
	if err == nil {
		return nil
	}
	return errors.New(t.clean(err.Error()))
}
