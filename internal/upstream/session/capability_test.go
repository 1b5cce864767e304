package session

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestStatelessMissingClientCapability (issue 12 item 2): a stdio upstream
// that asks a 2026-07-28 client for input the client did not declare gets
// the client a MissingRequiredClientCapabilityError, not an inputRequests
// it cannot fulfil. The text (2026-07-28 basic/index, b0f60ba): "If
// processing a request requires a capability the client did not include
// in io.modelcontextprotocol/clientCapabilities, the server MUST return a
// MissingRequiredClientCapabilityError (-32021) whose
// data.requiredCapabilities lists the missing capabilities. On HTTP, the
// response status MUST be 400 Bad Request." And basic/patterns/mrtr:
// "Servers MUST NOT send an inputRequests that the client has not declared
// support for in its capabilities."
func TestStatelessMissingClientCapability(t *testing.T) {
	f := start(t, nil, func(o *Options) { o.RequestTimeout = 2 * time.Second })
	for _, c := range []struct {
		name, caps, accept string
		refused            bool
	}{
		{"no capabilities member", ``, jsonOnly, true},
		{"empty capabilities", `,"io.modelcontextprotocol/clientCapabilities":{}`, jsonOnly, true},
		{"other capability only", `,"io.modelcontextprotocol/clientCapabilities":{"elicitation":{}}`, jsonOnly, true},
		{"SSE reply", `,"io.modelcontextprotocol/clientCapabilities":{}`, both, true},
		{"declared", `,"io.modelcontextprotocol/clientCapabilities":{"sampling":{}}`, jsonOnly, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := f.post(t, "", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"sample","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"`+c.caps+`}}}`, c.accept)
			body := r.body
			if c.accept == both {
				lines := dataLines(r.body)
				if len(lines) == 0 {
					t.Fatalf("no events: %s", r.body)
				}
				body = lines[len(lines)-1]
			}
			var m struct {
				ID     json.RawMessage `json:"id"`
				Result *struct {
					ResultType string `json:"resultType"`
				} `json:"result"`
				Error *struct {
					Code int `json:"code"`
					Data struct {
						Required map[string]json.RawMessage `json:"requiredCapabilities"`
					} `json:"data"`
				} `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &m); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if !c.refused {
				if m.Result == nil || m.Result.ResultType != "input_required" {
					t.Fatalf("declared sampling: want an InputRequiredResult, got %d %s", r.status, body)
				}
				return
			}
			if m.Error == nil || m.Error.Code != -32021 || m.Error.Data.Required["sampling"] == nil || string(m.ID) != "7" {
				t.Fatalf("want -32021 with requiredCapabilities.sampling for id 7, got %d %s", r.status, body)
			}
			if c.accept == jsonOnly && r.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", r.status)
			}
		})
	}
	waitFor(t, func() bool { return f.children.n.Load() <= 1 }, "refused requests' upstream processes closed")
}

func TestMissingCapabilityElicitationModes(t *testing.T) {
	meta := func(caps string) json.RawMessage {
		return json.RawMessage(`{"_meta":{"io.modelcontextprotocol/clientCapabilities":` + caps + `}}`)
	}
	for _, c := range []struct {
		caps, ask, want string
	}{
		{`{}`, `{"message":"m"}`, `{"elicitation":{"form":{}}}`},
		{`{"elicitation":{}}`, `{"message":"m"}`, ``}, // empty = form only
		{`{"elicitation":{}}`, `{"mode":"url","url":"https://x"}`, `{"elicitation":{"url":{}}}`},
		{`{"elicitation":{"form":{}}}`, `{"mode":"url"}`, `{"elicitation":{"url":{}}}`},
		{`{"elicitation":{"url":{}}}`, `{"mode":"url"}`, ``},
		{`{"elicitation":{"url":{}}}`, `{"mode":"form"}`, `{"elicitation":{"form":{}}}`},
		{`{"elicitation":"yes"}`, `{}`, `{"elicitation":{"form":{}}}`},
	} {
		got := missingCapability(meta(c.caps), "elicitation/create", json.RawMessage(c.ask))
		s := ""
		if got != nil {
			b, _ := json.Marshal(got)
			s = string(b)
		}
		if s != c.want {
			t.Errorf("caps %s, ask %s: %q, want %q", c.caps, c.ask, s, c.want)
		}
	}
	if missingCapability(meta(`{"roots":{}}`), "roots/list", nil) != nil || missingCapability(meta(`{}`), "roots/list", nil) == nil {
		t.Error("roots capability")
	}
	if !strings.Contains(mustJSON(missingCapability(nil, "sampling/createMessage", nil)), "sampling") {
		t.Error("no params: sampling not required")
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }
