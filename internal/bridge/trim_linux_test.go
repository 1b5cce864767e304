//go:build linux

package bridge

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// marker lives in the binary's writable data; dropping pages must never
// touch such mappings, or a value set at run time would fall back to the
// file's.
var marker = 7

func rssFileKB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "RssFile:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

func TestDropCodePagesKeepsDataAndShrinksResidentSet(t *testing.T) {
	marker = 42
	before := rssFileKB(t)
	dropCodePages()
	after := rssFileKB(t)
	if marker != 42 {
		t.Fatalf("a writable mapping was dropped: marker is %d", marker)
	}
	if after >= before {
		t.Fatalf("file-backed resident set %d KiB before, %d KiB after", before, after)
	}
	t.Logf("file-backed resident set: %d KiB → %d KiB", before, after)
}
