//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var scenarioLine = regexp.MustCompile(`(?m)^([✓✗]) (\S+): (\d+) passed, (\d+) failed`)

// runConformance runs a conformance server suite against url with a
// baseline. A run with at most two unexpected failing scenarios is repeated
// once, and the retry is logged (RETRY) with the first run's failing checks:
// about one full run in ten to twenty has shown a single scenario hanging
// through the gateway (never directly); the cause is under investigation
// (docs/testing.md, known issues). A failure that repeats fails the test.
func runConformance(t *testing.T, pkg, suiteName, mcpURL, baseline string) {
	out, failed, timeoutsOnly, ok := runSuite(t, pkg, suiteName, mcpURL, baseline)
	if !ok && (timeoutsOnly || len(failed) <= 2) && len(failed) > 0 {
		t.Logf("RETRY: conformance %s failed %v (checks above); running the suite once more", suiteName, failed)
		out, failed, _, ok = runSuite(t, pkg, suiteName, mcpURL, baseline)
	}
	if !ok {
		t.Fatalf("conformance %s failed beyond its baseline (%s): failing %v\n%s", suiteName, baseline, failed, out)
	}
}

func runSuite(t *testing.T, pkg, suiteName, mcpURL, baseline string) (out string, failed []string, timeoutsOnly, ok bool) {
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
	timeoutsOnly = len(failed) > 0
	for _, f := range failed {
		matches, _ := filepath.Glob(filepath.Join(results, "*"+f+"*", "checks.json"))
		for _, m := range matches {
			b, _ := os.ReadFile(m)
			t.Logf("checks of %s:\n%s", f, b)
			if !strings.Contains(string(b), "did not complete within") {
				timeoutsOnly = false
			}
		}
		if len(matches) == 0 {
			timeoutsOnly = false
		}
	}
	return out, failed, timeoutsOnly, ok
}

// TestConformanceServerSuite runs the official conformance server suite
// through the gateway, with a reference "everything" server (TS SDK) as
// upstream and a token from the certified OP injected in front.
func TestConformanceServerSuite(t *testing.T) {
	op := StartOP(t, "plain")
	_, m := Start(t, "everything-server", []string{Node22(t), "fixtures/everything-server/server.mjs"}, []string{"PORT=0"}, readyLine)
	upstream := m[1]
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
  - url: %s
    scopes_supported: [mcp:read]
`, port, proxyPort, proxyPort, proxyPort, proxyPort, op.Issuer, upstream)
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	os.WriteFile(file, []byte(cfg), 0o600)
	gp, _ := Start(t, "mcpgate", []string{Mcpgate(t), "serve", "--config", file}, []string{"MCPGATE_LOG_LEVEL=" + os.Getenv("E2E_GATEWAY_LOG_LEVEL")}, regexp.MustCompile(`mcpgate serving`))
	gw := &Gateway{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Proc: gp}
	gw.WaitReady(t)
	tok, _ := op.ClientCredentials(t, "mcp-cc", "cc-secret", gw.Endpoint("/mcp"), "mcp:read", nil)

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
	ln := listenOn(t, proxyPort)
	srv := &http.Server{Handler: rp}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	suiteURL := fmt.Sprintf("http://localhost:%d/mcp", proxyPort)
	t.Run("0.1.16", func(t *testing.T) {
		runConformance(t, "@modelcontextprotocol/conformance", "server-0.1.16", suiteURL, "baselines/server-0.1.16.yml")
	})
	t.Run("0.2.0-alpha.12", func(t *testing.T) {
		runConformance(t, "conformance-alpha", "server-0.2.0-alpha.12", suiteURL, "baselines/server-0.2.0-alpha.12.yml")
	})
	if strings.Contains(gp.Output(), tok) {
		t.Fatal("the gateway logged the token")
	}
}
