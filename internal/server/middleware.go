package server

import (
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/metrics"
	"github.com/crs-relay/crs/internal/reqid"
)

// withRequestID gives every request an id, in its context and in the
// x-request-id response header.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := reqid.New()
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(reqid.With(r.Context(), id)))
	})
}

// withCleanPath folds repeated slashes ("/api//v1/messages", from a client
// base URL with a trailing slash) before routing: ServeMux would answer
// them with a redirect, which clients do not follow for POST.
func withCleanPath(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "//") {
			r2 := r.Clone(r.Context())
			r2.URL.Path = foldSlashes(r.URL.Path)
			r2.URL.RawPath = ""
			r = r2
		}
		next.ServeHTTP(w, r)
	})
}

func foldSlashes(p string) string {
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// withRecover turns a handler panic into a 500 (when nothing was written
// yet) and a log line, instead of a dropped connection with no trace.
// http.ErrAbortHandler keeps its meaning: abort quietly. Inside
// withTelemetry it writes through the same statusWriter, so the 500 gets
// its overhead header and its access log line.
func withRecover(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw, ok := w.(*statusWriter)
		if !ok {
			sw = &statusWriter{ResponseWriter: w}
		}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("handler panic", "request_id", reqid.From(r.Context()), "path", r.URL.Path, "panic", v)
				if sw.status == 0 {
					http.Error(sw, `{"error":{"code":"internal","message":"internal error"}}`, http.StatusInternalServerError)
				}
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

// statusWriter remembers the status and size, and stamps the overhead
// header on the response as its header goes out; Unwrap lets
// http.ResponseController reach Flush on the real writer.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	// ex, when set, is the request's Exchange, whose overhead so far goes
	// into OverheadHeader.
	ex *metrics.Exchange
}

func (w *statusWriter) WriteHeader(code int) {
	// 1xx answers are interim: the final header is still to come.
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
		if w.ex != nil {
			w.Header().Set(OverheadHeader, formatMillis(w.ex.Overhead(time.Now())))
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ClientIPFunc returns how to find a request's client address: the peer,
// unless the peer is a trusted proxy, in which case the right-most address
// of X-Forwarded-For that is not itself a trusted proxy.
func ClientIPFunc(trusted []netip.Prefix) func(*http.Request) string {
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a.Unmap()) {
				return true
			}
		}
		return false
	}
	return func(r *http.Request) string {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		peer, err := netip.ParseAddr(host)
		if err != nil || len(trusted) == 0 || !isTrusted(peer) {
			return host
		}
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break
			}
			if !isTrusted(a) {
				return a.Unmap().String()
			}
		}
		return host
	}
}

func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}
