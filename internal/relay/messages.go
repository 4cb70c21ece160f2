package relay

import (
	"net/http"
	"time"

	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/provider"
	"github.com/crs-relay/crs/internal/provider/anthropic"
	"github.com/crs-relay/crs/internal/reqid"
	"github.com/crs-relay/crs/internal/scheduler"
	"github.com/crs-relay/crs/internal/sse"
	"github.com/crs-relay/crs/internal/store"
)

// call is one client request, across its attempts.
type call struct {
	d        *dialect
	shape    errorShape
	platform store.Platform
	key      store.Key
	header   http.Header
	path     string // vendor path, "/v1/messages"
	body     []byte
	model    string
	family   string // the model's family ("opus"), "" when unknown
	stream   bool
	sticky   string
	metered  bool // records usage (messages), or not (count_tokens)
	// noSubscription keeps the call off subscription accounts: it does not
	// come from Claude Code and CLAUDE_CODE_ONLY is on.
	noSubscription bool
	// binding is the key's account or group ("group:…"), "" for the pool.
	binding string
	// accountType, when set, is the only account type that can serve the
	// call (Code Assist requests need a Gemini OAuth account).
	accountType store.AccountType
	// action is a Gemini call's method (generateContent, …).
	action string
	// committed is set once the client was answered (anything written).
	committed bool
	// refreshed lists OAuth accounts already force-refreshed after a 401.
	refreshed map[store.AccountID]bool
	start     time.Time
	id        string
	attempts  int

	// Lazily computed facts about the body (0 unknown, 1 no, 2 yes).
	claudeCodeMemo, warmupMemo, userTurnMemo int8

	// rewriteBody and rewriteEvent, when set, change the upstream's answer
	// on its way out (a native Gemini request served through Code Assist
	// is unwrapped); nil passes it through byte for byte.
	rewriteBody  func([]byte) []byte
	rewriteEvent func(sse.Event) []byte
}

func (c *call) bodyOut(b []byte) []byte {
	if c.rewriteBody == nil {
		return b
	}
	return c.rewriteBody(b)
}

func (c *call) eventOut(ev sse.Event) []byte {
	if c.rewriteEvent == nil {
		return ev.Raw
	}
	return c.rewriteEvent(ev)
}

func memo(m *int8, f func() bool) bool {
	if *m == 0 {
		*m = 1
		if f() {
			*m = 2
		}
	}
	return *m == 2
}

// claudeCode reports whether the request comes from real Claude Code.
func (c *call) claudeCode() bool {
	return memo(&c.claudeCodeMemo, func() bool { return anthropic.IsClaudeCode(c.header, c.body) })
}

// warmup reports whether the request is Claude Code's warmup or title call.
func (c *call) warmup() bool {
	return memo(&c.warmupMemo, func() bool { return anthropic.IsWarmup(c.body) })
}

// userTurn reports whether the request carries a person's new message (not
// a tool result of the agent loop).
func (c *call) userTurn() bool {
	return memo(&c.userTurnMemo, func() bool { return anthropic.IsUserTurn(c.body) })
}

// serves says whether an account can take the call at all: its model
// allow-list, its plan (no Opus on a free plan), and the Claude-Code-only
// rule for subscriptions.
func (c *call) serves(a store.Account) bool {
	if c.accountType != "" && a.Type != c.accountType {
		return false
	}
	if _, ok := anthropic.ResolveModel(a.Options.Models, c.model); !ok {
		return false
	}
	if c.platform == store.PlatformClaude && isSubscription(a) {
		return !c.noSubscription && anthropic.PlanAllows(a.Plan, c.model)
	}
	return true
}

// pick is the scheduler request for the call.
func (c *call) pick(tried map[store.AccountID]bool) scheduler.Request {
	return scheduler.Request{
		Platform: c.platform, Model: c.model, Family: c.family,
		Session: c.sticky, Exclude: tried, Serves: c.serves, Binding: c.binding,
	}
}

// Messages serves POST …/v1/messages.
func (r *Relay) Messages(w http.ResponseWriter, req *http.Request) {
	r.anthropicCall(w, req, "/v1/messages", true)
}

// CountTokens serves POST …/v1/messages/count_tokens: forwarded to an
// account like a message, but never metered.
func (r *Relay) CountTokens(w http.ResponseWriter, req *http.Request) {
	r.anthropicCall(w, req, "/v1/messages/count_tokens", false)
}

func (r *Relay) anthropicCall(w http.ResponseWriter, req *http.Request, path string, metered bool) {
	c := &call{d: r.claude, shape: anthropicShape{}, platform: store.PlatformClaude,
		path: path, header: req.Header, metered: metered, start: r.now(), id: reqid.From(req.Context())}
	var ok bool
	if c.key, ok = r.authenticate(w, req); !ok {
		return
	}
	if c.body, ok = r.readBody(w, req, c.shape); !ok {
		return
	}
	// One pass reads what the relay needs. Full JSON validation is left
	// to the upstream, which answers malformed bodies with its own 400
	// (passed through); a body that is not even an object with a model is
	// refused here.
	f, isObject := readMessagesFields(c.body)
	if !isObject {
		WriteAnthropicError(w, http.StatusBadRequest, errInvalidRequest, "request body is not a JSON object", 0)
		return
	}
	if f.model.Type != gjson.String || f.model.String() == "" {
		WriteAnthropicError(w, http.StatusBadRequest, errInvalidRequest, "model: a model name is required", 0)
		return
	}
	c.model = f.model.String()
	c.family = anthropic.Family(c.model)
	c.stream = metered && f.stream
	if s := sessionID(req.Header, f); s != "" {
		c.sticky = string(c.key.ID) + "|" + string(store.PlatformClaude) + "|" + s
	}
	release, ok := r.admit(w, req, c)
	if !ok {
		return
	}
	defer release()
	c.binding = c.key.Policy.Account
	c.noSubscription = r.cfg.ClaudeCodeOnly && !c.claudeCode()
	r.newest.observe(req.Header)

	r.serve(w, req, c)
}

// claudeDialect is the Anthropic Messages protocol.
func (r *Relay) claudeDialect() *dialect {
	return &dialect{
		build: r.upstreamRequest,
		classify: func(now time.Time, status int, h http.Header, body []byte, c *call) provider.Outcome {
			return anthropic.ScopeRateLimit(now, anthropic.Classify(now, status, h, body), h, c.model)
		},
		streamError: func(now time.Time, ev sse.Event, h http.Header, c *call) (provider.Outcome, bool) {
			if eventName(ev) != "error" {
				return provider.Outcome{}, false
			}
			return anthropic.ScopeRateLimit(now, anthropic.ClassifyStreamError(now, ev.Data), h, c.model), true
		},
		preamble: func(ev sse.Event) bool {
			switch eventName(ev) {
			case "ping", "message_start", "":
				return true
			}
			return false
		},
		final:     func(ev sse.Event) bool { return eventName(ev) == "message_stop" },
		newUsage:  func() usageTap { return &anthropicUsage{} },
		bodyUsage: anthropic.BodyUsage,
		observe:   r.observeLimits,
	}
}

// anthropicUsage adapts anthropic.StreamUsage to the pipeline.
type anthropicUsage struct{ anthropic.StreamUsage }

func (u *anthropicUsage) Usage() (string, pricing.Tokens, bool) { return u.Model, u.Tokens, u.Reported }
