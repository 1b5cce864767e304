package dpop

import (
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// The current MCP DPoP profile (SEP-1932) "uses DPoP as defined in RFC
// 9449, without introducing MCP-specific claims, request body digests, or
// additional proof material": a proof without content_digest verifies
// unless the caller opts in to requiring one; a present claim is checked,
// now or (DeferBody) once the body has been read.
func TestContentDigestOptional(t *testing.T) {
	ek := ecKey(t)
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	v := NewVerifier(VerifierOptions{})
	std, _ := NewProof(ek, "ES256", "POST", endpoint, ProofOptions{AccessToken: "t"})
	if p, err := v.Verify(std, Params{Method: "POST", URL: endpoint, AccessToken: "t", Body: body}); err != nil || p.ContentDigest != "" {
		t.Fatalf("standard proof: %v", err)
	}
	std, _ = NewProof(ek, "ES256", "POST", endpoint, ProofOptions{AccessToken: "t"})
	if _, err := v.Verify(std, Params{Method: "POST", URL: endpoint, AccessToken: "t", RequireContentDigest: true}); err == nil {
		t.Fatal("required content_digest: standard proof accepted")
	}
	withDigest, _ := NewProof(ek, "ES256", "POST", endpoint, ProofOptions{AccessToken: "t", Body: body, ContentDigest: true})
	p, err := v.Verify(withDigest, Params{Method: "POST", URL: endpoint, AccessToken: "t", DeferBody: true, RequireContentDigest: true})
	if err != nil || p.ContentDigest == "" {
		t.Fatalf("deferred: %v", err)
	}
	if err := p.CheckBody(body); err != nil {
		t.Fatalf("deferred, matching body: %v", err)
	}
	if err := p.CheckBody([]byte("{}")); err == nil {
		t.Fatal("deferred, other body accepted")
	}
	withDigest, _ = NewProof(ek, "ES256", "POST", endpoint, ProofOptions{AccessToken: "t", Body: body, ContentDigest: true})
	if _, err := v.Verify(withDigest, Params{Method: "POST", URL: endpoint, AccessToken: "t", Body: []byte("{}")}); err == nil {
		t.Fatal("present content_digest over another body accepted")
	}
	c := goodClaims("t", body)
	c["content_digest"] = ""
	if _, err := v.Verify(rawProof(t, ek, jose.ES256, true, "dpop+jwt", c), Params{Method: "POST", URL: endpoint, AccessToken: "t", Body: body}); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty content_digest: %v", err)
	}
}
