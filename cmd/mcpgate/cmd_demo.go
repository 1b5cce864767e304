package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/gateway"
	"github.com/mcpgate/mcpgate/internal/telemetry"
)

func init() {
	commands["demo"] = command{"run a protected sample MCP server on loopback, no configuration needed", runDemo}
}

// runDemo starts a development token issuer, the sample MCP server and the
// gateway in front of it, all on loopback, and prints how to use them.
// With --check it exercises the whole setup once and exits.
func runDemo(ctx context.Context, args []string, e *env) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "gateway listen `address` (loopback)")
	check := fs.Bool("check", false, "call the demo through the gateway once, report, and exit")
	logLevel := fs.String("log-level", "warn", "gateway log level")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if !config.IsLoopbackListen(*listen) {
		fmt.Fprintf(e.stderr, "mcpgate demo: --listen %s is not a loopback address; the demo issuer is for local use only\n", *listen)
		return 2
	}
	log, _ := telemetry.NewLogger(e.stderr, *logLevel, "text")
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(e.stderr, "mcpgate demo: %v (try --listen 127.0.0.1:0)\n", err)
		return 1
	}
	base := "http://" + ln.Addr().String()
	issuerURL, stopIssuer, clients, err := startIssuer()
	if err != nil {
		fmt.Fprintf(e.stderr, "mcpgate demo: %v\n", err)
		return 1
	}
	defer stopIssuer()
	upURL, stopUp, err := serveLoopback(demo.NewServer())
	if err != nil {
		fmt.Fprintf(e.stderr, "mcpgate demo: %v\n", err)
		return 1
	}
	defer stopUp()
	cfg := demoConfig(ln.Addr().String(), issuerURL, upURL+"/mcp")
	gw, err := gateway.New(ctx, cfg, gateway.Options{Logger: log, Getenv: e.getenv})
	if err != nil {
		fmt.Fprintf(e.stderr, "mcpgate demo: %v\n", err)
		return 1
	}
	go func() { _ = gw.Serve(ctx, ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(sctx)
	}()
	endpoint := base + "/mcp"
	if *check {
		return demoCheck(ctx, e, issuerURL, endpoint, clients)
	}
	printDemo(e.stdout, base, issuerURL, clients)
	<-ctx.Done()
	fmt.Fprintln(e.stdout, "\nmcpgate demo stopped")
	return 0
}

func demoConfig(listen, issuer, upstream string) *config.Gateway {
	cfg := &config.Gateway{
		Listen:  listen,
		Issuers: []config.Issuer{{Issuer: issuer, Algorithms: []string{"ES256"}}},
		Upstreams: []config.Upstream{{
			URL: upstream, ScopesSupported: []string{"mcp:read"}, ResourceName: "mcpgate demo server",
			ScopeHierarchy:  map[string][]string{"mcp:admin": {"mcp:read"}},
			IdentityHeaders: config.IdentityHeaders{Subject: "X-Mcpgate-Subject"},
			Policy: config.Policy{Default: "allow", RequiredScopes: []string{"mcp:read"},
				Tools: []config.Rule{{Match: "admin_*", Scopes: []string{"mcp:admin"}}}},
		}},
		Audit: config.Audit{Disabled: true},
	}
	cfg.ApplyDefaults()
	return cfg
}

func startIssuer() (string, func(), []demo.Client, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, nil, err
	}
	u := "http://" + ln.Addr().String()
	is, clients, err := demo.NewIssuer(u)
	if err != nil {
		ln.Close()
		return "", nil, nil, err
	}
	srv := &http.Server{Handler: is.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return u, func() { _ = srv.Close() }, clients, nil
}

func serveLoopback(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

func printDemo(w io.Writer, base, issuer string, clients []demo.Client) {
	endpoint := base + "/mcp"
	fmt.Fprintf(w, `mcpgate demo is running (Ctrl-C to stop)

  MCP endpoint (protected)   %s
  resource metadata          %s/.well-known/oauth-protected-resource/mcp
  demo token issuer          %s   (development issuer, loopback only)
`, endpoint, base, issuer)
	for _, c := range clients {
		fmt.Fprintf(w, "  demo client                %s  secret %s  scopes %q\n", c.ID, c.Secret, c.Scope)
	}
	r := clients[0]
	fmt.Fprintf(w, `
Get a token and call the server through the gateway:

  TOKEN=$(curl -s -u %s:%s -d grant_type=client_credentials -d resource=%s %s/token | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
  curl -s %s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
       -H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2025-11-25' \
       -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'

Without a token the gateway answers 401 with a WWW-Authenticate challenge; with the reader's token the
admin_delete_note tool is hidden from tools/list and refused with 403 insufficient_scope.
Self-check: go run ./cmd/mcpgate demo --check --listen 127.0.0.1:0
`, r.ID, r.Secret, endpoint, issuer, endpoint)
}

// demoCheck exercises the demo end to end with the official Go SDK client.
func demoCheck(ctx context.Context, e *env, issuer, endpoint string, clients []demo.Client) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(e.stderr, "demo check failed: "+format+"\n", a...)
		return 1
	}
	resp, err := http.Post(endpoint, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	if err != nil {
		return fail("%v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "resource_metadata=") {
		return fail("no token: got %d, want 401 with a resource_metadata challenge", resp.StatusCode)
	}
	fmt.Fprintln(e.stdout, "ok  no token → 401 with resource_metadata challenge")
	for _, c := range clients {
		tok, err := demoToken(issuer, c, endpoint)
		if err != nil {
			return fail("token for %s: %v", c.ID, err)
		}
		cl := mcp.NewClient(&mcp.Implementation{Name: "mcpgate-demo-check", Version: version}, nil)
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		cs, err := cl.Connect(cctx, &mcp.StreamableClientTransport{Endpoint: endpoint, MaxRetries: -1,
			HTTPClient: &http.Client{Transport: bearer{tok}}}, nil)
		if err != nil {
			cancel()
			return fail("%s connect: %v", c.ID, err)
		}
		tools, err := cs.ListTools(cctx, nil)
		if err != nil {
			cancel()
			return fail("%s tools/list: %v", c.ID, err)
		}
		var names []string
		for _, t := range tools.Tools {
			names = append(names, t.Name)
		}
		_, callErr := cs.CallTool(cctx, &mcp.CallToolParams{Name: "admin_delete_note", Arguments: map[string]any{"id": "1"}})
		admin := strings.Contains(c.Scope, "mcp:admin")
		cs.Close()
		cancel()
		visible := strings.Contains(strings.Join(names, ","), "admin_delete_note")
		if visible != admin || (callErr == nil) != admin {
			return fail("%s: admin tool visible=%v, call error=%v; want allowed only with mcp:admin", c.ID, visible, callErr)
		}
		fmt.Fprintf(e.stdout, "ok  %s sees %v; admin tool allowed=%v\n", c.ID, names, admin)
	}
	fmt.Fprintln(e.stdout, "demo check passed")
	return 0
}

type bearer struct{ tok string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.tok)
	return http.DefaultTransport.RoundTrip(r)
}

func demoToken(issuer string, c demo.Client, resource string) (string, error) {
	req, _ := http.NewRequest("POST", issuer+"/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "resource": {resource}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(c.ID, c.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.AccessToken == "" {
		return "", fmt.Errorf("token endpoint answered %d", resp.StatusCode)
	}
	return out.AccessToken, nil
}
