//go:build linux

package bridge

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// dropCodePages removes the executable's read-only pages (code, constants,
// tables) from the process's resident set when the bridge goes idle. They
// are clean copies of the file: the kernel maps them back from the page
// cache on the next access, and meanwhile they do not count against the
// process. Most of an idle bridge's resident set is such pages: the binary
// carries every role of mcpgate, and the kernel maps pages around each one
// touched at start-up. Writable mappings are never touched (their pages may
// hold the program's data).
func dropCodePages() {
	exe, err := os.Executable()
	if err != nil {
		return
	}
	if p, err := filepath.EvalSymlinks(exe); err == nil {
		exe = p
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(maps), "\n") {
		// start-end perms offset dev inode path
		f := strings.Fields(line)
		if len(f) < 6 || f[5] != exe || strings.ContainsRune(f[1], 'w') {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), syscall.MADV_DONTNEED)
	}
}
