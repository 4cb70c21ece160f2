package fakeupstream

import (
	"bytes"
	"compress/gzip"
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

// fakeModels is what GET /v1/models lists. Requests for other model ids are
// still served: the real API's model list changes faster than the fake.
func fakeModels() []modelInfo {
	return []modelInfo{
		{Type: "model", ID: "claude-opus-5-5", DisplayName: "Claude Opus 5.5", CreatedAt: "2026-06-01T00:00:00Z"},
		{Type: "model", ID: "claude-opus-4-8", DisplayName: "Claude Opus 4.8", CreatedAt: "2026-02-01T00:00:00Z"},
		{Type: "model", ID: "claude-sonnet-4-5-20250929", DisplayName: "Claude Sonnet 4.5", CreatedAt: "2025-09-29T00:00:00Z"},
		{Type: "model", ID: "claude-haiku-4-5-20251001", DisplayName: "Claude Haiku 4.5", CreatedAt: "2025-10-01T00:00:00Z"},
	}
}

// ServeHTTP answers POST /v1/messages (stream and non-stream),
// POST /v1/messages/count_tokens, GET /v1/models and GET /v1/models/{id};
// anything else gets 404 not_found_error. The query string (?beta=true) is
// ignored.
func (a *Anthropic) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	body, tooLarge, readErr := readBody(r.Body)
	a.record(r, body, arrived)
	if readErr != nil {
		return // the client is gone; nobody would read an answer
	}

	seq := a.nextSeq()
	reqID := fmt.Sprintf("req_fake%020d", seq)
	w.Header().Set("request-id", reqID)
	if a.opts.Name != "" {
		w.Header().Set("x-fake-upstream", a.opts.Name)
	}

	isMessages := r.URL.Path == "/v1/messages" && r.Method == http.MethodPost
	var f Fault
	if isMessages {
		defer a.enter()()
		f = a.next()
	}
	ctx := r.Context()
	if f.Hang {
		select {
		case <-ctx.Done():
		case <-a.closed:
		}
		return
	}
	if f.FirstByteDelay > 0 && !a.pause(ctx, f.FirstByteDelay) {
		return
	}
	pinned := http.Header{}
	for k, vs := range f.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
			pinned.Add(k, v)
		}
	}
	rep := replier{w: w, gzip: f.Gzip, requestID: reqID, pinned: pinned}

	if tooLarge {
		rep.error(http.StatusRequestEntityTooLarge, "Request exceeds the maximum allowed number of bytes.", "")
		return
	}

	switch {
	case isMessages:
		sub, ok := a.checkCommon(rep, r)
		if !ok {
			return
		}
		req, ok := checkMessageBody(rep, body, true)
		if !ok {
			return
		}
		if sub != nil && sub.refuse(rep, req.model) {
			return
		}
		a.serveMessage(ctx, rep, req, f, seq)
	case r.URL.Path == "/v1/messages/count_tokens" && r.Method == http.MethodPost:
		if _, ok := a.checkCommon(rep, r); !ok {
			return
		}
		if _, ok := checkMessageBody(rep, body, false); !ok {
			return
		}
		rep.json(http.StatusOK, map[string]int64{"input_tokens": max(1, int64(len(body)/4))})
	case r.URL.Path == "/v1/models" && r.Method == http.MethodGet:
		if _, ok := a.checkCommon(rep, r); !ok {
			return
		}
		rep.json(http.StatusOK, modelList())
	case strings.HasPrefix(r.URL.Path, "/v1/models/") && r.Method == http.MethodGet:
		if _, ok := a.checkCommon(rep, r); !ok {
			return
		}
		id := strings.TrimPrefix(r.URL.Path, "/v1/models/")
		for _, m := range fakeModels() {
			if m.ID == id {
				rep.json(http.StatusOK, m)
				return
			}
		}
		rep.error(http.StatusNotFound, "model: "+id, "")
	default:
		rep.error(http.StatusNotFound, "Not Found", "")
	}
}

// readBody reads the whole request body up to the real API's size limit.
// tooLarge reports a body over the limit; the returned bytes are then its
// first maxRequestBody bytes.
func readBody(rc io.ReadCloser) (body []byte, tooLarge bool, err error) {
	if rc == nil {
		return nil, false, nil
	}
	defer rc.Close()
	body, err = io.ReadAll(io.LimitReader(rc, maxRequestBody+1))
	if len(body) > maxRequestBody {
		return body[:maxRequestBody], true, nil
	}
	return body, false, err
}

// checkCommon enforces what every API route requires: a request body without
// content coding, an accepted credential and the anthropic-version header.
// It answers the request and returns false when one is missing. For a
// request authenticated with an OAuth token it sets the unified quota
// headers, before anything can answer, and returns the quota the request
// saw; sub is nil for API keys, which have no subscription.
func (a *Anthropic) checkCommon(rep replier, r *http.Request) (sub *quotaView, ok bool) {
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		rep.error(http.StatusBadRequest, "unsupported request content-encoding: "+ce, "")
		return nil, false
	}
	// x-api-key wins over Authorization, so a relay that leaks the client's
	// x-api-key next to its own bearer token is rejected, not masked.
	cred := r.Header.Get("X-Api-Key")
	if cred == "" {
		if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			cred = strings.TrimSpace(v)
		}
	}
	if cred == "" {
		rep.error(http.StatusUnauthorized, "x-api-key header is required", "")
		return nil, false
	}
	bearer := r.Header.Get("X-Api-Key") == ""
	switch {
	case a.opts.OAuth != nil && bearer && strings.HasPrefix(cred, oauthAccessPrefix):
		if !a.opts.OAuth.AccessTokenValid(cred) {
			rep.error(http.StatusUnauthorized, "OAuth token has expired. Please obtain a new token or refresh your existing token.", "")
			return nil, false
		}
		if !hasBeta(r.Header, "oauth-2025-04-20") {
			rep.error(http.StatusUnauthorized, "OAuth authentication is currently not supported.", "")
			return nil, false
		}
		sub = a.quotaAt(time.Now())
		sub.report(rep)
	case !a.accepts(cred):
		rep.error(http.StatusUnauthorized, "invalid x-api-key", "")
		return nil, false
	}
	if r.Header.Get("Anthropic-Version") == "" {
		rep.error(http.StatusBadRequest, "anthropic-version: header is required", "")
		return nil, false
	}
	return sub, true
}

func (a *Anthropic) accepts(cred string) bool {
	if len(a.opts.APIKeys) == 0 {
		return true
	}
	for _, k := range a.opts.APIKeys {
		if k == cred {
			return true
		}
	}
	return false
}

// messageRequest is the little the fake needs from a Messages body.
type messageRequest struct {
	model  string
	stream bool
}

// checkMessageBody enforces the required fields of a Messages (or, with
// needMaxTokens false, count_tokens) body. Unknown fields, unknown models,
// role "system" items and new parameter shapes are deliberately accepted:
// the relay must pass them through and the real API accepts them.
func checkMessageBody(rep replier, body []byte, needMaxTokens bool) (messageRequest, bool) {
	if !gjson.ValidBytes(body) || !gjson.ParseBytes(body).IsObject() {
		rep.error(http.StatusBadRequest, "There was an error parsing the body of your request: not a JSON object", "")
		return messageRequest{}, false
	}
	root := gjson.ParseBytes(body)
	model := root.Get("model")
	if !model.Exists() {
		rep.error(http.StatusBadRequest, "model: Field required", "")
		return messageRequest{}, false
	}
	if model.Type != gjson.String || model.Str == "" {
		rep.error(http.StatusBadRequest, "model: Input should be a valid string", "")
		return messageRequest{}, false
	}
	if needMaxTokens {
		mt := root.Get("max_tokens")
		if !mt.Exists() {
			rep.error(http.StatusBadRequest, "max_tokens: Field required", "")
			return messageRequest{}, false
		}
		// 0 is valid: it warms the prompt cache without generating.
		if mt.Type != gjson.Number || mt.Num < 0 || mt.Num != float64(int64(mt.Num)) {
			rep.error(http.StatusBadRequest, "max_tokens: Input should be a non-negative integer", "")
			return messageRequest{}, false
		}
	}
	msgs := root.Get("messages")
	if !msgs.Exists() {
		rep.error(http.StatusBadRequest, "messages: Field required", "")
		return messageRequest{}, false
	}
	if !msgs.IsArray() {
		rep.error(http.StatusBadRequest, "messages: Input should be a valid list", "")
		return messageRequest{}, false
	}
	stream := root.Get("stream")
	if stream.Exists() && stream.Type != gjson.True && stream.Type != gjson.False {
		rep.error(http.StatusBadRequest, "stream: Input should be a valid boolean", "")
		return messageRequest{}, false
	}
	return messageRequest{model: model.Str, stream: stream.Type == gjson.True}, true
}

// serveMessage answers a valid /v1/messages request under fault f.
func (a *Anthropic) serveMessage(ctx context.Context, rep replier, req messageRequest, f Fault, seq uint64) {
	if f.Status != 0 && f.Status != http.StatusOK {
		rep.error(f.Status, "", f.Body)
		return
	}
	h := rep.w.Header()
	if f.Status == http.StatusOK && f.Body != "" {
		ct := "application/json"
		if req.stream {
			ct = "text/event-stream; charset=utf-8"
		}
		if h.Get("Content-Type") == "" {
			h.Set("Content-Type", ct)
		}
		rep.raw(http.StatusOK, []byte(f.Body), 0)
		return
	}
	id := "msg_01fake"
	if a.opts.Name != "" {
		id = "msg_" + a.opts.Name + "_"
	}
	id += fmt.Sprintf("%016d", seq)
	if req.stream {
		a.stream(ctx, rep, req, f, id)
		return
	}
	text := ReplyText(a.opts.Deltas)
	msg := messageJSON{
		ID:           id,
		Type:         "message",
		Role:         "assistant",
		Model:        req.model,
		Content:      []textBlock{{Type: "text", Text: text}},
		StopReason:   ptr("end_turn"),
		StopSequence: nil,
		Usage:        startUsage(a.opts.Usage, a.opts.Usage.Output),
	}
	b, _ := json.Marshal(msg)
	h.Set("Content-Type", "application/json")
	cut := 0
	if f.CutAfterEvents > 0 {
		cut = -1 // half of whatever goes on the wire
	}
	rep.raw(http.StatusOK, b, cut)
}

// replier writes one answer, honouring the Gzip and Header faults.
type replier struct {
	w         http.ResponseWriter
	gzip      bool
	requestID string
	// pinned holds the fault's headers, which the fake's own must not
	// replace.
	pinned http.Header
}

// setHeader sets a header the fake generates unless the fault pinned it.
func (rep replier) setHeader(key, value string) {
	if len(rep.pinned.Values(key)) > 0 {
		return
	}
	rep.w.Header().Set(key, value)
}

// errorTypeFor maps a status to the error.type the real API uses for it.
func errorTypeFor(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_request_error"
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusPaymentRequired:
		return "billing_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case http.StatusGatewayTimeout:
		return "timeout_error"
	case 529:
		return "overloaded_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

// defaultErrorMessage is the message used when a fault gives no body.
func defaultErrorMessage(typ string) string {
	switch typ {
	case "rate_limit_error":
		return "This request would exceed your account's rate limit. Please try again later."
	case "overloaded_error":
		return "Overloaded"
	case "api_error":
		return "Internal server error"
	case "authentication_error":
		return "invalid x-api-key"
	case "permission_error":
		return "Your API key does not have permission to use the specified resource."
	case "not_found_error":
		return "Not Found"
	case "request_too_large":
		return "Request exceeds the maximum allowed number of bytes."
	case "billing_error":
		return "Your credit balance is too low to access the Anthropic API."
	case "timeout_error":
		return "Request timed out"
	}
	return "Invalid request"
}

// errorBody is the real API's error shape, used for HTTP errors and for the
// data of an `event: error` in a stream.
func errorBody(typ, msg, requestID string) []byte {
	b, _ := json.Marshal(errorJSON{
		Type:      "error",
		Error:     errorDetail{Type: typ, Message: msg},
		RequestID: requestID,
	})
	return b
}

// error answers with status and an Anthropic error body; override, when
// set, is written instead of the generated body.
func (rep replier) error(status int, msg, override string) {
	body := []byte(override)
	if override == "" {
		typ := errorTypeFor(status)
		if msg == "" {
			msg = defaultErrorMessage(typ)
		}
		body = errorBody(typ, msg, rep.requestID)
	}
	if rep.w.Header().Get("Content-Type") == "" {
		rep.w.Header().Set("Content-Type", "application/json")
	}
	rep.raw(status, body, 0)
}

func (rep replier) json(status int, v any) {
	b, _ := json.Marshal(v)
	rep.w.Header().Set("Content-Type", "application/json")
	rep.raw(status, b, 0)
}

// raw writes a complete body. cut < 0 writes only the first half of the
// wire bytes and then drops the connection.
func (rep replier) raw(status int, body []byte, cut int) {
	h := rep.w.Header()
	wire := body
	if rep.gzip {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(body)
		_ = zw.Close()
		wire = buf.Bytes()
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Length", strconv.Itoa(len(wire)))
	rep.w.WriteHeader(status)
	if cut < 0 {
		_, _ = rep.w.Write(wire[:len(wire)/2])
		dropConnection(rep.w)
		return
	}
	_, _ = rep.w.Write(wire)
}

// dropConnection ends the response without a proper end of body, so the
// client sees an unexpected EOF. Hijacking closes the TCP connection
// directly; where that is impossible (HTTP/2) the handler aborts, which
// resets the stream.
func dropConnection(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	conn, _, err := rc.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// pause waits d, or less if the request ends or the fake closes; it reports
// whether the full wait elapsed.
func (a *Anthropic) pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-a.closed:
		return false
	}
}

func modelList() modelListJSON {
	out := modelListJSON{Data: fakeModels()}
	out.FirstID = out.Data[0].ID
	out.LastID = out.Data[len(out.Data)-1].ID
	return out
}

func ptr[T any](v T) *T { return &v }

// oauthAccessPrefix starts the access tokens the fake OAuth server issues
// (as the real ones start with sk-ant-oat01-).
const oauthAccessPrefix = "sk-ant-oat01-"
