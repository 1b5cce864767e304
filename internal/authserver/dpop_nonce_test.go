package authserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/dpop"
)

// TestTokenEndpointDPoPNonces: RFC 9449 §8 at the token endpoint with the
// stateless nonces of the MCP DPoP profile ("a server supplied nonce ...
// e.g. by using an encrypted timestamp as the nonce value"): 400
// use_dpop_nonce with DPoP-Nonce, then the proof with that nonce passes; a
// nonce of another key, an expired one and a forged one are refused. A
// configured client with dpop_bound_access_tokens gets nothing without a
// proof, with the client credentials grant too.
func TestTokenEndpointDPoPNonces(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef-nonce-secret")
	var clock time.Time
	now := func() time.Time { return clock }
	clock = time.Now()
	nonces, err := dpop.NewAEADNonces(dpop.AEADNonceOptions{Secret: secret, Purpose: "https://gw.example", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *Config) {
		c.DPoPNonces = nonces
		c.Clients = append(c.Clients, StaticClient{ID: "bound", Secret: "bound-secret", GrantTypes: []string{"client_credentials"}, Scopes: []string{"mcp:read"}, DPoPBound: true})
	})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {resourceID}}
	auth := func(id, secret string) map[string]string {
		return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))}
	}
	withProof := func(hdr map[string]string, nonce string) map[string]string {
		p, _ := dpop.NewProof(key, "ES256", "POST", f.srv.URL+"/token", dpop.ProofOptions{Nonce: nonce})
		out := map[string]string{"DPoP": p}
		for k, v := range hdr {
			out[k] = v
		}
		return out
	}
	// The bound client without a proof.
	if r, body := f.postForm("/token", form, auth("bound", "bound-secret")); r.StatusCode != 400 || !jsonHas(body, "error", "invalid_dpop_proof") {
		t.Fatalf("bound client, client credentials, no proof: %d %s", r.StatusCode, body)
	}
	// A proof without a nonce: use_dpop_nonce and a nonce.
	r, body := f.postForm("/token", form, withProof(auth("bound", "bound-secret"), ""))
	n := r.Header.Get("DPoP-Nonce")
	if r.StatusCode != 400 || !jsonHas(body, "error", "use_dpop_nonce") || n == "" {
		t.Fatalf("proof without nonce: %d %s nonce %q", r.StatusCode, body, n)
	}
	if _, ok := nonces.Check(n); !ok {
		t.Fatal("the DPoP-Nonce is not one of the source's nonces")
	}
	r, body = f.postForm("/token", form, withProof(auth("bound", "bound-secret"), n))
	var tok map[string]any
	json.Unmarshal([]byte(body), &tok)
	if r.StatusCode != 200 || tok["token_type"] != "DPoP" {
		t.Fatalf("proof with the nonce: %d %s", r.StatusCode, body)
	}
	// Nonces of another key, forged or expired: use_dpop_nonce again.
	other, _ := dpop.NewAEADNonces(dpop.AEADNonceOptions{Purpose: "https://gw.example", Now: now})
	forged := []byte(n)
	forged[len(forged)/2] ^= 1
	old := n
	for name, bad := range map[string]string{"other key": other.Current(), "forged": string(forged), "garbage": "abc"} {
		r, body := f.postForm("/token", form, withProof(auth("bound", "bound-secret"), bad))
		if r.StatusCode != 400 || !jsonHas(body, "error", "use_dpop_nonce") || r.Header.Get("DPoP-Nonce") == "" {
			t.Errorf("%s nonce: %d %s", name, r.StatusCode, body)
		}
	}
	clock = clock.Add(5*time.Minute + time.Second)
	if r, body := f.postForm("/token", form, withProof(auth("bound", "bound-secret"), old)); r.StatusCode != 400 || !jsonHas(body, "error", "use_dpop_nonce") {
		t.Errorf("expired nonce: %d %s", r.StatusCode, body)
	}
	// An unbound client may still ask for a Bearer token without a proof.
	if r, body := f.postForm("/token", form, auth("machine", "machine-secret")); r.StatusCode != 200 {
		t.Errorf("unbound client without proof: %d %s", r.StatusCode, body)
	}
}

// TestMetadataDeclaresDPoPAndClientCredentials (issue 12 item 6): what the
// extensions' texts require of the authorization server metadata.
//
// DPoP profile (ext-auth specification/draft/dpop-extension.mdx):
// "Authorization servers supporting DPoP MUST include the
// dpop_signing_alg_values_supported field ... Only asymmetric signature
// algorithms are permitted; the none algorithm MUST NOT be included."
//
// Client credentials (ext-auth specification/draft/oauth-client-
// credentials.mdx): "When supporting the client credentials flow,
// Authorization Server metadata MUST include ...
// token_endpoint_auth_methods_supported: MUST include at least one of:
// "private_key_jwt", "client_secret_basic"".
func TestMetadataDeclaresDPoPAndClientCredentials(t *testing.T) {
	f := newFixture(t, nil)
	resp, err := f.http.Get(f.srv.URL + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct {
		DPoPAlgs    []string `json:"dpop_signing_alg_values_supported"`
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
		Grants      []string `json:"grant_types_supported"`
		SigningAlgs []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	}
	json.NewDecoder(resp.Body).Decode(&m)
	if len(m.DPoPAlgs) == 0 || !slices.Contains(m.DPoPAlgs, "ES256") {
		t.Errorf("dpop_signing_alg_values_supported %v: want asymmetric algorithms with ES256", m.DPoPAlgs)
	}
	for _, a := range m.DPoPAlgs {
		if a == "none" || a[0] == 'H' {
			t.Errorf("dpop_signing_alg_values_supported lists %q", a)
		}
	}
	if !slices.Contains(m.Grants, "client_credentials") || !slices.Contains(m.AuthMethods, "client_secret_basic") {
		t.Errorf("client credentials: grants %v auth methods %v", m.Grants, m.AuthMethods)
	}
	if slices.Contains(m.AuthMethods, "private_key_jwt") && len(m.SigningAlgs) == 0 {
		t.Error("private_key_jwt without token_endpoint_auth_signing_alg_values_supported")
	}
}
