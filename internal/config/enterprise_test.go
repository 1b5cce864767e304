package config

import (
	"strings"
	"testing"
)

// TestEnterpriseSettings: trusted_idps, trusted_workload_issuers and the
// private_key_jwt keys of clients are checked with errors naming the key.
func TestEnterpriseSettings(t *testing.T) {
	base := "authorization_server: builtin\npublic_url: https://gw.example\nupstreams:\n  - url: http://127.0.0.1:9/mcp\n    path: /mcp\nbuiltin:\n"
	idp := "  trusted_idps:\n    - issuer: https://idp.example\n      client_ids: [app]\n      scopes:\n        - resource: https://gw.example/mcp\n          scopes: [mcp:read]\n"
	wif := "  trusted_workload_issuers:\n    - issuer: https://k8s.example\n      subjects:\n        - subject: system:serviceaccount:a:*\n          resource: https://gw.example/mcp\n          scopes: [mcp:read]\n"
	if err := parseValidate(base + idp + wif); err != nil {
		t.Fatal(err)
	}
	for body, key := range map[string]string{
		"  trusted_idps:\n    - issuer: http://idp.example\n      client_ids: [a]\n      scopes: [{scopes: [x]}]\n":                                                            "builtin.trusted_idps[0].issuer",
		"  trusted_idps:\n    - issuer: https://idp.example\n      scopes: [{scopes: [x]}]\n":                                                                                  "builtin.trusted_idps[0].client_ids",
		"  trusted_idps:\n    - issuer: https://idp.example\n      client_ids: [a]\n":                                                                                          "builtin.trusted_idps[0].scopes",
		"  trusted_idps:\n    - issuer: https://idp.example\n      client_ids: [a]\n      scopes: [{resource: https://evil/x, scopes: [x]}]\n":                                 "builtin.trusted_idps[0].scopes[0].resource",
		"  trusted_idps:\n    - issuer: https://idp.example\n      client_ids: [a]\n      email_domains: ['@x.com']\n      scopes: [{scopes: [x]}]\n":                          "builtin.trusted_idps[0].email_domains[0]",
		"  trusted_workload_issuers:\n    - issuer: http://k8s.local\n      subjects: [{subject: a, resource: https://gw.example/mcp, scopes: [x]}]\n":                         "builtin.trusted_workload_issuers[0].jwks_uri",
		"  trusted_workload_issuers:\n    - issuer: x\n      jwks_uri: http://127.0.0.1/jwks\n      subjects: [{subject: a, resource: https://gw.example/mcp, scopes: [x]}]\n": "builtin.trusted_workload_issuers[0].jwks_uri",
		"  trusted_workload_issuers:\n    - issuer: https://k8s.example\n      subjects: [{subject: '*', resource: https://gw.example/mcp, scopes: [x]}]\n":                    "builtin.trusted_workload_issuers[0].subjects[0].subject",
		"  trusted_workload_issuers:\n    - issuer: https://k8s.example\n      subjects: [{subject: a, scopes: [x]}]\n":                                                        "builtin.trusted_workload_issuers[0].subjects[0].resource",
		"  trusted_workload_issuers:\n    - issuer: https://k8s.example\n":                                                                                                     "builtin.trusted_workload_issuers[0].subjects",
		"  clients:\n    - id: c\n      secret_env: S\n      jwks_file: /x\n":                                                                                                  "builtin.clients[0]",
		"  clients:\n    - id: c\n      jwks_uri: http://c.example/jwks\n":                                                                                                     "builtin.clients[0].jwks_uri",
	} {
		err := parseValidate(base + body)
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: %v, want an error naming %s", body, err, key)
		}
	}
}

func TestEnterpriseExampleLoads(t *testing.T) {
	g, err := LoadGateway(ServeFlags{ConfigFile: "../../docs/examples/enterprise.yaml"}, func(k string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Builtin.TrustedIdPs) != 1 || len(g.Builtin.TrustedWorkloadIssuers) != 2 || g.Builtin.Clients[0].JWKSFile == "" {
		t.Fatalf("%+v", g.Builtin)
	}
}
