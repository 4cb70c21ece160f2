package relay

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
)

// messagesFields are the parts of a Messages request the relay reads. They
// come from one pass over the body's top-level keys, in which gjson skips
// over each value without decoding it, so a long conversation costs one
// scan rather than one per field.
type messagesFields struct {
	model  gjson.Result
	stream bool
	userID string       // metadata.user_id
	system gjson.Result // the system prompt, string or blocks
	first  gjson.Result // messages[0].content
}

// readMessagesFields reads a validated JSON body; ok is false when the body
// is not a JSON object.
func readMessagesFields(body []byte) (f messagesFields, ok bool) {
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return f, false
	}
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "model":
			f.model = v
		case "stream":
			f.stream = v.Bool()
		case "metadata":
			f.userID = v.Get("user_id").String()
		case "system":
			f.system = v
		case "messages":
			f.first = v.Get("0.content")
		}
		return true
	})
	return f, true
}

// sessionID names the conversation a Messages request belongs to, so it
// stays on one account and the upstream prompt cache keeps hitting. In
// order: the x-claude-code-session-id header; the session inside
// metadata.user_id (a JSON string in current Claude Code, the legacy
// "user_…_account_…_session_<uuid>" form in older ones); else a hash of the
// system prompt, or of the first message when there is no system prompt.
// Empty when the request has none of these.
func sessionID(h http.Header, f messagesFields) string {
	if v := strings.TrimSpace(h.Get("X-Claude-Code-Session-Id")); v != "" {
		return v
	}
	if uid := f.userID; uid != "" {
		if strings.HasPrefix(uid, "{") {
			if s := gjson.Get(uid, "session_id").String(); s != "" {
				return s
			}
		} else if i := strings.LastIndex(uid, "_session_"); i >= 0 && len(uid) > i+len("_session_") {
			return uid[i+len("_session_"):]
		}
	}
	if text := promptText(f.system); text != "" {
		return hashText(text)
	}
	if text := promptText(f.first); text != "" {
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
