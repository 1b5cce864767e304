package bridge

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/mcpgate/mcpgate/internal/mcpclient"
)

// TestBridgeDeclaresItsExtensions: "Extensions are advertised in the
// extensions field of capabilities, which is a map of extension
// identifiers to per-extension settings objects" (2026-07-28
// basic/versioning §Extension Negotiation). The bridge sends its stdio
// client's capabilities — elicitation.url and the extensions the client
// implements pass — except the authorization extensions: the bridge holds
// the credential, so it declares client credentials exactly when it uses
// that grant (connect --client-credentials), whatever the stdio client
// claimed. Checked in the forwarded initialize (session-era server) and
// in the per-request _meta (2026-07-28 server: the probe, every request).
func TestBridgeDeclaresItsExtensions(t *testing.T) {
	const cc = mcpclient.ExtClientCredentials
	const ui = `"io.modelcontextprotocol/ui":{"mimeTypes":["text/html;profile=mcp-app"]}`
	rows := []struct {
		name       string
		clientCaps string // the stdio client's initialize capabilities ("" omits them)
		ours       map[string]any
		want       string
	}{
		{"nothing declared, nothing added", "", nil, `{}`},
		{"the client's own pass unchanged", `{"elicitation":{"url":{}},"extensions":{` + ui + `}}`, nil,
			`{"elicitation":{"url":{}},"extensions":{` + ui + `}}`},
		{"an authorization extension the client names is dropped", `{"roots":{},"extensions":{"` + cc + `":{},` + ui + `}}`, nil,
			`{"extensions":{` + ui + `},"roots":{}}`},
		{"the only extension dropped", `{"extensions":{"io.modelcontextprotocol/enterprise-managed-authorization":{}}}`, nil, `{}`},
		{"the bridge's client credentials are declared", "", map[string]any{cc: map[string]any{}},
			`{"extensions":{"` + cc + `":{}}}`},
		{"merged with the client's", `{"sampling":{},"extensions":{` + ui + `}}`, map[string]any{cc: map[string]any{}},
			`{"extensions":{"` + cc + `":{},` + ui + `},"sampling":{}}`},
	}
	for _, modern := range []bool{false, true} {
		for _, row := range rows {
			t.Run(fmt.Sprintf("modern=%v/%s", modern, row.name), func(t *testing.T) {
				var mu sync.Mutex
				seen := map[string]string{} // method -> capabilities sent
				h := startWith(t, capsRecorder(modern, &mu, seen), Options{Extensions: row.ours})
				init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","clientInfo":{"name":"t","version":"1"}}}`
				if row.clientCaps != "" {
					init = strings.Replace(init, `"clientInfo"`, `"capabilities":`+row.clientCaps+`,"clientInfo"`, 1)
				}
				h.send(init)
				h.answer(1)
				h.send(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
				h.answer(2)
				mu.Lock()
				defer mu.Unlock()
				methods := []string{"initialize"}
				if modern {
					methods = []string{"server/discover", "tools/list"}
				}
				for _, m := range methods {
					got, ok := seen[m]
					if !ok {
						t.Fatalf("no %s reached the server: %v", m, seen)
					}
					if normalize(t, got) != normalize(t, row.want) {
						t.Errorf("%s declared %s, want %s", m, got, row.want)
					}
				}
			})
		}
	}
}

// capsRecorder is a session-era or 2026-07-28 server recording the client
// capabilities of each request by method.
func capsRecorder(modern bool, mu *sync.Mutex, seen map[string]string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Capabilities json.RawMessage            `json:"capabilities"`
				Meta         map[string]json.RawMessage `json:"_meta"`
			} `json:"params"`
		}
		_ = json.NewDecoder(r.Body).Decode(&m)
		caps := m.Params.Capabilities
		if modern {
			caps = m.Params.Meta[mcpclient.MetaClientCapabilities]
		}
		if caps == nil {
			caps = json.RawMessage(`{}`)
		}
		mu.Lock()
		seen[m.Method] = string(caps)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case m.Method == "server/discover" && !modern:
			w.WriteHeader(http.StatusBadRequest)
		case m.Method == "server/discover":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"supportedVersions":["2026-07-28"],"capabilities":{},"serverInfo":{"name":"m","version":"1"}}}`, m.ID)
		case m.Method == "initialize":
			w.Header().Set("Mcp-Session-Id", "s1")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}`, m.ID)
		case m.ID == nil:
			w.WriteHeader(http.StatusAccepted)
		default:
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[]}}`, m.ID)
		}
	}
}

func normalize(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON: %s", s)
	}
	b, _ := json.Marshal(v)
	return string(b)
}
