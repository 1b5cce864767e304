//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestDemoChallengeScopes (issue 12 item 3): the demo's first challenge no
// longer asks for mcp:admin up front ("Minimal initial scope set [...]
// Incremental elevation via targeted WWW-Authenticate scope="..."
// challenges when privileged operations are first attempted", MCP security
// best practices §Scope Minimization, 2026-07-28); a 2026-07-28 request
// that names the admin tool in Mcp-Method/Mcp-Name is told what that
// operation needs. The 401 body's code follows the request's era (issue 12
// item 2): -32001 for 2025 clients, -40100 for 2026-07-28 ones.
func TestDemoChallengeScopes(t *testing.T) {
	port := FreePort(t)
	Start(t, "mcpgate-demo", []string{Mcpgate(t), "demo", "--listen", fmt.Sprintf("127.0.0.1:%d", port)},
		[]string{"MCPGATE_DEMO_PASSWORD=e2e-demo-password"}, regexp.MustCompile(`mcpgate demo is running`))
	url := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
	scope := regexp.MustCompile(`scope="([^"]*)"`)
	for _, c := range []struct {
		name string
		hdr  map[string]string
		want string
		code string
	}{
		{"2025 initialize", nil, "mcp:read", `"code":-32001`},
		{"2026 list", map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"}, "mcp:read", `"code":-40100`},
		{"2026 admin tool", map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "admin_delete_note"}, "mcp:admin mcp:read", `"code":-40100`},
	} {
		req, _ := http.NewRequest("POST", url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		for k, v := range c.hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(b)
		m := scope.FindStringSubmatch(resp.Header.Get("WWW-Authenticate"))
		if resp.StatusCode != 401 || m == nil || m[1] != c.want {
			t.Fatalf("%s: %d %q, want 401 with scope %q", c.name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), c.want)
		}
		if !strings.Contains(body, c.code) {
			t.Fatalf("%s: body %s, want %s", c.name, body, c.code)
		}
	}
}
