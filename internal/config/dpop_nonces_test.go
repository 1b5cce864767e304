package config

import (
	"strings"
	"testing"
)

// TestDPoPNonceKeysValidated: dpop_nonces keys are checked with errors
// naming the key; the lifetime defaults to 5m.
func TestDPoPNonceKeysValidated(t *testing.T) {
	base := "upstreams:\n  - name: a\n    url: http://127.0.0.1:9000/mcp\n    resource: http://127.0.0.1:8080/mcp\n    dpop_nonce: true\nissuers:\n  - issuer: https://idp.example\n"
	for yaml, want := range map[string]string{
		"dpop_nonces:\n  key_file: /k\n  key_env: K\n":                  "dpop_nonces: set key_file or key_env, not both",
		"dpop_nonces:\n  previous_key_file: /p\n":                       "dpop_nonces.previous_key_file",
		"dpop_nonces:\n  key_env: K\n  lifetime: 2h\n":                  "dpop_nonces.lifetime",
		"dpop_nonces:\n  key_env: K\n  lifetime: 1s\n":                  "dpop_nonces.lifetime",
		"dpop_nonces:\n  key_env: K\n  previous_key_env: P\n":           "",
		"authorization_server: builtin\nbuiltin:\n  dpop_nonce: true\n": "",
	} {
		err := parseValidate(base + yaml)
		switch {
		case want == "" && err != nil:
			t.Errorf("%q: %v", yaml, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: %v, want %q", yaml, err, want)
		}
	}
	g, _ := ParseGateway([]byte(base))
	g.ApplyDefaults()
	if g.DPoPNonces.Lifetime.Duration.String() != "5m0s" {
		t.Errorf("default lifetime %v", g.DPoPNonces.Lifetime)
	}
	cur, prev, err := DPoPNonces{KeyEnv: "K", PreviousKeyEnv: "P"}.NonceSecrets(func(k string) string { return k + "-secret" })
	if err != nil || string(cur) != "K-secret" || string(prev) != "P-secret" {
		t.Errorf("secrets %q %q %v", cur, prev, err)
	}
	if _, _, err := (DPoPNonces{KeyEnv: "EMPTY"}).NonceSecrets(func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "dpop_nonces.key_env") {
		t.Errorf("empty env: %v", err)
	}
}
