//go:build !linux

package bridge

// dropCodePages is Linux-only (trim_linux.go).
func dropCodePages() {}
