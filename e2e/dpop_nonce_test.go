//go:build e2e

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/dpop"
)

// TestE2EStatelessDPoPNoncesAcrossReplicas: two `mcpgate serve` replicas
// with the same dpop_nonces.key_file and no shared state. Replica A runs
// the built-in authorization server with builtin.dpop_nonce and a client
// registered with dpop_bound_access_tokens; both demand nonces on the
// upstream (dpop: required, dpop_nonce: true).
//
// The MCP DPoP profile (ext-auth specification/draft/dpop-extension.mdx):
// "A stateless MCP server may provide additional replay protection by using
// a server supplied nonce ... (e.g. by using an encrypted timestamp as the
// nonce value ...)"; and "When this field [dpop_bound_access_tokens] is set
// to true, the authorization server MUST reject token requests from the
// client that do not include a valid DPoP proof."
func TestE2EStatelessDPoPNoncesAcrossReplicas(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "nonce.key")
	os.WriteFile(keyFile, []byte("e2e-shared-dpop-nonce-secret-0123456789abcdef\n"), 0o600)
	up := startEverythingHTTP(t, "streamableHttp")
	portA, portB := FreePort(t), FreePort(t)
	public := fmt.Sprintf("http://127.0.0.1:%d", portA)
	common := fmt.Sprintf(`public_url: %s
dpop_nonces:
  key_file: %s
  lifetime: 2m
upstreams:
  - url: %s
    scopes_supported: [mcp:read]
    dpop: required
    dpop_nonce: true
`, public, keyFile, up)
	cfgA := fmt.Sprintf(`listen: 127.0.0.1:%d
authorization_server: builtin
builtin:
  store: %s
  dpop_nonce: true
  clients:
    - id: machine
      secret_env: MACHINE_SECRET
      grant_types: [client_credentials]
      scopes: [mcp:read]
      dpop_bound_access_tokens: true
`, portA, filepath.Join(dir, "as.db")) + common
	cfgB := fmt.Sprintf(`listen: 127.0.0.1:%d
allowed_hosts: ["127.0.0.1:%d"]
issuers:
  - issuer: %s
`, portB, portB, public) + common
	start := func(name, cfg string) *Gateway {
		file := filepath.Join(dir, name+".yaml")
		os.WriteFile(file, []byte(cfg), 0o600)
		p, _ := Start(t, name, []string{Mcpgate(t), "serve", "--config", file}, []string{"MACHINE_SECRET=m-secret"}, regexp.MustCompile(`mcpgate serving`))
		return &Gateway{URL: "http://127.0.0.1:" + regexp.MustCompile(`:(\d+)\n`).FindStringSubmatch(cfg)[1], Proc: p}
	}
	a := start("replica-a", cfgA)
	a.WaitReady(t)
	b := start("replica-b", cfgB)
	b.WaitReady(t)

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	proof := func(htu, tok, nonce string) string {
		p, err := dpop.NewProof(key, "ES256", "POST", htu, dpop.ProofOptions{AccessToken: tok, Nonce: nonce})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	token := func(dpopHdr string) (int, http.Header, map[string]any) {
		form := url.Values{"grant_type": {"client_credentials"}, "resource": {public + "/mcp"}, "scope": {"mcp:read"}}
		req, _ := http.NewRequest("POST", a.URL+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("machine", "m-secret")
		if dpopHdr != "" {
			req.Header.Set("DPoP", dpopHdr)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, resp.Header, m
	}
	mcp := func(g *Gateway, tok, nonce string) (int, http.Header, string) {
		req, _ := http.NewRequest("POST", g.URL+"/mcp", strings.NewReader(initialize))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "DPoP "+tok)
		req.Header.Set("DPoP", proof(public+"/mcp", tok, nonce)) // htu: the public URL, whichever replica answers
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(body)
	}

	if st, _, m := token(""); st != 400 || m["error"] != "invalid_dpop_proof" {
		t.Fatalf("bound client without a proof: %d %v", st, m)
	}
	st, h, m := token(proof(public+"/token", "", ""))
	n1 := h.Get("DPoP-Nonce")
	if st != 400 || m["error"] != "use_dpop_nonce" || n1 == "" {
		t.Fatalf("proof without a nonce at the token endpoint: %d %v nonce %q", st, m, n1)
	}
	st, _, m = token(proof(public+"/token", "", n1))
	tok, _ := m["access_token"].(string)
	if st != 200 || m["token_type"] != "DPoP" || tok == "" {
		t.Fatalf("token request with the nonce: %d %v", st, m)
	}
	// The authorization server's nonce is the origin's nonce: replica A's
	// MCP endpoint and replica B (same key, no shared state) accept it.
	if st, _, body := mcp(a, tok, n1); st != 200 {
		t.Fatalf("replica A with the AS nonce: %d %s", st, body)
	}
	if st, _, body := mcp(b, tok, n1); st != 200 {
		t.Fatalf("replica B with replica A's nonce: %d %s", st, body)
	}
	// No nonce or a forged one: 401 use_dpop_nonce with a fresh nonce,
	// which the other replica accepts.
	forged := []byte(n1)
	forged[8] ^= 1
	for _, bad := range []string{"", string(forged), "not-a-nonce"} {
		st, h, body := mcp(b, tok, bad)
		if st != 401 || !strings.Contains(strings.Join(h.Values("WWW-Authenticate"), ", "), "use_dpop_nonce") || h.Get("DPoP-Nonce") == "" {
			t.Fatalf("replica B, nonce %q: %d %v %s", bad, st, h, body)
		}
		if st, _, body := mcp(a, tok, h.Get("DPoP-Nonce")); st != 200 {
			t.Fatalf("replica A with replica B's fresh nonce: %d %s", st, body)
		}
	}
}
