package openai

import (
	"net/http"
	"testing"
)

func TestSessionID(t *testing.T) {
	tests := []struct {
		name string
		h    http.Header
		body string
		want string
	}{
		{"codex cli 0.169", codexCLIHeaders(), string(codexCLIBody), codexSession},
		{"session-id wins over the body", hdr("Session-Id", "hdr"), `{"prompt_cache_key":"body"}`, "hdr"},
		{"older codex: session_id", http.Header{"Session_id": {"old"}, "Conversation_id": {"conv"}}, `{}`, "old"},
		{"session_id under a lower-case key", http.Header{"session_id": {"raw"}}, `{}`, "raw"},
		{"x-session-id", hdr("X-Session-Id", "gw"), `{"prompt_cache_key":"body"}`, "gw"},
		{"thread-id alone", hdr("Thread-Id", "thread"), `{}`, "thread"},
		{"session-id before thread-id", hdr("Thread-Id", "thread", "Session-Id", "sess"), `{}`, "sess"},
		{"blank header skipped", hdr("Session-Id", "   ", "X-Session-Id", "next"), `{}`, "next"},
		{"x-client-request-id is a request, not a session", hdr("X-Client-Request-Id", "req"), `{}`, ""},
		{"prompt_cache_key", http.Header{}, `{"model":"gpt-5.4","prompt_cache_key":" pck ","session_id":"s","conversation_id":"c"}`, "pck"},
		{"prompt_cache_key after the others in the body", http.Header{}, `{"conversation_id":"c","session_id":"s","prompt_cache_key":"pck"}`, "pck"},
		{"body session_id", http.Header{}, `{"conversation_id":"c","session_id":"s"}`, "s"},
		{"body conversation_id", http.Header{}, `{"input":[{"session_id":"nested"}],"conversation_id":"c"}`, "c"},
		{"nested keys do not count", http.Header{}, `{"client_metadata":{"session_id":"nested"},"metadata":{"prompt_cache_key":"n"}}`, ""},
		{"non-string values do not count", http.Header{}, `{"prompt_cache_key":42,"session_id":{"a":1},"conversation_id":"c"}`, "c"},
		{"openai-go sdk, nothing", openaiGoHeaders(), string(sdkBody), ""},
		{"not json", http.Header{}, `<html>`, ""},
		{"array body", http.Header{}, `[{"prompt_cache_key":"x"}]`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SessionID(tt.h, []byte(tt.body)); got != tt.want {
				t.Fatalf("SessionID = %q, want %q", got, tt.want)
			}
		})
	}
}
