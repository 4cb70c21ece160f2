package anthropic

import (
	"bytes"

	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/provider"
	"github.com/crs-relay/crs/internal/sse"
)

// StreamUsage accumulates the usage a Messages stream reports. Feed it
// every event with Observe; read the fields once the stream is over (or at
// message_stop). The zero value is ready to use.
//
// The Messages API reports usage twice: message_start carries the model
// and the prompt side (input, cache writes with their 5m/1h split, cache
// reads, and an early output count), message_delta carries the cumulative
// output and, in newer API versions, may repeat the prompt side with final
// values. Non-zero values in message_delta therefore replace those from
// message_start; nothing is ever added twice.
type StreamUsage struct {
	Model    string         // message.model from message_start
	Tokens   pricing.Tokens // totals so far, never negative
	Started  bool           // a message_start with a usage object was seen
	Stopped  bool           // message_stop was seen
	Reported bool           // any usage object was seen

	// earlier holds the totals of messages finished before the current
	// one, for a stream with more than one message_start (the official
	// API sends one; some bridges concatenate several).
	earlier pricing.Tokens
	cur     usageCounts
}

// usageCounts is one message's usage as reported, before the cache write
// total is split into 5m and 1h.
type usageCounts struct {
	input, output, cacheRead int64
	cacheWrite               int64 // cache_creation_input_tokens
	write1h                  int64 // ephemeral_1h_input_tokens
	write5m                  int64 // ephemeral_5m_input_tokens
}

// Observe looks at one event. It is cheap for the events that carry no
// usage: those are recognised by name without touching the data. An event
// without a name (some gateways drop the event: line) is typed by its
// data's "type" field.
func (u *StreamUsage) Observe(ev sse.Event) {
	typ := ev.Name
	if typ == "" {
		if !bytes.Contains(ev.Data, []byte(`"message_`)) {
			return
		}
		typ = gjson.GetBytes(ev.Data, "type").String()
	}
	switch typ {
	case "message_start":
		msg := gjson.GetBytes(ev.Data, "message")
		if m := msg.Get("model").String(); m != "" {
			u.Model = m
		}
		usage := msg.Get("usage")
		if !usage.IsObject() {
			return
		}
		if u.Started {
			u.earlier = u.Tokens
		}
		u.cur = readUsage(usage, usageCounts{}, false)
		u.Started, u.Reported = true, true
	case "message_delta":
		usage := gjson.GetBytes(ev.Data, "usage")
		if !usage.IsObject() {
			return
		}
		u.cur = readUsage(usage, u.cur, true)
		u.Reported = true
	case "message_stop":
		u.Stopped = true
		return
	default:
		return
	}
	u.Tokens = provider.AddTokens(u.earlier, u.cur.tokens())
}

// BodyUsage extracts the model and usage of a non-streamed Messages
// response. ok is false when the body has no usage object (an error body,
// a count_tokens answer, or not JSON at all).
func BodyUsage(body []byte) (model string, t pricing.Tokens, ok bool) {
	res := gjson.GetManyBytes(body, "usage", "model")
	if !res[0].IsObject() {
		return "", pricing.Tokens{}, false
	}
	return res[1].String(), readUsage(res[0], usageCounts{}, false).tokens(), true
}

// readUsage reads a usage object onto prev. In a delta (update true) only
// fields that are present and non-zero replace prev's values, since a
// delta may leave out or zero what message_start already said; output is
// cumulative and replaces whenever present.
func readUsage(usage gjson.Result, prev usageCounts, update bool) usageCounts {
	c := prev
	set := func(dst *int64, r gjson.Result) {
		if !r.Exists() {
			return
		}
		v := provider.TokenCount(r)
		if update && v == 0 {
			return
		}
		*dst = v
	}
	f := usage.Get
	set(&c.input, f("input_tokens"))
	set(&c.cacheRead, f("cache_read_input_tokens"))
	if out := f("output_tokens"); out.Exists() {
		c.output = provider.TokenCount(out)
	}
	set(&c.cacheWrite, f("cache_creation_input_tokens"))
	if split := f("cache_creation"); split.IsObject() {
		set(&c.write5m, split.Get("ephemeral_5m_input_tokens"))
		set(&c.write1h, split.Get("ephemeral_1h_input_tokens"))
	} else if !update {
		// No split at all: everything written counts as 5m (tokens()).
		c.write5m, c.write1h = 0, 0
	}
	return c
}

// tokens splits the cache write total: the given 5m and 1h counts, with
// any unsplit remainder counted as 5m (the default TTL). If the split adds
// up to more than the total, the split wins.
func (c usageCounts) tokens() pricing.Tokens {
	split := provider.SatAdd(c.write5m, c.write1h)
	w5m := c.write5m
	if c.cacheWrite > split {
		w5m = provider.SatAdd(w5m, c.cacheWrite-split)
	}
	return pricing.Tokens{
		Input:        c.input,
		Output:       c.output,
		CacheWrite5m: w5m,
		CacheWrite1h: c.write1h,
		CacheRead:    c.cacheRead,
	}
}
