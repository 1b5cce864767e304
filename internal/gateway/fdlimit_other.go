//go:build !unix

package gateway

// openFileLimit is unknown on this platform: the configured caps apply.
func openFileLimit() uint64 { return 0 }
