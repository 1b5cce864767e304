//go:build !unix

package gateway

// lockKeyFile is a no-op where flock is missing: a key file there must
// not be shared by several gateways (docs/upstream-identity.md).
func lockKeyFile(string) (unlock func(), err error) { return func() {}, nil }
