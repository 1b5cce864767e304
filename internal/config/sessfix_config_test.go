package config

import (
	"strings"
	"testing"
)

// TestMaxHTTPSessionsPerSubject: the binding share of Streamable HTTP
// upstreams has its default (1024) and a negative value is refused with an
// error naming the key.
func TestMaxHTTPSessionsPerSubject(t *testing.T) {
	base := func() *Gateway {
		return &Gateway{Issuers: []Issuer{{Issuer: "https://idp.example.com"}}, Upstreams: []Upstream{{URL: "http://127.0.0.1:9/mcp"}}}
	}
	g := base()
	g.ApplyDefaults()
	if g.Limits.MaxHTTPSessionsPerSubject != 1024 {
		t.Fatalf("default %d, want 1024", g.Limits.MaxHTTPSessionsPerSubject)
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	g = base()
	g.Limits.MaxHTTPSessionsPerSubject = -1
	g.ApplyDefaults()
	if err := g.Validate(); err == nil || !strings.Contains(err.Error(), "limits.max_http_sessions_per_subject") {
		t.Fatalf("negative value: %v", err)
	}
}
