package auditlog

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeLog writes n gateway-like records through a fresh Writer and
// closes it; it returns the file's path.
func writeLog(t *testing.T, dir string, n int, o Options) string {
	t.Helper()
	if o.Path == "" {
		o.Path = filepath.Join(dir, "audit.jsonl")
	}
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := fmt.Fprintf(w, `{"time":"2026-12-02T18:00:00Z","request_id":"req-%d","upstream":"u","decision":"allow"}`+"\n", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return o.Path
}

func newKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.SplitAfter(string(b), "\n")[:strings.Count(string(b), "\n")]
}

func writeLines(t *testing.T, path string, lines []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
}

// mustBreak verifies files and requires a BreakError at line, whose
// message contains want.
func mustBreak(t *testing.T, files []string, o VerifyOptions, file string, line int, want string) *BreakError {
	t.Helper()
	_, err := Verify(files, o)
	var be *BreakError
	if !errors.As(err, &be) {
		t.Fatalf("verify: want a break at %s:%d, got %v", file, line, err)
	}
	if be.File != file || be.Line != line || !strings.Contains(be.Msg, want) {
		t.Fatalf("verify: want a break at %s:%d containing %q, got %v", file, line, want, be)
	}
	return be
}

func fixedClock() func() time.Time {
	t0 := time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)
	n := 0
	return func() time.Time { n++; return t0.Add(time.Duration(n) * time.Millisecond) }
}
