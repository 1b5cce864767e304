package mcpclient

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// TestModernEraTaskMcpName: "When tasks/get, tasks/update, or tasks/cancel
// is sent over the Streamable HTTP transport, the client MUST set the
// Mcp-Name header to the value of params.taskId." (modelcontextprotocol/
// ext-tasks specification/draft/tasks.md §Streamable HTTP: Routing Headers)
func TestModernEraTaskMcpName(t *testing.T) {
	f := &fake{t: t}
	f.handler = func(w http.ResponseWriter, r *http.Request, msg map[string]any) {
		switch msg["method"] {
		case "server/discover":
			reply(w, msg, `{"supportedVersions":["2026-07-28"]}`)
		case "tasks/get", "tasks/update", "tasks/cancel":
			if r.Header.Get("Mcp-Name") != "=?base64?dMOka8O2LTE=?=" {
				w.WriteHeader(400)
				fmt.Fprintf(w, `{"jsonrpc":"2.0","id":null,"error":{"code":-32020,"message":"Mcp-Name %q"}}`, r.Header.Get("Mcp-Name"))
				return
			}
			reply(w, msg, `{"resultType":"complete"}`)
		}
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := &Client{URL: srv.URL, HTTP: srv.Client()}
	ctx := context.Background()
	if err := c.Connect(ctx); err != nil || c.Era() != mcp.EraStateless {
		t.Fatalf("connect: %v", err)
	}
	for _, m := range []string{"tasks/get", "tasks/update", "tasks/cancel"} {
		if _, err := c.Call(ctx, m, map[string]any{"taskId": "täkö-1"}); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
	}
}
