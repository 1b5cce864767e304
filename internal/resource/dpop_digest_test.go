package resource

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/dpop"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

func TestRequireATJWTForBuiltinIssuer(t *testing.T) {
	idp := testutil.NewIdP(t)
	v := newVerifier(t, idp, func(o *Options) { o.Issuers[0].RequireATJWT = true })
	rsa := jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: idp.RSA, KeyID: "rsa1"}}
	if _, err := v.Authenticate(req("Bearer "+idp.Sign(t, "RS256", idp.Claims("a", endpoint, ""))), nil); err != nil {
		t.Fatalf("at+jwt refused: %v", err)
	}
	for _, typ := range []string{"JWT", "jwt", "application/jwt"} {
		if _, err := v.Authenticate(req("Bearer "+testutil.SignWith(t, rsa, idp.Claims("a", endpoint, ""), typ)), nil); err == nil {
			t.Errorf("typ %s accepted from an issuer that issues at+jwt", typ)
		}
	}
	s, _ := jose.NewSigner(rsa, nil)
	b, _ := json.Marshal(idp.Claims("a", endpoint, ""))
	jws, _ := s.Sign(b)
	untyped, _ := jws.CompactSerialize()
	if _, err := v.Authenticate(req("Bearer "+untyped), nil); err == nil {
		t.Error("untyped JWT accepted from an issuer that issues at+jwt")
	}
}

// TestDPoPContentDigestModes: optional (default) accepts standard proofs
// and checks a present content_digest against the body once it is read;
// required refuses a POST proof without one from the headers alone.
func TestDPoPContentDigestModes(t *testing.T) {
	idp := testutil.NewIdP(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jkt, _ := dpop.Thumbprint(key.Public())
	c := idp.Claims("dora", endpoint, "mcp:read")
	c["cnf"] = map[string]any{"jkt": jkt}
	tok := idp.Sign(t, "ES256", c)
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	mk := func(method string, digest bool) *http.Request {
		pf, err := dpop.NewProof(key, "ES256", method, endpoint, dpop.ProofOptions{AccessToken: tok, Body: body, ContentDigest: digest})
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest(method, endpoint, nil)
		r.Header.Set("Authorization", "DPoP "+tok)
		r.Header.Set("DPoP", pf)
		return r
	}
	opt := newVerifier(t, idp, nil)
	if _, bc, err := opt.AuthenticateHeaders(mk("POST", false)); err != nil || bc.Pending() {
		t.Fatalf("standard proof: %v (pending %v)", err, bc.Pending())
	}
	_, bc, err := opt.AuthenticateHeaders(mk("POST", true))
	if err != nil || !bc.Pending() {
		t.Fatalf("proof with content_digest, from the headers: %v (pending %v)", err, bc.Pending())
	}
	if err := bc.Check(body); err != nil {
		t.Fatalf("matching body: %v", err)
	}
	_, bc, _ = opt.AuthenticateHeaders(mk("POST", true))
	if err := bc.Check([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`)); err == nil || !strings.Contains(err.Error(), "content_digest") {
		t.Fatalf("other body: %v", err)
	}
	if _, err := opt.Authenticate(mk("POST", true), []byte("{}")); err == nil {
		t.Fatal("Authenticate: other body accepted")
	}

	req := newVerifier(t, idp, func(o *Options) { o.DPoPContentDigest = "required" })
	if _, _, err := req.AuthenticateHeaders(mk("POST", false)); err == nil || !strings.Contains(err.Error(), "content_digest") {
		t.Fatalf("required: proof without content_digest: %v", err)
	}
	if _, err := req.Authenticate(mk("POST", true), body); err != nil {
		t.Fatalf("required: with content_digest: %v", err)
	}
	if _, err := req.Authenticate(mk("GET", false), nil); err != nil {
		t.Fatalf("required applies to POST only: GET %v", err)
	}
	if _, err := New(context.Background(), Options{Resource: endpoint, Endpoint: endpoint, Issuers: []config.Issuer{{Issuer: idp.Issuer}}, DPoPContentDigest: "yes"}); err == nil {
		t.Fatal("dpop_content_digest yes accepted")
	}
}
