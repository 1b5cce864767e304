package config

import (
	"slices"
	"time"
)

// builtinGrants checks the built-in server's grant, introspection and
// registration-limit settings.
func (v *validator) builtinGrants(b *Builtin) {
	if len(b.RegistrationClientCredentialsScopes) > 0 && b.Registration != "token" {
		v.add("builtin.registration_client_credentials_scopes", "needs registration: token (open registration never gets the client credentials grant)")
	}
	for i, id := range b.IntrospectionClients {
		j := slices.IndexFunc(b.Clients, func(c BuiltinClient) bool { return c.ID == id })
		if j < 0 || b.Clients[j].SecretEnv == "" && b.Clients[j].SecretFile == "" {
			v.add("builtin.introspection_clients", "[%d] %q is not a confidential client of builtin.clients", i, id)
		}
	}
	l := b.RegistrationLimits
	for k, n := range map[string]int{"per_address_per_hour": l.PerAddressPerHour, "per_hour": l.PerHour, "max_clients": l.MaxClients,
		"max_body_bytes": l.MaxBodyBytes, "max_name_chars": l.MaxNameChars, "max_uri_bytes": l.MaxURIBytes, "max_redirect_uris": l.MaxRedirectURIs} {
		if n < 0 {
			v.add("builtin.registration_limits."+k, "%d: must not be negative (0 takes the default)", n)
		}
	}
	if l.MaxBodyBytes > 1<<20 {
		v.add("builtin.registration_limits.max_body_bytes", "%d: at most 1048576", l.MaxBodyBytes)
	}
	if d := l.UnusedClientTTL.Duration; d < 0 || d > 0 && d < time.Minute {
		v.add("builtin.registration_limits.unused_client_ttl", "%v: at least 1m (0 takes the default, 24h)", d)
	}
}
