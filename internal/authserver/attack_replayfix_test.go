package authserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"net/url"
	"testing"

	"github.com/mcpgate/mcpgate/internal/dpop"
)

// TestAttackTokenEndpointDPoPReplayPerClient: one client sending many DPoP
// proofs to /token fills only its own share of the jti store; another
// client's proof is still accepted, and a replayed proof is still refused.
// Before, one store of 100,000 entries was shared by every caller and,
// full, refused everyone ("could not be checked for replay").
func TestAttackTokenEndpointDPoPReplayPerClient(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.DPoPReplay = dpop.NewOwnedMemoryReplay(12, 4)
		c.Clients = append(c.Clients,
			StaticClient{ID: "flooder", Secret: "flooder-secret", GrantTypes: []string{"client_credentials"}, Scopes: []string{"mcp:read"}},
			StaticClient{ID: "victim", Secret: "victim-secret", GrantTypes: []string{"client_credentials"}, Scopes: []string{"mcp:read"}})
	})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {resourceID}}
	req := func(id, secret, proof string) (int, string) {
		if proof == "" {
			proof, _ = dpop.NewProof(key, "ES256", "POST", f.srv.URL+"/token", dpop.ProofOptions{})
		}
		r, body := f.postForm("/token", form, map[string]string{
			"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret)), "DPoP": proof,
		})
		return r.StatusCode, body
	}
	counts := map[int]int{}
	for range 30 {
		st, _ := req("flooder", "flooder-secret", "")
		counts[st]++
	}
	if counts[200] != 4 || counts[429] != 26 {
		t.Errorf("flooder: %v, want 4 accepted (its share) and 26 refused with 429", counts)
	}
	proof, _ := dpop.NewProof(key, "ES256", "POST", f.srv.URL+"/token", dpop.ProofOptions{})
	if st, body := req("victim", "victim-secret", proof); st != 200 {
		t.Fatalf("victim after the flood: %d %s", st, body)
	}
	if st, body := req("victim", "victim-secret", proof); st != 400 || !jsonHas(body, "error", "invalid_dpop_proof") {
		t.Errorf("victim's replayed proof: %d %s, want 400 invalid_dpop_proof", st, body)
	}
	if st, body := req("flooder", "flooder-secret", proof); st != 400 {
		t.Errorf("victim's proof replayed by another client: %d %s, want 400", st, body)
	}
}
