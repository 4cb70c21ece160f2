package gemini

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

// readEvents reads a whole stream with sse.Reader, the way the relay's tap
// sees it, including a cut-off last event.
func readEvents(t testing.TB, r io.Reader) []sse.Event {
	t.Helper()
	var evs []sse.Event
	rd := sse.NewReader(r)
	for {
		ev, err := rd.Next()
		if len(ev.Raw) > 0 {
			evs = append(evs, ev)
		}
		if err == io.EOF {
			return evs
		}
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatal(err)
		}
	}
}

func observeStream(t testing.TB, r io.Reader) StreamUsage {
	t.Helper()
	var u StreamUsage
	for _, ev := range readEvents(t, r) {
		u.Observe(ev)
	}
	return u
}

func TestStreamUsageGolden(t *testing.T) {
	tests := []struct {
		file     string
		model    string
		tokens   pricing.Tokens
		reported bool
		finished bool
	}{
		// Gemini API, CRLF: the last chunk's totals, prompt 20 of which 4
		// cached, output 6 + 2 thinking.
		{"native.sse", "gemini-3.8-flash", pricing.Tokens{Input: 16, CacheRead: 4, Output: 8}, true, true},
		// Code Assist, wrapped in {"response":…}: the last report wins, the
		// thought-only first chunk does not add up.
		{"codeassist.sse", "gemini-2.5-pro", pricing.Tokens{Input: 2000, CacheRead: 3000, Output: 192}, true, true},
		// A usageMetadata with only trafficType after the final one is not a
		// report.
		{"traffic_tail.sse", "gemini-2.5-flash-001", pricing.Tokens{Input: 7, Output: 3}, true, true},
		// Cut mid-chunk: what the last whole chunk said, not finished.
		{"truncated.sse", "gemini-3.1-pro-preview", pricing.Tokens{Input: 50, Output: 2}, true, false},
		{"error_only.sse", "", pricing.Tokens{}, false, false},
		// Counts as strings, cached above prompt, a negative count.
		{"odd_counts.sse", "gemini-2.5-flash", pricing.Tokens{CacheRead: 40, Output: 5}, true, true},
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
				if u.Model != tt.model || u.Tokens != tt.tokens || u.Reported != tt.reported || u.Finished != tt.finished {
					t.Errorf("%s: got model %q tokens %+v reported %v finished %v\nwant model %q tokens %+v reported %v finished %v",
						name, u.Model, u.Tokens, u.Reported, u.Finished, tt.model, tt.tokens, tt.reported, tt.finished)
				}
			}
		})
	}
}

// TestStreamUsageLastReportWins checks the fields as chunks arrive: the
// relay records on a broken stream too, not only at the end.
func TestStreamUsageLastReportWins(t *testing.T) {
	var u StreamUsage
	u.Observe(sse.Event{Data: []byte(`{"candidates":[{"content":{"parts":[{"text":"a"}]}}],"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":1},"modelVersion":"m1"}`)})
	if !u.Reported || u.Finished || u.Model != "m1" || u.Tokens != (pricing.Tokens{Input: 10, Output: 1}) {
		t.Fatalf("after first chunk: %+v", u)
	}
	u.Observe(sse.Event{Data: []byte(`{"candidates":[{"content":{"parts":[{"text":"b"}]}}],"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":4}}`)})
	if u.Tokens != (pricing.Tokens{Input: 10, Output: 4}) || u.Model != "m1" {
		t.Fatalf("running totals must replace, not add; a chunk without modelVersion keeps the model: %+v", u)
	}
	u.Observe(sse.Event{Data: []byte(`{"candidates":[{"finishReason":"MAX_TOKENS"}],"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":9,"thoughtsTokenCount":3},"modelVersion":"m2"}`)})
	if !u.Finished || u.Model != "m2" || u.Tokens != (pricing.Tokens{Input: 10, Output: 12}) {
		t.Fatalf("after last chunk: %+v", u)
	}
}

func TestStreamUsageOddEvents(t *testing.T) {
	tests := []struct {
		name     string
		data     string
		reported bool
		tokens   pricing.Tokens
		model    string
	}{
		{"no usage", `{"candidates":[{"content":{"parts":[{"text":"x"}]}}]}`, false, pricing.Tokens{}, ""},
		{"model only", `{"modelVersion":"m"}`, false, pricing.Tokens{}, "m"},
		{"empty usage object", `{"usageMetadata":{}}`, false, pricing.Tokens{}, ""},
		{"usage not an object", `{"usageMetadata":12}`, false, pricing.Tokens{}, ""},
		{"not json", `{{{"usageMetadata"`, false, pricing.Tokens{}, ""},
		{"zero counts are a report", `{"usageMetadata":{"promptTokenCount":0}}`, true, pricing.Tokens{}, ""},
		{"huge counts saturate", `{"usageMetadata":{"promptTokenCount":99999999999999999999,"candidatesTokenCount":1e30,"thoughtsTokenCount":9223372036854775807}}`,
			true, pricing.Tokens{Input: math.MaxInt64, Output: math.MaxInt64}, ""},
		{"fractions truncate", `{"usageMetadata":{"promptTokenCount":7.9,"cachedContentTokenCount":2.5}}`, true, pricing.Tokens{Input: 5, CacheRead: 2}, ""},
		{"wrapped", `{"response":{"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1},"modelVersion":"w"},"traceId":"t"}`,
			true, pricing.Tokens{Input: 3, Output: 1}, "w"},
		{"usage nested elsewhere is not read", `{"candidates":[{"content":{"parts":[{"text":"\"usageMetadata\":{\"promptTokenCount\":5}"}]}}]}`,
			false, pricing.Tokens{}, ""},
		{"tool-use prompt alone is a report", `{"usageMetadata":{"toolUsePromptTokenCount":8}}`, true, pricing.Tokens{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var u StreamUsage
			u.Observe(sse.Event{Data: []byte(tt.data)})
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
		{"native",
			`{"candidates":[{"content":{"parts":[{"text":"pong"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":20,"candidatesTokenCount":6,"totalTokenCount":32,"cachedContentTokenCount":4,"thoughtsTokenCount":2},"modelVersion":"gemini-3.8-flash","responseId":"r"}`,
			"gemini-3.8-flash", pricing.Tokens{Input: 16, CacheRead: 4, Output: 8}, true},
		{"code assist",
			`{"response":{"candidates":[],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":1},"modelVersion":"gemini-2.5-pro"},"traceId":"t"}`,
			"gemini-2.5-pro", pricing.Tokens{Input: 9, Output: 1}, true},
		{"array of chunks, last report wins",
			`[{"usageMetadata":{"promptTokenCount":5},"modelVersion":"a"},{"candidates":[]},{"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":7}},3]`,
			"a", pricing.Tokens{Input: 5, Output: 7}, true},
		{"array of wrapped chunks",
			`[{"response":{"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":1},"modelVersion":"b"}}]`,
			"b", pricing.Tokens{Input: 2, Output: 1}, true},
		{"error body", `{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}`, "", pricing.Tokens{}, false},
		{"countTokens answer", `{"totalTokens":42,"promptTokensDetails":[{"modality":"TEXT","tokenCount":42}]}`, "", pricing.Tokens{}, false},
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

func TestIsPreamble(t *testing.T) {
	tests := []struct {
		name string
		ev   sse.Event
		want bool
	}{
		{"comment", sse.Event{Raw: []byte(": keep-alive\n\n")}, true},
		{"empty data", sse.Event{Data: []byte(""), Raw: []byte("data:\n\n")}, true},
		{"not an object", sse.Event{Data: []byte(`[1,2]`)}, true},
		{"not json", sse.Event{Data: []byte(`hello`)}, true},
		{"role only", sse.Event{Data: []byte(`{"candidates":[{"content":{"role":"model"}}]}`)}, true},
		{"empty parts", sse.Event{Data: []byte(`{"candidates":[{"content":{"role":"model","parts":[]},"index":0}],"modelVersion":"m"}`)}, true},
		{"wrapped, empty", sse.Event{Data: []byte(`{"response":{"candidates":[]},"traceId":"t"}`)}, true},
		{"null usage", sse.Event{Data: []byte(`{"candidates":[],"usageMetadata":null}`)}, true},
		{"text", sse.Event{Data: []byte(`{"candidates":[{"content":{"role":"model","parts":[{"text":"po"}]}}]}`)}, false},
		{"thought", sse.Event{Data: []byte(`{"candidates":[{"content":{"parts":[{"thought":true,"text":"hmm"}]}}]}`)}, false},
		{"second candidate has text", sse.Event{Data: []byte(`{"candidates":[{"content":{"parts":[]}},{"content":{"parts":[{"text":"x"}]}}]}`)}, false},
		{"finish without content", sse.Event{Data: []byte(`{"candidates":[{"finishReason":"SAFETY"}]}`)}, false},
		{"usage only", sse.Event{Data: []byte(`{"usageMetadata":{"promptTokenCount":3}}`)}, false},
		{"blocked prompt", sse.Event{Data: []byte(`{"promptFeedback":{"blockReason":"SAFETY"}}`)}, false},
		{"error chunk", sse.Event{Data: []byte(`{"error":{"code":503,"message":"x","status":"UNAVAILABLE"}}`)}, false},
		{"wrapped text", sse.Event{Data: []byte(`{"response":{"candidates":[{"content":{"parts":[{"text":"x"}]}}]},"traceId":"t"}`)}, false},
	}
	for _, tt := range tests {
		if got := IsPreamble(tt.ev); got != tt.want {
			t.Errorf("%s: IsPreamble = %v, want %v", tt.name, got, tt.want)
		}
	}
	// Every golden stream's first data chunk is a real answer: nothing is
	// held back longer than it must be.
	files, _ := filepath.Glob(filepath.Join("testdata", "usage", "*.sse"))
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range readEvents(t, bytes.NewReader(raw)) {
			if ev.Data != nil {
				if IsPreamble(ev) {
					t.Errorf("%s: first data chunk held back as preamble", file)
				}
				break
			}
		}
	}
}

// TestObserveCheapWithoutUsage keeps the tap cheap on chunks that carry
// nothing it reads.
func TestObserveCheapWithoutUsage(t *testing.T) {
	var u StreamUsage
	evs := []sse.Event{
		{Data: []byte(`{"candidates":[{"content":{"parts":[{"text":"hello"}],"role":"model"},"index":0}]}`)},
		{Raw: []byte(": ping\n\n")},
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, ev := range evs {
			u.Observe(ev)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per round", n)
	}
}

func FuzzUsage(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "usage", "*.sse"))
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte(`{"usageMetadata":{"promptTokenCount":-9223372036854775808,"cachedContentTokenCount":9223372036854775807,"candidatesTokenCount":9223372036854775807,"thoughtsTokenCount":9223372036854775807}}`))
	f.Add([]byte(`[{"response":{"usageMetadata":{"promptTokenCount":"1"}}},[],{"response":[]}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		// As a stream, and as the data of one chunk (twice, so a repeated
		// report is covered).
		u := observeStream(t, bytes.NewReader(data))
		checkTokens(t, u.Tokens)
		var v StreamUsage
		for range 2 {
			v.Observe(sse.Event{Data: data})
			checkTokens(t, v.Tokens)
		}
		IsPreamble(sse.Event{Data: data})
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
	raw, err := os.ReadFile(filepath.Join("testdata", "usage", "codeassist.sse"))
	if err != nil {
		b.Fatal(err)
	}
	evs := readEvents(b, bytes.NewReader(raw))
	b.ReportAllocs()
	for b.Loop() {
		var u StreamUsage
		for _, ev := range evs {
			u.Observe(ev)
		}
	}
}
