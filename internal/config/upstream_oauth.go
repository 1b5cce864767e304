package config

import (
	"net/url"
	"strings"
	"time"
)

// UpstreamOAuth configures upstream_auth.oauth: a connected account per
// user (issue 15, part 1). The gateway is an OAuth client of the
// upstream's authorization server; each user connects their own account
// once, through a connect URL on the gateway, and the upstream then
// receives that user's token — never the caller's own.
type UpstreamOAuth struct {
	// Issuer is the upstream's authorization server. Empty: discovered
	// from the upstream's RFC 9728 protected resource metadata, as
	// `mcpgate call` does; set: that issuer's RFC 8414 / OpenID metadata
	// (and, when the upstream publishes metadata, it must list it).
	Issuer string `yaml:"issuer"`
	// Registration is how the gateway is a client there: "preregistered"
	// (client_id, and a secret for a confidential client), "cimd" (the
	// gateway serves its own Client ID Metadata Document; https public_url
	// only) or "dcr" (RFC 7591). Default: preregistered when client_id is
	// set, else cimd when the server supports it, else dcr.
	Registration string `yaml:"registration"`
	// ClientID of a pre-registered client.
	ClientID string `yaml:"client_id"`
	// ClientSecretEnv or ClientSecretFile holds its secret; never inline.
	ClientSecretEnv  string `yaml:"client_secret_env"`
	ClientSecretFile string `yaml:"client_secret_file"`
	// TokenEndpointAuthMethod overrides the choice (client_secret_basic,
	// client_secret_post, none).
	TokenEndpointAuthMethod string `yaml:"token_endpoint_auth_method"`
	// Scopes requested at the upstream's authorization server. Default:
	// the protected resource metadata's scopes_supported.
	Scopes []string `yaml:"scopes"`
	// AuthorizationParams are extra authorization request parameters for
	// IdP quirks (access_type: offline, prompt: consent, audience: …). The
	// protocol's own parameters cannot be overridden.
	AuthorizationParams map[string]string `yaml:"authorization_params"`
	// NoResource omits the RFC 8707 resource parameter (IdPs that refuse it).
	NoResource bool `yaml:"no_resource"`
	// DPoP is "auto" (default: when the authorization server advertises
	// DPoP algorithms), "off" or "required".
	DPoP string `yaml:"dpop"`
	// PAR is "auto" (default: when offered) or "off" (unless required).
	PAR string `yaml:"par"`
	// TokenKeyEnv or TokenKeyFile holds the AES-256 key (32 random bytes,
	// base64 or hex) that encrypts the stored tokens; never inline.
	TokenKeyEnv  string `yaml:"token_key_env"`
	TokenKeyFile string `yaml:"token_key_file"`
	// ConnectTTL is how long a connect URL may be opened (default 10m,
	// at most 1h), and how long its flow may take in all.
	ConnectTTL Duration `yaml:"connect_ttl"`
	// RefreshSkew: a token expiring within it is refreshed before use
	// (default 60s).
	RefreshSkew Duration `yaml:"refresh_skew"`
	// MaxPending bounds the connect flows in progress per upstream
	// (default 1000); MaxPendingPerSubject one subject's (default 3).
	MaxPending           int `yaml:"max_pending"`
	MaxPendingPerSubject int `yaml:"max_pending_per_subject"`
}

// Defaults of UpstreamOAuth (applied by the gateway to zero fields).
const (
	DefaultConnectTTL           = 10 * time.Minute
	DefaultRefreshSkew          = 60 * time.Second
	DefaultMaxPending           = 1000
	DefaultMaxPendingPerSubject = 3
)

// reservedAuthorizationParams are set by the flow itself.
var reservedAuthorizationParams = map[string]bool{
	"response_type": true, "client_id": true, "redirect_uri": true, "state": true, "code_challenge": true,
	"code_challenge_method": true, "scope": true, "resource": true, "request_uri": true, "dpop_jkt": true,
	"request": true, "response_mode": true, "nonce": true,
}

// upstreamOAuth checks a UpstreamOAuth; nil is not configured.
func (v *validator) upstreamOAuth(key string, c *UpstreamOAuth) {
	if c == nil {
		return
	}
	if c.Issuer != "" {
		v.secureURL(key+".issuer", c.Issuer)
	}
	switch c.Registration {
	case "", "dcr", "cimd":
		if c.ClientID != "" && c.Registration != "" {
			v.add(key+".client_id", "only with registration: preregistered (registration is %q)", c.Registration)
		}
	case "preregistered":
		if c.ClientID == "" {
			v.add(key+".client_id", "required with registration: preregistered")
		}
	default:
		v.add(key+".registration", "%q: use preregistered, cimd or dcr", c.Registration)
	}
	if c.ClientSecretEnv != "" && c.ClientSecretFile != "" {
		v.add(key, "set at most one of client_secret_env or client_secret_file")
	}
	if (c.ClientSecretEnv != "" || c.ClientSecretFile != "") && c.ClientID == "" {
		v.add(key+".client_id", "required with a client secret")
	}
	switch c.TokenEndpointAuthMethod {
	case "", "none", "client_secret_basic", "client_secret_post":
	default:
		v.add(key+".token_endpoint_auth_method", "%q: use client_secret_basic, client_secret_post or none", c.TokenEndpointAuthMethod)
	}
	for _, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \"\\") {
			v.add(key+".scopes", "%q is not a scope token (RFC 6749 §3.3)", s)
		}
	}
	for k, val := range c.AuthorizationParams {
		switch {
		case reservedAuthorizationParams[strings.ToLower(k)]:
			v.add(key+".authorization_params."+k, "set by the flow itself; it cannot be overridden")
		case k == "" || url.QueryEscape(k) != k:
			v.add(key+".authorization_params", "%q is not a plain parameter name", k)
		case strings.ContainsAny(val, "\r\n"):
			v.add(key+".authorization_params."+k, "the value contains a line break")
		}
	}
	if c.DPoP != "" && c.DPoP != "auto" && c.DPoP != "off" && c.DPoP != "required" {
		v.add(key+".dpop", "%q: use auto, off or required", c.DPoP)
	}
	if c.PAR != "" && c.PAR != "auto" && c.PAR != "off" {
		v.add(key+".par", "%q: use auto or off", c.PAR)
	}
	if (c.TokenKeyEnv == "") == (c.TokenKeyFile == "") {
		v.add(key, "set exactly one of token_key_env or token_key_file (a 32-byte AES-256 key, base64 or hex: the stored tokens are encrypted with it)")
	}
	if d := c.ConnectTTL.Duration; d < 0 || (d > 0 && d < time.Second) || d > time.Hour {
		v.add(key+".connect_ttl", "%s: between 1s and 1h (default 10m)", d)
	}
	if c.RefreshSkew.Duration < 0 {
		v.add(key+".refresh_skew", "must not be negative")
	}
	if c.MaxPending < 0 || c.MaxPendingPerSubject < 0 {
		v.add(key, "max_pending and max_pending_per_subject must not be negative")
	}
}
