package config

import (
	"strings"
	"testing"
)

// TestMaxSessionsPerSubject: the session budget key has its default and a
// negative value is refused with an error naming the key.
func TestMaxSessionsPerSubject(t *testing.T) {
	base := func() *Gateway {
		return &Gateway{Issuers: []Issuer{{Issuer: "https://idp.example.com"}}, Upstreams: []Upstream{{URL: "http://127.0.0.1:9/mcp"}}}
	}
	g := base()
	g.ApplyDefaults()
	if g.Limits.MaxSessionsPerSubject != 16 {
		t.Fatalf("default %d, want 16", g.Limits.MaxSessionsPerSubject)
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	g = base()
	g.Limits.MaxSessionsPerSubject = -1
	g.ApplyDefaults()
	if err := g.Validate(); err == nil || !strings.Contains(err.Error(), "limits.max_sessions_per_subject") {
		t.Fatalf("negative value: %v", err)
	}
}
