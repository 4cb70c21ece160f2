package relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/oauth"
	"github.com/crs-relay/crs/internal/provider"
	"github.com/crs-relay/crs/internal/provider/anthropic"
	"github.com/crs-relay/crs/internal/provider/openai"
	"github.com/crs-relay/crs/internal/reqid"
	"github.com/crs-relay/crs/internal/sse"
	"github.com/crs-relay/crs/internal/store"
)

// Responses serves POST /openai/responses, /openai/v1/responses and their
// /compact forms: the OpenAI Responses API that Codex CLI speaks, relayed
// to the openai pool (OpenAI-compatible API keys, or ChatGPT subscriptions
// through the Codex backend).
func (r *Relay) Responses(w http.ResponseWriter, req *http.Request) {
	path := "/responses"
	if strings.HasSuffix(req.URL.Path, "/compact") {
		path = "/responses/compact"
	}
	c := &call{d: r.openai, shape: openAIShape{}, platform: store.PlatformOpenAI,
		path: path, header: req.Header, metered: true, start: r.now(), id: reqid.From(req.Context())}
	var ok bool
	if c.key, ok = r.authenticateIn(w, req, c.shape); !ok {
		return
	}
	if c.body, ok = r.readBody(w, req, c.shape); !ok {
		return
	}
	root := gjson.ParseBytes(c.body)
	if !root.IsObject() {
		writeError(w, c.shape, apiError{Status: http.StatusBadRequest, Kind: errInvalidRequest, Message: "request body is not a JSON object"})
		return
	}
	// One pass over the top-level keys: Codex bodies run to 50 KB, and
	// "stream" may come after "input".
	var model gjson.Result
	stream := false
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "model":
			model = v
		case "stream":
			stream = v.Bool()
		}
		return true
	})
	if model.Type != gjson.String || model.Str == "" {
		writeError(w, c.shape, apiError{Status: http.StatusBadRequest, Kind: errInvalidRequest, Message: "model: a model name is required"})
		return
	}
	c.model = model.Str
	c.stream = path == "/responses" && stream
	if s := openai.SessionID(req.Header, c.body); s != "" {
		c.sticky = string(c.key.ID) + "|" + string(store.PlatformOpenAI) + "|" + s
	}
	release, ok := r.admit(w, req, c)
	if !ok {
		return
	}
	defer release()
	c.binding = c.key.Policy.Account
	r.serve(w, req, c)
}

// ResponsesWebSocket answers Codex's WebSocket upgrade on GET …/responses
// at once with 426: crs speaks HTTPS only, and without a quick refusal
// Codex's built-in provider retries the upgrade for about 7 seconds before
// falling back.
func (r *Relay) ResponsesWebSocket(w http.ResponseWriter, req *http.Request) {
	writeError(w, openAIShape{}, apiError{Status: http.StatusUpgradeRequired, Kind: errInvalidRequest,
		Message: "crs: WebSocket is not supported here; send POST " + req.URL.Path + " over HTTPS"})
}

// OpenAIModels serves GET /openai/v1/models in OpenAI's list shape, from
// the price table's OpenAI models.
func (r *Relay) OpenAIModels(w http.ResponseWriter, req *http.Request) {
	if _, ok := r.authenticateIn(w, req, openAIShape{}); !ok {
		return
	}
	data := []map[string]any{}
	for _, m := range r.prices.Table().Models() {
		if !strings.HasPrefix(m.ID, "gpt-") && !strings.HasPrefix(m.ID, "o") && !strings.HasPrefix(m.ID, "codex") {
			continue
		}
		created := m.Released
		if created.IsZero() {
			created = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		data = append(data, map[string]any{"id": m.ID, "object": "model", "created": created.Unix(), "owned_by": "openai"})
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

// openaiDialect is the OpenAI Responses protocol.
func (r *Relay) openaiDialect() *dialect {
	return &dialect{
		build: r.openaiRequest,
		classify: func(now time.Time, status int, h http.Header, body []byte, _ *call) provider.Outcome {
			return openai.Classify(now, status, h, body)
		},
		streamError: func(now time.Time, ev sse.Event, _ http.Header, _ *call) (provider.Outcome, bool) {
			return openai.ClassifyStreamEvent(now, ev)
		},
		preamble:  openai.IsPreamble,
		final:     openai.IsFinal,
		newUsage:  func() usageTap { return &openai.StreamUsage{} },
		bodyUsage: openai.BodyUsage,
		observe:   r.observeCodexLimits,
	}
}

// openaiRequest builds an openai-pool account's request: API-key accounts
// get the Responses API of their base URL (OPENAI_API_URL by default);
// ChatGPT subscriptions get the Codex backend (CODEX_API_URL) with a fresh
// access token and their ChatGPT account id.
func (r *Relay) openaiRequest(ctx context.Context, req *http.Request, c *call, acct store.Account) (*http.Request, *provider.Outcome) {
	rest := func(kind store.CooldownKind, reason string) *provider.Outcome {
		o := provider.Rest(r.now(), kind, provider.CredentialCooldown, 0, reason)
		return &o
	}
	body := mappedBody(c, acct)
	switch acct.Type {
	case store.TypeOAuth:
		cred, o := r.freshCredential(ctx, acct)
		if o != nil {
			return nil, o
		}
		base := orDefault(acct.BaseURL, r.cfg.CodexBaseURL)
		up, err := openai.CodexRequest(ctx, req.Header, base, c.path, req.URL.RawQuery, cred.AccessToken, cred.ChatGPTAccountID, body)
		if err != nil {
			return nil, rest(store.CooldownCredentialDead, "bad base URL: "+err.Error())
		}
		return up, nil
	default:
		key, err := r.box.Open(acct.SealedSecret)
		if err != nil {
			return nil, rest(store.CooldownCredentialDead, "cannot open credentials: "+err.Error())
		}
		base := orDefault(acct.BaseURL, r.cfg.OpenAIBaseURL)
		up, err := openai.APIKeyRequest(ctx, req.Header, base, c.path, req.URL.RawQuery, string(key), body)
		if err != nil {
			return nil, rest(store.CooldownCredentialDead, "bad base URL: "+err.Error())
		}
		return up, nil
	}
}

// observeCodexLimits keeps a ChatGPT account's 5-hour window current from
// the Codex backend's usage headers, like the unified headers of a Claude
// subscription.
func (r *Relay) observeCodexLimits(ctx context.Context, acct store.Account, status int, h http.Header) {
	lim, ok := openai.ReadCodexLimits(h)
	if !ok {
		return
	}
	now := r.now()
	if w, ok := lim.Window5h(now); ok {
		if err := r.sched.ObserveWindow(context.WithoutCancel(ctx), acct.ID, w); err != nil {
			r.log.Error("cannot record the 5-hour window", "account", acct.ID, "err", err)
		}
	}
	if until, exhausted := lim.Exhausted(now); exhausted && status/100 == 2 {
		r.rest(ctx, acct, provider.Rest(now, store.CooldownRateLimited, until.Sub(now), status,
			"usage limit reached (Codex usage headers)"))
	}
}

// freshCredential returns an OAuth account's current credential, or why
// the account cannot be used now.
func (r *Relay) freshCredential(ctx context.Context, acct store.Account) (oauth.Credential, *provider.Outcome) {
	if r.tokens == nil {
		o := provider.Rest(r.now(), store.CooldownCredentialDead, provider.CredentialCooldown, 0, "OAuth accounts are not enabled on this server")
		return oauth.Credential{}, &o
	}
	cred, err := r.tokens.Fresh(ctx, acct)
	if err != nil {
		if errors.Is(err, oauth.ErrInvalidGrant) || errors.Is(err, oauth.ErrCredentialDead) {
			o := provider.Rest(r.now(), store.CooldownCredentialDead, provider.CredentialCooldown, 0, err.Error())
			return oauth.Credential{}, &o
		}
		o := provider.Transport(r.now(), fmt.Errorf("token refresh: %w", err))
		return oauth.Credential{}, &o
	}
	return cred, nil
}

// mappedModel is the name the account serves the call's model under, and
// whether that differs from the name asked for (its models option).
func mappedModel(c *call, acct store.Account) (string, bool) {
	m, _ := anthropic.ResolveModel(acct.Options.Models, c.model)
	return m, m != "" && m != c.model
}

// mappedBody is the call's body with the model renamed when the account
// maps it. A body without a top-level model (native Gemini, whose model is
// in the path) is left alone.
func mappedBody(c *call, acct store.Account) []byte {
	if m, renamed := mappedModel(c, acct); renamed && gjson.GetBytes(c.body, "model").Exists() {
		if b, err := anthropic.SetModel(c.body, m); err == nil {
			return b
		}
	}
	return c.body
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
