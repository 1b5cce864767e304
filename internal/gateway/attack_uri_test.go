package gateway

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
)

// Attack rows for resource URI spellings (review-gw finding 1): a deny
// rule on a resource must hold however the URI is spelt, because the
// server normalises it (the TypeScript SDK reads new URL(uri).toString())
// before acting on it. The gateway refuses every URI that is not in
// canonical form (mcp.CheckResourceURI) with 400 -32602, on every
// upstream kind, for every method that carries one.

func uriPolicy(c *config.Gateway) {
	c.Limits.RequestsPerSecond, c.Limits.Burst = 1e9, 1e9
	p := &c.Upstreams[0].Policy
	p.Resources = []config.Rule{
		{Match: "demo://resource/static/document/architecture.md", Deny: true},
		{Match: "demo://resource/dynamic/text/*", Deny: true},
		{Match: "file:///srv/private/*", Deny: true},
	}
}

// uriPayloads are spellings of denied resources: the reviewer's, the
// docs' own example, and neighbours.
var uriPayloads = []string{
	"DEMO://resource/static/document/architecture.md",
	"demo://resource/static/x/../document/architecture.md",
	" demo://resource/static/document/architecture.md",
	"demo:/\t/resource/static/document/architecture.md",
	"demo://resource/static/document/architecture.md\n",
	"demo://resource/static/document/architecture.md\u0000",
	"Demo://resource/dynamic/text/1",
	"demo://resource/dynamic/./text/1",
	"demo://resource/dynamic/%2e/text/1",
	"demo://resource/dynamic/x/%2E%2E/text/1",
	"demo://resource/dynamic/%74ext/1",
	"demo://resource/dynamic/text/1#x",
	"file:///srv/public/../private/x",
	"FILE:///srv/private/x",
	"file:///srv//private/x",
	"file:///srv/%70rivate/x",
	"file://localhost/srv/private/x",
	"file:/srv/private/x",
	"file:///srv/public/%2E%2E/private/x",
	"file:///srv\\private\\x",
}

func uriBodies() []string {
	var out []string
	for i, u := range uriPayloads {
		q, _ := json.Marshal(u)
		for _, m := range []string{"resources/read", "resources/subscribe", "resources/unsubscribe"} {
			out = append(out, `{"jsonrpc":"2.0","id":`+itoa(100+i)+`,"method":"`+m+`","params":{"uri":`+string(q)+`}}`)
		}
	}
	for _, tmpl := range []string{"DEMO://resource/dynamic/text/{id}", "demo://resource/x/../dynamic/text/{id}", " demo://resource/dynamic/text/{id}"} {
		q, _ := json.Marshal(tmpl)
		out = append(out, `{"jsonrpc":"2.0","id":99,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":`+string(q)+`},"argument":{"name":"id","value":""}}}`)
	}
	return out
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// wantCanonicalRefusal asserts one refusal: 400, -32602, naming the
// problem and the canonical form, and nothing of the secret.
func wantCanonicalRefusal(t *testing.T, body string, r reply) {
	t.Helper()
	if strings.Contains(string(r.body), "TOP-SECRET") {
		t.Errorf("%s: the denied resource was read: %s", body, r.body)
		return
	}
	var m struct {
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if r.status != 400 || json.Unmarshal(r.body, &m) != nil || m.Error == nil || m.Error.Code != -32602 || !strings.Contains(m.Error.Message, "canonical form") {
		t.Errorf("%s: %d %s, want 400 -32602 naming the canonical form", body, r.status, r.body)
	}
}

// TestAttackURISpellingHTTP: streamable HTTP upstream.
func TestAttackURISpellingHTTP(t *testing.T) {
	tg := startGateway(t, uriPolicy)
	tok := tg.token(t, "mallory", "mcp:read")
	h := with(bearer(tok), "Mcp-Session-Id", tg.initialize(t, tok))
	for _, b := range uriBodies() {
		wantCanonicalRefusal(t, b, tg.do(t, "POST", "/mcp", b, h))
	}
	if b := tg.up.sawAny("architecture.md", "dynamic", "srv"); b != "" {
		t.Fatalf("the upstream received a non-canonical uri: %s", b)
	}
	// the canonical spelling is decided by the rules, and audited so
	for u, status := range map[string]int{"demo://resource/static/document/architecture.md": 403, "demo://resource/dynamic/text/1": 403, "file:///srv/private/x": 403, "file:///srv/public/x": 200} {
		r := tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":"`+u+`"}}`, h)
		if r.status != status {
			t.Fatalf("%s: %d %s, want %d", u, r.status, r.body, status)
		}
	}
	if strings.Contains(tg.audit.String(), `"decision":"allow","reason":"default allow"`) && strings.Contains(tg.audit.String(), "DEMO://") {
		t.Fatalf("a non-canonical uri was audited as allowed: %s", tg.audit.String())
	}
}

// sdkModelServer models a TypeScript SDK server on stdio or legacy SSE:
// it reads the resource new URL(uri).toString() names, and answers
// TOP-SECRET for a denied one.
const sdkModelServer = `
const secret = (u) => u === 'demo://resource/static/document/architecture.md' || u.startsWith('demo://resource/dynamic/text/') || u.startsWith('file:///srv/private/');
function answer(m) {
  if (m.id === undefined) return null;
  if (m.method === 'initialize') return {jsonrpc: '2.0', id: m.id, result: {protocolVersion: m.params.protocolVersion, capabilities: {resources: {subscribe: true}}, serverInfo: {name: 'model', version: '1'}}};
  if (m.method && m.method.startsWith('resources/')) {
    let u; try { u = new URL(m.params.uri).toString(); } catch (e) { return {jsonrpc: '2.0', id: m.id, error: {code: -32602, message: 'bad uri'}}; }
    return {jsonrpc: '2.0', id: m.id, result: {contents: [{uri: u, text: secret(u) ? 'TOP-SECRET' : 'public'}]}};
  }
  if (m.method === 'completion/complete') {
    return {jsonrpc: '2.0', id: m.id, result: {completion: {values: ['TOP-SECRET'], total: 1}}};
  }
  return {jsonrpc: '2.0', id: m.id, result: {}};
}
if (process.argv[2] === 'sse') {
  let stream = null;
  const srv = require('http').createServer((req, res) => {
    if (req.method === 'GET') {
      res.writeHead(200, {'Content-Type': 'text/event-stream'});
      res.write('event: endpoint\ndata: /message?s=1\n\n');
      stream = res;
      return;
    }
    let body = '';
    req.on('data', (d) => body += d);
    req.on('end', () => {
      res.writeHead(202); res.end();
      const a = answer(JSON.parse(body));
      if (a && stream) stream.write('event: message\ndata: ' + JSON.stringify(a) + '\n\n');
    });
  });
  srv.listen(0, '127.0.0.1', () => console.log(srv.address().port));
} else {
  const rl = require('readline').createInterface({input: process.stdin});
  rl.on('line', (line) => { const a = answer(JSON.parse(line)); if (a) process.stdout.write(JSON.stringify(a) + '\n'); });
}
`

func sdkModel(t *testing.T) (node, script string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	script = filepath.Join(t.TempDir(), "model.js")
	if err := os.WriteFile(script, []byte(sdkModelServer), 0o600); err != nil {
		t.Fatal(err)
	}
	return node, script
}

// checkModelUpstream runs the payloads against a gateway in front of the
// SDK model, then shows the model does serve the secret to the canonical
// spelling were it allowed (so a pass is the gateway's doing).
func checkModelUpstream(t *testing.T, tg *testGateway) {
	tok := tg.token(t, "mallory", "mcp:read")
	h := with(bearer(tok), "Mcp-Session-Id", tg.initialize(t, tok), "Accept", "application/json")
	for _, b := range uriBodies() {
		wantCanonicalRefusal(t, b, tg.do(t, "POST", "/mcp", b, h))
	}
	r := tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":8,"method":"resources/read","params":{"uri":"file:///srv/public/x"}}`, h)
	if r.status != 200 || !strings.Contains(string(r.body), "public") {
		t.Fatalf("allowed read through the model: %d %s", r.status, r.body)
	}
}

// TestAttackURISpellingStdio: stdio upstream (session server).
func TestAttackURISpellingStdio(t *testing.T) {
	node, script := sdkModel(t)
	tg := startGateway(t, func(c *config.Gateway) {
		uriPolicy(c)
		u := &c.Upstreams[0]
		u.URL, u.Transport, u.Command = "", "stdio", []string{node, script}
		c.Limits.UpstreamTimeout.Duration = 3 * time.Second
	})
	checkModelUpstream(t, tg)
}

// TestAttackURISpellingLegacySSE: legacy HTTP+SSE upstream.
func TestAttackURISpellingLegacySSE(t *testing.T) {
	node, script := sdkModel(t)
	cmd := exec.Command(node, script, "sse")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	port, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("model server: %v", err)
	}
	tg := startGateway(t, func(c *config.Gateway) {
		uriPolicy(c)
		u := &c.Upstreams[0]
		u.URL, u.Transport = "http://127.0.0.1:"+strings.TrimSpace(port)+"/sse", "sse"
		c.Limits.UpstreamTimeout.Duration = 3 * time.Second
	})
	checkModelUpstream(t, tg)
}
