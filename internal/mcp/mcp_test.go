package mcp

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

func TestPeek(t *testing.T) {
	rows := []struct {
		name    string
		body    string
		batch   bool
		n       int
		method  string
		msgName string
		meta    string
		id      string
		err     error
	}{
		{name: "request", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`, n: 1, method: "tools/call", msgName: "echo", id: "1"},
		{name: "string id", body: `{"jsonrpc":"2.0","id":"a","method":"resources/read","params":{"uri":"file:///x"}}`, n: 1, method: "resources/read", msgName: "file:///x", id: `"a"`},
		{name: "meta version", body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, n: 1, method: "tools/list", meta: "2026-07-28", id: "1"},
		{name: "notification", body: `{"jsonrpc":"2.0","method":"notifications/initialized"}`, n: 1, method: "notifications/initialized"},
		{name: "response", body: `{"jsonrpc":"2.0","id":5,"result":{}}`, n: 1, id: "5"},
		{name: "batch", body: `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/x"}]`, batch: true, n: 2, method: "ping", id: "1"},
		{name: "wrong jsonrpc", body: `{"jsonrpc":"1.0","id":1,"method":"ping"}`, err: ErrMalformed},
		{name: "object id", body: `{"jsonrpc":"2.0","id":{},"method":"ping"}`, err: ErrMalformed},
		{name: "empty method", body: `{"jsonrpc":"2.0","id":1,"method":""}`, err: ErrMalformed},
		{name: "nothing", body: `{"jsonrpc":"2.0","id":1}`, err: ErrMalformed},
		{name: "not json", body: `{"jsonrpc":`, err: ErrMalformed},
		{name: "empty batch", body: `[]`, err: ErrMalformed},
		{name: "too deep", body: strings.Repeat("[", 65) + strings.Repeat("]", 65), err: ErrTooDeep},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			msgs, batch, err := Peek([]byte(r.body), 64)
			if r.err != nil {
				if !errors.Is(err, r.err) {
					t.Fatalf("err %v, want %v", err, r.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if batch != r.batch || len(msgs) != r.n {
				t.Fatalf("batch %v n %d", batch, len(msgs))
			}
			m := msgs[0]
			if m.Method != r.method || m.Name != r.msgName || m.MetaVersion != r.meta || string(m.ID) != r.id {
				t.Fatalf("got %+v", m)
			}
		})
	}
}

func TestCheckDepthIgnoresBracketsInStrings(t *testing.T) {
	body := `{"a":"` + strings.Repeat("[{", 100) + `\"` + `"}`
	if err := CheckDepth([]byte(body), 2); err != nil {
		t.Fatal(err)
	}
	if err := CheckDepth([]byte(`{"a":{"b":{}}}`), 2); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("depth 3 with max 2: %v", err)
	}
}

func TestHeaderValueCoding(t *testing.T) {
	for _, v := range []string{"us-west1", "Hello, 世界", " padded ", "line1\nline2", "=?base64?literal?=", ""} {
		enc := EncodeHeaderValue(v)
		for i := 0; i < len(enc); i++ {
			if enc[i] < 0x20 || enc[i] > 0x7e {
				t.Fatalf("%q encodes to non-ASCII %q", v, enc)
			}
		}
		dec, ok := DecodeHeaderValue(enc)
		if !ok || dec != v {
			t.Fatalf("round trip %q → %q → %q %v", v, enc, dec, ok)
		}
	}
	// Values from the spec's table.
	if EncodeHeaderValue("Hello, 世界") != "=?base64?SGVsbG8sIOS4lueVjA==?=" {
		t.Fatal(EncodeHeaderValue("Hello, 世界"))
	}
	for _, bad := range []string{"=?base64?!!!?=", "=?base64?abc", "plain\x01ctl", "caf\xc3\xa9", "=?base64?/w==?="} {
		if _, ok := DecodeHeaderValue(bad); ok {
			t.Fatalf("%q accepted", bad)
		}
	}
}

func TestVersions(t *testing.T) {
	if !IsSupported("2025-06-18") || IsSupported("2025-06-19") || IsSupported("") {
		t.Fatal("IsSupported")
	}
	if EraOf("2024-11-05") != EraSession || EraOf("2025-11-25") != EraSession || EraOf("2026-07-28") != EraStateless || EraOf("x") != EraUnknown {
		t.Fatal("EraOf")
	}
	if HasHeaderValidation("2025-11-25") || !HasHeaderValidation("2026-07-28") || HasHeaderValidation("2099-01-01") {
		t.Fatal("HasHeaderValidation")
	}
	s := Supported()
	s[0] = "mutated"
	if Supported()[0] == "mutated" {
		t.Fatal("Supported returns shared slice")
	}
}

func TestErrorResponse(t *testing.T) {
	got := string(ErrorResponse([]byte("7"), CodeHeaderMismatch, "Header mismatch: x", nil))
	if got != `{"jsonrpc":"2.0","id":7,"error":{"code":-32020,"message":"Header mismatch: x"}}` {
		t.Fatal(got)
	}
	if got := string(ErrorResponse(nil, CodeParseError, "p", nil)); !strings.Contains(got, `"id":null`) {
		t.Fatal(got)
	}
}

func FuzzPeek(f *testing.F) {
	for _, s := range []string{`{"jsonrpc":"2.0","id":1,"method":"x","params":{"name":"a"}}`, `[{"jsonrpc":"2.0","method":"n"}]`, `{"jsonrpc":"2.0","id":"s","result":{}}`, `[[[[`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"secret","NAME":"allowed"}}`,
		`{"jsonrpc":"2.0","id":1,"\u006dethod":"a","params":{"uri":"x","_meta":{"io.modelcontextprotocol/protocolVersion":"v"}}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, batch, err := Peek(b, 16)
		if err != nil || batch {
			return
		}
		m := msgs[0]
		if m.Method == "" && m.Result == nil && m.Error == nil {
			t.Fatalf("accepted a message with nothing in it: %q", b)
		}
		// Oracle: an exact-name decoder (a map) must read the same routing
		// fields, and no member may fold to another routing name.
		var ref map[string]json.RawMessage
		if err := json.Unmarshal(b, &ref); err != nil {
			t.Fatalf("accepted what encoding/json refuses: %q: %v", b, err)
		}
		assertUnambiguous(t, b, ref, topLevel)
		var method string
		if raw, ok := ref["method"]; ok {
			_ = json.Unmarshal(raw, &method)
		}
		if method != m.Method {
			t.Fatalf("method %q, an exact decoder reads %q: %q", m.Method, method, b)
		}
		var params map[string]json.RawMessage
		if json.Unmarshal(ref["params"], &params) == nil && params != nil {
			assertUnambiguous(t, b, params, paramMembers)
		}
		assertServerReads(t, b, m)
	})
}

func assertUnambiguous(t *testing.T, b []byte, obj map[string]json.RawMessage, known []string) {
	t.Helper()
	for key := range obj {
		for _, k := range known {
			if key != k && strings.EqualFold(key, k) {
				t.Fatalf("accepted %q next to routing member %q: %q", key, k, b)
			}
		}
	}
}

// TestPeekRefusesAmbiguousMembers: messages that parsers read differently
// (duplicates, case variants, escaped duplicates) are refused, so the
// gateway never authorizes one reading while the server runs another.
func TestPeekRefusesAmbiguousMembers(t *testing.T) {
	refused := []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"secret","NAME":"allowed"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"secret","name":"allowed"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","Method":"tools/list","params":{"name":"x"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","\u006dethod":"tools/list"}`,
		`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///secret","URI":"file:///ok"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","paramſ":{"name":"x"},"params":{"name":"y"}}`,
		`{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}`,
		`{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"a","io.modelcontextprotocol/protocolversion":"b"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"x","params":{"protocolVersion":"a","protocolversion":"b"}}`,
		`{"jsonrpc":"2.0","JSONRPC":"2.0","id":1,"method":"x"}`,
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"ech\xffo\"}}", // not UTF-8
	}
	for _, s := range refused {
		if e, err := PeekOne([]byte(s)); err == nil || !errors.Is(err, ErrMalformed) {
			t.Errorf("accepted %s as method=%q name=%q", s, e.Method, e.Name)
		}
	}
	accepted := map[string][2]string{
		// Names deeper than the routing members are the server's business.
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"Name":"a","name":"b","NAME":"c"}}}`:                {"tools/call", "echo"},
		`{"jsonrpc":"2.0","id":1,"\u006dethod":"tools/call","params":{"n\u0061me":"e\"cho"}}`:                                                   {"tools/call", `e"cho`},
		` { "jsonrpc" : "2.0" , "id" : "a}b" , "method" : "resources/read" , "extra" : [1,{"method":"y"}] , "params" : { "uri" : "demo:u" } } `: {"resources/read", "demo:u"},
		` { "jsonrpc" : "2.0" , "id" : "a}b" , "method" : "x" , "params" : { "uri" : "u" } } `:                                                  {"x", ""},
	}
	for s, want := range accepted {
		e, err := PeekOne([]byte(s))
		if err != nil || e.Method != want[0] || e.Name != want[1] {
			t.Errorf("%s: method=%q name=%q err=%v, want %v", s, e.Method, e.Name, err, want)
		}
	}
}

func FuzzHeaderValue(f *testing.F) {
	f.Add("us-west1")
	f.Add("=?base64?SGVsbG8=?=")
	f.Fuzz(func(t *testing.T, v string) {
		if !strings.ContainsRune(v, '\uFFFD') && isUTF8(v) {
			if dec, ok := DecodeHeaderValue(EncodeHeaderValue(v)); !ok || dec != v {
				t.Fatalf("round trip of %q failed", v)
			}
		}
		_, _ = DecodeHeaderValue(v)
	})
}

func isUTF8(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

func TestReadAll(t *testing.T) {
	body := strings.Repeat("x", 3000)
	for _, size := range []int64{-1, 0, 10, 2999, 3000, 3001, 1 << 30} {
		got, err := ReadAll(iotest.OneByteReader(strings.NewReader(body)), size)
		if err != nil || string(got) != body {
			t.Fatalf("size hint %d: %d bytes, %v", size, len(got), err)
		}
	}
	boom := errors.New("boom")
	if _, err := ReadAll(iotest.ErrReader(boom), 10); !errors.Is(err, boom) {
		t.Fatalf("error not returned: %v", err)
	}
	sr := strings.NewReader(body)
	if n := testing.AllocsPerRun(20, func() { sr.Reset(body); ReadAll(sr, int64(len(body))) }); n > 1 {
		t.Fatalf("%v allocations with a correct size hint, want 1", n)
	}
}
