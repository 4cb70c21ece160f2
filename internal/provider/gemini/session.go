package gemini

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
)

// promptIDSeparator joins Gemini CLI's session id and its prompt counter
// in user_prompt_id ("<session>########3"), the form interactive sessions
// use; one-shot runs send a random id instead.
const promptIDSeparator = "########"

// maxSessionID bounds a session id taken from the body as it is: a longer
// one is hashed, so a client cannot make the relay keep megabytes as a
// sticky-session key.
const maxSessionID = 128

// hashPrefix bounds how much of a prompt is hashed: sticky sessions only
// need conversations told apart, and a long first message (inline images
// are base64 in the body) would otherwise cost a hash of the conversation
// start on every request.
const hashPrefix = 8 << 10

// SessionID names the conversation a Gemini request belongs to, so it
// stays on one account and Google's implicit prompt cache keeps hitting.
// In order: Code Assist's request.session_id (Gemini CLI's session); the
// session part of its user_prompt_id, or the whole id when it has no
// session part; else a hash of the first entry of contents (native) or
// request.contents (Code Assist), which is the same on every turn of a
// conversation. Empty when the body has none of these.
//
// h is not read today: no Gemini client sends a session header (Gemini
// CLI's x-gemini-api-privileged-user-id names an installation, not a
// conversation). It is taken so every provider's SessionID has one shape.
func SessionID(h http.Header, body []byte) string {
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return ""
	}
	var sessionID, promptID, contents string
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "user_prompt_id":
			promptID = v.String()
		case "contents":
			contents = v.Raw
		case "request":
			v.ForEach(func(k, v gjson.Result) bool {
				switch k.Str {
				case "session_id":
					sessionID = v.String()
				case "contents":
					contents = v.Raw
				}
				return true
			})
		}
		return true
	})
	if s := strings.TrimSpace(sessionID); s != "" {
		return bounded(s)
	}
	if s := strings.TrimSpace(promptID); s != "" {
		if i := strings.Index(s, promptIDSeparator); i > 0 {
			s = s[:i]
		}
		return bounded(s)
	}
	if first := firstElement(contents); first != "" {
		return hashPrompt(first)
	}
	return ""
}

// bounded returns an id as it is, or its hash when it is too long.
func bounded(id string) string {
	if len(id) > maxSessionID {
		return hashPrompt(id)
	}
	return id
}

// firstElement returns the raw first element of a JSON array or, when that
// element is longer than hashPrefix, its first hashPrefix bytes: the same
// bytes on every turn either way, found without scanning past the prefix.
func firstElement(array string) string {
	if !strings.HasPrefix(array, "[") {
		return ""
	}
	i := 1
	for i < len(array) && (array[i] == ' ' || array[i] == '\n' || array[i] == '\r' || array[i] == '\t') {
		i++
	}
	rest := array[i:]
	if rest == "" || rest[0] == ']' {
		return ""
	}
	window := rest[:min(len(rest), hashPrefix)]
	// Element 0 of the array cut after the window is complete (and valid)
	// only if it ends inside the window.
	if elem := gjson.Get(array[:i+len(window)], "0"); elem.Raw != "" && len(elem.Raw) < len(window) && gjson.Valid(elem.Raw) {
		return elem.Raw
	}
	return window
}

// hashPrompt names a conversation by a prompt prefix and the prefix's
// length.
func hashPrompt(raw string) string {
	h := sha256.New()
	h.Write([]byte(raw[:min(len(raw), hashPrefix)]))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(raw)))
	h.Write(n[:])
	return "h:" + hex.EncodeToString(h.Sum(nil)[:16])
}
