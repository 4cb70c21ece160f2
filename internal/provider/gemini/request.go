// Package gemini speaks Google's two Gemini protocols: the public Gemini
// API ("/v1beta/models/{model}:generateContent", API keys) and Code Assist
// ("/v1internal:{method}", the OAuth accounts Gemini CLI signs in with). It
// shapes the upstream request for an account, moves native requests into
// the Code Assist envelope and answers back out of it, classifies answers
// into provider outcomes, and extracts usage from bodies and SSE streams.
package gemini

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// Default upstream roots, used when an account has no base URL of its own.
const (
	DefaultAPIBase        = "https://generativelanguage.googleapis.com"
	DefaultCodeAssistBase = "https://cloudcode-pa.googleapis.com"
)

// ErrBadMethod is returned by CodeAssistRequest for a method name that
// could not be a v1internal method (empty, or with characters that would
// change the URL).
var ErrBadMethod = errors.New("gemini: bad Code Assist method")

// forwardHeaders are the client headers an upstream receives, for both
// protocols. It is an allow-list: everything else a client sends stays at
// the relay, in particular its relay key (x-goog-api-key, Authorization),
// cookies and X-Forwarded-*. Two headers Gemini clients send are left out
// on purpose: x-gemini-api-privileged-user-id is Gemini CLI's installation
// id, which would tell Google apart every person sharing the account, and
// x-goog-user-project names the client's own Google Cloud project, which
// would bill or authorise against a project the account does not own.
var forwardHeaders = []string{
	"Accept",
	"Accept-Language",
	"Content-Type",
	"User-Agent",
	"X-Goog-Api-Client",
	"X-Server-Timeout",
}

// APIKeyRequest builds the upstream request for a Gemini API-key account.
// base is the account's API root (DefaultAPIBase when empty); path is the
// vendor path after the relay's prefix ("/v1beta/models/m:generateContent")
// and rawQuery the client's query. The body goes as sent.
//
// The key goes in x-goog-api-key. The client's own key never goes on: not
// in its x-goog-api-key or Authorization header (both dropped by the
// allow-list), nor in a "key" query parameter, which is removed while the
// rest of the query ("alt=sse") is kept as sent. A base ending in an API
// version ("…/v1beta") is not doubled by a path that starts with one: the
// path's version wins, since the client chose the body shape for it.
func APIKeyRequest(ctx context.Context, in http.Header, base, path, rawQuery, apiKey string, body []byte) (*http.Request, error) {
	if base == "" {
		base = DefaultAPIBase
	}
	req, err := newRequest(ctx, in, joinPath(base, path), rawQuery, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Goog-Api-Key", apiKey)
	return req, nil
}

// CodeAssistRequest builds the upstream request for a Gemini OAuth (Code
// Assist) account: POST {base}/v1internal:{method}, with base
// DefaultCodeAssistBase when empty and rawQuery the client's query ("alt=sse",
// kept; a "key" parameter is dropped). The access token goes in
// Authorization as a bearer token.
//
// project is the account's Google Cloud project. When it is not empty it
// replaces the client's in the body, in the place the method carries it
// (see SetProject); the rest of the body goes as sent, byte for byte. An
// error means the body needed a project and is not a JSON object.
func CodeAssistRequest(ctx context.Context, in http.Header, base, method, rawQuery, accessToken, project string, body []byte) (*http.Request, error) {
	if !validMethod(method) {
		return nil, ErrBadMethod
	}
	body, err := SetProject(method, body, project)
	if err != nil {
		return nil, err
	}
	if base == "" {
		base = DefaultCodeAssistBase
	}
	req, err := newRequest(ctx, in, trimVersion(strings.TrimRight(base, "/"))+"/v1internal:"+method, rawQuery, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	return req, nil
}

// newRequest builds a POST to u with the allow-listed client headers.
func newRequest(ctx context.Context, in http.Header, u, rawQuery string, body []byte) (*http.Request, error) {
	if q := dropKeyParam(rawQuery); q != "" {
		u += "?" + q
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for _, name := range forwardHeaders {
		if v, ok := in[name]; ok {
			req.Header[name] = append([]string(nil), v...)
		}
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	// Identity encoding: the stream is passed through byte for byte, and a
	// gzip-encoded SSE stream cannot be read event by event.
	req.Header.Set("Accept-Encoding", "identity")
	req.ContentLength = int64(len(body))
	return req, nil
}

// dropKeyParam removes every "key" parameter (the client's relay key, as
// the Gemini API accepts it in the query) from a raw query and keeps the
// other parameters as sent, in order and with their encoding.
func dropKeyParam(rawQuery string) string {
	if rawQuery == "" {
		return ""
	}
	kept := make([]string, 0, 2)
	for part := range strings.SplitSeq(rawQuery, "&") {
		if part == "" {
			continue
		}
		name, _, _ := strings.Cut(part, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		if name == "key" {
			continue
		}
		kept = append(kept, part)
	}
	return strings.Join(kept, "&")
}

// joinPath appends path to base. When path starts with an API version
// segment and base ends with one, base's is dropped.
func joinPath(base, path string) string {
	base = strings.TrimRight(base, "/")
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	first, _, _ := strings.Cut(path[1:], "/")
	if isVersion(first) {
		base = trimVersion(base)
	}
	return base + path
}

// trimVersion drops a trailing API version segment ("/v1beta",
// "/v1internal") from the path part of a base URL; the host is never
// touched.
func trimVersion(base string) string {
	origin := 0
	if i := strings.Index(base, "://"); i >= 0 {
		origin = i + len("://")
	}
	// A slash after the scheme ends the host, so the last one, if there,
	// starts the last path segment.
	i := strings.LastIndexByte(base, '/')
	if i < origin || !isVersion(base[i+1:]) {
		return base
	}
	return base[:i]
}

// isVersion reports whether s is an API version segment: "v", digits, then
// letters or digits ("v1", "v1beta", "v1alpha2", "v1internal").
func isVersion(s string) bool {
	if len(s) < 2 || s[0] != 'v' || s[1] < '0' || s[1] > '9' {
		return false
	}
	for i := 2; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return false
		}
	}
	return true
}

// validMethod reports whether m can be put after "/v1internal:" without
// changing the URL's meaning.
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if !isAlnum(m[i]) {
			return false
		}
	}
	return true
}
