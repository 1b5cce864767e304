//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestBrokerLoginAndHTTPClient: mcpgate broker in front of the gateway
// (certified OP, plain profile) with a required local token. A person
// asks /oauth/login for a one-time link with the local token and opens it
// (the headless browser follows it through the OP back to the broker's
// /oauth/callback); then MCP Inspector's CLI — an HTTP client without
// OAuth — calls a tool through the broker with the local token, and
// /oauth/status (with the token) shows the login without any OAuth token.
func TestBrokerLoginAndHTTPClient(t *testing.T) {
	_, _, mcpURL := protectEverything(t, StartOP(t, "plain"))
	c := newCLI(t)
	port := FreePort(t)
	tokenFile := filepath.Join(c.dir, "broker.token")
	Start(t, "mcpgate-broker", []string{c.bin, "broker", "--store", "file", "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--require-local-token", tokenFile, mcpURL}, c.env, regexp.MustCompile(`mcpgate broker listening`))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	tok, _ := os.ReadFile(tokenFile)
	if fi, _ := os.Stat(tokenFile); fi == nil || fi.Mode().Perm() != 0o600 || len(strings.TrimSpace(string(tok))) < 32 {
		t.Fatalf("local token file: %v", fi)
	}
	local := strings.TrimSpace(string(tok))

	// before login: a JSON-RPC error that says where to log in
	req, _ := http.NewRequest("POST", base+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	req.Header.Set("Authorization", "Bearer "+local)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(b), "/oauth/login") {
		t.Fatalf("before login: %d %s", resp.StatusCode, b)
	}

	// with a local token, the login starts from a one-time link that
	// the token holder asks for
	req, _ = http.NewRequest("GET", base+"/oauth/login", nil)
	req.Header.Set("X-Mcpgate-Token", local)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	link := regexp.MustCompile(`http://\S+ticket=\S+`).FindString(string(b))
	if resp.StatusCode != 200 || link == "" {
		t.Fatalf("login link: %d %s", resp.StatusCode, b)
	}
	if out, err := exec.Command(Node22(t), "fixtures/client/browser.mjs", link).CombinedOutput(); err != nil {
		t.Fatalf("browser login through the broker: %v %s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	var st map[string]any
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", base+"/oauth/status", nil)
		req.Header.Set("X-Mcpgate-Token", local)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		json.Unmarshal(body, &st)
		if st["logged_in"] == true {
			if strings.Contains(string(body), "eyJ") {
				t.Fatalf("status carries token material: %s", body)
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st["logged_in"] != true || st["subject"] != "alice" {
		t.Fatalf("status after login: %v", st)
	}

	cli := Module(t, "@modelcontextprotocol/inspector/cli/build/cli.js")
	p, _ := Start(t, "inspector-broker", []string{"node", cli, "--cli", base + "/mcp", "--transport", "http",
		"--method", "tools/call", "--tool-name", "echo", "--tool-arg", "message=through-the-broker",
		"--header", "Authorization: Bearer " + local}, nil, nil)
	if err := p.Wait(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.Output(), "Echo: through-the-broker") {
		t.Fatalf("inspector via broker:\n%s", p.Output())
	}
	p, _ = Start(t, "inspector-broker-notoken", []string{"node", cli, "--cli", base + "/mcp", "--transport", "http", "--method", "tools/list"}, nil, nil)
	p.Wait(60 * time.Second)
	if strings.Contains(p.Output(), `"inputSchema"`) {
		t.Fatalf("tools listed without the local token:\n%s", p.Output())
	}
}

// TestBrokerDetach: --detach leaves a background broker with a pid file
// and a log file (both 0600) and returns; the broker answers until it is
// stopped.
func TestBrokerDetach(t *testing.T) {
	up := startEverythingHTTP(t, "streamableHttp")
	dir := t.TempDir()
	port := FreePort(t)
	pidFile, logFile := filepath.Join(dir, "b.pid"), filepath.Join(dir, "b.log")
	cmd := exec.Command(Mcpgate(t), "broker", "--detach", "--store", "memory", "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--pid-file", pidFile, "--log-file", logFile, up)
	cmd.Env = append(os.Environ(), "MCPGATE_CONFIG_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "running in the background") {
		t.Fatalf("--detach: %v %s", err, out)
	}
	raw, _ := os.ReadFile(pidFile)
	var pid int
	fmt.Sscan(string(raw), &pid)
	proc, err := os.FindProcess(pid)
	if pid == 0 || err != nil {
		t.Fatalf("pid file: %q", raw)
	}
	t.Cleanup(func() { proc.Kill() })
	for _, f := range []string{pidFile, logFile} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, fi, err)
		}
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("background broker: %v %v", err, resp)
	}
	resp.Body.Close()
	log, _ := os.ReadFile(logFile)
	if !strings.Contains(string(log), "mcpgate broker listening") {
		t.Fatalf("log file: %s", log)
	}
}
