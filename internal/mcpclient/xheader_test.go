package mcpclient

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestToolHeaders(t *testing.T) {
	cases := []struct {
		name, schema string
		ok           bool
		want         string // "Name@path:type" list
	}{
		{"none", `{"type":"object","properties":{"q":{"type":"string"}}}`, true, ""},
		{"top level", `{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"}}}`, true, "Region@region:string"},
		{"nested through properties", `{"type":"object","properties":{"opts":{"type":"object","properties":{"tenant":{"type":"integer","x-mcp-header":"Tenant-Id"}}}}}`, true, "Tenant-Id@opts.tenant:integer"},
		{"boolean", `{"properties":{"dry":{"type":"boolean","x-mcp-header":"Dry"}}}`, true, "Dry@dry:boolean"},
		{"empty", `{"properties":{"a":{"type":"string","x-mcp-header":""}}}`, false, ""},
		{"not a token", `{"properties":{"a":{"type":"string","x-mcp-header":"Bad Name"}}}`, false, ""},
		{"CRLF", `{"properties":{"a":{"type":"string","x-mcp-header":"A\r\nX-Injected: 1"}}}`, false, ""},
		{"duplicate ignoring case", `{"properties":{"a":{"type":"string","x-mcp-header":"Region"},"b":{"type":"string","x-mcp-header":"region"}}}`, false, ""},
		{"number type", `{"properties":{"a":{"type":"number","x-mcp-header":"A"}}}`, false, ""},
		{"object type", `{"properties":{"a":{"type":"object","x-mcp-header":"A"}}}`, false, ""},
		{"under items", `{"properties":{"a":{"type":"array","items":{"type":"string","x-mcp-header":"A"}}}}`, false, ""},
		{"under oneOf", `{"properties":{"a":{"oneOf":[{"type":"string","x-mcp-header":"A"}]}}}`, false, ""},
		{"on the root", `{"type":"string","x-mcp-header":"A"}`, false, ""},
		{"under $defs", `{"$defs":{"x":{"type":"string","x-mcp-header":"A"}},"properties":{}}`, false, ""},
	}
	for _, c := range cases {
		hs, err := ToolHeaders(json.RawMessage(c.schema))
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v", c.name, err)
			continue
		}
		var got []string
		for _, h := range hs {
			got = append(got, h.Name+"@"+strings.Join(h.Path, ".")+":"+h.Type)
		}
		if strings.Join(got, ",") != c.want {
			t.Errorf("%s: %v, want %s", c.name, got, c.want)
		}
	}
}

func TestHeaderValues(t *testing.T) {
	args := map[string]any{"s": "x", "i": 42.0, "f": 1.5, "b": true, "big": 1e16, "o": map[string]any{"t": 7.0}}
	for _, c := range []struct {
		p    headerParam
		want string
		ok   bool
	}{
		{headerParam{Path: []string{"s"}, Type: "string"}, "x", true},
		{headerParam{Path: []string{"i"}, Type: "integer"}, "42", true},
		{headerParam{Path: []string{"f"}, Type: "integer"}, "", false},   // not an integer
		{headerParam{Path: []string{"big"}, Type: "integer"}, "", false}, // beyond 2^53-1
		{headerParam{Path: []string{"b"}, Type: "boolean"}, "true", true},
		{headerParam{Path: []string{"s"}, Type: "integer"}, "", false}, // wrong type
		{headerParam{Path: []string{"o", "t"}, Type: "integer"}, "7", true},
		{headerParam{Path: []string{"missing"}, Type: "string"}, "", false},
	} {
		v, ok := c.p.value(args)
		if v != c.want || ok != c.ok {
			t.Errorf("%v: %q %v", c.p.Path, v, ok)
		}
	}
}

func TestFilterTools(t *testing.T) {
	res := json.RawMessage(`{"tools":[{"name":"good","inputSchema":{"properties":{"r":{"type":"string","x-mcp-header":"R"}}}},` +
		`{"name":"bad","inputSchema":{"properties":{"r":{"type":"number","x-mcp-header":"R"}}}},{"name":"plain","inputSchema":{}}],"nextCursor":"c"}`)
	out, headers, rejected := FilterTools(res)
	if len(rejected) != 1 || !strings.HasPrefix(rejected[0], "bad:") || len(headers["good"]) != 1 {
		t.Fatalf("rejected %v headers %v", rejected, headers)
	}
	if strings.Contains(string(out), `"bad"`) || !strings.Contains(string(out), `"plain"`) || !strings.Contains(string(out), `"nextCursor":"c"`) {
		t.Fatalf("filtered: %s", out)
	}
}
