package anthropic

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"

	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/sse"
)

// observeStream runs a whole stream through sse.Reader into a StreamUsage,
// the way the relay's tap does.
func observeStream(t testing.TB, r io.Reader) StreamUsage {
	t.Helper()
	var u StreamUsage
	rd := sse.NewReader(r)
	for {
		ev, err := rd.Next()
		if len(ev.Raw) > 0 {
			u.Observe(ev)
		}
		if err == io.EOF {
			return u
		}
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatal(err)
		}
	}
}

func TestStreamUsageGolden(t *testing.T) {
	tests := []struct {
		file     string
		model    string
		tokens   pricing.Tokens
		started  bool
		stopped  bool
		reported bool
	}{
		{"basic.sse", "claude-opus-5-5",
			pricing.Tokens{Input: 11, Output: 3, CacheWrite5m: 7, CacheRead: 5}, true, true, true},
		// 1000 written, 300 said 5m and 500 said 1h: the unsplit 200 is 5m.
		{"split_remainder.sse", "claude-sonnet-4-5-20250929",
			pricing.Tokens{Input: 4, Output: 42, CacheWrite5m: 500, CacheWrite1h: 500, CacheRead: 20000}, true, true, true},
		// No cache_creation object: every written token is 5m.
		{"missing_split.sse", "claude-3-5-haiku-20241022",
			pricing.Tokens{Input: 9, Output: 17, CacheWrite5m: 800}, true, true, true},
		// Final prompt figures in message_delta replace the start's.
		{"delta_override.sse", "claude-opus-4-8",
			pricing.Tokens{Input: 2000, Output: 50, CacheWrite5m: 50, CacheWrite1h: 100, CacheRead: 300}, true, true, true},
		// Zeros in message_delta do not erase what message_start said.
		{"delta_zero_keeps_start.sse", "claude-haiku-4-5-20251001",
			pricing.Tokens{Input: 120, Output: 4096, CacheWrite1h: 64, CacheRead: 512}, true, true, true},
		// No event: lines, CRLF endings, a comment block.
		{"unnamed_crlf.sse", "claude-sonnet-4-6",
			pricing.Tokens{Input: 3, Output: 8, CacheRead: 40}, true, true, true},
		// Cut off mid-answer: usage from message_start, not stopped.
		{"truncated.sse", "claude-opus-5-5",
			pricing.Tokens{Input: 50, Output: 1}, true, false, true},
		{"error_only.sse", "", pricing.Tokens{}, false, false, false},
		// Two messages in one stream (a bridge's concatenation) add up.
		{"two_messages.sse", "claude-opus-5-5",
			pricing.Tokens{Input: 30, Output: 12, CacheWrite5m: 30, CacheRead: 40}, true, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", "usage", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			for name, r := range map[string]io.Reader{
				"whole":    bytes.NewReader(raw),
				"one byte": iotest.OneByteReader(bytes.NewReader(raw)),
			} {
				u := observeStream(t, r)
				if u.Model != tt.model || u.Tokens != tt.tokens || u.Started != tt.started ||
					u.Stopped != tt.stopped || u.Reported != tt.reported {
					t.Errorf("%s: got model %q tokens %+v started %v stopped %v reported %v\nwant model %q tokens %+v started %v stopped %v reported %v",
						name, u.Model, u.Tokens, u.Started, u.Stopped, u.Reported,
						tt.model, tt.tokens, tt.started, tt.stopped, tt.reported)
				}
			}
		})
	}
}

// TestStreamUsageProgress checks the fields as events arrive, since the
// relay records at message_stop and on a broken stream, not only at EOF.
func TestStreamUsageProgress(t *testing.T) {
	var u StreamUsage
	u.Observe(sse.Event{Name: "ping", Data: []byte(`{"type":"ping"}`)})
	if u.Reported || u.Started {
		t.Fatal("ping reported usage")
	}
	u.Observe(sse.Event{Name: "message_start", Data: []byte(`{"type":"message_start","message":{"model":"m","usage":{"input_tokens":5,"output_tokens":1}}}`)})
	if !u.Started || !u.Reported || u.Stopped || u.Tokens != (pricing.Tokens{Input: 5, Output: 1}) {
		t.Fatalf("after start: %+v", u)
	}
	u.Observe(sse.Event{Name: "message_delta", Data: []byte(`{"type":"message_delta","usage":{"output_tokens":9}}`)})
	u.Observe(sse.Event{Name: "message_delta", Data: []byte(`{"type":"message_delta","usage":{"output_tokens":12}}`)})
	if u.Tokens != (pricing.Tokens{Input: 5, Output: 12}) {
		t.Fatalf("cumulative output must replace, not add: %+v", u.Tokens)
	}
	u.Observe(sse.Event{Name: "message_stop", Data: []byte(`{"type":"message_stop"}`)})
	if !u.Stopped {
		t.Fatal("not stopped")
	}
}

func TestStreamUsageOddEvents(t *testing.T) {
	tests := []struct {
		name     string
		ev       sse.Event
		reported bool
		tokens   pricing.Tokens
		model    string
	}{
		{"start without usage", sse.Event{Name: "message_start", Data: []byte(`{"message":{"model":"m"}}`)}, false, pricing.Tokens{}, "m"},
		{"delta without usage", sse.Event{Name: "message_delta", Data: []byte(`{"delta":{}}`)}, false, pricing.Tokens{}, ""},
		{"not json", sse.Event{Name: "message_start", Data: []byte(`{{{`)}, false, pricing.Tokens{}, ""},
		{"negative counts", sse.Event{Name: "message_start", Data: []byte(`{"message":{"usage":{"input_tokens":-5,"output_tokens":-1,"cache_creation_input_tokens":-9}}}`)},
			true, pricing.Tokens{}, ""},
		{"counts as strings", sse.Event{Name: "message_start", Data: []byte(`{"message":{"usage":{"input_tokens":"7","output_tokens":"x"}}}`)},
			true, pricing.Tokens{Input: 7}, ""},
		{"huge counts saturate", sse.Event{Name: "message_start", Data: []byte(`{"message":{"usage":{"input_tokens":99999999999999999999,"output_tokens":1e30,"cache_read_input_tokens":2.5}}}`)},
			true, pricing.Tokens{Input: math.MaxInt64, Output: math.MaxInt64, CacheRead: 2}, ""},
		{"split larger than total wins", sse.Event{Name: "message_start", Data: []byte(`{"message":{"usage":{"cache_creation_input_tokens":10,"cache_creation":{"ephemeral_5m_input_tokens":8,"ephemeral_1h_input_tokens":9}}}}`)},
			true, pricing.Tokens{CacheWrite5m: 8, CacheWrite1h: 9}, ""},
		{"split without total", sse.Event{Name: "message_start", Data: []byte(`{"message":{"usage":{"cache_creation":{"ephemeral_1h_input_tokens":6}}}}`)},
			true, pricing.Tokens{CacheWrite1h: 6}, ""},
		{"unnamed typed by data", sse.Event{Data: []byte(`{"type":"message_start","message":{"model":"m","usage":{"input_tokens":1}}}`)},
			true, pricing.Tokens{Input: 1}, "m"},
		{"unnamed other type", sse.Event{Data: []byte(`{"type":"content_block_delta","delta":{"text":"\"message_start"}}`)},
			false, pricing.Tokens{}, ""},
		{"name wins over data type", sse.Event{Name: "content_block_delta", Data: []byte(`{"type":"message_start","message":{"usage":{"input_tokens":1}}}`)},
			false, pricing.Tokens{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var u StreamUsage
			u.Observe(tt.ev)
			if u.Reported != tt.reported || u.Tokens != tt.tokens || u.Model != tt.model {
				t.Fatalf("got reported %v tokens %+v model %q", u.Reported, u.Tokens, u.Model)
			}
		})
	}
}

func TestBodyUsage(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		model  string
		tokens pricing.Tokens
		ok     bool
	}{
		{"all five classes",
			`{"id":"msg_1","type":"message","role":"assistant","model":"claude-opus-5-5","content":[{"type":"text","text":"pong"}],"stop_reason":"end_turn","usage":{"input_tokens":11,"cache_creation_input_tokens":900,"cache_read_input_tokens":5,"cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":700},"output_tokens":3,"service_tier":"standard"}}`,
			"claude-opus-5-5", pricing.Tokens{Input: 11, Output: 3, CacheWrite5m: 200, CacheWrite1h: 700, CacheRead: 5}, true},
		{"no split", `{"model":"m","usage":{"input_tokens":1,"output_tokens":2,"cache_creation_input_tokens":3}}`,
			"m", pricing.Tokens{Input: 1, Output: 2, CacheWrite5m: 3}, true},
		{"error body", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, "", pricing.Tokens{}, false},
		{"count_tokens answer", `{"input_tokens":42}`, "", pricing.Tokens{}, false},
		{"not json", `<html>502</html>`, "", pricing.Tokens{}, false},
		{"empty", ``, "", pricing.Tokens{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model, tk, ok := BodyUsage([]byte(tt.body))
			if model != tt.model || tk != tt.tokens || ok != tt.ok {
				t.Fatalf("got %q %+v %v", model, tk, ok)
			}
		})
	}
}

// TestObserveCheapForContent keeps the tap cheap on the events that make
// up almost all of a stream: no allocation, no JSON parse.
func TestObserveCheapForContent(t *testing.T) {
	var u StreamUsage
	evs := []sse.Event{
		{Name: "content_block_delta", Data: []byte(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hello"}}`)},
		{Name: "ping", Data: []byte(`{"type": "ping"}`)},
		{Data: []byte(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}`)},
		{Name: "message_stop", Data: []byte(`{"type":"message_stop"}`)},
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, ev := range evs {
			u.Observe(ev)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per round", n)
	}
}

func FuzzStreamUsage(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "usage", "*.sse"))
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte(`{"type":"message_start","message":{"usage":{"cache_creation_input_tokens":9223372036854775807,"cache_creation":{"ephemeral_5m_input_tokens":9223372036854775807,"ephemeral_1h_input_tokens":9223372036854775807}}}}`))
	names := []string{"", "message_start", "message_delta", "message_stop"}
	f.Fuzz(func(t *testing.T, data []byte) {
		// As a stream, and as the data of each usage-bearing event (twice,
		// so a second message_start and repeated deltas are covered).
		u := observeStream(t, bytes.NewReader(data))
		checkTokens(t, u.Tokens)
		var v StreamUsage
		for _, name := range append(names, names...) {
			v.Observe(sse.Event{Name: name, Data: data})
			checkTokens(t, v.Tokens)
		}
		_, tk, ok := BodyUsage(data)
		checkTokens(t, tk)
		if !ok && tk != (pricing.Tokens{}) {
			t.Fatalf("tokens %+v without usage", tk)
		}
	})
}

func checkTokens(t *testing.T, tk pricing.Tokens) {
	t.Helper()
	if tk.Input < 0 || tk.Output < 0 || tk.CacheWrite5m < 0 || tk.CacheWrite1h < 0 || tk.CacheRead < 0 {
		t.Fatalf("negative tokens %+v", tk)
	}
}

func BenchmarkStreamUsage(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("testdata", "usage", "basic.sse"))
	if err != nil {
		b.Fatal(err)
	}
	var evs []sse.Event
	rd := sse.NewReader(bytes.NewReader(raw))
	for {
		ev, err := rd.Next()
		if err != nil {
			break
		}
		evs = append(evs, ev)
	}
	b.ReportAllocs()
	for b.Loop() {
		var u StreamUsage
		for _, ev := range evs {
			u.Observe(ev)
		}
	}
}
