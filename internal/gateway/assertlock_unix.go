//go:build unix

package gateway

import (
	"os"
	"syscall"
)

// lockKeyFile takes an exclusive flock on path (created 0600), so that
// replicas sharing a key file rotate it one at a time. It blocks: the
// holder only reads, maybe writes, a small file.
func lockKeyFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}
