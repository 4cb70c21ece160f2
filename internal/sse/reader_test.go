package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// result is what one Next call produced, in a comparable form.
type result struct {
	Name    string
	Data    string
	HasData bool
	Raw     string
	Err     error
}

func (r result) String() string {
	return fmt.Sprintf("{Name:%q Data:%q HasData:%v Raw:%q Err:%v}", r.Name, r.Data, r.HasData, r.Raw, r.Err)
}

// readAll drains rd and returns every Next result up to and including the
// first error other than io.ErrUnexpectedEOF (which is followed by io.EOF).
func readAll(t testing.TB, rd *Reader) []result {
	t.Helper()
	var out []result
	for i := 0; ; i++ {
		if i > 1_000_000 {
			t.Fatal("reader does not terminate")
		}
		ev, err := rd.Next()
		out = append(out, result{ev.Name, string(ev.Data), ev.Data != nil, string(ev.Raw), err})
		if err != nil && err != io.ErrUnexpectedEOF {
			return out
		}
	}
}

// chunkReader returns its input in pieces of the given sizes (cycled).
type chunkReader struct {
	data  []byte
	sizes []int
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := c.sizes[c.i%len(c.sizes)]
	c.i++
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func randomChunks(seed uint64, data []byte) io.Reader {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	sizes := make([]int, 64)
	for i := range sizes {
		sizes[i] = rng.IntN(9) // 0 exercises empty reads
	}
	sizes[0] = max(sizes[0], 1)
	return &chunkReader{data: data, sizes: sizes}
}

func TestReaderTable(t *testing.T) {
	ok := func(name, data, raw string) result {
		return result{Name: name, Data: data, HasData: true, Raw: raw}
	}
	tests := []struct {
		name  string
		input string
		want  []result
	}{
		{
			name:  "empty input",
			input: "",
			want:  []result{{Err: io.EOF}},
		},
		{
			name:  "lf",
			input: "event: ping\ndata: {\"a\":1}\n\n",
			want:  []result{ok("ping", `{"a":1}`, "event: ping\ndata: {\"a\":1}\n\n"), {Err: io.EOF}},
		},
		{
			name:  "crlf",
			input: "event: ping\r\ndata: x\r\n\r\n",
			want:  []result{ok("ping", "x", "event: ping\r\ndata: x\r\n\r\n"), {Err: io.EOF}},
		},
		{
			name:  "cr",
			input: "event: ping\rdata: x\r\r",
			want:  []result{ok("ping", "x", "event: ping\rdata: x\r\r"), {Err: io.EOF}},
		},
		{
			name:  "mixed endings",
			input: "event: a\r\ndata: 1\rdata: 2\n\r\ndata: 3\r\r\n",
			want: []result{
				ok("a", "1\n2", "event: a\r\ndata: 1\rdata: 2\n\r\n"),
				ok("", "3", "data: 3\r\r\n"),
				{Err: io.EOF},
			},
		},
		{
			name:  "no space after colon",
			input: "event:x\ndata:y\n\n",
			want:  []result{ok("x", "y", "event:x\ndata:y\n\n"), {Err: io.EOF}},
		},
		{
			name:  "only one leading space stripped",
			input: "data:  two\n\n",
			want:  []result{ok("", " two", "data:  two\n\n"), {Err: io.EOF}},
		},
		{
			name:  "multiple data lines and empty data",
			input: "data: a\ndata\ndata:\ndata: b\n\n",
			want:  []result{ok("", "a\n\n\nb", "data: a\ndata\ndata:\ndata: b\n\n"), {Err: io.EOF}},
		},
		{
			name:  "last event field wins; id, retry and unknown fields ignored",
			input: "event: a\nid: 7\nretry: 10\nfoo: bar\nevent: b\ndata: z\n\n",
			want:  []result{ok("b", "z", "event: a\nid: 7\nretry: 10\nfoo: bar\nevent: b\ndata: z\n\n"), {Err: io.EOF}},
		},
		{
			name:  "comments kept in raw, ignored in fields",
			input: ": hello\nevent: a\n:data: no\ndata: y\n\n",
			want:  []result{ok("a", "y", ": hello\nevent: a\n:data: no\ndata: y\n\n"), {Err: io.EOF}},
		},
		{
			name:  "comment-only event",
			input: ": keepalive\n\nevent: a\ndata: 1\n\n",
			want: []result{
				{Raw: ": keepalive\n\n"},
				ok("a", "1", "event: a\ndata: 1\n\n"),
				{Err: io.EOF},
			},
		},
		{
			name:  "stray blank lines are their own events",
			input: "\n\r\ndata: 1\n\n\n",
			want: []result{
				{Raw: "\n"},
				{Raw: "\r\n"},
				ok("", "1", "data: 1\n\n"),
				{Raw: "\n"},
				{Err: io.EOF},
			},
		},
		{
			name:  "event without data",
			input: "event: a\n\n",
			want:  []result{{Name: "a", Raw: "event: a\n\n"}, {Err: io.EOF}},
		},
		{
			name:  "partial tail after complete event",
			input: "data: 1\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n",
			want: []result{
				ok("", "1", "data: 1\n\n"),
				{Name: "message_stop", Data: `{"type":"message_stop"}`, HasData: true,
					Raw: "event: message_stop\ndata: {\"type\":\"message_stop\"}\n", Err: io.ErrUnexpectedEOF},
				{Err: io.EOF},
			},
		},
		{
			name:  "partial tail with unterminated last line",
			input: "event: e\ndata: abc",
			want: []result{
				{Name: "e", Data: "abc", HasData: true, Raw: "event: e\ndata: abc", Err: io.ErrUnexpectedEOF},
				{Err: io.EOF},
			},
		},
		{
			name:  "trailing cr at eof ends the line",
			input: "data: x\r",
			want:  []result{{Data: "x", HasData: true, Raw: "data: x\r", Err: io.ErrUnexpectedEOF}, {Err: io.EOF}},
		},
		{
			name:  "trailing cr cr at eof ends the event",
			input: "data: x\r\r",
			want:  []result{ok("", "x", "data: x\r\r"), {Err: io.EOF}},
		},
		{
			name:  "line without colon is a field name",
			input: "event\ndata\n\n",
			want:  []result{{Name: "", Data: "", HasData: true, Raw: "event\ndata\n\n"}, {Err: io.EOF}},
		},
		{
			name:  "colon inside value kept",
			input: "data: a:b: c\n\n",
			want:  []result{ok("", "a:b: c", "data: a:b: c\n\n"), {Err: io.EOF}},
		},
		{
			name:  "nul and utf-8 bytes pass through",
			input: "data: \x00é€\n\n",
			want:  []result{ok("", "\x00é€", "data: \x00é€\n\n"), {Err: io.EOF}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			readers := map[string]func() io.Reader{
				"whole":    func() io.Reader { return strings.NewReader(tt.input) },
				"one byte": func() io.Reader { return iotest.OneByteReader(strings.NewReader(tt.input)) },
				"data+eof": func() io.Reader { return iotest.DataErrReader(strings.NewReader(tt.input)) },
				"random":   func() io.Reader { return randomChunks(uint64(len(tt.input)), []byte(tt.input)) },
			}
			for rname, mk := range readers {
				got := readAll(t, NewReader(mk()))
				if !sameResults(got, tt.want) {
					t.Errorf("%s reader:\n got %v\nwant %v", rname, got, tt.want)
				}
			}
		})
	}
}

func sameResults(a, b []result) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Data != b[i].Data || a[i].HasData != b[i].HasData ||
			a[i].Raw != b[i].Raw || !errors.Is(a[i].Err, b[i].Err) {
			return false
		}
	}
	return true
}

// anthropicStream is a realistic Messages stream, used by several tests.
const anthropicStream = "event: message_start\n" +
	`data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-opus-5-5","content":[],"stop_reason":null,"usage":{"input_tokens":11,"cache_creation_input_tokens":7,"cache_read_input_tokens":5,"output_tokens":1}}}` + "\n\n" +
	"event: content_block_start\n" +
	`data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}` + "\n\n" +
	": ping\n\n" +
	"event: ping\n" +
	`data: {"type": "ping"}` + "\n\n" +
	"event: content_block_delta\n" +
	`data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"po"}}` + "\n\n" +
	"event: content_block_delta\n" +
	`data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ng"}}` + "\n\n" +
	"event: content_block_stop\n" +
	`data: {"type":"content_block_stop","index":0}` + "\n\n" +
	"event: message_delta\n" +
	`data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}}` + "\n\n" +
	"event: message_stop\n" +
	`data: {"type":"message_stop"}` + "\n\n"

// TestReaderSplitEverywhere feeds each input in two reads split at every
// byte boundary; the events must not depend on where the split falls.
func TestReaderSplitEverywhere(t *testing.T) {
	inputs := []string{
		anthropicStream,
		strings.ReplaceAll(anthropicStream, "\n", "\r\n"),
		strings.ReplaceAll(anthropicStream, "\n", "\r"),
		"data: 1\r\n\r\n\r\rdata: 2\r\r\n: c\n\ndata: tail",
	}
	for i, in := range inputs {
		want := readAll(t, NewReader(strings.NewReader(in)))
		for k := 0; k <= len(in); k++ {
			src := io.MultiReader(strings.NewReader(in[:k]), strings.NewReader(in[k:]))
			got := readAll(t, NewReader(src))
			if !sameResults(got, want) {
				t.Fatalf("input %d split at %d:\n got %v\nwant %v", i, k, got, want)
			}
		}
		if got := concatRaw(want); got != in {
			t.Fatalf("input %d: concatenated Raw differs from input", i)
		}
	}
}

func concatRaw(rs []result) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(r.Raw)
	}
	return b.String()
}

func TestReaderRandomChunks(t *testing.T) {
	in := strings.Repeat(anthropicStream, 20)
	want := readAll(t, NewReader(strings.NewReader(in)))
	if len(want) != 20*9+1 {
		t.Fatalf("got %d results, want %d", len(want), 20*9+1)
	}
	for seed := range uint64(200) {
		got := readAll(t, NewReader(randomChunks(seed, []byte(in))))
		if !sameResults(got, want) {
			t.Fatalf("seed %d: results differ", seed)
		}
	}
	// A small buffer forces many compactions and growths.
	got := readAll(t, NewReaderSize(iotest.HalfReader(strings.NewReader(in)), 512))
	if !sameResults(got, want) {
		t.Fatal("half reader with small max: results differ")
	}
}

func TestReaderTooLarge(t *testing.T) {
	big := "data: " + strings.Repeat("x", 100) + "\n\n"
	tests := []struct {
		name    string
		max     int
		input   string
		wantOK  int // complete events before the error
		wantErr error
	}{
		{"fits exactly", len(big), big + big, 2, io.EOF},
		{"one byte over", len(big) - 1, "data: 1\n\n" + big, 1, ErrEventTooLarge},
		{"never ending line", 64, "data: " + strings.Repeat("y", 1000), 0, ErrEventTooLarge},
		{"partial tail over max", 64, "data: 1\n\ndata: " + strings.Repeat("z", 100), 1, ErrEventTooLarge},
		{"partial tail under max", 64, "data: 1\n\ndata: z", 1, io.EOF}, // after the partial event
		{"crlf pushes it over", 10, "data: 12\r\n\r\n", 0, ErrEventTooLarge},
		{"cr stays under", 10, "data: 12\r\r", 1, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, mk := range []func() io.Reader{
				func() io.Reader { return strings.NewReader(tt.input) },
				func() io.Reader { return iotest.OneByteReader(strings.NewReader(tt.input)) },
			} {
				rd := NewReaderSize(mk(), tt.max)
				got := readAll(t, rd)
				n := 0
				for _, r := range got {
					if r.Err == nil {
						n++
					}
				}
				last := got[len(got)-1].Err
				if n != tt.wantOK || !errors.Is(last, tt.wantErr) {
					t.Fatalf("got %d events then %v, want %d then %v", n, last, tt.wantOK, tt.wantErr)
				}
				if errors.Is(last, ErrEventTooLarge) {
					if _, err := rd.Next(); !errors.Is(err, ErrEventTooLarge) {
						t.Fatalf("error not sticky: %v", err)
					}
				}
			}
		})
	}
}

func TestReaderDefaultMax(t *testing.T) {
	// A 1 MiB single event goes through the default reader and grows the
	// buffer past its initial size.
	payload := strings.Repeat("a", 1<<20)
	in := "event: big\ndata: " + payload + "\n\n"
	ev, err := NewReader(iotest.HalfReader(strings.NewReader(in))).Next()
	if err != nil || ev.Name != "big" || string(ev.Data) != payload || string(ev.Raw) != in {
		t.Fatalf("big event: err %v, name %q, data len %d", err, ev.Name, len(ev.Data))
	}
	if rd := NewReaderSize(strings.NewReader(""), 0); rd.maxEvent != DefaultMaxEvent {
		t.Fatalf("max 0 gave %d, want default", rd.maxEvent)
	}
}

func TestReaderReadErrorMidEvent(t *testing.T) {
	boom := errors.New("connection reset")
	src := io.MultiReader(strings.NewReader("data: 1\n\nevent: e\ndata: par"), iotest.ErrReader(boom))
	rd := NewReader(src)
	got := readAll(t, rd)
	want := []result{
		{Data: "1", HasData: true, Raw: "data: 1\n\n"},
		{Name: "e", Data: "par", HasData: true, Raw: "event: e\ndata: par", Err: boom},
	}
	if !sameResults(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	if _, err := rd.Next(); !errors.Is(err, boom) {
		t.Fatalf("error not sticky: %v", err)
	}
	// An error on an event boundary returns no partial event.
	rd = NewReader(io.MultiReader(strings.NewReader("data: 1\n\n"), iotest.ErrReader(boom)))
	got = readAll(t, rd)
	if len(got) != 2 || got[1].Raw != "" || !errors.Is(got[1].Err, boom) {
		t.Fatalf("got %v", got)
	}
}

// stuckReader returns (0, nil) forever.
type stuckReader struct{}

func (stuckReader) Read([]byte) (int, error) { return 0, nil }

func TestReaderNoProgress(t *testing.T) {
	_, err := NewReader(stuckReader{}).Next()
	if !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("got %v, want io.ErrNoProgress", err)
	}
}

// TestReaderDoesNotBlockOnBufferedEvent checks that an event is returned as
// soon as its blank line has arrived, even though the upstream keeps the
// connection open: a relay must flush it to the client right away.
func TestReaderDoesNotBlockOnBufferedEvent(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	rd := NewReader(pr)
	go func() {
		_, _ = pw.Write([]byte("event: a\ndata: 1\n\nevent: b\ndata: 2\n\nevent: c\nda"))
	}()
	for _, want := range []string{"a", "b"} {
		done := make(chan Event, 1)
		go func() {
			ev, _ := rd.Next()
			done <- ev
		}()
		select {
		case ev := <-done:
			if ev.Name != want {
				t.Fatalf("got event %q, want %q", ev.Name, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Next blocked with event %q buffered", want)
		}
	}
}

func TestReaderRawIsNotOverwritten(t *testing.T) {
	in := strings.Repeat("event: x\ndata: 0123456789\n\n", 5000)
	rd := NewReaderSize(iotest.HalfReader(strings.NewReader(in)), 64)
	var kept []Event
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, ev)
	}
	if len(kept) != 5000 {
		t.Fatalf("got %d events", len(kept))
	}
	for i, ev := range kept {
		if string(ev.Raw) != "event: x\ndata: 0123456789\n\n" || string(ev.Data) != "0123456789" {
			t.Fatalf("event %d changed after later reads: %q", i, ev.Raw)
		}
	}
	// Appending to Data must not scribble over Raw.
	ev := kept[0]
	_ = append(ev.Data, "XXXX"...)
	if string(ev.Raw) != "event: x\ndata: 0123456789\n\n" {
		t.Fatal("append to Data overwrote Raw")
	}
}

func TestReaderInternBounded(t *testing.T) {
	var b bytes.Buffer
	for i := range 1000 {
		fmt.Fprintf(&b, "event: e%d\ndata: x\n\n", i)
	}
	rd := NewReader(&b)
	for i := range 1000 {
		ev, err := rd.Next()
		if err != nil || ev.Name != fmt.Sprintf("e%d", i) {
			t.Fatalf("event %d: %q %v", i, ev.Name, err)
		}
	}
	if len(rd.names) > maxInterned {
		t.Fatalf("intern cache grew to %d", len(rd.names))
	}
}

func TestReaderAllocs(t *testing.T) {
	in := []byte(strings.Repeat(anthropicStream, 50))
	src := bytes.NewReader(in)
	rd := NewReader(src)
	events := 0
	allocs := testing.AllocsPerRun(5, func() {
		src.Reset(in)
		*rd = Reader{rd: src, maxEvent: DefaultMaxEvent, buf: rd.buf, names: rd.names, data: rd.data}
		events = 0
		for {
			if _, err := rd.Next(); err != nil {
				break
			}
			events++
		}
	})
	// One allocation per event: the Raw copy. Names are interned and a
	// single data line is a slice of Raw.
	if perEvent := allocs / float64(events); perEvent > 1.01 {
		t.Fatalf("%.2f allocations per event, want 1", perEvent)
	}
}

func BenchmarkReader(b *testing.B) {
	in := []byte(strings.Repeat(anthropicStream, 100))
	src := bytes.NewReader(in)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(in)
		rd := NewReader(src)
		for {
			if _, err := rd.Next(); err != nil {
				break
			}
		}
	}
}

func BenchmarkReaderOneByte(b *testing.B) {
	in := []byte(anthropicStream)
	src := bytes.NewReader(in)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(in)
		rd := NewReader(iotest.OneByteReader(src))
		for {
			if _, err := rd.Next(); err != nil {
				break
			}
		}
	}
}

// TestReaderLongLineInSmallReads guards against rescanning a growing line
// on every read: a 4 MiB line in 64-byte reads would take minutes if each
// read rescanned the pending bytes.
func TestReaderLongLineInSmallReads(t *testing.T) {
	in := "data: " + strings.Repeat("q", 4<<20) + "\n\n"
	start := time.Now()
	ev, err := NewReader(&chunkReader{data: []byte(in), sizes: []int{64}}).Next()
	if err != nil || len(ev.Data) != 4<<20 {
		t.Fatalf("err %v, data len %d", err, len(ev.Data))
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v", d)
	}
}
