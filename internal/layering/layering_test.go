package layering

import (
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const mod = "github.com/mcpgate/mcpgate/"

// level of every internal package, subpackages included: a package may import
// only packages of a strictly lower level (or, within its own tree, under the
// tree rule below). Roles sit at 4, building blocks at 3, the shared wire
// clients (built from primitives, used by blocks of both halves) at 2,
// primitives at 1. A package missing from this map fails the test: a new
// package must choose its layer here.
var level = map[string]int{
	"internal/gateway": 4, "internal/bridge": 4, "internal/broker": 4, "internal/authserver": 4, "internal/demo": 4,

	"internal/resource": 3, "internal/policy": 3, "internal/oauth": 3, "internal/vault": 3, "internal/mcpclient": 3,
	"internal/upstream": 3, "internal/upstream/httpproxy": 3, "internal/upstream/legacy": 3,
	"internal/upstream/session": 3, "internal/upstream/stdio": 3,

	"internal/legacysse": 2,
	"internal/state":     2,

	"internal/mcp": 1, "internal/origin": 1, "internal/termsafe": 1, "internal/dpop": 1, "internal/config": 1,
	"internal/telemetry": 1, "internal/p256": 1, "internal/auditlog": 1, "internal/privfile": 1,
}

// unlayered internal packages: no layer because no production code may
// import them (testutil) or they have no code (layering).
var unlayered = map[string]bool{"internal/testutil": true, "internal/layering": true}

// forbidden lists imports excluded beyond the level rule, by tree (a package
// and its subpackages): internal/bridge must not import internal/upstream or
// any of its subpackages.
var forbidden = map[string][]string{
	"internal/gateway":   {"internal/vault", "internal/mcpclient"},
	"internal/bridge":    {"internal/upstream", "internal/resource"},
	"internal/broker":    {"internal/upstream", "internal/resource"},
	"internal/resource":  {"internal/oauth", "internal/vault"},
	"internal/oauth":     {"internal/resource", "internal/upstream"},
	"internal/vault":     {"internal/resource", "internal/upstream"},
	"internal/mcpclient": {"internal/resource", "internal/upstream"},
}

// The tree rule, inside one package tree (internal/upstream and its
// subpackages): a subpackage may import its parent, which holds the contract
// they share (upstream.Conn, Dialer, Filter); the parent imports none of its
// subpackages; sibling subpackages (one per transport) do not import each
// other unless siblingAllowed lists the pair, importer first. Today no pair
// is listed: each transport depends only on the contract.
var siblingAllowed = map[[2]string]bool{}

// tree is the top-level internal package p belongs to ("internal/upstream"
// for "internal/upstream/stdio"), or p itself outside internal/.
func tree(p string) string {
	if !strings.HasPrefix(p, "internal/") {
		return p
	}
	parts := strings.SplitN(p, "/", 3)
	if len(parts) < 2 {
		return p
	}
	return parts[0] + "/" + parts[1]
}

type pkg struct {
	ImportPath string
	Imports    []string
}

func TestLayering(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) < 5 {
		t.Fatalf("go list returned %d packages", len(pkgs))
	}
	for _, v := range check(pkgs) {
		t.Error(v)
	}
}

// listPackages returns the module's packages and their imports from go list.
func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json", mod+"...")
	cmd.Dir = "../.."
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	return pkgs
}

// check lists the import rules broken in the import graph pkgs.
func check(pkgs []pkg) []string {
	var out []string
	for _, p := range pkgs {
		out = append(out, violations(p)...)
	}
	return out
}

// violations lists the import rules p breaks.
func violations(p pkg) []string {
	from := strings.TrimPrefix(p.ImportPath, mod)
	out := unlisted(p.ImportPath, from)
	for _, imp := range p.Imports {
		if !strings.HasPrefix(imp, mod) {
			continue
		}
		to := strings.TrimPrefix(imp, mod)
		if to == from {
			continue
		}
		if tree(to) == "internal/testutil" {
			out = append(out, p.ImportPath+" imports "+imp+": test helpers are for tests only")
		}
		if strings.HasPrefix(to, "cmd/") {
			out = append(out, p.ImportPath+" imports the command package "+imp)
		}
		if tree(from) == tree(to) && strings.HasPrefix(from, "internal/") {
			out = append(out, treeRule(p.ImportPath, imp, from, to)...)
			continue
		}
		out = append(out, levelRule(p.ImportPath, imp, from, to)...)
		for _, f := range forbidden[tree(from)] {
			if tree(to) == f {
				out = append(out, p.ImportPath+" must not import "+imp)
			}
		}
	}
	return out
}

// unlisted reports an internal package that has no layer.
func unlisted(path, from string) []string {
	if !strings.HasPrefix(from, "internal/") || unlayered[from] {
		return nil
	}
	if _, ok := level[from]; ok {
		return nil
	}
	return []string{path + " has no layer: add it to level in internal/layering (and to docs/architecture.md)"}
}

// levelRule reports an import of a package at the same or a higher level.
func levelRule(path, imp, from, to string) []string {
	lf, okf := level[from]
	lt, okt := level[to]
	if okf && okt && lt >= lf {
		return []string{fmt.Sprintf("%s (level %d) imports %s (level %d): import only lower layers", path, lf, imp, lt)}
	}
	return nil
}

// treeRule reports an import inside one package tree that the tree rule
// (see siblingAllowed) excludes.
func treeRule(path, imp, from, to string) []string {
	switch {
	case to == tree(to):
		return nil // a subpackage importing its parent
	case from == tree(from):
		return []string{path + " imports its subpackage " + imp + ": the parent holds the contract, its subpackages build on it"}
	case !siblingAllowed[[2]string{from, to}]:
		return []string{path + " imports its sibling " + imp + ": siblings depend only on their parent unless siblingAllowed in internal/layering lists the pair"}
	}
	return nil
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
		{mod + "internal/upstream/session", []string{mod + "internal/gateway"}},
		{mod + "internal/upstream/httpproxy", []string{mod + "internal/upstream/session"}},
		{mod + "internal/upstream", []string{mod + "internal/upstream/stdio"}},
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

// TestCheckFlagsSyntheticGraph feeds the checker a made-up import graph: an
// unlisted package (top-level and a subpackage) and a sibling import must
// each be reported, and the legal parts of the graph must not.
func TestCheckFlagsSyntheticGraph(t *testing.T) {
	graph := []pkg{
		{mod + "internal/x", []string{mod + "internal/gateway"}},
		{mod + "internal/upstream/newtransport", []string{mod + "internal/upstream", mod + "internal/mcp"}},
		{mod + "internal/upstream/httpproxy", []string{mod + "internal/upstream", mod + "internal/upstream/session", mod + "internal/mcp"}},
		{mod + "internal/upstream/session", []string{mod + "internal/upstream", mod + "internal/mcp"}},
		{mod + "internal/gateway", []string{mod + "internal/upstream/session", mod + "internal/upstream/httpproxy"}},
		{mod + "internal/testutil", []string{mod + "internal/mcp"}},
		{mod + "cmd/mcpgate", []string{mod + "internal/gateway", mod + "internal/x"}},
	}
	got := check(graph)
	want := []string{
		mod + "internal/upstream/httpproxy imports its sibling " + mod + "internal/upstream/session",
		mod + "internal/upstream/newtransport has no layer",
		mod + "internal/x has no layer",
	}
	sort.Strings(got)
	if len(got) != len(want) {
		t.Fatalf("got %d violations, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("violation %d = %q, want prefix %q", i, got[i], want[i])
		}
	}
}

// TestCheckSiblingAllowed shows that listing a pair in siblingAllowed is the
// one way to let a subpackage import its sibling.
func TestCheckSiblingAllowed(t *testing.T) {
	p := pkg{mod + "internal/upstream/httpproxy", []string{mod + "internal/upstream/session"}}
	if len(check([]pkg{p})) != 1 {
		t.Fatal("sibling import not flagged")
	}
	siblingAllowed[[2]string{"internal/upstream/httpproxy", "internal/upstream/session"}] = true
	defer delete(siblingAllowed, [2]string{"internal/upstream/httpproxy", "internal/upstream/session"})
	if v := check([]pkg{p}); len(v) != 0 {
		t.Fatalf("allowed sibling import flagged: %v", v)
	}
}
