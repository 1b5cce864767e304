//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// clientScenarios are the client-side conformance scenarios mcpgate call
// must pass (issue: client OAuth engine). Suites run their scenarios in
// parallel; single scenarios run one by one.
var clientScenarios = []struct {
	pkg, name, baseline, driver string
	suites, scenarios           []string
}{
	{"@modelcontextprotocol/conformance", "client-0.1.16", "baselines/client-0.1.16.yml", "driver.mjs",
		[]string{"auth", "backcompat", "draft"},
		[]string{"auth/client-credentials-jwt", "auth/client-credentials-basic"}},
	{"conformance-alpha", "client-0.2.0-alpha.12", "baselines/client-0.2.0-alpha.12.yml", "driver.mjs",
		nil,
		[]string{"auth/iss-supported", "auth/iss-not-advertised", "auth/iss-supported-missing", "auth/iss-wrong-issuer",
			"auth/iss-unexpected", "auth/iss-normalized", "auth/metadata-issuer-mismatch",
			"auth/authorization-server-migration", "auth/resource-mismatch", "auth/offline-access-scope",
			"auth/offline-access-not-supported", "auth/scope-step-up", "auth/dpop", "auth/dpop-nonce"}},
	// the bridge: the TS SDK stdio client through `mcpgate connect`
	{"@modelcontextprotocol/conformance", "bridge-0.1.16", "baselines/client-0.1.16.yml", "bridge-driver.mjs",
		nil, []string{"initialize", "tools_call", "sse-retry"}},
	{"conformance-alpha", "bridge-0.2.0-alpha.12", "baselines/client-0.2.0-alpha.12.yml", "bridge-driver.mjs",
		nil, []string{"initialize", "tools_call", "sse-retry", "request-metadata", "http-standard-headers",
			"http-custom-headers", "http-invalid-tool-headers", "sep-2322-client-request-state"}},
}

// TestConformanceClientSuites runs the official conformance suite's
// authorization scenarios with mcpgate call (through a small driver that
// maps the runner's environment to flags) as the client under test, and
// its transport scenarios with the TS SDK stdio client through the bridge.
func TestConformanceClientSuites(t *testing.T) {
	bin := Mcpgate(t)
	env := []string{"MCPGATE_BIN=" + bin, "MCPGATE_CONFIG_DIR=" + t.TempDir()}
	for _, cs := range clientScenarios {
		driver := []string{Node22(t), "fixtures/conformance-client/" + cs.driver}
		t.Run(cs.name, func(t *testing.T) {
			var pass, fail int
			var failed []string
			run := func(label string, sel ...string) {
				results := t.TempDir()
				argv := append([]string{Node22(t), Module(t, cs.pkg+"/dist/index.js"), "client",
					"--command", strings.Join(driver, " "), "--expected-failures", cs.baseline, "-o", results, "--timeout", "40000"}, sel...)
				p, _ := Start(t, cs.name+" "+label, argv, env, nil)
				if err := p.Wait(6 * time.Minute); err != nil {
					t.Fatal(err)
				}
				out := p.Output()
				if sel[0] == "--suite" {
					lines := scenarioLine.FindAllStringSubmatch(out, -1)
					if len(lines) == 0 {
						t.Fatalf("suite %s ran no scenario:\n%s", label, out)
					}
					for _, m := range lines {
						if m[1] == "✓" {
							pass++
						} else {
							fail++
							failed = append(failed, m[2])
						}
					}
				} else if p.cmd.ProcessState.ExitCode() == 0 && strings.Contains(out, "OVERALL: PASSED") {
					pass++
				} else {
					fail++
					failed = append(failed, label)
				}
				if p.cmd.ProcessState.ExitCode() != 0 {
					matches, _ := filepath.Glob(filepath.Join(results, "*", "*", "checks.json"))
					for _, m := range matches {
						b, _ := os.ReadFile(m)
						if strings.Contains(string(b), `"FAILURE"`) || strings.Contains(string(b), `"WARNING"`) {
							t.Logf("checks of %s:\n%s", m, b)
						}
					}
					t.Errorf("conformance %s %s failed beyond %s:\n%s", cs.name, label, cs.baseline, out)
				}
			}
			for _, s := range cs.suites {
				run("suite "+s, "--suite", s)
			}
			for _, s := range cs.scenarios {
				run(s, "--scenario", s)
			}
			t.Logf("conformance %s: %d passed, %d failed", cs.name, pass, fail)
			if fail > 0 {
				t.Errorf("failing: %v", failed)
			}
		})
	}
}
