package config

// TokenExchange configures upstream_auth.token_exchange: RFC 8693 token exchange per caller (issue 15, part 2).
// Not implemented yet: config validation refuses it.
type TokenExchange struct{}

// tokenExchange checks a TokenExchange; nil is not configured.
func (v *validator) tokenExchange(key string, c *TokenExchange) {
	if c != nil {
		v.add(key, "not supported by this version of mcpgate")
	}
}
