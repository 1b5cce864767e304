//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// urlReport is what fixtures/client/urlelicit.mjs prints.
type urlReport struct {
	Elicitations []struct {
		Mode, URL, ElicitationID, Message, Host string
	}
	Completed []string
	Calls     map[string][]struct {
		OK           string          `json:"ok"`
		Code         int             `json:"code"`
		Elicitations json.RawMessage `json:"elicitations"`
		Message      string          `json:"message"`
	}
}

func runURLClient(t *testing.T, env []string, bridge ...string) urlReport {
	t.Helper()
	p, _ := Start(t, "urlelicit-client", append([]string{Node22(t), "fixtures/client/urlelicit.mjs"}, bridge...), env, nil)
	if err := p.Wait(2 * time.Minute); err != nil {
		t.Fatalf("client: %v\n%s", err, p.Output())
	}
	for _, l := range strings.Split(p.Output(), "\n") {
		if strings.HasPrefix(l, `{"elicitations"`) {
			var rep urlReport
			if err := json.Unmarshal([]byte(l), &rep); err != nil {
				t.Fatalf("report: %v", err)
			}
			return rep
		}
	}
	t.Fatalf("no report:\n%s", p.Output())
	return urlReport{}
}

// TestURLElicitationThroughGateway: a TS SDK server needing URL-mode
// elicitation behind the gateway (stdio and HTTP upstream), reached by the
// TS SDK stdio client (declaring elicitation.url) through `mcpgate
// connect` in both eras. Texts: 2025-11-25 and 2026-07-28
// client/elicitation.mdx, 2026-07-28 basic/patterns/mrtr.mdx and
// changelog item 11 (modelcontextprotocol repository, 2026-08-22).
//
//   - 2025-11-25 session (HTTP upstream; stdio upstream with
//     --protocol-version 2025-11-25): the server request, its
//     notifications/elicitation/complete and the -32042 error arrive as the
//     server sent them ("When a request cannot be processed until an
//     elicitation is completed, the server MAY return a
//     URLElicitationRequiredError (code -32042)");
//   - 2026-07-28 (stdio upstream, negotiated): the gateway turns both into
//     InputRequiredResults ("the client learns the outcome of an out-of-band
//     interaction by retrying the original request"), the bridge asks the
//     2025-era stdio client with elicitation/create (adding the
//     elicitationId it needs), retries, and reports completion.
//
// The client sees every URL with its host; nothing opens it.
func TestURLElicitationThroughGateway(t *testing.T) {
	server := filepath.Join(Dir(t), "fixtures/url-elicitation/server.mjs")
	rows := []struct {
		name, kind string
		extra      []string
		modern     bool
	}{
		{"stdio upstream, 2026-07-28", "stdio", nil, true},
		{"stdio upstream, 2025-11-25", "stdio", []string{"--protocol-version", "2025-11-25"}, false},
		{"http upstream, 2025-11-25", "http", nil, false},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "authorized")
			op := StartOP(t, "plain")
			var upstreamCfg string
			if row.kind == "stdio" {
				upstreamCfg = fmt.Sprintf("  - command: [node, %s, stdio]\n    env: {STATE_FILE: %q}\n", server, state)
			} else {
				_, ready := Start(t, "url-elicitation-server", []string{"node", server}, []string{"PORT=0", "STATE_FILE=" + state}, regexp.MustCompile(`READY (\S+)`))
				upstreamCfg = fmt.Sprintf("  - url: %s\n", ready[1])
			}
			gw := startGatewayConfig(t, `issuers:
  - issuer: %s
upstreams:
%s    scopes_supported: [mcp:read]
limits:
  requests_per_second: 200
  burst: 400
`, op.Issuer, upstreamCfg)
			c := newCLI(t)
			args := append([]string{c.bin, "connect", "--store", "file", "--browser", c.browse}, row.extra...)
			rep := runURLClient(t, c.env, append(args, gw.Endpoint("/mcp"))...)

			// connect_account: the server request, accepted, completed
			ca := rep.Calls["connect_account"]
			if len(ca) != 1 || ca[0].OK != "connected:accept" {
				t.Fatalf("connect_account: %+v", ca)
			}
			if len(rep.Elicitations) == 0 || rep.Elicitations[0].Mode != "url" || rep.Elicitations[0].Host != "mcp.example.com" ||
				!strings.HasPrefix(rep.Elicitations[0].URL, "https://mcp.example.com/connect?e=") || rep.Elicitations[0].ElicitationID == "" {
				t.Fatalf("the client's URL elicitation: %+v", rep.Elicitations)
			}
			first := rep.Elicitations[0].ElicitationID
			if row.modern != strings.HasPrefix(first, "mcpgate-") {
				t.Errorf("elicitationId %q: from the bridge = %v, want %v", first, strings.HasPrefix(first, "mcpgate-"), row.modern)
			}
			if len(rep.Completed) == 0 || rep.Completed[0] != first {
				t.Errorf("completion for %s: got %v", first, rep.Completed)
			}
			// needs_auth: -32042 (session era) or an input round (modern)
			na := rep.Calls["needs_auth"]
			if row.modern {
				if len(na) != 1 || na[0].OK != "authorized" || len(rep.Elicitations) != 2 || rep.Elicitations[1].Host != "auth.example.com" {
					t.Fatalf("needs_auth through MRTR: %+v; elicitations %+v", na, rep.Elicitations)
				}
			} else {
				if len(na) != 2 || na[0].Code != -32042 || !strings.Contains(string(na[0].Elicitations), "https://auth.example.com/start?e=") || na[1].OK != "authorized" {
					t.Fatalf("needs_auth with -32042: %+v", na)
				}
			}
		})
	}
}
