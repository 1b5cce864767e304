package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version and commit are stamped by `make release` with
// -ldflags "-X main.version=… -X main.commit=…". A plain `go build` in a
// git checkout leaves them empty and the Go toolchain's own VCS stamp
// (vcs.revision, vcs.modified) names the commit instead.
var (
	version = "dev"
	commit  = ""
)

// buildInfo is what `mcpgate version` prints: version, commit (with
// "+dirty" for a build from a modified tree) and the Go toolchain.
type buildInfo struct {
	Version, Commit, Go string
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, Commit: commit, Go: runtime.Version()}
	if b.Commit != "" {
		return b
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if b.Commit != "" && dirty {
		b.Commit += "+dirty"
	}
	return b
}

func (b buildInfo) String() string {
	c := b.Commit
	if c == "" {
		c = "unknown"
	}
	return fmt.Sprintf("mcpgate %s (commit %s, %s)", b.Version, c, b.Go)
}

func runVersion(_ context.Context, _ []string, e *env) int {
	fmt.Fprintln(e.stdout, readBuildInfo())
	return 0
}
