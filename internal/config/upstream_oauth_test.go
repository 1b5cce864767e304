package config

import (
	"strings"
	"testing"
)

// TestUpstreamOAuthSettings: every upstream_auth.oauth key is checked with
// an error that names it; a complete block loads.
func TestUpstreamOAuthSettings(t *testing.T) {
	base := "authorization_server: builtin\nupstreams:\n  - url: https://mcp.example.com/mcp\n    upstream_auth:\n      oauth:\n"
	key := "        token_key_file: /k\n"
	for body, want := range map[string]string{
		"        issuer: http://as.example.com\n" + key:                                              "upstream_auth.oauth.issuer",
		"        registration: magic\n" + key:                                                        "upstream_auth.oauth.registration",
		"        registration: preregistered\n" + key:                                                "upstream_auth.oauth.client_id",
		"        registration: dcr\n        client_id: x\n" + key:                                    "upstream_auth.oauth.client_id",
		"        client_secret_env: S\n" + key:                                                       "upstream_auth.oauth.client_id",
		"        client_id: x\n        client_secret_env: S\n        client_secret_file: /s\n" + key: "client_secret_env or client_secret_file",
		"        token_endpoint_auth_method: private_key_jwt\n" + key:                                "token_endpoint_auth_method",
		"        scopes: [\"a b\"]\n" + key:                                                          "upstream_auth.oauth.scopes",
		"        authorization_params:\n          redirect_uri: https://evil\n" + key:                "authorization_params.redirect_uri",
		"        authorization_params:\n          state: x\n" + key:                                  "authorization_params.state",
		"        authorization_params:\n          \"a b\": x\n" + key:                                "authorization_params",
		"        dpop: maybe\n" + key:                                                                "upstream_auth.oauth.dpop",
		"        par: on\n" + key:                                                                    "upstream_auth.oauth.par",
		"        client_id: x\n":                                                                     "token_key_env or token_key_file",
		"        token_key_env: K\n" + key:                                                           "token_key_env or token_key_file",
		"        connect_ttl: 2h\n" + key:                                                            "upstream_auth.oauth.connect_ttl",
		"        connect_ttl: 1ms\n" + key:                                                           "upstream_auth.oauth.connect_ttl",
		"        max_pending: -1\n" + key:                                                            "max_pending",
	} {
		err := parseValidate(base + body)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: want an error naming %s, got %v", body, want, err)
		}
	}
	ok := base + "        issuer: https://github.com/login/oauth\n        client_id: Iv1.abc\n        client_secret_file: /run/secrets/gh\n" +
		"        scopes: [repo, read:org]\n        authorization_params:\n          prompt: consent\n        dpop: auto\n        par: off\n" +
		"        token_key_env: MCPGATE_TOKEN_KEY\n        connect_ttl: 5m\n        refresh_skew: 2m\n        max_pending: 50\n        max_pending_per_subject: 2\n"
	if err := parseValidate(ok); err != nil {
		t.Fatal(err)
	}
	// no static header is needed with a per-caller mode
	if err := parseValidate(base + "        registration: dcr\n" + key); err != nil {
		t.Fatal(err)
	}
}
