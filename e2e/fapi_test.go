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

// TestFAPIProfileDPoPNonces: the OP's FAPI-style profile (PAR required,
// DPoP with server nonces) issues a DPoP-bound token after a nonce retry;
// the gateway, configured with dpop: required and dpop_nonce, demands its
// own nonce the same way (use_dpop_nonce + DPoP-Nonce), then serves.
func TestFAPIProfileDPoPNonces(t *testing.T) {
	op := StartOP(t, "fapi")
	resp, err := http.Get(op.Issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]any
	json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	if meta["require_pushed_authorization_requests"] != true || meta["dpop_signing_alg_values_supported"] == nil {
		t.Fatalf("fapi metadata: PAR required %v, dpop algs %v", meta["require_pushed_authorization_requests"], meta["dpop_signing_alg_values_supported"])
	}

	up := startEverythingHTTP(t, "streamableHttp")
	port := FreePort(t)
	cfg := fmt.Sprintf("listen: 127.0.0.1:%d\nissuers:\n  - issuer: %s\nupstreams:\n  - url: %s\n    dpop: required\n    dpop_nonce: true\n", port, op.Issuer, up)
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	os.WriteFile(file, []byte(cfg), 0o600)
	p, _ := Start(t, "mcpgate", []string{Mcpgate(t), "serve", "--config", file}, nil, regexp.MustCompile(`mcpgate serving`))
	gw := &Gateway{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Proc: p}
	gw.WaitReady(t)
	mcpURL := gw.Endpoint("/mcp")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	// Token request: the OP asks for its nonce first.
	tokenReq := func(nonce string) *http.Response {
		form := url.Values{"grant_type": {"client_credentials"}, "resource": {mcpURL}, "scope": {"mcp:read"}}
		req, _ := http.NewRequest("POST", op.Issuer+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("mcp-cc", "cc-secret")
		proof, _ := dpop.NewProof(key, "ES256", "POST", op.Issuer+"/token", dpop.ProofOptions{Nonce: nonce})
		req.Header.Set("DPoP", proof)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := tokenReq("")
	nonce := r.Header.Get("DPoP-Nonce")
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 400 || nonce == "" || !strings.Contains(string(b), "use_dpop_nonce") {
		t.Fatalf("first token request: %d %s (nonce %q)", r.StatusCode, b, nonce)
	}
	r = tokenReq(nonce)
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	json.NewDecoder(r.Body).Decode(&tok)
	r.Body.Close()
	if tok.AccessToken == "" || !strings.EqualFold(tok.TokenType, "DPoP") {
		t.Fatalf("token with nonce: %d %+v", r.StatusCode, tok)
	}

	call := func(nonce string) (int, http.Header, string) {
		proof, _ := dpop.NewProof(key, "ES256", "POST", mcpURL, dpop.ProofOptions{AccessToken: tok.AccessToken, Nonce: nonce, Body: []byte(initialize), ContentDigest: true})
		return postHeaders(t, mcpURL, initialize, http.Header{"Authorization": {"DPoP " + tok.AccessToken}, "Dpop": {proof}})
	}
	status, hdr, body := call("")
	gwNonce := hdr.Get("DPoP-Nonce")
	if status != 401 || gwNonce == "" || !strings.Contains(strings.Join(hdr.Values("WWW-Authenticate"), " "), `error="use_dpop_nonce"`) {
		t.Fatalf("gateway without nonce: %d %v %s", status, hdr, body)
	}
	if status, _, body := call(gwNonce); status != 200 {
		t.Fatalf("gateway with its nonce: %d %s", status, body)
	}
}
