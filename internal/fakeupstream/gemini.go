package fakeupstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// geminiMaxRequestBody is the Gemini API's request size limit; larger
// bodies get 400 INVALID_ARGUMENT, as on the real API (not 413).
const geminiMaxRequestBody = 20 << 20

// DefaultGeminiProject is the Code Assist project of the fake's one user
// when GeminiOptions.Project is empty: the managed project the free tier
// hands out.
const DefaultGeminiProject = "fake-project-123"

// GeminiUsage is the token accounting the fake Gemini reports in
// usageMetadata. Cached is part of Prompt (cachedContentTokenCount counts
// prompt tokens served from the cache) and Thoughts is billed as output but
// is not part of Candidates, as on the real API; totalTokenCount is
// Prompt+Candidates+Thoughts.
type GeminiUsage struct {
	Prompt     int64
	Cached     int64
	Candidates int64
	Thoughts   int64
}

// DefaultGeminiUsage is what the fake reports when GeminiOptions.Usage is
// zero: {Prompt: 20, Cached: 4, Candidates: 6, Thoughts: 2}. The numbers are
// distinct so a test can tell which field a relay mixed up (relay input is
// 16, cache read 4, output 8).
func DefaultGeminiUsage() GeminiUsage {
	return GeminiUsage{Prompt: 20, Cached: 4, Candidates: 6, Thoughts: 2}
}

// Total is totalTokenCount as the real API computes it.
func (u GeminiUsage) Total() int64 { return u.Prompt + u.Candidates + u.Thoughts }

// GeminiOptions configures a fake Gemini. The zero value is a healthy fake
// whose native routes accept any non-empty API key, whose Code Assist routes
// accept any non-empty bearer token, and whose one user is onboarded.
type GeminiOptions struct {
	// APIKeys are the accepted keys of the native API, sent as
	// x-goog-api-key or ?key=. Empty accepts any non-empty key.
	APIKeys []string
	// OAuth, when set, makes the Code Assist routes accept only live
	// access tokens this fake Google OAuth server issued with the
	// cloud-platform scope, as cloudcode-pa does. Nil accepts any non-empty
	// bearer token (for bench runs that skip the OAuth dance).
	OAuth *GoogleOAuth
	// Chunks is the number of text chunks per stream (default 5); the
	// reply text is ReplyText(Chunks), split the same way.
	Chunks int
	// ChunkDelay is the pause between chunks (default none); it ends early
	// when the request context ends.
	ChunkDelay time.Duration
	// Usage is reported in every successful reply. Zero means
	// DefaultGeminiUsage.
	Usage GeminiUsage
	// Name labels this fake in replies (responseId and traceId prefix and
	// the x-fake-upstream header) so tests with several fakes can tell
	// which one answered.
	Name string
	// Project is the Code Assist project of the fake's user (default
	// DefaultGeminiProject): what loadCodeAssist reports once the user is
	// onboarded and what generate requests must name.
	Project string
	// NotOnboarded starts the user without a tier, so loadCodeAssist
	// offers allowedTiers and a client must call onboardUser first.
	NotOnboarded bool
	// OnboardAtOnce makes onboardUser answer a finished operation. By
	// default it answers {done:false} and the first poll of
	// GET /v1internal/operations/{name} finishes it, which is the path the
	// real service usually takes.
	OnboardAtOnce bool
}

// GeminiFault describes how one generate request (generateContent or
// streamGenerateContent, native or Code Assist) goes wrong. The zero value
// is a healthy answer. Faults apply in this order: FirstByteDelay and Hang
// (they model the network), then the fake's own checks (credential,
// body, project), then Status, then the stream faults.
type GeminiFault struct {
	// Status, when non-zero and not 200, answers with this status and a
	// Google error body {"error":{code, message, status}} whose status
	// fits the code (400 INVALID_ARGUMENT, 401 UNAUTHENTICATED, 403
	// PERMISSION_DENIED, 404 NOT_FOUND, 429 RESOURCE_EXHAUSTED, 500
	// INTERNAL, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED, …). The Code Assist
	// stream route wraps error bodies in a JSON array, as cloudcode-pa
	// does. Status 200 with a Body writes that Body verbatim as the
	// success reply (for golden or malformed streams).
	Status int
	// Header holds extra response headers, set on any reply under this
	// fault (for example Retry-After).
	Header http.Header
	// Body replaces the generated error body (or the success body with
	// Status 200), written as is.
	Body string
	// Reason, with a Status, adds a google.rpc.ErrorInfo detail with this
	// reason, for example "RATE_LIMIT_EXCEEDED" or "QUOTA_EXHAUSTED" (the
	// two 429s Gemini CLI tells apart) or "API_KEY_INVALID". Its domain is
	// cloudcode-pa.googleapis.com on Code Assist routes and
	// generativelanguage.googleapis.com on native ones.
	Reason string
	// RetryDelay, with a Status, adds a google.rpc.RetryInfo detail
	// whose retryDelay is this duration ("35s"), which clients and relays
	// read as the cooldown.
	RetryDelay time.Duration
	// FirstByteDelay is slept before anything is written; it ends early
	// when the request context ends.
	FirstByteDelay time.Duration
	// Hang never answers; the handler returns only when the request
	// context ends or the fake is closed.
	Hang bool
	// CutAfterEvents, when > 0, drops the connection after that many
	// chunks of a 200 stream have been written (SSE events, or elements
	// of the JSON-array stream without alt=sse). On a non-stream 200 it
	// cuts after half of the JSON body. A count past the end of the stream
	// has no effect.
	CutAfterEvents int
	// ErrorChunkAfter, when > 0, writes a chunk {"error":{code, message,
	// status}} after that many chunks of a 200 stream and ends the stream
	// normally, as the Gemini API does when it fails mid-answer (the genai
	// SDKs look for an error object in every chunk). 0 is off.
	ErrorChunkAfter int
	// ErrorChunkStatus is the code of that error chunk (default 503
	// UNAVAILABLE, "The model is overloaded").
	ErrorChunkStatus int
}

func (f GeminiFault) clone() GeminiFault {
	f.Header = f.Header.Clone()
	return f
}

// Gemini is a fake of the Gemini API (generativelanguage.googleapis.com)
// and of the Code Assist backend Gemini CLI uses with Google sign-in
// (cloudcode-pa.googleapis.com/v1internal), on one handler: their paths do
// not overlap. It enforces what the real services enforce where a relay can
// get it wrong — API key versus OAuth bearer, required contents, unknown
// top-level fields on the native API, the Code Assist envelope and its
// project — and injects the faults a relay must survive. All methods are
// safe for concurrent use.
type Gemini struct {
	opts GeminiOptions

	// closed is closed by Close so hanging and delayed handlers return
	// even when a client never cancels.
	closed    chan struct{}
	closeOnce sync.Once

	// ledger counts generate requests and hands them their faults.
	ledger[GeminiFault]

	mu     sync.Mutex
	server *httptest.Server
	seq    uint64
	user   codeAssistUser
}

// NewGemini returns the fake as a bare handler, for callers that serve it on
// their own listener (bench, cmd/fakegemini).
func NewGemini(opts GeminiOptions) *Gemini {
	if opts.Chunks <= 0 {
		opts.Chunks = 5
	}
	if opts.Usage == (GeminiUsage{}) {
		opts.Usage = DefaultGeminiUsage()
	}
	if opts.Project == "" {
		opts.Project = DefaultGeminiProject
	}
	opts.APIKeys = append([]string(nil), opts.APIKeys...)
	g := &Gemini{opts: opts, closed: make(chan struct{})}
	g.user = newCodeAssistUser(opts)
	return g
}

// StartGemini runs a new fake on an httptest server on 127.0.0.1 and closes
// it when the test ends.
func StartGemini(tb testing.TB, opts GeminiOptions) *Gemini {
	tb.Helper()
	g := NewGemini(opts)
	srv := httptest.NewServer(g)
	g.mu.Lock()
	g.server = srv
	g.mu.Unlock()
	tb.Cleanup(g.Close)
	return g
}

// URL is the root of a fake started by StartGemini: the base URL for the
// native API (…/v1beta/models/…) and the CODE_ASSIST_ENDPOINT for Code
// Assist (…/v1internal:…). It is empty for a bare handler.
func (g *Gemini) URL() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.server == nil {
		return ""
	}
	return g.server.URL
}

// Close releases every hanging or delayed request and, for a started fake,
// shuts its server down. It is idempotent.
func (g *Gemini) Close() {
	g.closeOnce.Do(func() { close(g.closed) })
	g.mu.Lock()
	srv := g.server
	g.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Reset forgets recorded requests, the generate count and queued faults.
// The default fault and the Code Assist user's state stay.
func (g *Gemini) Reset() {
	g.resetLedger()
}

// MessageCount is the number of generate requests (generateContent and
// streamGenerateContent, native and Code Assist) received, whatever their
// outcome. countTokens and the Code Assist setup calls are not counted.
func (g *Gemini) MessageCount() int { return g.counted() }

func (g *Gemini) nextSeq() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seq++
	return g.seq
}

// pause waits d, or less if the request ends or the fake closes; it reports
// whether the full wait elapsed.
func (g *Gemini) pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-g.closed:
		return false
	}
}

// geminiCall is what the path of one request names.
type geminiCall struct {
	codeAssist bool
	// method is the native action (generateContent, streamGenerateContent,
	// countTokens), the Code Assist method (loadCodeAssist, …), or one of
	// the pseudo methods "listModels", "getModel" and "getOperation".
	method string
	model  string
	// operation is the name of a polled operation ("operations/…").
	operation string
}

func (c geminiCall) generates() bool {
	return c.method == "generateContent" || c.method == "streamGenerateContent"
}

// routeGemini parses a path. Go's ServeMux cannot match
// "{model}:generateContent", so the action is cut at the last colon.
func routeGemini(r *http.Request) (geminiCall, bool) {
	p := r.URL.Path
	if m, ok := strings.CutPrefix(p, "/v1internal:"); ok && r.Method == http.MethodPost {
		return geminiCall{codeAssist: true, method: m}, true
	}
	if op, ok := strings.CutPrefix(p, "/v1internal/operations/"); ok && op != "" && r.Method == http.MethodGet {
		return geminiCall{codeAssist: true, method: "getOperation", operation: "operations/" + op}, true
	}
	for _, version := range []string{"/v1beta/", "/v1/"} {
		rest, ok := strings.CutPrefix(p, version)
		if !ok {
			continue
		}
		if rest == "models" && r.Method == http.MethodGet {
			return geminiCall{method: "listModels"}, true
		}
		name, ok := strings.CutPrefix(rest, "models/")
		if !ok || name == "" {
			return geminiCall{}, false
		}
		if i := strings.LastIndexByte(name, ':'); i >= 0 {
			if r.Method != http.MethodPost || i == 0 {
				return geminiCall{}, false
			}
			return geminiCall{method: name[i+1:], model: name[:i]}, true
		}
		if r.Method == http.MethodGet {
			return geminiCall{method: "getModel", model: name}, true
		}
	}
	return geminiCall{}, false
}

// ServeHTTP answers the native routes under /v1beta/ and /v1/
// (models/{model}:generateContent, :streamGenerateContent, :countTokens,
// GET models, GET models/{model}) and the Code Assist routes
// (POST /v1internal:{method}, GET /v1internal/operations/{name}); anything
// else gets 404 NOT_FOUND in Google's error shape.
func (g *Gemini) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	body, tooLarge, readErr := readGeminiBody(r.Body)
	g.record(r, body, arrived)
	if readErr != nil {
		return // the client is gone; nobody would read an answer
	}
	if g.opts.Name != "" {
		w.Header().Set("x-fake-upstream", g.opts.Name)
	}
	call, ok := routeGemini(r)
	rep := &geminiReply{w: w, domain: "generativelanguage.googleapis.com"}
	if call.codeAssist {
		rep.domain = "cloudcode-pa.googleapis.com"
		// cloudcode-pa answers errors of its streaming method as a JSON
		// array of one error object, the shape of its non-SSE streams.
		rep.arrayErrors = call.method == "streamGenerateContent"
	}
	if !ok {
		rep.error(http.StatusNotFound, "", googleErrorDetails{})
		return
	}

	var f GeminiFault
	if call.generates() {
		defer g.enter()()
		f = g.next()
	}
	ctx := r.Context()
	if f.Hang {
		select {
		case <-ctx.Done():
		case <-g.closed:
			// Drop the connection rather than let the server answer an
			// empty 200 for the handler.
			panic(http.ErrAbortHandler)
		}
		return
	}
	if f.FirstByteDelay > 0 && !g.pause(ctx, f.FirstByteDelay) {
		return
	}
	rep.pin(f.Header)

	if call.codeAssist {
		if !g.checkBearer(rep, r) {
			return
		}
	} else if !g.checkAPIKey(rep, r) {
		return
	}
	if tooLarge {
		rep.error(http.StatusBadRequest, fmt.Sprintf("Request payload size exceeds the limit: %d bytes.", geminiMaxRequestBody), googleErrorDetails{})
		return
	}
	if call.codeAssist {
		g.serveCodeAssist(ctx, rep, r, call, body, f)
		return
	}
	switch call.method {
	case "listModels":
		rep.json(http.StatusOK, geminiModelList())
	case "getModel":
		for _, m := range geminiModels() {
			if m.Name == "models/"+call.model {
				rep.json(http.StatusOK, m)
				return
			}
		}
		rep.error(http.StatusNotFound, "models/"+call.model+" is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.", googleErrorDetails{})
	case "countTokens":
		if _, ok := checkNativeCountBody(rep, body); !ok {
			return
		}
		n := g.opts.Usage.Prompt
		rep.json(http.StatusOK, map[string]any{
			"totalTokens":         n,
			"promptTokensDetails": []map[string]any{{"modality": "TEXT", "tokenCount": n}},
		})
	case "generateContent", "streamGenerateContent":
		req, ok := checkNativeGenerate(rep, body)
		if !ok {
			return
		}
		req.model = call.model
		req.stream = call.method == "streamGenerateContent"
		req.sse = r.URL.Query().Get("alt") == "sse"
		g.answer(ctx, rep, req, f)
	default:
		rep.error(http.StatusNotFound, "", googleErrorDetails{})
	}
}

// readGeminiBody reads the whole body up to the real API's size limit;
// tooLarge reports a body over it.
func readGeminiBody(rc io.ReadCloser) (body []byte, tooLarge bool, err error) {
	if rc == nil {
		return nil, false, nil
	}
	defer rc.Close()
	body, err = io.ReadAll(io.LimitReader(rc, geminiMaxRequestBody+1))
	if len(body) > geminiMaxRequestBody {
		return body[:geminiMaxRequestBody], true, nil
	}
	return body, false, err
}

// geminiModelInfo is one entry of GET /v1beta/models.
type geminiModelInfo struct {
	Name                       string   `json:"name"`
	Version                    string   `json:"version"`
	DisplayName                string   `json:"displayName"`
	Description                string   `json:"description"`
	InputTokenLimit            int64    `json:"inputTokenLimit"`
	OutputTokenLimit           int64    `json:"outputTokenLimit"`
	SupportedGenerationMethods []string `json:"supportedGenerationMethods"`
	Thinking                   bool     `json:"thinking"`
}

// geminiModels is what the model list shows: the priced models and the ones
// Gemini CLI's router picks. Generate requests for other ids are still
// served, because the real list changes faster than the fake.
func geminiModels() []geminiModelInfo {
	methods := []string{"generateContent", "countTokens", "createCachedContent", "batchGenerateContent"}
	m := func(id, version, display string) geminiModelInfo {
		return geminiModelInfo{Name: "models/" + id, Version: version, DisplayName: display,
			Description: display + " (fake)", InputTokenLimit: 1048576, OutputTokenLimit: 65536,
			SupportedGenerationMethods: methods, Thinking: true}
	}
	return []geminiModelInfo{
		m("gemini-2.5-pro", "2.5", "Gemini 2.5 Pro"),
		m("gemini-2.5-flash", "001", "Gemini 2.5 Flash"),
		m("gemini-3-pro-preview", "3-pro-preview", "Gemini 3 Pro Preview"),
		m("gemini-3-flash-preview", "3-flash-preview", "Gemini 3 Flash Preview"),
		m("gemini-3.1-pro-preview", "3.1-pro-preview", "Gemini 3.1 Pro Preview"),
		m("gemini-3.8-flash", "3.8", "Gemini 3.8 Flash"),
		m("gemini-3.5-flash-lite", "3.5", "Gemini 3.5 Flash-Lite"),
	}
}

func geminiModelList() map[string]any {
	return map[string]any{"models": geminiModels()}
}
