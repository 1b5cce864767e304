package main

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
)

// TestVersionPrintsStamp: `make release` stamps version and commit with
// -ldflags; `mcpgate version` must print both and the Go toolchain, and
// say "unknown" rather than print nothing when a build has no commit.
func TestVersionPrintsStamp(t *testing.T) {
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "v1.2.3", "0123456789abcdef0123456789abcdef01234567"
	var out bytes.Buffer
	if code := runVersion(context.Background(), nil, &env{stdout: &out}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	want := "mcpgate v1.2.3 (commit 0123456789abcdef0123456789abcdef01234567, " + runtime.Version() + ")\n"
	if out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}
	commit = ""
	if s := readBuildInfo().String(); !strings.Contains(s, "v1.2.3") || !strings.Contains(s, "commit ") {
		t.Fatalf("unstamped build: %q", s)
	}
}
