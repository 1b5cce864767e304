package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/resource"
)

// Extension declarations (issue 12 item 6). Texts (MCP specification
// repository, commit b0f60ba, 2026-08-22):
//
//   - docs/specification/2026-07-28/basic/versioning.mdx §Extension
//     Negotiation: "Extensions are advertised in the `extensions` field of
//     capabilities, which is a map of extension identifiers to
//     per-extension settings objects." "an empty object indicates support
//     with no additional settings."
//   - docs/extensions/overview.mdx §Server Capabilities: "Servers advertise
//     extension support in the `server/discover` response"; SEP-2133
//     (seps/2133-extensions.md): "Servers advertise extension support in
//     the `initialize` response".
//   - docs/extensions/auth/oauth-client-credentials.mdx, For MCP servers,
//     Advertise support: "Optionally (but recommended for
//     discoverability), include the extension in the `server/discover`
//     response: ... "io.modelcontextprotocol/oauth-client-credentials": {}".
//   - issue 12 item 6: "A gateway that passes a server's capabilities
//     through must not claim an extension the upstream lacks, nor hide one
//     the gateway supports on the upstream's behalf."

// ccIdP is an authorization server whose RFC 8414 metadata lists
// client_credentials; its keys are those of the test IdP.
func ccIdP(t *testing.T, jwks string, grants []string) string {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/oauth-authorization-server" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": srv.URL, "jwks_uri": jwks, "token_endpoint": srv.URL + "/token", "grant_types_supported": grants})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// extUpstream answers initialize and server/discover with caps as the
// capabilities, and tools/call with a result that holds the same
// capabilities (a result the gateway must leave alone).
func extUpstream(t *testing.T, caps string) string {
	return cacheUpstream(t, func(method, _ string) string {
		switch method {
		case "initialize":
			return `{"protocolVersion":"2025-11-25","capabilities":` + caps + `,"serverInfo":{"name":"u","version":"1"}}`
		case "server/discover":
			return `{"resultType":"complete","supportedVersions":["2026-07-28"],"capabilities":` + caps + `,"ttlMs":0,"cacheScope":"private"}`
		}
		return `{"content":[{"type":"text","text":"x"}],"structuredContent":{"capabilities":` + caps + `}}`
	})
}

func extensionsIn(t *testing.T, body []byte) map[string]json.RawMessage {
	t.Helper()
	res := resultOf(t, []byte(sseOrJSON(body)))
	var caps struct {
		Extensions map[string]json.RawMessage `json:"extensions"`
	}
	if err := json.Unmarshal(res["capabilities"], &caps); err != nil {
		t.Fatalf("capabilities: %v in %s", err, body)
	}
	return caps.Extensions
}

func sseOrJSON(body []byte) string {
	if d := sseData(body); len(d) > 0 {
		return d[len(d)-1]
	}
	return string(body)
}

const discoverBody = `{"jsonrpc":"2.0","id":"d1","method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`

// ccGateway starts a gateway trusting an AS whose metadata lists grants,
// in front of an upstream with caps.
func ccGateway(t *testing.T, caps string, grants []string) (*testGateway, func(sub string) string) {
	var iss string
	tg := startGateway(t, func(c *config.Gateway) {
		iss = ccIdP(t, strings.TrimSuffix(c.Issuers[0].Issuer, "/")+"/jwks", grants)
		c.Issuers = []config.Issuer{{Issuer: iss}}
		c.Upstreams[0].URL = extUpstream(t, caps)
	})
	return tg, func(sub string) string {
		cl := tg.idp.Claims(sub, tg.url+"/mcp", "mcp:read")
		cl["iss"] = iss
		return tg.idp.Sign(t, "RS256", cl)
	}
}

// TestExtensionsDeclaredForClientCredentials: the mount's authorization
// server issues client_credentials tokens, so initialize (2025-11-25) and
// server/discover (2026-07-28) results carry
// "io.modelcontextprotocol/oauth-client-credentials": {}; the upstream's
// own extensions pass unchanged, and its claim of an authorization
// extension the gateway does not implement (enterprise-managed) is
// removed: the gateway, not the upstream, is what clients authorize
// against. The old gateway passed the upstream's capabilities as they
// were (no client credentials, enterprise-managed claimed).
func TestExtensionsDeclaredForClientCredentials(t *testing.T) {
	caps := `{"tools":{},"extensions":{"com.example/own":{"x":1},"io.modelcontextprotocol/enterprise-managed-authorization":{}}}`
	tg, tok := ccGateway(t, caps, []string{"authorization_code", "client_credentials"})
	alice := tok("alice")
	for _, row := range []struct {
		name, body string
		hdr        map[string]string
	}{
		{"initialize", initBody, bearer(alice)},
		{"initialize, SSE", initBody, with(bearer(alice), "Accept", "application/json, text/event-stream")},
		{"server/discover", discoverBody, statelessHeaders(alice, "server/discover", "")},
	} {
		t.Run(row.name, func(t *testing.T) {
			r := tg.do(t, "POST", "/mcp", row.body, row.hdr)
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			ext := extensionsIn(t, r.body)
			if string(ext[ExtClientCredentials]) != `{}` {
				t.Fatalf("client credentials not declared: %s", r.body)
			}
			if string(ext["com.example/own"]) != `{"x":1}` {
				t.Fatalf("upstream's own extension changed: %s", r.body)
			}
			if _, ok := ext[ExtEnterpriseManaged]; ok {
				t.Fatalf("enterprise-managed authorization claimed, the gateway does not implement it: %s", r.body)
			}
		})
	}
	// a tools/call result holding the same shape is no declaration
	r := tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
		statelessHeaders(alice, "tools/call", "echo"))
	if !strings.Contains(string(r.body), ExtEnterpriseManaged) || strings.Contains(string(r.body), ExtClientCredentials) {
		t.Fatalf("a tools/call result was rewritten: %s", r.body)
	}
}

// TestExtensionsNoClaimWithoutGrant: the authorization server's metadata
// does not list client_credentials, so the gateway claims nothing, and an
// upstream's own client-credentials claim (about its own authorization
// server, which the gateway's clients never reach) is removed, in every
// spelling a JSON parser reads as that identifier. Capabilities without
// an auth extension come through byte for byte.
func TestExtensionsNoClaimWithoutGrant(t *testing.T) {
	for _, row := range []struct{ name, caps string }{
		{"plain", `{"tools":{},"extensions":{"io.modelcontextprotocol/oauth-client-credentials":{},"com.example/own":{}}}`},
		{"escaped key", `{"tools":{},"extensions":{"io.modelcontextprotocol\u002foauth-client-credentials":{},"com.example/own":{}}}`},
		{"duplicate extensions", `{"tools":{},"extensions":{"com.example/own":{}},"extensions":{"io.modelcontextprotocol/oauth-client-credentials":{},"com.example/own":{}}}`},
	} {
		t.Run(row.name, func(t *testing.T) {
			tg, tok := ccGateway(t, row.caps, []string{"authorization_code"})
			alice := tok("alice")
			for _, req := range []struct {
				body string
				hdr  map[string]string
			}{{initBody, bearer(alice)}, {discoverBody, statelessHeaders(alice, "server/discover", "")}} {
				r := tg.do(t, "POST", "/mcp", req.body, req.hdr)
				if r.status != 200 || strings.Contains(strings.ReplaceAll(string(r.body), `\u002f`, "/"), ExtClientCredentials) {
					t.Fatalf("client credentials claimed without the grant: %d %s", r.status, r.body)
				}
				if _, ok := extensionsIn(t, r.body)["com.example/own"]; !ok {
					t.Fatalf("upstream's own extension lost: %s", r.body)
				}
			}
		})
	}
	t.Run("unchanged", func(t *testing.T) {
		caps := `{"tools":{},"extensions":{"com.example/own":{"a":[1,2]}}}`
		tg, tok := ccGateway(t, caps, nil)
		r := tg.do(t, "POST", "/mcp", initBody, bearer(tok("alice")))
		if !strings.Contains(string(r.body), `"capabilities":`+caps) {
			t.Fatalf("capabilities changed: %s", r.body)
		}
	})
}

// TestExtensionsStdioDiscover: a stdio upstream (the echo server, no
// extensions) through the session server's discover and initialize
// paths: the declaration is added there too, by the same rewriter.
func TestExtensionsStdioDiscover(t *testing.T) {
	bin := echoServer(t)
	var iss string
	tg := stdioGateway(t, bin, func(c *config.Gateway) {
		iss = ccIdP(t, strings.TrimSuffix(c.Issuers[0].Issuer, "/")+"/jwks", []string{"client_credentials"})
		c.Issuers = []config.Issuer{{Issuer: iss}}
	})
	cl := tg.idp.Claims("alice", tg.url+"/mcp", "mcp:read")
	cl["iss"] = iss
	alice := tg.idp.Sign(t, "RS256", cl)
	for _, req := range []struct {
		body string
		hdr  map[string]string
	}{{initBody, bearer(alice)}, {discoverBody, statelessHeaders(alice, "server/discover", "")}} {
		r := tg.do(t, "POST", "/mcp", req.body, req.hdr)
		if r.status != 200 || string(extensionsIn(t, r.body)[ExtClientCredentials]) != `{}` {
			t.Fatalf("stdio: client credentials not declared: %d %s", r.status, r.body)
		}
	}
}

// TestExtensionsBuiltinDecision: the built-in authorization server
// advertises client_credentials in its metadata always, but grants it
// only to configured clients with the grant or to registered clients when
// registration_client_credentials_scopes is set: the declaration follows
// what it grants, not what its metadata says.
func TestExtensionsBuiltinDecision(t *testing.T) {
	const pub = "http://127.0.0.1:9"
	for _, row := range []struct {
		name string
		b    config.Builtin
		want bool
	}{
		{"no client has the grant", config.Builtin{Clients: []config.BuiltinClient{{ID: "a", GrantTypes: []string{"authorization_code"}}}}, false},
		{"a client has the grant", config.Builtin{Clients: []config.BuiltinClient{{ID: "m", GrantTypes: []string{"client_credentials"}, Scopes: []string{"mcp:read"}}}}, true},
		{"registered clients may get it", config.Builtin{RegistrationClientCredentialsScopes: []string{"mcp:read"}}, true},
	} {
		t.Run(row.name, func(t *testing.T) {
			g := &Gateway{cfg: &config.Gateway{AuthorizationServer: "builtin", PublicURL: pub, Builtin: row.b}}
			v, err := resource.New(context.Background(), resource.Options{Resource: pub + "/mcp", Endpoint: pub + "/mcp",
				Issuers: []config.Issuer{{Issuer: pub, JWKSURI: "http://127.0.0.1:9/jwks"}}})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			m := &mount{g: g}
			m.verifier.Store(v)
			got := len(m.authExtensionsOf()) == 1
			if got != row.want {
				t.Fatalf("declared %v, want %v", m.authExtensionsOf(), row.want)
			}
		})
	}
}
