// Package sse reads and writes server-sent events (the text/event-stream
// format every upstream of crs streams in).
//
// The Reader is built for a relay, not a browser: it hands back every byte
// it consumed. Each Event carries Raw, the exact bytes of the event including
// the blank line that ends it, so writing Raw of every event in order
// reproduces the upstream stream byte for byte. Comment-only blocks, stray
// blank lines and unknown fields are therefore returned too (a browser would
// drop them silently). Name and Data are parsed alongside so a usage tap can
// look at an event without a second scan.
//
// Parsing follows the WHATWG event-stream rules: lines end in "\n", "\r\n"
// or a lone "\r"; a line starting with ":" is a comment; "field:value" drops
// one leading space from value; a line without ":" is a field with an empty
// value; an empty line ends the event.
package sse

import (
	"bytes"
	"errors"
	"io"
)

// DefaultMaxEvent is the largest event a Reader accepts unless told
// otherwise. Anthropic and OpenAI events are a few KB; a single huge
// tool-call delta can reach a few MB. 16 MiB leaves room while still
// bounding memory for a misbehaving upstream that never ends an event.
const DefaultMaxEvent = 16 << 20

// ErrEventTooLarge is returned by Reader.Next when an event (complete or
// not) is longer than the reader's maximum. The stream cannot be
// resynchronised after it, so every later call returns it again.
var ErrEventTooLarge = errors.New("sse: event too large")

// initialBuffer is the first buffer size; it doubles up to the maximum.
// Typical streamed events are well under 1 KB, so a few of them fit.
const initialBuffer = 4 << 10

// maxEmptyReads bounds how often an io.Reader may return (0, nil) in a row
// before the Reader gives up with io.ErrNoProgress, as bufio does.
const maxEmptyReads = 100

// maxInterned bounds the per-reader cache of event names, so a hostile
// stream of ever-new names cannot grow memory without limit.
const maxInterned = 64

// Event is one server-sent event.
type Event struct {
	// Name is the value of the last "event:" field, "" if there was none.
	Name string
	// Data is the values of the "data:" fields joined by "\n"; nil if the
	// event had no data field. It may share memory with Raw.
	Data []byte
	// Raw is exactly the bytes consumed for this event, including the blank
	// line that ends it. Concatenating Raw of every event returned
	// reproduces the input byte for byte. Raw is a fresh copy: later calls
	// to Next never overwrite it, so it may be kept or handed to another
	// goroutine.
	Raw []byte
}

// span locates a data value inside the event being scanned, as offsets from
// the event's first byte, so it survives buffer compaction.
type span struct{ start, end int }

// Reader splits a byte stream into events. It is not safe for concurrent
// use; one goroutine reads one stream.
type Reader struct {
	rd       io.Reader
	maxEvent int

	buf  []byte
	r, w int // buf[r:w] is unconsumed input; the current event starts at r
	err  error

	// Scan state of the current, not yet complete event. Offsets are
	// relative to r.
	scan     int    // first byte of the next line to look at
	searched int    // bytes before this hold no line break of the current line
	name     span   // value of the last event field
	hasName  bool   // an event field was seen
	data     []span // data field values, in order

	names map[string]string // interned event names

	shared bool // Raw aliases buf (ShareBuffers)
}

// ShareBuffers makes every later event's Raw (and single-line Data) a view
// of the reader's own buffer instead of a copy: valid only until the next
// call to Next. A relay that writes each event on before reading the next
// saves an allocation per event, which under many long streams is most of
// its garbage.
func (rd *Reader) ShareBuffers() { rd.shared = true }

// NewReader returns a Reader with the default maximum event size.
func NewReader(r io.Reader) *Reader {
	return NewReaderSize(r, DefaultMaxEvent)
}

// NewReaderSize returns a Reader that refuses events longer than maxEvent
// bytes (Raw included). maxEvent <= 0 means DefaultMaxEvent.
func NewReaderSize(r io.Reader, maxEvent int) *Reader {
	if maxEvent <= 0 {
		maxEvent = DefaultMaxEvent
	}
	return &Reader{rd: r, maxEvent: maxEvent}
}

// Next returns the next event.
//
// A complete event comes with a nil error. It never blocks on the
// underlying reader while a complete event is already buffered, so each
// event can be forwarded as soon as it has arrived.
//
// At a clean end of input (nothing pending) it returns io.EOF. If the input
// ends in the middle of an event, it returns that partial event (Raw is the
// leftover bytes; Name and Data are parsed from its lines, the last one even
// if unterminated) with io.ErrUnexpectedEOF, and io.EOF afterwards. Any other
// read error is returned the same way, with the partial event if there is
// one, and again on every later call. An event longer than the maximum size
// yields ErrEventTooLarge.
//
// A line ended by a lone "\r" at the end of the buffered input needs one
// more byte to tell it from "\r\n"; for such streams an event is returned
// only once the byte after its blank line has arrived (or the input ended).
func (rd *Reader) Next() (Event, error) {
	if rd.buf == nil && rd.err == nil {
		size := initialBuffer
		if size > rd.maxEvent+1 {
			size = rd.maxEvent + 1
		}
		rd.buf = make([]byte, size)
	}
	empty := 0
	for {
		if ev, ok := rd.scanEvent(rd.err != nil); ok {
			if len(ev.Raw) > rd.maxEvent {
				rd.fail(ErrEventTooLarge)
				return Event{}, ErrEventTooLarge
			}
			return ev, nil
		}
		pending := rd.w - rd.r
		if pending > rd.maxEvent {
			rd.fail(ErrEventTooLarge)
			return Event{}, ErrEventTooLarge
		}
		if rd.err != nil {
			return rd.finish()
		}
		rd.makeRoom()
		n, err := rd.rd.Read(rd.buf[rd.w:])
		if n < 0 || n > len(rd.buf)-rd.w {
			rd.err = errors.New("sse: reader returned invalid count")
			continue
		}
		rd.w += n
		if err != nil {
			rd.err = err
			continue
		}
		if n == 0 {
			empty++
			if empty >= maxEmptyReads {
				rd.err = io.ErrNoProgress
			}
			continue
		}
		empty = 0
	}
}

// fail makes err sticky and drops the buffered input.
func (rd *Reader) fail(err error) {
	rd.err = err
	rd.r, rd.w = 0, 0
	rd.resetScan()
}

func (rd *Reader) resetScan() {
	rd.scan = 0
	rd.searched = 0
	rd.hasName = false
	rd.name = span{}
	rd.data = rd.data[:0]
}

// finish is called once the underlying reader has failed or ended and no
// complete event is left: it returns the partial tail, if any, and the
// error to report for it.
func (rd *Reader) finish() (Event, error) {
	err := rd.err
	if rd.r == rd.w {
		return Event{}, err
	}
	// Parse the unterminated last line too, so a tap still sees the fields
	// of a stream that stopped right before its blank line.
	rd.parseLine(rd.scan, rd.w-rd.r)
	ev := rd.build(rd.w - rd.r)
	rd.r, rd.w = 0, 0
	rd.resetScan()
	if err == io.EOF {
		rd.err = io.EOF
		return ev, io.ErrUnexpectedEOF
	}
	return ev, err
}

// makeRoom ensures buf[w:] is not empty, moving the pending event to the
// front or growing the buffer (never past maxEvent+1, which is enough to
// hold any acceptable event plus the byte needed to resolve a "\r").
func (rd *Reader) makeRoom() {
	if rd.w < len(rd.buf) {
		return
	}
	if rd.r > 0 {
		copy(rd.buf, rd.buf[rd.r:rd.w])
		rd.w -= rd.r
		rd.r = 0
		return
	}
	size := 2 * len(rd.buf)
	if size > rd.maxEvent+1 {
		size = rd.maxEvent + 1
	}
	nb := make([]byte, size)
	copy(nb, rd.buf[:rd.w])
	rd.buf = nb
}

// scanEvent continues scanning the pending input for the blank line that
// ends the current event. eof says no more input will come, which settles a
// trailing "\r" as a line end.
func (rd *Reader) scanEvent(eof bool) (Event, bool) {
	pending := rd.buf[rd.r:rd.w]
	for rd.scan < len(pending) {
		// Bytes of this line before rd.searched were looked at by an
		// earlier call and hold no line break; skipping them keeps a long
		// line arriving in small reads from being rescanned each time.
		from := max(rd.searched-rd.scan, 0)
		line := pending[rd.scan:]
		end, term := lineEnd(line, from, eof)
		if term == 0 {
			rd.searched = rd.scan + end
			return Event{}, false
		}
		if end == 0 {
			ev := rd.build(rd.scan + term)
			rd.r += rd.scan + term
			rd.resetScan()
			if rd.r == rd.w {
				rd.r, rd.w = 0, 0
			}
			return ev, true
		}
		rd.parseLine(rd.scan, rd.scan+end)
		rd.scan += end + term
	}
	return Event{}, false
}

// lineEnd finds the end of the first line in b, knowing b[:from] holds no
// line break. It returns the length of the line and of its terminator. If
// the line is not complete yet (no terminator, or a "\r" at the very end
// that might be followed by "\n"), term is 0 and end is how far b is known
// to be free of line breaks.
func lineEnd(b []byte, from int, eof bool) (end, term int) {
	rest := b[from:]
	lf := bytes.IndexByte(rest, '\n')
	seg := rest
	if lf >= 0 {
		seg = rest[:lf]
	}
	if cr := bytes.IndexByte(seg, '\r'); cr >= 0 {
		cr += from
		switch {
		case cr+1 < len(b) && b[cr+1] == '\n':
			return cr, 2
		case cr+1 < len(b) || eof:
			return cr, 1
		default:
			return cr, 0
		}
	}
	if lf >= 0 {
		return from + lf, 1
	}
	return len(b), 0
}

// parseLine records the fields of the line pending[start:end] (offsets
// relative to the event start, terminator excluded).
func (rd *Reader) parseLine(start, end int) {
	line := rd.buf[rd.r+start : rd.r+end]
	if len(line) == 0 || line[0] == ':' {
		return
	}
	field, vstart := line, end
	if c := bytes.IndexByte(line, ':'); c >= 0 {
		field = line[:c]
		vstart = start + c + 1
		if c+1 < len(line) && line[c+1] == ' ' {
			vstart++
		}
	}
	switch string(field) {
	case "data":
		rd.data = append(rd.data, span{vstart, end})
	case "event":
		rd.name = span{vstart, end}
		rd.hasName = true
	}
}

// build copies the first n pending bytes into a new Event and fills in the
// fields recorded while scanning.
func (rd *Reader) build(n int) Event {
	var raw []byte
	if rd.shared {
		raw = rd.buf[rd.r : rd.r+n : rd.r+n]
	} else {
		raw = make([]byte, n)
		copy(raw, rd.buf[rd.r:rd.r+n])
	}
	ev := Event{Raw: raw}
	if rd.hasName {
		ev.Name = rd.intern(raw[rd.name.start:rd.name.end])
	}
	switch len(rd.data) {
	case 0:
	case 1:
		d := rd.data[0]
		ev.Data = raw[d.start:d.end:d.end]
	default:
		size := len(rd.data) - 1
		for _, d := range rd.data {
			size += d.end - d.start
		}
		data := make([]byte, 0, size)
		for i, d := range rd.data {
			if i > 0 {
				data = append(data, '\n')
			}
			data = append(data, raw[d.start:d.end]...)
		}
		ev.Data = data
	}
	return ev
}

// intern returns a string for b, reusing an earlier one: a stream repeats a
// handful of event names thousands of times, and this saves an allocation
// for each.
func (rd *Reader) intern(b []byte) string {
	if s, ok := rd.names[string(b)]; ok {
		return s
	}
	s := string(b)
	if rd.names == nil {
		rd.names = make(map[string]string)
	}
	if len(rd.names) < maxInterned {
		rd.names[s] = s
	}
	return s
}
