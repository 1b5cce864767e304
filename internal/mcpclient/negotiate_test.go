package mcpclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// The server kinds of the bench, as in-process fakes. Each answers
// server/discover the way that kind of server does and records the
// methods it was sent.

// kind is one scripted server.
type kind struct {
	mu      sync.Mutex
	methods []string
	// discover answers server/discover; initialize answers initialize
	// (nil: 404, as a server with no such method).
	discover   func(w http.ResponseWriter, id json.RawMessage, n int)
	initialize string // the protocolVersion chosen ("": no Streamable HTTP initialize)
	probes     int
}

func (k *kind) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	_ = json.NewDecoder(r.Body).Decode(&m)
	k.mu.Lock()
	k.methods = append(k.methods, m.Method)
	if m.Method == "server/discover" {
		k.probes++
	}
	n := k.probes
	k.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case m.Method == "server/discover":
		k.discover(w, m.ID, n)
	case m.Method == "initialize" && k.initialize != "":
		w.Header().Set(mcp.HeaderSessionID, "s1")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":%q,"capabilities":{},"serverInfo":{"name":"k","version":"1"}}}`, m.ID, k.initialize)
	case m.Method == "initialize":
		w.WriteHeader(http.StatusMethodNotAllowed)
	case m.ID == nil:
		w.WriteHeader(http.StatusAccepted)
	default:
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{}}`, m.ID)
	}
}

func (k *kind) sent() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return strings.Join(k.methods, ",")
}

func discoverResult(versions ...string) func(http.ResponseWriter, json.RawMessage, int) {
	return func(w http.ResponseWriter, id json.RawMessage, _ int) {
		v, _ := json.Marshal(versions)
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"supportedVersions":%s,"capabilities":{},"serverInfo":{"name":"k","version":"1"}}}`, id, v)
	}
}

func rpcError(status int, code int, data string) func(http.ResponseWriter, json.RawMessage, int) {
	return func(w http.ResponseWriter, _ json.RawMessage, _ int) {
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":null,"error":{"code":%d,"message":"refused","data":%s}}`, code, data)
	}
}

func plain(status int, body string) func(http.ResponseWriter, json.RawMessage, int) {
	return func(w http.ResponseWriter, _ json.RawMessage, _ int) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}
}

// TestNegotiateEveryServerKind: one negotiation (Negotiate, through
// Client.Connect as mcpgate call runs it) against every kind of server the
// bench has. 2026-07-28 streamable-http §Backward Compatibility: "If the
// body contains a recognized modern JSON-RPC error, the server speaks a
// modern version of MCP — retry using the advertised supported versions
// or correct the request, rather than falling back. If the body is empty
// or is not a recognized modern JSON-RPC error, fall back to initialize".
func TestNegotiateEveryServerKind(t *testing.T) {
	rows := []struct {
		name    string
		k       *kind
		force   string
		era     mcp.Era
		version string
		sent    string // the methods the server saw
		err     string // a substring of the error ("" none)
	}{
		{name: "2026-07-28 stateless", k: &kind{discover: discoverResult("2026-07-28")},
			era: mcp.EraStateless, version: "2026-07-28", sent: "server/discover"},
		{name: "dual-era offering both", k: &kind{discover: discoverResult("2025-11-25", "2026-07-28"), initialize: "2025-11-25"},
			era: mcp.EraStateless, version: "2026-07-28", sent: "server/discover"},
		{name: "2025-11-25 (TS SDK: 400, a -32000 error)", k: &kind{discover: rpcError(400, -32000, `null`), initialize: "2025-11-25"},
			era: mcp.EraSession, version: "2025-11-25", sent: "server/discover,initialize,notifications/initialized"},
		{name: "2025-06-18 (400, plain text)", k: &kind{discover: plain(400, "Bad Request: no session"), initialize: "2025-06-18"},
			era: mcp.EraSession, version: "2025-06-18", sent: "server/discover,initialize,notifications/initialized"},
		{name: "2025-03-26 (an empty result for an unknown method)", k: &kind{discover: func(w http.ResponseWriter, id json.RawMessage, _ int) {
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{}}`, id)
		}, initialize: "2025-03-26"},
			era: mcp.EraSession, version: "2025-03-26", sent: "server/discover,initialize,notifications/initialized"},
		{name: "a DiscoverResult naming only session-era versions", k: &kind{discover: discoverResult("2025-06-18"), initialize: "2025-06-18"},
			era: mcp.EraSession, version: "2025-06-18", sent: "server/discover,initialize,notifications/initialized"},
		{name: "-32022 naming a session-era version", k: &kind{discover: rpcError(400, mcp.CodeUnsupportedProtocolVersion, `{"supported":["2025-06-18"],"requested":"2026-07-28"}`), initialize: "2025-06-18"},
			era: mcp.EraSession, version: "2025-06-18", sent: "server/discover,initialize,notifications/initialized"},
		{name: "-32022 naming 2026-07-28: probed again for the DiscoverResult", k: &kind{discover: func(w http.ResponseWriter, id json.RawMessage, n int) {
			if n == 1 {
				rpcError(400, mcp.CodeUnsupportedProtocolVersion, `{"supported":["2026-07-28"]}`)(w, id, n)
				return
			}
			discoverResult("2026-07-28")(w, id, n)
		}}, era: mcp.EraStateless, version: "2026-07-28", sent: "server/discover,server/discover"},
		{name: "-32022 naming only versions mcpgate does not speak", k: &kind{discover: rpcError(400, mcp.CodeUnsupportedProtocolVersion, `{"supported":["2099-01-01"]}`)},
			sent: "server/discover", err: "the server speaks MCP 2099-01-01"},
		{name: "-32022 without a supported list", k: &kind{discover: rpcError(400, mcp.CodeUnsupportedProtocolVersion, `{}`)},
			sent: "server/discover", err: "without naming"},
		{name: "header mismatch: a modern server refusing the probe, no fallback", k: &kind{discover: rpcError(400, mcp.CodeHeaderMismatch, `null`), initialize: "2025-11-25"},
			sent: "server/discover", err: "-32020"},
		{name: "missing client capability: modern, no fallback", k: &kind{discover: rpcError(400, mcp.CodeMissingRequiredClientCapability, `{"requiredCapabilities":{"sampling":{}}}`), initialize: "2025-11-25"},
			sent: "server/discover", err: "-32021"},
		{name: "401 without credentials is not a legacy server", k: &kind{discover: plain(401, "")},
			sent: "server/discover", err: "HTTP 401"},
		{name: "5xx is not a legacy server", k: &kind{discover: plain(502, "bad gateway")},
			sent: "server/discover", err: "HTTP 502"},
		{name: "forced 2025-11-25 skips the probe", force: "2025-11-25", k: &kind{discover: discoverResult("2026-07-28"), initialize: "2025-11-25"},
			era: mcp.EraSession, version: "2025-11-25", sent: "initialize,notifications/initialized"},
		{name: "forced 2026-07-28 against a session-era server", force: "2026-07-28", k: &kind{discover: plain(400, "no"), initialize: "2025-11-25"},
			sent: "server/discover", err: "does not speak MCP 2026-07-28"},
		{name: "forced 2026-07-28, -32022 without it", force: "2026-07-28", k: &kind{discover: rpcError(400, mcp.CodeUnsupportedProtocolVersion, `{"supported":["2025-11-25"]}`), initialize: "2025-11-25"},
			sent: "server/discover", err: "it offers 2025-11-25"},
		{name: "initialize refused as no Streamable HTTP endpoint, no HTTP+SSE either", k: &kind{discover: plain(404, "")},
			sent: "server/discover,initialize", err: "HTTP+SSE"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			srv := httptest.NewServer(row.k)
			defer srv.Close()
			c := &Client{URL: srv.URL, HTTP: srv.Client(), ProtocolVersion: row.force}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := c.Connect(ctx)
			if got := row.k.sent(); got != row.sent {
				t.Errorf("the server was sent %s, want %s", got, row.sent)
			}
			if row.err != "" {
				if err == nil || !strings.Contains(err.Error(), row.err) {
					t.Fatalf("error %v, want one saying %q", err, row.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Era() != row.era || c.NegotiatedVersion() != row.version {
				t.Fatalf("negotiated %s %q, want %s %q", c.Era(), c.NegotiatedVersion(), row.era, row.version)
			}
			if row.era == mcp.EraStateless && !strings.Contains(string(c.ServerInfo), `"supportedVersions"`) {
				t.Fatalf("ServerInfo is not the DiscoverResult: %s", c.ServerInfo)
			}
		})
	}
}

// legacySSE is a 2024-11-05 HTTP+SSE server: GET opens the stream, whose
// first event names the endpoint for POSTs; answers go down the stream.
// A POST to the stream URL is refused (405), as such servers do.
type legacySSE struct {
	mu      sync.Mutex
	methods []string
	out     chan string
}

func newLegacySSE() *legacySSE { return &legacySSE{out: make(chan string, 16)} }

func (s *legacySSE) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "event: endpoint\ndata: /messages?session=1\n\n")
		w.(http.Flusher).Flush()
		for {
			select {
			case m := <-s.out:
				fmt.Fprintf(w, "event: message\ndata: %s\n\n", m)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	case r.URL.Path == "/messages":
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		_ = json.NewDecoder(r.Body).Decode(&m)
		s.mu.Lock()
		s.methods = append(s.methods, m.Method)
		s.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		switch {
		case m.Method == "initialize":
			s.out <- fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2024-11-05","capabilities":{},"serverInfo":{"name":"old","version":"1"}}}`, m.ID)
		case m.ID != nil:
			s.out <- fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"tools":[]}}`, m.ID)
		}
	default:
		s.mu.Lock()
		s.methods = append(s.methods, "POST "+r.URL.Path)
		s.mu.Unlock()
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func (s *legacySSE) sent() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.methods, ",")
}

// TestNegotiateLegacySSE: "the client falls back to initialize (and
// possibly further to the deprecated HTTP+SSE transport)" (2026-07-28
// basic/versioning, Compatibility Matrix). In auto mode a 2024-11-05
// server is found by the fallback; "sse" goes there at once;
// "streamable" never does.
func TestNegotiateLegacySSE(t *testing.T) {
	for _, row := range []struct{ mode, sent, err string }{
		{"", "POST /mcp,POST /mcp,initialize,notifications/initialized,tools/list", ""},
		{"sse", "initialize,notifications/initialized,tools/list", ""},
		{"streamable", "POST /mcp,POST /mcp", "HTTP 405"},
	} {
		t.Run("mode="+row.mode, func(t *testing.T) {
			s := newLegacySSE()
			srv := httptest.NewServer(s)
			defer srv.Close()
			c := &Client{URL: srv.URL + "/mcp", HTTP: srv.Client()}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := Negotiate(ctx, Negotiation{Transport: c.transport(), Mode: row.mode, Meta: c.meta, Handshake: c.initialize})
			if row.err != "" {
				if err == nil || !strings.Contains(err.Error(), row.err) {
					t.Fatalf("error %v, want %q", err, row.err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if got.Era != mcp.EraLegacySSE || got.Version != mcp.V20241105 || c.Era() != mcp.EraLegacySSE {
					t.Fatalf("negotiated %+v (client %s)", got, c.Era())
				}
				if _, err := c.Call(ctx, "tools/list", map[string]any{}); err != nil {
					t.Fatalf("tools/list over HTTP+SSE: %v", err)
				}
				c.Close(ctx)
			}
			if s.sent() != row.sent {
				t.Fatalf("the server saw %s, want %s", s.sent(), row.sent)
			}
		})
	}
}
