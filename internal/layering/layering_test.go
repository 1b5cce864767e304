package layering

import (
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/mcpgate/mcpgate/"

// level of each internal package: a package may import only packages of a
// strictly lower level (or the same package tree). Roles sit at 4,
// building blocks at 3, the shared wire clients (built from primitives,
// used by blocks of both halves) at 2, primitives at 1.
var level = map[string]int{
	"internal/gateway": 4, "internal/bridge": 4, "internal/broker": 4, "internal/authserver": 4, "internal/demo": 4,
	"internal/resource": 3, "internal/policy": 3, "internal/upstream": 3, "internal/oauth": 3, "internal/vault": 3,
	"internal/mcpclient": 3,
	"internal/legacysse": 2,
	"internal/mcp":       1, "internal/origin": 1, "internal/termsafe": 1, "internal/dpop": 1, "internal/config": 1, "internal/telemetry": 1, "internal/p256": 1,
}

// forbidden lists imports excluded beyond the level rule.
var forbidden = map[string][]string{
	"internal/gateway":   {"internal/oauth", "internal/vault", "internal/mcpclient"},
	"internal/bridge":    {"internal/upstream", "internal/resource"},
	"internal/broker":    {"internal/upstream", "internal/resource"},
	"internal/resource":  {"internal/oauth", "internal/vault"},
	"internal/oauth":     {"internal/resource", "internal/upstream"},
	"internal/vault":     {"internal/resource", "internal/upstream"},
	"internal/mcpclient": {"internal/resource", "internal/upstream"},
}

// group maps a package path to its rule key (subpackages share their
// parent's rules).
func group(p string) string {
	p = strings.TrimPrefix(p, mod)
	for k := range level {
		if p == k || strings.HasPrefix(p, k+"/") {
			return k
		}
	}
	return p
}

type pkg struct {
	ImportPath string
	Imports    []string
}

func TestLayering(t *testing.T) {
	cmd := exec.Command("go", "list", "-e", "-json", mod+"...")
	cmd.Dir = "../.."
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(out)
	var n int
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
		for _, v := range violations(p) {
			t.Error(v)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("go list returned %d packages", n)
	}
}

// violations lists the import rules p breaks.
func violations(p pkg) []string {
	var out []string
	from := group(p.ImportPath)
	if _, ok := level[from]; !ok && strings.HasPrefix(from, "internal/") && from != "internal/testutil" && from != "internal/layering" {
		out = append(out, p.ImportPath+" has no layer: add it to level in internal/layering")
	}
	for _, imp := range p.Imports {
		if !strings.HasPrefix(imp, mod) {
			continue
		}
		to := group(imp)
		if to == from {
			continue
		}
		if strings.HasPrefix(to, "internal/testutil") {
			out = append(out, p.ImportPath+" imports "+imp+": test helpers are for tests only")
		}
		if strings.HasPrefix(to, "cmd/") {
			out = append(out, p.ImportPath+" imports the command package "+imp)
		}
		lf, okf := level[from]
		lt, okt := level[to]
		if okf && okt && lt >= lf {
			out = append(out, fmt.Sprintf("%s (level %d) imports %s (level %d): import only lower layers", p.ImportPath, lf, imp, lt))
		}
		for _, f := range forbidden[from] {
			if to == f {
				out = append(out, p.ImportPath+" must not import "+imp)
			}
		}
	}
	return out
}

func TestViolationsDetectsBadImports(t *testing.T) {
	bad := []pkg{
		{mod + "internal/resource", []string{mod + "internal/gateway"}},
		{mod + "internal/gateway", []string{mod + "internal/vault"}},
		{mod + "internal/mcp", []string{mod + "internal/policy"}},
		{mod + "internal/upstream/stdio", []string{mod + "internal/testutil"}},
		{mod + "internal/bridge", []string{mod + "internal/upstream/httpproxy"}},
		{mod + "internal/legacysse", []string{mod + "internal/mcpclient"}},
		{mod + "internal/mcp", []string{mod + "internal/legacysse"}},
	}
	for _, p := range bad {
		if len(violations(p)) == 0 {
			t.Errorf("%s importing %v was not flagged", p.ImportPath, p.Imports)
		}
	}
	good := pkg{mod + "internal/gateway", []string{mod + "internal/resource", mod + "internal/upstream/session", mod + "internal/mcp", "net/http"}}
	if v := violations(good); len(v) != 0 {
		t.Errorf("good imports flagged: %v", v)
	}
}
