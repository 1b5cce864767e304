package config

import (
	"strings"
	"testing"
)

const fedBase = `authorization_server: builtin
public_url: https://gw.example
builtin:
  federation:
    issuer: https://idp.example
    client_id: gw
    client_secret_env: FED
    tokens:
      key_env: FEDKEY
upstreams:
`

// TestFederatedTokenConfig: federated_token and child_env are accepted
// where they work and refused, naming the key and the fix, elsewhere.
func TestFederatedTokenConfig(t *testing.T) {
	ok := []string{
		fedBase + "  - url: https://ws.example/mcp\n    path: /ws/mcp\n    upstream_auth:\n      federated_token: {}\n",
		fedBase + "  - url: https://ws.example/mcp\n    path: /ws/mcp\n    upstream_auth:\n      federated_token:\n        token: id_token\n        header: X-Id-Token\n",
		fedBase + "  - command: [srv]\n    path: /cmd/mcp\n    upstream_auth:\n      federated_token: {}\n      child_env: IDP_TOKEN\n",
	}
	for _, s := range ok {
		if err := parseValidate(s); err != nil {
			t.Errorf("%s\n→ %v", s, err)
		}
	}
	noTokens := strings.Replace(fedBase, "    tokens:\n      key_env: FEDKEY\n", "", 1)
	bad := map[string]string{
		noTokens + "  - url: https://ws.example/mcp\n    upstream_auth:\n      federated_token: {}\n":                                                    "upstreams[0].upstream_auth.federated_token: needs authorization_server: builtin",
		fedBase + "  - url: https://ws.example/mcp\n    upstream_auth:\n      federated_token:\n        token: refresh_token\n":                          "federated_token.token: \"refresh_token\"",
		fedBase + "  - command: [srv]\n    upstream_auth:\n      federated_token: {}\n":                                                                  "upstreams[0].upstream_auth.child_env: a command upstream gets no headers",
		fedBase + "  - url: https://ws.example/mcp\n    upstream_auth:\n      federated_token: {}\n      child_env: T\n":                                 "only a command (stdio) upstream",
		fedBase + "  - command: [srv]\n    upstream_auth:\n      federated_token: {}\n      child_env: PATH\n":                                           "PATH is already passed",
		fedBase + "  - command: [srv]\n    env: {T: x}\n    upstream_auth:\n      federated_token: {}\n      child_env: T\n":                             "T is also set in env",
		fedBase + "  - command: [srv]\n    upstream_auth:\n      federated_token: {}\n      child_env: \"A=B\"\n":                                        "is not an environment variable name",
		fedBase + "  - command: [srv]\n    upstream_auth:\n      header: X\n      value_env: V\n      child_env: T\n":                                    "needs a per-caller mode that yields a token",
		strings.Replace(fedBase, "      key_env: FEDKEY\n", "      key_env: FEDKEY\n      key_file: /k\n", 1) + "  - url: https://a.example/mcp\n":       "builtin.federation.tokens: set exactly one of key_file or key_env",
		strings.Replace(fedBase, "      key_env: FEDKEY\n", "      key_env: FEDKEY\n      refresh_before: 2h\n", 1) + "  - url: https://a.example/mcp\n": "refresh_before",
	}
	for s, want := range bad {
		err := parseValidate(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s\n→ %v, want %q", s, err, want)
		}
	}
}
