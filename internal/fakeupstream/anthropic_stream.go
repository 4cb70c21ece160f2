package fakeupstream

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// ReplyText is the assistant text the fake sends with the given number of
// deltas (Options.Deltas). Up to 4 deltas spell "pong" between them ("p",
// "ong" for 2); with more, the first delta is "pong" and each further one is
// " w1", " w2", … so the text grows with the count and still starts with
// "pong".
func ReplyText(deltas int) string {
	return strings.Join(replyPieces(deltas), "")
}

func replyPieces(n int) []string {
	if n <= 0 {
		n = 1
	}
	const word = "pong"
	if n <= len(word) {
		out := make([]string, 0, n)
		for i := 0; i < n-1; i++ {
			out = append(out, word[i:i+1])
		}
		return append(out, word[n-1:])
	}
	out := make([]string, 0, n)
	out = append(out, word)
	for i := 1; i < n; i++ {
		out = append(out, fmt.Sprintf(" w%d", i))
	}
	return out
}

// stream writes the Messages SSE sequence the real API sends: message_start,
// content_block_start, ping, content_block_delta (text_delta) × Deltas,
// content_block_stop, message_delta (stop_reason + cumulative usage),
// message_stop; each event flushed on its own. The Cut and ErrorEvent
// faults interrupt it after the configured number of events.
func (a *Anthropic) stream(ctx context.Context, rep replier, req messageRequest, f Fault, id string) {
	h := rep.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Del("Content-Length")
	sw := &sseWriter{w: rep.w, rc: http.NewResponseController(rep.w)}
	if rep.gzip {
		h.Set("Content-Encoding", "gzip")
		sw.gz = gzip.NewWriter(rep.w)
		sw.out = sw.gz
	} else {
		sw.out = rep.w
	}
	rep.w.WriteHeader(http.StatusOK)

	// emit writes one event and applies the interrupting faults; false
	// means the stream is over.
	emit := func(name string, payload any) bool {
		if !sw.event(name, payload) {
			return false
		}
		if f.CutAfterEvents > 0 && sw.events == f.CutAfterEvents {
			sw.flush()
			dropConnection(rep.w)
			return false
		}
		if f.ErrorEventAfter > 0 && sw.events == f.ErrorEventAfter {
			typ := f.ErrorEventType
			if typ == "" {
				typ = "overloaded_error"
			}
			sw.eventRaw("error", errorBody(typ, defaultErrorMessage(typ), rep.requestID))
			sw.close()
			return false
		}
		return true
	}

	u := a.opts.Usage
	start := messageStartJSON{Type: "message_start", Message: messageJSON{
		ID:      id,
		Type:    "message",
		Role:    "assistant",
		Model:   req.model,
		Content: []textBlock{},
		// The real API reports a token or so of output up front and the
		// total in message_delta; a relay that adds the two overcounts.
		Usage: startUsage(u, min(1, u.Output)),
	}}
	if !emit("message_start", start) {
		return
	}
	if !emit("content_block_start", blockStartJSON{Type: "content_block_start", Index: 0, ContentBlock: textBlock{Type: "text", Text: ""}}) {
		return
	}
	if !emit("ping", typeOnly{Type: "ping"}) {
		return
	}
	for i, piece := range replyPieces(a.opts.Deltas) {
		if i > 0 && a.opts.DeltaDelay > 0 && !a.pause(ctx, a.opts.DeltaDelay) {
			return
		}
		if !emit("content_block_delta", blockDeltaJSON{Type: "content_block_delta", Index: 0, Delta: textDelta{Type: "text_delta", Text: piece}}) {
			return
		}
	}
	if !emit("content_block_stop", blockStopJSON{Type: "content_block_stop", Index: 0}) {
		return
	}
	delta := messageDeltaJSON{Type: "message_delta", Delta: stopDelta{StopReason: "end_turn"}, Usage: deltaUsage{
		InputTokens:              u.Input,
		CacheCreationInputTokens: u.CacheWrite5m + u.CacheWrite1h,
		CacheReadInputTokens:     u.CacheRead,
		OutputTokens:             u.Output,
	}}
	if !emit("message_delta", delta) {
		return
	}
	if !emit("message_stop", typeOnly{Type: "message_stop"}) {
		return
	}
	sw.close()
}

// sseWriter writes `event:` + `data:` + blank line frames and flushes each
// one through the optional gzip layer down to the connection.
type sseWriter struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	gz     *gzip.Writer
	out    io.Writer
	events int
	failed bool
}

func (s *sseWriter) event(name string, payload any) bool {
	b, err := json.Marshal(payload)
	if err != nil {
		panic(fmt.Sprintf("fakeupstream: marshal %s: %v", name, err)) // a bug in the fake's own types
	}
	return s.eventRaw(name, b)
}

func (s *sseWriter) eventRaw(name string, data []byte) bool {
	if s.failed {
		return false
	}
	if _, err := fmt.Fprintf(s.out, "event: %s\ndata: %s\n\n", name, data); err != nil {
		s.failed = true
		return false
	}
	s.events++
	if !s.flush() {
		s.failed = true
		return false
	}
	return true
}

func (s *sseWriter) flush() bool {
	if s.gz != nil {
		if err := s.gz.Flush(); err != nil {
			return false
		}
	}
	return s.rc.Flush() == nil
}

// close ends the body cleanly (the gzip trailer, when compressing).
func (s *sseWriter) close() {
	if s.gz != nil {
		_ = s.gz.Close()
		_ = s.rc.Flush()
	}
}

// Wire shapes. Field order follows the real API so the bytes look alike.

type typeOnly struct {
	Type string `json:"type"`
}

type textBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type cacheCreationJSON struct {
	Ephemeral5m int64 `json:"ephemeral_5m_input_tokens"`
	Ephemeral1h int64 `json:"ephemeral_1h_input_tokens"`
}

type usageJSON struct {
	InputTokens              int64             `json:"input_tokens"`
	CacheCreationInputTokens int64             `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64             `json:"cache_read_input_tokens"`
	CacheCreation            cacheCreationJSON `json:"cache_creation"`
	OutputTokens             int64             `json:"output_tokens"`
	ServiceTier              string            `json:"service_tier"`
	InferenceGeo             string            `json:"inference_geo"`
}

// startUsage is the usage object of message_start and of a non-stream reply.
func startUsage(u Usage, output int64) usageJSON {
	return usageJSON{
		InputTokens:              u.Input,
		CacheCreationInputTokens: u.CacheWrite5m + u.CacheWrite1h,
		CacheReadInputTokens:     u.CacheRead,
		CacheCreation:            cacheCreationJSON{Ephemeral5m: u.CacheWrite5m, Ephemeral1h: u.CacheWrite1h},
		OutputTokens:             output,
		ServiceTier:              "standard",
		InferenceGeo:             "not_available",
	}
}

type messageJSON struct {
	ID           string      `json:"id"`
	Type         string      `json:"type"`
	Role         string      `json:"role"`
	Model        string      `json:"model"`
	Content      []textBlock `json:"content"`
	StopReason   *string     `json:"stop_reason"`
	StopSequence *string     `json:"stop_sequence"`
	Usage        usageJSON   `json:"usage"`
}

type messageStartJSON struct {
	Type    string      `json:"type"`
	Message messageJSON `json:"message"`
}

type blockStartJSON struct {
	Type         string    `json:"type"`
	Index        int       `json:"index"`
	ContentBlock textBlock `json:"content_block"`
}

type textDelta struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type blockDeltaJSON struct {
	Type  string    `json:"type"`
	Index int       `json:"index"`
	Delta textDelta `json:"delta"`
}

type blockStopJSON struct {
	Type  string `json:"type"`
	Index int    `json:"index"`
}

type stopDelta struct {
	StopReason   string  `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
}

// deltaUsage is message_delta's usage: cumulative totals for the message.
type deltaUsage struct {
	InputTokens              int64 `json:"input_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
}

type messageDeltaJSON struct {
	Type  string     `json:"type"`
	Delta stopDelta  `json:"delta"`
	Usage deltaUsage `json:"usage"`
}

type errorDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

type errorJSON struct {
	Type      string      `json:"type"`
	Error     errorDetail `json:"error"`
	RequestID string      `json:"request_id,omitempty"`
}

type modelInfo struct {
	Type        string `json:"type"`
	ID          string `json:"id"`
	DisplayName string `json:"display_name"`
	CreatedAt   string `json:"created_at"`
}

type modelListJSON struct {
	Data    []modelInfo `json:"data"`
	HasMore bool        `json:"has_more"`
	FirstID string      `json:"first_id"`
	LastID  string      `json:"last_id"`
}
