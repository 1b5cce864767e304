package config

// UpstreamOAuth configures upstream_auth.oauth: a connected account per user (issue 15, part 1).
// Not implemented yet: config validation refuses it.
type UpstreamOAuth struct{}

// upstreamOAuth checks a UpstreamOAuth; nil is not configured.
func (v *validator) upstreamOAuth(key string, c *UpstreamOAuth) {
	if c != nil {
		v.add(key, "not supported by this version of mcpgate")
	}
}
