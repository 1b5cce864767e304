package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func noenv(string) string { return "" }

func TestQuickFormURL(t *testing.T) {
	g, err := LoadGateway(ServeFlags{Listen: "127.0.0.1:8080", Issuer: "https://idp.example.com", Upstream: "http://127.0.0.1:9000/mcp"}, noenv)
	if err != nil {
		t.Fatal(err)
	}
	u := g.Upstreams[0]
	if g.PublicURL != "http://127.0.0.1:8080" || u.Path != "/mcp" || u.Resource != "http://127.0.0.1:8080/mcp" || u.Transport != "streamable" || u.DPoP != "optional" {
		t.Fatalf("%+v %+v", g, u)
	}
	if g.Issuers[0].Algorithms[0] != "RS256" || g.Issuers[0].Leeway.Duration != 30*time.Second {
		t.Fatalf("issuer defaults %+v", g.Issuers[0])
	}
}

func TestQuickFormCommandAndPublicURL(t *testing.T) {
	g, err := LoadGateway(ServeFlags{Issuer: "https://idp.example.com", PublicURL: "https://mcp.example.com/", Command: []string{"npx", "-y", "@modelcontextprotocol/server-everything", "stdio"}}, noenv)
	if err != nil {
		t.Fatal(err)
	}
	u := g.Upstreams[0]
	if u.Transport != "stdio" || u.Resource != "https://mcp.example.com/mcp" || g.Listen != "127.0.0.1:8080" {
		t.Fatalf("%+v", u)
	}
}

func TestPrecedenceFlagsOverEnvOverFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "g.yaml")
	os.WriteFile(file, []byte("listen: 127.0.0.1:1111\nlog:\n  level: debug\nissuers: [{issuer: https://file.example}]\nupstreams: [{url: http://127.0.0.1:9/mcp}]\n"), 0o600)
	env := map[string]string{EnvListen: "127.0.0.1:2222", EnvLogLevel: "warn"}
	g, err := LoadGateway(ServeFlags{ConfigFile: file, Listen: "127.0.0.1:3333"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if g.Listen != "127.0.0.1:3333" || g.Log.Level != "warn" || g.Issuers[0].Issuer != "https://file.example" {
		t.Fatalf("listen %s level %s", g.Listen, g.Log.Level)
	}
}

func TestExampleLoads(t *testing.T) {
	g, err := LoadGateway(ServeFlags{ConfigFile: "../../docs/examples/gateway.yaml"}, func(k string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Upstreams) != 2 || g.Upstreams[1].Resource != "https://mcp.example.com/files/mcp" || g.Upstreams[0].Transport != "stdio" {
		t.Fatalf("%+v", g.Upstreams)
	}
}

func TestUnknownKeyNamesKeyAndLine(t *testing.T) {
	_, err := ParseGateway([]byte("listen: 127.0.0.1:1\nupstreams:\n  - url: http://x\n    polcy: {}\n"))
	if err == nil || !strings.Contains(err.Error(), "polcy") || !strings.Contains(err.Error(), "line 4") {
		t.Fatalf("%v", err)
	}
	_, err = ParseGateway([]byte("issuers:\n  - issuer: https://i\n    introspection:\n      client_secret: hunter2\n"))
	if err == nil || !strings.Contains(err.Error(), "client_secret_file") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("inline secret: %v", err)
	}
}

func TestValidationErrors(t *testing.T) {
	base := func() *Gateway {
		return &Gateway{Issuers: []Issuer{{Issuer: "https://idp.example.com"}}, Upstreams: []Upstream{{URL: "http://127.0.0.1:9/mcp"}}}
	}
	rows := []struct {
		name string
		mut  func(*Gateway)
		want []string
	}{
		{"alg none", func(g *Gateway) { g.Issuers[0].Algorithms = []string{"none"} }, []string{"issuers[0].algorithms[0]", "unsigned"}},
		{"symmetric alg", func(g *Gateway) { g.Issuers[0].Algorithms = []string{"HS256"} }, []string{"issuers[0].algorithms[0]", "symmetric", "RS256"}},
		{"http issuer", func(g *Gateway) { g.Issuers[0].Issuer = "http://idp.example.com" }, []string{"issuers[0].issuer", "https"}},
		{"duplicate path", func(g *Gateway) {
			g.Upstreams = []Upstream{{Path: "/a", URL: "http://127.0.0.1:9/"}, {Path: "/a", URL: "http://127.0.0.1:8/"}}
		}, []string{"upstreams[1].path", "also the path of upstreams[0]"}},
		{"url and command", func(g *Gateway) { g.Upstreams[0].Command = []string{"x"} }, []string{"upstreams[0]", "exactly one of url or command"}},
		{"reserved path", func(g *Gateway) { g.Upstreams[0].Path = "/.well-known/mcp" }, []string{"upstreams[0].path", "collides"}},
		{"public url with path", func(g *Gateway) { g.PublicURL = "https://x.example/base" }, []string{"public_url", "path"}},
		{"offline_access", func(g *Gateway) { g.Upstreams[0].ScopesSupported = []string{"offline_access"} }, []string{"scopes_supported", "offline_access"}},
		{"bad dpop", func(g *Gateway) { g.Upstreams[0].DPoP = "maybe" }, []string{"upstreams[0].dpop", "off, optional or required"}},
		{"no issuer", func(g *Gateway) { g.Issuers = nil }, []string{"upstreams[0].issuers", "--issuer"}},
		{"wildcard origin", func(g *Gateway) { g.AllowedOrigins = []string{"*"} }, []string{"allowed_origins[0]"}},
		{"bad proxy", func(g *Gateway) { g.TrustedProxies = []string{"ten"} }, []string{"trusted_proxies[0]"}},
		{"tls half", func(g *Gateway) { g.TLS.CertFile = "c" }, []string{"tls", "both"}},
		{"policy default", func(g *Gateway) { g.Upstreams[0].Policy.Default = "maybe" }, []string{"policy.default", "allow or deny"}},
		{"introspection secret", func(g *Gateway) { g.Issuers[0].Introspection = &Introspection{ClientID: "gw"} }, []string{"introspection", "client_secret_file or client_secret_env"}},
		{"log level", func(g *Gateway) { g.Log.Level = "loud" }, []string{"log.level"}},
		{"sse without url", func(g *Gateway) { g.Upstreams[0] = Upstream{Command: []string{"x"}, Transport: "sse"} }, []string{"upstreams[0].transport", "needs url"}},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			g := base()
			r.mut(g)
			g.ApplyDefaults()
			err := g.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range r.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q lacks %q", err, w)
				}
			}
		})
	}
	g := base()
	g.ApplyDefaults()
	if err := g.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
}

func TestAllErrorsReportedTogether(t *testing.T) {
	g := &Gateway{Listen: "nope", Upstreams: []Upstream{{Path: "bad", DPoP: "x"}}}
	g.ApplyDefaults()
	err := g.Validate()
	if err == nil || strings.Count(err.Error(), "\n") < 3 {
		t.Fatalf("want several errors, one per line: %v", err)
	}
}

func TestLoopbackListen(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:8080": true, "[::1]:80": true, "localhost:1": true, "0.0.0.0:8080": false, ":8080": false, "10.0.0.1:1": false} {
		if IsLoopbackListen(addr) != want {
			t.Errorf("%s: want %v", addr, want)
		}
	}
}
