// Package anthropic speaks the Anthropic Messages API: it shapes the
// upstream request for an account, classifies answers into provider
// outcomes, and extracts usage from bodies and SSE streams.
package anthropic

import (
	"bytes"
	"context"
	"net/http"
	"strings"
)

// DefaultVersion is sent when a client gave no anthropic-version header.
const DefaultVersion = "2023-06-01"

// forwardHeaders are the client headers an API-key account receives. It is
// an allow-list: everything else a client sends (its relay key, cookies,
// X-Forwarded-*, CDN headers) stays at the relay.
var forwardHeaders = append([]string{
	"Anthropic-Beta",
	"X-App",
	"X-Claude-Code-Session-Id",
}, clientHeaders...)

// clientHeaders are the headers every account type receives from the client
// as sent: content negotiation, the API version and the SDK's fingerprint.
var clientHeaders = []string{
	"Accept",
	"Accept-Language",
	"Anthropic-Dangerous-Direct-Browser-Access",
	"Anthropic-Version",
	"Content-Type",
	"User-Agent",
	"X-Stainless-Arch",
	"X-Stainless-Helper-Method",
	"X-Stainless-Lang",
	"X-Stainless-Os",
	"X-Stainless-Package-Version",
	"X-Stainless-Retry-Count",
	"X-Stainless-Runtime",
	"X-Stainless-Runtime-Version",
	"X-Stainless-Timeout",
}

// APIKeyRequest builds the upstream request for an API-key account. base is
// the account's API root; path is the vendor path ("/v1/messages") and
// rawQuery the client's query (kept: "beta=true"). The body goes as sent.
func APIKeyRequest(ctx context.Context, in http.Header, base, path, rawQuery, apiKey string, body []byte) (*http.Request, error) {
	u := strings.TrimRight(base, "/") + path
	if rawQuery != "" {
		u += "?" + rawQuery
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for _, name := range forwardHeaders {
		if v, ok := in[name]; ok {
			req.Header[name] = v
		}
	}
	if req.Header.Get("Anthropic-Version") == "" {
		req.Header.Set("Anthropic-Version", DefaultVersion)
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	// Identity encoding: the stream is passed through byte for byte, and
	// a gzip-encoded SSE stream cannot be read event by event.
	req.Header.Set("Accept-Encoding", "identity")
	// Anthropic's own keys go in x-api-key; compatible relays and gateways
	// mostly want a bearer token.
	if strings.HasPrefix(apiKey, "sk-ant-") {
		req.Header.Set("X-Api-Key", apiKey)
	} else {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	req.ContentLength = int64(len(body))
	return req, nil
}
