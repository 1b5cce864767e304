//go:build e2e

package e2e

import (
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func execOutput(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// Answer is an HTTP answer read whole.
type Answer struct {
	Status int
	Header http.Header
	Body   string
	Err    error
}

// clusterClient bounds every request: a hang fails the test instead of
// stalling it.
var clusterClient = &http.Client{Timeout: 30 * time.Second}

// Post sends an MCP POST to replica i directly (i < 0: through the load
// balancer) with the public Host, and the headers in hdr (pairs).
func (c *Cluster) Post(i int, path, body string, hdr ...string) Answer {
	base := c.LB
	if i >= 0 {
		base = c.Replicas[i].URL
	}
	req, err := http.NewRequest("POST", base+path, strings.NewReader(body))
	if err != nil {
		return Answer{Err: err}
	}
	req.Host = c.Host()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for j := 0; j+1 < len(hdr); j += 2 {
		req.Header.Set(hdr[j], hdr[j+1])
	}
	resp, err := clusterClient.Do(req)
	if err != nil {
		return Answer{Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return Answer{Status: resp.StatusCode, Header: resp.Header, Body: string(b), Err: err}
}

// Readyz is replica i's /readyz status.
func (c *Cluster) Readyz(i int) (int, string) { return get(c.Replicas[i].URL + "/readyz") }

// Initialize opens a 2025-11-25 session at replica i (i < 0: through the
// load balancer) and returns its id.
func (c *Cluster) Initialize(t *testing.T, i int, path, tok string) string {
	t.Helper()
	a := c.Post(i, path, initialize, "Authorization", "Bearer "+tok)
	sid := a.Header.Get("Mcp-Session-Id")
	if a.Err != nil || a.Status != 200 || sid == "" {
		t.Fatalf("initialize at replica %d%s: %v %d %.300s", i, path, a.Err, a.Status, a.Body)
	}
	if n := c.Post(i, path, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, "Authorization", "Bearer "+tok,
		"Mcp-Session-Id", sid, "MCP-Protocol-Version", "2025-11-25"); n.Status != 202 {
		t.Fatalf("notifications/initialized at replica %d: %v %d %.300s", i, n.Err, n.Status, n.Body)
	}
	return sid
}

// Echo calls the echo tool in session sid at replica i.
func (c *Cluster) Echo(i int, path, tok, sid, msg string) Answer {
	return c.Post(i, path, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"`+msg+`"}}}`,
		"Authorization", "Bearer "+tok, "Mcp-Session-Id", sid, "MCP-Protocol-Version", "2025-11-25")
}
