package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/authserver"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/gateway"
	"github.com/mcpgate/mcpgate/internal/mcpclient"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/telemetry"
	"github.com/mcpgate/mcpgate/internal/vault"
)

func init() {
	commands["demo"] = command{"run a protected sample MCP server on loopback, no configuration needed", runDemo}
}

// demoClient is a machine client of the demo (client credentials).
type demoClient struct{ ID, Secret, Scope string }

func randomSecret(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// runDemo starts the sample MCP server, the gateway in front of it and the
// built-in authorization server with a demo user, all on loopback and in
// memory, and prints how to use them. --check exercises everything once
// and exits; --open signs in through the browser right away.
func runDemo(ctx context.Context, args []string, e *env) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "gateway listen `address` (loopback)")
	check := fs.Bool("check", false, "exercise the demo once (401, machine clients, the user's browser login), report, and exit")
	open := fs.Bool("open", false, "sign in as the demo user in your browser right away and list the tools")
	logLevel := fs.String("log-level", "warn", "gateway log level")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if !config.IsLoopbackListen(*listen) {
		fmt.Fprintf(e.stderr, "mcpgate demo: --listen %s is not a loopback address; the demo is for local use only\n", *listen)
		return 2
	}
	log, _ := telemetry.NewLogger(e.stderr, *logLevel, "text")
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(e.stderr, "mcpgate demo: %v (try --listen 127.0.0.1:0)\n", err)
		return 1
	}
	base := "http://" + ln.Addr().String()
	upURL, stopUp, err := serveLoopback(demo.NewServer())
	if err != nil {
		fmt.Fprintf(e.stderr, "mcpgate demo: %v\n", err)
		return 1
	}
	defer stopUp()
	cfg := demoConfig(ln.Addr().String(), upURL+"/mcp")
	user, password := "demo", randomSecret(9)
	if p := e.getenv("MCPGATE_DEMO_PASSWORD"); p != "" {
		password = p // screencasts and tests; the demo binds loopback only
	}
	users := &authserver.Users{}
	if err := users.Add(user, password); err != nil {
		fmt.Fprintf(e.stderr, "mcpgate demo: %v\n", err)
		return 1
	}
	clients := []demoClient{{"demo-reader", randomSecret(18), "mcp:read"}, {"demo-admin", randomSecret(18), "mcp:read mcp:admin"}}
	ac, err := builtinConfig(cfg, authserver.NewMemoryStore(), users, log, e.getenv)
	if err != nil {
		fmt.Fprintf(e.stderr, "mcpgate demo: %v\n", err)
		return 1
	}
	for _, c := range clients {
		ac.Clients = append(ac.Clients, authserver.StaticClient{ID: c.ID, Secret: c.Secret, GrantTypes: []string{"client_credentials"}, Scopes: strings.Fields(c.Scope)})
	}
	as, err := authserver.New(ac)
	if err != nil {
		fmt.Fprintf(e.stderr, "mcpgate demo: %v\n", err)
		return 1
	}
	trustBuiltin(cfg)
	gw, err := gateway.New(ctx, cfg, gateway.Options{Logger: log, Getenv: e.getenv, AuthServer: as})
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
		return demoCheck(ctx, e, base, endpoint, clients, user, password)
	}
	printDemo(e.stdout, base, user, password, clients)
	if *open {
		go func() {
			tools, err := demoLogin(ctx, e, endpoint, oauth.Interaction{Out: e.stderr, Getenv: e.getenv})
			if err != nil {
				fmt.Fprintf(e.stderr, "mcpgate demo: browser login: %v\n", err)
				return
			}
			fmt.Fprintf(e.stdout, "\nSigned in as %s in the browser; the server offers you: %s\n", user, strings.Join(tools, ", "))
		}()
	}
	<-ctx.Done()
	fmt.Fprintln(e.stdout, "\nmcpgate demo stopped")
	return 0
}

func demoConfig(listen, upstream string) *config.Gateway {
	cfg := &config.Gateway{
		Listen:              listen,
		AuthorizationServer: "builtin",
		Upstreams: []config.Upstream{{
			URL: upstream, ScopesSupported: []string{"mcp:read", "mcp:admin"}, ResourceName: "mcpgate demo server",
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

func serveLoopback(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

func printDemo(w io.Writer, base, user, password string, clients []demoClient) {
	endpoint := base + "/mcp"
	fmt.Fprintf(w, `mcpgate demo is running (Ctrl-C to stop)

  MCP endpoint (protected)   %s
  resource metadata          %s/.well-known/oauth-protected-resource/mcp
  authorization server       %s   (built-in; login and consent pages)
  demo user                  %s   password %s
`, endpoint, base, base, user, password)
	for _, c := range clients {
		fmt.Fprintf(w, "  machine client             %s  secret %s  scopes %q\n", c.ID, c.Secret, c.Scope)
	}
	fmt.Fprintf(w, `
Use it from a terminal (log in as %[2]s in the browser that opens):

  mcpgate call %[1]s --tool echo --args '{"message":"hello"}'

Any stdio MCP client, through the bridge:

  mcpgate connect %[1]s

Claude Desktop (claude_desktop_config.json):

  { "mcpServers": { "mcpgate-demo": { "command": "mcpgate", "args": ["connect", "%[1]s"] } } }

MCP Inspector (opens its UI; choose Streamable HTTP and %[1]s, then "Open Auth Settings" → Quick OAuth Flow):

  npx @modelcontextprotocol/inspector

A machine token with curl (client credentials):

  TOKEN=$(curl -s -u %[3]s:%[4]s -d grant_type=client_credentials -d resource=%[1]s %[5]s/token | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
  curl -s %[1]s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
       -H 'Accept: application/json, text/event-stream' \
       -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'

With mcp:read only, the admin_delete_note tool is hidden and refused (403 insufficient_scope).
Self-check: go run ./cmd/mcpgate demo --check --listen 127.0.0.1:0
`, endpoint, user, clients[0].ID, clients[0].Secret, base)
}

// demoCheck exercises the demo end to end: the 401 challenge, the machine
// clients through the policy, and the demo user's login through the
// built-in server's pages with mcpgate's own client engine.
func demoCheck(ctx context.Context, e *env, base, endpoint string, clients []demoClient, user, password string) int {
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
		tok, err := demoToken(base, c, endpoint)
		if err != nil {
			return fail("token for %s: %v", c.ID, err)
		}
		var progress atomic.Int32
		cl := mcp.NewClient(&mcp.Implementation{Name: "mcpgate-demo-check", Version: version}, &mcp.ClientOptions{
			ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) { progress.Add(1) }})
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
		if !admin(c) {
			// richer results once: an image and a long task with progress
			img, err := cs.CallTool(cctx, &mcp.CallToolParams{Name: "tiny_image", Arguments: map[string]any{}})
			if err != nil || len(img.Content) != 2 {
				cancel()
				return fail("tiny_image: %v", err)
			}
			if ic, ok := img.Content[1].(*mcp.ImageContent); !ok || ic.MIMEType != "image/png" || len(ic.Data) < 50 {
				cancel()
				return fail("tiny_image did not return a PNG")
			}
			fmt.Fprintln(e.stdout, "ok  tiny_image returned an image/png through the gateway")
			params := &mcp.CallToolParams{Name: "long_task", Arguments: map[string]any{"steps": 3}}
			params.SetProgressToken("demo-check")
			if _, err := cs.CallTool(cctx, params); err != nil {
				cancel()
				return fail("long_task: %v", err)
			}
			// the client handles notifications asynchronously
			for i := 0; i < 50 && progress.Load() < 3; i++ {
				time.Sleep(20 * time.Millisecond)
			}
			fmt.Fprintf(e.stdout, "ok  long_task reported %d progress steps through the gateway\n", progress.Load())
		}
		_, callErr := cs.CallTool(cctx, &mcp.CallToolParams{Name: "admin_delete_note", Arguments: map[string]any{"id": "1"}})
		admin := admin(c)
		cs.Close()
		cancel()
		visible := strings.Contains(strings.Join(names, ","), "admin_delete_note")
		if visible != admin || (callErr == nil) != admin {
			return fail("%s: admin tool visible=%v, call error=%v; want allowed only with mcp:admin", c.ID, visible, callErr)
		}
		fmt.Fprintf(e.stdout, "ok  %s sees %v; admin tool allowed=%v\n", c.ID, names, admin)
	}
	tools, err := demoLogin(ctx, e, endpoint, oauth.Interaction{Out: io.Discard, Open: func(u string) error {
		go func() { _ = formLogin(u, user, password) }()
		return nil
	}})
	if err != nil {
		return fail("user login: %v", err)
	}
	fmt.Fprintf(e.stdout, "ok  %s signed in through the login and consent pages (DCR, PAR, PKCE, DPoP) and sees %v\n", user, tools)
	fmt.Fprintln(e.stdout, "demo check passed")
	return 0
}

// demoLogin signs in with mcpgate's client engine (in memory) and lists
// the tools.
func demoLogin(ctx context.Context, e *env, endpoint string, in oauth.Interaction) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	eng := oauth.NewEngine(oauth.NewGuard(endpoint, false, false), nil, nil)
	s := oauth.NewCredential(eng, vault.NewMemory(), oauth.Config{ServerURL: endpoint, Interaction: in})
	c := &mcpclient.Client{URL: endpoint, HTTP: &http.Client{}, Auth: s, Name: "mcpgate-demo", Version: version}
	if err := c.Connect(ctx); err != nil {
		return nil, err
	}
	defer c.Close(context.Background())
	res, err := c.Call(ctx, "tools/list", map[string]any{})
	if err != nil {
		return nil, err
	}
	var r struct {
		Tools []struct{ Name string } `json:"tools"`
	}
	_ = json.Unmarshal(res, &r)
	var names []string
	for _, t := range r.Tools {
		names = append(names, t.Name)
	}
	return names, nil
}

var hiddenField = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// formLogin plays the person at the built-in server's pages: it follows
// the authorization URL, signs in, consents, and lets the redirect reach
// the client's loopback callback.
func formLogin(authURL, user, password string) error {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	resp, err := c.Get(authURL)
	for step := 0; err == nil && step < 4; step++ {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page := string(body)
		form := url.Values{}
		for _, m := range hiddenField.FindAllStringSubmatch(page, -1) {
			form.Set(m[1], strings.ReplaceAll(m[2], "&#43;", "+"))
		}
		action := ""
		switch form.Get("prompt") {
		case "login":
			form.Set("login", user)
			form.Set("password", password)
			action = "/login"
		case "consent":
			action = "/consent"
		default:
			return nil // the callback page
		}
		u, _ := url.Parse(authURL)
		resp, err = c.PostForm(u.Scheme+"://"+u.Host+action, form)
	}
	return err
}

func admin(c demoClient) bool { return strings.Contains(c.Scope, "mcp:admin") }

type bearer struct{ tok string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.tok)
	return http.DefaultTransport.RoundTrip(r)
}

func demoToken(base string, c demoClient, resource string) (string, error) {
	req, _ := http.NewRequest("POST", base+"/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "resource": {resource}, "scope": {c.Scope}}.Encode()))
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
