package sse

import (
	"errors"
	"io"
	"strings"
)

// ErrBadName is returned for an event name that contains a line break,
// which would end the "event:" line early and corrupt the stream.
var ErrBadName = errors.New("sse: event name contains a line break")

// WriteEvent writes one event: "event: name\n", one "data: …\n" line per
// line of data, and the blank line that ends it, in a single Write so a
// flushing writer never sends half an event. An empty name writes no event
// line. Data is split at "\n", "\r\n" and "\r" (a reader would treat each
// as a line end), so a reader gets it back with "\n" between lines; empty
// data still writes one empty "data: " line so the event is dispatched.
func WriteEvent(w io.Writer, name string, data []byte) error {
	if strings.ContainsAny(name, "\r\n") {
		return ErrBadName
	}
	_, err := w.Write(AppendEvent(make([]byte, 0, len(name)+len(data)+24), name, data))
	return err
}

// AppendEvent appends the encoding WriteEvent would write to dst and
// returns the extended slice, for callers that batch events or reuse a
// buffer. A name containing a line break is the caller's bug; AppendEvent
// replaces each such byte with a space rather than corrupt the stream.
func AppendEvent(dst []byte, name string, data []byte) []byte {
	if name != "" {
		dst = append(dst, "event: "...)
		for i := 0; i < len(name); i++ {
			c := name[i]
			if c == '\r' || c == '\n' {
				c = ' '
			}
			dst = append(dst, c)
		}
		dst = append(dst, '\n')
	}
	for {
		dst = append(dst, "data: "...)
		i := indexLineBreak(data)
		if i < 0 {
			dst = append(dst, data...)
			dst = append(dst, '\n')
			break
		}
		dst = append(dst, data[:i]...)
		dst = append(dst, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return append(dst, '\n')
}

func indexLineBreak(b []byte) int {
	for i, c := range b {
		if c == '\n' || c == '\r' {
			return i
		}
	}
	return -1
}
