//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// stdioReport is what fixtures/client/stdio.mjs prints.
type stdioReport struct {
	Tools, Prompts, Resources map[string]struct {
		OK     bool   `json:"ok"`
		Error  string `json:"error"`
		Result string `json:"result"`
	}
	Progress, Logs, Sampling, Elicitation, Roots, Templates int
}

// runStdioClient drives a stdio bridge command with the TS SDK client.
func runStdioClient(t *testing.T, env []string, bridge ...string) stdioReport {
	t.Helper()
	p, _ := Start(t, "stdio-client "+filepath.Base(bridge[0]), append([]string{Node22(t), "fixtures/client/stdio.mjs"}, bridge...), env, nil)
	if err := p.Wait(3 * time.Minute); err != nil {
		t.Fatalf("stdio client: %v", err)
	}
	out := p.Output()
	var rep stdioReport
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "{\"tools\"") {
			if err := json.Unmarshal([]byte(l), &rep); err != nil {
				t.Fatalf("report: %v", err)
			}
			return rep
		}
	}
	t.Fatalf("no report from the stdio client:\n%s", out)
	return rep
}

func checkComplete(t *testing.T, who string, rep stdioReport) {
	t.Helper()
	if len(rep.Tools) < 10 || len(rep.Prompts) < 3 || len(rep.Resources) < 3 || rep.Templates < 1 {
		t.Errorf("%s: too little listed: %d tools, %d prompts, %d resources, %d templates", who, len(rep.Tools), len(rep.Prompts), len(rep.Resources), rep.Templates)
	}
	for kind, m := range map[string]map[string]struct {
		OK     bool   `json:"ok"`
		Error  string `json:"error"`
		Result string `json:"result"`
	}{"tool": rep.Tools, "prompt": rep.Prompts, "resource": rep.Resources} {
		for name, r := range m {
			if !r.OK {
				t.Errorf("%s: %s %s failed: %s %s", who, kind, name, r.Error, r.Result)
			}
		}
	}
	if rep.Progress < 1 || rep.Logs < 1 || rep.Sampling != 1 || rep.Elicitation != 1 || rep.Roots < 1 {
		t.Errorf("%s: round trips: progress %d, logs %d, sampling %d, elicitation %d, roots %d", who, rep.Progress, rep.Logs, rep.Sampling, rep.Elicitation, rep.Roots)
	}
	if r := rep.Tools["trigger-sampling-request"]; !strings.Contains(r.Result, "sampled-by-client") {
		t.Errorf("%s: the sampling answer did not reach the server: %s", who, r.Result)
	}
	if r := rep.Tools["get-roots-list"]; !strings.Contains(r.Result, "file:///tmp/e2e-root") {
		t.Errorf("%s: the roots answer did not reach the server: %s", who, r.Result)
	}
}

// TestBridgeParityWithMCPRemote: the official TS SDK stdio client drives
// `mcpgate connect` and, side by side, mcp-remote against
// server-everything over Streamable HTTP without auth: every tool, prompt
// and resource, progress, logging, sampling, elicitation and roots. What
// mcp-remote completes, the bridge completes too, and the bridge
// completes everything.
func TestBridgeParityWithMCPRemote(t *testing.T) {
	up := startEverythingHTTP(t, "streamableHttp")
	ours := runStdioClient(t, []string{"MCPGATE_CONFIG_DIR=" + t.TempDir()}, Mcpgate(t), "connect", "--store", "memory", up)
	checkComplete(t, "mcpgate connect", ours)
	theirs := runStdioClient(t, []string{"MCP_REMOTE_CONFIG_DIR=" + t.TempDir()}, "node", Module(t, "mcp-remote/dist/proxy.js"), up, "--transport", "http-only")
	for name, r := range theirs.Tools {
		if r.OK && !ours.Tools[name].OK {
			t.Errorf("mcp-remote completes tool %s, mcpgate connect does not", name)
		}
	}
	for name, r := range theirs.Prompts {
		if r.OK && !ours.Prompts[name].OK {
			t.Errorf("mcp-remote completes prompt %s, mcpgate connect does not", name)
		}
	}
	t.Logf("mcp-remote: %d tools ok of %d, sampling %d, elicitation %d, roots %d, logs %d; mcpgate: %d tools",
		countOK(theirs.Tools), len(theirs.Tools), theirs.Sampling, theirs.Elicitation, theirs.Roots, theirs.Logs, countOK(ours.Tools))
}

func countOK(m map[string]struct {
	OK     bool   `json:"ok"`
	Error  string `json:"error"`
	Result string `json:"result"`
}) int {
	n := 0
	for _, r := range m {
		if r.OK {
			n++
		}
	}
	return n
}

// TestBridgeThroughGatewayWithLogin: the bridge in front of a protected
// server — mcpgate's gateway trusting the certified OP in its plain
// profile, and in its FAPI profile (PAR required, DPoP with nonces at the
// OP and at the gateway). The first request triggers the login (headless
// browser), then every MCP feature works through both hops.
func TestBridgeThroughGatewayWithLogin(t *testing.T) {
	for _, profile := range []string{"plain", "fapi"} {
		t.Run(profile, func(t *testing.T) {
			op := StartOP(t, profile)
			gw := startGatewayConfig(t, `issuers:
  - issuer: %s
upstreams:
  - url: %s
    scopes_supported: [mcp:read]
    dpop: %s
    dpop_nonce: %v
limits:
  requests_per_second: 200
  burst: 400
`, op.Issuer, startEverythingHTTP(t, "streamableHttp"), map[string]string{"plain": "optional", "fapi": "required"}[profile], profile == "fapi")
			c := newCLI(t)
			rep := runStdioClient(t, c.env, c.bin, "connect", "--store", "file", "--browser", c.browse, gw.Endpoint("/mcp"))
			checkComplete(t, "mcpgate connect via gateway ("+profile+")", rep)
			log, _ := os.ReadFile(filepath.Join(c.dir, "browser.log"))
			if n := strings.Count(string(log), "/auth?"); n != 1 {
				t.Fatalf("%d authorization requests, want 1:\n%s", n, log)
			}
		})
	}
}

// TestBridgeTwoProcessesOneLogin: clients often start two bridges at once.
// Both need a login; one browser flow runs, the other process waits for
// it and uses the stored token, and both answer.
func TestBridgeTwoProcessesOneLogin(t *testing.T) {
	_, _, mcpURL := protectEverything(t, StartOP(t, "plain"))
	c := newCLI(t)
	var wg sync.WaitGroup
	errs := make([]string, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(c.bin, "connect", "--store", "file", "--browser", c.browse, mcpURL)
			cmd.Env = append(os.Environ(), c.env...)
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				errs[i] = err.Error()
				return
			}
			defer cmd.Wait()
			defer stdin.Close()
			fmt.Fprintln(stdin, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}`)
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 1<<20), 1<<22)
			got := map[string]string{}
			deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
			defer deadline.Stop()
			for sc.Scan() {
				var m struct {
					ID json.RawMessage `json:"id"`
				}
				json.Unmarshal(sc.Bytes(), &m)
				got[string(m.ID)] = sc.Text()
				if string(m.ID) == "1" {
					fmt.Fprintln(stdin, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
					fmt.Fprintf(stdin, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"process %d"}}}`+"\n", i)
				}
				if string(m.ID) == "2" {
					break
				}
			}
			if !strings.Contains(got["2"], fmt.Sprintf("process %d", i)) {
				errs[i] = fmt.Sprintf("answers %v; stderr %s", got, stderr.String())
			}
			go io.Copy(io.Discard, stdout)
		}()
	}
	wg.Wait()
	for i, e := range errs {
		if e != "" {
			t.Errorf("bridge %d: %s", i, e)
		}
	}
	log, _ := os.ReadFile(filepath.Join(c.dir, "browser.log"))
	if n := strings.Count(string(log), "/auth?"); n != 1 {
		t.Fatalf("%d browser logins for two bridges, want 1:\n%s", n, log)
	}
}

// TestBridgeInspectorCLI: MCP Inspector's CLI launches `mcpgate connect`
// as its stdio server and calls a tool through it.
func TestBridgeInspectorCLI(t *testing.T) {
	up := startEverythingHTTP(t, "streamableHttp")
	cli := Module(t, "@modelcontextprotocol/inspector/cli/build/cli.js")
	p, _ := Start(t, "inspector-stdio", []string{"node", cli, "--cli", "-e", "MCPGATE_STORE=memory", "-e", "MCPGATE_CONFIG_DIR=" + t.TempDir(),
		Mcpgate(t), "connect", up, "--method", "tools/call", "--tool-name", "echo", "--tool-arg", "message=inspector-over-stdio"}, nil, nil)
	if err := p.Wait(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.Output(), "Echo: inspector-over-stdio") {
		t.Fatalf("inspector output:\n%s", p.Output())
	}
}

// TestBridgeLegacySSE: servers that only speak the deprecated HTTP+SSE
// transport (2024-11-05) — server-everything in its sse mode, and the
// gateway's legacy front with a login — work through the bridge, chosen
// with --transport sse or found by the spec's fallback (auto).
func TestBridgeLegacySSE(t *testing.T) {
	up := startEverythingHTTP(t, "sse")
	for _, mode := range []string{"sse", "auto"} {
		t.Run(mode, func(t *testing.T) {
			rep := runStdioClient(t, nil, Mcpgate(t), "connect", "--store", "memory", "--transport", mode, up)
			checkComplete(t, "mcpgate connect --transport "+mode, rep)
		})
	}
	t.Run("gateway legacy front with login", func(t *testing.T) {
		_, gw, _ := protectEverything(t, StartOP(t, "plain"))
		c := newCLI(t)
		rep := runStdioClient(t, c.env, c.bin, "connect", "--store", "file", "--browser", c.browse, gw.Endpoint("/mcp/sse"))
		checkComplete(t, "mcpgate connect via the gateway's /mcp/sse", rep)
	})
}

// TestStdioUpstreamEveryFeature: the gateway's stdio upstream with the real
// server-everything as its child, reached by the TS SDK client through
// `mcpgate connect` with a login at the certified OP: every tool, prompt
// and resource, and the server→client requests (sampling, elicitation,
// roots) and notifications (progress, logging) relayed both ways through
// the child's stdin and stdout.
func TestStdioUpstreamEveryFeature(t *testing.T) {
	op := StartOP(t, "plain")
	gw := startGatewayConfig(t, `issuers:
  - issuer: %s
upstreams:
  - command: [node, %s, stdio]
    scopes_supported: [mcp:read]
limits:
  requests_per_second: 200
  burst: 400
`, op.Issuer, Module(t, "@modelcontextprotocol/server-everything/dist/index.js"))
	c := newCLI(t)
	rep := runStdioClient(t, c.env, c.bin, "connect", "--store", "file", "--browser", c.browse, gw.Endpoint("/mcp"))
	checkComplete(t, "server-everything over stdio behind the gateway", rep)
	if !strings.Contains(gw.Proc.Output(), "upstream stderr") {
		t.Error("the child's stderr did not reach the gateway's log")
	}
}
