package relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/provider"
	"github.com/crs-relay/crs/internal/provider/gemini"
	"github.com/crs-relay/crs/internal/reqid"
	"github.com/crs-relay/crs/internal/sse"
	"github.com/crs-relay/crs/internal/store"
)

// placeholderProject is the Code Assist project crs tells Gemini CLI it
// has. The CLI sends it back on every request; crs puts the serving
// account's real project in its place, so one key can be served by any
// Gemini account.
const placeholderProject = "crs-relay"

// Gemini serves POST /gemini/…: the native Gemini API
// (/v1beta/models/{model}:{action}, also /v1/) and the Code Assist API that
// Gemini CLI uses with CODE_ASSIST_ENDPOINT (/v1internal:{method}). Go's
// ServeMux cannot match "{model}:action", so the route is a prefix and the
// action is parsed here.
func (r *Relay) Gemini(w http.ResponseWriter, req *http.Request) {
	rest := strings.TrimPrefix(req.URL.Path, "/gemini")
	if method, ok := gemini.ParseCodeAssistPath(rest); ok {
		r.codeAssist(w, req, method)
		return
	}
	if _, model, action, ok := gemini.ParseNativePath(rest); ok {
		r.geminiCall(w, req, rest, model, action, "")
		return
	}
	writeError(w, geminiShape{}, apiError{Status: http.StatusNotFound, Kind: errNotFound,
		Message: "crs: no Gemini route for POST " + req.URL.Path + " (want /gemini/v1beta/models/{model}:{action} or /gemini/v1internal:{method})"})
}

// codeAssist serves one Code Assist method. Setup methods (which tier and
// project the user has, quotas, experiments) are answered by crs: the
// user's tier and project are the serving account's business, and crs
// picks the account per request. The generation methods go to a Gemini
// OAuth account with its own project.
func (r *Relay) codeAssist(w http.ResponseWriter, req *http.Request, method string) {
	switch method {
	case "generateContent", "streamGenerateContent", "countTokens":
		r.geminiCall(w, req, method, "", method, store.TypeOAuth)
		return
	}
	if _, ok := r.authenticateIn(w, req, geminiShape{}); !ok {
		return
	}
	tier := map[string]any{"id": "standard-tier", "name": "Gemini Code Assist (crs)", "isDefault": true,
		"userDefinedCloudaicompanionProject": false}
	switch method {
	case "loadCodeAssist":
		writeJSON(w, http.StatusOK, map[string]any{"currentTier": tier, "allowedTiers": []any{tier},
			"cloudaicompanionProject": placeholderProject})
	case "onboardUser":
		writeJSON(w, http.StatusOK, map[string]any{"name": "operations/crs-onboard", "done": true,
			"response": map[string]any{"cloudaicompanionProject": map[string]any{"id": placeholderProject, "name": placeholderProject}}})
	case "retrieveUserQuota":
		writeJSON(w, http.StatusOK, map[string]any{"buckets": []any{}})
	default:
		// listExperiments, recordCodeAssistMetrics, fetchAdminControls,
		// get/setCodeAssistGlobalUserSetting, …: nothing to say.
		writeJSON(w, http.StatusOK, map[string]any{})
	}
}

// CodeAssistOperation answers GET /gemini/v1internal/operations/{name}: the
// onboarding crs reports is always done.
func (r *Relay) CodeAssistOperation(w http.ResponseWriter, req *http.Request) {
	if _, ok := r.authenticateIn(w, req, geminiShape{}); !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": "operations/" + req.PathValue("name"), "done": true,
		"response": map[string]any{"cloudaicompanionProject": map[string]any{"id": placeholderProject}}})
}

// geminiCall relays a generation request. path is the vendor path of a
// native request, or the Code Assist method; model is "" for Code Assist,
// whose body names it. only, when set, is the account type that can serve.
func (r *Relay) geminiCall(w http.ResponseWriter, req *http.Request, path, model, action string, only store.AccountType) {
	c := &call{d: r.gemini, shape: geminiShape{}, platform: store.PlatformGemini, path: path, model: model,
		accountType: only, header: req.Header, metered: action != "countTokens", start: r.now(), id: reqid.From(req.Context())}
	c.action = action
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
	if c.model == "" {
		c.model = strings.TrimPrefix(root.Get("model").String(), "models/")
	}
	if c.model == "" {
		writeError(w, c.shape, apiError{Status: http.StatusBadRequest, Kind: errInvalidRequest, Message: "model: a model name is required"})
		return
	}
	c.stream = action == "streamGenerateContent"
	if s := gemini.SessionID(req.Header, c.body); s != "" {
		c.sticky = string(c.key.ID) + "|" + string(store.PlatformGemini) + "|" + s
	}
	release, ok := r.admit(w, req, c)
	if !ok {
		return
	}
	defer release()
	c.binding = c.key.Policy.Account
	r.serve(w, req, c)
}

// GeminiModels serves GET /gemini/v1beta/models (and /v1/models) in
// Gemini's list shape, from the price table's Gemini models.
func (r *Relay) GeminiModels(w http.ResponseWriter, req *http.Request) {
	if _, ok := r.authenticateIn(w, req, geminiShape{}); !ok {
		return
	}
	models := []map[string]any{}
	for _, m := range r.prices.Table().Models() {
		if !strings.HasPrefix(m.ID, "gemini-") {
			continue
		}
		models = append(models, map[string]any{"name": "models/" + m.ID, "displayName": m.ID,
			"supportedGenerationMethods": []string{"generateContent", "streamGenerateContent", "countTokens"}})
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": models})
}

// geminiDialect is the Gemini protocol, native or Code Assist.
func (r *Relay) geminiDialect() *dialect {
	return &dialect{
		build: r.geminiRequest,
		classify: func(now time.Time, status int, h http.Header, body []byte, _ *call) provider.Outcome {
			return gemini.Classify(now, status, h, body)
		},
		streamError: func(now time.Time, ev sse.Event, _ http.Header, _ *call) (provider.Outcome, bool) {
			return gemini.ClassifyStreamError(now, ev.Data)
		},
		preamble: gemini.IsPreamble,
		// A Gemini stream has no final event: its end is the end of the
		// response, which the client sees only after the handler (and so
		// the usage record) is done.
		final:     func(sse.Event) bool { return false },
		newUsage:  func() usageTap { return &geminiUsage{} },
		bodyUsage: gemini.BodyUsage,
	}
}

// geminiUsage adapts gemini.StreamUsage to the pipeline.
type geminiUsage struct{ gemini.StreamUsage }

func (u *geminiUsage) Usage() (string, pricing.Tokens, bool) { return u.Model, u.Tokens, u.Reported }

// geminiRequest builds a gemini-pool account's request. API-key accounts
// serve the native routes at their base URL (GEMINI_API_URL by default).
// OAuth accounts serve through Code Assist (CODE_ASSIST_API_URL) with their
// own project: Code Assist requests as they are (project replaced), native
// requests wrapped into Code Assist's envelope and their answers unwrapped.
func (r *Relay) geminiRequest(ctx context.Context, req *http.Request, c *call, acct store.Account) (*http.Request, *provider.Outcome) {
	rest := func(reason string) *provider.Outcome {
		o := provider.Rest(r.now(), store.CooldownCredentialDead, provider.CredentialCooldown, 0, reason)
		return &o
	}
	body := mappedBody(c, acct)
	c.rewriteBody, c.rewriteEvent = nil, nil
	query := withoutKey(req.URL.RawQuery)
	if acct.Type != store.TypeOAuth {
		key, err := r.box.Open(acct.SealedSecret)
		if err != nil {
			return nil, rest("cannot open credentials: " + err.Error())
		}
		path := c.path
		if m, renamed := mappedModel(c, acct); renamed {
			// The native API reads the model from the path, not the body.
			var ok bool
			if path, ok = gemini.RenameNativePath(c.path, m); !ok {
				o := provider.Outcome{Kind: provider.ClientError, Status: http.StatusBadRequest,
					Reason: fmt.Sprintf("the account serves %s as %q, which is not a Gemini model id", c.model, m)}
				return nil, &o
			}
		}
		up, err := gemini.APIKeyRequest(ctx, req.Header, orDefault(acct.BaseURL, r.cfg.GeminiBaseURL), path, query, string(key), body)
		if err != nil {
			return nil, rest("bad base URL: " + err.Error())
		}
		return up, nil
	}
	cred, o := r.freshCredential(ctx, acct)
	if o != nil {
		return nil, o
	}
	if c.accountType == "" { // a native request: wrap it for Code Assist
		model := c.model
		if m, renamed := mappedModel(c, acct); renamed {
			model = m
		}
		var err error
		if c.action == "countTokens" {
			body, err = gemini.NativeCountTokensToCodeAssist(model, body)
		} else {
			body, err = gemini.NativeToCodeAssist(model, body, cred.ProjectID)
		}
		if err != nil {
			o := provider.Outcome{Kind: provider.ClientError, Status: http.StatusBadRequest, Reason: err.Error()}
			return nil, &o
		}
		c.rewriteBody = gemini.UnwrapCodeAssist
		c.rewriteEvent = func(ev sse.Event) []byte { return gemini.UnwrapCodeAssistEvent(nil, ev) }
	}
	up, err := gemini.CodeAssistRequest(ctx, req.Header, orDefault(acct.BaseURL, r.cfg.CodeAssistBaseURL), c.action, query,
		cred.AccessToken, cred.ProjectID, body)
	if errors.Is(err, gemini.ErrNotObject) || errors.Is(err, gemini.ErrBadMethod) {
		o := provider.Outcome{Kind: provider.ClientError, Status: http.StatusBadRequest, Reason: err.Error()}
		return nil, &o
	}
	if err != nil {
		return nil, rest("bad base URL: " + err.Error())
	}
	return up, nil
}

// withoutKey drops a ?key= parameter (the relay key of a Gemini API-key
// client) from a raw query, keeping the rest (alt=sse) as sent.
func withoutKey(raw string) string {
	if !strings.Contains(raw, "key=") {
		return raw
	}
	parts := strings.Split(raw, "&")
	out := parts[:0]
	for _, p := range parts {
		if !strings.HasPrefix(p, "key=") {
			out = append(out, p)
		}
	}
	return strings.Join(out, "&")
}
