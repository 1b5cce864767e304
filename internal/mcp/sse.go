package mcp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Event is one Server-Sent Event (WHATWG HTML §9.2).
type Event struct {
	ID    string
	Event string // event type; empty means "message"
	Data  []byte
	// Retry is the reconnection time in milliseconds; -1 when absent.
	Retry int
	// HasID distinguishes an explicit empty id (which resets the last event
	// id) from no id field.
	HasID bool
}

// ErrEventTooLarge is returned when one event exceeds the reader's limit.
var ErrEventTooLarge = errors.New("SSE event too large")

// SSEReader reads events from a text/event-stream body one at a time,
// without buffering more than one event.
type SSEReader struct {
	r        *bufio.Reader
	maxEvent int
	// skipLF: the last line ended with CR; an LF right after it belongs
	// to that line ending (CRLF). Remembered instead of peeked, so a line
	// ended by CR is returned without waiting for the next byte.
	skipLF bool
}

// NewSSEReader returns a reader that refuses events larger than maxEvent
// bytes (0 means MaxMessageBytes: an event carries one message).
func NewSSEReader(r io.Reader, maxEvent int) *SSEReader {
	if maxEvent <= 0 {
		maxEvent = MaxMessageBytes
	}
	return &SSEReader{r: bufio.NewReaderSize(r, 512), maxEvent: maxEvent} // small: idle streams are many, events short
}

// Next returns the next dispatched event. Comment lines and events without
// any field are skipped. At the end of the stream it returns io.EOF; a
// partial event at EOF is discarded, as the SSE spec requires.
//
// The size limit is per event: the bytes of the fields kept for the event
// being read (data, event, id), reset at every blank line. Comments and
// unknown fields are not kept, so keepalives (": ping") never add up;
// any single line is still bounded by the limit.
func (s *SSEReader) Next() (Event, error) {
	ev := Event{Retry: -1}
	var data bytes.Buffer
	hasData, hasField := false, false
	size := 0
	for {
		line, err := s.readLine()
		if err != nil {
			return Event{}, err
		}
		if len(line) == 0 {
			if hasData {
				// Non-nil even when empty: a present data field is
				// written back by WriteEvent.
				if ev.Data = data.Bytes(); ev.Data == nil {
					ev.Data = []byte{}
				}
				return ev, nil
			}
			// An event with no data is not dispatched, but id and retry apply.
			if hasField && (ev.HasID || ev.Retry >= 0) {
				return ev, nil
			}
			ev, hasField, size = Event{Retry: -1}, false, 0
			data.Reset()
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value := splitField(line)
		hasField = true
		switch string(field) {
		case "data":
			size += len(value) + 1
		case "event", "id":
			size += len(value)
		}
		if size > s.maxEvent {
			return Event{}, ErrEventTooLarge
		}
		switch string(field) {
		case "data":
			if hasData {
				data.WriteByte('\n')
			}
			data.Write(value)
			hasData = true
		case "event":
			ev.Event = string(value)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				ev.ID, ev.HasID = string(value), true
			}
		case "retry":
			if n, err := strconv.Atoi(string(value)); err == nil && n >= 0 {
				ev.Retry = n
			}
		}
	}
}

// splitField splits "field: value" (one optional space after the colon).
func splitField(line []byte) (field, value []byte) {
	i := bytes.IndexByte(line, ':')
	if i < 0 {
		return line, nil
	}
	field, value = line[:i], line[i+1:]
	if len(value) > 0 && value[0] == ' ' {
		value = value[1:]
	}
	return field, value
}

// readLine returns one line without its terminator (CRLF, LF or CR). It
// copies from the bufio buffer a chunk at a time (the line grows by
// doubling), never byte by byte; a line longer than the event limit
// is refused as soon as it is.
func (s *SSEReader) readLine() ([]byte, error) {
	var line []byte
	for {
		if s.r.Buffered() == 0 {
			if _, err := s.r.Peek(1); err != nil {
				// An unterminated last line is incomplete: drop it.
				return nil, err
			}
		}
		chunk, _ := s.r.Peek(s.r.Buffered())
		if s.skipLF {
			s.skipLF = false
			if chunk[0] == '\n' {
				_, _ = s.r.Discard(1)
				continue
			}
		}
		i := bytes.IndexAny(chunk, "\r\n")
		n := i
		if i < 0 {
			n = len(chunk)
		}
		if len(line)+n > s.maxEvent {
			return nil, ErrEventTooLarge
		}
		if cap(line)-len(line) < n {
			line = slices.Grow(line, max(n, 2*cap(line))) // doubling: a huge line costs a few allocations
		}
		line = append(line, chunk[:n]...)
		if i < 0 {
			_, _ = s.r.Discard(n)
			continue
		}
		s.skipLF = chunk[i] == '\r'
		_, _ = s.r.Discard(i + 1)
		if line == nil {
			line = []byte{}
		}
		return line, nil
	}
}

// Flusher is implemented by http.ResponseWriter values that can flush.
type Flusher interface{ Flush() }

// WriteEvent writes ev in text/event-stream framing and flushes w when it can.
// Data containing newlines is split into several data lines.
func WriteEvent(w io.Writer, ev Event) error {
	var b strings.Builder
	if ev.HasID || ev.ID != "" {
		if strings.ContainsAny(ev.ID, "\r\n\x00") {
			return fmt.Errorf("SSE id contains a line break or NUL")
		}
		b.WriteString("id: ")
		b.WriteString(ev.ID)
		b.WriteByte('\n')
	}
	if ev.Event != "" {
		if strings.ContainsAny(ev.Event, "\r\n") {
			return fmt.Errorf("SSE event type contains a line break")
		}
		b.WriteString("event: ")
		b.WriteString(ev.Event)
		b.WriteByte('\n')
	}
	if ev.Retry > 0 {
		b.WriteString("retry: ")
		b.WriteString(strconv.Itoa(ev.Retry))
		b.WriteByte('\n')
	}
	if ev.Data != nil {
		data := strings.ReplaceAll(strings.ReplaceAll(string(ev.Data), "\r\n", "\n"), "\r", "\n")
		for _, l := range strings.Split(data, "\n") {
			b.WriteString("data: ")
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	b.WriteByte('\n')
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	if f, ok := w.(Flusher); ok {
		f.Flush()
	}
	return nil
}
