package config

import (
	"strings"
	"testing"
)

// TestTokenExchangeConfig: upstream_auth.token_exchange and the built-in
// server's exchange settings are checked with errors naming the key.
func TestTokenExchangeConfig(t *testing.T) {
	base := "issuers:\n  - issuer: https://idp.example\nupstreams:\n  - url: http://127.0.0.1:9/mcp\n    upstream_auth:\n      token_exchange:\n"
	ok := "        issuer: https://idp.example\n        client_id: gw\n        client_secret_env: S\n        audience: api\n"
	if err := parseValidate(base + ok); err != nil {
		t.Fatal(err)
	}
	cmd := "issuers:\n  - issuer: https://idp.example\nupstreams:\n  - command: [srv]\n    upstream_auth:\n"
	if err := parseValidate(cmd + "      child_env: UPSTREAM_TOKEN\n      token_exchange:\n" + ok); err != nil {
		t.Fatalf("command upstream with child_env: %v", err)
	}
	if err := parseValidate(cmd + "      token_exchange:\n" + ok); err == nil || !strings.Contains(err.Error(), "child_env") {
		t.Fatalf("command upstream without child_env: %v", err)
	}
	for body, want := range map[string]string{
		"        client_id: gw\n        client_secret_env: S\n        audience: api\n":                                                   "set issuer (discovery) or token_endpoint",
		"        token_endpoint: http://idp.example/token\n        client_id: gw\n        client_secret_env: S\n        audience: api\n": "token_exchange.token_endpoint",
		"        issuer: https://idp.example\n        client_secret_env: S\n        audience: api\n":                                     "token_exchange.client_id",
		"        issuer: https://idp.example\n        client_id: gw\n        client_secret_env: S\n":                                     "set audience or resource",
		"        issuer: https://idp.example\n        client_id: gw\n        audience: api\n        auth_method: client_secret_post\n":   "client_secret_post needs client_secret_env",
		"        token_endpoint: https://idp.example/t\n        client_id: gw\n        client_key_file: /k.pem\n        audience: api\n": "token_exchange.issuer",
		ok + "        client_secret_file: /s\n":       "not both",
		ok + "        auth_method: none\n":            "none sends no secret",
		ok + "        auth_method: tls_client_auth\n": "token_exchange.auth_method",
		ok + "        resource: api\n":                "token_exchange.resource",
		ok + "        requested_token_type: urn:x\n":  "token_exchange.requested_token_type",
		ok + "        header: \"X Bad\"\n":            "token_exchange.header",
		ok + "        scheme: \"Bearer x\"\n":         "token_exchange.scheme",
		ok + "        cache_entries: -1\n":            "token_exchange.cache_entries",
	} {
		err := parseValidate(base + body)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", body, err, want)
		}
	}
	c := &TokenExchange{Header: "x-api-token"}
	if c.HeaderName() != "X-Api-Token" || c.HeaderScheme() != "" || (&TokenExchange{}).HeaderScheme() != "Bearer" || c.Method() != "none" {
		t.Fatalf("defaults: %q %q %q", c.HeaderName(), c.HeaderScheme(), c.Method())
	}
}

func TestBuiltinExchangeConfig(t *testing.T) {
	base := "authorization_server: builtin\nupstreams:\n  - url: http://127.0.0.1:9/mcp\nbuiltin:\n"
	ok := "  exchange_resources:\n    - resource: https://api.internal/\n      scopes: [orders:read]\n" +
		"  clients:\n    - id: gw\n      secret_env: S\n      grant_types: [" + GrantTokenExchange + "]\n"
	if err := parseValidate(base + ok); err != nil {
		t.Fatal(err)
	}
	for body, want := range map[string]string{
		"  exchange_resources:\n    - resource: api\n      scopes: [a]\n":                 "builtin.exchange_resources[0].resource",
		"  exchange_resources:\n    - resource: https://api.internal/\n":                  "builtin.exchange_resources[0].scopes",
		"  clients:\n    - id: gw\n      grant_types: [" + GrantTokenExchange + "]\n":     "needs a confidential client",
		"  clients:\n    - id: gw\n      secret_env: S\n      grant_types: [urn:other]\n": "builtin.clients[0].grant_types",
	} {
		err := parseValidate(base + body)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", body, err, want)
		}
	}
}

// TestCredentialHeadersCollide: two credentials of one upstream written
// to the same header are refused at start (the second would replace the
// first), whatever the case of the names; distinct headers are accepted.
func TestCredentialHeadersCollide(t *testing.T) {
	base := "issuers:\n  - issuer: https://idp.example\nupstreams:\n  - url: http://127.0.0.1:9/mcp\n    upstream_auth:\n"
	te := "      token_exchange:\n        issuer: https://idp.example\n        client_id: gw\n        client_secret_env: S\n        audience: api\n"
	for body, want := range map[string]string{
		"      header: authorization\n      value_env: V\n" + te:                                              "header and token_exchange both send the upstream header Authorization",
		te + "      identity_assertion:\n        header: Authorization\n":                                     "token_exchange and identity_assertion both send the upstream header Authorization",
		"      header: X-Api-Key\n      value_env: V\n      identity_assertion:\n        header: x-api-key\n": "header and identity_assertion both send the upstream header X-Api-Key",
	} {
		err := parseValidate(base + body)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", body, err, want)
		}
	}
	if err := parseValidate(base + te + "      identity_assertion: {}\n"); err != nil {
		t.Errorf("distinct headers refused: %v", err)
	}
}
