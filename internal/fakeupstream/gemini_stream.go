package fakeupstream

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// geminiThoughtText is the thought summary the fake sends first when a
// request asks for thoughts (thinkingConfig.includeThoughts).
const geminiThoughtText = "**Answering**\n\nThe user wants a short reply."

// Wire shapes of a GenerateContentResponse. Zero counts are omitted, as the
// real API omits them.

type geminiPart struct {
	Text    string `json:"text"`
	Thought bool   `json:"thought,omitempty"`
}

type geminiContent struct {
	Parts []geminiPart `json:"parts"`
	Role  string       `json:"role"`
}

type geminiCandidate struct {
	Content      geminiContent `json:"content"`
	FinishReason string        `json:"finishReason,omitempty"`
	Index        int           `json:"index"`
}

type geminiUsageJSON struct {
	PromptTokenCount        int64 `json:"promptTokenCount"`
	CandidatesTokenCount    int64 `json:"candidatesTokenCount,omitempty"`
	TotalTokenCount         int64 `json:"totalTokenCount"`
	CachedContentTokenCount int64 `json:"cachedContentTokenCount,omitempty"`
	ThoughtsTokenCount      int64 `json:"thoughtsTokenCount,omitempty"`
}

type geminiResponseJSON struct {
	Candidates    []geminiCandidate `json:"candidates"`
	UsageMetadata *geminiUsageJSON  `json:"usageMetadata,omitempty"`
	ModelVersion  string            `json:"modelVersion"`
	ResponseID    string            `json:"responseId,omitempty"`
}

// codeAssistResponseJSON is the Code Assist envelope around a response.
type codeAssistResponseJSON struct {
	Response geminiResponseJSON `json:"response"`
	TraceID  string             `json:"traceId"`
}

func fullGeminiUsage(u GeminiUsage) *geminiUsageJSON {
	return &geminiUsageJSON{
		PromptTokenCount:        u.Prompt,
		CandidatesTokenCount:    u.Candidates,
		TotalTokenCount:         u.Total(),
		CachedContentTokenCount: u.Cached,
		ThoughtsTokenCount:      u.Thoughts,
	}
}

// answer writes the success reply of a valid generate request under fault
// f: a fault status, a verbatim body, or the generated reply.
func (g *Gemini) answer(ctx context.Context, rep *geminiReply, req geminiGenerate, f GeminiFault) {
	if f.Status != 0 && f.Status != http.StatusOK {
		rep.fault(f)
		return
	}
	if f.Status == http.StatusOK && f.Body != "" {
		ct := "application/json; charset=UTF-8"
		if req.stream && req.sse {
			ct = "text/event-stream"
		}
		rep.setHeader("Content-Type", ct)
		rep.raw(http.StatusOK, []byte(f.Body), false)
		return
	}
	id := fmt.Sprintf("fake_%016d", g.nextSeq())
	if g.opts.Name != "" {
		id = g.opts.Name + "_" + id
	}
	if !req.stream {
		b := g.marshalReply(req, g.wholeReply(req, id), id)
		rep.setHeader("Content-Type", "application/json; charset=UTF-8")
		rep.raw(http.StatusOK, b, f.CutAfterEvents > 0)
		return
	}
	g.stream(ctx, rep, req, f, g.chunkReplies(req, id), id)
}

// replyTexts is the answer's text split into chunks: the reply pieces, or
// for a JSON-mode request one JSON document that fits its schema.
func (g *Gemini) replyTexts(req geminiGenerate) []string {
	if req.jsonMode {
		return []string{geminiJSONText(req.schema)}
	}
	return replyPieces(g.opts.Chunks)
}

// wholeReply is the non-stream response: one candidate with the thought
// part (when asked for) and the whole text, and the full usage.
func (g *Gemini) wholeReply(req geminiGenerate, id string) geminiResponseJSON {
	var parts []geminiPart
	if req.thoughts {
		parts = append(parts, geminiPart{Text: geminiThoughtText, Thought: true})
	}
	parts = append(parts, geminiPart{Text: strings.Join(g.replyTexts(req), "")})
	return geminiResponseJSON{
		Candidates:    []geminiCandidate{{Content: geminiContent{Parts: parts, Role: "model"}, FinishReason: "STOP"}},
		UsageMetadata: fullGeminiUsage(g.opts.Usage),
		ModelVersion:  req.model,
		ResponseID:    id,
	}
}

// chunkReplies are the stream's responses: a thought chunk when asked for,
// then one per text piece. Every chunk carries the prompt's usage, as the
// real API's do; only the last, which also has finishReason STOP, carries
// the output counts, so a relay that adds chunks up overcounts the prompt.
func (g *Gemini) chunkReplies(req geminiGenerate, id string) []geminiResponseJSON {
	u := g.opts.Usage
	partial := &geminiUsageJSON{PromptTokenCount: u.Prompt, TotalTokenCount: u.Prompt, CachedContentTokenCount: u.Cached}
	chunk := func(p geminiPart, finish string, usage *geminiUsageJSON) geminiResponseJSON {
		return geminiResponseJSON{
			Candidates:    []geminiCandidate{{Content: geminiContent{Parts: []geminiPart{p}, Role: "model"}, FinishReason: finish}},
			UsageMetadata: usage,
			ModelVersion:  req.model,
			ResponseID:    id,
		}
	}
	var out []geminiResponseJSON
	if req.thoughts {
		out = append(out, chunk(geminiPart{Text: geminiThoughtText, Thought: true}, "", partial))
	}
	texts := g.replyTexts(req)
	for i, t := range texts {
		if i == len(texts)-1 {
			out = append(out, chunk(geminiPart{Text: t}, "STOP", fullGeminiUsage(u)))
		} else {
			out = append(out, chunk(geminiPart{Text: t}, "", partial))
		}
	}
	return out
}

// marshalReply encodes one response, inside the Code Assist envelope when
// the request came that way (where responseId gives way to traceId).
func (g *Gemini) marshalReply(req geminiGenerate, r geminiResponseJSON, id string) []byte {
	var v any = r
	if req.codeAssist {
		r.ResponseID = ""
		v = codeAssistResponseJSON{Response: r, TraceID: id}
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic("fakeupstream: marshal gemini chunk: " + err.Error()) // a bug in the fake's own types
	}
	return b
}

// stream writes the chunks as SSE (alt=sse: "data: {…}" events separated by
// CRLF blank lines, as the real API frames them) or, without alt=sse, as
// the JSON array the API streams then. Each chunk is flushed on its own;
// the Cut and ErrorChunk faults interrupt the stream after their count.
func (g *Gemini) stream(ctx context.Context, rep *geminiReply, req geminiGenerate, f GeminiFault, chunks []geminiResponseJSON, id string) {
	if req.sse {
		rep.setHeader("Content-Type", "text/event-stream")
	} else {
		rep.setHeader("Content-Type", "application/json; charset=UTF-8")
	}
	rep.w.Header().Del("Content-Length")
	rep.w.WriteHeader(http.StatusOK)
	cw := &geminiChunkWriter{w: rep.w, rc: http.NewResponseController(rep.w), sse: req.sse}
	for i, c := range chunks {
		if i > 0 && g.opts.ChunkDelay > 0 && !g.pause(ctx, g.opts.ChunkDelay) {
			return
		}
		if !cw.write(g.marshalReply(req, c, id)) {
			return
		}
		if f.CutAfterEvents > 0 && cw.n == f.CutAfterEvents {
			dropConnection(rep.w)
			return
		}
		if f.ErrorChunkAfter > 0 && cw.n == f.ErrorChunkAfter {
			code := f.ErrorChunkStatus
			if code == 0 {
				code = http.StatusServiceUnavailable
			}
			cw.write(googleErrorBody(code, "", googleErrorDetails{}, rep.domain))
			cw.end()
			return
		}
	}
	cw.end()
}

// geminiChunkWriter frames and flushes stream chunks.
type geminiChunkWriter struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	sse    bool
	n      int
	failed bool
}

func (c *geminiChunkWriter) write(b []byte) bool {
	if c.failed {
		return false
	}
	var frame []byte
	switch {
	case c.sse:
		frame = append(append([]byte("data: "), b...), "\r\n\r\n"...)
	case c.n == 0:
		frame = append([]byte("["), b...)
	default:
		frame = append([]byte(",\r\n"), b...)
	}
	if _, err := c.w.Write(frame); err != nil || c.rc.Flush() != nil {
		c.failed = true
		return false
	}
	c.n++
	return true
}

// end closes a JSON-array stream; SSE needs nothing.
func (c *geminiChunkWriter) end() {
	if c.sse || c.failed {
		return
	}
	closing := "]"
	if c.n == 0 {
		closing = "[]"
	}
	_, _ = c.w.Write([]byte(closing))
	_ = c.rc.Flush()
}
