package mcp

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// repeatReader yields unit n times without holding the whole stream.
type repeatReader struct {
	unit []byte
	n    int
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	total := 0
	for len(p) > 0 && r.n > 0 {
		c := copy(p, r.unit[r.off:])
		p, total, r.off = p[c:], total+c, r.off+c
		if r.off == len(r.unit) {
			r.off, r.n = 0, r.n-1
		}
	}
	if total == 0 && r.n == 0 {
		return 0, io.EOF
	}
	return total, nil
}

// TestSSEKeepalivesDoNotCountTowardTheEventLimit (hole: size was reset
// only when an event was dispatched, so a long-lived stream's ": ping"
// comments and data-less events added up to the limit and ended the
// stream): 16 times the limit of keepalives, data-less events and
// ordinary events all pass.
func TestSSEKeepalivesDoNotCountTowardTheEventLimit(t *testing.T) {
	for name, unit := range map[string]string{
		"comments":         ": ping\n\n",
		"comment lines":    ": " + strings.Repeat("p", 1000) + "\n",
		"data-less events": "event: ping\n\n",
		"unknown fields":   "x-keepalive: 1\n\n",
		"CRLF comments":    ": ping\r\n\r\n",
		"events with data": ": ping\n\ndata: {}\n\n",
	} {
		t.Run(name, func(t *testing.T) {
			// 16 times the event limit of keepalives (a smaller limit than
			// the real 16 MiB, so the race-detector run stays short: 24 MiB
			// of ": ping" took a minute per case).
			const limit = 64 << 10
			in := io.MultiReader(&repeatReader{unit: []byte(unit), n: 16 * limit / len(unit)}, strings.NewReader("\ndata: {}\n\n"))
			r := NewSSEReader(in, limit)
			var got []string
			for {
				ev, err := r.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("after %d events: %v", len(got), err)
				}
				got = append(got, string(ev.Data))
			}
			if len(got) == 0 || got[len(got)-1] != "{}" {
				t.Fatalf("the event after 16× the limit of keepalives was lost: %d events", len(got))
			}
		})
	}
}

// TestSSEOneHugeEventIsRefused: one 17 MiB event (one data line, or many
// data lines) is refused against the 16 MiB limit.
func TestSSEOneHugeEventIsRefused(t *testing.T) {
	line := "data: " + strings.Repeat("A", 1<<20) + "\n"
	for name, in := range map[string]io.Reader{
		"one line":    io.MultiReader(strings.NewReader("data: "), &repeatReader{unit: bytes.Repeat([]byte("A"), 1<<20), n: 17}, strings.NewReader("\n\n")),
		"many lines":  io.MultiReader(&repeatReader{unit: []byte(line), n: 17}, strings.NewReader("\n")),
		"a long id":   io.MultiReader(strings.NewReader("id: "), &repeatReader{unit: bytes.Repeat([]byte("A"), 1<<20), n: 17}, strings.NewReader("\ndata: x\n\n")),
		"a long type": io.MultiReader(&repeatReader{unit: []byte("event: " + strings.Repeat("e", 1<<20) + "\n"), n: 17}, strings.NewReader("data: x\n\n")),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := NewSSEReader(in, MaxMessageBytes).Next(); !errors.Is(err, ErrEventTooLarge) {
				t.Fatalf("17 MiB event: %v, want ErrEventTooLarge", err)
			}
		})
	}
}

// TestSSELineEndings: CR, LF and CRLF end lines, and a CR at the end of
// what has arrived so far does not wait for the next byte before the
// event is dispatched.
func TestSSELineEndings(t *testing.T) {
	r := NewSSEReader(strings.NewReader("data: a\r\rdata: b\n\ndata: c\r\n\r\n"), 0)
	for _, want := range []string{"a", "b", "c"} {
		ev, err := r.Next()
		if err != nil || string(ev.Data) != want {
			t.Fatalf("want %q, got %q %v", want, ev.Data, err)
		}
	}
	pr, pw := io.Pipe()
	go pw.Write([]byte("data: x\r\r"))
	got := make(chan string, 1)
	go func() {
		ev, _ := NewSSEReader(pr, 0).Next()
		got <- string(ev.Data)
	}()
	select {
	case v := <-got:
		if v != "x" {
			t.Fatalf("event ended by CR CR: %q", v)
		}
	case <-time.After(10 * time.Second): // a hang, not a timing measurement
		t.Fatal("the event ended by CR CR was not dispatched before more bytes arrived")
	}
	pw.Close()
}

// BenchmarkSSEHugeEvent: what a hostile 16 MiB event costs the reader.
func BenchmarkSSEHugeEvent(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		in := io.MultiReader(strings.NewReader("data: "), &repeatReader{unit: bytes.Repeat([]byte("A"), 1<<20), n: 15}, strings.NewReader("\n\n"))
		if _, err := NewSSEReader(in, MaxMessageBytes).Next(); err != nil {
			b.Fatal(err)
		}
	}
}
