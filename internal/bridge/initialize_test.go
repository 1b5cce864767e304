package bridge

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// TestInitializeNegotiates: the stdio client's initialize goes through
// mcpclient.Negotiate, the negotiation `mcpgate call` runs: a 2026-07-28
// server's DiscoverResult answers it (nothing forwarded), a session-era
// server — found by a non-modern 400 or by an
// UnsupportedProtocolVersionError naming only session-era versions — gets
// it forwarded, and a recognized modern refusal (header mismatch) is the
// client's error rather than a fallback.
func TestInitializeNegotiates(t *testing.T) {
	for _, row := range []struct {
		name     string
		discover string // the body of a 400 answer, or a DiscoverResult's
		status   int
		sent     string // the methods the server saw
		version  string // the initialize answer's protocolVersion ("" an error)
		code     int
	}{
		{"2026-07-28", `{"jsonrpc":"2.0","id":"mcpgate-discover","result":{"supportedVersions":["2026-07-28"],"serverInfo":{"name":"m","version":"1"}}}`, 200,
			"server/discover", "2025-06-18", 0},
		{"session era", `Bad Request: no session`, 400, "server/discover,initialize", "2025-06-18", 0},
		{"-32022 naming a session-era version", `{"jsonrpc":"2.0","id":null,"error":{"code":-32022,"message":"unsupported","data":{"supported":["2025-06-18"]}}}`, 400,
			"server/discover,initialize", "2025-06-18", 0},
		{"header mismatch", `{"jsonrpc":"2.0","id":null,"error":{"code":-32020,"message":"mismatch"}}`, 400,
			"server/discover", "", mcp.CodeHeaderMismatch},
	} {
		t.Run(row.name, func(t *testing.T) {
			var mu sync.Mutex
			var seen []string
			h := start(t, func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost {
					w.WriteHeader(http.StatusMethodNotAllowed)
					return
				}
				var m struct {
					ID     json.RawMessage `json:"id"`
					Method string          `json:"method"`
				}
				_ = json.NewDecoder(r.Body).Decode(&m)
				mu.Lock()
				seen = append(seen, m.Method)
				mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				switch m.Method {
				case "server/discover":
					w.WriteHeader(row.status)
					fmt.Fprint(w, row.discover)
				case "initialize":
					w.Header().Set("Mcp-Session-Id", "s1")
					fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}`, m.ID)
				default:
					w.WriteHeader(http.StatusAccepted)
				}
			})
			h.send(initReq)
			m := h.answer(1)
			res, _ := m["result"].(map[string]any)
			if res["protocolVersion"] != nilIfEmpty(row.version) || errCode(m) != row.code {
				t.Fatalf("initialize answered %v", m)
			}
			mu.Lock()
			defer mu.Unlock()
			if got := strings.Join(seen, ","); got != row.sent {
				t.Fatalf("the server saw %s, want %s", got, row.sent)
			}
		})
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
