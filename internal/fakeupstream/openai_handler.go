package fakeupstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// Routes of the two APIs the fake serves. A client's base URL is
// URL()+"/v1" for the Responses API and CodexURL() for the Codex backend;
// both append /responses.
const (
	openaiResponsesPath = "/v1/responses"
	openaiCompactPath   = "/v1/responses/compact"
	openaiModelsPath    = "/v1/models"
	codexBasePath       = "/backend-api/codex"
	codexResponsesPath  = codexBasePath + "/responses"
	codexCompactPath    = codexBasePath + "/responses/compact"
)

// maxOpenAIBody bounds what the fake reads of a request body; larger bodies
// get 413. Real prompts from Codex are 40–55 KB.
const maxOpenAIBody = 32 << 20

// openaiRoute is what one request asks for.
type openaiRoute int

const (
	routeOpenAIUnknown openaiRoute = iota
	routeOpenAIResponses
	routeOpenAICompact
	routeOpenAIModels
	routeCodexResponses
	routeCodexCompact
	routeOpenAIWebSocket
)

func openaiRouteOf(r *http.Request) openaiRoute {
	p := r.URL.Path
	switch r.Method {
	case http.MethodPost:
		switch p {
		case openaiResponsesPath:
			return routeOpenAIResponses
		case openaiCompactPath:
			return routeOpenAICompact
		case codexResponsesPath:
			return routeCodexResponses
		case codexCompactPath:
			return routeCodexCompact
		}
	case http.MethodGet:
		switch {
		case p == openaiModelsPath:
			return routeOpenAIModels
		case (p == openaiResponsesPath || p == codexResponsesPath) && strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
			return routeOpenAIWebSocket
		}
	}
	return routeOpenAIUnknown
}

// generates reports whether the route produces a model answer, and so takes
// a fault and counts in ResponseCount.
func (rt openaiRoute) generates() bool {
	switch rt {
	case routeOpenAIResponses, routeOpenAICompact, routeCodexResponses, routeCodexCompact:
		return true
	}
	return false
}

func (rt openaiRoute) codex() bool { return rt == routeCodexResponses || rt == routeCodexCompact }

func (rt openaiRoute) compact() bool { return rt == routeOpenAICompact || rt == routeCodexCompact }

// ServeHTTP answers POST /v1/responses and /v1/responses/compact (API
// keys), POST /backend-api/codex/responses and …/responses/compact (ChatGPT
// OAuth), and GET /v1/models. A WebSocket upgrade on GET …/responses gets
// 426 at once, never 101, so Codex falls back to HTTPS without retrying.
// Anything else gets 404 with OpenAI's "Invalid URL" error.
func (o *OpenAI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	body, tooLarge, readErr := readOpenAIBody(r.Body)
	o.record(r, body, arrived)
	if readErr != nil {
		return // the client is gone; nobody would read an answer
	}

	seq := o.nextSeq()
	reqID := fmt.Sprintf("req_%032x", seq)
	w.Header().Set("x-request-id", reqID)
	if o.opts.Name != "" {
		w.Header().Set("x-fake-upstream", o.opts.Name)
	}

	route := openaiRouteOf(r)
	var f OpenAIFault
	if route.generates() {
		defer o.enter()()
		f = o.next()
	}
	ctx := r.Context()
	if f.Hang {
		select {
		case <-ctx.Done():
		case <-o.closed:
		}
		return
	}
	if f.FirstByteDelay > 0 && !o.pause(ctx, f.FirstByteDelay) {
		return
	}
	pinned := http.Header{}
	for k, vs := range f.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
			pinned.Add(k, v)
		}
	}
	rep := openaiReplier{w: w, pinned: pinned}

	if tooLarge {
		rep.apiError(http.StatusRequestEntityTooLarge, "Request body too large.", "invalid_request_error", "", "")
		return
	}

	switch route {
	case routeOpenAIWebSocket:
		rep.apiError(http.StatusUpgradeRequired, "WebSocket connections are not supported here; send an HTTPS POST.", "invalid_request_error", "", "")
	case routeOpenAIModels:
		if o.checkAPIKey(rep, r) {
			rep.json(http.StatusOK, openaiModelList())
		}
	case routeOpenAIResponses, routeOpenAICompact:
		if !o.checkAPIKey(rep, r) {
			return
		}
		req, ok := checkResponsesBody(rep, body, false, route.compact())
		if !ok {
			return
		}
		o.serveGeneration(ctx, rep, req, f, seq, route.compact(), nil)
	case routeCodexResponses, routeCodexCompact:
		cx, ok := o.checkCodex(rep, r)
		if !ok {
			return
		}
		req, ok := checkResponsesBody(rep, body, true, route.compact())
		if !ok {
			return
		}
		if until := cx.snap.spentUntil(cx.now); !until.IsZero() {
			rep.usageLimit(cx, until, "")
			return
		}
		o.serveGeneration(ctx, rep, req, f, seq, route.compact(), &cx)
	default:
		rep.apiError(http.StatusNotFound, fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path), "invalid_request_error", "", "")
	}
}

// readOpenAIBody reads the whole request body up to maxOpenAIBody.
// tooLarge reports a body over the limit.
func readOpenAIBody(rc io.ReadCloser) (body []byte, tooLarge bool, err error) {
	if rc == nil {
		return nil, false, nil
	}
	defer rc.Close()
	body, err = io.ReadAll(io.LimitReader(rc, maxOpenAIBody+1))
	if len(body) > maxOpenAIBody {
		return body[:maxOpenAIBody], true, nil
	}
	return body, false, err
}

// bearerToken is the credential of an Authorization: Bearer header, "" if
// there is none.
func bearerToken(r *http.Request) string {
	v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return ""
	}
	return strings.TrimSpace(v)
}

// checkAPIKey enforces the Responses API's credential: a bearer API key. It
// answers and returns false when the key is missing or refused.
func (o *OpenAI) checkAPIKey(rep openaiReplier, r *http.Request) bool {
	key := bearerToken(r)
	switch {
	case key == "":
		rep.apiError(http.StatusUnauthorized, "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", "invalid_request_error", "", "")
	case o.opts.OAuth != nil && o.opts.OAuth.issuedAccess(key):
		// A ChatGPT login's token is not an API key: api.openai.com
		// refuses it for lack of the API scopes, which is what a relay
		// that sends a Codex account to the wrong base URL must see.
		rep.apiError(http.StatusUnauthorized, "You have insufficient permissions for this operation. Missing scopes: api.responses.write.", "invalid_request_error", "", "")
	case !o.acceptsKey(key):
		rep.apiError(http.StatusUnauthorized, "Incorrect API key provided: "+maskKey(key)+". You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_request_error", "", "invalid_api_key")
	default:
		return true
	}
	return false
}

func (o *OpenAI) acceptsKey(key string) bool {
	if len(o.opts.APIKeys) == 0 {
		return true
	}
	for _, k := range o.opts.APIKeys {
		if k == key {
			return true
		}
	}
	return false
}

// maskKey shows a refused key the way the real error does: its ends only.
func maskKey(key string) string {
	if len(key) <= 10 {
		return strings.Repeat("*", len(key))
	}
	return key[:3] + strings.Repeat("*", len(key)-7) + key[len(key)-4:]
}

// codexCtx is what the Codex backend knows about an authenticated request.
type codexCtx struct {
	plan string
	now  time.Time
	snap codexState
}

// checkCodex enforces the Codex backend's credentials: a bearer access
// token and the chatgpt-account-id it belongs to. On success it sets the
// x-codex-* usage headers, before anything can answer, so every
// authenticated reply carries them (errors and 429s included).
func (o *OpenAI) checkCodex(rep openaiReplier, r *http.Request) (codexCtx, bool) {
	tok := bearerToken(r)
	if tok == "" {
		rep.detail(http.StatusUnauthorized, "Unauthorized")
		return codexCtx{}, false
	}
	account := r.Header.Get("Chatgpt-Account-Id")
	now := time.Now()
	var plan string
	if oa := o.opts.OAuth; oa != nil {
		grant, state := oa.lookupAccess(tok, now)
		switch state {
		case accessUnknown, accessRevoked:
			rep.detail(http.StatusUnauthorized, "Unauthorized")
			return codexCtx{}, false
		case accessExpired:
			// chatgpt.com's expired-session answer, which Codex turns
			// into a token refresh.
			rep.detail(http.StatusUnauthorized, map[string]any{
				"message": "Your authentication token has expired. Please try signing in again.",
				"type":    "invalid_request_error",
				"param":   nil,
				"code":    "token_expired",
			})
			return codexCtx{}, false
		}
		if account != grant.identity.AccountID {
			rep.detail(http.StatusForbidden, "chatgpt-account-id does not match the access token's account")
			return codexCtx{}, false
		}
		plan = grant.identity.Plan
	} else if account == "" {
		rep.detail(http.StatusForbidden, "chatgpt-account-id header is required")
		return codexCtx{}, false
	}
	snap := o.codexSnapshot(now)
	snap.report(rep, now, plan)
	return codexCtx{plan: plan, now: now, snap: snap}, true
}

// openaiRequest is the little the fake needs from a Responses body.
type openaiRequest struct {
	model  string
	stream bool
	// store is echoed in the Response object; the API's default is true.
	store bool
}

// checkResponsesBody enforces the required fields of a Responses (or
// compact) body: a JSON object with a string model and an input (string or
// item list); stream and store, when present, must be booleans. The Codex
// backend also insists on store:false and stream:true for /responses,
// answering in its own {"detail": …} shape. Unknown fields, item types and
// models are accepted: a relay must pass them through (Codex sends
// additional_tools items, client_metadata and developer messages).
func checkResponsesBody(rep openaiReplier, body []byte, codex, compact bool) (openaiRequest, bool) {
	bad := func(msg, param, code string) (openaiRequest, bool) {
		if codex {
			rep.detail(http.StatusBadRequest, msg)
		} else {
			rep.apiError(http.StatusBadRequest, msg, "invalid_request_error", param, code)
		}
		return openaiRequest{}, false
	}
	if !gjson.ValidBytes(body) || !gjson.ParseBytes(body).IsObject() {
		return bad("We could not parse the JSON body of your request. The API expects a JSON object.", "", "")
	}
	root := gjson.ParseBytes(body)
	model := root.Get("model")
	switch {
	case !model.Exists():
		return bad("Missing required parameter: 'model'.", "model", "missing_required_parameter")
	case model.Type != gjson.String || model.Str == "":
		return bad("Invalid type for 'model': expected a non-empty string.", "model", "invalid_type")
	}
	input := root.Get("input")
	switch {
	case !input.Exists():
		return bad("Missing required parameter: 'input'.", "input", "missing_required_parameter")
	case input.Type != gjson.String && !input.IsArray():
		return bad("Invalid type for 'input': expected a string or an array of input items.", "input", "invalid_type")
	}
	for _, field := range []string{"stream", "store"} {
		if v := root.Get(field); v.Exists() && v.Type != gjson.True && v.Type != gjson.False {
			return bad(fmt.Sprintf("Invalid type for '%s': expected a boolean.", field), field, "invalid_type")
		}
	}
	req := openaiRequest{model: model.Str, stream: root.Get("stream").Type == gjson.True, store: root.Get("store").Type != gjson.False}
	if codex && !compact {
		// The backend checks store before stream; a missing store counts
		// as true there.
		if root.Get("store").Type != gjson.False {
			return bad("Store must be set to false", "store", "")
		}
		if !req.stream {
			return bad("Stream must be set to true", "stream", "")
		}
	}
	if compact {
		req.stream = false // compaction always answers one JSON object
	}
	return req, true
}

// serveGeneration answers a valid generation request under fault f; cx is
// set for the Codex backend.
func (o *OpenAI) serveGeneration(ctx context.Context, rep openaiReplier, req openaiRequest, f OpenAIFault, seq uint64, compact bool, cx *codexCtx) {
	if f.Status != 0 && f.Status != http.StatusOK {
		switch {
		case cx != nil && f.Status == http.StatusTooManyRequests:
			until := cx.snap.primary.resetAt
			if f.ResetsIn > 0 {
				until = cx.now.Add(f.ResetsIn)
			}
			rep.usageLimit(*cx, until, f.Body)
		case cx != nil && f.Status == http.StatusUnauthorized && f.Body == "":
			rep.detail(http.StatusUnauthorized, "Unauthorized")
		case f.Body != "":
			rep.raw(f.Status, "application/json", []byte(f.Body), false)
		default:
			msg, typ, code := openaiStatusError(f.Status)
			rep.apiError(f.Status, msg, typ, "", code)
		}
		return
	}
	if f.Status == http.StatusOK && f.Body != "" {
		ct := "application/json"
		if req.stream {
			ct = "text/event-stream; charset=utf-8"
		}
		rep.raw(http.StatusOK, ct, []byte(f.Body), false)
		return
	}
	ids := o.idsFor(seq)
	var v any
	switch {
	case compact:
		v = o.compaction(ids)
	case req.stream:
		o.stream(ctx, rep, req, f, ids)
		return
	default:
		resp := o.responseObject(req, ids, "completed")
		resp.Output = []oaiMessageItem{o.messageItem(ids, "completed", ReplyText(o.opts.Deltas))}
		u := oaiUsage(o.opts.Usage)
		resp.Usage = &u
		v = resp
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("fakeupstream: marshal response: %v", err)) // a bug in the fake's own types
	}
	rep.raw(http.StatusOK, "application/json", b, f.CutAfterEvents > 0)
}

// openaiStatusError is the OpenAI error (message, type, code) a fault's
// status gets when it brings no body.
func openaiStatusError(status int) (msg, typ, code string) {
	switch status {
	case http.StatusBadRequest:
		return "Invalid request.", "invalid_request_error", ""
	case http.StatusUnauthorized:
		return "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key"
	case http.StatusForbidden:
		return "You are not allowed to perform this request.", "invalid_request_error", ""
	case http.StatusNotFound:
		return "The requested resource was not found.", "invalid_request_error", ""
	case http.StatusTooManyRequests:
		return "Rate limit reached for requests. Please try again later.", "requests", "rate_limit_exceeded"
	case http.StatusInternalServerError:
		return "The server had an error while processing your request. Sorry about that!", "server_error", ""
	case http.StatusServiceUnavailable:
		return "The engine is currently overloaded, please try again later.", "server_error", ""
	}
	if status >= 500 {
		return "The server had an error while processing your request.", "server_error", ""
	}
	return "Invalid request.", "invalid_request_error", ""
}

// openaiReplier writes one answer, honouring the fault's pinned headers.
type openaiReplier struct {
	w http.ResponseWriter
	// pinned holds the fault's headers, which the fake's own must not
	// replace.
	pinned http.Header
}

// setHeader sets a header the fake generates unless the fault pinned it.
func (rep openaiReplier) setHeader(key, value string) {
	if len(rep.pinned.Values(key)) > 0 {
		return
	}
	rep.w.Header().Set(key, value)
}

// apiError answers in the OpenAI API's error shape; empty param and code
// are written as null, as the API does.
func (rep openaiReplier) apiError(status int, msg, typ, param, code string) {
	body := oaiErrorBody{Error: oaiErrorDetail{Message: msg, Type: typ}}
	if param != "" {
		body.Error.Param = &param
	}
	if code != "" {
		body.Error.Code = &code
	}
	rep.json(status, body)
}

// detail answers in the ChatGPT backend's FastAPI shape {"detail": …}.
func (rep openaiReplier) detail(status int, detail any) {
	rep.json(status, map[string]any{"detail": detail})
}

// usageLimit answers the ChatGPT plan's 429: the window is spent until
// until. override, when set, replaces the generated body.
func (rep openaiReplier) usageLimit(cx codexCtx, until time.Time, override string) {
	if override != "" {
		rep.raw(http.StatusTooManyRequests, "application/json", []byte(override), false)
		return
	}
	plan := cx.plan
	if plan == "" {
		plan = "plus"
	}
	rep.json(http.StatusTooManyRequests, oaiUsageLimitBody{Error: oaiUsageLimit{
		Type:            "usage_limit_reached",
		Message:         "The usage limit has been reached",
		PlanType:        plan,
		ResetsAt:        until.Unix(),
		ResetsInSeconds: secondsUntil(cx.now, until),
	}})
}

func (rep openaiReplier) json(status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("fakeupstream: marshal reply: %v", err)) // a bug in the fake's own types
	}
	rep.raw(status, "application/json", b, false)
}

// raw writes a complete body; cut writes only its first half and then drops
// the connection. A content type pinned by the fault wins.
func (rep openaiReplier) raw(status int, contentType string, body []byte, cut bool) {
	h := rep.w.Header()
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", contentType)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	rep.w.WriteHeader(status)
	if cut {
		_, _ = rep.w.Write(body[:len(body)/2])
		openaiDropConnection(rep.w)
		return
	}
	_, _ = rep.w.Write(body)
}

// openaiDropConnection ends the response without a proper end of body, so
// the client sees an unexpected EOF: the TCP connection is closed under it,
// or on HTTP/2 the stream is reset.
func openaiDropConnection(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	conn, _, err := rc.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// openaiModelList is what GET /v1/models lists. Other model ids are still
// served: the real list changes faster than the fake.
func openaiModelList() oaiModelList {
	ids := []string{"gpt-6.1-sol", "gpt-5.5", "gpt-5-codex", "gpt-5.4-mini"}
	out := oaiModelList{Object: "list", Data: make([]oaiModel, len(ids))}
	for i, id := range ids {
		out.Data[i] = oaiModel{ID: id, Object: "model", Created: 1767225600, OwnedBy: "openai"}
	}
	return out
}
