//go:build unix

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/mcpgate/mcpgate/internal/vault"
)

// detachBroker re-runs the broker in a new session with its output in a
// log file, writes the pid file, and returns once the child is up.
func detachBroker(e *env, args []string, pidFile, logFile string) int {
	dir, err := vault.Dir(e.getenv)
	if err != nil {
		return fail(e, "broker", err)
	}
	if pidFile == "" {
		pidFile = filepath.Join(dir, "broker.pid")
	}
	if logFile == "" {
		logFile = filepath.Join(dir, "broker.log")
	}
	if err := os.MkdirAll(filepath.Dir(logFile), 0o700); err != nil {
		return fail(e, "broker", err)
	}
	lf, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fail(e, "broker", fmt.Errorf("--log-file: %w", err))
	}
	defer lf.Close()
	self, err := os.Executable()
	if err != nil {
		return fail(e, "broker", err)
	}
	childArgs := slices.DeleteFunc(slices.Clone(args), func(a string) bool { return a == "--detach" || a == "-detach" || a == "--detach=true" })
	cmd := exec.Command(self, append([]string{"broker"}, childArgs...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fail(e, "broker", err)
	}
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		cmd.Process.Kill()
		return fail(e, "broker", fmt.Errorf("--pid-file: %w", err))
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		os.Remove(pidFile)
		return fail(e, "broker", fmt.Errorf("the background broker exited at once (%v); see %s", err, logFile))
	case <-time.After(700 * time.Millisecond):
	}
	fmt.Fprintf(e.stdout, "mcpgate broker running in the background: pid %d (%s), log %s\n", cmd.Process.Pid, pidFile, logFile)
	_ = cmd.Process.Release()
	return 0
}
