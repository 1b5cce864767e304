package config

import (
	"strings"
	"testing"
)

const authorizeLimitsYAML = `authorization_server: builtin
upstreams:
  - url: http://127.0.0.1:9/mcp
builtin:
  authorize_limits:
`

// TestAuthorizeLimits: builtin.authorize_limits parses, and bad values
// name their key.
func TestAuthorizeLimits(t *testing.T) {
	g, err := ParseGateway([]byte(authorizeLimitsYAML + "    max_pending_flows: 100\n    max_pushed_requests: 50\n    per_address_per_minute: 10\n    per_minute: 200\n"))
	if err != nil {
		t.Fatal(err)
	}
	g.ApplyDefaults()
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	if l := g.Builtin.AuthorizeLimits; l.MaxPendingFlows != 100 || l.MaxPushedRequests != 50 || l.PerAddressPerMinute != 10 || l.PerMinute != 200 {
		t.Fatalf("%+v", l)
	}
	for body, key := range map[string]string{
		"    max_pending_flows: -1\n":                           "builtin.authorize_limits.max_pending_flows",
		"    max_pushed_requests: -1\n":                         "builtin.authorize_limits.max_pushed_requests",
		"    per_address_per_minute: -5\n":                      "builtin.authorize_limits.per_address_per_minute",
		"    per_minute: -5\n":                                  "builtin.authorize_limits.per_minute",
		"    per_address_per_minute: 100\n    per_minute: 10\n": "builtin.authorize_limits.per_address_per_minute",
	} {
		g, err := ParseGateway([]byte(authorizeLimitsYAML + body))
		if err == nil {
			g.ApplyDefaults()
			err = g.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: %v, want an error naming %s", body, err, key)
		}
	}
	if _, err := ParseGateway([]byte(authorizeLimitsYAML + "    max_flows: 3\n")); err == nil {
		t.Error("an unknown authorize_limits key is accepted")
	}
}
