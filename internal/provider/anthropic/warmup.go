package anthropic

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/sse"
)

// Claude Code sends a few requests of its own besides the user's turns:
// a "Warmup" ping when a session or subagent starts, and small title
// requests that name the conversation in its UI. On a shared subscription
// they cost quota and count as extra traffic on the account, yet any short
// answer satisfies them, so crs can answer them itself.
const (
	// warmupText is the whole text of a warmup message.
	warmupText = "Warmup"
	// titlePrompt is part of the user message that asks for a title.
	titlePrompt = "write a 5-10 word title for the following conversation"
	// topicPrompt and topicField are both in the system prompt that asks
	// whether a message starts a new topic, and for its title. The first
	// letter is left out so "Analyze" and "analyze" both match.
	topicPrompt = "nalyze if this message indicates a new conversation topic"
	topicField  = "isNewTopic"
	// sessionTitlePrompt is in the system prompt newer Claude Code builds
	// use to title a session.
	sessionTitlePrompt = "Generate a concise, sentence-case title (3-7 words) that captures the main topic or goal of this coding session"
)

// warmupMarkers are byte strings at least one of which appears in the raw
// body of every request IsWarmup matches. Checking them first keeps the
// common case, an ordinary turn, to one scan without parsing.
var warmupMarkers = [][]byte{
	[]byte(warmupText),
	[]byte(titlePrompt),
	[]byte(topicPrompt),
	[]byte(sessionTitlePrompt),
}

// IsWarmup reports whether a Messages request body is one of Claude Code's
// warmup or title requests, which the relay may answer with
// WriteWarmupReply. It matches a message whose text is exactly "Warmup"
// or asks for a 5-10 word title of the conversation, and a system prompt
// asking for a topic or session title. Text counts whether it is given as
// a string or as text blocks. Everything else, including a user asking in
// their own words for a title, is a real request.
func IsWarmup(body []byte) bool {
	if !containsAny(body, warmupMarkers) {
		return false
	}
	res := gjson.GetManyBytes(body, "messages", "system")
	found := false
	eachElement(res[0], func(msg gjson.Result) bool {
		eachText(msg.Get("content"), func(text string) {
			if text == warmupText || strings.Contains(text, titlePrompt) {
				found = true
			}
		})
		return !found
	})
	if found {
		return true
	}
	eachText(res[1], func(text string) {
		if strings.Contains(text, topicPrompt) && strings.Contains(text, topicField) ||
			strings.Contains(text, sessionTitlePrompt) {
			found = true
		}
	})
	return found
}

// eachText calls fn with the text of content: the string itself, or the
// text of each text block of an array.
func eachText(content gjson.Result, fn func(string)) {
	switch {
	case content.Type == gjson.String:
		fn(content.Str)
	case content.IsArray():
		eachElement(content, func(block gjson.Result) bool {
			if block.Get("type").Str == "text" {
				fn(block.Get("text").String())
			}
			return true
		})
	}
}

// eachElement calls fn for each element of a JSON array until fn returns
// false. Anything but an array has no elements: gjson's ForEach would walk
// an object's values, which are not messages or blocks.
func eachElement(arr gjson.Result, fn func(gjson.Result) bool) {
	if !arr.IsArray() {
		return
	}
	arr.ForEach(func(_, v gjson.Result) bool { return fn(v) })
}

func containsAny(b []byte, subs [][]byte) bool {
	for _, s := range subs {
		if bytes.Contains(b, s) {
			return true
		}
	}
	return false
}

// warmupReply is the text of every local answer. Claude Code shows a
// title answer as the conversation's name, so it is a plausible one.
const warmupReply = "New Conversation"

// Token counts the local answer reports, small like a real warmup's.
const (
	warmupInputTokens  = 10
	warmupOutputTokens = 2
)

// Wire shapes of the local answer. They are a subset of the Messages API
// types, written out here so the answer is exactly what this file says.
type (
	warmupUsage struct {
		InputTokens              int `json:"input_tokens"`
		CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
		CacheReadInputTokens     int `json:"cache_read_input_tokens"`
		OutputTokens             int `json:"output_tokens"`
	}
	warmupBlock struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	warmupMessage struct {
		ID           string        `json:"id"`
		Type         string        `json:"type"`
		Role         string        `json:"role"`
		Model        string        `json:"model"`
		Content      []warmupBlock `json:"content"`
		StopReason   *string       `json:"stop_reason"`
		StopSequence *string       `json:"stop_sequence"`
		Usage        warmupUsage   `json:"usage"`
	}
)

// WriteWarmupReply answers a request IsWarmup matched without calling the
// upstream, the way the Messages API would: a 200 Message with the text
// "New Conversation", stop_reason end_turn and usage 10 in / 2 out, as
// JSON or, when stream is true, as the complete event stream from
// message_start to message_stop. model is echoed as the answering model.
// The answer is written in one Write and flushed, so the client gets it
// whole.
func WriteWarmupReply(w http.ResponseWriter, model string, stream bool) {
	endTurn := "end_turn"
	msg := warmupMessage{
		ID:         "msg_crs_warmup_" + randomHex(12),
		Type:       "message",
		Role:       "assistant",
		Model:      model,
		Content:    []warmupBlock{{Type: "text", Text: warmupReply}},
		StopReason: &endTurn,
		Usage:      warmupUsage{InputTokens: warmupInputTokens, OutputTokens: warmupOutputTokens},
	}
	var out []byte
	if stream {
		// Streamed without a length, as the upstream streams.
		out = warmupStream(msg)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
	} else {
		out = mustJSON(msg)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	}
	w.WriteHeader(http.StatusOK)
	// A write error means the client has gone; there is nobody left to
	// tell.
	_, _ = w.Write(out)
	_ = http.NewResponseController(w).Flush()
}

// warmupStream encodes msg as the Messages API streams it: the message
// without content and with the output not yet counted, one text block
// opened, filled by a single delta and closed, then the stop reason with
// the final output count.
func warmupStream(msg warmupMessage) []byte {
	start := msg
	start.Content = []warmupBlock{}
	start.StopReason = nil
	start.Usage.OutputTokens = 1
	events := []struct {
		name string
		data any
	}{
		{"message_start", map[string]any{"type": "message_start", "message": start}},
		{"content_block_start", map[string]any{"type": "content_block_start", "index": 0,
			"content_block": warmupBlock{Type: "text", Text: ""}}},
		{"content_block_delta", map[string]any{"type": "content_block_delta", "index": 0,
			"delta": map[string]string{"type": "text_delta", "text": warmupReply}}},
		{"content_block_stop", map[string]any{"type": "content_block_stop", "index": 0}},
		{"message_delta", map[string]any{"type": "message_delta",
			"delta": map[string]any{"stop_reason": msg.StopReason, "stop_sequence": nil},
			"usage": map[string]int{"output_tokens": msg.Usage.OutputTokens}}},
		{"message_stop", map[string]any{"type": "message_stop"}},
	}
	var out []byte
	for _, ev := range events {
		out = sse.AppendEvent(out, ev.name, mustJSON(ev.data))
	}
	return out
}

// mustJSON encodes values built in this file from strings, numbers and
// maps, which cannot fail to encode.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("anthropic: encoding warmup reply: " + err.Error())
	}
	return b
}

// randomHex returns n random bytes in hex. crypto/rand never fails.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// IsUserTurn reports whether a Messages request carries a turn typed by a
// person, as opposed to the agent loop sending tool results back. Serial
// queueing paces only the former: that is what the upstream watches for
// shared use, while tool-result turns must follow at machine speed. The
// last conversational message decides: it must have role "user" and string
// content, or at least one block that is not a tool_result. Claude Code
// appends role "system" entries after the last turn; they are skipped.
func IsUserTurn(body []byte) bool {
	var last gjson.Result
	eachElement(gjson.GetBytes(body, "messages"), func(msg gjson.Result) bool {
		if msg.Get("role").String() != "system" {
			last = msg
		}
		return true
	})
	if last.Get("role").String() != "user" {
		return false
	}
	content := last.Get("content")
	if content.Type == gjson.String {
		return true
	}
	human := false
	eachElement(content, func(block gjson.Result) bool {
		human = block.Get("type").String() != "tool_result"
		return !human
	})
	return human
}
