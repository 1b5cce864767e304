//go:build windows

package stdio

import "os/exec"

// Windows has no process groups to signal: the child is killed directly
// (there is no SIGTERM; closing stdin is the polite request).
func setProcessGroup(*exec.Cmd) {}

func terminateGroup(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

func killGroup(cmd *exec.Cmd) { _ = cmd.Process.Kill() }
