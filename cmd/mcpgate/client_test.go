package main

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeServer is an MCP endpoint that answers 401 and publishes the given
// resource metadata and AS metadata documents.
func fakeServer(t *testing.T, prm func(base string) any, as func(base string) any) string {
	var base string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/mcp":
			w.Header().Set("WWW-Authenticate", `Bearer resource_metadata="`+base+`/.well-known/oauth-protected-resource/mcp"`)
			w.WriteHeader(401)
		case "/.well-known/oauth-protected-resource/mcp":
			json.NewEncoder(w).Encode(prm(base))
		case "/.well-known/oauth-authorization-server":
			json.NewEncoder(w).Encode(as(base))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	base = srv.URL
	return base
}

func TestDoctorReportsProblems(t *testing.T) {
	good := func(b string) any {
		return map[string]any{"resource": b + "/mcp", "authorization_servers": []string{b}}
	}
	// no PKCE, no registration: two blocking problems, each with its fix
	base := fakeServer(t, good, func(b string) any {
		return map[string]any{"issuer": b, "authorization_endpoint": b + "/a", "token_endpoint": b + "/t"}
	})
	code, out, _ := run(t, "doctor", "--store", "memory", base+"/mcp")
	if code != 1 || !strings.Contains(out, "does not advertise PKCE S256") || !strings.Contains(out, "pass --client-id") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// resource metadata for another resource: stop, say so
	base = fakeServer(t, func(b string) any {
		return map[string]any{"resource": "https://evil.example/mcp", "authorization_servers": []string{b}}
	}, nil)
	code, out, _ = run(t, "doctor", "--store", "memory", base+"/mcp")
	if code != 1 || !strings.Contains(out, "another resource") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// a healthy server
	base = fakeServer(t, good, func(b string) any {
		return map[string]any{"issuer": b, "authorization_endpoint": b + "/a", "token_endpoint": b + "/t", "registration_endpoint": b + "/r",
			"code_challenge_methods_supported": []string{"S256"}, "authorization_response_iss_parameter_supported": true}
	})
	code, out, _ = run(t, "doctor", "--store", "memory", base+"/mcp")
	if code != 0 || !strings.Contains(out, "No problems found") || !strings.Contains(out, "/.well-known/oauth-protected-resource/mcp  used") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestClientCommandErrors(t *testing.T) {
	if code, _, errs := run(t, "call", "--store", "memory"); code != 2 || !strings.Contains(errs, "URL is missing") {
		t.Fatalf("no URL: %d %s", code, errs)
	}
	if code, _, errs := run(t, "call", "--store", "memory", "--args", "[1]", "http://127.0.0.1:9/mcp"); code != 2 || !strings.Contains(errs, "--args is not a JSON object") {
		t.Fatalf("bad args: %d %s", code, errs)
	}
	if code, _, errs := run(t, "call", "--store", "memory", "http://mcp.example.com/mcp"); code != 1 || !strings.Contains(errs, "--allow-http") {
		t.Fatalf("plain http off loopback: %d %s", code, errs)
	}
	if code, _, errs := run(t, "call", "--store", "memory", "--client-secret-file", "/x", "http://127.0.0.1:9/mcp"); code != 1 || !strings.Contains(errs, "need --client-id") {
		t.Fatalf("secret without id: %d %s", code, errs)
	}
	if code, _, errs := run(t, "call", "--store", "memory", "--no-login", "http://127.0.0.1:9/mcp"); code != 1 || !strings.Contains(errs, "cannot") && !strings.Contains(errs, "refused") {
		t.Fatalf("unreachable: %d %s", code, errs)
	}
	if code, _, errs := run(t, "logout", "--store", "memory"); code != 2 || !strings.Contains(errs, "--all") {
		t.Fatalf("logout without target: %d %s", code, errs)
	}
	if code, out, _ := run(t, "status", "--store", "memory", "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("empty status: %d %q", code, out)
	}
}

func TestClientMetadataDocument(t *testing.T) {
	code, out, _ := run(t, "client-metadata", "--url", "https://example.com/mcpgate.json")
	var doc map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || doc["client_id"] != "https://example.com/mcpgate.json" || doc["token_endpoint_auth_method"] != "none" {
		t.Fatalf("exit %d: %s", code, out)
	}
	if code, _, errs := run(t, "client-metadata", "--url", "http://example.com/x.json"); code != 1 || !strings.Contains(errs, "https") {
		t.Fatalf("http URL: %d %s", code, errs)
	}
}

// TestCallWithCustomCA: a server with a private CA is reachable with
// --ca-file and refused without it, with a message that says why.
func TestCallWithCustomCA(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		json.NewDecoder(r.Body).Decode(&m)
		switch {
		case m.Method == "server/discover":
			w.WriteHeader(404)
		case m.ID == nil:
			w.WriteHeader(202)
		case m.Method == "initialize":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"tls","version":"1"}}}`, m.ID)
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"behind-a-private-ca","inputSchema":{"type":"object"}}]}}`, m.ID)
		}
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	if code, out, errs := run(t, "call", "--store", "memory", "--ca-file", ca, srv.URL+"/mcp"); code != 0 || !strings.Contains(out, "behind-a-private-ca") {
		t.Fatalf("with --ca-file: %d %s %s", code, out, errs)
	}
	if code, _, errs := run(t, "call", "--store", "memory", srv.URL+"/mcp"); code == 0 || !strings.Contains(errs, "certificate") {
		t.Fatalf("without --ca-file: %d %s", code, errs)
	}
}

func TestReadHeaderFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "h")
	os.WriteFile(f, []byte("# a comment\nX-Api-Key: s3cret\n\nX-Tenant: acme\n"), 0o600)
	hs, err := readHeaderFile(f)
	if err != nil || len(hs) != 2 || hs[0] != "X-Api-Key: s3cret" {
		t.Fatalf("%v %v", hs, err)
	}
	os.WriteFile(f, []byte("no colon here\n"), 0o600)
	if _, err := readHeaderFile(f); err == nil || !strings.Contains(err.Error(), "line 1") || strings.Contains(err.Error(), "no colon") {
		t.Fatalf("bad line: %v", err)
	}
}

// TestBuiltinRefusesUnreadableClientSecret: a configured client whose
// secret cannot be read is an error, not a public client.
func TestBuiltinRefusesUnreadableClientSecret(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gw.yaml")
	os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nauthorization_server: builtin\nbuiltin:\n  store: "+filepath.Join(dir, "as.db")+
		"\n  clients:\n    - id: machine\n      secret_env: UNSET_SECRET\n      grant_types: [client_credentials]\n      scopes: [mcp:read]\nupstreams:\n  - url: http://127.0.0.1:9/mcp\n"), 0o600)
	code, _, errs := run(t, "serve", "--config", cfg)
	if code != 1 || !strings.Contains(errs, "builtin.clients[0].secret_env") || !strings.Contains(errs, "UNSET_SECRET") {
		t.Fatalf("exit %d: %s", code, errs)
	}
}
