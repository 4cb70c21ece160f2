package relay

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
)

// sessionID names the conversation a Messages request belongs to, so it
// stays on one account and the upstream prompt cache keeps hitting. In
// order: the x-claude-code-session-id header; the session inside
// metadata.user_id (a JSON string in current Claude Code, the legacy
// "user_…_account_…_session_<uuid>" form in older ones); else a hash of the
// system prompt, or of the first message when there is no system prompt.
// Empty when the request has none of these.
func sessionID(h http.Header, body []byte) string {
	if v := strings.TrimSpace(h.Get("X-Claude-Code-Session-Id")); v != "" {
		return v
	}
	if uid := gjson.GetBytes(body, "metadata.user_id").String(); uid != "" {
		if strings.HasPrefix(uid, "{") {
			if s := gjson.Get(uid, "session_id").String(); s != "" {
				return s
			}
		} else if i := strings.LastIndex(uid, "_session_"); i >= 0 && len(uid) > i+len("_session_") {
			return uid[i+len("_session_"):]
		}
	}
	if text := promptText(gjson.GetBytes(body, "system")); text != "" {
		return hashText(text)
	}
	if text := promptText(gjson.GetBytes(body, "messages.0.content")); text != "" {
		return hashText(text)
	}
	return ""
}

// promptText joins the text of a string or an array of content blocks.
func promptText(v gjson.Result) string {
	if v.Type == gjson.String {
		return v.String()
	}
	var b strings.Builder
	v.ForEach(func(_, block gjson.Result) bool {
		if t := block.Get("text"); t.Exists() {
			b.WriteString(t.String())
			b.WriteByte('\n')
		}
		return true
	})
	return b.String()
}

func hashText(s string) string {
	h := sha256.Sum256([]byte(s))
	return "h:" + hex.EncodeToString(h[:16])
}
