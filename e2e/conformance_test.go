//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var scenarioLine = regexp.MustCompile(`(?m)^([✓✗]) (\S+): (\d+) passed, (\d+) failed`)

// runConformance runs a conformance server suite against url with a
// baseline; any failure beyond it fails the test. (A run once repeated
// after a failure: about one run in thirty hung through the test's own
// token-injecting proxy, a net/http ReverseProxy race fixed by WholeBody,
// docs/testing.md.)
func runConformance(t *testing.T, pkg, suiteName, mcpURL, baseline string) {
	out, failed, ok := runSuite(t, pkg, suiteName, mcpURL, baseline)
	if !ok {
		t.Fatalf("conformance %s failed beyond its baseline (%s): failing %v\n%s", suiteName, baseline, failed, out)
	}
}

// proxyLog records what the test's token-injecting proxy did.
type proxyLog struct {
	start time.Time
	mu    sync.Mutex
	buf   bytes.Buffer
	seq   atomic.Int64
}

func (l *proxyLog) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.buf, "%8.3fs ", time.Since(l.start).Seconds())
	fmt.Fprintf(&l.buf, format, args...)
	l.buf.WriteByte('\n')
}

func (l *proxyLog) Write(p []byte) (int, error) {
	l.printf("%s", strings.TrimSpace(string(p)))
	return len(p), nil
}

func (l *proxyLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type countingWriter struct {
	http.ResponseWriter
	status int
	n      int
}

func (c *countingWriter) WriteHeader(s int) { c.status = s; c.ResponseWriter.WriteHeader(s) }
func (c *countingWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = 200
	}
	n, err := c.ResponseWriter.Write(b)
	c.n += n
	return n, err
}
func (c *countingWriter) Flush()                      { c.ResponseWriter.(http.Flusher).Flush() }
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (l *proxyLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := l.seq.Add(1)
		sid := r.Header.Get("Mcp-Session-Id")
		if len(sid) > 8 {
			sid = sid[:8]
		}
		l.printf("#%d start %s %s sid=%s len=%d from=%s", id, r.Method, r.URL.Path, sid, r.ContentLength, r.RemoteAddr)
		cw := &countingWriter{ResponseWriter: w}
		t0 := time.Now()
		defer func() {
			rec := recover()
			l.printf("#%d end %s status=%d bytes=%d after=%s ctx=%v panic=%v", id, r.Method, cw.status, cw.n, time.Since(t0).Round(time.Millisecond), r.Context().Err(), rec)
			if rec != nil {
				panic(rec)
			}
		}()
		h.ServeHTTP(cw, r)
	})
}

func runSuite(t *testing.T, pkg, suiteName, mcpURL, baseline string) (out string, failed []string, ok bool) {
	results := t.TempDir()
	argv := []string{Node22(t), Module(t, pkg+"/dist/index.js"), "server", "--url", mcpURL, "-o", results, "--expected-failures", baseline}
	single := os.Getenv("E2E_CONFORMANCE_SCENARIO")
	if single != "" {
		// One scenario, verbose (docs/testing.md): its checks are printed.
		argv = append(argv[:len(argv)-2], "--scenario", single, "--verbose")
	}
	p, _ := Start(t, suiteName, argv, nil, nil)
	if err := p.Wait(5 * time.Minute); err != nil {
		t.Fatal(err)
	}
	out = p.Output()
	var pass int
	for _, m := range scenarioLine.FindAllStringSubmatch(out, -1) {
		if m[1] == "✓" {
			pass++
		} else {
			failed = append(failed, m[2])
		}
	}
	t.Logf("conformance %s: %d passed, %d failed", suiteName, pass, len(failed))
	if pass == 0 && single == "" {
		t.Fatalf("no scenario ran:\n%s", out)
	}
	ok = p.cmd.ProcessState.ExitCode() == 0
	for _, f := range failed {
		matches, _ := filepath.Glob(filepath.Join(results, "*"+f+"*", "checks.json"))
		for _, m := range matches {
			b, _ := os.ReadFile(m)
			t.Logf("checks of %s:\n%s", f, b)
		}
	}
	return out, failed, ok
}

// TestConformanceServerSuite runs the official conformance server suite
// through the gateway, with a reference "everything" server (TS SDK) as
// upstream and a token from the certified OP injected in front: with the
// server over Streamable HTTP (the gateway proxies), and with the same
// server as a stdio command and over the 2024-11-05 HTTP+SSE transport (the
// gateway is the Streamable HTTP server: sessions, streams, resumption and
// deletion are its own).
func TestConformanceServerSuite(t *testing.T) {
	op := StartOP(t, "plain")
	_, m := Start(t, "everything-server", []string{Node22(t), "fixtures/everything-server/server.mjs"}, []string{"PORT=0"}, readyLine)
	_, sse := Start(t, "everything-server-sse", []string{Node22(t), "fixtures/everything-server/server.mjs", "sse"}, []string{"PORT=0"}, readyLine)
	server, _ := filepath.Abs("fixtures/everything-server/server.mjs")
	for _, front := range []struct{ name, upstream, suffix string }{
		{"http", "url: " + m[1], ""},
		{"stdio", fmt.Sprintf("command: [%s, %s, stdio]", Node22(t), server), "-stdio"},
		{"sse", "url: " + sse[1] + "\n    transport: sse", "-sse"},
	} {
		t.Run(front.name, func(t *testing.T) {
			suiteURL, gp, tok := conformanceFront(t, op, front.upstream)
			t.Run("0.1.16", func(t *testing.T) {
				runConformance(t, "@modelcontextprotocol/conformance", "server-0.1.16"+front.suffix, suiteURL, "baselines/server-0.1.16.yml")
			})
			t.Run("0.2.0-alpha.12", func(t *testing.T) {
				runConformance(t, "conformance-alpha", "server-0.2.0-alpha.12"+front.suffix, suiteURL, "baselines/server-0.2.0-alpha.12.yml")
			})
			if strings.Contains(gp.Output(), tok) {
				t.Fatal("the gateway logged the token")
			}
		})
	}
}

// conformanceFront starts a gateway trusting op in front of upstream (a
// YAML upstream fragment) and the token-injecting proxy in front of the
// gateway; it returns the URL for the conformance runner.
func conformanceFront(t *testing.T, op *OP, upstream string) (suiteURL string, gp *Proc, tok string) {
	port := FreePort(t)
	proxyPort := FreePort(t)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
allowed_hosts: ["localhost:%d", "127.0.0.1:%d"]
allowed_origins: ["http://localhost:%d", "http://127.0.0.1:%d"]
limits:
  requests_per_second: 500
  burst: 1000
issuers:
  - issuer: %s
upstreams:
  - %s
    scopes_supported: [mcp:read]
`, port, proxyPort, proxyPort, proxyPort, proxyPort, op.Issuer, upstream)
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	os.WriteFile(file, []byte(cfg), 0o600)
	gp, _ = Start(t, "mcpgate", []string{Mcpgate(t), "serve", "--config", file}, []string{"MCPGATE_LOG_LEVEL=" + os.Getenv("E2E_GATEWAY_LOG_LEVEL")}, regexp.MustCompile(`mcpgate serving`))
	gw := &Gateway{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Proc: gp}
	gw.WaitReady(t)
	tok, _ = op.ClientCredentials(t, "mcp-cc", "cc-secret", gw.Endpoint("/mcp"), "mcp:read", nil)

	// The conformance runner cannot send tokens: this loopback proxy (test
	// code, never a product switch) adds one to every request and keeps
	// Host and Origin, which the DNS-rebinding scenario sets to hostile values.
	u, _ := url.Parse(gw.URL)
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host
			r.Out.Header.Set("Authorization", "Bearer "+tok)
		},
		FlushInterval: -1,
	}
	// Every request through the proxy is logged (start, end, status,
	// bytes, error) and shown when the test fails, to tell a response lost
	// in the proxy from one the gateway never sent.
	plog := &proxyLog{start: time.Now()}
	rp.ErrorLog = log.New(plog, "reverseproxy: ", 0)
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		plog.printf("error %s %s: %v", r.Method, r.URL.Path, err)
		w.WriteHeader(http.StatusBadGateway)
	}
	ln := listenOn(t, proxyPort)
	srv := &http.Server{Handler: plog.wrap(WholeBody(rp))}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		if t.Failed() || os.Getenv("E2E_SHOW_OUTPUT") != "" {
			t.Logf("----- token-injecting proxy -----\n%s", plog.String())
		}
	})
	return fmt.Sprintf("http://localhost:%d/mcp", proxyPort), gp, tok
}
