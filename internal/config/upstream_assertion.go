package config

// IdentityAssertion configures upstream_auth.identity_assertion: a JWT the gateway signs per caller (issue 15, part 3).
// Not implemented yet: config validation refuses it.
type IdentityAssertion struct{}

// identityAssertion checks a IdentityAssertion; nil is not configured.
func (v *validator) identityAssertion(key string, c *IdentityAssertion) {
	if c != nil {
		v.add(key, "not supported by this version of mcpgate")
	}
}
