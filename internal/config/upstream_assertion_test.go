package config

import (
	"strings"
	"testing"
	"time"
)

// TestIdentityAssertionValidated: upstream_auth.identity_assertion and
// identity_assertion_keys are checked with errors naming the key and the
// fix; a valid section needs no static header.
func TestIdentityAssertionValidated(t *testing.T) {
	up := func(extra, ia string) string {
		return "issuers:\n  - issuer: https://idp.example\nupstreams:\n  - url: http://127.0.0.1:9000/mcp\n" + extra +
			"    upstream_auth:\n      identity_assertion:\n" + ia
	}
	const ok = "        mode: cached\n"
	for yaml, want := range map[string]string{
		up("", "        ttl: 5m\n"):                  "",
		up("", ok):                                   "",
		up("", "        header: authorization\n"):    "",
		up("", "        ttl: 6m\n"):                  "identity_assertion.ttl: 6m0s: use 10s to 5m",
		up("", "        ttl: 1s\n"):                  "identity_assertion.ttl",
		up("", "        mode: session\n"):            "identity_assertion.mode: \"session\": use per_request or cached",
		up("", "        header: \"X Bad\"\n"):        "identity_assertion.header: \"X Bad\" is not a header name",
		up("", "        header: mcp-session-id\n"):   "Mcp-Session-Id is a header the transport or MCP uses",
		up("", "        header: Mcp-Param-Region\n"): "a header the transport or MCP uses",
		up("    transport: sse\n", ok):               "identity assertions need transport streamable",
		up("    identity_headers:\n      subject: Mcpgate-Identity-Assertion\n", ok):                                                            "also an identity header",
		up("", ok) + "identity_assertion_keys:\n  rotation: 10m\n":                                                                              "identity_assertion_keys.rotation: 10m0s: use 1h to 2160h",
		up("", ok) + "state:\n  redis:\n    url: redis://127.0.0.1:6379\n":                                                                      "identity_assertion_keys.key_file: required with state.redis",
		up("", ok) + "state:\n  redis:\n    url: redis://127.0.0.1:6379\nidentity_assertion_keys:\n  key_file: /k\n":                            "",
		"issuers:\n  - issuer: https://idp.example\nupstreams:\n  - url: http://127.0.0.1:9000/mcp\nidentity_assertion_keys:\n  key_file: /k\n": "no upstream has upstream_auth.identity_assertion",
	} {
		err := parseValidate(yaml)
		switch {
		case want == "" && err != nil:
			t.Errorf("%q: %v", yaml, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: %v, want %q", yaml, err, want)
		}
	}
	stdio := "issuers:\n  - issuer: https://idp.example\nupstreams:\n  - command: [server]\n    upstream_auth:\n      identity_assertion:\n        audience: urn:x\n"
	if err := parseValidate(stdio); err == nil || !strings.Contains(err.Error(), "a stdio upstream gets no HTTP headers") {
		t.Errorf("stdio: %v", err)
	}
	var c IdentityAssertion
	u := Upstream{URL: "http://127.0.0.1:9000/mcp"}
	if c.HeaderName() != "Mcpgate-Identity-Assertion" || c.Lifetime() != 2*time.Minute || c.AudienceFor(u) != u.URL ||
		(IdentityAssertionKeys{}).Period() != 24*time.Hour {
		t.Errorf("defaults: %q %v %q", c.HeaderName(), c.Lifetime(), c.AudienceFor(u))
	}
}
