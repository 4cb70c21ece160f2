package relay

import (
	"crypto/sha256"
	"encoding/binary"
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
	model    gjson.Result
	stream   bool
	userID   string       // metadata.user_id
	system   gjson.Result // the system prompt, string or blocks
	messages string       // the messages array, raw
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
			f.messages = v.Raw
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
	if f.system.Exists() && f.system.Raw != `""` && f.system.Raw != "[]" {
		return hashPrompt(f.system.Raw)
	}
	if first := firstMessage(f.messages); first != "" {
		return hashPrompt(first)
	}
	return ""
}

// firstMessage returns the raw first element of a messages array, or, when
// that element is longer than hashPromptPrefix, its first hashPromptPrefix
// bytes: either way the same bytes on every turn of a conversation, found
// without scanning past the prefix (a first message may be most of a large
// body).
func firstMessage(messages string) string {
	i := 0
	for i < len(messages) && (messages[i] == '[' || messages[i] == ' ' || messages[i] == '\n' || messages[i] == '\r' || messages[i] == '\t') {
		i++
	}
	rest := messages[i:]
	if rest == "" || rest[0] == ']' {
		return ""
	}
	window := rest[:min(len(rest), hashPromptPrefix)]
	// Element 0 of the array cut after the window: complete (and valid)
	// only if it ends inside the window.
	if elem := gjson.Get(messages[:i+len(window)], "0"); elem.Raw != "" && len(elem.Raw) < len(window) && gjson.Valid(elem.Raw) {
		return elem.Raw
	}
	return window
}

// hashPromptPrefix bounds how much of a prompt is hashed: sticky sessions
// only need conversations told apart, and a long first message would
// otherwise cost a hash of the whole conversation start on every request.
const hashPromptPrefix = 8 << 10

// hashPrompt names a conversation by its system prompt or first message, as
// sent (raw JSON): the first 8 KiB and the total length.
func hashPrompt(raw string) string {
	h := sha256.New()
	h.Write([]byte(raw[:min(len(raw), hashPromptPrefix)]))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(raw)))
	h.Write(n[:])
	return "h:" + hex.EncodeToString(h.Sum(nil)[:16])
}
