// Package server assembles the HTTP surface: client routes under /api and
// /claude, the admin API under /admin, /health, /metrics, and the
// middleware every request passes (request id, path folding, telemetry:
// access log, metrics and the overhead header, recover).
package server

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/keystats"
	"github.com/crs-relay/crs/internal/metrics"
	"github.com/crs-relay/crs/internal/relay"
	"github.com/crs-relay/crs/internal/store"
)

// Options are what New assembles.
type Options struct {
	Relay    *relay.Relay
	Admin    []admin.Route
	Store    store.Store
	Version  string
	Logger   *slog.Logger
	ClientIP func(*http.Request) string
	// Stats serves key holders their own usage (POST keystats.Path); nil
	// leaves the route out.
	Stats http.Handler
	// Metrics counts every request and serves GET /metrics; nil leaves
	// the route out and counts nothing (the access log and the overhead
	// header work either way).
	Metrics *metrics.Metrics
	// MetricsToken, when set, is the bearer token GET /metrics requires
	// (METRICS_TOKEN).
	MetricsToken string
	// Console serves the web console under /web, and GET / (a redirect to
	// the key holders' page); nil leaves both out.
	Console http.Handler
}

// prefixes the Anthropic Messages surface is mounted under. Clients set
// ANTHROPIC_BASE_URL to http://host:port/api (or /claude).
var prefixes = []string{"/api", "/claude"}

// New returns the root handler.
func New(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ClientIP == nil {
		o.ClientIP = ClientIPFunc(nil)
	}
	mux := http.NewServeMux()
	rl := o.Relay
	for _, p := range prefixes {
		mux.HandleFunc("POST "+p+"/v1/messages", rl.Messages)
		mux.HandleFunc("POST "+p+"/v1/messages/count_tokens", rl.CountTokens)
		mux.HandleFunc("GET "+p+"/v1/models", rl.Models)
		mux.HandleFunc("GET "+p+"/v1/me", rl.Me)
		mux.HandleFunc("GET "+p+"/v1/key-info", rl.KeyInfo)
		mux.HandleFunc("GET "+p+"/v1/usage", rl.OrgUsage)
		mux.HandleFunc("GET "+p+"/v1/organizations/{org}/usage", rl.OrgUsage)
		mux.HandleFunc("POST "+p+"/api/event_logging/batch", relay.EventLogging)
		// Some clients warm the connection up with HEAD on the base URL.
		mux.HandleFunc("HEAD "+p, ok)
		mux.HandleFunc("HEAD "+p+"/{$}", ok)
		mux.HandleFunc(p+"/", anthropicNotFound)
	}
	// Codex CLI: base_url = $RELAY/openai (requests go to {base}/responses).
	for _, p := range []string{"/openai", "/openai/v1"} {
		mux.HandleFunc("POST "+p+"/responses", rl.Responses)
		mux.HandleFunc("POST "+p+"/responses/compact", rl.Responses)
		mux.HandleFunc("GET "+p+"/responses", rl.ResponsesWebSocket)
		mux.HandleFunc("GET "+p+"/models", rl.OpenAIModels)
	}
	mux.HandleFunc("/openai/", openAINotFound)
	// Gemini CLI: GOOGLE_GEMINI_BASE_URL or CODE_ASSIST_ENDPOINT = $RELAY/gemini.
	mux.HandleFunc("POST /gemini/", rl.Gemini)
	mux.HandleFunc("GET /gemini/v1beta/models", rl.GeminiModels)
	mux.HandleFunc("GET /gemini/v1/models", rl.GeminiModels)
	mux.HandleFunc("GET /gemini/v1internal/operations/{name}", rl.CodeAssistOperation)
	mux.HandleFunc("/gemini/", geminiNotFound)

	mux.HandleFunc("HEAD /{$}", ok)
	mux.HandleFunc("GET /health", health(o.Store, o.Version))
	if o.Metrics != nil {
		mux.Handle("GET /metrics", metricsHandler(o.Metrics.Handler(), o.MetricsToken))
	}
	if o.Stats != nil {
		mux.Handle("POST "+keystats.Path, o.Stats)
	}
	for _, r := range o.Admin {
		// Pattern carries the method already ("POST /admin/login").
		mux.Handle(r.Pattern, r.Handler)
	}
	if o.Console != nil {
		mux.Handle("/web", o.Console)
		mux.Handle("/web/", o.Console)
		mux.Handle("GET /{$}", o.Console)
	}
	mux.HandleFunc("/", notFound)

	var h http.Handler = mux
	h = withRecover(o.Logger, h)
	h = withTelemetry(o.Logger, o.Metrics, o.ClientIP, h)
	h = withCleanPath(h)
	h = withRequestID(h)
	return h
}

func ok(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }

func anthropicNotFound(w http.ResponseWriter, r *http.Request) {
	relay.WriteAnthropicError(w, http.StatusNotFound, "not_found_error", "crs: no route for "+r.Method+" "+r.URL.Path, 0)
}

func openAINotFound(w http.ResponseWriter, r *http.Request) {
	relay.WriteOpenAIError(w, http.StatusNotFound, "not_found_error", "crs: no route for "+r.Method+" "+r.URL.Path)
}

func geminiNotFound(w http.ResponseWriter, r *http.Request) {
	relay.WriteGeminiError(w, http.StatusNotFound, "crs: no route for "+r.Method+" "+r.URL.Path)
}

func notFound(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	w.Write([]byte(`{"error":{"code":"not_found","message":"no route for this path"}}`))
}

// health answers GET /health: 200 while the store answers, 503 when not.
func health(st store.Store, version string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		start := time.Now()
		err := st.Ping(ctx)
		lat := float64(time.Since(start).Microseconds()) / 1000
		status, code := "ok", http.StatusOK
		if err != nil {
			status, code = "degraded", http.StatusServiceUnavailable
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSONStatus(w, code, map[string]any{
			"status":  status,
			"version": version,
			"store":   map[string]any{"backend": st.Backend(), "ok": err == nil, "latency_ms": lat},
		})
	}
}
