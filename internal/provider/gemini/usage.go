package gemini

import (
	"bytes"

	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/provider"
	"github.com/crs-relay/crs/internal/sse"
)

// StreamUsage follows the usage a Gemini stream reports, native or Code
// Assist ({"response":{…}} chunks). Feed it every event with Observe and
// read the fields when the stream is over. The zero value is ready to use.
//
// Gemini repeats usageMetadata in its chunks with running totals, so the
// last report wins; nothing is added up. A usageMetadata object without
// any token count (Vertex-style chunks that only say trafficType) is not a
// report and changes nothing.
type StreamUsage struct {
	Model    string         // modelVersion, the last one seen
	Tokens   pricing.Tokens // from the last usage report, never negative
	Reported bool           // a usageMetadata with token counts was seen
	Finished bool           // a candidate with a finishReason was seen
}

// Observe looks at one event. Events that cannot carry usage or a model
// (no data, or data without those names) are skipped without parsing.
func (u *StreamUsage) Observe(ev sse.Event) {
	d := ev.Data
	if !bytes.Contains(d, []byte(`"usageMetadata"`)) && !bytes.Contains(d, []byte(`"modelVersion"`)) &&
		!bytes.Contains(d, []byte(`"finishReason"`)) {
		return
	}
	c := readChunk(gjson.ParseBytes(d))
	if c.model != "" {
		u.Model = c.model
	}
	if c.hasUsage {
		u.Tokens, u.Reported = c.tokens, true
	}
	if c.finished {
		u.Finished = true
	}
}

// BodyUsage extracts the model and usage of a non-streamed answer: a
// native GenerateContentResponse, a Code Assist {"response":{…}}, or a JSON
// array of either (streamGenerateContent without alt=sse), where the last
// element with usage wins. ok is false when there is no usage (an error
// body, a countTokens answer, not JSON at all).
func BodyUsage(body []byte) (model string, t pricing.Tokens, ok bool) {
	root := gjson.ParseBytes(body)
	switch {
	case root.IsObject():
		c := readChunk(root)
		return c.model, c.tokens, c.hasUsage
	case root.IsArray():
		root.ForEach(func(_, elem gjson.Result) bool {
			if !elem.IsObject() {
				return true
			}
			c := readChunk(elem)
			if c.model != "" {
				model = c.model
			}
			if c.hasUsage {
				t, ok = c.tokens, true
			}
			return true
		})
		return model, t, ok
	}
	return "", pricing.Tokens{}, false
}

// IsPreamble reports whether an event may be held back before the relay
// commits to an answer. Gemini streams have no preamble event of their own
// (no message_start, no ping): every chunk is a piece of the answer. What
// is held back is what says nothing yet: an event without data (a comment
// or keep-alive), and a chunk that is not a JSON object or that has no
// candidate content, no finishReason, no usageMetadata, no promptFeedback
// and no error. Anything with one of those is a real answer, or an error
// to classify with ClassifyStreamError, and ends the preamble.
func IsPreamble(ev sse.Event) bool {
	if len(bytes.TrimSpace(ev.Data)) == 0 {
		return true
	}
	root := gjson.ParseBytes(ev.Data)
	if !root.IsObject() {
		return true
	}
	if inner := root.Get("response"); inner.IsObject() {
		root = inner
	}
	answer := false
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "usageMetadata", "promptFeedback", "error":
			answer = v.Type != gjson.Null
		case "candidates":
			v.ForEach(func(_, cand gjson.Result) bool {
				answer = nonEmptyArray(cand.Get("content.parts")) || cand.Get("finishReason").String() != ""
				return !answer
			})
		}
		return !answer
	})
	return !answer
}

// nonEmptyArray reports whether r is an array with at least one element,
// without reading past the first.
func nonEmptyArray(r gjson.Result) bool {
	if !r.IsArray() {
		return false
	}
	some := false
	r.ForEach(func(_, _ gjson.Result) bool {
		some = true
		return false
	})
	return some
}

// chunk is what one response object says about usage.
type chunk struct {
	model    string
	tokens   pricing.Tokens
	hasUsage bool
	finished bool
}

// usageFields are usageMetadata's token counts; at least one must be
// present for the object to count as a report.
var usageFields = [...]string{
	"promptTokenCount", "cachedContentTokenCount", "candidatesTokenCount",
	"thoughtsTokenCount", "toolUsePromptTokenCount", "totalTokenCount",
}

// readChunk reads a response object in one pass over its keys. A Code
// Assist chunk, {"response":{…},"traceId":…}, is read from its inner
// object (one level only: a "response" inside that is not unwrapped).
func readChunk(root gjson.Result) chunk {
	c, inner := readFields(root)
	if inner.IsObject() {
		c, _ = readFields(inner)
	}
	return c
}

// readFields reads the usage fields of one object and returns its
// "response" member, if any, for the caller to unwrap.
func readFields(root gjson.Result) (chunk, gjson.Result) {
	var c chunk
	var inner gjson.Result
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "response":
			inner = v
		case "modelVersion":
			c.model = v.String()
		case "usageMetadata":
			c.tokens, c.hasUsage = readUsage(v)
		case "candidates":
			v.ForEach(func(_, cand gjson.Result) bool {
				if cand.Get("finishReason").String() != "" {
					c.finished = true
				}
				return !c.finished
			})
		}
		return true
	})
	return c, inner
}

// readUsage maps usageMetadata onto pricing.Tokens. promptTokenCount
// includes the cached part, so input is prompt minus cached (never below
// 0) and the cached part is a cache read; output is candidates plus
// thoughts, since thinking is billed as output.
func readUsage(m gjson.Result) (pricing.Tokens, bool) {
	if !m.IsObject() {
		return pricing.Tokens{}, false
	}
	var res [len(usageFields)]gjson.Result
	found := false
	m.ForEach(func(k, v gjson.Result) bool {
		for i, name := range usageFields {
			if k.Str == name {
				res[i], found = v, true
			}
		}
		return true
	})
	if !found {
		return pricing.Tokens{}, false
	}
	prompt, cached := provider.TokenCount(res[0]), provider.TokenCount(res[1])
	return pricing.Tokens{
		Input:     max(prompt-cached, 0),
		CacheRead: cached,
		Output:    provider.SatAdd(provider.TokenCount(res[2]), provider.TokenCount(res[3])),
	}, true
}
