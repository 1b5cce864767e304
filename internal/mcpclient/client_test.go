package mcpclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	era "github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type echoIn struct {
	Message string `json:"message"`
}

// TestAgainstGoSDKServer: the official Go SDK's Streamable HTTP server.
func TestAgainstGoSDKServer(t *testing.T) {
	s := mcp.NewServer(&mcp.Implementation{Name: "t", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo"}, func(ctx context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Message}}}, nil, nil
	})
	var mu sync.Mutex
	var methods []string
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{DisableLocalhostProtection: true})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		methods = append(methods, r.Method)
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	ctx := context.Background()
	// auto: whichever era the SDK speaks, tools work; a forced 2025-11-25
	// takes the initialize path, and Close ends that session with DELETE.
	for _, pv := range []string{"", "2025-11-25"} {
		c := &Client{URL: srv.URL, HTTP: srv.Client(), ProtocolVersion: pv}
		if err := c.Connect(ctx); err != nil {
			t.Fatalf("%q: %v", pv, err)
		}
		if pv != "" && ((c.Era() == era.EraStateless) || c.NegotiatedVersion() != pv) {
			t.Fatalf("forced %s: modern=%v version=%q", pv, (c.Era() == era.EraStateless), c.NegotiatedVersion())
		}
		res, err := c.Call(ctx, "tools/call", map[string]any{"name": "echo", "arguments": map[string]any{"message": "hello"}})
		if err != nil || !strings.Contains(string(res), "hello") {
			t.Fatalf("%q tools/call: %s %v", pv, res, err)
		}
		_, err = c.Call(ctx, "tools/call", map[string]any{"name": "nope", "arguments": map[string]any{}})
		var re *RPCError
		if err == nil || (!errors.As(err, &re) && !strings.Contains(err.Error(), "nope")) {
			t.Fatalf("%q unknown tool: %v", pv, err)
		}
		c.Close(ctx)
	}
	mu.Lock()
	defer mu.Unlock()
	if methods[len(methods)-1] != http.MethodDelete {
		t.Fatalf("no DELETE at Close: %v", methods)
	}
}

// fake is a scripted MCP endpoint.
type fake struct {
	t       *testing.T
	mu      sync.Mutex
	handler func(w http.ResponseWriter, r *http.Request, msg map[string]any)
	posts   []map[string]any
	headers []http.Header
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var msg map[string]any
	if r.Method == http.MethodPost {
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &msg); err != nil {
			f.t.Errorf("client sent invalid JSON: %s", b)
		}
		f.mu.Lock()
		f.posts = append(f.posts, msg)
		f.headers = append(f.headers, r.Header.Clone())
		f.mu.Unlock()
	}
	f.handler(w, r, msg)
}

func reply(w http.ResponseWriter, msg map[string]any, result string) {
	w.Header().Set("Content-Type", "application/json")
	id, _ := json.Marshal(msg["id"])
	fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":%s}`, id, result)
}

// TestModernEra: a 2026-07-28 server gets per-request _meta and the
// Mcp-Method / Mcp-Name / Mcp-Param-* headers, learned from tools/list.
func TestModernEra(t *testing.T) {
	f := &fake{t: t}
	f.handler = func(w http.ResponseWriter, r *http.Request, msg map[string]any) {
		params, _ := msg["params"].(map[string]any)
		meta, _ := params["_meta"].(map[string]any)
		if meta["io.modelcontextprotocol/protocolVersion"] != "2026-07-28" || r.Header.Get("Mcp-Protocol-Version") != "2026-07-28" ||
			r.Header.Get("Mcp-Method") != msg["method"] || meta["io.modelcontextprotocol/clientInfo"] == nil {
			w.WriteHeader(400)
			fmt.Fprint(w, `{"jsonrpc":"2.0","id":null,"error":{"code":-32020,"message":"header mismatch"}}`)
			return
		}
		switch msg["method"] {
		case "server/discover":
			reply(w, msg, `{"supportedVersions":["2026-07-28"]}`)
		case "tools/list":
			// answered as an event stream, with a notification first
			w.Header().Set("Content-Type", "text/event-stream")
			id, _ := json.Marshal(msg["id"])
			fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n")
			fmt.Fprintf(w, "data: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"tools\":[{\"name\":\"q\",\"inputSchema\":{\"type\":\"object\",\"properties\":{\"region\":{\"type\":\"string\",\"x-mcp-header\":\"Region\"}}}}]}}\n\n", id)
		case "tools/call":
			if r.Header.Get("Mcp-Name") != "q" || r.Header.Get("Mcp-Param-Region") != "=?base64?w6l1LXdlc3Q=?=" {
				w.WriteHeader(400)
				fmt.Fprintf(w, `{"jsonrpc":"2.0","id":null,"error":{"code":-32020,"message":"headers %v"}}`, r.Header)
				return
			}
			reply(w, msg, `{"content":[{"type":"text","text":"ok"}]}`)
		}
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	var notes []string
	c := &Client{URL: srv.URL, HTTP: srv.Client(), OnNotification: func(m string, _ json.RawMessage) { notes = append(notes, m) }}
	ctx := context.Background()
	if err := c.Connect(ctx); err != nil || !(c.Era() == era.EraStateless) {
		t.Fatalf("connect: %v modern=%v", err, (c.Era() == era.EraStateless))
	}
	if _, err := c.Call(ctx, "tools/list", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	if len(notes) != 1 || notes[0] != "notifications/message" {
		t.Fatalf("notifications: %v", notes)
	}
	res, err := c.Call(ctx, "tools/call", map[string]any{"name": "q", "arguments": map[string]any{"region": "éu-west"}})
	if err != nil || !strings.Contains(string(res), "ok") {
		t.Fatalf("tools/call: %s %v", res, err)
	}
	for _, h := range f.headers {
		if h.Get("Mcp-Session-Id") != "" {
			t.Fatal("a session id was sent to a modern server")
		}
	}
}

// TestSessionExpiry: a 404 on a known session re-initializes (replaying
// the client's initialize) and retries once.
func TestSessionExpiry(t *testing.T) {
	f := &fake{t: t}
	var mu sync.Mutex
	session, n := "", 0
	f.handler = func(w http.ResponseWriter, r *http.Request, msg map[string]any) {
		mu.Lock()
		defer mu.Unlock()
		switch msg["method"] {
		case "server/discover":
			w.WriteHeader(400)
			fmt.Fprint(w, "Bad Request: missing session")
		case "initialize":
			n++
			session = fmt.Sprintf("s%d", n)
			w.Header().Set("Mcp-Session-Id", session)
			reply(w, msg, `{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"f","version":"1"}}`)
		case "notifications/initialized":
			w.WriteHeader(202)
		default:
			if r.Header.Get("Mcp-Session-Id") != session || n == 1 {
				n++ // the first session "expires" at its first use
				w.WriteHeader(404)
				return
			}
			reply(w, msg, `{"tools":[]}`)
		}
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := &Client{URL: srv.URL, HTTP: srv.Client()}
	ctx := context.Background()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if c.NegotiatedVersion() != "2025-06-18" {
		t.Fatalf("version %q", c.NegotiatedVersion())
	}
	if _, err := c.Call(ctx, "tools/list", map[string]any{}); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	inits := 0
	for _, p := range f.posts {
		if p["method"] == "initialize" {
			inits++
		}
	}
	if inits != 2 {
		t.Fatalf("%d initialize requests, want 2", inits)
	}
}

// TestAnswersAndErrors: a server request inside an SSE answer gets a
// JSON-RPC error back; 429 is retried after Retry-After; a non-JSON answer
// and a stream that ends early are clear errors.
func TestAnswersAndErrors(t *testing.T) {
	f := &fake{t: t}
	var mu sync.Mutex
	limited := false
	f.handler = func(w http.ResponseWriter, r *http.Request, msg map[string]any) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case msg["method"] == nil: // the client's answer to our request
			w.WriteHeader(202)
		case msg["method"] == "tools/call":
			w.Header().Set("Content-Type", "text/event-stream")
			id, _ := json.Marshal(msg["id"])
			fmt.Fprint(w, "data: {\"jsonrpc\":\"2.0\",\"id\":99,\"method\":\"sampling/createMessage\",\"params\":{}}\n\n")
			fmt.Fprintf(w, "data: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[]}}\n\n", id)
		case msg["method"] == "ping" && !limited:
			limited = true
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(429)
		case msg["method"] == "ping":
			reply(w, msg, `{}`)
		case msg["method"] == "html":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<html>proxy login</html>")
		case msg["method"] == "cut":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, ": nothing\n\n")
		}
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := &Client{URL: srv.URL, HTTP: srv.Client(), ProtocolVersion: "2025-11-25"}
	c.transport().SetProtocol(era.EraSession, "2025-11-25")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Call(ctx, "tools/call", map[string]any{"name": "x"}); err != nil {
		t.Fatal(err)
	}
	var answered bool
	for _, p := range f.posts {
		if p["id"] == float64(99) && p["error"] != nil {
			answered = true
		}
	}
	if !answered {
		t.Fatalf("the server's sampling request got no error answer: %v", f.posts)
	}
	if _, err := c.Call(ctx, "ping", nil); err != nil {
		t.Fatalf("429 not retried: %v", err)
	}
	if _, err := c.Call(ctx, "html", nil); err == nil || !strings.Contains(err.Error(), "text/html") {
		t.Fatalf("non-JSON answer: %v", err)
	}
	if _, err := c.Call(ctx, "cut", nil); err == nil || !strings.Contains(err.Error(), "before answering") {
		t.Fatalf("stream cut: %v", err)
	}
}
