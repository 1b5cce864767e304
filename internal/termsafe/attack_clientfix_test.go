package termsafe

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestInvalidUTF8StaysJSON: bytes that are not UTF-8 (stray continuation
// bytes, truncated sequences, overlong forms, UTF-8-encoded lone
// surrogates) become \ufffd, a JSON string escape: a JSON document that
// passes through String or Writer (in one piece or byte by byte) is still
// valid JSON, and decodes to what a JSON parser makes of the raw bytes.
func TestInvalidUTF8StaysJSON(t *testing.T) {
	for _, bad := range []string{"\xff\xfe", "\x80", "\xc3", "\xe2\x82", "\xed\xa0\x80", "\xed\xb0\x80", "\xc0\xaf", "\xf8\x88\x80\x80\x80", "\xf4\x90\x80\x80"} {
		doc := `{"name":"t` + bad + `x","k":["` + bad + `"]}`
		var want map[string]any
		if err := json.Unmarshal([]byte(doc), &want); err != nil {
			t.Fatalf("%q: the raw document: %v", bad, err)
		}
		outs := map[string]string{"String": String(doc)}
		var b bytes.Buffer
		w := NewWriter(&b)
		for i := range len(doc) {
			w.Write([]byte{doc[i]})
		}
		w.Flush()
		outs["Writer"] = b.String()
		for how, out := range outs {
			var got map[string]any
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Errorf("%q via %s: not JSON: %v: %q", bad, how, err, out)
				continue
			}
			if g, _ := json.Marshal(got); string(g) != func() string { m, _ := json.Marshal(want); return string(m) }() {
				t.Errorf("%q via %s: %s, want %v", bad, how, g, want)
			}
			if strings.Contains(out, `\x`) || !Safe(out) {
				t.Errorf("%q via %s: %q", bad, how, out)
			}
		}
	}
}

// TestFieldKeepsOneLine: a value escaped with Field never holds a line
// break or tab, and still reads the same as JSON.
func TestFieldKeepsOneLine(t *testing.T) {
	for _, v := range []string{"cid\n  issuer    https://accounts.google.com", "a\r\nb", "a\tb", "a\u2028b", "a\u0085b", "a\vb\fc", "x\xff\n"} {
		f := Field(v)
		if strings.ContainsAny(f, "\n\r\t\v\f\u2028\u2029\u0085") || !Safe(f) {
			t.Errorf("%q: %q", v, f)
		}
		var s string
		if err := json.Unmarshal([]byte(`"`+f+`"`), &s); err != nil || (s != v && !strings.Contains(v, "\xff")) {
			t.Errorf("%q: as JSON %q %v", v, s, err)
		}
	}
	if Field("plain value") != "plain value" {
		t.Error("a plain value changed")
	}
}
