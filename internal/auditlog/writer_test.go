package auditlog

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

func TestRestartContinuesTheChain(t *testing.T) {
	dir := t.TempDir()
	path := writeLog(t, dir, 3, Options{})
	writeLog(t, dir, 3, Options{Path: path})
	lines := readLines(t, path)
	if len(lines) != 10 || !strings.Contains(lines[5], `"kind":"restart"`) || !strings.Contains(lines[5], `"clean":true`) {
		t.Fatalf("lines:\n%s", strings.Join(lines, ""))
	}
	res, err := Verify([]string{path}, VerifyOptions{})
	if err != nil || res.Records != 10 {
		t.Fatalf("res %+v err %v", res, err)
	}
}

func TestRestartAfterCrashAcknowledgesTornLine(t *testing.T) {
	dir := t.TempDir()
	path := writeLog(t, dir, 3, Options{})
	lines := readLines(t, path)
	// A crash: the stop record was never written and the last write tore.
	lines[len(lines)-1] = `{"time":"2026-12-02T18:00:00Z","request_id":"req-x","ups`
	writeLines(t, path, lines)
	writeLog(t, dir, 2, Options{Path: path})
	got := readLines(t, path)
	restart := got[len(lines)]
	if !strings.Contains(restart, `"kind":"restart"`) || !strings.Contains(restart, `"clean":false`) || !strings.Contains(restart, `"torn_bytes":56`) {
		t.Fatalf("restart record: %s", restart)
	}
	res, err := Verify([]string{path}, VerifyOptions{})
	if err != nil || len(res.TornLines) != 1 || !strings.Contains(res.TornLines[0], fmt.Sprintf("%s:%d", path, len(lines))) {
		t.Fatalf("res %+v err %v", res, err)
	}
	// The acknowledgement names exact bytes: a different torn line fails.
	got[len(lines)-1] = strings.Replace(got[len(lines)-1], "req-x", "req-y", 1)
	writeLines(t, path, got)
	mustBreak(t, []string{path}, VerifyOptions{}, path, len(lines), "altered after the restart")
}

func TestOpenRefusesAnUnchainedOrEditedTail(t *testing.T) {
	dir := t.TempDir()
	legacy := filepath.Join(dir, "legacy.jsonl")
	os.WriteFile(legacy, []byte(`{"decision":"allow"}`+"\n"), 0o600)
	if _, err := Open(Options{Path: legacy}); err == nil || !strings.Contains(err.Error(), "without a hash chain") {
		t.Fatalf("legacy file: %v", err)
	}
	path := writeLog(t, dir, 2, Options{})
	lines := readLines(t, path)
	lines[len(lines)-1] = strings.Replace(lines[len(lines)-1], "stop", "stoP", 1)
	writeLines(t, path, lines)
	if _, err := Open(Options{Path: path}); err == nil || !strings.Contains(err.Error(), "hash does not match") {
		t.Fatalf("edited tail: %v", err)
	}
}

func TestRotationKeepsTheChain(t *testing.T) {
	pub, priv := newKey(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	o := Options{Path: path, RotateBytes: 4 << 10, Key: priv, SignEvery: 50}
	writeLog(t, dir, 40, o)
	writeLog(t, dir, 40, o) // a restart continues in the newest file
	files := rotatedFiles(t, path)
	if len(files) < 3 {
		t.Fatalf("want several files, got %v", files)
	}
	res, err := Verify(files, VerifyOptions{Key: pub})
	if err != nil || res.Records < 84 {
		t.Fatalf("res %+v err %v", res, err)
	}
	for _, f := range files[:len(files)-1] {
		if l := readLines(t, f); !strings.Contains(l[len(l)-1], `"kind":"rotate"`) {
			t.Fatalf("%s does not end with a rotate record", f)
		}
	}
	t.Run("a file left out", func(t *testing.T) {
		dropped := append(files[:1:1], files[2:]...)
		mustBreak(t, dropped, VerifyOptions{Key: pub}, files[2], 1, "missing between the files")
	})
	t.Run("files out of order", func(t *testing.T) {
		swapped := append([]string{files[1], files[0]}, files[2:]...)
		mustBreak(t, swapped, VerifyOptions{Key: pub}, files[1], 1, "chain begins here")
	})
	t.Run("a later file alone", func(t *testing.T) {
		mustBreak(t, files[1:], VerifyOptions{Key: pub}, files[1], 1, "--continued")
		if _, err := Verify(files[1:], VerifyOptions{Key: pub, Continued: true}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestRestartAfterRotationContinuesFromTheRotatedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	writeLog(t, dir, 5, Options{Path: path})
	// An operator (or a crash right after rotating) leaves only the
	// rotated file; the next process must link to it.
	os.Rename(path, path+".20261202T180000.000000000Z")
	writeLog(t, dir, 5, Options{Path: path})
	files := rotatedFiles(t, path)
	if _, err := Verify(files, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

// rotatedFiles lists path's rotated files (oldest first) and path.
func rotatedFiles(t *testing.T, path string) []string {
	t.Helper()
	names, _ := filepath.Glob(path + ".*")
	sort.Strings(names)
	return append(names, path)
}

func TestConcurrentWritersKeepOneChain(t *testing.T) {
	pub, priv := newKey(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	w, err := Open(Options{Path: path, Key: priv, SignEvery: 16, RotateBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, each = 16, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				fmt.Fprintf(w, `{"request_id":"g%d-%d","decision":"allow"}`, g, i)
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			_ = w.Checkpoint()
		}
	})
	wg.Wait()
	w.Close()
	res, err := Verify(rotatedFiles(t, path), VerifyOptions{Key: pub})
	if err != nil {
		t.Fatal(err)
	}
	if data := res.Records - goroutines*each; data < 2 {
		t.Fatalf("records %d", res.Records)
	}
}

func TestWriteRejectsNonObjects(t *testing.T) {
	w, err := Open(Options{Stream: &strings.Builder{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{"", "x", "{}\n{}", "[1]"} {
		if _, err := w.Write([]byte(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.key")
	id, err := GenerateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateKey(path); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("overwrote a key: %v", err)
	}
	priv, err := LoadPrivateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadPublicKey(path + ".pub")
	if err != nil || KeyID(pub) != id || !pub.Equal(priv.Public()) {
		t.Fatalf("pub %v err %v", pub, err)
	}
	if _, err := LoadPublicKey(path); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Fatalf("private key as public: %v", err)
	}
	os.Chmod(path, 0o640)
	if _, err := LoadPrivateKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable key accepted: %v", err)
	}
}

// A record larger than one read window (a caller's huge tool name) must
// not stop the next start from finding the chain.
func TestRestartAfterAHugeRecord(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	w, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, `{"name":"%s"}`, strings.Repeat("x", 3<<20))
	// No Close: the huge record is the last line when the next start
	// reads the tail (a crash).
	writeLog(t, dir, 1, Options{Path: path})
	if res, err := Verify([]string{path}, VerifyOptions{}); err != nil || res.Records != 5 {
		t.Fatalf("res %+v err %v", res, err)
	}
}
