package session

import (
	"encoding/json"
	"strings"
	"testing"
)

// A -32042 spelled -32042.0 or -3.2042e4 is -32042 to JSON.parse, so a
// 2026-07-28 client gets it translated ("MUST NOT emit … -32042"), and
// a mode spelled with an escape is URL mode.
func TestURLRequiredByValue(t *testing.T) {
	caps := json.RawMessage(`{"elicitation":{"url":{}}}`)
	for _, c := range []string{"-32042", "-32042.0", "-3.2042e4"} {
		m := []byte(`{"jsonrpc":"2.0","id":1,"error":{"code":` + c + `,"message":"x","data":{"elicitations":[{"mode":"url","message":"m","url":"https://a.example/","elicitationId":"e"}]}}}`)
		out, ok := urlRequired(m, json.RawMessage(`7`), caps)
		if !ok || !strings.Contains(string(out), "input_required") {
			t.Errorf("%s: %v %s", c, ok, out)
		}
	}
	if !isURLElicitation(json.RawMessage(`{"mode":"\u0075rl","url":"https://a.example/","message":"m"}`)) {
		t.Error("escaped mode not read as URL mode")
	}
}
