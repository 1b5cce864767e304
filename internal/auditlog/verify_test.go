package auditlog

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Lines of a writeLog(…, 10, …) file: 1 start, 2–11 records, 12 stop.
func TestVerifyIntact(t *testing.T) {
	path := writeLog(t, t.TempDir(), 10, Options{})
	res, err := Verify([]string{path}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 12 || res.FirstSeq != 1 || res.Signatures != 0 {
		t.Fatalf("result %+v", res)
	}
}

func TestVerifyTampering(t *testing.T) {
	cases := []struct {
		name   string
		change func([]string) []string
		line   int
		want   string
	}{
		{"edit one record", func(l []string) []string {
			l[4] = strings.Replace(l[4], `"decision":"allow"`, `"decision":"deny"`, 1)
			return l
		}, 5, "hash does not match its content"},
		{"edit and recompute its hash", func(l []string) []string {
			l[4] = rehash(t, l[4], `"allow"`, `"deny"`)
			return l
		}, 6, "prev does not match the hash"},
		{"delete one record", func(l []string) []string { return append(l[:4:4], l[5:]...) }, 5, "1 record (seq 5) missing"},
		{"reorder two records", func(l []string) []string { l[4], l[5] = l[5], l[4]; return l }, 5, "missing"},
		{"insert a copy of a record", func(l []string) []string {
			return append(l[:6:6], append([]string{l[2]}, l[6:]...)...)
		}, 7, "reordered, duplicated or inserted"},
		{"insert a forged, correctly linked record", func(l []string) []string {
			return append(l[:6:6], append([]string{forgeAfter(t, l[5])}, l[6:]...)...)
		}, 7, "this record was inserted"},
		{"delete the first record", func(l []string) []string { return l[1:] }, 1, "the chain begins here at seq 2"},
		{"a line of plain JSON", func(l []string) []string {
			return append(l[:3:3], append([]string{`{"decision":"allow"}` + "\n"}, l[3:]...)...)
		}, 4, "no hash chain fields"},
		{"torn last line", func(l []string) []string { l[11] = l[11][:40]; return l }, 12, "torn"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeLog(t, t.TempDir(), 10, Options{})
			lines := readLines(t, path)
			if len(lines) != 12 {
				t.Fatalf("%d lines", len(lines))
			}
			writeLines(t, path, c.change(lines))
			be := mustBreak(t, []string{path}, VerifyOptions{}, path, c.line, c.want)
			t.Log(be)
		})
	}
}

// rehash edits a line's payload and recomputes its hash, as an attacker
// without a key can.
func rehash(t *testing.T, line, old, repl string) string {
	t.Helper()
	p, err := parseLine([]byte(strings.TrimSuffix(line, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	body := line[:strings.LastIndex(line, `,"seq":`)] + "}"
	out, _ := seal(nil, []byte(strings.Replace(body, old, repl, 1)), p.Seq, &p.prev, nil)
	return string(out)
}

// rehashKeepSig edits a signed line's payload, keeps its signature and
// recomputes its hash.
func rehashKeepSig(line, old, repl string) string {
	line = strings.TrimSuffix(line, "\n")
	body := []byte(strings.Replace(line[:len(line)-hashTail], old, repl, 1))
	h := sha256.Sum256(body)
	return string(body) + hashMarker + hex.EncodeToString(h[:]) + "\"}\n"
}

// forgeAfter builds a valid record that links to line (an attacker's
// inserted record).
func forgeAfter(t *testing.T, line string) string {
	t.Helper()
	p, err := parseLine([]byte(strings.TrimSuffix(line, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := seal(nil, []byte(`{"request_id":"forged","decision":"allow"}`), p.Seq+1, &p.hash, nil)
	return string(out)
}

func TestVerifySignatures(t *testing.T) {
	pub, priv := newKey(t)
	other, _ := newKey(t)
	path := writeLog(t, t.TempDir(), 25, Options{Key: priv, SignEvery: 10})
	res, err := Verify([]string{path}, VerifyOptions{Key: pub})
	if err != nil {
		t.Fatal(err)
	}
	// start, records 10 and 20 (seq 10, 20 count the start), stop.
	if res.Records != 27 || res.Signatures < 4 || res.UnsignedTail != 0 {
		t.Fatalf("result %+v", res)
	}
	mustBreak(t, []string{path}, VerifyOptions{Key: other}, path, 1, "not by the given key")

	t.Run("forged signature", func(t *testing.T) {
		lines := readLines(t, path)
		// Alter a signed record and recompute its hash, keeping the old
		// signature: the signature no longer matches.
		i := signedLine(t, lines, 2)
		lines[i] = rehashKeepSig(lines[i], `"allow"`, `"deny"`)
		writeLines(t, path+".forged", lines)
		mustBreak(t, []string{path + ".forged"}, VerifyOptions{Key: pub}, path+".forged", i+1, "signature does not verify")
	})
	t.Run("rewritten without the key", func(t *testing.T) {
		// An attacker rebuilds the whole chain without signatures.
		lines := readLines(t, path)
		var prev [32]byte
		var out []string
		for i, l := range lines {
			body := strings.TrimSuffix(l, "\n")
			cut := strings.LastIndex(body, `,"seq":`)
			line, h := seal(nil, []byte(body[:cut]+"}"), uint64(i+1), &prev, nil)
			prev = h
			out = append(out, string(line))
		}
		writeLines(t, path+".unsigned", out)
		if _, err := Verify([]string{path + ".unsigned"}, VerifyOptions{}); err != nil {
			t.Fatalf("the rebuilt chain should be intact without a key: %v", err)
		}
		mustBreak(t, []string{path + ".unsigned"}, VerifyOptions{Key: pub}, path+".unsigned", 27, "no record is signed")
	})
	t.Run("forged records appended after the last signature", func(t *testing.T) {
		lines := readLines(t, path)
		for range 12 {
			lines = append(lines, forgeAfter(t, lines[len(lines)-1]))
		}
		writeLines(t, path+".appended", lines)
		mustBreak(t, []string{path + ".appended"}, VerifyOptions{Key: pub}, path+".appended", 27+10, "signed policy signs every 10")
	})
}

// signedLine is the index of the n-th signed line.
func signedLine(t *testing.T, lines []string, n int) int {
	for i, l := range lines {
		if strings.Contains(l, sigMarker) {
			if n--; n == 0 {
				return i
			}
		}
	}
	t.Fatal("not enough signed lines")
	return 0
}

func TestVerifyUnsignedTailReported(t *testing.T) {
	pub, priv := newKey(t)
	path := filepath.Join(t.TempDir(), "a.jsonl")
	w, err := Open(Options{Path: path, Key: priv, SignEvery: 100, SignInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		fmt.Fprintf(w, `{"request_id":"r%d"}`, i)
	}
	// No Close: the process is still running; 5 records are unsigned.
	res, err := Verify([]string{path}, VerifyOptions{Key: pub})
	if err != nil || res.UnsignedTail != 5 || res.Signatures != 1 {
		t.Fatalf("res %+v err %v", res, err)
	}
	if err := w.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if res, err = Verify([]string{path}, VerifyOptions{Key: pub}); err != nil || res.UnsignedTail != 0 || res.Signatures != 2 {
		t.Fatalf("after checkpoint: res %+v err %v", res, err)
	}
	w.Close()
}

func TestVerifyNoRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(path, nil, 0o600)
	if _, err := Verify([]string{path}, VerifyOptions{}); err == nil {
		t.Fatal("an empty log verified")
	}
	var be *BreakError
	if _, err := Verify([]string{filepath.Join(t.TempDir(), "missing")}, VerifyOptions{}); err == nil || errors.As(err, &be) {
		t.Fatalf("a missing file: %v", err)
	}
}
