package main

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
)

var initLine = regexp.MustCompile(`(?m)^init (\S+) @[0-9.]+ ms, [0-9.]+ ms clock, (\d+) bytes`)

// TestStartupInitIsCheap: every start of the binary — `mcpgate connect`
// launched by an AI client, `mcpgate call` in a script — pays the package
// initializers of everything linked in. None may do real work there: an
// argon2id hash in a package variable of the authorization server once made
// every start allocate 64 MiB and take 200 ms. The test binary links the
// same packages; GODEBUG=inittrace reports the bytes each init allocated
// (a count, not a timing).
func TestStartupInitIsCheap(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	lines := initLine.FindAllStringSubmatch(string(out), -1)
	if len(lines) < 20 {
		t.Fatalf("inittrace printed %d init lines:\n%s", len(lines), out)
	}
	for _, m := range lines {
		n, _ := strconv.Atoi(m[2])
		if n > 4<<20 { // the race detector inflates counts (prometheus: 64 KiB plain, 1.2 MiB with -race)
			t.Errorf("package %s allocates %d bytes when the binary starts; do that work on first use", m[1], n)
		}
	}
}
