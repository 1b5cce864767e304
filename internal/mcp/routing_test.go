package mcp

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// serverReading is what an MCP server acts on, decoded the way JSON.parse
// and Python's json do: member names matched exactly, the last duplicate
// kept (encoding/json into a map[string]any does both).
type serverReading struct {
	method string
	key    string // the routing member's value
	ref    string // completion/complete: params.ref.type
	ok     bool   // the server would find a string routing key
}

func serverReads(b []byte) (serverReading, bool) {
	var msg map[string]any
	if json.Unmarshal(b, &msg) != nil {
		return serverReading{}, false
	}
	var r serverReading
	r.method, _ = msg["method"].(string)
	params, _ := msg["params"].(map[string]any)
	switch r.method {
	case "tools/call", "prompts/get":
		r.key, r.ok = params["name"].(string)
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		r.key, r.ok = params["uri"].(string)
	case "completion/complete":
		ref, _ := params["ref"].(map[string]any)
		r.ref, _ = ref["type"].(string)
		switch r.ref {
		case RefPrompt:
			r.key, r.ok = ref["name"].(string)
		case RefResource:
			r.key, r.ok = ref["uri"].(string)
		}
	default:
		r.ok = true
	}
	return r, true
}

// assertServerReads is the differential oracle: whenever Peek accepts a
// message, the method and routing key the gateway's policy decides on are
// the ones the server acts on.
func assertServerReads(t *testing.T, b []byte, m Envelope) {
	t.Helper()
	r, ok := serverReads(b)
	if !ok {
		t.Fatalf("accepted what an exact decoder refuses: %q", b)
	}
	if r.method != m.Method {
		t.Fatalf("method %q, the server reads %q: %q", m.Method, r.method, b)
	}
	if m.Method == "" {
		return
	}
	if !r.ok {
		t.Fatalf("accepted %s without a string routing key: %q", m.Method, b)
	}
	if r.key != m.Name || r.ref != m.Ref {
		t.Fatalf("policy saw %q (%q), the server acts on %q (%q): %q", m.Name, m.Ref, r.key, r.ref, b)
	}
}

// FuzzRoutingKey: what the policy saw equals what the upstream receives,
// for tools, prompts, resources and completion requests, single or batched.
func FuzzRoutingKey(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7,"uri":"echo"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"uri":"greet","name":"secret"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"public","uri":"file:///secret"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"name":"public","uri":"file:///secret"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"resources/unsubscribe","params":{"uri":"file:///secret"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///p\u0075blic","URI":"x"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"secret","uri":"public"},"argument":{"name":"a","value":""}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///{x}","name":"public"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"name":"public","ref":{"type":"ref/prompt","name":"s\ud83d\ude00"}}}`,
		`{"jsonrpc":"2.0","id":"\u0061","method":"tools/call","params":{"name":"n\ud800"}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}}]`,
		`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":1.0,"method":"prompts/list"}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, batch, err := Peek(b, 16)
		if err != nil {
			return
		}
		if !batch {
			assertServerReads(t, b, msgs[0])
			return
		}
		var raws []json.RawMessage
		if json.Unmarshal(b, &raws) != nil || len(raws) != len(msgs) {
			t.Fatalf("batch split differs from encoding/json: %q", b)
		}
		seen := map[float64]bool{}
		for i, raw := range raws {
			assertServerReads(t, raw, msgs[i])
			// No two requests a JavaScript server tells apart only
			// by spelling: numbers that are one double are one id.
			var id any
			if msgs[i].IsRequest() && json.Unmarshal(msgs[i].ID, &id) == nil {
				if n, ok := id.(float64); ok {
					if seen[n] {
						t.Fatalf("batch with two requests of id %v accepted: %q", n, b)
					}
					seen[n] = true
				}
			}
		}
	})
}

// TestRoutingKeyIsTheMemberTheServerActsOn: a decoy member next to the
// one the server acts on never becomes the routing key, and a routing
// member that is not a string is refused, not replaced.
func TestRoutingKeyIsTheMemberTheServerActsOn(t *testing.T) {
	rows := []struct{ body, name, ref string }{
		{`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"public","uri":"file:///secret"}}`, "file:///secret", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///secret","name":"public"}}`, "file:///secret", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"name":"public","uri":"file:///secret"}}`, "file:///secret", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"resources/unsubscribe","params":{"name":"public","uri":"file:///secret"}}`, "file:///secret", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"uri":"echo","name":"admin_delete"}}`, "admin_delete", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"uri":"greet","name":"secret"}}`, "secret", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"name":"public","ref":{"type":"ref/prompt","name":"secret"},"argument":{"name":"a","value":"b"}}}`, "secret", RefPrompt},
		{`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","uri":"public","name":"secret"}}}`, "secret", RefPrompt},
		{`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"name":"public","type":"ref/resource","uri":"file:///secret/{x}"}}}`, "file:///secret/{x}", RefResource},
		{`{"jsonrpc":"2.0","id":1,"method":"notifications/message","params":{"name":"x","uri":"y"}}`, "", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"debug","name":"x"}}`, "", ""},
	}
	for _, r := range rows {
		e, err := PeekOne([]byte(r.body))
		if err != nil || e.Name != r.name || e.Ref != r.ref {
			t.Errorf("%s: name %q ref %q err %v, want %q %q", r.body, e.Name, e.Ref, err, r.name, r.ref)
		}
	}
	refused := []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7,"uri":"echo"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":null,"uri":"echo"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["echo"]}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"uri":"echo"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["echo"]}`,
		`{"jsonrpc":"2.0","method":"tools/call","params":{"uri":"echo"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"public"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"public","uri":{"href":"file:///secret"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"name":"public","uri":1}}`,
		`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":false,"uri":"greet"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"name":"public"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":"ref/prompt"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","uri":"public"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/tool","name":"x"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":1,"uri":"x"}}}`,
	}
	for _, b := range refused {
		e, err := PeekOne([]byte(b))
		if !errors.Is(err, ErrInvalidParams) {
			t.Errorf("%s: accepted as %q (err %v), want ErrInvalidParams", b, e.Name, err)
			continue
		}
		if id := ErrorID(err); strings.Contains(b, `"id":1,`) && string(id) != "1" {
			t.Errorf("%s: error id %s, want 1", b, id)
		}
	}
	ambiguous := []string{
		`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a","Name":"b"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","type":"ref/resource","name":"a","uri":"b"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a"},"REF":{}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"n\ud800"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"n\udc00\ud800"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"n\ud800ame":"x","name":"y"}}`,
	}
	for _, b := range ambiguous {
		if _, err := PeekOne([]byte(b)); err == nil {
			t.Errorf("%s: accepted", b)
		}
	}
	if e, err := PeekOne([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"s\ud83d\ude00"}}`)); err != nil || e.Name != "s😀" {
		t.Errorf("a paired surrogate escape: %q %v", e.Name, err)
	}
}

func TestCanonicalID(t *testing.T) {
	same := [][]string{
		{`1`, `1.0`, `1e0`, `10e-1`, `1E+0`, `0.1e1`, `1.00000000000000000001`},
		{`0`, `-0`, `0.0`, `-0e5`},
		{`"a"`, `"\u0061"`, `"\u0061"`},
		{`"é"`, `"\u00e9"`, `"\u00E9"`},
		{`9007199254740992`, `9007199254740993`},
		{`1e400`, `2e400`},
	}
	for _, group := range same {
		k0, ok := CanonicalID(json.RawMessage(group[0]))
		if !ok {
			t.Fatalf("%s: not an id", group[0])
		}
		for _, s := range group[1:] {
			if k, ok := CanonicalID(json.RawMessage(s)); !ok || k != k0 {
				t.Errorf("%s and %s are not one id (%q %q)", group[0], s, k0, k)
			}
		}
	}
	differ := [][2]string{{`1`, `"1"`}, {`1`, `2`}, {`"a"`, `"A"`}, {`0.1`, `0.2`}, {`-1`, `1`}}
	for _, d := range differ {
		if SameID(json.RawMessage(d[0]), json.RawMessage(d[1])) {
			t.Errorf("%s and %s are one id", d[0], d[1])
		}
	}
	for _, bad := range []string{`null`, `{}`, `[1]`, `true`, `"\ud800"`, ``, `01`} {
		if _, ok := CanonicalID(json.RawMessage(bad)); ok {
			t.Errorf("%s accepted as an id", bad)
		}
	}
}

// TestPeekRefusesDuplicateBatchIDs: two requests of one batch with the
// same id, however spelled, could have their answers confused.
func TestPeekRefusesDuplicateBatchIDs(t *testing.T) {
	for _, ids := range [][2]string{{`1`, `1`}, {`1`, `1.0`}, {`1`, `1e0`}, {`10e-1`, `1`}, {`"a"`, `"\u0061"`}, {`0`, `-0`}, {`9007199254740992`, `9007199254740993`}} {
		body := `[{"jsonrpc":"2.0","id":` + ids[0] + `,"method":"tools/list"},{"jsonrpc":"2.0","id":` + ids[1] + `,"method":"prompts/list"}]`
		if _, _, err := Peek([]byte(body), 0); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", body, err)
		}
	}
	ok := `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":"1","method":"prompts/list"},{"jsonrpc":"2.0","id":1,"result":{}},{"jsonrpc":"2.0","method":"notifications/x"}]`
	if _, _, err := Peek([]byte(ok), 0); err != nil {
		t.Errorf("%s: %v", ok, err)
	}
}
