package privfile

import (
	"os"
	"path/filepath"
	"testing"
)

// TestReplace: the new content is readable at path with mode 0600 even
// when the old file was world-readable, and no temporary file is left.
func TestReplace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Replace(path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	fi, _ := os.Stat(path)
	if err != nil || string(b) != "new" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%q %v %v", b, err, fi.Mode())
	}
	if es, _ := os.ReadDir(dir); len(es) != 1 {
		t.Fatalf("left behind: %v", es)
	}
	if err := Replace(filepath.Join(dir, "missing", "x"), []byte("x")); err == nil {
		t.Fatal("a missing directory was accepted")
	}
}
