package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/resource"
)

// Attacks on sessions and their budgets (issue 11, holes 7, 9 and 10):
// session ids of other subjects in any protocol era, child processes
// beyond max_sessions, answers that never come, and the session table.
// Resource checks count processes (/proc) and table entries, not time.

// echoServer builds the stdio test server into a directory of the test, so
// that its path names exactly the children of this test.
func echoServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "echoserver")
	out, err := exec.Command("go", "build", "-o", bin, "../upstream/stdio/testdata/echoserver").CombinedOutput()
	if err != nil {
		t.Fatalf("build echoserver: %v\n%s", err, out)
	}
	return bin
}

// children counts the running processes started from bin.
func children(t *testing.T, bin string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("counting processes needs /proc: %v", err)
	}
	n := 0
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if arg0, _, _ := bytes.Cut(b, []byte{0}); string(arg0) == bin {
			if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && bytes.Contains(st, []byte(") Z ")) {
				continue // a zombie is gone already
			}
			n++
		}
	}
	return n
}

// stdioGateway is a gateway whose /mcp upstream is the echo server over stdio.
func stdioGateway(t *testing.T, bin string, mutate func(*config.Gateway)) *testGateway {
	t.Helper()
	return startGateway(t, func(c *config.Gateway) {
		u := &c.Upstreams[0]
		u.URL, u.Command = "", []string{bin}
		c.Limits.RequestsPerSecond, c.Limits.Burst = 1e6, 1e6
		c.Limits.MaxStreamsPerSubject = 1000
		if mutate != nil {
			mutate(c)
		}
	})
}

var pidText = regexp.MustCompile(`"text":"[0-9]+"`)

// statelessCall is a 2026-07-28 tools/call of the echo server's tool name.
func statelessCall(id int, name string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":{"text":"hi"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, id, name)
}

func sessionCall(id int, name string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":{"text":"hi"}}}`, id, name)
}

// TestAttackForeignSessionStatelessEraStdio (hole 7): a 2026-07-28
// request carrying another subject's Mcp-Session-Id must not reach that
// subject's child process; it gets the same 404 as an unknown id.
func TestAttackForeignSessionStatelessEraStdio(t *testing.T) {
	bin := echoServer(t)
	tg := stdioGateway(t, bin, func(c *config.Gateway) { c.Limits.UpstreamTimeout.Duration = 2 * time.Second })
	alice, bob := tg.token(t, "alice", "mcp:read"), tg.token(t, "bob", "mcp:read")
	sid := tg.initialize(t, alice)
	r := tg.do(t, "POST", "/mcp", sessionCall(2, "pid"), with(bearer(alice), "Mcp-Session-Id", sid, "MCP-Protocol-Version", "2025-11-25"))
	if r.status != 200 || !strings.Contains(string(r.body), `"text":"`) {
		t.Fatalf("alice in her session: %d %s", r.status, r.body)
	}
	alicePID := pidText.FindString(string(r.body))
	if alicePID == "" {
		t.Fatalf("no pid in %s", r.body)
	}
	rows := []struct {
		name string
		hdr  map[string]string
		body string
	}{
		{"tools/call", with(statelessHeaders(bob, "tools/call", "pid"), "Mcp-Session-Id", sid), statelessCall(5, "pid")},
		{"tools/call, SSE", with(statelessHeaders(bob, "tools/call", "pid"), "Mcp-Session-Id", sid, "Accept", "text/event-stream"), statelessCall(5, "pid")},
		{"tools/list", with(statelessHeaders(bob, "tools/list", ""), "Mcp-Session-Id", sid),
			`{"jsonrpc":"2.0","id":6,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`},
		{"server/discover", with(statelessHeaders(bob, "server/discover", ""), "Mcp-Session-Id", sid),
			`{"jsonrpc":"2.0","id":7,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`},
		{"notification into the session", with(statelessHeaders(bob, "notifications/cancelled", ""), "Mcp-Session-Id", sid),
			`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`},
		{"lower-case header name", with(statelessHeaders(bob, "tools/call", "pid"), "mcp-session-id", sid), statelessCall(5, "pid")},
		{"session era", with(bearer(bob), "Mcp-Session-Id", sid, "MCP-Protocol-Version", "2025-11-25"), sessionCall(5, "pid")},
		{"no version at all", with(bearer(bob), "Mcp-Session-Id", sid), sessionCall(5, "pid")},
		{"unknown id, stateless", with(statelessHeaders(bob, "tools/call", "pid"), "Mcp-Session-Id", "0123456789abcdef0123456789abcdef"), statelessCall(5, "pid")},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			r := tg.do(t, "POST", "/mcp", row.body, row.hdr)
			if strings.Contains(string(r.body), alicePID) {
				t.Fatalf("bob's request ran in alice's child process: %d %s", r.status, r.body)
			}
			if r.status != http.StatusNotFound {
				t.Fatalf("bob with alice's session id: %d %s, want 404", r.status, r.body)
			}
			code, _, _ := r.rpcError(t)
			if code != -32600 {
				t.Fatalf("error code %d", code)
			}
		})
	}
	// The owner still reaches her own session in the stateless era.
	r = tg.do(t, "POST", "/mcp", statelessCall(8, "pid"), with(statelessHeaders(alice, "tools/call", "pid"), "Mcp-Session-Id", sid))
	if r.status != 200 || !strings.Contains(string(r.body), alicePID) {
		t.Fatalf("alice, stateless era, her own session: %d %s", r.status, r.body)
	}
}

// TestAttackForeignSessionStatelessEraHTTP (hole 7): against an HTTP
// upstream, a session id the caller does not own never reaches the
// upstream, in any era; the caller's own id does.
func TestAttackForeignSessionStatelessEraHTTP(t *testing.T) {
	tg := startGateway(t, nil)
	alice, bob := tg.token(t, "alice", "mcp:read"), tg.token(t, "bob", "mcp:read")
	sid := tg.initialize(t, alice)
	rows := []struct {
		name string
		hdr  map[string]string
		body string
	}{
		{"stateless tools/call", with(statelessHeaders(bob, "tools/call", "echo"), "Mcp-Session-Id", sid), callBody("echo", `{}`)},
		{"stateless tools/call, SSE", with(statelessHeaders(bob, "tools/call", "echo"), "Mcp-Session-Id", sid, "Accept", "text/event-stream"), callBody("echo", `{}`)},
		{"stateless tools/list", with(statelessHeaders(bob, "tools/list", ""), "Mcp-Session-Id", sid),
			`{"jsonrpc":"2.0","id":6,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`},
		{"stateless notification", with(statelessHeaders(bob, "notifications/cancelled", ""), "Mcp-Session-Id", sid),
			`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`},
		{"stateless, unknown id", with(statelessHeaders(bob, "tools/call", "echo"), "Mcp-Session-Id", "sess-999"), callBody("echo", `{}`)},
		{"session era", with(bearer(bob), "Mcp-Session-Id", sid, "MCP-Protocol-Version", "2025-11-25"), listBody},
		{"initialize with a foreign id", with(bearer(bob), "Mcp-Session-Id", sid), initBody},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			before := tg.up.hits.Load()
			r := tg.do(t, "POST", "/mcp", row.body, row.hdr)
			if r.status != http.StatusNotFound {
				t.Fatalf("bob with alice's session id: %d %s, want 404", r.status, r.body)
			}
			if n := tg.up.hits.Load(); n != before {
				t.Fatalf("the upstream was reached (%d requests)", n-before)
			}
		})
	}
	// Nothing bob sent ever carried a session id upstream.
	tg.up.mu.Lock()
	for _, h := range tg.up.headers {
		if h.Get("X-Mcpgate-Subject") == "bob" && h.Get("Mcp-Session-Id") != "" {
			t.Errorf("the upstream received session id %q on a request of bob", h.Get("Mcp-Session-Id"))
		}
	}
	tg.up.mu.Unlock()
	// A stateless request of bob without a session id goes upstream without one.
	if r := tg.do(t, "POST", "/mcp", callBody("echo", `{}`), statelessHeaders(bob, "tools/call", "echo")); r.status != 200 {
		t.Fatalf("bob, stateless: %d %s", r.status, r.body)
	}
	if h := tg.up.lastHeader(); h.Get("Mcp-Session-Id") != "" {
		t.Fatalf("session id %q sent upstream for a request without one", h.Get("Mcp-Session-Id"))
	}
	// alice's own id is forwarded in both eras.
	if r := tg.do(t, "POST", "/mcp", callBody("echo", `{}`), with(statelessHeaders(alice, "tools/call", "echo"), "Mcp-Session-Id", sid)); r.status != 200 {
		t.Fatalf("alice, stateless, own session: %d %s", r.status, r.body)
	}
	if got := tg.up.lastHeader().Get("Mcp-Session-Id"); got != sid {
		t.Fatalf("alice's own session id upstream: %q, want %q", got, sid)
	}
}

// TestAttackUnboundSessionIDInReply: a session id in an upstream reply the
// gateway did not bind to the caller never reaches the client (the client
// could not use it: it would get 404).
func TestAttackUnboundSessionIDInReply(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Mcp-Session-Id", "minted-on-the-side")
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":3,"result":{"content":[]}}`)
	}))
	t.Cleanup(up.Close)
	tg := startGateway(t, func(c *config.Gateway) { c.Upstreams[0].URL = up.URL })
	tok := tg.token(t, "alice", "mcp:read")
	r := tg.do(t, "POST", "/mcp", callBody("echo", `{}`), statelessHeaders(tok, "tools/call", "echo"))
	if r.status != 200 || r.header.Get("Mcp-Session-Id") != "" {
		t.Fatalf("unbound session id passed to the client: %d %q", r.status, r.header.Get("Mcp-Session-Id"))
	}
}

// inFlight starts n requests and returns at once: statuses reports the
// statuses received so far (0: no response headers yet), stop ends them.
func inFlight(t *testing.T, n int, req func(ctx context.Context, i int) (*http.Request, error)) (statuses func() []int, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	got := make([]int, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := req(ctx, i)
			if err != nil {
				t.Error(err)
				return
			}
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				return // ended by stop
			}
			mu.Lock()
			got[i] = resp.StatusCode
			mu.Unlock()
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	var once sync.Once
	return func() []int {
			mu.Lock()
			defer mu.Unlock()
			return append([]int(nil), got...)
		}, func() {
			once.Do(func() {
				cancel()
				wg.Wait()
			})
		}
}

// settleChildren waits until every one of n requests has either been
// refused or has a child of bin running (or 10 s passed), and returns the
// children and statuses then.
func settleChildren(t *testing.T, bin string, n int, statuses func() []int) (int, []int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := statuses()
		refused := 0
		for _, s := range st {
			if s != 0 && s != 200 {
				refused++
			}
		}
		c := children(t, bin)
		if refused+c >= n || time.Now().After(deadline) {
			return c, st
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func count(statuses []int, status int) int {
	n := 0
	for _, s := range statuses {
		if s == status {
			n++
		}
	}
	return n
}

// TestAttackChildrenBeyondMaxSessions (hole 9): stateless-era calls (JSON
// and SSE) and legacy SSE streams of one subject all start children; with
// max_sessions 6 the subject gets its share (3) and the rest is refused
// with 429 and a JSON-RPC error; the upstream never runs more than 6
// children, and another subject is not locked out.
func TestAttackChildrenBeyondMaxSessions(t *testing.T) {
	bin := echoServer(t)
	tg := stdioGateway(t, bin, func(c *config.Gateway) { c.Upstreams[0].MaxSessions = 6 })
	alice, bob := tg.token(t, "alice", "mcp:read"), tg.token(t, "bob", "mcp:read")
	statuses, stop := inFlight(t, 25, func(ctx context.Context, i int) (*http.Request, error) {
		if i >= 20 { // legacy HTTP+SSE streams
			r, err := http.NewRequestWithContext(ctx, "GET", tg.url+"/mcp/sse", nil)
			if err == nil {
				r.Header.Set("Authorization", "Bearer "+alice)
				r.Header.Set("Accept", "text/event-stream")
			}
			return r, err
		}
		r, err := http.NewRequestWithContext(ctx, "POST", tg.url+"/mcp", strings.NewReader(statelessCall(i, "sleep")))
		if err == nil {
			for k, v := range statelessHeaders(alice, "tools/call", "sleep") {
				r.Header.Set(k, v)
			}
			r.Header.Set("Content-Type", "application/json")
			accept := "application/json, text/event-stream"
			if i%2 == 1 {
				accept = "application/json" // JSON replies wait with the header unsent
			}
			r.Header.Set("Accept", accept)
		}
		return r, err
	})
	defer stop()
	n, st := settleChildren(t, bin, 25, statuses)
	if n > 3 {
		t.Fatalf("one subject runs %d children with max_sessions 6 (fair share 3); statuses %v", n, st)
	}
	if count(st, http.StatusTooManyRequests) != 22 {
		t.Fatalf("statuses %v, want 22 refusals (429)", st)
	}
	// bob still gets sessions.
	tg.initialize(t, bob)
	if n := children(t, bin); n > 6 {
		t.Fatalf("%d children with max_sessions 6", n)
	}
	r := tg.do(t, "POST", "/mcp", statelessCall(99, "echo"), statelessHeaders(alice, "tools/call", "echo"))
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("alice beyond her share: %d %s", r.status, r.body)
	}
	if code, msg, id := r.rpcError(t); code != -42900 || string(id) != "99" || !strings.Contains(msg, "max_sessions_per_subject") {
		t.Fatalf("refusal: %d %q id %s", code, msg, id)
	}
	r = tg.do(t, "GET", "/mcp/sse", "", with(bearer(alice), "Accept", "text/event-stream"))
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("legacy stream beyond the share: %d %s", r.status, r.body)
	}
	stop()
	deadline := time.Now().Add(10 * time.Second)
	for children(t, bin) > 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := children(t, bin); n != 1 {
		t.Fatalf("%d children after the requests ended, want bob's 1", n)
	}
}

// TestAttackChildrenFromManySubjects (hole 9): many subjects together never
// run more than max_sessions children; the refusal is 503 + Retry-After.
func TestAttackChildrenFromManySubjects(t *testing.T) {
	bin := echoServer(t)
	tg := stdioGateway(t, bin, func(c *config.Gateway) { c.Upstreams[0].MaxSessions = 4 })
	var toks []string
	for i := 0; i < 6; i++ {
		toks = append(toks, tg.token(t, fmt.Sprintf("user%d", i), "mcp:read"))
	}
	statuses, stop := inFlight(t, 6, func(ctx context.Context, i int) (*http.Request, error) {
		r, err := http.NewRequestWithContext(ctx, "POST", tg.url+"/mcp", strings.NewReader(statelessCall(i, "sleep")))
		if err == nil {
			for k, v := range statelessHeaders(toks[i], "tools/call", "sleep") {
				r.Header.Set(k, v)
			}
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Accept", "text/event-stream")
		}
		return r, err
	})
	defer stop()
	n, st := settleChildren(t, bin, 6, statuses)
	if n > 4 {
		t.Fatalf("%d children with max_sessions 4; statuses %v", n, st)
	}
	if count(st, http.StatusServiceUnavailable) != 2 {
		t.Fatalf("statuses %v, want two 503", st)
	}
	r := tg.do(t, "POST", "/mcp", initBody, bearer(toks[5]))
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || r.header.Get("Mcp-Session-Id") != "" {
		t.Fatalf("initialize with every child in use: %d %v %s", r.status, r.header, r.body)
	}
	r.rpcError(t)
}

// TestAttackSilentChildTimesOut (hole 9): a request waiting on a child
// that never answers ends with a JSON-RPC error after upstream_timeout, in
// JSON and SSE replies, stateless and in a session; the stateless child is
// then gone. (The echo server's "sleep" tool answers after 30 s; the
// client gives up after 15 s.)
func TestAttackSilentChildTimesOut(t *testing.T) {
	bin := echoServer(t)
	tg := stdioGateway(t, bin, func(c *config.Gateway) { c.Limits.UpstreamTimeout.Duration = 300 * time.Millisecond })
	tok := tg.token(t, "alice", "mcp:read")
	sid := tg.initialize(t, tok)
	client := &http.Client{Timeout: 15 * time.Second}
	rows := []struct {
		name, body string
		hdr        map[string]string
		sse        bool
	}{
		{"stateless SSE", statelessCall(11, "sleep"), with(statelessHeaders(tok, "tools/call", "sleep"), "Accept", "text/event-stream"), true},
		{"stateless JSON", statelessCall(11, "sleep"), with(statelessHeaders(tok, "tools/call", "sleep"), "Accept", "application/json"), false},
		{"session SSE", sessionCall(11, "sleep"), with(bearer(tok), "Mcp-Session-Id", sid, "Accept", "text/event-stream"), true},
		{"session JSON", sessionCall(12, "sleep"), with(bearer(tok), "Mcp-Session-Id", sid, "Accept", "application/json"), false},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", tg.url+"/mcp", strings.NewReader(row.body))
			req.Header.Set("Content-Type", "application/json")
			for k, v := range row.hdr {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("the reply never ended: %v (%q so far)", err, b)
			}
			msg := string(b)
			if row.sse {
				lines := sseData(b)
				if len(lines) == 0 {
					t.Fatalf("no event: %q", b)
				}
				msg = lines[len(lines)-1]
			} else if resp.StatusCode != http.StatusGatewayTimeout {
				t.Fatalf("status %d, want 504", resp.StatusCode)
			}
			if !strings.Contains(msg, `"error"`) || !strings.Contains(msg, `"code":-50400`) || !strings.Contains(msg, `"id":1`) {
				t.Fatalf("want a JSON-RPC error for the request, got %s", msg)
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for children(t, bin) > 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := children(t, bin); n != 1 {
		t.Fatalf("%d children after the stateless requests timed out, want the session's 1", n)
	}
}

// TestAttackSessionTablePerSubject (hole 10): one subject cannot fill the
// session table. Beyond its share its own least recently used idle session
// is evicted (404 for that id, DELETE upstream), so the table never holds
// more than the share for it; when every one of its sessions is busy (an
// open stream), initialize is refused with 429, Retry-After and a JSON-RPC
// error, never answered 200 without a session id, and the upstream is not
// asked. Other subjects still get sessions and are never evicted.
func TestAttackSessionTablePerSubject(t *testing.T) {
	tg := startGateway(t, func(c *config.Gateway) {
		c.Limits.RequestsPerSecond, c.Limits.Burst = 1e6, 1e6
		c.Limits.MaxHTTPSessionsPerSubject = 5
	})
	alice := tg.token(t, "alice", "mcp:read")
	bob := tg.token(t, "bob", "mcp:read")
	bobSID := tg.initialize(t, bob)
	var sids []string
	for i := 0; i < 25; i++ {
		sids = append(sids, tg.initialize(t, alice))
		if n := tg.gw.mounts[0].sessions.ownerLen(owner(&resource.Principal{Issuer: tg.idp.Issuer, Subject: "alice"})); n > 5 {
			t.Fatalf("alice holds %d bindings, share 5", n)
		}
	}
	if n := tg.gw.mounts[0].sessions.len(); n != 6 {
		t.Fatalf("session table holds %d entries, want alice's 5 and bob's 1", n)
	}
	if r := tg.do(t, "POST", "/mcp", sessionCall(2, "echo"), with(bearer(alice), "Mcp-Session-Id", sids[0])); r.status != http.StatusNotFound {
		t.Fatalf("evicted session: %d %s", r.status, r.body)
	}
	if r := tg.do(t, "POST", "/mcp", sessionCall(2, "echo"), with(bearer(bob), "Mcp-Session-Id", bobSID)); r.status != 200 {
		t.Fatalf("bob's session after alice's flood: %d %s", r.status, r.body)
	}
	// Every one of alice's 5 sessions busy: an open GET stream each.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, sid := range sids[20:] {
		req, _ := http.NewRequestWithContext(ctx, "GET", tg.url+"/mcp", nil)
		req.Header.Set("Authorization", "Bearer "+alice)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("MCP-Protocol-Version", "2025-11-25")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("stream: %v %v", err, resp)
		}
		wg.Go(func() { _, _ = io.Copy(io.Discard, resp.Body); resp.Body.Close() })
	}
	before := tg.up.inits.Load()
	for i := 0; i < 5; i++ {
		r := tg.do(t, "POST", "/mcp", initBody, bearer(alice))
		if r.status == 200 {
			t.Fatalf("initialize with every session busy answered 200 (session id %q)", r.header.Get("Mcp-Session-Id"))
		}
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
			t.Fatalf("initialize beyond the share: %d %v %s", r.status, r.header, r.body)
		}
		if code, msg, id := r.rpcError(t); code != -42900 || string(id) != "1" || !strings.Contains(msg, "max_sessions_per_subject") {
			t.Fatalf("refusal: %d %q %s", code, msg, id)
		}
	}
	// The same subject through another client is the same subject.
	other := tg.idp.Sign(t, "RS256", func() map[string]any {
		c := tg.idp.Claims("alice", tg.url+"/mcp", "mcp:read")
		c["client_id"] = "another-client"
		return c
	}())
	if r := tg.do(t, "POST", "/mcp", initBody, bearer(other)); r.status != http.StatusTooManyRequests {
		t.Fatalf("alice through another client: %d", r.status)
	}
	if n := tg.up.inits.Load(); n != before {
		t.Fatalf("refused initializes reached the upstream (%d)", n-before)
	}
	tg.initialize(t, tg.token(t, "carol", "mcp:read"))
	if r := tg.do(t, "DELETE", "/mcp", "", with(bearer(alice), "Mcp-Session-Id", sids[20])); r.status != 200 {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	tg.initialize(t, alice)
}

// TestAttackSessionTableFull (hole 10): when the whole table is full (many
// subjects), initialize gets 503 with Retry-After and a JSON-RPC error —
// never a 200 without Mcp-Session-Id — and the upstream is not asked.
func TestAttackSessionTableFull(t *testing.T) {
	tg := startGateway(t, func(c *config.Gateway) { c.Limits.RequestsPerSecond, c.Limits.Burst = 1e6, 1e6 })
	fillSessionTable(t, tg.gw.mounts[0].sessions, true)
	before := tg.up.hits.Load()
	r := tg.do(t, "POST", "/mcp", initBody, bearer(tg.token(t, "newcomer", "mcp:read")))
	if r.status == 200 {
		t.Fatalf("initialize with a full table answered 200, session id %q", r.header.Get("Mcp-Session-Id"))
	}
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("initialize with a full table: %d %v %s", r.status, r.header, r.body)
	}
	r.rpcError(t)
	if n := tg.up.hits.Load(); n != before {
		t.Fatal("the upstream was asked to create a session the gateway cannot bind")
	}
}

// fillSessionTable binds sessions of distinct subjects until b is full.
// With busy, every binding keeps a request in flight (never evicted).
func fillSessionTable(t *testing.T, b *sessionBinder, busy bool) {
	t.Helper()
	for i := 0; ; i++ {
		own := fmt.Sprintf("iss\x00flood%d", i)
		res, r := b.reserve(own)
		if r != nil {
			return
		}
		if !b.commit(res, own, fmt.Sprintf("flood-%d", i), nil) {
			t.Fatal("commit failed")
		}
		if !busy {
			res.done()
		}
	}
}

// TestAttackUpstreamGoneForgetsBinding: a 404 from the upstream for a bound
// session frees its place (the session is gone), so a subject whose
// sessions the upstream ended is not locked out until they expire.
func TestAttackUpstreamGoneForgetsBinding(t *testing.T) {
	bin := echoServer(t)
	tg := stdioGateway(t, bin, func(c *config.Gateway) { c.Limits.MaxSessionsPerSubject = 1 })
	tok := tg.token(t, "alice", "mcp:read")
	sid := tg.initialize(t, tok)
	if r := tg.do(t, "POST", "/mcp", sessionCall(2, "crash"), with(bearer(tok), "Mcp-Session-Id", sid, "Accept", "application/json")); !strings.Contains(string(r.body), `"error"`) {
		t.Fatalf("crash: %d %s", r.status, r.body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for children(t, bin) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if r := tg.do(t, "POST", "/mcp", sessionCall(3, "echo"), with(bearer(tok), "Mcp-Session-Id", sid)); r.status != http.StatusNotFound {
		t.Fatalf("request in the crashed session: %d %s", r.status, r.body)
	}
	if n := tg.gw.mounts[0].sessions.len(); n != 0 {
		t.Fatalf("%d bindings left after the upstream said the session is gone", n)
	}
	tg.initialize(t, tok)
}
