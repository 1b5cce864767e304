//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcpclient"
)

// Replicas of `mcpgate serve` sharing a redis-server (Debian's), behind a
// round-robin proxy that keeps no affinity: every request of a session may
// land on another replica (docs/security.md "Shared state").

// redisProc is a redis-server on a free port, persistence off.
type redisProc struct {
	URL  string
	Proc *Proc
}

func startRedis(t *testing.T) *redisProc {
	port := FreePort(t)
	p, _ := Start(t, "redis-server", []string{"redis-server", "--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--port", strconv.Itoa(port)},
		nil, regexp.MustCompile(`Ready to accept connections`))
	return &redisProc{URL: fmt.Sprintf("redis://127.0.0.1:%d", port), Proc: p}
}

// roundRobin is a load balancer without affinity in front of backends; it
// keeps the Host header (the replicas' public host) and streams SSE.
func roundRobin(t *testing.T, backends []string) *httptest.Server {
	var n atomic.Uint64
	targets := make([]*url.URL, len(backends))
	for i, b := range backends {
		targets[i], _ = url.Parse(b)
	}
	rp := &httputil.ReverseProxy{
		FlushInterval: -1,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(targets[n.Add(1)%uint64(len(targets))])
			pr.Out.Host = pr.In.Host
		},
	}
	lb := httptest.NewServer(rp)
	t.Cleanup(lb.Close)
	return lb
}

type replicaBench struct {
	op       *OP
	redis    *redisProc
	lb       *httptest.Server
	public   string // the load balancer's URL: every replica's public_url
	replicas []*Gateway
}

// startReplicaBench starts n replicas for upstream (a YAML list item's
// keys, indented by four spaces) behind a round-robin proxy.
func startReplicaBench(t *testing.T, n int, upstream string) *replicaBench {
	b := &replicaBench{op: StartOP(t, "plain"), redis: startRedis(t)}
	ports := make([]int, n)
	var backends, hosts []string
	for i := range ports {
		ports[i] = FreePort(t)
		backends = append(backends, fmt.Sprintf("http://127.0.0.1:%d", ports[i]))
		hosts = append(hosts, fmt.Sprintf("127.0.0.1:%d", ports[i]))
	}
	// The proxy's address is the public URL: start it before the replicas.
	lb := roundRobin(t, backends)
	b.lb, b.public = lb, lb.URL
	key := filepath.Join(t.TempDir(), "hop.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("0123456789abcdef", 4)), 0o600); err != nil {
		t.Fatal(err)
	}
	for i, port := range ports {
		cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
public_url: %s
allowed_hosts: [%s]
issuers:
  - issuer: %s
state:
  redis:
    url: %s
  replica:
    advertise_url: http://127.0.0.1:%d
    secret_file: %s
upstreams:
  - scopes_supported: [mcp:read]
%s
limits:
  requests_per_second: 500
  burst: 1000
`, port, b.public, strings.Join(hosts, ", "), b.op.Issuer, b.redis.URL, port, key, upstream)
		file := filepath.Join(t.TempDir(), "gateway.yaml")
		if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		p, _ := Start(t, fmt.Sprintf("mcpgate-%d", i), []string{Mcpgate(t), "serve", "--config", file}, nil, regexp.MustCompile(`mcpgate serving`))
		g := &Gateway{URL: backends[i], Proc: p}
		g.WaitReady(t)
		b.replicas = append(b.replicas, g)
	}
	return b
}

func (b *replicaBench) token(t *testing.T, client, secret string) string {
	tok, _ := b.op.ClientCredentials(t, client, secret, b.public+"/mcp", "mcp:read", nil)
	return tok
}

// at POSTs body to replica i (or the load balancer, i < 0) with the public Host.
func (b *replicaBench) at(t *testing.T, i int, tok, sid, body string) (int, http.Header, string) {
	t.Helper()
	u := b.public
	if i >= 0 {
		u = b.replicas[i].URL
	}
	req, _ := http.NewRequest("POST", u+"/mcp", strings.NewReader(body))
	req.Host = strings.TrimPrefix(b.public, "http://")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	}
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, resp.Header, sb.String()
}

const echoCall = `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"message":"across replicas"}}}`

// TestReplicasHTTPUpstream: three replicas, server-everything over
// Streamable HTTP, the official Go SDK client through a load balancer
// without affinity: the session created on one replica continues on the
// others; another subject presenting its id is refused by every replica
// exactly alike; with Redis stopped a replica that must look the session up
// answers 503 -50300.
func TestReplicasHTTPUpstream(t *testing.T) {
	b := startReplicaBench(t, 3, "    url: "+startEverythingHTTP(t, "streamableHttp"))
	alice := b.token(t, "mcp-cc", "cc-secret")
	cs := connect(t, b.public+"/mcp", alice)
	for i := range 6 { // two rounds over the three replicas
		if got := callEcho(t, cs, "round "+strconv.Itoa(i)); !strings.Contains(got, "round "+strconv.Itoa(i)) {
			t.Fatalf("call %d through the load balancer: %q", i, got)
		}
	}
	sid := cs.ID()
	mallory := b.token(t, "mcp-cc-read", "cc-read-secret")
	var first string
	for i := range 3 {
		status, _, body := b.at(t, i, mallory, sid, echoCall)
		if status != 404 || (first != "" && body != first) {
			t.Fatalf("another subject with the session id at replica %d: %d %s", i, status, body)
		}
		first = body
	}
	// A session created at replica 0 only, then Redis stops: replica 1
	// cannot check the owner and fails closed.
	_, hdr, _ := b.at(t, 0, alice, "", initialize)
	fresh := hdr.Get("Mcp-Session-Id")
	if fresh == "" {
		t.Fatal("initialize at replica 0: no session id")
	}
	b.redis.Proc.Stop()
	status, h, body := b.at(t, 1, alice, fresh, echoCall)
	if status != 503 || !strings.Contains(body, "-50300") || h.Get("Retry-After") == "" {
		t.Fatalf("Redis down: %d %s", status, body)
	}
}

// TestReplicasStdioUpstream: server-everything as a stdio child lives on
// the replica that created the session; the SDK client through the load
// balancer works (requests reaching the other replica are forwarded);
// after the owner is killed the other replica answers 404 at once.
func TestReplicasStdioUpstream(t *testing.T) {
	heldSessionAcrossReplicas(t, "    command: [node, "+Module(t, "@modelcontextprotocol/server-everything/dist/index.js")+", stdio]")
}

// TestReplicasSSEUpstream: the same for server-everything's legacy HTTP+SSE
// transport: the upstream SSE connection lives on the replica that created
// the session.
func TestReplicasSSEUpstream(t *testing.T) {
	heldSessionAcrossReplicas(t, "    url: "+startEverythingHTTP(t, "sse")+"\n    transport: sse")
}

// heldSessionAcrossReplicas runs the forwarding checks for an upstream
// whose sessions hold a connection in one replica.
func heldSessionAcrossReplicas(t *testing.T, upstream string) {
	b := startReplicaBench(t, 2, upstream)
	alice := b.token(t, "mcp-cc", "cc-secret")
	cs := connect(t, b.public+"/mcp", alice)
	for i := range 4 {
		if got := callEcho(t, cs, "stdio "+strconv.Itoa(i)); !strings.Contains(got, "stdio "+strconv.Itoa(i)) {
			t.Fatalf("call %d: %q", i, got)
		}
	}
	// A session created directly at replica 0, used at replica 1.
	status, hdr, body := b.at(t, 0, alice, "", initialize)
	sid := hdr.Get("Mcp-Session-Id")
	if status != 200 || sid == "" {
		t.Fatalf("initialize at replica 0: %d %s", status, body)
	}
	if status, _, body := b.at(t, 1, alice, sid, echoCall); status != 200 || !strings.Contains(body, "across replicas") {
		t.Fatalf("stdio session of replica 0 used at replica 1: %d %s", status, body)
	}
	mallory := b.token(t, "mcp-cc-read", "cc-read-secret")
	if status, _, _ := b.at(t, 1, mallory, sid, echoCall); status != 404 {
		t.Fatalf("another subject at replica 1: %d", status)
	}
	// A forged hop straight at the owner is refused.
	req, _ := http.NewRequest("POST", b.replicas[0].URL+"/mcp", strings.NewReader(echoCall))
	req.Host = strings.TrimPrefix(b.public, "http://")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("Mcpgate-Hop", "v2.eyJwciI6eyJTdWJqZWN0IjoibWNwLWNjIn19.AAAA")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("forged hop: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	b.replicas[0].Proc.Stop()
	start := time.Now()
	status, _, body = b.at(t, 1, alice, sid, echoCall)
	if status != 404 || !strings.Contains(body, "initialize") {
		t.Fatalf("owner killed: %d %s; want 404", status, body)
	}
	t.Logf("404 after the owner died in %v", time.Since(start))
}

// TestReplicasTasksStdio: 2026-07-28 tasks on a stdio upstream live on the
// caller's task host in the replica that created them; tasks/get and
// tasks/cancel reaching the other replica are forwarded there; another
// subject gets the unknown-task answer at both; with the owner killed the
// task is unknown, never a hang.
func TestReplicasTasksStdio(t *testing.T) {
	server, _ := filepath.Abs("fixtures/tasks26/server.mjs")
	b := startReplicaBench(t, 2, fmt.Sprintf("    command: [%s, %s, stdio]", Node22(t), server))
	ownerTok, otherTok := b.token(t, "mcp-cc", "cc-secret"), b.token(t, "mcp-cc-read", "cc-read-secret")
	ctx := Ctx(t, 2*time.Minute)
	client := func(i int, tok string) *mcpclient.Client {
		c := &mcpclient.Client{URL: b.replicas[i].URL + "/mcp", Auth: bearer(tok), ProtocolVersion: "2026-07-28",
			Extensions: map[string]any{"io.modelcontextprotocol/tasks": map[string]any{}}}
		if err := c.Connect(ctx); err != nil {
			t.Fatalf("connect to replica %d: %v", i, err)
		}
		return c
	}
	call := func(c *mcpclient.Client, method string, params map[string]any) (map[string]any, error) {
		raw, err := c.Call(ctx, method, params)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		return m, nil
	}
	atA, atB, otherB := client(0, ownerTok), client(1, ownerTok), client(1, otherTok)
	created, err := call(atA, "tools/call", map[string]any{"name": "slow", "arguments": map[string]any{"ms": 600000}})
	id, _ := created["taskId"].(string)
	if err != nil || id == "" {
		t.Fatalf("create at replica 0: %v %v", created, err)
	}
	if got, err := call(atB, "tasks/get", map[string]any{"taskId": id}); err != nil || got["status"] != "working" {
		t.Fatalf("tasks/get at replica 1: %v %v", got, err)
	}
	_, unknown := call(atB, "tasks/get", map[string]any{"taskId": "no-such-task"})
	if _, err := call(otherB, "tasks/get", map[string]any{"taskId": id}); err == nil || unknown == nil || err.Error() != unknown.Error() {
		t.Fatalf("other subject at replica 1: %v, want %v", err, unknown)
	}
	if ack, err := call(atB, "tasks/cancel", map[string]any{"taskId": id}); err != nil || ack["resultType"] != "complete" {
		t.Fatalf("cancel at replica 1: %v %v", ack, err)
	}
	if got, err := call(atA, "tasks/get", map[string]any{"taskId": id}); err != nil || got["status"] != "cancelled" {
		t.Fatalf("tasks/get at replica 0 after the cancel through 1: %v %v", got, err)
	}
	second, _ := call(atA, "tools/call", map[string]any{"name": "slow", "arguments": map[string]any{"ms": 600000}})
	id2, _ := second["taskId"].(string)
	b.replicas[0].Proc.Stop()
	if _, err := call(atB, "tasks/get", map[string]any{"taskId": id2}); err == nil || err.Error() != unknown.Error() {
		t.Fatalf("task of a killed replica: %v, want %v", err, unknown)
	}
}
