package mcp

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The text these tests hold the code to (2026-07-28 basic/index §Error
// Codes, modelcontextprotocol/modelcontextprotocol at b0f60ba, 2026-08-22):
//
//	"-32020 to -32099 — reserved for the MCP specification. [...]
//	Implementations MUST NOT emit any code from this sub-range that is not
//	defined by this specification and MUST use defined codes only with
//	their specified meanings."
//	"-32000 to -32019 — legacy. [...] New codes MUST NOT be allocated in
//	this sub-range, and new implementations SHOULD NOT use codes from this
//	sub-range at all."
//	"New error codes for purposes not defined by this specification SHOULD
//	be allocated outside the JSON-RPC reserved range (-32768 to -32000)"
//
// The defined codes are -32020 HeaderMismatch, -32021
// MissingRequiredClientCapability, -32022 UnsupportedProtocolVersion;
// -32042 (URL elicitation required) is defined by 2025-11-25 only.
var specDefined = map[int]bool{-32020: true, -32021: true, -32022: true}

// reservedUndefined reports a code in -32020…-32099 that the 2026-07-28
// specification does not define (-32042 is a 2025-11-25 code, checked by
// era in the behavioural tests of the gateway).
func reservedUndefined(c int) bool {
	return c <= -32020 && c >= -32099 && !specDefined[c] && c != -32042
}

func legacyRange(c int) bool { return c <= -32000 && c >= -32019 }

// TestNoUndefinedReservedCodeInSource scans every non-test Go file of the
// module for integer literals and "code":N string literals in the JSON-RPC
// server-error range: a code the specification does not define in
// -32020…-32099 fails it anywhere (mcpgate emitted -32029 and -32050), and
// a legacy-range code anywhere but in errors.go, where only CodeFor hands
// them to 2025-era peers.
func TestNoUndefinedReservedCodeInSource(t *testing.T) {
	root := filepath.Join("..", "..")
	codeInString := regexp.MustCompile(`"code"\s*:\s*(-\d+)`)
	fset := token.NewFileSet()
	var files int
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "node_modules", ".git", "testdata":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		if strings.HasPrefix(rel, "e2e"+string(filepath.Separator)) {
			return nil // test code only
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
		if err != nil {
			return err
		}
		files++
		check := func(pos token.Pos, c int) {
			where := fset.Position(pos)
			switch {
			case reservedUndefined(c):
				t.Errorf("%s:%d: code %d is in the range reserved for the MCP specification, which does not define it", rel, where.Line, c)
			case legacyRange(c) && rel != filepath.Join("internal", "mcp", "errors.go"):
				t.Errorf("%s:%d: legacy-range code %d outside mcp.CodeFor", rel, where.Line, c)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.UnaryExpr:
				if lit, ok := n.X.(*ast.BasicLit); ok && n.Op == token.SUB && lit.Kind == token.INT {
					if v, err := strconv.Atoi(strings.ReplaceAll(lit.Value, "_", "")); err == nil {
						check(n.Pos(), -v)
					}
				}
			case *ast.BasicLit:
				if n.Kind == token.STRING {
					for _, m := range codeInString.FindAllStringSubmatch(n.Value, -1) {
						v, _ := strconv.Atoi(m[1])
						check(n.Pos(), v)
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("scanned only %d files: is the module root %s?", files, root)
	}
}

// TestCodeForEveryEra: what mcpgate's codes become for each era. The
// 2026-07-28 era never gets a legacy-range code, no era ever gets an
// undefined reserved one, and the application codes are outside the
// JSON-RPC reserved range.
func TestCodeForEveryEra(t *testing.T) {
	own := map[string]int{
		"CodeUnauthorized": CodeUnauthorized, "CodeForbidden": CodeForbidden, "CodeRateLimited": CodeRateLimited,
		"CodeUpstream": CodeUpstream, "CodeUnavailable": CodeUnavailable, "CodeUpstreamTimeout": CodeUpstreamTimeout,
	}
	all := map[string]int{
		"CodeParseError": CodeParseError, "CodeInvalidRequest": CodeInvalidRequest, "CodeMethodNotFound": CodeMethodNotFound,
		"CodeInvalidParams": CodeInvalidParams, "CodeInternalError": CodeInternalError, "CodeHeaderMismatch": CodeHeaderMismatch,
		"CodeMissingRequiredClientCapability": CodeMissingRequiredClientCapability, "CodeUnsupportedProtocolVersion": CodeUnsupportedProtocolVersion,
	}
	for name, c := range own {
		all[name] = c
		if c >= -32768 && c <= -32000 {
			t.Errorf("%s = %d is inside the JSON-RPC reserved range", name, c)
		}
	}
	for status := 0; status < 1000; status++ {
		if c := AppCode(status); c >= -32768 && c <= -32000 {
			t.Errorf("AppCode(%d) = %d is inside the JSON-RPC reserved range", status, c)
		}
	}
	for _, era := range []Era{EraUnknown, EraLegacySSE, EraSession, EraStateless} {
		for name, c := range all {
			got := CodeFor(era, c)
			if reservedUndefined(got) || got == -32042 {
				t.Errorf("%v: %s → %d, a reserved code the specification does not define", era, name, got)
			}
			if era == EraStateless && legacyRange(got) {
				t.Errorf("2026-07-28: %s → %d, a legacy-range code", name, got)
			}
		}
	}
	// 2025-era clients keep the legacy codes mcpgate always sent them.
	if CodeFor(EraSession, CodeUnauthorized) != -32001 || CodeFor(EraSession, CodeForbidden) != -32003 ||
		CodeFor(EraLegacySSE, CodeUnauthorized) != -32001 {
		t.Error("2025-era authentication/authorization codes changed")
	}
	if CodeFor(EraStateless, CodeUnauthorized) != -40100 || CodeFor(EraStateless, CodeForbidden) != -40300 {
		t.Error("2026-07-28 authentication/authorization codes are not the application codes")
	}
	for _, c := range []struct {
		v    string
		want Era
	}{{"", EraSession}, {V20241105, EraSession}, {V20250326, EraSession}, {V20251125, EraSession}, {V20260728, EraStateless}, {"2099-01-01", EraStateless}, {"garbage", EraStateless}} {
		if got := ErrorEra(c.v); got != c.want {
			t.Errorf("ErrorEra(%q) = %v, want %v", c.v, got, c.want)
		}
	}
}
