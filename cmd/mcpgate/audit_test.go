package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/auditlog"
)

// TestAuditVerifyCommand drives keygen and verify as an operator would:
// ok with the right key, exit 1 naming the line on an edit or another
// key, exit 2 on usage errors.
func TestAuditVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "audit.key")
	if code, out, errs := run(t, "audit", "keygen", "--out", key); code != 0 || !strings.Contains(out, "key id") {
		t.Fatalf("keygen: %d %s %s", code, out, errs)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	priv, err := auditlog.LoadPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "audit.jsonl")
	w, err := auditlog.Open(auditlog.Options{Path: log, Key: priv, SignEvery: 4})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 9 {
		fmt.Fprintf(w, `{"request_id":"r%d","decision":"allow"}`, i)
	}
	w.Close()

	code, out, errs := run(t, "audit", "verify", log, "--key", key+".pub")
	if code != 0 || !strings.HasPrefix(out, "ok: 11 records, chain intact, 4 signatures verified\n") {
		t.Fatalf("verify: %d %q %s", code, out, errs)
	}
	if code, out, _ := run(t, "audit", "verify", log); code != 0 || !strings.Contains(out, "4 signatures not checked") {
		t.Fatalf("verify without key: %d %q", code, out)
	}

	other := filepath.Join(dir, "other.key")
	run(t, "audit", "keygen", "--out", other)
	if code, _, errs := run(t, "audit", "verify", "--key", other+".pub", log); code != 1 || !strings.Contains(errs, log+":1 (seq 1)") || !strings.Contains(errs, "not by the given key") {
		t.Fatalf("other key: %d %s", code, errs)
	}

	b, _ := os.ReadFile(log)
	lines := strings.SplitAfter(string(b), "\n")
	lines[3] = strings.Replace(lines[3], `"r2"`, `"r9\u001b[2J\nok: 11 records, chain intact"`, 1)
	os.WriteFile(log, []byte(strings.Join(lines, "")), 0o600)
	code, _, errs = run(t, "audit", "verify", "--key", key+".pub", log)
	if code != 1 || !strings.Contains(errs, "FAILED: "+log+":4: ") || !strings.Contains(errs, "edited") {
		t.Fatalf("edited: %d %s", code, errs)
	}

	for _, args := range [][]string{{"audit"}, {"audit", "verify"}, {"audit", "frob"}, {"audit", "keygen"}, {"audit", "verify", "--key", key, log}, {"audit", "keygen", "--out", key}} {
		if code, _, errs := run(t, args...); code != 2 || errs == "" {
			t.Errorf("%v: exit %d %q", args, code, errs)
		}
	}
}
