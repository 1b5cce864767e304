//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMCPRemoteBridge: mcp-remote, a widely used stdio bridge, reaches the
// protected server through the gateway with a bearer header taken from its
// environment — over Streamable HTTP, and over the legacy HTTP+SSE
// transport the gateway serves at /mcp/sse for 2024-11-05 clients.
func TestMCPRemoteBridge(t *testing.T) {
	_, gw, mcpURL, tok := protect(t, "--upstream", startEverythingHTTP(t, "streamableHttp"))
	t.Run("streamable", func(t *testing.T) { mcpRemote(t, mcpURL, "http-only", tok) })
	t.Run("legacy-sse", func(t *testing.T) { mcpRemote(t, gw.Endpoint("/mcp/sse"), "sse-only", tok) })
}

func mcpRemote(t *testing.T, url, transport, tok string) {
	cmd := exec.Command("node", Module(t, "mcp-remote/dist/proxy.js"), url, "--header", "Authorization:Bearer ${MCP_TOKEN}", "--transport", transport)
	cmd.Dir = Dir(t)
	cmd.Env = append(os.Environ(), "MCP_TOKEN="+tok, "MCP_REMOTE_CONFIG_DIR="+t.TempDir())
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("mcp-remote stderr:\n%s", stderr.String())
		}
	}()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<22)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	send := func(s string) { io.WriteString(stdin, s+"\n") }
	wait := func(id string) string {
		timeout := time.After(60 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("mcp-remote closed its output")
				}
				var m struct {
					ID json.RawMessage `json:"id"`
				}
				if json.Unmarshal([]byte(l), &m) == nil && string(m.ID) == id {
					return l
				}
			case <-timeout:
				t.Fatalf("no answer to id %s", id)
			}
		}
	}
	send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}`)
	if r := wait("1"); !strings.Contains(r, "protocolVersion") {
		t.Fatalf("initialize: %s", r)
	}
	send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"via mcp-remote"}}}`)
	if r := wait("2"); !strings.Contains(r, "via mcp-remote") {
		t.Fatalf("tools/call: %s", r)
	}
}

// TestInspectorCLI: MCP Inspector's CLI calls a tool through the gateway
// over Streamable HTTP and over the legacy HTTP+SSE front; without a token
// it gets nothing.
func TestInspectorCLI(t *testing.T) {
	_, gw, mcpURL, tok := protect(t, "--upstream", startEverythingHTTP(t, "streamableHttp"))
	cli := Module(t, "@modelcontextprotocol/inspector/cli/build/cli.js")
	for _, c := range []struct{ url, transport string }{{mcpURL, "http"}, {gw.Endpoint("/mcp/sse"), "sse"}} {
		p, _ := Start(t, "inspector-"+c.transport, []string{"node", cli, "--cli", c.url, "--transport", c.transport,
			"--method", "tools/call", "--tool-name", "echo", "--tool-arg", "message=from-inspector",
			"--header", "Authorization: Bearer " + tok}, nil, nil)
		if err := p.Wait(60 * time.Second); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(p.Output(), "Echo: from-inspector") {
			t.Fatalf("%s: inspector output:\n%s", c.transport, p.Output())
		}
	}
	p, _ := Start(t, "inspector-noauth", []string{"node", cli, "--cli", mcpURL, "--transport", "http", "--method", "tools/list"}, nil, nil)
	p.Wait(60 * time.Second)
	if strings.Contains(p.Output(), `"inputSchema"`) {
		t.Fatalf("tools listed without a token:\n%s", p.Output())
	}
}
