package config

import (
	"strings"
	"testing"
)

// challenge_scopes takes the names of the MCP security best practices'
// approaches (§Scope Minimization, 2026-07-28); the default is the
// "Recommended approach".
func TestChallengeScopesConfig(t *testing.T) {
	g := &Gateway{Issuers: []Issuer{{Issuer: "https://idp.example.com"}}, Upstreams: []Upstream{{URL: "http://127.0.0.1:9/mcp"}}}
	g.ApplyDefaults()
	if err := g.Validate(); err != nil || g.Upstreams[0].ChallengeScopes != "recommended" {
		t.Fatalf("default: %q %v", g.Upstreams[0].ChallengeScopes, err)
	}
	for _, mode := range []string{"minimum", "recommended", "extended"} {
		g.Upstreams[0].ChallengeScopes = mode
		if err := g.Validate(); err != nil {
			t.Fatalf("%s refused: %v", mode, err)
		}
	}
	for _, bad := range []string{"all", "Recommended", "minimal", " extended"} {
		g.Upstreams[0].ChallengeScopes = bad
		err := g.Validate()
		if err == nil || !strings.Contains(err.Error(), "upstreams[0].challenge_scopes") || !strings.Contains(err.Error(), "minimum, recommended or extended") {
			t.Fatalf("%q: %v", bad, err)
		}
	}
	p, err := ParseGateway([]byte("issuers:\n  - issuer: https://idp.example.com\nupstreams:\n  - url: http://127.0.0.1:9/mcp\n    challenge_scopes: minimum\n"))
	if err != nil || p.Upstreams[0].ChallengeScopes != "minimum" {
		t.Fatalf("yaml: %v", err)
	}
}
