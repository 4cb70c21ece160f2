// Package openai speaks the OpenAI Responses API, both as api.openai.com
// (and any Responses-compatible provider) serves it to API keys and as the
// ChatGPT Codex backend serves it to ChatGPT subscriptions: it shapes the
// upstream request for an account, classifies answers into provider
// outcomes, and extracts usage, session identity and the Codex quota from
// bodies, headers and SSE streams.
package openai

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// DefaultCodexBase is the ChatGPT Codex backend, the API root of Codex
// (ChatGPT OAuth) accounts. Paths below it are the Responses paths without
// a version: /responses and /responses/compact.
const DefaultCodexBase = "https://chatgpt.com/backend-api/codex"

// DefaultOriginator is what Codex CLI's interactive mode sends in the
// originator header. The Codex backend knows its first-party clients by
// it, so a request from another client (an SDK, curl) goes out as Codex.
const DefaultOriginator = "codex_cli_rs"

// DefaultCodexUserAgent is sent to the Codex backend only when the client
// sent no user agent at all; otherwise Go's own "Go-http-client/1.1" would
// go out, which no Codex client sends.
const DefaultCodexUserAgent = "codex_cli_rs/0.169.0"

// clientHeaders are the headers every account type receives from the
// client as sent: content negotiation, the Responses beta switch and what
// Codex CLI 0.169 sends to identify its session, thread and turn
// (clients.md). Everything else stays at the relay: the relay key
// (authorization, x-api-key), cookies, X-Forwarded-*, CDN headers,
// WebSocket upgrade headers, and OpenAI-Organization / OpenAI-Project,
// which name the client's own OpenAI organization and make OpenAI refuse
// the account's key ("mismatched organization").
var clientHeaders = []string{
	"accept",
	"accept-language",
	"content-type",
	"user-agent",
	"openai-beta",
	"originator",
	"version",
	"session-id",
	"session_id",
	"thread-id",
	"conversation_id",
	"x-client-request-id",
	"x-openai-internal-codex-responses-lite",
}

// clientHeaderPrefixes extend clientHeaders: Codex CLI keeps adding
// x-codex-* headers (window id, beta features, turn metadata, turn state
// for the backend's own sticky routing), and they mean nothing to anyone
// else.
var clientHeaderPrefixes = []string{"x-codex-"}

// sdkHeaders are the official SDKs' fingerprint (x-stainless-*). API-key
// accounts receive it as sent; the Codex backend does not, since Codex CLI
// never sends it and every request on a subscription should look like
// Codex.
var sdkHeaders = []string{
	"x-stainless-arch",
	"x-stainless-helper-method",
	"x-stainless-lang",
	"x-stainless-os",
	"x-stainless-package-version",
	"x-stainless-retry-count",
	"x-stainless-runtime",
	"x-stainless-runtime-version",
	"x-stainless-timeout",
}

// APIKeyRequest builds the upstream request for an OpenAI-Responses API-key
// account. base is the account's API root, path the vendor path the client
// asked for after the relay's route prefix ("/responses",
// "/v1/responses", "/responses/compact"), joined by UpstreamURL; rawQuery
// is the client's query, kept. The body goes as sent.
//
// Upstream sees Authorization: Bearer apiKey, accept-encoding identity, a
// content type (application/json unless the client sent one), and the
// client's allow-listed headers: content negotiation, the user agent, the
// SDK fingerprint, openai-beta and Codex CLI's session headers.
func APIKeyRequest(ctx context.Context, in http.Header, base, path, rawQuery, apiKey string, body []byte) (*http.Request, error) {
	u, err := UpstreamURL(base, path, rawQuery)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	copyAllowed(req.Header, in, true)
	finishHeaders(req.Header, apiKey)
	req.ContentLength = int64(len(body))
	return req, nil
}

// CodexRequest builds the upstream request for a Codex (ChatGPT OAuth)
// account. base is the Codex backend root (DefaultCodexBase when empty);
// path is the vendor path ("/responses", "/responses/compact"; a leading
// "/v1" is dropped, since the backend has no version segment); rawQuery is
// kept. accountID is the ChatGPT account the access token acts for, from
// the id token (ParseIDToken).
//
// Upstream sees Authorization: Bearer accessToken, chatgpt-account-id
// (left out when accountID is empty), originator (DefaultOriginator unless
// the client sent one), accept-encoding identity, a content type, and
// Codex CLI's own headers as the client sent them: accept, accept-language,
// user agent (DefaultCodexUserAgent when absent), openai-beta, version,
// session-id, session_id, thread-id, conversation_id, x-client-request-id,
// x-openai-internal-codex-responses-lite and every x-codex-* header. The
// SDK fingerprint (x-stainless-*) is dropped, and a chatgpt-account-id the
// client sent is replaced.
//
// The body is sent with "store": false, which the Codex backend requires:
// it keeps no responses. Only that field changes; a body that already says
// "store": false (Codex CLI's) goes as sent, byte for byte.
func CodexRequest(ctx context.Context, in http.Header, base, path, rawQuery, accessToken, accountID string, body []byte) (*http.Request, error) {
	if base == "" {
		base = DefaultCodexBase
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("openai: codex base URL %q: %w", base, err)
	}
	if u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("openai: codex base URL %q is not absolute", base)
	}
	u.Path = strings.TrimRight(u.Path, "/") + stripVersion(path)
	u.RawPath = ""
	u.RawQuery = joinQuery(u.RawQuery, rawQuery)
	u.Fragment = ""
	body, err = ForceStoreFalse(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	h := req.Header
	copyAllowed(h, in, false)
	if h.Get("Originator") == "" {
		h.Set("Originator", DefaultOriginator)
	}
	if h.Get("User-Agent") == "" {
		h.Set("User-Agent", DefaultCodexUserAgent)
	}
	if accountID != "" {
		h.Set("Chatgpt-Account-Id", accountID)
	}
	finishHeaders(h, accessToken)
	req.ContentLength = int64(len(body))
	return req, nil
}

// ErrBodyNotObject is returned by ForceStoreFalse (and so CodexRequest)
// for a body that is not a JSON object: there is no field to set, and the
// upstream would refuse it anyway. The relay answers the client 400.
var ErrBodyNotObject = errors.New("openai: request body is not a JSON object")

// ForceStoreFalse returns body with its top-level "store" set to false. A
// body whose store already is false is returned as it is (the same slice).
// Otherwise a new slice is returned that differs from body only in that
// value, or, when body had no store, only in `,"store":false` before the
// object's closing brace: whitespace, key order and every other byte stay
// as the client sent them. body itself is never modified.
func ForceStoreFalse(body []byte) ([]byte, error) {
	if first := firstNonSpace(body); first != '{' {
		return nil, ErrBodyNotObject
	}
	val := gjson.GetBytes(body, "store")
	switch {
	case val.Type == gjson.False:
		return body, nil
	case val.Exists() && val.Index > 0 && val.Index+len(val.Raw) <= len(body) &&
		string(body[val.Index:val.Index+len(val.Raw)]) == val.Raw:
		out := make([]byte, 0, len(body)-len(val.Raw)+len("false"))
		out = append(out, body[:val.Index]...)
		out = append(out, "false"...)
		return append(out, body[val.Index+len(val.Raw):]...), nil
	case !val.Exists():
		end := len(bytes.TrimRight(body, " \t\r\n")) - 1
		if end < 0 || body[end] != '}' {
			return nil, ErrBodyNotObject
		}
		field := `,"store":false`
		if prev := bytes.TrimRight(body[:end], " \t\r\n"); len(prev) > 0 && prev[len(prev)-1] == '{' {
			field = field[1:] // an empty object gets no comma
		}
		out := make([]byte, 0, len(body)+len(field))
		out = append(out, body[:end]...)
		out = append(out, field...)
		return append(out, body[end:]...), nil
	}
	// gjson could not say where the value sits: let sjson rewrite it.
	out, err := sjson.SetRawBytes(body, "store", []byte("false"))
	if err != nil {
		return nil, fmt.Errorf("openai: set store: %w", err)
	}
	return out, nil
}

// UpstreamURL joins an API-key account's base URL and the vendor path a
// client asked for, so that the relay's /openai/responses and
// /openai/v1/responses are one route: a leading "/v1" of path is always
// dropped, and the version comes from the base.
//
// The rule: when the base URL's path already names an API version — any
// segment such as v1, v3 or v1beta — it is used as it is; otherwise "/v1"
// is inserted after it. So "https://api.openai.com" and
// "https://api.openai.com/v1" both give https://api.openai.com/v1/responses;
// "https://openrouter.ai/api/v1" gives …/api/v1/responses; a provider with
// another version ("https://ark.example/api/v3") keeps it; and a gateway
// that carries its version earlier in the path
// ("https://gateway.example/v1/acct/gw/openai") gets …/openai/responses.
// A base without any version segment whose provider also serves no /v1
// cannot be expressed; no such Responses provider is known.
//
// A query in the base is kept, and rawQuery is appended to it.
func UpstreamURL(base, path, rawQuery string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(base))
	if err != nil {
		return "", fmt.Errorf("openai: base URL %q: %w", base, err)
	}
	if u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("openai: base URL %q is not absolute", base)
	}
	root := strings.TrimRight(u.Path, "/")
	if !hasVersionSegment(root) {
		root += "/v1"
	}
	u.Path = root + stripVersion(path)
	u.RawPath = ""
	u.RawQuery = joinQuery(u.RawQuery, rawQuery)
	u.Fragment = ""
	return u.String(), nil
}

// stripVersion makes path absolute and drops a leading "/v1" segment.
func stripVersion(path string) string {
	if path != "" && path[0] != '/' {
		path = "/" + path
	}
	if path == "/v1" {
		return ""
	}
	if rest, ok := strings.CutPrefix(path, "/v1/"); ok {
		return "/" + rest
	}
	return path
}

// hasVersionSegment reports whether a URL path has a segment naming an API
// version: "v", digits, then optionally letters and digits (v1, v3,
// v1beta, v2alpha1).
func hasVersionSegment(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if len(seg) < 2 || seg[0] != 'v' || !isDigit(seg[1]) {
			continue
		}
		i := 2
		for i < len(seg) && isDigit(seg[i]) {
			i++
		}
		ok := true
		for ; i < len(seg); i++ {
			c := seg[i]
			if !isDigit(c) && (c < 'a' || c > 'z') {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func joinQuery(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "&" + b
}

// copyAllowed copies the allow-listed client headers into dst, each with
// its own slice, under the canonical form of its name. Names are compared
// without regard to case, so a header stored under a non-canonical key is
// found too.
func copyAllowed(dst, in http.Header, sdk bool) {
	for name, vals := range in {
		if !allowed(strings.ToLower(name), sdk) {
			continue
		}
		key := http.CanonicalHeaderKey(name)
		dst[key] = append(dst[key], vals...)
	}
}

func allowed(lower string, sdk bool) bool {
	for _, n := range clientHeaders {
		if lower == n {
			return true
		}
	}
	for _, p := range clientHeaderPrefixes {
		if strings.HasPrefix(lower, p) {
			return true
		}
	}
	if sdk {
		for _, n := range sdkHeaders {
			if lower == n {
				return true
			}
		}
	}
	return false
}

// finishHeaders sets what every upstream request carries whatever the
// client sent: the account's credential, a content type, and identity
// encoding, because the stream is passed through byte for byte and a
// gzip-encoded SSE stream cannot be read event by event.
func finishHeaders(h http.Header, token string) {
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	h.Set("Accept-Encoding", "identity")
	h.Set("Authorization", "Bearer "+token)
}

func firstNonSpace(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c
	}
	return 0
}
