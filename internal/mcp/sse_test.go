package mcp

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestSSEReaderParsesFields(t *testing.T) {
	in := ": comment\r\nid: 1\r\nevent: message\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n" +
		"retry: 3000\ndata:no-space\n\n" +
		"id\ndata: x\n\n"
	r := NewSSEReader(strings.NewReader(in), 1<<16)
	ev, err := r.Next()
	if err != nil || ev.ID != "1" || !ev.HasID || ev.Event != "message" || string(ev.Data) != "{\"a\":\n1}" {
		t.Fatalf("first: %+v %v", ev, err)
	}
	ev, err = r.Next()
	if err != nil || string(ev.Data) != "no-space" || ev.HasID {
		t.Fatalf("second: %+v %v", ev, err)
	}
	ev, err = r.Next()
	if err != nil || !ev.HasID || ev.ID != "" || string(ev.Data) != "x" {
		t.Fatalf("third (empty id resets): %+v %v", ev, err)
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
}

func TestSSEReaderBoundsEventSize(t *testing.T) {
	in := "data: " + strings.Repeat("x", 5000) + "\n\n"
	if _, err := NewSSEReader(strings.NewReader(in), 1024).Next(); err == nil {
		t.Fatal("oversized event accepted")
	}
}

func TestSSEWriteReadRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	evs := []Event{{ID: "s-1", HasID: true, Event: "message", Data: []byte("line1\nline2")}, {Data: []byte("{}")}}
	for _, ev := range evs {
		if err := WriteEvent(&buf, ev); err != nil {
			t.Fatal(err)
		}
	}
	r := NewSSEReader(&buf, 1<<16)
	for _, want := range evs {
		got, err := r.Next()
		if err != nil || got.ID != want.ID || string(got.Data) != string(want.Data) || got.Event != want.Event {
			t.Fatalf("got %+v want %+v (%v)", got, want, err)
		}
	}
}

func FuzzSSEReader(f *testing.F) {
	f.Add([]byte("id: 1\nevent: message\ndata: {}\n\n"))
	f.Add([]byte("data: a\r\ndata: b\r\n\r\n: c\n\nretry: x\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewSSEReader(bytes.NewReader(in), 1024)
		for range 1000 {
			ev, err := r.Next()
			if err != nil {
				return
			}
			if len(ev.Data) > 1024+2 {
				t.Fatalf("event larger than the limit: %d", len(ev.Data))
			}
			if ev.Data == nil && !ev.HasID {
				continue // a retry-only event
			}
			// Whatever was read must survive a write/read round trip.
			var buf bytes.Buffer
			if err := WriteEvent(&buf, ev); err != nil {
				continue // ids with line breaks are refused on write
			}
			back, err := NewSSEReader(&buf, 1<<20).Next()
			if err != nil || string(back.Data) != string(ev.Data) || back.ID != ev.ID {
				t.Fatalf("round trip changed %+v into %+v (%v)", ev, back, err)
			}
		}
	})
}
