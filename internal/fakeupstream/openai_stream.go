package fakeupstream

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// openaiIDs names the objects of one reply.
type openaiIDs struct {
	response, message, compaction string
	created                       int64
}

func (o *OpenAI) idsFor(seq uint64) openaiIDs {
	label := "fake"
	if o.opts.Name != "" {
		label = o.opts.Name
	}
	tail := fmt.Sprintf("%s_%016d", label, seq)
	return openaiIDs{
		response:   "resp_" + tail,
		message:    "msg_" + tail,
		compaction: "cmp_" + tail,
		created:    time.Now().Unix(),
	}
}

// stream writes the Responses SSE sequence the real API sends for a text
// answer: response.created, response.in_progress,
// response.output_item.added, response.content_part.added,
// response.output_text.delta × Deltas, response.output_text.done,
// response.content_part.done, response.output_item.done and
// response.completed (which alone carries usage), each flushed on its own
// and numbered by sequence_number from 0. The Cut and Fail faults
// interrupt it after the configured number of events.
func (o *OpenAI) stream(ctx context.Context, rep openaiReplier, req openaiRequest, f OpenAIFault, ids openaiIDs) {
	h := rep.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Del("Content-Length")
	rep.w.WriteHeader(http.StatusOK)
	sw := &oaiSSE{w: rep.w, rc: http.NewResponseController(rep.w)}

	// emit writes one event and applies the interrupting faults; false
	// means the stream is over.
	emit := func(payload oaiEvent) bool {
		if !sw.event(payload) {
			return false
		}
		if f.CutAfterEvents > 0 && sw.events == f.CutAfterEvents {
			openaiDropConnection(rep.w)
			return false
		}
		if f.FailAfterEvents > 0 && sw.events == f.FailAfterEvents {
			code := f.FailCode
			if code == "" {
				code = "server_error"
			}
			failed := o.responseObject(req, ids, "failed")
			failed.Error = &oaiResponseError{Code: code, Message: "The model failed to generate a response. You can retry your request."}
			sw.event(oaiResponseEvent{Type: "response.failed", Seq: sw.events, Response: failed})
			return false
		}
		return true
	}

	text := ReplyText(o.opts.Deltas)
	if !emit(oaiResponseEvent{Type: "response.created", Seq: sw.events, Response: o.responseObject(req, ids, "in_progress")}) {
		return
	}
	if !emit(oaiResponseEvent{Type: "response.in_progress", Seq: sw.events, Response: o.responseObject(req, ids, "in_progress")}) {
		return
	}
	if !emit(oaiItemEvent{Type: "response.output_item.added", Seq: sw.events, Item: o.messageItem(ids, "in_progress", "")}) {
		return
	}
	if !emit(oaiPartEvent{Type: "response.content_part.added", Seq: sw.events, ItemID: ids.message, Part: oaiText("")}) {
		return
	}
	for i, piece := range replyPieces(o.opts.Deltas) {
		if i > 0 && o.opts.DeltaDelay > 0 && !o.pause(ctx, o.opts.DeltaDelay) {
			return
		}
		if !emit(oaiDeltaEvent{Type: "response.output_text.delta", Seq: sw.events, ItemID: ids.message, Delta: piece, Logprobs: []any{}}) {
			return
		}
	}
	if !emit(oaiTextDoneEvent{Type: "response.output_text.done", Seq: sw.events, ItemID: ids.message, Text: text, Logprobs: []any{}}) {
		return
	}
	if !emit(oaiPartEvent{Type: "response.content_part.done", Seq: sw.events, ItemID: ids.message, Part: oaiText(text)}) {
		return
	}
	item := o.messageItem(ids, "completed", text)
	if !emit(oaiItemEvent{Type: "response.output_item.done", Seq: sw.events, Item: item}) {
		return
	}
	done := o.responseObject(req, ids, "completed")
	done.Output = []oaiMessageItem{item}
	u := oaiUsage(o.opts.Usage)
	done.Usage = &u
	emit(oaiResponseEvent{Type: "response.completed", Seq: sw.events, Response: done})
}

// responseObject is the Response resource in the given status, without
// output or usage; the echoed settings are the API's defaults.
func (o *OpenAI) responseObject(req openaiRequest, ids openaiIDs, status string) oaiResponse {
	return oaiResponse{
		ID:                ids.response,
		Object:            "response",
		CreatedAt:         ids.created,
		Status:            status,
		Model:             req.model,
		Output:            []oaiMessageItem{},
		ParallelToolCalls: true,
		Store:             req.store,
		Temperature:       1,
		Text:              oaiTextConfig{Format: oaiFormat{Type: "text"}},
		ToolChoice:        "auto",
		Tools:             []any{},
		TopP:              1,
		Truncation:        "disabled",
		Metadata:          map[string]string{},
	}
}

func (o *OpenAI) messageItem(ids openaiIDs, status, text string) oaiMessageItem {
	item := oaiMessageItem{ID: ids.message, Type: "message", Status: status, Content: []oaiOutputText{}, Role: "assistant"}
	if status == "completed" {
		item.Content = append(item.Content, oaiText(text))
	}
	return item
}

// compaction is the answer of responses/compact: the conversation replaced
// by one opaque compaction item, with the usage the summary cost.
func (o *OpenAI) compaction(ids openaiIDs) oaiCompaction {
	return oaiCompaction{
		ID:        ids.response,
		Object:    "response.compaction",
		CreatedAt: ids.created,
		Output: []oaiCompactionItem{{
			Type:             "compaction",
			ID:               ids.compaction,
			EncryptedContent: base64.StdEncoding.EncodeToString([]byte("fake compaction of " + ids.response)),
		}},
		Usage: oaiUsage(o.opts.Usage),
	}
}

// oaiSSE writes `event:` + `data:` + blank line frames, flushing each.
type oaiSSE struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	events int
	failed bool
}

// oaiEvent is any streamed payload; its type names the SSE event.
type oaiEvent interface{ eventType() string }

func (s *oaiSSE) event(payload oaiEvent) bool {
	if s.failed {
		return false
	}
	b, err := json.Marshal(payload)
	if err != nil {
		panic(fmt.Sprintf("fakeupstream: marshal %s: %v", payload.eventType(), err)) // a bug in the fake's own types
	}
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", payload.eventType(), b); err != nil {
		s.failed = true
		return false
	}
	s.events++
	if s.rc.Flush() != nil {
		s.failed = true
		return false
	}
	return true
}

// Wire shapes. Field order follows the real API so the bytes look alike.

type oaiUsageJSON struct {
	InputTokens         int64                  `json:"input_tokens"`
	InputTokensDetails  oaiInputTokensDetails  `json:"input_tokens_details"`
	OutputTokens        int64                  `json:"output_tokens"`
	OutputTokensDetails oaiOutputTokensDetails `json:"output_tokens_details"`
	TotalTokens         int64                  `json:"total_tokens"`
}

type oaiInputTokensDetails struct {
	CachedTokens int64 `json:"cached_tokens"`
}

type oaiOutputTokensDetails struct {
	ReasoningTokens int64 `json:"reasoning_tokens"`
}

func oaiUsage(u OpenAIUsage) oaiUsageJSON {
	return oaiUsageJSON{
		InputTokens:         u.Input,
		InputTokensDetails:  oaiInputTokensDetails{CachedTokens: u.Cached},
		OutputTokens:        u.Output,
		OutputTokensDetails: oaiOutputTokensDetails{ReasoningTokens: u.Reasoning},
		TotalTokens:         u.Input + u.Output,
	}
}

type oaiOutputText struct {
	Type        string `json:"type"`
	Text        string `json:"text"`
	Annotations []any  `json:"annotations"`
	Logprobs    []any  `json:"logprobs"`
}

func oaiText(text string) oaiOutputText {
	return oaiOutputText{Type: "output_text", Text: text, Annotations: []any{}, Logprobs: []any{}}
}

type oaiMessageItem struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Status  string          `json:"status"`
	Content []oaiOutputText `json:"content"`
	Role    string          `json:"role"`
}

type oaiResponseError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type oaiReasoning struct {
	Effort  *string `json:"effort"`
	Summary *string `json:"summary"`
}

type oaiFormat struct {
	Type string `json:"type"`
}

type oaiTextConfig struct {
	Format oaiFormat `json:"format"`
}

type oaiResponse struct {
	ID                 string            `json:"id"`
	Object             string            `json:"object"`
	CreatedAt          int64             `json:"created_at"`
	Status             string            `json:"status"`
	Error              *oaiResponseError `json:"error"`
	IncompleteDetails  any               `json:"incomplete_details"`
	Instructions       any               `json:"instructions"`
	MaxOutputTokens    any               `json:"max_output_tokens"`
	Model              string            `json:"model"`
	Output             []oaiMessageItem  `json:"output"`
	ParallelToolCalls  bool              `json:"parallel_tool_calls"`
	PreviousResponseID any               `json:"previous_response_id"`
	Reasoning          oaiReasoning      `json:"reasoning"`
	Store              bool              `json:"store"`
	Temperature        float64           `json:"temperature"`
	Text               oaiTextConfig     `json:"text"`
	ToolChoice         string            `json:"tool_choice"`
	Tools              []any             `json:"tools"`
	TopP               float64           `json:"top_p"`
	Truncation         string            `json:"truncation"`
	Usage              *oaiUsageJSON     `json:"usage"`
	User               any               `json:"user"`
	Metadata           map[string]string `json:"metadata"`
}

type oaiResponseEvent struct {
	Type     string      `json:"type"`
	Seq      int         `json:"sequence_number"`
	Response oaiResponse `json:"response"`
}

type oaiItemEvent struct {
	Type        string         `json:"type"`
	Seq         int            `json:"sequence_number"`
	OutputIndex int            `json:"output_index"`
	Item        oaiMessageItem `json:"item"`
}

type oaiPartEvent struct {
	Type         string        `json:"type"`
	Seq          int           `json:"sequence_number"`
	ItemID       string        `json:"item_id"`
	OutputIndex  int           `json:"output_index"`
	ContentIndex int           `json:"content_index"`
	Part         oaiOutputText `json:"part"`
}

type oaiDeltaEvent struct {
	Type         string `json:"type"`
	Seq          int    `json:"sequence_number"`
	ItemID       string `json:"item_id"`
	OutputIndex  int    `json:"output_index"`
	ContentIndex int    `json:"content_index"`
	Delta        string `json:"delta"`
	Logprobs     []any  `json:"logprobs"`
}

type oaiTextDoneEvent struct {
	Type         string `json:"type"`
	Seq          int    `json:"sequence_number"`
	ItemID       string `json:"item_id"`
	OutputIndex  int    `json:"output_index"`
	ContentIndex int    `json:"content_index"`
	Text         string `json:"text"`
	Logprobs     []any  `json:"logprobs"`
}

func (e oaiResponseEvent) eventType() string { return e.Type }
func (e oaiItemEvent) eventType() string     { return e.Type }
func (e oaiPartEvent) eventType() string     { return e.Type }
func (e oaiDeltaEvent) eventType() string    { return e.Type }
func (e oaiTextDoneEvent) eventType() string { return e.Type }

type oaiCompactionItem struct {
	Type             string `json:"type"`
	ID               string `json:"id"`
	EncryptedContent string `json:"encrypted_content"`
}

type oaiCompaction struct {
	ID        string              `json:"id"`
	Object    string              `json:"object"`
	CreatedAt int64               `json:"created_at"`
	Output    []oaiCompactionItem `json:"output"`
	Usage     oaiUsageJSON        `json:"usage"`
}

type oaiErrorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

type oaiErrorBody struct {
	Error oaiErrorDetail `json:"error"`
}

type oaiUsageLimit struct {
	Type            string `json:"type"`
	Message         string `json:"message"`
	PlanType        string `json:"plan_type"`
	ResetsAt        int64  `json:"resets_at"`
	ResetsInSeconds int64  `json:"resets_in_seconds"`
}

type oaiUsageLimitBody struct {
	Error oaiUsageLimit `json:"error"`
}

type oaiModel struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type oaiModelList struct {
	Object string     `json:"object"`
	Data   []oaiModel `json:"data"`
}
