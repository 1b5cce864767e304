package resource

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/dpop"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

// TestDPoPNonceFromOneInstanceAcceptedByAnother: two gateway instances
// (verifiers) built from the same dpop_nonces.key_file accept each
// other's nonces without shared state; an instance with another key, one
// with only a random key, an expired nonce and a forged one are refused
// with use_dpop_nonce and a fresh nonce. The MCP DPoP profile: "A
// stateless MCP server may provide additional replay protection by using a
// server supplied nonce ... (e.g. by using an encrypted timestamp as the
// nonce value which can be decrypted, parsed and verified to be within an
// acceptable time window when returned in DPoP Proof)."
func TestDPoPNonceFromOneInstanceAcceptedByAnother(t *testing.T) {
	dir := t.TempDir()
	write := func(name, v string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	shared := config.DPoPNonces{KeyFile: write("k1", "shared-nonce-secret-for-every-replica-0123"), Lifetime: config.Duration{Duration: time.Minute}}
	otherCfg := config.DPoPNonces{KeyFile: write("k2", "a-different-secret-of-another-deployment")}
	idp := testutil.NewIdP(t)
	now := time.Now
	instance := func(n config.DPoPNonces) *Verifier {
		src, err := NewNonceSource(n, endpoint, nil)
		if err != nil {
			t.Fatal(err)
		}
		return newVerifier(t, idp, func(o *Options) { o.DPoP = "required"; o.DPoPNonce = true; o.Nonces = src; o.Now = now })
	}
	a, b, c := instance(shared), instance(shared), instance(otherCfg)
	lone := newVerifier(t, idp, func(o *Options) { o.DPoP = "required"; o.DPoPNonce = true })

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jkt, _ := dpop.Thumbprint(key.Public())
	cl := idp.Claims("dora", endpoint, "mcp:read")
	cl["cnf"] = map[string]any{"jkt": jkt}
	tok := idp.Sign(t, "ES256", cl)
	call := func(v *Verifier, nonce string) error {
		p, _ := dpop.NewProof(key, "ES256", "POST", endpoint, dpop.ProofOptions{AccessToken: tok, Nonce: nonce})
		r := httptest.NewRequest("POST", endpoint, strings.NewReader("{}"))
		r.Header.Set("Authorization", "DPoP "+tok)
		r.Header.Set("DPoP", p)
		_, err := v.Authenticate(r, []byte("{}"))
		return err
	}
	nonceOf := func(err error) string {
		t.Helper()
		var re *Error
		if !errors.As(err, &re) || re.Code != dpop.CodeUseNonce || re.Nonce == "" {
			t.Fatalf("want use_dpop_nonce with a nonce, got %v", err)
		}
		return re.Nonce
	}
	n := nonceOf(call(a, ""))
	if err := call(b, n); err != nil {
		t.Fatalf("instance b refuses instance a's nonce: %v", err)
	}
	if err := call(a, n); err != nil {
		t.Fatalf("instance a refuses its own nonce: %v", err)
	}
	nonceOf(call(c, n))    // another key
	nonceOf(call(lone, n)) // a random key of its own
	forged := []byte(n)
	forged[10] ^= 1
	nonceOf(call(b, string(forged)))
	// Expiry is covered with a test clock in package dpop
	// (TestAEADNoncesAcrossReplicas) and at the token endpoint.
	if _, err := NewNonceSource(config.DPoPNonces{KeyFile: write("short", "too-short")}, endpoint, nil); err == nil || !strings.Contains(err.Error(), "dpop_nonces") {
		t.Errorf("short secret: %v", err)
	}
}
