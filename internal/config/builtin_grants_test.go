package config

import (
	"strings"
	"testing"
)

// TestBuiltinGrantSettings: the grant and registration-limit keys are
// checked with errors that name them.
func TestBuiltinGrantSettings(t *testing.T) {
	base := "authorization_server: builtin\nupstreams:\n  - url: http://127.0.0.1:9/mcp\nbuiltin:\n"
	for body, key := range map[string]string{
		"  clients:\n    - id: m\n      secret_env: S\n      grant_types: [client_credentials]\n": "builtin.clients[0].scopes",
		"  registration_client_credentials_scopes: [mcp:read]\n":                                  "builtin.registration_client_credentials_scopes",
		"  introspection_clients: [nobody]\n":                                                     "builtin.introspection_clients",
		"  clients:\n    - id: pub\n  introspection_clients: [pub]\n":                             "builtin.introspection_clients",
		"  registration_limits:\n    per_hour: -1\n":                                              "builtin.registration_limits.per_hour",
		"  registration_limits:\n    max_body_bytes: 4194304\n":                                   "builtin.registration_limits.max_body_bytes",
		"  registration_limits:\n    unused_client_ttl: 1s\n":                                     "builtin.registration_limits.unused_client_ttl",
	} {
		err := parseValidate(base + body)
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: %v", body, err)
		}
	}
	ok := base + "  registration: token\n  registration_token_env: T\n  registration_client_credentials_scopes: [mcp:read]\n" +
		"  introspection_clients: [rs]\n  default_scopes: [mcp:read]\n  clients:\n    - id: rs\n      secret_env: RS\n" +
		"  registration_limits:\n    per_address_per_hour: 5\n    unused_client_ttl: 2h\n    max_clients: 10\n"
	if err := parseValidate(ok); err != nil {
		t.Fatal(err)
	}
}

func parseValidate(s string) error {
	g, err := ParseGateway([]byte(s))
	if err != nil {
		return err
	}
	g.ApplyDefaults()
	return g.Validate()
}
