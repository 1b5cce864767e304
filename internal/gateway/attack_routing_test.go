package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
)

// Attack rows for routing keys (issue 11, hole 5) and the list filter
// (hole 6). The upstreams record what reaches them: a denied request must
// never be among it, and no hidden list entry may reach the caller.

// routingPolicy hides secret resources, prompts and tools.
func routingPolicy(c *config.Gateway) {
	c.Limits.RequestsPerSecond, c.Limits.Burst = 1e9, 1e9
	p := &c.Upstreams[0].Policy
	p.Resources = []config.Rule{{Match: "file:///secret*", Deny: true}}
	p.Prompts = []config.Rule{{Match: "secret*", Deny: true}}
	p.Tools = append(p.Tools, config.Rule{Match: "hidden_*", Deny: true})
}

func (f *fakeUpstream) sawAny(subs ...string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.bodies {
		for _, s := range subs {
			if strings.Contains(b, s) {
				return b
			}
		}
	}
	return ""
}

// TestAttackRoutingDecoy: the routing key is the member the server acts on,
// whatever decoy sits next to it, typed, on every method that has one.
func TestAttackRoutingDecoy(t *testing.T) {
	tg := startGateway(t, routingPolicy)
	tok := tg.token(t, "mallory", "mcp:read")
	sid := tg.initialize(t, tok)
	h := with(bearer(tok), "Mcp-Session-Id", sid)
	rows := []struct {
		name   string
		body   string
		status int
		code   int
	}{
		{"read: allowed name, denied uri", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"file:///public","uri":"file:///secret/key"}}`, 403, -32003},
		{"read: uri first, then the decoy", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///secret/key","name":"file:///public"}}`, 403, -32003},
		{"read: escaped uri", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"file:///public","uri":"file:///\u0073ecret/key"}}`, 403, -32003},
		{"subscribe: allowed name, denied uri", `{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"name":"file:///public","uri":"file:///secret/key"}}`, 403, -32003},
		{"unsubscribe: allowed name, denied uri", `{"jsonrpc":"2.0","id":1,"method":"resources/unsubscribe","params":{"name":"file:///public","uri":"file:///secret/key"}}`, 403, -32003},
		{"read: uri not a string, name allowed", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"file:///public","uri":{"toString":"file:///secret/key"}}}`, 400, -32602},
		{"read: uri absent, name allowed", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"file:///secret/key"}}`, 400, -32602},
		{"call: allowed uri, denied name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"uri":"echo","name":"hidden_wipe"}}`, 403, -32003},
		{"call: name not a string, uri allowed", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["hidden_wipe"],"uri":"echo"}}`, 400, -32602},
		{"call: name number", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1,"uri":"hidden_wipe"}}`, 400, -32602},
		{"call: name null", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":null,"uri":"echo","arguments":{"x":"hidden_wipe"}}}`, 400, -32602},
		{"call: unpaired surrogate", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hidden_wipe\ud800"}}`, 400, -32602},
		{"get: allowed uri, denied name", `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"uri":"greet","name":"secret_prompt"}}`, 403, -32003},
		{"get: name not a string", `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":{"secret_prompt":1},"uri":"greet"}}`, 400, -32602},
		{"complete: denied prompt", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"secret_prompt"},"argument":{"name":"a","value":""}}}`, 403, -32003},
		{"complete: denied prompt, decoy uri and name", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"name":"greet","ref":{"type":"ref/prompt","uri":"greet","name":"secret_prompt"},"argument":{"name":"a","value":""}}}`, 403, -32003},
		{"complete: denied resource template", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///secret/{id}","name":"file:///public"},"argument":{"name":"id","value":""}}}`, 403, -32003},
		{"complete: unknown ref type", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/secret","name":"secret_prompt"},"argument":{"name":"a","value":""}}}`, 400, -32602},
		{"complete: ref missing", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"name":"secret_prompt","argument":{"name":"a","value":""}}}`, 400, -32602},
		{"complete: ref type case variant", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","Type":"x","name":"secret_prompt"}}}`, 400, -32600},
		{"batch: an allowed read, then a decoy", `[{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///public"}},{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"name":"file:///public","uri":"file:///secret/key"}}]`, 403, -32003},
		{"notification: decoy", `{"jsonrpc":"2.0","method":"resources/read","params":{"name":"file:///public","uri":"file:///secret/key"}}`, 403, -32003},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			got := tg.do(t, "POST", "/mcp", r.body, h)
			code, msg, id := got.rpcError(t)
			if got.status != r.status || code != r.code {
				t.Fatalf("%d %d %q, want %d %d", got.status, code, msg, r.status, r.code)
			}
			if r.body[0] == '{' && strings.Contains(r.body, `"id":1`) && string(id) != "1" {
				t.Fatalf("error id %s, want 1", id)
			}
		})
	}
	if b := tg.up.sawAny("secret", "hidden_wipe"); b != "" {
		t.Fatalf("the upstream received a denied request: %s", b)
	}
	// What ran is what was decided and audited.
	allowed := `{"jsonrpc":"2.0","id":9,"method":"resources/read","params":{"name":"file:///decoy","uri":"file:///public/readme"}}`
	if r := tg.do(t, "POST", "/mcp", allowed, h); r.status != 200 {
		t.Fatalf("allowed read: %d %s", r.status, r.body)
	}
	var rec auditRecord
	lines := strings.Split(strings.TrimSpace(tg.audit.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rec); err != nil || rec.Name != "file:///public/readme" || rec.Method != "resources/read" {
		t.Fatalf("audit line %s: want name file:///public/readme", lines[len(lines)-1])
	}
	for _, l := range lines {
		if strings.Contains(l, `"decision":"deny"`) && strings.Contains(l, "file:///public\"") {
			t.Fatalf("a denial audited as the decoy: %s", l)
		}
	}
}

// TestAttackRoutingDecoyStateless: in 2026-07-28 the Mcp-Name mirror is
// checked against the same routing key, so a header naming the decoy is a
// mismatch and a header naming the real target meets the policy.
func TestAttackRoutingDecoyStateless(t *testing.T) {
	tg := startGateway(t, routingPolicy)
	tok := tg.token(t, "mallory", "mcp:read")
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}`
	body := `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"file:///public","uri":"file:///secret/key",` + meta + `}}`
	for name, want := range map[string]int{"file:///public": 400, "file:///secret/key": 403} {
		h := with(bearer(tok), "MCP-Protocol-Version", "2026-07-28", "Mcp-Method", "resources/read", "Mcp-Name", name)
		if r := tg.do(t, "POST", "/mcp", body, h); r.status != want {
			t.Fatalf("Mcp-Name %s: %d %s, want %d", name, r.status, r.body, want)
		}
	}
	if b := tg.up.sawAny("secret"); b != "" {
		t.Fatalf("the upstream received a denied request: %s", b)
	}
}

// TestAttackRoutingDecoyLegacy: the same refusals through the 2024-11-05
// /message endpoint.
func TestAttackRoutingDecoyLegacy(t *testing.T) {
	tg := startGateway(t, routingPolicy)
	tok := tg.token(t, "mallory", "mcp:read")
	endpoint, events, cancel := openLegacy(t, tg, tok)
	defer cancel()
	if r := tg.do(t, "POST", endpoint, initBody, bearer(tok)); r.status != 202 {
		t.Fatalf("initialize: %d %s", r.status, r.body)
	}
	<-events
	for _, b := range []string{
		`{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"name":"file:///public","uri":"file:///secret/key"}}`,
		`{"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":{"name":"file:///public","uri":"file:///secret/key"}}`,
		`{"jsonrpc":"2.0","id":4,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"secret_prompt"},"argument":{"name":"a","value":""}}}`,
		`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":5,"uri":"echo"}}`,
	} {
		if r := tg.do(t, "POST", endpoint, b, bearer(tok)); r.status != 403 && r.status != 400 {
			t.Fatalf("%s: %d %s", b, r.status, r.body)
		}
	}
	if b := tg.up.sawAny("secret", `"name":5`); b != "" {
		t.Fatalf("the upstream received a denied request: %s", b)
	}
}

// openLegacy opens a 2024-11-05 SSE stream and returns its endpoint and
// the data of later events.
func openLegacy(t *testing.T, tg *testGateway, tok string) (string, <-chan string, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	req, _ := http.NewRequestWithContext(ctx, "GET", tg.url+"/mcp", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		cancel()
		t.Fatalf("legacy GET: %v %v", err, resp)
	}
	events := make(chan string, 16)
	first := make(chan string, 1)
	go func() {
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		var data string
		n := 0
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				close(events)
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "data: "):
				data = line[6:]
			case line == "" && data != "":
				if n == 0 {
					first <- data
				} else {
					events <- data
				}
				n++
				data = ""
			}
		}
	}()
	select {
	case ep := <-first:
		return ep, events, cancel
	case <-ctx.Done():
		cancel()
		t.Fatal("no endpoint event")
		return "", nil, nil
	}
}

// reserialisingUpstream answers like a JavaScript server: it parses the
// request (ids become numbers or decoded strings) and writes its answer
// with JSON.stringify-like encoding, so 1.0 comes back as 1 and "\u0061"
// as "a". Every list it returns holds hidden entries. mode picks a
// misbehaviour: "other" answers a tools/call with a tools list (an
// upstream that routed another POST's answer here), "escaped" spells the
// result member with an escape, "plain" labels JSON answers text/plain.
type reserialisingUpstream struct {
	srv  *httptest.Server
	mode string
}

const hiddenMarker = "hidden_"

var listResults = map[string]string{
	"tools/list":               `{"tools":[{"name":"echo","inputSchema":{"type":"object"}},{"name":"hidden_wipe","inputSchema":{"type":"object"}}]}`,
	"prompts/list":             `{"prompts":[{"name":"greet"},{"name":"secret_prompt"}]}`,
	"resources/list":           `{"resources":[{"uri":"file:///public","name":"p"},{"uri":"file:///secret/key","name":"hidden_key"}]}`,
	"resources/templates/list": `{"resourceTemplates":[{"uriTemplate":"file:///public/{x}","name":"p"},{"uriTemplate":"file:///secret/{x}","name":"hidden_tpl"}]}`,
}

func newReserialisingUpstream(t *testing.T, mode string) *reserialisingUpstream {
	u := &reserialisingUpstream{mode: mode}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *reserialisingUpstream) answer(m map[string]any) []byte {
	method, _ := m["method"].(string)
	res, ok := listResults[method]
	switch {
	case method == "initialize":
		res = `{"protocolVersion":"2025-03-26","capabilities":{},"serverInfo":{"name":"js","version":"1"}}`
	case u.mode == "other" || (!ok && u.mode != ""):
		res = listResults["tools/list"]
	case !ok:
		res = `{"content":[]}`
	}
	if u.mode == "escaped" {
		res = strings.Replace(res, `{"tools"`, `{"\u0074ools"`, 1)
	}
	id, _ := json.Marshal(m["id"]) // JSON.stringify(JSON.parse(id))
	return []byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":` + res + `}`)
}

func (u *reserialisingUpstream) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		// an answer on the standalone stream (a server that lost track of
		// which stream a request came on)
		fmt.Fprintf(w, "event: message\ndata: %s\n\n", u.answer(map[string]any{"id": 7, "method": "tools/list"}))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	}
	body, _ := io.ReadAll(r.Body)
	var msgs []map[string]any
	batch := len(body) > 0 && body[0] == '['
	if batch {
		_ = json.Unmarshal(body, &msgs)
	} else {
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		msgs = []map[string]any{m}
	}
	var out [][]byte
	for _, m := range msgs {
		if m["id"] != nil {
			out = append(out, u.answer(m))
		}
	}
	if len(out) == 0 {
		w.WriteHeader(202)
		return
	}
	if m := msgs[0]; m["method"] == "initialize" {
		w.Header().Set("Mcp-Session-Id", "js-1")
	}
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") && strings.Contains(string(body), "sse") {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, o := range out {
			fmt.Fprintf(w, "event: message\ndata: %s\n\n", o)
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if u.mode == "plain" {
		w.Header().Set("Content-Type", "text/plain") // a client may parse it anyway
	}
	if batch {
		fmt.Fprintf(w, "[%s]", bytes.Join(out, []byte(",")))
		return
	}
	_, _ = w.Write(out[0])
}

func assertNoHidden(t *testing.T, what string, body []byte) {
	t.Helper()
	for _, hidden := range []string{"hidden_wipe", "secret_prompt", "file:///secret", "hidden_key", "hidden_tpl"} {
		if strings.Contains(string(body), hidden) {
			t.Fatalf("%s: hidden entry %s reached the caller: %s", what, hidden, body)
		}
	}
}

// TestAttackListFilterIDSpelling: a list reply reaches the caller filtered
// whatever spelling the request id had and the upstream gave it back in,
// in JSON and SSE replies, for every list kind.
func TestAttackListFilterIDSpelling(t *testing.T) {
	up := newReserialisingUpstream(t, "")
	tg := startGateway(t, func(c *config.Gateway) { routingPolicy(c); c.Upstreams[0].URL = up.srv.URL })
	tok := tg.token(t, "mallory", "mcp:read")
	sid := tg.initialize(t, tok)
	for _, id := range []string{`1.0`, `1e0`, `10e-1`, `1E0`, `-0`, `0.0`, `"\u0061"`, `"\/x"`, `1.00000000000000000001`, `100000000000000000000000`} {
		for method := range listResults {
			for _, accept := range []string{"application/json", "application/json, text/event-stream"} {
				params := `{}`
				if strings.Contains(accept, "event-stream") {
					params = `{"cursor":"sse"}`
				}
				body := `{"jsonrpc":"2.0","id":` + id + `,"method":"` + method + `","params":` + params + `}`
				r := tg.do(t, "POST", "/mcp", body, with(bearer(tok), "Mcp-Session-Id", sid, "Accept", accept))
				if r.status != 200 {
					t.Fatalf("%s: %d %s", body, r.status, r.body)
				}
				assertNoHidden(t, body, r.body)
			}
		}
	}
}

// TestAttackListFilterBatch: a batch with two requests of one id (by
// value) is refused before it reaches the upstream; distinct ids in any
// spelling are filtered.
func TestAttackListFilterBatch(t *testing.T) {
	up := newReserialisingUpstream(t, "")
	tg := startGateway(t, func(c *config.Gateway) { routingPolicy(c); c.Upstreams[0].URL = up.srv.URL })
	tok := tg.token(t, "mallory", "mcp:read")
	sid := tg.initialize(t, tok)
	h := with(bearer(tok), "Mcp-Session-Id", sid, "MCP-Protocol-Version", "2025-03-26")
	for _, ids := range [][2]string{{`1`, `1`}, {`1`, `1.0`}, {`1e0`, `1`}, {`"a"`, `"\u0061"`}, {`0`, `-0`}, {`9007199254740992`, `9007199254740993`}} {
		body := `[{"jsonrpc":"2.0","id":` + ids[0] + `,"method":"tools/list"},{"jsonrpc":"2.0","id":` + ids[1] + `,"method":"prompts/list"}]`
		r := tg.do(t, "POST", "/mcp", body, h)
		if r.status != 400 {
			t.Fatalf("%s: %d %s", body, r.status, r.body)
		}
		if code, _, _ := r.rpcError(t); code != -32600 {
			t.Fatalf("%s: code %d", body, code)
		}
	}
	for _, ids := range [][2]string{{`1.0`, `2.0`}, {`"1"`, `1`}, {`1e0`, `"\u0031"`}} {
		body := `[{"jsonrpc":"2.0","id":` + ids[0] + `,"method":"tools/list"},{"jsonrpc":"2.0","id":` + ids[1] + `,"method":"prompts/list"},{"jsonrpc":"2.0","id":3,"method":"resources/list"}]`
		r := tg.do(t, "POST", "/mcp", body, h)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", body, r.status, r.body)
		}
		assertNoHidden(t, body, r.body)
		if !strings.Contains(string(r.body), `"echo"`) || !strings.Contains(string(r.body), `"greet"`) {
			t.Fatalf("%s: allowed entries missing: %s", body, r.body)
		}
	}
}

// TestAttackListFilterUnmatched: replies the gateway cannot tie to a list
// request are still filtered by their shape: a list answering a tools/call
// (an upstream mixing up two POSTs' ids), a result member spelled with an
// escape, and a list on the standalone GET stream.
func TestAttackListFilterUnmatched(t *testing.T) {
	for _, mode := range []string{"other", "escaped", "plain"} {
		t.Run(mode, func(t *testing.T) {
			up := newReserialisingUpstream(t, mode)
			tg := startGateway(t, func(c *config.Gateway) { routingPolicy(c); c.Upstreams[0].URL = up.srv.URL })
			tok := tg.token(t, "mallory", "mcp:read")
			if mode == "plain" {
				// answers labelled text/plain are not MCP answers: none is
				// relayed, so no list, filtered or not, reaches the caller
				// (mcp.ConfineAnswer)
				r := tg.do(t, "POST", "/mcp", initBody, bearer(tok))
				if r.status != http.StatusBadGateway || !strings.Contains(string(r.body), "not an MCP answer") {
					t.Fatalf("initialize answered text/plain: %d %s", r.status, r.body)
				}
				for method := range listResults {
					r := tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":2,"method":"`+method+`"}`, bearer(tok))
					assertNoHidden(t, mode+" "+method, r.body)
				}
				return
			}
			sid := tg.initialize(t, tok)
			h := with(bearer(tok), "Mcp-Session-Id", sid)
			for _, body := range []string{
				`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`,
				`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"sse":1}}}`,
				`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`,
				`{"jsonrpc":"2.0","id":"x","method":"ping"}`,
			} {
				r := tg.do(t, "POST", "/mcp", body, h)
				assertNoHidden(t, mode+" "+body, r.body)
			}
			// the standalone stream
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", tg.url+"/mcp", nil)
			for k, v := range h {
				req.Header.Set(k, v)
			}
			req.Header.Set("Accept", "text/event-stream")
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("GET: %v %v", err, resp)
			}
			defer resp.Body.Close()
			line, data := "", ""
			br := bufio.NewReader(resp.Body)
			for data == "" {
				if line, err = br.ReadString('\n'); err != nil {
					t.Fatal(err)
				}
				data, _ = strings.CutPrefix(strings.TrimSpace(line), "data: ")
			}
			assertNoHidden(t, mode+" GET stream", []byte(data))
		})
	}
}

// jsStdioServer is a stdio MCP server in JavaScript: ids are whatever
// JSON.parse makes of them, and answers come late (lists after 400 ms,
// the rest after 800 ms), so that a second request can arrive while the
// first is in flight and be answered after it.
const jsStdioServer = `
const rl = require('readline').createInterface({input: process.stdin});
const send = (m) => process.stdout.write(JSON.stringify(m) + '\n');
const lists = {
  'tools/list': {tools: [{name: 'echo', inputSchema: {type: 'object'}}, {name: 'hidden_wipe', inputSchema: {type: 'object'}}]},
  'prompts/list': {prompts: [{name: 'greet'}, {name: 'secret_prompt'}]},
};
rl.on('line', (line) => {
  const m = JSON.parse(line);
  if (m.id === undefined) return;
  if (m.method === 'initialize') return send({jsonrpc: '2.0', id: m.id, result: {protocolVersion: m.params.protocolVersion, capabilities: {tools: {}}, serverInfo: {name: 'js', version: '1'}}});
  if (lists[m.method]) return setTimeout(() => send({jsonrpc: '2.0', id: m.id, result: lists[m.method]}), 400);
  setTimeout(() => send({jsonrpc: '2.0', id: m.id, result: {content: [{type: 'text', text: 'ok'}]}}), 800);
});
`

// TestAttackListFilterStdio: behind the session server (stdio upstreams),
// the reply to tools/list id 1.0 comes back as id 1. It must reach the
// caller filtered, and a tools/call with id 1 sent meanwhile in the same
// session must not receive it.
func TestAttackListFilterStdio(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	script := filepath.Join(t.TempDir(), "server.js")
	if err := os.WriteFile(script, []byte(jsStdioServer), 0o600); err != nil {
		t.Fatal(err)
	}
	tg := startGateway(t, func(c *config.Gateway) {
		routingPolicy(c)
		u := &c.Upstreams[0]
		u.URL, u.Transport, u.Command = "", "stdio", []string{node, script}
		c.Limits.UpstreamTimeout.Duration = 3 * time.Second
	})
	tok := tg.token(t, "mallory", "mcp:read")
	sid := tg.initialize(t, tok)
	h := with(bearer(tok), "Mcp-Session-Id", sid)
	var wg sync.WaitGroup
	var list reply
	wg.Add(1)
	go func() {
		defer wg.Done()
		list = tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":1.0,"method":"tools/list"}`, with(h, "Accept", "application/json"))
	}()
	time.Sleep(150 * time.Millisecond)
	call := tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`, with(h, "Accept", "application/json"))
	wg.Wait()
	assertNoHidden(t, "tools/call sent while tools/list 1.0 was in flight", call.body)
	assertNoHidden(t, "tools/list 1.0", list.body)
	if list.status != 200 || !strings.Contains(string(list.body), `"echo"`) {
		t.Fatalf("tools/list id 1.0 was not answered: %d %s", list.status, list.body)
	}
	if call.status != 400 {
		t.Fatalf("tools/call with an id in flight (by value): %d %s", call.status, call.body)
	}
	// a prompts/list answered late, spelled 1e0
	r := tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":1e0,"method":"prompts/list"}`, with(h, "Accept", "application/json, text/event-stream"))
	assertNoHidden(t, "prompts/list 1e0", r.body)
	if !strings.Contains(string(r.body), `"greet"`) {
		t.Fatalf("prompts/list id 1e0 was not answered: %d %s", r.status, r.body)
	}
}
