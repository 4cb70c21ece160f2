package sse

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestWriteEvent(t *testing.T) {
	tests := []struct {
		name     string
		event    string
		data     string
		want     string
		wantData string // what a Reader gets back
	}{
		{"json line", "message_stop", `{"type":"message_stop"}`,
			"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", `{"type":"message_stop"}`},
		{"no name", "", `{"a":1}`, "data: {\"a\":1}\n\n", `{"a":1}`},
		{"empty data", "ping", "", "event: ping\ndata: \n\n", ""},
		{"multi-line data", "e", "a\nb\n", "event: e\ndata: a\ndata: b\ndata: \n\n", "a\nb\n"},
		{"crlf and cr in data", "e", "a\r\nb\rc", "event: e\ndata: a\ndata: b\ndata: c\n\n", "a\nb\nc"},
		{"leading space kept", "e", " x", "event: e\ndata:  x\n\n", " x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteEvent(&buf, tt.event, []byte(tt.data)); err != nil {
				t.Fatal(err)
			}
			if buf.String() != tt.want {
				t.Fatalf("wrote %q, want %q", buf.String(), tt.want)
			}
			ev, err := NewReader(&buf).Next()
			if err != nil || ev.Name != tt.event || string(ev.Data) != tt.wantData || string(ev.Raw) != tt.want {
				t.Fatalf("read back %+v, %v", ev, err)
			}
		})
	}
}

// countingWriter records each Write call.
type countingWriter struct{ writes [][]byte }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

func TestWriteEventSingleWrite(t *testing.T) {
	var cw countingWriter
	if err := WriteEvent(&cw, "a", []byte("1\n2\n3")); err != nil {
		t.Fatal(err)
	}
	if len(cw.writes) != 1 {
		t.Fatalf("%d writes, want 1 so a flushing writer never splits an event", len(cw.writes))
	}
}

func TestWriteEventErrors(t *testing.T) {
	if err := WriteEvent(io.Discard, "a\nb", nil); !errors.Is(err, ErrBadName) {
		t.Fatalf("name with newline: %v", err)
	}
	boom := errors.New("closed")
	if err := WriteEvent(errWriter{boom}, "a", nil); !errors.Is(err, boom) {
		t.Fatalf("write error not returned: %v", err)
	}
	// AppendEvent neutralises a bad name instead of corrupting the stream.
	got := string(AppendEvent(nil, "a\r\nb", []byte("x")))
	if got != "event: a  b\ndata: x\n\n" {
		t.Fatalf("AppendEvent with bad name: %q", got)
	}
}

type errWriter struct{ err error }

func (e errWriter) Write([]byte) (int, error) { return 0, e.err }

func TestAppendEventNoAllocWithRoom(t *testing.T) {
	buf := make([]byte, 0, 256)
	data := []byte(`{"type":"ping"}`)
	if n := testing.AllocsPerRun(100, func() { buf = AppendEvent(buf[:0], "ping", data) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
