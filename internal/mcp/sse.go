package mcp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
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
}

// NewSSEReader returns a reader that refuses events larger than maxEvent bytes
// (0 means 4 MiB).
func NewSSEReader(r io.Reader, maxEvent int) *SSEReader {
	if maxEvent <= 0 {
		maxEvent = 4 << 20
	}
	return &SSEReader{r: bufio.NewReaderSize(r, 512), maxEvent: maxEvent} // small: idle streams are many, events short
}

// Next returns the next dispatched event. Comment lines and events without
// any field are skipped. At the end of the stream it returns io.EOF; a
// partial event at EOF is discarded, as the SSE spec requires.
func (s *SSEReader) Next() (Event, error) {
	ev := Event{Retry: -1}
	var data bytes.Buffer
	hasData, hasField := false, false
	size := 0
	for {
		line, err := s.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return Event{}, io.EOF
			}
			return Event{}, err
		}
		size += len(line)
		if size > s.maxEvent {
			return Event{}, ErrEventTooLarge
		}
		if len(line) == 0 {
			if !hasField {
				continue
			}
			if hasData {
				// Non-nil even when empty: a present data field is
				// written back by WriteEvent.
				ev.Data = append([]byte{}, data.Bytes()...)
				return ev, nil
			}
			// An event with no data is not dispatched, but id and retry apply.
			if ev.HasID || ev.Retry >= 0 {
				return ev, nil
			}
			ev, hasField = Event{Retry: -1}, false
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		hasField = true
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

// readLine returns one line without its terminator (CRLF, LF or CR).
func (s *SSEReader) readLine() ([]byte, error) {
	var line []byte
	for {
		b, err := s.r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) && len(line) > 0 {
				// An unterminated last line is incomplete: drop it.
				return nil, io.EOF
			}
			return nil, err
		}
		switch b {
		case '\n':
			return line, nil
		case '\r':
			if nb, err := s.r.Peek(1); err == nil && nb[0] == '\n' {
				_, _ = s.r.ReadByte()
			}
			return line, nil
		}
		line = append(line, b)
		if len(line) > s.maxEvent {
			return nil, ErrEventTooLarge
		}
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
