package termsafe

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// attacks are strings a malicious server sends to reach the terminal.
var attacks = []string{
	"\x1b[2J\x1b[H",                             // clear screen
	"\x1b]52;c;ZWNobyBwd25lZA==\x07",            // OSC 52: write the clipboard
	"\x1b]8;;http://evil/\x1b\\x\x1b]8;;\x1b\\", // OSC 8 hyperlink
	"\x1bP+q\x1b\\",                             // DCS
	"a\rOK overwritten",                         // carriage return
	"back\bspace\x00nul\x7fdel",
	"\u009b31m8-bit CSI (UTF-8)",
	"\x9b31m raw C1 byte",
	"\xc2",              // truncated sequence
	"evil\u202etxt.exe", // right-to-left override
	"\u2066isolate\u2069 \u200e\u200f\u061c",
	"zero\u200bwidth\u200d\ufeff\u2060",
	"tag\U000E0041\U000E007F", // invisible tag characters
	"line\u2028sep\u2029para",
	"\ufff9anchor\ufffb",
}

func clean(t *testing.T, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Errorf("not UTF-8: %q", s)
	}
	for _, r := range s {
		if r != '\n' && r != '\t' && unsafeRune(r) {
			t.Errorf("unsafe %U left in %q", r, s)
		}
	}
}

func TestStringEscapesEveryAttack(t *testing.T) {
	for _, a := range attacks {
		got := String(a)
		clean(t, got)
		if got == a {
			t.Errorf("unchanged: %q", a)
		}
	}
	for _, ok := range []string{"plain", "café 日本語 🙂", "tab\tand\nnewline", `back\slash "quoted"`} {
		if String(ok) != ok {
			t.Errorf("changed harmless text %q → %q", ok, String(ok))
		}
	}
	if got := String("\x1b[31m"); got != `\u001b[31m` {
		t.Errorf("ESC: %q", got)
	}
	if got := String("\U000E0041"); got != `\udb40\udc41` {
		t.Errorf("tag: %q", got)
	}
}

// TestWriterSplitsAndJSON: the writer gives the same result whatever the
// chunking, and JSON through it stays equivalent JSON.
func TestWriterSplitsAndJSON(t *testing.T) {
	all := strings.Join(attacks, "|") + "🙂é"
	for _, chunk := range []int{1, 2, 3, 7, len(all)} {
		var b bytes.Buffer
		w := NewWriter(&b)
		for i := 0; i < len(all); i += chunk {
			w.Write([]byte(all[i:min(i+chunk, len(all))]))
		}
		w.Flush()
		if b.String() != String(all) {
			t.Errorf("chunk %d: %q != %q", chunk, b.String(), String(all))
		}
		clean(t, b.String())
	}
	for _, a := range attacks {
		if !utf8.ValidString(a) {
			continue
		}
		raw, _ := json.Marshal(map[string]string{"text": a})
		var b bytes.Buffer
		NewWriter(&b).Write(raw)
		var back map[string]string
		if err := json.Unmarshal(b.Bytes(), &back); err != nil || back["text"] != a {
			t.Errorf("JSON of %q: %v %q", a, err, b.String())
		}
		clean(t, b.String())
	}
}
