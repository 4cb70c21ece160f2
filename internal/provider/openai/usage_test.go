package openai

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
		reported bool
		done     bool
	}{
		// The fake's numbers: 16 input of which 5 cached, 3 output of which
		// 1 reasoning. Codex itself shows "tokens used: 14" = 11 + 3.
		{"codex_cli.sse", "gpt-6.1-sol-2026-09-01", pricing.Tokens{Input: 11, CacheRead: 5, Output: 3}, true, true},
		// Cut at max_output_tokens: consumed, billed, recorded.
		{"incomplete.sse", "gpt-5.4", pricing.Tokens{Input: 464, CacheRead: 1536, Output: 64}, true, true},
		{"failed.sse", "gpt-5-codex", pricing.Tokens{}, false, true},
		// Cut off mid-answer: the model from response.created, no usage.
		{"truncated.sse", "gpt-6.1-sol", pricing.Tokens{}, false, false},
		// No event: lines, CRLF endings, a comment block, a delta quoting
		// an event type.
		{"unnamed_crlf.sse", "gpt-5.4-mini", pricing.Tokens{Input: 40, Output: 8}, true, true},
		// A compatible provider without input_tokens_details.
		{"no_details.sse", "compat-model", pricing.Tokens{Input: 7, Output: 2}, true, true},
		// The same response reported twice counts once.
		{"repeated_completed.sse", "gpt-5.4", pricing.Tokens{Input: 6, CacheRead: 4, Output: 5}, true, true},
		// Two responses in one stream (a bridge's concatenation) add up.
		{"two_responses.sse", "gpt-5.4-mini", pricing.Tokens{Input: 16, CacheRead: 24, Output: 12}, true, true},
		{"error_only.sse", "", pricing.Tokens{}, false, false},
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
				if u.Model != tt.model || u.Tokens != tt.tokens || u.Reported != tt.reported || u.Done != tt.done {
					t.Errorf("%s: got model %q tokens %+v reported %v done %v\nwant model %q tokens %+v reported %v done %v",
						name, u.Model, u.Tokens, u.Reported, u.Done, tt.model, tt.tokens, tt.reported, tt.done)
				}
				model, tk, reported := u.Usage()
				if model != u.Model || tk != u.Tokens || reported != u.Reported {
					t.Errorf("%s: Usage() = %q %+v %v, fields say otherwise", name, model, tk, reported)
				}
			}
		})
	}
}

func TestStreamUsageOddEvents(t *testing.T) {
	completed := func(usage string) sse.Event {
		return sse.Event{Name: "response.completed", Data: []byte(`{"type":"response.completed","response":{"id":"r","model":"m","usage":` + usage + `}}`)}
	}
	tests := []struct {
		name     string
		ev       sse.Event
		reported bool
		tokens   pricing.Tokens
		model    string
	}{
		{"usage null", completed(`null`), false, pricing.Tokens{}, "m"},
		{"not json", sse.Event{Name: "response.completed", Data: []byte(`{{{`)}, false, pricing.Tokens{}, ""},
		{"negative counts", completed(`{"input_tokens":-5,"output_tokens":-1,"input_tokens_details":{"cached_tokens":-9}}`), true, pricing.Tokens{}, "m"},
		{"cached more than input", completed(`{"input_tokens":5,"output_tokens":1,"input_tokens_details":{"cached_tokens":9}}`), true, pricing.Tokens{CacheRead: 5, Output: 1}, "m"},
		{"cached without input", completed(`{"output_tokens":1,"input_tokens_details":{"cached_tokens":9}}`), true, pricing.Tokens{Output: 1}, "m"},
		{"counts as strings", completed(`{"input_tokens":"7","output_tokens":"x"}`), true, pricing.Tokens{Input: 7}, "m"},
		{"huge counts saturate", completed(`{"input_tokens":99999999999999999999,"output_tokens":1e30,"input_tokens_details":{"cached_tokens":2.5}}`),
			true, pricing.Tokens{Input: math.MaxInt64 - 2, CacheRead: 2, Output: math.MaxInt64}, "m"},
		{"reasoning is not added again", completed(`{"input_tokens":1,"output_tokens":10,"output_tokens_details":{"reasoning_tokens":8}}`),
			true, pricing.Tokens{Input: 1, Output: 10}, "m"},
		{"unnamed typed by data", sse.Event{Data: []byte(`{"type":"response.completed","response":{"model":"m","usage":{"input_tokens":1}}}`)},
			true, pricing.Tokens{Input: 1}, "m"},
		{"unnamed other type", sse.Event{Data: []byte(`{"type":"response.output_text.delta","delta":"\"response.completed\" {\"usage\":{\"input_tokens\":5}}"}`)},
			false, pricing.Tokens{}, ""},
		{"name wins over data type", sse.Event{Name: "response.output_item.done", Data: []byte(`{"type":"response.completed","response":{"usage":{"input_tokens":1}}}`)},
			false, pricing.Tokens{}, ""},
		{"in_progress carries no usage", sse.Event{Name: "response.in_progress", Data: []byte(`{"type":"response.in_progress","response":{"model":"x","usage":{"input_tokens":1}}}`)},
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
		{"response object",
			`{"id":"resp_1","object":"response","status":"completed","model":"gpt-5.4-2026-03-05","output":[{"type":"message","content":[{"type":"output_text","text":"pong"}]}],` +
				`"usage":{"input_tokens":16,"input_tokens_details":{"cached_tokens":5},"output_tokens":3,"output_tokens_details":{"reasoning_tokens":1},"total_tokens":19},"store":false}`,
			"gpt-5.4-2026-03-05", pricing.Tokens{Input: 11, CacheRead: 5, Output: 3}, true},
		{"compact answer", `{"output":[{"type":"compaction","encrypted_content":"x"}],"usage":{"input_tokens":900,"output_tokens":120}}`,
			"", pricing.Tokens{Input: 900, Output: 120}, true},
		{"error body", `{"error":{"message":"Invalid","type":"invalid_request_error","code":null}}`, "", pricing.Tokens{}, false},
		{"usage null", `{"model":"m","usage":null}`, "", pricing.Tokens{}, false},
		{"not json", `<html>502</html>`, "", pricing.Tokens{}, false},
		{"cut short", `{"model":"m","usage":{"input_tokens":16,"output_tok`, "", pricing.Tokens{}, false},
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

func TestIsPreambleAndFinal(t *testing.T) {
	tests := []struct {
		name            string
		ev              sse.Event
		preamble, final bool
	}{
		{"created", sse.Event{Name: "response.created", Data: []byte(`{}`)}, true, false},
		{"in progress", sse.Event{Name: "response.in_progress", Data: []byte(`{}`)}, true, false},
		{"unnamed created", sse.Event{Data: []byte(`{"type":"response.created"}`)}, true, false},
		{"comment", sse.Event{Raw: []byte(": keep-alive\n\n")}, true, false},
		{"empty data", sse.Event{Data: []byte(" ")}, true, false},
		{"output item added", sse.Event{Name: "response.output_item.added", Data: []byte(`{}`)}, false, false},
		{"text delta", sse.Event{Name: "response.output_text.delta", Data: []byte(`{}`)}, false, false},
		{"reasoning delta", sse.Event{Name: "response.reasoning_summary_text.delta", Data: []byte(`{}`)}, false, false},
		{"error", sse.Event{Name: "error", Data: []byte(`{}`)}, false, false},
		{"data without type", sse.Event{Data: []byte(`[DONE]`)}, false, false},
		{"completed", sse.Event{Name: "response.completed", Data: []byte(`{}`)}, false, true},
		{"incomplete", sse.Event{Name: "response.incomplete", Data: []byte(`{}`)}, false, true},
		{"failed", sse.Event{Name: "response.failed", Data: []byte(`{}`)}, false, true},
		{"unnamed completed", sse.Event{Data: []byte(`{"type":"response.completed"}`)}, false, true},
	}
	for _, tt := range tests {
		if got := IsPreamble(tt.ev); got != tt.preamble {
			t.Errorf("%s: IsPreamble = %v, want %v", tt.name, got, tt.preamble)
		}
		if got := IsFinal(tt.ev); got != tt.final {
			t.Errorf("%s: IsFinal = %v, want %v", tt.name, got, tt.final)
		}
	}
}

// TestObserveCheapForContent keeps the tap cheap on the events that make
// up almost all of a stream: no allocation, no JSON parse.
func TestObserveCheapForContent(t *testing.T) {
	var u StreamUsage
	evs := []sse.Event{
		{Name: "response.output_text.delta", Data: []byte(`{"type":"response.output_text.delta","sequence_number":4,"delta":"hello"}`)},
		{Name: "response.in_progress", Data: []byte(`{"type":"response.in_progress","response":{"model":"m"}}`)},
		{Data: []byte(`{"type":"response.output_text.delta","delta":"x"}`)},
		{Data: []byte(`{"type":"response.function_call_arguments.delta","delta":"{}"}`)},
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
	f.Add([]byte(`{"type":"response.completed","response":{"usage":{"input_tokens":9223372036854775807,"output_tokens":9223372036854775807,"input_tokens_details":{"cached_tokens":-1}}}}`))
	names := []string{"", "response.created", "response.completed", "response.incomplete", "response.failed"}
	f.Fuzz(func(t *testing.T, data []byte) {
		// As a stream, and as the data of each usage-bearing event (twice,
		// so repeated and concatenated responses are covered).
		u := observeStream(t, bytes.NewReader(data))
		checkTokens(t, u.Tokens)
		var v StreamUsage
		for _, name := range append(names, names...) {
			v.Observe(sse.Event{Name: name, Data: data})
			checkTokens(t, v.Tokens)
			if !v.Reported && v.Tokens != (pricing.Tokens{}) {
				t.Fatalf("tokens %+v without usage", v.Tokens)
			}
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
	if tk.Input < 0 || tk.Output < 0 || tk.CacheWrite5m != 0 || tk.CacheWrite1h != 0 || tk.CacheRead < 0 {
		t.Fatalf("impossible tokens %+v", tk)
	}
}

func BenchmarkStreamUsage(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("testdata", "usage", "codex_cli.sse"))
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
