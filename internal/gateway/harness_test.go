package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

// fakeUpstream is a minimal Streamable HTTP MCP server that records what
// reaches it, so tests can assert what the gateway forwards.
type fakeUpstream struct {
	srv      *httptest.Server
	mu       sync.Mutex // guards headers, bodies
	headers  []http.Header
	bodies   []string
	sessions atomic.Int64
	hits     atomic.Int64
	// inits counts initialize requests only: a count of all hits also
	// sees the DELETEs the gateway sends for evicted sessions, which
	// arrive asynchronously.
	inits atomic.Int64
}

const toolsResult = `{"tools":[` +
	`{"name":"echo","inputSchema":{"type":"object"}},` +
	`{"name":"admin_delete","inputSchema":{"type":"object"}},` +
	`{"name":"regional","inputSchema":{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"}}}}]}`

func newFakeUpstream(t testing.TB) *fakeUpstream {
	f := &fakeUpstream{}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeUpstream) serve(w http.ResponseWriter, r *http.Request) {
	f.hits.Add(1)
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.headers = append(f.headers, r.Header.Clone())
	f.bodies = append(f.bodies, string(body))
	f.mu.Unlock()
	switch r.Method {
	case http.MethodGet:
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, "id: g-1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	case http.MethodDelete:
		w.WriteHeader(http.StatusOK)
		return
	}
	var msg struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	_ = json.Unmarshal(body, &msg)
	if msg.Method == "initialize" {
		f.inits.Add(1)
	}
	if msg.ID == nil {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	var result string
	switch msg.Method {
	case "initialize":
		w.Header().Set("Mcp-Session-Id", fmt.Sprintf("sess-%d", f.sessions.Add(1)))
		result = `{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"fake","version":"1"}}`
	case "tools/list":
		result = toolsResult
	default:
		result = `{"content":[{"type":"text","text":"ok"}]}`
	}
	out := `{"jsonrpc":"2.0","id":` + string(msg.ID) + `,"result":` + result + `}`
	if strings.Contains(string(body), `"cursor":"ambiguous"`) {
		// a reply parsers read differently: result next to a Result
		out = `{"jsonrpc":"2.0","id":` + string(msg.ID) + `,"Result":{"tools":[]},"result":` + result + `}`
	}
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") && msg.Method == "tools/list" {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "id: p-1\nevent: message\ndata: %s\n\n", out)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, out)
}

func (f *fakeUpstream) lastHeader() http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.headers) == 0 {
		return nil
	}
	return f.headers[len(f.headers)-1]
}

// testGateway is a gateway on a loopback port with one IdP and upstreams.
type testGateway struct {
	gw    *Gateway
	url   string
	idp   *testutil.IdP
	up    *fakeUpstream
	cfg   *config.Gateway
	audit *bytes.Buffer
}

func baseConfig(listen string, idp *testutil.IdP, upURL string) *config.Gateway {
	return &config.Gateway{
		Listen:    listen,
		PublicURL: "http://" + listen,
		Issuers:   []config.Issuer{{Issuer: idp.Issuer}},
		Upstreams: []config.Upstream{{
			Path: "/mcp", URL: upURL, ScopesSupported: []string{"mcp:read"},
			IdentityHeaders: config.IdentityHeaders{Subject: "X-Mcpgate-Subject"},
			ScopeHierarchy:  map[string][]string{"mcp:admin": {"mcp:read"}},
			Policy: config.Policy{
				Default:        "allow",
				RequiredScopes: []string{"mcp:read"},
				Tools:          []config.Rule{{Match: "admin_*", Scopes: []string{"mcp:admin"}}},
			},
		}},
		Audit: config.Audit{File: "-"},
	}
}

func startGateway(t testing.TB, mutate func(*config.Gateway)) *testGateway {
	t.Helper()
	return startGatewayOpts(t, mutate, Options{})
}

// startGatewayOpts is startGateway with options (Logger and Getenv are
// the test's unless set).
func startGatewayOpts(t testing.TB, mutate func(*config.Gateway), opts Options) *testGateway {
	t.Helper()
	idp := testutil.NewIdP(t)
	up := newFakeUpstream(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(ln.Addr().String(), idp, up.srv.URL)
	if mutate != nil {
		mutate(cfg)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	tg := &testGateway{idp: idp, up: up, cfg: cfg, url: "http://" + ln.Addr().String(), audit: &bytes.Buffer{}}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Getenv == nil {
		opts.Getenv = func(string) string { return "" }
	}
	gw, err := New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Audit.File == "-" { // a file-backed audit log stays the chain writer (audit_chain_test.go)
		gw.audit.w = &lockedWriter{w: tg.audit}
	}
	tg.gw = gw
	go func() { _ = gw.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
	})
	// the issuer keys load in the background: tests start once they are
	// there (a first request could otherwise race the initial fetch)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if resp, err := http.Get(tg.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
	}
	return tg
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// token mints a valid RS256 token for the gateway's /mcp resource.
func (tg *testGateway) token(t testing.TB, sub, scopes string) string {
	return tg.idp.Sign(t, "RS256", tg.idp.Claims(sub, tg.url+"/mcp", scopes))
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) rpcError(t *testing.T) (code int, msg string, id json.RawMessage) {
	t.Helper()
	var m struct {
		ID    json.RawMessage `json:"id"`
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &m); err != nil || m.Error == nil {
		t.Fatalf("want a JSON-RPC error body, got %d %q", r.status, r.body)
	}
	return m.Error.Code, m.Error.Message, m.ID
}

// do sends a request to the gateway; hdr values are set (not added).
func (tg *testGateway) do(t testing.TB, method, path, body string, hdr map[string]string) reply {
	t.Helper()
	req, err := http.NewRequest(method, tg.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func with(h map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

const initBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

// initialize opens a session for tok and returns its id.
func (tg *testGateway) initialize(t testing.TB, tok string) string {
	t.Helper()
	r := tg.do(t, "POST", "/mcp", initBody, bearer(tok))
	if r.status != 200 {
		t.Fatalf("initialize: %d %s", r.status, r.body)
	}
	sid := r.header.Get("Mcp-Session-Id")
	if sid == "" {
		t.Fatal("initialize: no Mcp-Session-Id")
	}
	return sid
}

// sseData returns the data lines of an SSE body.
func sseData(body []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, d)
		}
	}
	return out
}

// startGatewayB is a gateway for benchmarks: no audit, no rate limit.
func startGatewayB(b *testing.B) *testGateway {
	return startGateway(b, func(c *config.Gateway) {
		c.Audit.Disabled = true
		c.Limits.RequestsPerSecond, c.Limits.Burst = 1e9, 1e9
	})
}
