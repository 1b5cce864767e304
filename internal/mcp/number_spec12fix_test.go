package mcp

import (
	"encoding/json"
	"testing"
)

// Numbers are compared by value as JSON.parse reads them (IEEE 754
// doubles): -32042.0 and -3.2042e4 are -32042 to a JavaScript client.
func TestCodeIsByValue(t *testing.T) {
	for _, s := range []string{"-32042", "-32042.0", "-3.2042e4", "-32042e0", "-320420E-1", " -32042 ", "-32042.000000000000001"} {
		if is, ok := CodeIs(json.RawMessage(s), CodeURLElicitationRequired); !is || !ok {
			t.Errorf("%s: is %v readable %v", s, is, ok)
		}
		var n Int
		if err := json.Unmarshal([]byte(s), &n); err != nil || n != -32042 {
			t.Errorf("Int %s: %v %v", s, n, err)
		}
	}
	for _, s := range []string{`"-32042"`, "null", "{}", "", "-32042.5x"} {
		if _, ok := CodeIs(json.RawMessage(s), CodeURLElicitationRequired); ok {
			t.Errorf("%s read as a number", s)
		}
	}
	for _, s := range []string{"-32042.5", "1e40", `"1"`} {
		var n Int
		if json.Unmarshal([]byte(s), &n) == nil {
			t.Errorf("Int %s decoded as %d", s, n)
		}
	}
}

// The walker finds URL elicitations in task payloads and fails closed on
// what it cannot read.
func TestURLElicitationsWalker(t *testing.T) {
	bad := `{"mode":"url","message":"m","url":"javascript:x"}`
	e := `{"code":-3.2042e4,"message":"x","data":{"elicitations":[` + bad + `]}}`
	for _, msg := range []string{
		`{"jsonrpc":"2.0","id":1,"error":` + e + `}`,
		`{"jsonrpc":"2.0","id":1,"result":{"status":"failed","error":` + e + `}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"status":"completed","result":{"inputRequests":{"a":{"method":"elicitation/create","params":` + bad + `}}}}}`,
		`{"jsonrpc":"2.0","method":"notifications/tasks","params":{"status":"failed","error":` + e + `}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"task":{"status":"failed","error":` + e + `}}}`,
	} {
		if found, ok := URLElicitations([]byte(msg)); ok && len(found) == 0 {
			t.Errorf("nothing found in %s", msg)
		}
	}
	if _, ok := URLElicitations([]byte(`{"jsonrpc":"2.0","id":1,"error":{"code":"-32042","message":"url"}}`)); ok {
		t.Error("an unreadable code passed")
	}
	if found, ok := URLElicitations([]byte(`{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"url"}}`)); !ok || len(found) != 0 {
		t.Error("another code withheld")
	}
}
