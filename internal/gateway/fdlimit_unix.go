//go:build unix

package gateway

import "syscall"

// openFileLimit is the process's RLIMIT_NOFILE soft limit (Go raises it
// to the hard limit at start); 0 when unknown.
func openFileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Cur
}
