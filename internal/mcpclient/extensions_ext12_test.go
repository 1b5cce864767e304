package mcpclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestClientDeclaresExtensions: "To use the OAuth Client Credentials
// extension, your client must: Declare support — Include the extension in
// its per-request capabilities: _meta ...
// "io.modelcontextprotocol/clientCapabilities": {"extensions":
// {"io.modelcontextprotocol/oauth-client-credentials": {}}}"
// (docs/extensions/auth/oauth-client-credentials.mdx, MCP specification
// repository, 2026-08-22); for initialize, SEP-2133: "Clients advertise
// extension support in the initialize request". Every 2026-07-28 request
// carries the declaration, and the 2025-11-25 initialize carries it in
// params.capabilities; a client declaring nothing sends empty
// capabilities. The old client always sent {}.
func TestClientDeclaresExtensions(t *testing.T) {
	want := `{"extensions":{"io.modelcontextprotocol/oauth-client-credentials":{}}}`
	capsOf := func(msg map[string]any, modern bool) string {
		params, _ := msg["params"].(map[string]any)
		var v any = params["capabilities"]
		if modern {
			meta, _ := params["_meta"].(map[string]any)
			v = meta["io.modelcontextprotocol/clientCapabilities"]
		}
		b, _ := json.Marshal(v)
		return string(b)
	}
	for _, modern := range []bool{true, false} {
		for _, declare := range []bool{true, false} {
			f := &fake{t: t}
			f.handler = func(w http.ResponseWriter, r *http.Request, msg map[string]any) {
				switch msg["method"] {
				case "server/discover":
					if !modern {
						reply(w, msg, `{}`) // a legacy server: falls back to initialize
						return
					}
					reply(w, msg, `{"supportedVersions":["2026-07-28"]}`)
				case "initialize":
					w.Header().Set("Mcp-Session-Id", "s1")
					reply(w, msg, `{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"s","version":"1"}}`)
				case nil:
					w.WriteHeader(http.StatusAccepted)
				default:
					reply(w, msg, `{"tools":[]}`)
				}
			}
			srv := httptest.NewServer(f)
			c := &Client{URL: srv.URL, HTTP: srv.Client()}
			if declare {
				c.Extensions = map[string]any{ExtClientCredentials: map[string]any{}}
			}
			ctx := context.Background()
			if err := c.Connect(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Call(ctx, "tools/list", map[string]any{}); err != nil {
				t.Fatal(err)
			}
			srv.Close()
			w := want
			if !declare {
				w = `{}`
			}
			checked := 0
			for _, p := range f.posts {
				m := p["method"]
				if m == nil || (!modern && m == "server/discover") || (!modern && m != "initialize") {
					continue
				}
				checked++
				if got := capsOf(p, modern); got != w {
					t.Fatalf("modern=%v declare=%v: %v sent capabilities %s, want %s", modern, declare, m, got, w)
				}
			}
			if checked == 0 {
				t.Fatalf("modern=%v: nothing checked", modern)
			}
		}
	}
}
