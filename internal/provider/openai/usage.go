package openai

import (
	"bytes"

	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/provider"
	"github.com/crs-relay/crs/internal/sse"
)

// StreamUsage accumulates the usage a Responses stream reports. Feed it
// every event with Observe; read the fields once the stream is over (or at
// the terminal event). The zero value is ready to use.
//
// A Responses stream reports usage once, in its terminal event:
// response.completed, or response.incomplete when the answer was cut at
// max_output_tokens, or (rarely with a usage object) response.failed. The
// tokens of an incomplete or failed response were consumed and are billed,
// so they are recorded too. The counts map to price classes as:
//
//	Input     = input_tokens − input_tokens_details.cached_tokens
//	CacheRead = cached_tokens (never more than input_tokens)
//	Output    = output_tokens, which already includes the reasoning tokens
//
// The Responses API has no cache writes: they are free and not reported.
type StreamUsage struct {
	Model    string         // response.model
	Tokens   pricing.Tokens // totals so far, never negative
	Reported bool           // a terminal event with a usage object was seen
	// Done: a terminal event (completed, incomplete, failed) was seen.
	Done bool

	// earlier holds the totals of responses finished before the current
	// one, for a stream that carries more than one response (the API
	// sends one; a bridge might concatenate several). A terminal event
	// repeated for the same response id replaces rather than adds.
	earlier pricing.Tokens
	cur     pricing.Tokens
	curID   string
}

// Observe looks at one event. It is cheap for the events that carry no
// usage: those are recognised by name without touching the data. An event
// without a name (some gateways drop the event: line) is typed by its
// data's "type" field, looked at only when the data mentions a type that
// matters.
func (u *StreamUsage) Observe(ev sse.Event) {
	typ := ev.Name
	if typ == "" {
		if !bytes.Contains(ev.Data, []byte(`"response.c`)) &&
			!bytes.Contains(ev.Data, []byte(`"response.incomplete"`)) &&
			!bytes.Contains(ev.Data, []byte(`"response.failed"`)) {
			return
		}
		typ = gjson.GetBytes(ev.Data, "type").String()
	}
	switch typ {
	case "response.created":
		if m := gjson.GetBytes(ev.Data, "response.model").String(); m != "" {
			u.Model = m
		}
	case "response.completed", "response.incomplete", "response.failed":
		// A terminal event cut off mid-way (the stream broke inside it)
		// still parses leniently; its numbers cannot be trusted.
		if !gjson.ValidBytes(ev.Data) {
			return
		}
		u.Done = true
		res := gjson.GetManyBytes(ev.Data, "response.model", "response.usage", "response.id")
		if m := res[0].String(); m != "" {
			u.Model = m
		}
		if !res[1].IsObject() {
			return
		}
		id := res[2].String()
		if u.Reported && (id == "" || id != u.curID) {
			u.earlier = provider.AddTokens(u.earlier, u.cur)
		}
		u.cur, u.curID, u.Reported = readUsage(res[1]), id, true
		u.Tokens = provider.AddTokens(u.earlier, u.cur)
	}
}

// Usage returns what the stream reported so far: the model, the tokens by
// price class, and whether any usage was reported at all.
func (u *StreamUsage) Usage() (model string, tk pricing.Tokens, reported bool) {
	return u.Model, u.Tokens, u.Reported
}

// BodyUsage extracts the model and usage of a non-streamed Responses
// answer (the Response object, or a /responses/compact answer). ok is false
// when the body has no usage object (an error body) or is not valid JSON
// (not JSON at all, or cut short).
func BodyUsage(body []byte) (model string, tk pricing.Tokens, ok bool) {
	if !gjson.ValidBytes(body) {
		return "", pricing.Tokens{}, false
	}
	res := gjson.GetManyBytes(body, "usage", "model")
	if !res[0].IsObject() {
		return "", pricing.Tokens{}, false
	}
	return res[1].String(), readUsage(res[0]), true
}

// readUsage maps a Responses usage object to price classes.
func readUsage(usage gjson.Result) pricing.Tokens {
	input := provider.TokenCount(usage.Get("input_tokens"))
	cached := provider.TokenCount(usage.Get("input_tokens_details.cached_tokens"))
	// Cached tokens are a part of the input; a report claiming more cached
	// than input is cut to the input, so the prompt total stays what the
	// upstream said it was.
	cached = min(cached, input)
	return pricing.Tokens{
		Input:     input - cached,
		Output:    provider.TokenCount(usage.Get("output_tokens")),
		CacheRead: cached,
	}
}

// IsPreamble reports whether ev is held back before the relay's commit
// point: response.created and response.in_progress, which say nothing yet,
// and comment-only blocks (keep-alives). The first other event commits the
// response to the account. An error or response.failed event is not
// preamble: when it is the account's fault the relay has already failed
// over on it (ClassifyStreamEvent), and when it is the client's, the
// client should see it.
func IsPreamble(ev sse.Event) bool {
	switch eventType(ev) {
	case "response.created", "response.in_progress":
		return true
	case "":
		return len(bytes.TrimSpace(ev.Data)) == 0
	}
	return false
}

// IsFinal reports whether ev ends a response: response.completed,
// response.incomplete or response.failed. It carries the usage, so the
// relay may hold it until the usage record is durable.
func IsFinal(ev sse.Event) bool {
	switch eventType(ev) {
	case "response.completed", "response.incomplete", "response.failed":
		return true
	}
	return false
}

// eventType is the event's type: its event: field, else the data's "type".
func eventType(ev sse.Event) string {
	if ev.Name != "" {
		return ev.Name
	}
	if len(ev.Data) == 0 {
		return ""
	}
	return gjson.GetBytes(ev.Data, "type").String()
}
