//go:build e2e

// Package e2e is mcpgate's end-to-end bench: it starts real third-party
// components (a certified OpenID provider, the official MCP servers,
// clients and conformance suite, all pinned in package-lock.json) on free
// loopback ports and drives mcpgate against them. Run with
// `go test -tags e2e ./e2e/` after `make e2e-deps` (make test does both).
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Dir is the e2e directory (where node_modules lives).
func Dir(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// Node22 returns the pinned Node 22 binary from node_modules; tools that
// need Node 22 (the conformance suite) run with it.
func Node22(t testing.TB) string {
	p := filepath.Join(Dir(t), "node_modules", "node", "bin", "node")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("Node 22 is missing at %s: run `make e2e-deps` (npm ci in e2e/)", p)
	}
	return p
}

// Module returns the path of an installed npm package file.
func Module(t testing.TB, rel string) string {
	p := filepath.Join(Dir(t), "node_modules", rel)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run `make e2e-deps` (npm ci in e2e/)", p)
	}
	return p
}

// FreePort returns a free loopback port.
//
// The port comes from below the kernel's ephemeral range (32768–60999 on
// Linux), never from it: a port the kernel picked for a listener on :0 and
// that was then closed is the kind of port it hands to the next outgoing
// connection, and a component started seconds later on it found it taken
// ("Port … is already in use"). Ports are handed out once per test binary.
func FreePort(t testing.TB) int {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 200 {
		p := 20000 + rand.IntN(12000)
		if portsGiven[p] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		ln.Close()
		portsGiven[p] = true
		return p
	}
	t.Fatal("no free port in 20000–31999 after 200 tries")
	return 0
}

var (
	portsMu    sync.Mutex // guards portsGiven
	portsGiven = map[int]bool{}
)

// Proc is a process started by the bench.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	mu   sync.Mutex // guards out
	out  bytes.Buffer
	done chan struct{}
}

// Output returns what the process printed so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Stop sends SIGTERM to the process group and waits (SIGKILL after 5s).
func (p *Proc) Stop() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Signal sends sig to the process (not the group).
func (p *Proc) Signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

// Wait waits for the process to exit on its own.
func (p *Proc) Wait(d time.Duration) error {
	select {
	case <-p.done:
		return nil
	case <-time.After(d):
		return fmt.Errorf("%s did not exit within %s", p.Name, d)
	}
}

// Start runs argv in its own process group with env added to a minimal
// environment, and waits until a line of its output matches ready (nil:
// no wait). The process group is killed when the test ends, and its output
// is printed if the test failed. It returns the submatches of ready.
func Start(t testing.TB, name string, argv []string, env []string, ready *regexp.Regexp) (*Proc, []string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = Dir(t)
	// a private mcpgate config dir unless the test gives one: no test
	// writes credentials into the real user's directory
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "LANG=C.UTF-8", "MCPGATE_CONFIG_DIR=" + t.TempDir()}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &Proc{Name: name, cmd: cmd, done: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.Stdin = nil
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	lines := make(chan string, 256)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	go func() {
		_ = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() || os.Getenv("E2E_SHOW_OUTPUT") != "" {
			t.Logf("----- output of %s -----\n%s", name, p.Output())
		}
	})
	if ready == nil {
		return p, nil
	}
	deadline := time.After(60 * time.Second)
	for {
		select {
		case l := <-lines:
			if m := ready.FindStringSubmatch(l); m != nil {
				return p, m
			}
		case <-p.done:
			t.Fatalf("%s exited before it was ready:\n%s", name, p.Output())
		case <-deadline:
			t.Fatalf("%s not ready within 60s:\n%s", name, p.Output())
		}
	}
}

// WaitHTTP polls url until it answers with a status below 500.
func WaitHTTP(t testing.TB, u string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not reachable within 60s: %v", u, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Mcpgate builds the mcpgate binary once per test run.
func Mcpgate(t testing.TB) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mcpgate-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "mcpgate")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/mcpgate").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

var readyLine = regexp.MustCompile(`READY (\S+)`)

// OP is a running OpenID provider fixture.
type OP struct {
	Issuer string
	Proc   *Proc
}

// StartOP starts e2e/fixtures/op/server.mjs in profile (plain, fapi,
// opaque, short).
// env adds variables (OP_PKJWT_JWK).
func StartOP(t testing.TB, profile string, env ...string) *OP {
	p, m := Start(t, "op-"+profile, []string{Node22(t), "fixtures/op/server.mjs"}, append([]string{"OP_PROFILE=" + profile, "OP_PORT=0"}, env...), readyLine)
	return &OP{Issuer: m[1], Proc: p}
}

// Gateway is a running `mcpgate serve`.
type Gateway struct {
	URL  string // public URL (origin)
	Proc *Proc
}

// Endpoint is the MCP endpoint at path.
func (g *Gateway) Endpoint(path string) string { return g.URL + path }

// StartGateway runs mcpgate serve with args (--listen is added) and waits
// for /healthz.
func StartGateway(t testing.TB, env []string, args ...string) *Gateway {
	port := FreePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	argv := append([]string{Mcpgate(t), "serve", "--listen", listen}, args...)
	p, _ := Start(t, "mcpgate", argv, env, regexp.MustCompile(`mcpgate serving`))
	g := &Gateway{URL: "http://" + listen, Proc: p}
	WaitHTTP(t, g.URL+"/healthz")
	return g
}

// WaitReady polls /readyz until the gateway has its keys.
func (g *Gateway) WaitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(g.URL + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("gateway not ready: %s", b)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ClientCredentials gets an access token from op's token endpoint for
// resource; extra headers (DPoP) may be added by mutate.
func (op *OP) ClientCredentials(t testing.TB, client, secret, resource, scope string, mutate func(*http.Request)) (token, tokenType string) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {resource}, "scope": {scope}}
	req, _ := http.NewRequest("POST", op.Issuer+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, secret)
	if mutate != nil {
		mutate(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil || out.AccessToken == "" {
		t.Fatalf("token request: %d %s", resp.StatusCode, b)
	}
	return out.AccessToken, out.TokenType
}

// Ctx is a test context with a deadline.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// listenOn listens on a loopback port chosen earlier with FreePort.
// WholeBody reads a request body whole before a test's reverse proxy
// forwards it. Handing the server's own request body to the Transport
// races: the Transport's write loop may still read it (checking for bytes
// beyond Content-Length) when the proxy starts the response, which makes
// the server close it; the write loop's read error then closes the upstream
// connection under the response being copied, and the client gets headers
// and a cut body (golang/go#40747). Under load this hung about one
// conformance run in thirty.
func WholeBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, "reading the request body: "+err.Error(), http.StatusBadRequest)
				return
			}
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		}
		h.ServeHTTP(w, r)
	})
}

func listenOn(t testing.TB, port int) net.Listener {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
