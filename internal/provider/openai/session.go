package openai

import (
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
)

// sessionHeaders name a conversation, in the order they are trusted: Codex
// CLI 0.169 sends session-id and thread-id (the same uuid); older Codex
// versions sent session_id (and conversation_id); some clients and
// gateways use x-session-id.
var sessionHeaders = []string{"session-id", "session_id", "x-session-id", "thread-id", "conversation_id"}

// SessionID names the conversation a Responses request belongs to, so it
// stays on one account and the upstream prompt cache keeps hitting. In
// order: the session headers (session-id, session_id, x-session-id,
// thread-id, conversation_id); then the body's prompt_cache_key (Codex
// sets it to the session id, and it is OpenAI's own cache routing key),
// session_id and conversation_id. The value is returned as sent, trimmed;
// "" when the request has none of these. x-client-request-id is not used:
// in other clients it names one request, not a conversation.
//
// body should be the request's JSON object; only its top-level keys are
// read, in one pass that skips over every value it does not need.
func SessionID(h http.Header, body []byte) string {
	for _, name := range sessionHeaders {
		if v := headerValue(h, name); v != "" {
			return v
		}
	}
	var cacheKey, session, conversation string
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return ""
	}
	root.ForEach(func(k, v gjson.Result) bool {
		if v.Type != gjson.String {
			return true
		}
		switch k.Str {
		case "prompt_cache_key":
			cacheKey = strings.TrimSpace(v.Str)
		case "session_id":
			session = strings.TrimSpace(v.Str)
		case "conversation_id":
			conversation = strings.TrimSpace(v.Str)
		}
		return cacheKey == "" // nothing later can win over it
	})
	for _, v := range []string{cacheKey, session, conversation} {
		if v != "" {
			return v
		}
	}
	return ""
}

// headerValue is h's first value for name, trimmed, found whatever the
// case of the key it is stored under.
func headerValue(h http.Header, name string) string {
	if v := strings.TrimSpace(h.Get(name)); v != "" {
		return v
	}
	for k, vals := range h {
		if len(vals) > 0 && strings.EqualFold(k, name) {
			if v := strings.TrimSpace(vals[0]); v != "" {
				return v
			}
		}
	}
	return ""
}
