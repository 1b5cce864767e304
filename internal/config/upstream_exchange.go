package config

import (
	"net/http"
	"net/url"
	"strings"
)

// TokenExchange configures upstream_auth.token_exchange: the gateway
// exchanges each caller's validated access token (RFC 8693 subject_token)
// at an identity provider's token endpoint for a token for the upstream,
// and sends that token upstream — never the caller's own.
type TokenExchange struct {
	// Issuer is the identity provider: its metadata (RFC 8414 / OpenID
	// discovery) names the token endpoint when TokenEndpoint is empty;
	// it is the audience of private_key_jwt client assertions.
	Issuer string `yaml:"issuer"`
	// TokenEndpoint is used as is when set (no discovery).
	TokenEndpoint string `yaml:"token_endpoint"`
	// ClientID is the gateway's client at the identity provider.
	ClientID string `yaml:"client_id"`
	// ClientSecretEnv or ClientSecretFile hold its secret
	// (client_secret_basic, client_secret_post); never inline.
	ClientSecretEnv  string `yaml:"client_secret_env"`
	ClientSecretFile string `yaml:"client_secret_file"`
	// ClientKeyFile is a PEM private key for private_key_jwt (RFC 7523),
	// with ClientKeyID as the assertion's kid.
	ClientKeyFile string `yaml:"client_key_file"`
	ClientKeyID   string `yaml:"client_key_id"`
	// AuthMethod is client_secret_basic (default with a secret),
	// client_secret_post, private_key_jwt (default with a key) or none.
	AuthMethod string `yaml:"auth_method"`
	// Audience and Resource (RFC 8707) name the upstream to the identity
	// provider; at least one is required.
	Audience string `yaml:"audience"`
	Resource string `yaml:"resource"`
	// Scopes to ask for; empty lets the identity provider decide.
	Scopes []string `yaml:"scopes"`
	// RequestedTokenType defaults to
	// urn:ietf:params:oauth:token-type:access_token.
	RequestedTokenType string `yaml:"requested_token_type"`
	// Header carries the exchanged token upstream (default Authorization),
	// prefixed by Scheme and a space (default "Bearer" for Authorization,
	// none for any other header).
	Header string `yaml:"header"`
	Scheme string `yaml:"scheme"`
	// CacheEntries bounds the exchanged tokens kept (default 10000).
	CacheEntries int `yaml:"cache_entries"`
}

// HeaderName is the header the exchanged token is sent in.
func (c *TokenExchange) HeaderName() string {
	if c.Header == "" {
		return "Authorization"
	}
	return http.CanonicalHeaderKey(c.Header)
}

// HeaderScheme is the prefix of the header value ("" for none).
func (c *TokenExchange) HeaderScheme() string {
	if c.Scheme == "" && c.HeaderName() == "Authorization" {
		return "Bearer"
	}
	return c.Scheme
}

// Method is the client authentication method, defaulted.
func (c *TokenExchange) Method() string {
	switch {
	case c.AuthMethod != "":
		return c.AuthMethod
	case c.ClientKeyFile != "":
		return "private_key_jwt"
	case c.ClientSecretEnv != "" || c.ClientSecretFile != "":
		return "client_secret_basic"
	}
	return "none"
}

// tokenExchange checks a TokenExchange; nil is not configured.
func (v *validator) tokenExchange(key string, c *TokenExchange) {
	if c == nil {
		return
	}
	if c.Issuer == "" && c.TokenEndpoint == "" {
		v.add(key, "set issuer (discovery) or token_endpoint: where the gateway exchanges callers' tokens")
	}
	for k, u := range map[string]string{"issuer": c.Issuer, "token_endpoint": c.TokenEndpoint} {
		if u != "" {
			v.secureURL(key+"."+k, u)
		}
	}
	if c.ClientID == "" {
		v.add(key+".client_id", "required: the gateway's client at the identity provider")
	}
	v.exchangeClientAuth(key, c)
	if c.Audience == "" && c.Resource == "" {
		v.add(key, "set audience or resource: the upstream the exchanged token is for")
	}
	if c.Resource != "" {
		if u, err := url.Parse(c.Resource); err != nil || !u.IsAbs() || u.Fragment != "" {
			v.add(key+".resource", "%q must be an absolute URI without fragment (RFC 8707)", c.Resource)
		}
	}
	if t := c.RequestedTokenType; t != "" && t != "urn:ietf:params:oauth:token-type:access_token" && t != "urn:ietf:params:oauth:token-type:jwt" {
		v.add(key+".requested_token_type", "%q: use urn:ietf:params:oauth:token-type:access_token or urn:ietf:params:oauth:token-type:jwt (a token the upstream accepts in a header)", t)
	}
	if c.Header != "" && !validHeaderName(c.Header) {
		v.add(key+".header", "%q is not a valid header name", c.Header)
	}
	if strings.ContainsAny(c.Scheme, " \t\r\n") {
		v.add(key+".scheme", "%q must be one word, e.g. Bearer", c.Scheme)
	}
	if c.CacheEntries < 0 {
		v.add(key+".cache_entries", "must be positive (default 10000)")
	}
}

// exchangeClientAuth checks the client authentication of c.
func (v *validator) exchangeClientAuth(key string, c *TokenExchange) {
	if c.ClientSecretEnv != "" && c.ClientSecretFile != "" {
		v.add(key, "set client_secret_env or client_secret_file, not both")
	}
	hasSecret := c.ClientSecretEnv != "" || c.ClientSecretFile != ""
	switch c.Method() {
	case "client_secret_basic", "client_secret_post":
		if !hasSecret {
			v.add(key, "%s needs client_secret_env or client_secret_file", c.Method())
		}
	case "private_key_jwt":
		if c.ClientKeyFile == "" {
			v.add(key+".client_key_file", "private_key_jwt needs a PEM private key file")
		}
		if c.Issuer == "" {
			v.add(key+".issuer", "private_key_jwt needs the issuer: it is the audience of the client assertion")
		}
	case "none":
		if hasSecret || c.ClientKeyFile != "" {
			v.add(key+".auth_method", "none sends no secret or key: drop them or choose another method")
		}
	default:
		v.add(key+".auth_method", "%q: use client_secret_basic, client_secret_post, private_key_jwt or none", c.AuthMethod)
	}
}

func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}
