package gateway

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
)

// Issue 12 item 2. The text (2026-07-28 basic/index §Error Codes,
// modelcontextprotocol/modelcontextprotocol at b0f60ba, 2026-08-22):
//
//	"-32020 to -32099 — reserved for the MCP specification. [...]
//	Implementations MUST NOT emit any code from this sub-range that is not
//	defined by this specification"
//	"-32000 to -32019 — legacy. [...] new implementations SHOULD NOT use
//	codes from this sub-range at all."
//	"New error codes for purposes not defined by this specification SHOULD
//	be allocated outside the JSON-RPC reserved range (-32768 to -32000)"
//
// Every refusal of the gateway, in each era: a 2026-07-28 request gets no
// code from -32768…-32000 but the JSON-RPC and MCP-defined ones; a 2025
// request keeps -32001/-32003 for 401/403; no era gets -32029 or -32050.

// codeAllowed reports whether code may answer a request of a 2026-07-28
// (modern) or earlier era.
func codeAllowed(modern bool, code int) bool {
	switch {
	case code == -32700, code >= -32603 && code <= -32600:
		return true // JSON-RPC 2.0
	case code == -32020, code == -32021, code == -32022:
		return true // defined by the specification
	case code <= -32020 && code >= -32099:
		return false
	case code <= -32000 && code >= -32019:
		return !modern && (code == -32001 || code == -32003)
	case code >= -32768 && code <= -32000:
		return false // reserved by JSON-RPC
	}
	return true
}

func TestAttackErrorCodesByEra(t *testing.T) {
	tg := startGateway(t, func(c *config.Gateway) { c.Limits.RequestsPerSecond, c.Limits.Burst = 0.001, 4 })
	reader := tg.token(t, "alice", "mcp:read")
	modern := func(tok, method, name string) map[string]string {
		h := statelessHeaders(tok, method, name)
		if tok == "" {
			delete(h, "Authorization")
		}
		return h
	}
	modernBody := func(method, name string) string {
		p := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}`
		if name != "" {
			p = `"name":"` + name + `",` + p
		}
		return `{"jsonrpc":"2.0","id":3,"method":"` + method + `","params":{` + p + `}}`
	}
	legacyCall := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"admin_delete","arguments":{}}}`
	rows := []struct {
		name   string
		modern bool
		hdr    map[string]string
		body   string
		status int
		code   int
	}{
		{"2025: no token", false, nil, listBody, 401, -32001},
		{"2025-11-25 header: no token", false, map[string]string{"MCP-Protocol-Version": "2025-11-25"}, listBody, 401, -32001},
		{"2025: bad token", false, bearer("not-a-jwt"), listBody, 401, -32001},
		{"2025: forbidden tool", false, bearer(reader), legacyCall, 403, -32003},
		{"2026: no token", true, modern("", "tools/list", ""), modernBody("tools/list", ""), 401, -40100},
		{"2026: bad token", true, modern("not-a-jwt", "tools/list", ""), modernBody("tools/list", ""), 401, -40100},
		{"2026: forbidden tool", true, modern(reader, "tools/call", "admin_delete"), modernBody("tools/call", "admin_delete"), 403, -40300},
		{"2026: header mismatch", true, modern(reader, "tools/call", "echo"), modernBody("tools/call", "admin_delete"), 400, -32020},
		{"2026: unsupported version", true, with(modern(reader, "tools/list", ""), "MCP-Protocol-Version", "2099-01-01"), modernBody("tools/list", ""), 400, -32022},
		{"unknown revision: no token", true, map[string]string{"MCP-Protocol-Version": "2099-01-01"}, listBody, 401, -40100},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			got := tg.do(t, "POST", "/mcp", r.body, r.hdr)
			if got.status != r.status {
				t.Fatalf("status %d, want %d: %s", got.status, r.status, got.body)
			}
			code, _, _ := got.rpcError(t)
			if code != r.code || !codeAllowed(r.modern, code) {
				t.Fatalf("code %d, want %d", code, r.code)
			}
		})
	}
	// Rate limit (burst 4, spent above by alice's four authenticated
	// requests that passed authentication): -42900 in both eras.
	for _, modernEra := range []bool{false, true} {
		var got reply
		for range 5 {
			if modernEra {
				got = tg.do(t, "POST", "/mcp", modernBody("tools/list", ""), modern(reader, "tools/list", ""))
			} else {
				got = tg.do(t, "POST", "/mcp", listBody, bearer(reader))
			}
			if got.status == http.StatusTooManyRequests {
				break
			}
		}
		if got.status != http.StatusTooManyRequests {
			t.Fatalf("modern=%v: never rate limited: %d %s", modernEra, got.status, got.body)
		}
		if code, _, _ := got.rpcError(t); code != -42900 || !codeAllowed(modernEra, code) {
			t.Fatalf("modern=%v: rate limited with code %d, want -42900", modernEra, code)
		}
	}
}

// TestAttackUpstreamFailureCodes: an upstream that is gone answers -50200
// (502) in both eras, never -32050.
func TestAttackUpstreamFailureCodes(t *testing.T) {
	tg := startGateway(t, nil)
	tok := tg.token(t, "alice", "mcp:read")
	tg.up.srv.Close()
	for _, c := range []struct {
		name   string
		modern bool
		hdr    map[string]string
		body   string
	}{
		{"2025", false, bearer(tok), listBody},
		{"2026", true, statelessHeaders(tok, "tools/list", ""), `{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`},
	} {
		got := tg.do(t, "POST", "/mcp", c.body, c.hdr)
		var m struct {
			Error struct {
				Code int `json:"code"`
			} `json:"error"`
		}
		if got.status != http.StatusBadGateway || json.Unmarshal(got.body, &m) != nil || m.Error.Code != -50200 || !codeAllowed(c.modern, m.Error.Code) {
			t.Fatalf("%s: %d %s, want 502 with -50200", c.name, got.status, got.body)
		}
	}
}
