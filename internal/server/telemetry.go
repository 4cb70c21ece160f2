package server

import (
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/metrics"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/reqid"
	"github.com/crs-relay/crs/internal/secret"
)

// OverheadHeader carries, on every response, the milliseconds crs spent
// on the request itself before the response header went out (see
// metrics.Exchange for what counts). A client or a load test can tell a
// slow relay from a slow upstream without access to /metrics.
const OverheadHeader = "X-Crs-Overhead-Ms"

// maxLoggedUA bounds the user agent in a log line; a longer one is cut.
const maxLoggedUA = 256

// withTelemetry gives each request a metrics.Exchange, counts it when it
// is done, and logs one line about it: never a body, never a key (the
// key's name only). Client rules match on user agents, so the user agent
// is logged to debug them.
func withTelemetry(log *slog.Logger, m *metrics.Metrics, clientIP func(*http.Request) string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x := metrics.NewExchange(time.Now())
		sw := &statusWriter{ResponseWriter: w, ex: x}
		r = r.WithContext(metrics.WithExchange(r.Context(), x))
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			// Nothing was written: send the empty 200 net/http would,
			// now, so that it carries the overhead header too.
			sw.WriteHeader(http.StatusOK)
		}
		s := x.Summary(time.Now())
		// The mux set Pattern on r while routing it.
		m.RequestDone(r.Pattern, sw.status, s)
		if log.Enabled(r.Context(), slog.LevelInfo) {
			logRequest(log, r, sw, s, clientIP(r))
		}
	})
}

// logRequest writes the access log line. Fields about the relay (key,
// account, model, tokens) appear only on requests that have them, so lines
// for the console and /health stay short.
func logRequest(log *slog.Logger, r *http.Request, sw *statusWriter, s metrics.Summary, client string) {
	attrs := make([]slog.Attr, 0, 24)
	attrs = append(attrs,
		slog.String("request_id", reqid.From(r.Context())),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", sw.status),
		slog.Int64("bytes", sw.bytes),
		slog.Int64("ms", s.Total.Milliseconds()),
		slog.Float64("overhead_ms", millis(s.Overhead)),
		slog.String("client", client),
	)
	if s.KeyName != "" {
		attrs = append(attrs, slog.String("key", s.KeyName))
	}
	if s.Platform != "" {
		attrs = append(attrs, slog.String("platform", string(s.Platform)), slog.String("model", s.Model))
	}
	if s.Attempts > 0 {
		attrs = append(attrs,
			slog.String("account", s.AccountName),
			slog.String("account_id", string(s.AccountID)),
			slog.Int("attempts", s.Attempts),
			slog.Int64("upstream_ms", s.Upstream.Milliseconds()),
		)
	}
	if s.FirstByte > 0 {
		attrs = append(attrs, slog.Int64("ttfb_ms", s.FirstByte.Milliseconds()))
	}
	if s.Usage {
		attrs = append(attrs,
			slog.Int64("input_tokens", s.Tokens.Input),
			slog.Int64("output_tokens", s.Tokens.Output),
			slog.Int64("cache_write_5m_tokens", s.Tokens.CacheWrite5m),
			slog.Int64("cache_write_1h_tokens", s.Tokens.CacheWrite1h),
			slog.Int64("cache_read_tokens", s.Tokens.CacheRead),
			slog.String("cost_usd", pricing.FromPico(s.CostPico).String()),
		)
	}
	ua := r.UserAgent()
	if len(ua) > maxLoggedUA {
		ua = ua[:maxLoggedUA]
	}
	attrs = append(attrs, slog.String("ua", ua))
	log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
}

// millis is d in milliseconds, to the microsecond.
func millis(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

// formatMillis is d in milliseconds with three decimals: crs's own time is
// mostly well under one millisecond, which a whole number would hide.
func formatMillis(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64)
}

// metricsHandler guards h with a bearer token; an empty token leaves it
// open (for a scraper on a private network or behind a reverse proxy
// that guards it).
func metricsHandler(h http.Handler, token string) http.Handler {
	if token == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || !secret.Equal(strings.TrimSpace(got), token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="crs metrics"`)
			writeJSONStatus(w, http.StatusUnauthorized, map[string]any{
				"error": map[string]string{"code": "unauthorized", "message": "GET /metrics needs Authorization: Bearer METRICS_TOKEN"},
			})
			return
		}
		h.ServeHTTP(w, r)
	})
}
