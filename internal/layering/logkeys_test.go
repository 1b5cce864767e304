package layering

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// synonyms are log keys that name a concept docs/configuration.md §Log
// fields already names, mapped to that key.
var synonyms = map[string]string{
	"error": "err", "rid": "request_id", "requestid": "request_id", "req_id": "request_id",
	"mount": "upstream", "server": "upstream", "address": "remote", "addr": "remote", "remote_addr": "remote",
	"client_ip": "remote", "ip": "remote", "session_id": "session", "sid": "session", "http_status": "status",
	"elapsed": "duration", "latency": "duration", "rpc_method": "method",
}

// msgArgs is, for each slog logging method, the index of its first
// key-value argument.
var msgArgs = map[string]int{
	"Debug": 1, "Info": 1, "Warn": 1, "Error": 1, "DebugContext": 2, "InfoContext": 2, "WarnContext": 2,
	"ErrorContext": 2, "Log": 3, "LogAttrs": 3, "With": 0,
	"String": 0, "Int": 0, "Int64": 0, "Uint64": 0, "Float64": 0, "Bool": 0, "Time": 0, "Duration": 0, "Any": 0, "Group": 0,
}

// logKeys returns the string-literal keys of the logging calls in src
// with their positions. It reads syntax only, so it also sees calls that
// are not slog's (http.Error): keys with anything but lower case letters
// and underscores are skipped, and only synonyms are reported.
func logKeys(fset *token.FileSet, f *ast.File) map[string][]token.Position {
	keys := map[string][]token.Position{}
	ast.Inspect(f, func(n ast.Node) bool {
		c, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := c.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		first, ok := msgArgs[sel.Sel.Name]
		if !ok {
			return true
		}
		attr := first == 0 && sel.Sel.Name != "With"
		for i := first; i < len(c.Args); i++ {
			bl, ok := c.Args[i].(*ast.BasicLit)
			if ok && bl.Kind == token.STRING {
				if k, err := strconv.Unquote(bl.Value); err == nil && strings.Trim(k, "abcdefghijklmnopqrstuvwxyz_") == "" {
					keys[k] = append(keys[k], fset.Position(bl.Pos()))
				}
				i++ // its value
			}
			if attr {
				break
			}
		}
		return true
	})
	return keys
}

// TestLogKeysHaveOneName fails on a log key that is a synonym of a
// documented one (docs/configuration.md §Log fields).
func TestLogKeysHaveOneName(t *testing.T) {
	var files int
	err := filepath.WalkDir("../..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && p != "../.." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		files++
		for k, at := range logKeys(fset, f) {
			if want, bad := synonyms[k]; bad {
				for _, pos := range at {
					t.Errorf("%s: log key %q: use %q (docs/configuration.md §Log fields)", pos, k, want)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("read %d Go files", files)
	}
}

// TestLogKeysFindsSynonyms feeds logKeys a made-up file: every form of
// logging call must yield its keys.
func TestLogKeysFindsSynonyms(t *testing.T) {
	const src = `package x
func f() {
	log.Warn("m", "error", err, "upstream", u)
	log.InfoContext(ctx, "m", "rid", id)
	log.With("mount", m).Info("m")
	log.LogAttrs(ctx, slog.LevelDebug, "m", slog.String("address", a), slog.Int("status", 1))
	http.Error(w, "not a key", 400)
}`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	keys := logKeys(fset, f)
	for _, k := range []string{"error", "upstream", "rid", "mount", "address", "status"} {
		if len(keys[k]) != 1 {
			t.Errorf("key %q found %d times, want 1", k, len(keys[k]))
		}
	}
	if len(keys) != 6 {
		t.Errorf("found keys %v, want exactly the six above", keys)
	}
}
