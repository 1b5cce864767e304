// Package termsafe makes text that other parties chose (MCP servers,
// authorization servers: client ids, scopes, issuers, error descriptions,
// tool output) safe to show on a terminal. One escaping rule, applied by
// String to single values and by Writer to whole output streams: every
// control character (C0 except newline and tab, DEL, C1 — ESC and CSI
// among them), every invisible formatting or bidirectional-override
// character (Unicode Cf: U+202A–U+202E, U+2066–U+2069, zero-width
// characters, tag characters…), the line and paragraph separators and every
// byte that is not UTF-8 is written as a visible escape: \u00XX (\uXXXX, or
// a UTF-16 surrogate pair above U+FFFF) for characters, and \ufffd (the
// replacement character) for each byte that is not part of valid UTF-8
// (lone surrogates encoded in UTF-8 among them). Only JSON string escapes
// are written, so JSON output (call, status --json) stays valid JSON: a
// character means what it meant, and an invalid byte reads as U+FFFD, which
// is what encoding/json, jq and other JSON parsers make of it anyway. The
// byte's value is not shown.
//
// Field is the stricter rule for one value inside a line-oriented row
// (key/value lines of login, status and doctor, error lines): it escapes
// newline and tab as well, so a server-chosen value can never start a
// line of its own.
package termsafe

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// unsafeRune reports whether r must not reach a terminal as is.
func unsafeRune(r rune) bool {
	switch {
	case r == '\n' || r == '\t':
		return false
	case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
		return true
	case r < 0xa0:
		return false
	}
	return unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp, unicode.Co, unicode.Cs) ||
		(r >= 0xfff9 && r <= 0xfffb) || r == utf8.RuneError
}

// appendEscaped appends the escaped form of p (which may end in the middle
// of a character only when final is true: then the rest is escaped bytes).
// It returns the number of bytes of p consumed.
func appendEscaped(dst []byte, p []byte, final bool) ([]byte, int) {
	i := 0
	for i < len(p) {
		c := p[i]
		if c >= 0x20 && c < 0x7f || c == '\n' || c == '\t' {
			dst = append(dst, c)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = fmt.Appendf(dst, `\u%04x`, c)
			i++
			continue
		}
		if !final && !utf8.FullRune(p[i:]) {
			return dst, i
		}
		r, n := utf8.DecodeRune(p[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			dst = append(dst, `\ufffd`...)
		case unsafeRune(r):
			if r > 0xffff {
				a, b := utf16.EncodeRune(r)
				dst = fmt.Appendf(dst, `\u%04x\u%04x`, a, b)
			} else {
				dst = fmt.Appendf(dst, `\u%04x`, r)
			}
		default:
			dst = append(dst, p[i:i+n]...)
		}
		i += n
	}
	return dst, i
}

// Safe reports whether s would be shown unchanged.
func Safe(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || unsafeRune(r) {
			return false
		}
	}
	return utf8.ValidString(s)
}

// String returns s with every unsafe character escaped.
func String(s string) string {
	if Safe(s) {
		return s
	}
	out, _ := appendEscaped(make([]byte, 0, len(s)+16), []byte(s), true)
	return string(out)
}

// Field returns s escaped like String and with newline and tab escaped
// too (\u000a, \u0009): a value printed inside a line of output.
func Field(s string) string {
	if !strings.ContainsAny(s, "\n\t") {
		return String(s)
	}
	out, _ := appendEscaped(make([]byte, 0, len(s)+16), []byte(s), true)
	return strings.NewReplacer("\n", `\u000a`, "\t", `\u0009`).Replace(string(out))
}

// Strings applies String to each element (a copy).
func Strings(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = String(s)
	}
	return out
}

// Join is strings.Join of escaped elements.
func Join(ss []string, sep string) string { return strings.Join(Strings(ss), sep) }

// Writer escapes everything written through it to w. A character split
// across two writes is kept back until the rest arrives. It is safe for
// concurrent use.
type Writer struct {
	mu    sync.Mutex // guards writes to w, carry and buf
	w     io.Writer
	carry []byte
	buf   []byte
}

// NewWriter wraps w (a *Writer is returned as is).
func NewWriter(w io.Writer) *Writer {
	if tw, ok := w.(*Writer); ok {
		return tw
	}
	return &Writer{w: w}
}

func (t *Writer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	in := p
	if len(t.carry) > 0 {
		in = append(t.carry, p...)
		t.carry = nil
	}
	out, n := appendEscaped(t.buf[:0], in, false)
	if n < len(in) {
		t.carry = append([]byte(nil), in[n:]...)
	}
	if cap(out) <= 64<<10 {
		t.buf = out
	}
	if len(out) == 0 {
		return len(p), nil
	}
	if _, err := t.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes a character kept back (escaped: it never completed).
func (t *Writer) Flush() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.carry) == 0 {
		return nil
	}
	out, _ := appendEscaped(nil, t.carry, true)
	t.carry = nil
	_, err := t.w.Write(out)
	return err
}
