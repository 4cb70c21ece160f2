package sse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// referenceParse is a deliberately naive parser of a whole input, written
// straight from the event-stream rules, that the Reader is checked against.
func referenceParse(in []byte) []result {
	var out []result
	var cur result
	var data []string
	hasData := false
	start := 0
	flush := func(end int, err error) {
		cur.Raw = string(in[start:end])
		if hasData {
			cur.Data = strings.Join(data, "\n")
			cur.HasData = true
		}
		cur.Err = err
		out = append(out, cur)
		cur, data, hasData, start = result{}, nil, false, end
	}
	field := func(line string) {
		if line == "" || line[0] == ':' {
			return
		}
		name, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch name {
		case "data":
			data = append(data, value)
			hasData = true
		case "event":
			cur.Name = value
		}
	}
	i := 0
	lineStart := 0
	for i < len(in) {
		c := in[i]
		if c != '\n' && c != '\r' {
			i++
			continue
		}
		line := string(in[lineStart:i])
		i++
		if c == '\r' && i < len(in) && in[i] == '\n' {
			i++
		}
		if line == "" {
			flush(i, nil)
		} else {
			field(line)
		}
		lineStart = i
	}
	if start < len(in) {
		field(string(in[lineStart:]))
		flush(len(in), io.ErrUnexpectedEOF)
	}
	out = append(out, result{Err: io.EOF})
	return out
}

func FuzzReader(f *testing.F) {
	f.Add([]byte(anthropicStream), uint64(1), uint16(0))
	f.Add([]byte(strings.ReplaceAll(anthropicStream, "\n", "\r\n")), uint64(2), uint16(0))
	f.Add([]byte("data: 1\r\rdata: 2\r\n\r\n: c\n\n\n\ndata"), uint64(3), uint16(0))
	f.Add([]byte("event:a\ndata:b\r"), uint64(4), uint16(8))
	f.Add([]byte("data: "+strings.Repeat("x", 80)+"\n\ndata: y\n\n"), uint64(5), uint16(40))
	f.Fuzz(func(t *testing.T, in []byte, seed uint64, smallMax uint16) {
		maxEvent := DefaultMaxEvent
		if smallMax > 0 {
			maxEvent = int(smallMax)
		}
		whole := readAll(t, NewReaderSize(bytes.NewReader(in), maxEvent))
		chunked := readAll(t, NewReaderSize(randomChunks(seed, in), maxEvent))
		if !sameResults(whole, chunked) {
			t.Fatalf("whole and chunked reads differ:\nwhole   %v\nchunked %v", whole, chunked)
		}
		sharedRd := NewReaderSize(randomChunks(seed+1, in), maxEvent)
		sharedRd.ShareBuffers()
		if shared := readAll(t, sharedRd); !sameResults(whole, shared) {
			t.Fatalf("copying and shared-buffer reads differ:\ncopy   %v\nshared %v", whole, shared)
		}
		last := whole[len(whole)-1].Err
		if errors.Is(last, ErrEventTooLarge) {
			// Every event returned before the error fits, and the input
			// from there on holds one that does not.
			var n int
			for _, r := range whole[:len(whole)-1] {
				if len(r.Raw) > maxEvent {
					t.Fatalf("event of %d bytes returned with max %d", len(r.Raw), maxEvent)
				}
				n += len(r.Raw)
			}
			if !bytes.HasPrefix(in, []byte(concatRaw(whole))) || referenceFits(in[n:], maxEvent) {
				t.Fatalf("ErrEventTooLarge after %d bytes, but the rest fits", n)
			}
			return
		}
		if got := concatRaw(whole); got != string(in) {
			t.Fatalf("concatenated Raw %q differs from input %q", got, in)
		}
		if want := referenceParse(in); !sameResults(whole, want) {
			t.Fatalf("reader disagrees with reference:\n got %v\nwant %v", whole, want)
		}
	})
}

// referenceFits reports whether the first event of in (complete or the
// partial tail) is at most maxEvent bytes long.
func referenceFits(in []byte, maxEvent int) bool {
	evs := referenceParse(in)
	return len(evs[0].Raw) <= maxEvent
}
