//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// builtinGateway runs mcpgate serve with the built-in authorization server
// in front of server-everything, with user alice (password wonderland) and
// a pre-registered public client "conformance" (loopback redirects).
type builtinGateway struct {
	*Gateway
	dir, cfgFile string
	env          []string
}

func startBuiltin(t *testing.T, extra string) *builtinGateway {
	return startBuiltinAt(t, FreePort(t), extra)
}

// startBuiltinAt: extra is YAML inserted under builtin:, env is given to
// the gateway.
func startBuiltinAt(t *testing.T, port int, extra string, env ...string) *builtinGateway {
	dir := t.TempDir()
	users := writeUsers(t, dir)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
authorization_server: builtin
builtin:
  store: %s
  users_file: %s
  clients:
    - id: conformance
      name: Conformance suite
      redirect_uris: ["http://127.0.0.1/callback"]
%s
upstreams:
  - url: %s
    scopes_supported: [mcp:read]
limits:
  requests_per_second: 200
  burst: 400
`, port, filepath.Join(dir, "as.db"), users, extra, startEverythingHTTP(t, "streamableHttp"))
	file := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(file, []byte(cfg), 0o600)
	b := &builtinGateway{dir: dir, cfgFile: file, env: append([]string{"MCPGATE_CONFIG_DIR=" + filepath.Join(dir, "gw")}, env...)}
	b.start(t, port)
	return b
}

// writeUsers writes a password file with alice (password wonderland),
// hashed by mcpgate hash-password, and returns its path.
func writeUsers(t *testing.T, dir string) string {
	cmd := exec.Command(Mcpgate(t), "hash-password")
	cmd.Stdin = strings.NewReader("wonderland\n")
	hash, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(dir, "users")
	os.WriteFile(users, []byte("# e2e users\nalice:"+strings.TrimSpace(string(hash))+"\n"), 0o600)
	return users
}

func (b *builtinGateway) start(t *testing.T, port int) {
	p, _ := Start(t, "mcpgate-builtin", []string{Mcpgate(t), "serve", "--config", b.cfgFile}, b.env, regexp.MustCompile(`mcpgate serving`))
	b.Gateway = &Gateway{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Proc: p}
	b.WaitReady(t)
}

// TestBuiltinASWithRealClients: the official TypeScript SDK client,
// mcp-remote, mcpgate call and mcpgate connect each complete the OAuth
// flow against the built-in server (dynamic client registration, login and
// consent pages) and call tools through the gateway. The server's state
// file is 0600 and survives a restart: a stored credential keeps working.
func TestBuiltinASWithRealClients(t *testing.T) {
	b := startBuiltin(t, "")
	mcpURL := b.Endpoint("/mcp")

	t.Run("TypeScript SDK", func(t *testing.T) {
		p, _ := Start(t, "ts-client", []string{Node22(t), "fixtures/client/run.mjs", mcpURL}, nil, nil)
		if err := p.Wait(60 * time.Second); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(p.Output()), "\n")
		var out struct {
			Steps []string `json:"steps"`
			Echo  string   `json:"echo"`
		}
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &out); err != nil || strings.Join(out.Steps, ",") != "unauthorized,logged-in,token,connected" ||
			!strings.Contains(out.Echo, "hello from the TS SDK") {
			t.Fatalf("TS SDK client: %v\n%s", err, p.Output())
		}
	})

	t.Run("mcp-remote", func(t *testing.T) {
		cmd := exec.Command("node", Module(t, "mcp-remote/dist/proxy.js"), mcpURL, "--transport", "http-only")
		cmd.Dir = Dir(t)
		cmd.Env = append(os.Environ(), "MCP_REMOTE_CONFIG_DIR="+t.TempDir(), "BROWSER=true")
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() }()
		var log strings.Builder
		urls := make(chan string, 1)
		go func() {
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				log.WriteString(sc.Text() + "\n")
				if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, b.URL+"/authorize?") {
					select {
					case urls <- l:
					default:
					}
				}
			}
		}()
		lines := make(chan string, 16)
		go func() {
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 1<<20), 1<<22)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		io.WriteString(stdin, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}`+"\n")
		select {
		case u := <-urls:
			if out, err := exec.Command(Node22(t), "fixtures/client/browser.mjs", u).CombinedOutput(); err != nil {
				t.Fatalf("completing mcp-remote's login: %v %s", err, out)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("mcp-remote printed no authorization URL:\n%s", log.String())
		}
		wait := func(id string) string {
			deadline := time.After(60 * time.Second)
			for {
				select {
				case l := <-lines:
					var m struct {
						ID json.RawMessage `json:"id"`
					}
					if json.Unmarshal([]byte(l), &m) == nil && string(m.ID) == id {
						return l
					}
				case <-deadline:
					t.Fatalf("mcp-remote: no answer to %s:\n%s", id, log.String())
				}
			}
		}
		if r := wait("1"); !strings.Contains(r, "protocolVersion") {
			t.Fatalf("initialize via mcp-remote: %s", r)
		}
		io.WriteString(stdin, `{"jsonrpc":"2.0","method":"notifications/initialized"}`+"\n")
		io.WriteString(stdin, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"mcp-remote via builtin"}}}`+"\n")
		if r := wait("2"); !strings.Contains(r, "mcp-remote via builtin") {
			t.Fatalf("tools/call via mcp-remote: %s", r)
		}
	})

	c := newCLI(t)
	t.Run("mcpgate call and connect", func(t *testing.T) {
		out := c.must("call", "--store", "file", "--browser", c.browse, "--tool", "echo", "--args", `{"message":"call via builtin"}`, mcpURL)
		if !strings.Contains(out, "call via builtin") {
			t.Fatalf("call: %s", out)
		}
		st := c.status()
		if len(st) != 1 || st[0].I != b.URL || st[0].TT != "DPoP" || !st[0].Refreshable || st[0].Sub != "alice" {
			t.Fatalf("status: %+v", st)
		}
		rep := runStdioClient(t, c.env, c.bin, "connect", "--store", "file", mcpURL)
		checkComplete(t, "mcpgate connect via the built-in server", rep)
	})

	t.Run("MCP Inspector CLI", func(t *testing.T) {
		// the Inspector CLI has no OAuth of its own (headers only): it
		// launches mcpgate connect, which holds the credential obtained
		// from the built-in server above
		cli := Module(t, "@modelcontextprotocol/inspector/cli/build/cli.js")
		args := []string{"node", cli, "--cli", "-e", "MCPGATE_STORE=file"}
		for _, e := range c.env {
			args = append(args, "-e", e)
		}
		args = append(args, c.bin, "connect", mcpURL, "--method", "tools/call", "--tool-name", "echo", "--tool-arg", "message=inspector-builtin")
		p, _ := Start(t, "inspector-builtin", args, nil, nil)
		if err := p.Wait(60 * time.Second); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(p.Output(), "Echo: inspector-builtin") {
			t.Fatalf("inspector:\n%s", p.Output())
		}
	})

	t.Run("state survives a restart", func(t *testing.T) {
		fi, err := os.Stat(filepath.Join(b.dir, "as.db"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("state file: %v %v", fi, err)
		}
		port := strings.TrimPrefix(b.URL, "http://127.0.0.1:")
		b.Proc.Stop()
		var p int
		fmt.Sscan(port, &p)
		b.start(t, p)
		// the stored access token was signed before the restart and the
		// refresh token was issued before it: both must still work
		out := c.must("call", "--store", "file", "--no-login", "--tool", "echo", "--args", `{"message":"after restart"}`, mcpURL)
		if !strings.Contains(out, "after restart") {
			t.Fatalf("after restart: %s", out)
		}
	})
}

// TestBuiltinASFederatedToOP: the built-in server sends the sign-in to an
// upstream OpenID provider (the certified OP) and keeps the upstream's
// tokens to itself; the MCP client gets the built-in server's token for
// the user the OP authenticated.
func TestBuiltinASFederatedToOP(t *testing.T) {
	port := FreePort(t)
	op := StartOP(t, "plain", fmt.Sprintf("OP_FEDERATION_REDIRECT=http://127.0.0.1:%d/federation/callback", port))
	b := startBuiltinAt(t, port, fmt.Sprintf(`  federation:
    issuer: %s
    client_id: mcp-federation
    client_secret_env: FED_SECRET
    scopes: [openid, email]
`, op.Issuer), "FED_SECRET=fed-secret")
	c := newCLI(t)
	c.env = append(c.env, "BROWSER_USER=bob")
	out := c.must("login", "--store", "file", "--timeout", "60s", "--browser", c.browse, b.Endpoint("/mcp"))
	if !strings.Contains(out, "bob") || !strings.Contains(out, b.URL) {
		t.Fatalf("federated login: %s", out)
	}
	if !strings.Contains(op.Proc.Output(), "GRANT authorization_code mcp-federation") {
		t.Fatalf("the OP saw no code exchange by the built-in server:\n%s", op.Proc.Output())
	}
	log, _ := os.ReadFile(filepath.Join(c.dir, "browser.log"))
	if !strings.Contains(string(log), op.Issuer+"/auth") || !strings.Contains(string(log), "/federation/callback") {
		t.Fatalf("the browser did not go through the OP:\n%s", log)
	}
	if out := c.must("call", "--store", "file", "--no-login", "--tool", "echo", "--args", `{"message":"federated"}`, b.Endpoint("/mcp")); !strings.Contains(out, "federated") {
		t.Fatalf("call: %s", out)
	}
}

// TestBuiltinASConformance: the conformance suite's authorization-server
// scenarios (0.2.0 alpha) against the built-in server, the login and
// consent done by the headless browser.
func TestBuiltinASConformance(t *testing.T) {
	b := startBuiltin(t, "")
	port := FreePort(t)
	argv := []string{Node22(t), Module(t, "conformance-alpha/dist/index.js"), "authorization", "--url", b.URL,
		"--client-id", "conformance", "--resource", b.Endpoint("/mcp"), "-p", fmt.Sprint(port)}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = Dir(t)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		l := sc.Text()
		out.WriteString(l + "\n")
		if strings.HasPrefix(strings.TrimSpace(l), b.URL+"/authorize?") {
			u := strings.TrimSpace(l)
			go func() {
				time.Sleep(300 * time.Millisecond) // the runner's callback server starts listening
				exec.Command(Node22(t), "fixtures/client/browser.mjs", u).Run()
			}()
		}
	}
	cmd.Wait()
	res := out.String()
	passed := strings.Count(res, "✓")
	t.Logf("conformance authorization-server-0.2.0-alpha.12: %d passed, %d failed", passed, strings.Count(res, "✗"))
	if cmd.ProcessState.ExitCode() != 0 || passed < 2 {
		t.Fatalf("authorization server scenarios:\n%s", res)
	}
}

// waitFor evaluates a condition until it holds, tolerating navigations.
func waitFor(ctx context.Context, cond string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond)); err == nil && ok {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("timed out waiting for %s", cond)
}

// TestBuiltinASPagesInChromium: a person signs in and consents on the
// built-in server's own pages in Debian's Chromium (screenshots
// builtin-login.png and builtin-consent.png), then mcpgate login finishes.
func TestBuiltinASPagesInChromium(t *testing.T) {
	b := startBuiltin(t, "")
	c := newCLI(t)
	l, authURL := c.startLogin(t, authorizationURL, "--store", "file", "--no-browser", b.Endpoint("/mcp"))
	ctx := Chromium(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(authURL), chromedp.WaitVisible(`#login`)); err != nil {
		t.Fatalf("login page: %v", err)
	}
	Screenshot(t, ctx, "builtin-login")
	if err := chromedp.Do(ctx, chromedp.SendKeys(`#login`, "alice")); err != nil {
		t.Fatalf("type user: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys(`#password`, "wonderland")); err != nil {
		t.Fatalf("type password: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Submit(`#password`)); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	if err := waitFor(ctx, `document.querySelector('button[name=deny]') !== null`); err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("no consent page after signing in: %v\n%s", err, text)
	}
	Screenshot(t, ctx, "builtin-consent")
	if text, _ := chromedp.Run(ctx, chromedp.Text(`main`)); !strings.Contains(text, "mcp:read") || !strings.Contains(text, "127.0.0.1") {
		t.Fatalf("the consent page does not show the scopes and the redirect host:\n%s", text)
	}
	if err := chromedp.Do(ctx, chromedp.Submit(`button.primary`)); err != nil {
		t.Fatalf("consent: %v", err)
	}
	if out := l.wait(30 * time.Second); !strings.Contains(out, "alice") {
		t.Fatalf("mcpgate login:\n%s", out)
	}
}

// StartPostgres runs a throwaway PostgreSQL server (Debian package) on a
// free loopback port and returns its DSN. As root it runs as the postgres
// system user, which initdb requires.
func StartPostgres(t *testing.T) string {
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		t.Fatal("PostgreSQL is missing: scripts/deps.sh installs the postgresql package")
	}
	bin := filepath.Dir(bins[len(bins)-1])
	dir, err := os.MkdirTemp("", "mcpgate-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	wrap := func(argv ...string) []string { return argv }
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "postgres:postgres", dir).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v %s", err, out)
		}
		wrap = func(argv ...string) []string { return append([]string{"runuser", "-u", "postgres", "--"}, argv...) }
	}
	data := filepath.Join(dir, "data")
	init := wrap(filepath.Join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "mcpgate", "--no-sync")
	if out, err := exec.Command(init[0], init[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := FreePort(t)
	Start(t, "postgres", wrap(filepath.Join(bin, "postgres"), "-D", data, "-p", fmt.Sprint(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"), nil, regexp.MustCompile(`ready to accept connections`))
	return fmt.Sprintf("postgres://mcpgate@127.0.0.1:%d/postgres?sslmode=disable", port)
}

// TestBuiltinASReplicasSharePostgres: two gateways with one public URL
// behind a round-robin load balancer share the built-in server's state in
// PostgreSQL. Every step of the login (metadata, registration, PAR,
// authorize, sign-in, consent, token) and every MCP call lands on either
// replica, and everything works: flows, codes, keys and refresh tokens are
// shared.
func TestBuiltinASReplicasSharePostgres(t *testing.T) {
	dsn := StartPostgres(t)
	up := startEverythingHTTP(t, "streamableHttp")
	dir := t.TempDir()
	users := writeUsers(t, dir)
	lbPort := FreePort(t)
	public := fmt.Sprintf("http://127.0.0.1:%d", lbPort)
	var backends []*url.URL
	var hits [2]atomic.Int64
	for i := range 2 {
		port := FreePort(t)
		cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
public_url: %s
authorization_server: builtin
builtin:
  store_env: AS_DSN
  users_file: %s
upstreams:
  - url: %s
    scopes_supported: [mcp:read]
limits:
  requests_per_second: 200
  burst: 400
`, port, public, users, up)
		file := filepath.Join(dir, fmt.Sprintf("gw%d.yaml", i))
		os.WriteFile(file, []byte(cfg), 0o600)
		Start(t, fmt.Sprintf("mcpgate-replica-%d", i), []string{Mcpgate(t), "serve", "--config", file}, []string{"AS_DSN=" + dsn}, regexp.MustCompile(`mcpgate serving`))
		u, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", port))
		backends = append(backends, u)
	}
	var next atomic.Int64
	lb := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		// MCP sessions stick to their replica (the upstream session lives
		// there); everything else goes round robin
		i := int(next.Add(1) % 2)
		if sid := r.In.Header.Get("Mcp-Session-Id"); sid != "" {
			i = int(sessionReplica(sid))
		}
		hits[i].Add(1)
		r.SetURL(backends[i])
		r.Out.Host = r.In.Host
	}, FlushInterval: -1, ModifyResponse: func(resp *http.Response) error {
		if sid := resp.Header.Get("Mcp-Session-Id"); sid != "" {
			rememberSession(sid, resp.Request.URL.Host == backends[1].Host)
		}
		return nil
	}}
	ln := listenOn(t, lbPort)
	srv := &http.Server{Handler: WholeBody(lb)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	(&Gateway{URL: backends[0].String()}).WaitReady(t)
	(&Gateway{URL: backends[1].String()}).WaitReady(t)

	c := newCLI(t)
	out := c.must("login", "--store", "file", "--browser", c.browse, public+"/mcp")
	if !strings.Contains(out, "alice") {
		t.Fatalf("login through two replicas: %s", out)
	}
	for i := range 6 {
		msg := fmt.Sprintf("replicated %d", i)
		if out := c.must("call", "--store", "file", "--no-login", "--tool", "echo", "--args", `{"message":"`+msg+`"}`, public+"/mcp"); !strings.Contains(out, msg) {
			t.Fatalf("call %d: %s", i, out)
		}
	}
	if hits[0].Load() < 5 || hits[1].Load() < 5 {
		t.Fatalf("the load balancer did not spread the requests: %d / %d", hits[0].Load(), hits[1].Load())
	}
}

var sessions sync.Map

func rememberSession(sid string, second bool) { sessions.Store(sid, second) }

func sessionReplica(sid string) int64 {
	if v, ok := sessions.Load(sid); ok && v.(bool) {
		return 1
	}
	return 0
}

// TestDemoOpen: `mcpgate demo --open` signs the demo user in through the
// browser ($BROWSER: the headless browser) and lists the tools.
func TestDemoOpen(t *testing.T) {
	p, _ := Start(t, "mcpgate-demo", []string{Mcpgate(t), "demo", "--open", "--listen", "127.0.0.1:0"},
		[]string{"BROWSER=" + Node22(t) + " " + filepath.Join(Dir(t), "fixtures/client/browser.mjs"), "BROWSER_USER=demo",
			"BROWSER_PASSWORD=e2e-demo-password", "MCPGATE_DEMO_PASSWORD=e2e-demo-password"},
		regexp.MustCompile(`Signed in as demo in the browser; the server offers you: (.*)`))
	if out := p.Output(); !strings.Contains(out, "tiny_image") || !strings.Contains(out, "long_task") {
		t.Fatalf("demo --open:\n%s", out)
	}
}

// TestDemoWithMcpgateCall: `mcpgate demo` as a user meets it — mcpgate
// call logs in as the demo user (browser) and calls a tool through it.
func TestDemoWithMcpgateCall(t *testing.T) {
	port := FreePort(t)
	Start(t, "mcpgate-demo", []string{Mcpgate(t), "demo", "--listen", fmt.Sprintf("127.0.0.1:%d", port)},
		[]string{"MCPGATE_DEMO_PASSWORD=e2e-demo-password"}, regexp.MustCompile(`mcpgate demo is running`))
	c := newCLI(t)
	c.env = append(c.env, "BROWSER_USER=demo", "BROWSER_PASSWORD=e2e-demo-password")
	out := c.must("call", "--store", "file", "--browser", c.browse, "--tool", "echo", "--args", `{"message":"hello demo"}`, fmt.Sprintf("http://127.0.0.1:%d/mcp", port))
	if !strings.Contains(out, "hello demo") {
		t.Fatalf("call against the demo: %s", out)
	}
	if st := c.status(); len(st) != 1 || st[0].Sub != "demo" {
		t.Fatalf("status: %+v", st)
	}
}

// TestBuiltinASTokenForOneUpstreamOnly: a token the built-in server issued
// for one upstream is refused by the gateway at another.
func TestBuiltinASTokenForOneUpstreamOnly(t *testing.T) {
	dir := t.TempDir()
	port := FreePort(t)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
authorization_server: builtin
builtin:
  store: %s
  clients:
    - id: machine
      secret_env: MACHINE_SECRET
      grant_types: [client_credentials]
      scopes: [mcp:read]
upstreams:
  - path: /a/mcp
    url: %s
    scopes_supported: [mcp:read]
  - path: /b/mcp
    url: %s
    scopes_supported: [mcp:read]
`, port, filepath.Join(dir, "as.db"), startEverythingHTTP(t, "streamableHttp"), startEverythingHTTP(t, "streamableHttp"))
	file := filepath.Join(dir, "gw.yaml")
	os.WriteFile(file, []byte(cfg), 0o600)
	p, _ := Start(t, "mcpgate-builtin-2", []string{Mcpgate(t), "serve", "--config", file}, []string{"MACHINE_SECRET=m-secret"}, regexp.MustCompile(`mcpgate serving`))
	gw := &Gateway{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Proc: p}
	gw.WaitReady(t)
	op := &OP{Issuer: gw.URL}
	tok, _ := op.ClientCredentials(t, "machine", "m-secret", gw.Endpoint("/a/mcp"), "mcp:read", nil)
	if status, _, body := post(t, gw.Endpoint("/a/mcp"), "Bearer "+tok, initialize); status != 200 {
		t.Fatalf("token at its own upstream: %d %s", status, body)
	}
	if status, _, body := post(t, gw.Endpoint("/b/mcp"), "Bearer "+tok, initialize); status != 401 || !strings.Contains(body, "not meant for this resource") {
		t.Fatalf("token at another upstream: %d %s", status, body)
	}
}
