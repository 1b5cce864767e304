package config

import (
	"fmt"
	"net/url"
	"slices"
)

// GrantTokenExchange is the RFC 8693 grant type a builtin.clients entry
// may list to exchange the built-in server's access tokens.
const GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"

// ExchangeResource is a protected resource the built-in authorization
// server issues tokens for only through the token exchange grant: an
// internal API behind an upstream, reached by the gateway with a token
// exchanged for the caller (builtin.exchange_resources).
type ExchangeResource struct {
	// Resource is its RFC 8707 identifier, the issued token's aud.
	Resource string `yaml:"resource"`
	// Scopes are the scopes tokens for it may carry.
	Scopes []string `yaml:"scopes"`
}

// builtinExchange checks the token exchange settings of the built-in
// server: exchange resources are absolute URIs with scopes, and a client
// with the grant is confidential.
func (v *validator) builtinExchange(b *Builtin) {
	for i, r := range b.ExchangeResources {
		key := fmt.Sprintf("builtin.exchange_resources[%d]", i)
		if u, err := url.Parse(r.Resource); err != nil || !u.IsAbs() || u.Fragment != "" {
			v.add(key+".resource", "%q must be an absolute URI without fragment (RFC 8707)", r.Resource)
		}
		if len(r.Scopes) == 0 {
			v.add(key+".scopes", "list the scopes tokens for this resource may carry")
		}
	}
	for i, c := range b.Clients {
		if slices.Contains(c.GrantTypes, GrantTokenExchange) && c.SecretEnv == "" && c.SecretFile == "" {
			v.add(fmt.Sprintf("builtin.clients[%d]", i), "the token exchange grant needs a confidential client: set secret_env or secret_file")
		}
	}
}
