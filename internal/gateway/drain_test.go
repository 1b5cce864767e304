package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/mcp"
)

// slowUpstream wraps the fake upstream: a tools/call of the tool "slow"
// announces itself on arrived and answers only once release is closed.
type slowUpstream struct {
	fake    *fakeUpstream
	arrived chan struct{}
	release chan struct{}
}

func (s *slowUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if strings.Contains(string(body), `"name":"slow"`) {
		s.arrived <- struct{}{}
		<-s.release
	}
	if strings.Contains(string(body), `"subscriptions/listen"`) {
		// a 2026-07-28 listen stream: acknowledged, then open until the
		// gateway ends it
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/subscriptions/acknowledged\",\"params\":{}}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	}
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	s.fake.serve(w, r)
}

func startSlowGateway(t *testing.T) (*testGateway, *slowUpstream) {
	slow := &slowUpstream{arrived: make(chan struct{}, 1), release: make(chan struct{})}
	srv := httptest.NewServer(slow)
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-slow.release:
		default:
			close(slow.release)
		}
	})
	tg := startGateway(t, func(c *config.Gateway) { c.Upstreams[0].URL = srv.URL })
	slow.fake = tg.up
	return tg, slow
}

// openSSE opens the session's GET stream and reads its first event.
func openSSE(t *testing.T, tg *testGateway, tok, sid string) *bufio.Reader {
	t.Helper()
	req, _ := http.NewRequest("GET", tg.url+"/mcp", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Mcp-Session-Id", sid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET stream: %v %v", err, resp)
	}
	t.Cleanup(func() { resp.Body.Close() })
	br := bufio.NewReader(resp.Body)
	if line, _ := br.ReadString('\n'); !strings.HasPrefix(line, "id: g-1") {
		t.Fatalf("first stream line %q", line)
	}
	return br
}

// readToEnd reads what is left of a stream; a stream that does not end
// within a generous bound fails the test (it would hang shutdown).
func readToEnd(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(br)
		got <- string(b)
	}()
	select {
	case s := <-got:
		return s
	case <-time.After(20 * time.Second):
		t.Fatal("the SSE stream did not end at shutdown")
		return ""
	}
}

func TestDrainThenShutdown(t *testing.T) {
	tg, slow := startSlowGateway(t)
	tok := tg.token(t, "alice", "mcp:read")
	sid := tg.initialize(t, tok)
	hdr := with(bearer(tok), "Mcp-Session-Id", sid, "MCP-Protocol-Version", "2025-11-25")
	stream := openSSE(t, tg, tok, sid)

	// A slow request is in flight before the drain starts.
	slowDone := make(chan reply, 1)
	go func() {
		slowDone <- tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"slow","arguments":{}}}`, hdr)
	}()
	<-slow.arrived

	// Phase 1: not ready at once, still healthy, still serving.
	if closesConnection(t, tg.url+"/healthz") {
		t.Fatal("connections close before any drain")
	}
	tg.gw.Drain()
	if r := tg.do(t, "GET", "/readyz", "", nil); r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), "draining") {
		t.Fatalf("/readyz while draining: %d %s, want 503 saying draining", r.status, r.body)
	}
	if r := tg.do(t, "GET", "/healthz", "", nil); r.status != http.StatusOK {
		t.Fatalf("/healthz while draining: %d, want 200", r.status)
	}
	r := tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":8,"method":"tools/list"}`, hdr)
	if r.status != 200 || !strings.Contains(string(r.body), `"echo"`) {
		t.Fatalf("new request while draining: %d %s, want it served", r.status, r.body)
	}
	if !closesConnection(t, tg.url+"/healthz") {
		t.Fatal("a response while draining keeps its connection: the final phase could close it under the client's next request")
	}

	// Phase 2: the stream gets a retry field and ends; the in-flight
	// request still completes.
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shut <- tg.gw.Shutdown(ctx)
	}()
	rest := readToEnd(t, stream)
	if !strings.Contains(rest, "retry: 1000\n") {
		t.Fatalf("stream ended without an SSE retry field; rest of stream %q", rest)
	}
	assertRefusedWhileStopping(t, tg)
	close(slow.release)
	r = <-slowDone
	if r.status != 200 || !strings.Contains(string(r.body), `"id":7`) || !strings.Contains(string(r.body), `"result"`) {
		t.Fatalf("in-flight request during shutdown: %d %s, want its result", r.status, r.body)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return after the last request finished")
	}
}

// assertRefusedWhileStopping sends requests straight to the handler (the
// listener is closed): MCP requests get 503 + Retry-After with a JSON-RPC
// error, /healthz still answers 200, /readyz 503.
func assertRefusedWhileStopping(t *testing.T, tg *testGateway) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !tg.gw.stopping.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Shutdown did not start")
		}
	}
	req := httptest.NewRequest("POST", "/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":9,"method":"tools/list"}`))
	rec := httptest.NewRecorder()
	tg.gw.Handler().ServeHTTP(rec, req)
	var body struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusServiceUnavailable ||
		body.Error.Code != mcp.CodeUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("request during the final phase: %d %v %s, want 503 + Retry-After + %d", rec.Code, rec.Header(), rec.Body, mcp.CodeUnavailable)
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 503} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", path, nil)
		req.Host = strings.TrimPrefix(tg.url, "http://")
		tg.gw.Handler().ServeHTTP(rec, req)
		if rec.Code != want {
			t.Fatalf("%s during the final phase: %d, want %d", path, rec.Code, want)
		}
	}
}

// closesConnection reports whether the response at u says Connection: close.
func closesConnection(t *testing.T, u string) bool {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Close
}

// TestListenStreamEndsAtShutdown: a 2026-07-28 subscriptions/listen
// response stream is long-lived: the final phase ends it with an SSE retry
// field instead of waiting shutdown_timeout for it.
func TestListenStreamEndsAtShutdown(t *testing.T) {
	tg, _ := startSlowGateway(t)
	tok := tg.token(t, "alice", "mcp:read")
	body := `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"},"notifications":{"toolsListChanged":true}}}`
	req, _ := http.NewRequest("POST", tg.url+"/mcp", strings.NewReader(body))
	for k, v := range with(bearer(tok), "MCP-Protocol-Version", "2026-07-28", "Mcp-Method", "subscriptions/listen",
		"Content-Type", "application/json", "Accept", "application/json, text/event-stream") {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("listen: %v %v", err, resp)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("listen stream ended before its acknowledgement: %v", err)
		}
		if strings.Contains(line, "subscriptions/acknowledged") {
			break
		}
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = tg.gw.Shutdown(ctx)
	}()
	if rest := readToEnd(t, br); !strings.Contains(rest, "retry: 1000\n") {
		t.Fatalf("listen stream ended without an SSE retry field: %q", rest)
	}
}
