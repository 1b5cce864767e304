package gateway

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/state"
	"github.com/mcpgate/mcpgate/internal/testutil"
	"github.com/mcpgate/mcpgate/internal/upstream/session"
)

// replicaSet is n gateways on their own loopback ports sharing one IdP,
// one upstream, one public URL (as behind a load balancer) and one
// redis-server.
type replicaSet struct {
	gws   []*testGateway
	redis *testutil.Redis
	key   []byte
	host  string // the public host every request names
}

// echoStdioServer is a stdio MCP server (2025-11-25) that answers
// initialize, tools/list and tools/call.
const echoStdioServer = `
const rl = require('readline').createInterface({input: process.stdin});
const send = (m) => process.stdout.write(JSON.stringify(m) + '\n');
let pending = null;
rl.on('line', (line) => {
  const m = JSON.parse(line);
  if (m.id !== undefined && m.method === undefined) {
    if (pending !== null) send({jsonrpc: '2.0', id: pending, result: {content: [{type: 'text', text: 'got ' + JSON.stringify(m.result)}]}});
    pending = null;
    return;
  }
  if (m.id === undefined) return;
  if (m.method === 'tools/call' && m.params.name === 'sample') {
    pending = m.id;
    return send({jsonrpc: '2.0', id: 's1', method: 'sampling/createMessage', params: {messages: [], maxTokens: 1}});
  }
  if (m.method === 'initialize') return send({jsonrpc: '2.0', id: m.id, result: {protocolVersion: '2025-11-25', capabilities: {tools: {}}, serverInfo: {name: 'echo', version: '1'}}});
  if (m.method === 'tools/list') return send({jsonrpc: '2.0', id: m.id, result: {tools: [{name: 'echo', inputSchema: {type: 'object'}}]}});
  send({jsonrpc: '2.0', id: m.id, result: {content: [{type: 'text', text: 'pid ' + process.pid}]}});
});
`

func startReplicas(t *testing.T, n int, mutate func(*config.Gateway)) *replicaSet {
	t.Helper()
	rs := &replicaSet{redis: testutil.StartRedis(t), key: []byte(strings.Repeat("k", 32))}
	keyFile := filepath.Join(t.TempDir(), "hop.key")
	if err := os.WriteFile(keyFile, rs.key, 0o600); err != nil {
		t.Fatal(err)
	}
	idp := testutil.NewIdP(t)
	up := newFakeUpstream(t)
	lns := make([]net.Listener, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
	}
	public := lns[0].Addr().String()
	rs.host = public
	for i, ln := range lns {
		cfg := baseConfig(public, idp, up.srv.URL)
		cfg.Listen = ln.Addr().String()
		cfg.State.Redis = config.Redis{URL: rs.redis.URL()}
		cfg.State.Replica = config.Replica{AdvertiseURL: "http://" + ln.Addr().String(), SecretFile: keyFile}
		if mutate != nil {
			mutate(cfg)
		}
		cfg.ApplyDefaults()
		if err := cfg.Validate(); err != nil {
			t.Fatalf("config: %v", err)
		}
		gw, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.DiscardHandler), Getenv: func(string) string { return "" }})
		if err != nil {
			t.Fatal(err)
		}
		tg := &testGateway{gw: gw, idp: idp, up: up, cfg: cfg, url: "http://" + ln.Addr().String(), audit: &bytes.Buffer{}}
		gw.audit.w = &lockedWriter{w: tg.audit}
		go func() { _ = gw.Serve(context.Background(), ln) }()
		t.Cleanup(func() { rs.stop(i) })
		rs.gws = append(rs.gws, tg)
	}
	// issuer keys load in the background
	for _, tg := range rs.gws {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if resp, err := http.Get(tg.url + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
		}
	}
	return rs
}

func (rs *replicaSet) stop(i int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = rs.gws[i].gw.Shutdown(ctx)
}

// token is valid at every replica: they share the public URL.
func (rs *replicaSet) token(t *testing.T, sub string) string {
	return rs.gws[0].idp.Sign(t, "RS256", rs.gws[0].idp.Claims(sub, "http://"+rs.host+"/mcp", "mcp:read"))
}

// do sends to replica i as a load balancer would: the public Host.
func (rs *replicaSet) do(t *testing.T, i int, method, body string, hdr map[string]string) reply {
	t.Helper()
	return rs.gws[i].do(t, method, "/mcp", body, with(hdr, "Host", rs.host))
}

func (rs *replicaSet) initialize(t *testing.T, i int, tok string) string {
	t.Helper()
	r := rs.do(t, i, "POST", initBody, bearer(tok))
	if r.status != 200 || r.header.Get("Mcp-Session-Id") == "" {
		t.Fatalf("initialize at replica %d: %d %s", i, r.status, r.body)
	}
	return r.header.Get("Mcp-Session-Id")
}

// TestReplicasHTTPSession: a session at a Streamable HTTP upstream created
// through A continues through B, bound to the same subject: another
// subject presenting its id at B gets exactly the answer it gets at A.
func TestReplicasHTTPSession(t *testing.T) {
	rs := startReplicas(t, 2, nil)
	alice, mallory := rs.token(t, "alice"), rs.token(t, "mallory")
	sid := rs.initialize(t, 0, alice)
	r := rs.do(t, 1, "POST", rlistBody, with(bearer(alice), "Mcp-Session-Id", sid))
	if r.status != 200 || !strings.Contains(string(r.body), `"echo"`) {
		t.Fatalf("session created at A, used at B: %d %s", r.status, r.body)
	}
	if got := rs.gws[0].up.lastHeader().Get("Mcp-Session-Id"); got != sid {
		t.Fatalf("B sent session %q upstream, want %q", got, sid)
	}
	atA := rs.do(t, 0, "POST", rlistBody, with(bearer(mallory), "Mcp-Session-Id", sid))
	atB := rs.do(t, 1, "POST", rlistBody, with(bearer(mallory), "Mcp-Session-Id", sid))
	if atA.status != 404 || atB.status != 404 || string(atA.body) != string(atB.body) {
		t.Fatalf("foreign session id: A %d %s, B %d %s; want the same 404", atA.status, atA.body, atB.status, atB.body)
	}
	// A third replica-less id is unknown everywhere.
	if r := rs.do(t, 1, "POST", rlistBody, with(bearer(alice), "Mcp-Session-Id", "sess-999")); r.status != 404 {
		t.Fatalf("unknown id at B: %d", r.status)
	}
	// DELETE through B ends it in the directory: C... a new replica's view.
	if r := rs.do(t, 1, "DELETE", "", with(bearer(alice), "Mcp-Session-Id", sid)); r.status != 200 {
		t.Fatalf("DELETE at B: %d %s", r.status, r.body)
	}
	e, err := rs.gws[0].gw.shared.dir.Get(context.Background(), state.KindSession, "mcp", sid)
	if err != nil || e != nil {
		t.Fatalf("after DELETE the directory still holds %+v (%v)", e, err)
	}
}

// TestReplicasRedisDown: a session id this replica does not hold cannot be
// checked without Redis: 503 -50300 with Retry-After, never served, never
// "not found"; an initialize cannot record its session either (and its
// upstream session is ended). When Redis comes back, empty, everything
// works again: the replica holding the session serves it and writes it
// back at its next refresh; the other one has never seen it: 404.
func TestReplicasRedisDown(t *testing.T) {
	rs := startReplicas(t, 2, nil)
	alice := rs.token(t, "alice")
	sid := rs.initialize(t, 0, alice)
	rs.redis.Stop()
	r := rs.do(t, 1, "POST", rlistBody, with(bearer(alice), "Mcp-Session-Id", sid))
	if code, _, _ := r.rpcError(t); r.status != 503 || code != -50300 || r.header.Get("Retry-After") == "" {
		t.Fatalf("Redis down: %d %s (Retry-After %q); want 503 -50300", r.status, r.body, r.header.Get("Retry-After"))
	}
	r = rs.do(t, 1, "POST", initBody, bearer(alice))
	if code, _, _ := r.rpcError(t); r.status != 503 || code != -50300 || r.header.Get("Mcp-Session-Id") != "" {
		t.Fatalf("initialize with Redis down: %d %s %v", r.status, r.body, r.header)
	}
	if n := rs.gws[1].gw.mounts[0].sessions.len(); n != 0 {
		t.Fatalf("B kept %d bindings of sessions it could not record", n)
	}
	rs.redis.Stop()
	rs.redis.Start()
	if r := rs.do(t, 0, "POST", rlistBody, with(bearer(alice), "Mcp-Session-Id", sid)); r.status != 200 {
		t.Fatalf("after Redis returned, at A: %d %s", r.status, r.body)
	}
	if r := rs.do(t, 1, "POST", rlistBody, with(bearer(alice), "Mcp-Session-Id", sid)); r.status != 404 {
		t.Fatalf("after Redis returned empty, at B: %d %s", r.status, r.body)
	}
	rs.initialize(t, 1, alice)
}

func stdioReplicas(t *testing.T) *replicaSet { return stdioReplicasWith(t, nil) }

// stdioReplicasWith is stdioReplicas with more configuration.
func stdioReplicasWith(t *testing.T, more func(*config.Gateway)) *replicaSet {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	script := filepath.Join(t.TempDir(), "server.js")
	if err := os.WriteFile(script, []byte(echoStdioServer), 0o600); err != nil {
		t.Fatal(err)
	}
	return startReplicas(t, 2, func(c *config.Gateway) {
		u := &c.Upstreams[0]
		u.URL, u.Transport, u.Command = "", "stdio", []string{node, script}
		c.Limits.UpstreamTimeout.Duration = 5 * time.Second
		if more != nil {
			more(c)
		}
	})
}

const rlistBody = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`

func sessionsAt(tg *testGateway) int { return tg.gw.mounts[0].handler.(*session.Server).Len() }

// TestReplicasStdioForwarded: a stdio session created at A and reached
// through B is served by A's child (forwarded); another subject gets 404
// at B; once A is gone, B answers 404 at once so the client initializes
// again.
func TestReplicasStdioForwarded(t *testing.T) {
	rs := stdioReplicas(t)
	alice, mallory := rs.token(t, "alice"), rs.token(t, "mallory")
	sid := rs.initialize(t, 0, alice)
	call := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{}}}`
	atA := rs.do(t, 0, "POST", call, with(bearer(alice), "Mcp-Session-Id", sid))
	atB := rs.do(t, 1, "POST", call, with(bearer(alice), "Mcp-Session-Id", sid))
	if atA.status != 200 || atB.status != 200 || strings.Join(sseData(atA.body), "") != strings.Join(sseData(atB.body), "") {
		t.Fatalf("A %d %s; B %d %s; want the same child's answer", atA.status, atA.body, atB.status, atB.body)
	}
	if sessionsAt(rs.gws[0]) != 1 || sessionsAt(rs.gws[1]) != 0 {
		t.Fatalf("sessions A %d B %d; want the one child at A", sessionsAt(rs.gws[0]), sessionsAt(rs.gws[1]))
	}
	if r := rs.do(t, 1, "POST", call, with(bearer(mallory), "Mcp-Session-Id", sid)); r.status != 404 {
		t.Fatalf("another subject at B: %d %s", r.status, r.body)
	}
	rs.stop(0)
	r := rs.do(t, 1, "POST", call, with(bearer(alice), "Mcp-Session-Id", sid))
	if r.status != 404 {
		t.Fatalf("owner gone: %d %s; want 404", r.status, r.body)
	}
	if code, _, _ := r.rpcError(t); code != -32600 {
		t.Fatalf("owner gone: code %d", code)
	}
}

// signHop builds a hop assertion by hand, as a replica holding key would.
func signHop(key []byte, h state.Hop) string {
	b, _ := json.Marshal(h)
	p := base64.RawURLEncoding.EncodeToString(b)
	m := hmac.New(sha256.New, key)
	m.Write([]byte("mcpgate-hop-v2\x00" + p))
	return "v2." + p + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// TestAttackForgedHop: the owner replica serves a forwarded request only
// with a valid hop assertion: no key, a wrong key, another request's
// assertion, a stale timestamp and a replayed nonce are all refused (401,
// JSON-RPC error), and nothing reaches the child. A valid hop still gets
// the ownership check: a principal that does not own the session gets 404.
func TestAttackForgedHop(t *testing.T) {
	rs := stdioReplicas(t)
	alice := rs.token(t, "alice")
	sid := rs.initialize(t, 0, alice)
	iss := rs.gws[0].idp.Issuer
	pr := func(sub string) json.RawMessage {
		b, _ := json.Marshal(map[string]any{"Subject": sub, "Issuer": iss, "ClientID": "test-client", "Scopes": []string{"mcp:read"}})
		return b
	}
	body := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{}}}`
	sum := sha256.Sum256([]byte(body))
	good := func() state.Hop {
		var n [16]byte
		_, _ = rand.Read(n[:])
		return state.Hop{Dest: rs.gws[0].url, Method: "POST", URI: "/mcp", Binding: sid, Time: time.Now().Unix(), Nonce: hex.EncodeToString(n[:]),
			Digest: hex.EncodeToString(sum[:]), Principal: pr("alice")}
	}
	send := func(hop string) reply {
		return rs.do(t, 0, "POST", body, map[string]string{state.HeaderHop: hop, "Mcp-Session-Id": sid})
	}
	// The hand-made assertion is accepted: the refusals below are for what
	// each one changes.
	if r := send(signHop(rs.key, good())); r.status != 200 {
		t.Fatalf("valid hop: %d %s", r.status, r.body)
	}
	replayed := signHop(rs.key, good())
	if r := send(replayed); r.status != 200 {
		t.Fatalf("valid hop: %d %s", r.status, r.body)
	}
	// stale and future are 10s past the window: the cases are signed
	// before the loop sends them, seconds apart on a loaded machine (the
	// exact boundary is TestHops's, on a fixed clock).
	cases := map[string]string{
		"no key":        "v2.e30.AAAA",
		"wrong key":     signHop([]byte(strings.Repeat("x", 32)), good()),
		"replayed":      replayed,
		"stale":         signHop(rs.key, func() state.Hop { h := good(); h.Time -= 40; return h }()),
		"future":        signHop(rs.key, func() state.Hop { h := good(); h.Time += 40; return h }()),
		"other method":  signHop(rs.key, func() state.Hop { h := good(); h.Method = "DELETE"; return h }()),
		"other session": signHop(rs.key, func() state.Hop { h := good(); h.Binding = "x"; return h }()),
		"other replica": signHop(rs.key, func() state.Hop { h := good(); h.Dest = rs.gws[1].url; return h }()),
		"no replica":    signHop(rs.key, func() state.Hop { h := good(); h.Dest = ""; return h }()),
		"other query":   signHop(rs.key, func() state.Hop { h := good(); h.URI = "/mcp?x=1"; return h }()),
		"other body":    signHop(rs.key, func() state.Hop { h := good(); h.Digest = strings.Repeat("0", 64); return h }()),
		"empty":         "",
	}
	for name, hop := range cases {
		r := send(hop)
		if r.status != 401 {
			t.Errorf("%s: %d %s; want 401", name, r.status, r.body)
			continue
		}
		if code, _, _ := r.rpcError(t); code != -32600 {
			t.Errorf("%s: %d %s; want 401", name, r.status, r.body)
		}
	}
	// A valid assertion for /mcp, sent with a query it was not signed over.
	if r := rs.gws[0].do(t, "POST", "/mcp?x=1", body, map[string]string{"Host": rs.host, state.HeaderHop: signHop(rs.key, good()), "Mcp-Session-Id": sid}); r.status != 401 {
		t.Errorf("query not signed: %d %s; want 401", r.status, r.body)
	}
	// A valid assertion for someone else's principal: the owner checks the
	// binding as for any caller.
	h := good()
	h.Principal = pr("mallory")
	if r := send(signHop(rs.key, h)); r.status != 404 {
		t.Errorf("valid hop, foreign principal: %d %s; want 404", r.status, r.body)
	}
}

// TestAttackHopWithoutReplicas: a gateway that forwards nothing refuses any
// request carrying a hop header instead of ignoring it.
func TestAttackHopWithoutReplicas(t *testing.T) {
	tg := startGateway(t, nil)
	r := tg.do(t, "POST", "/mcp", initBody, map[string]string{state.HeaderHop: "v1.e30.AAAA"})
	if r.status != 401 {
		t.Fatalf("hop header in memory mode: %d %s", r.status, r.body)
	}
	if tg.up.hits.Load() != 0 {
		t.Fatal("reached the upstream")
	}
}

// TestReplicasRequestState: a Multi Round-Trip request parked at A (its
// stdio connection waits there) is resumed by a retry that reaches B; the
// requestState is single-use across replicas, and another subject's retry
// with it resumes nothing.
func TestReplicasRequestState(t *testing.T) {
	rs := stdioReplicas(t)
	alice, mallory := rs.token(t, "alice"), rs.token(t, "mallory")
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"sampling":{}}}`
	h := statelessHeaders(alice, "tools/call", "sample")
	ask := func() string {
		t.Helper()
		r := rs.do(t, 0, "POST", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"sample",`+meta+`}}`, with(h, "Accept", "application/json"))
		var ir struct {
			Result struct {
				ResultType   string `json:"resultType"`
				RequestState string `json:"requestState"`
			} `json:"result"`
		}
		if err := json.Unmarshal(r.body, &ir); err != nil || ir.Result.ResultType != "input_required" || ir.Result.RequestState == "" {
			t.Fatalf("want an InputRequiredResult: %d %s", r.status, r.body)
		}
		return ir.Result.RequestState
	}
	retry := func(i int, hdr map[string]string, st string) reply {
		return rs.do(t, i, "POST", `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"sample","requestState":"`+st+
			`","inputResponses":{"input-1":{"role":"assistant","model":"m","content":{"type":"text","text":"42"}}},`+meta+`}}`, with(hdr, "Accept", "application/json"))
	}
	st := ask()
	if r := retry(1, statelessHeaders(mallory, "tools/call", "sample"), st); !strings.Contains(string(r.body), `"error"`) {
		t.Fatalf("another subject's retry at B: %d %s", r.status, r.body)
	}
	st = ask()
	if r := retry(1, h, st); r.status != 200 || !strings.Contains(string(r.body), "42") {
		t.Fatalf("retry at B did not resume the request parked at A: %d %s", r.status, r.body)
	}
	for i := range 2 {
		if r := retry(i, h, st); !strings.Contains(string(r.body), "-32602") {
			t.Fatalf("a used requestState was accepted again at replica %d: %d %s", i, r.status, r.body)
		}
	}
}

// TestReplicasTasks: a task an HTTP upstream created through A is found
// through B under the same binding: its creator reaches it, another
// subject gets the "task not found" it gets at A.
func TestReplicasTasks(t *testing.T) {
	up := newTaskUpstream(t, false)
	rs := startReplicas(t, 2, func(c *config.Gateway) { c.Upstreams[0].URL = up.srv.URL })
	alice, mallory := rs.token(t, "alice"), rs.token(t, "mallory")
	r := rs.do(t, 0, "POST", taskCall("echo"), statelessHeaders(alice, "tools/call", "echo"))
	var m struct {
		Result struct {
			TaskID string `json:"taskId"`
		} `json:"result"`
	}
	if json.Unmarshal(r.body, &m) != nil || m.Result.TaskID == "" {
		t.Fatalf("tools/call at A: %d %s", r.status, r.body)
	}
	id := m.Result.TaskID
	get := statelessTask("tasks/get", id)
	if r := rs.do(t, 1, "POST", get, statelessHeaders(alice, "tasks/get", id)); r.status != 200 || strings.Contains(string(r.body), `"error"`) {
		t.Fatalf("tasks/get at B: %d %s", r.status, r.body)
	}
	atA := rs.do(t, 0, "POST", get, statelessHeaders(mallory, "tasks/get", id))
	atB := rs.do(t, 1, "POST", get, statelessHeaders(mallory, "tasks/get", id))
	if !strings.Contains(string(atB.body), taskNotFound) || string(atA.body) != string(atB.body) {
		t.Fatalf("another subject: A %s, B %s; want the same task not found", atA.body, atB.body)
	}
}

// TestReplicasStdioStream: the standalone GET stream of a stdio session
// opened through B is A's stream, relayed as it comes (the first event
// arrives while the stream is open).
func TestReplicasStdioStream(t *testing.T) {
	rs := stdioReplicas(t)
	alice := rs.token(t, "alice")
	sid := rs.initialize(t, 0, alice)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", rs.gws[1].url+"/mcp", nil)
	req.Host = rs.host
	req.Header.Set("Authorization", "Bearer "+alice)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET at B: %d %v", resp.StatusCode, resp.Header)
	}
	if n := rs.gws[0].gw.mounts[0].handler.(*session.Server).Len(); n != 1 {
		t.Fatalf("sessions at A: %d", n)
	}
	// The stream is open at A: a DELETE through B ends the session there,
	// and the relayed stream ends with it.
	if r := rs.do(t, 1, "DELETE", "", with(bearer(alice), "Mcp-Session-Id", sid)); r.status >= 300 {
		t.Fatalf("DELETE at B: %d %s", r.status, r.body)
	}
	if _, err := io.ReadAll(resp.Body); err != nil && ctx.Err() != nil {
		t.Fatal("the relayed stream did not end with its session")
	}
	if r := rs.do(t, 1, "POST", rlistBody, with(bearer(alice), "Mcp-Session-Id", sid)); r.status != 404 {
		t.Fatalf("after DELETE: %d", r.status)
	}
}
