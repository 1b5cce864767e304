// Package testutil holds in-process fakes for fast unit tests: an issuer
// that serves RFC 8414 metadata and a JWKS and mints tokens, including
// deliberately broken ones for attack tests. The e2e bench proves the same
// behaviour against a certified OpenID provider.
package testutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// IdP is a loopback issuer with one RSA and one EC signing key.
type IdP struct {
	Server *httptest.Server
	Issuer string
	RSA    *rsa.PrivateKey
	EC     *ecdsa.PrivateKey
	// JWKSFetches counts JWKS downloads.
	JWKSFetches atomic.Int64
}

// NewIdP starts an issuer; it stops with the test.
func NewIdP(t testing.TB) *IdP {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	idp := &IdP{RSA: rk, EC: ek}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                           idp.Issuer,
			"jwks_uri":                         idp.Issuer + "/jwks",
			"authorization_endpoint":           idp.Issuer + "/authorize",
			"token_endpoint":                   idp.Issuer + "/token",
			"code_challenge_methods_supported": []string{"S256"},
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		idp.JWKSFetches.Add(1)
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: rk.Public(), KeyID: "rsa1", Algorithm: "RS256", Use: "sig"},
			{Key: ek.Public(), KeyID: "ec1", Algorithm: "ES256", Use: "sig"},
		}}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	})
	idp.Server = httptest.NewServer(mux)
	idp.Issuer = idp.Server.URL
	t.Cleanup(idp.Server.Close)
	return idp
}

// Claims returns a valid claim set for subject and audience.
func (i *IdP) Claims(sub, aud string, scopes string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": i.Issuer, "sub": sub, "aud": aud, "client_id": "test-client",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "scope": scopes,
		"jti": base64.RawURLEncoding.EncodeToString(randBytes(9)),
	}
}

// Sign signs claims with the RSA key (RS256, kid rsa1) unless alg is ES256.
func (i *IdP) Sign(t testing.TB, alg string, claims map[string]any) string {
	t.Helper()
	var key jose.SigningKey
	switch alg {
	case "ES256":
		key = jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: i.EC, KeyID: "ec1"}}
	default:
		key = jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: i.RSA, KeyID: "rsa1"}}
	}
	return SignWith(t, key, claims, "at+jwt")
}

// SignWith signs claims with any key and typ.
func SignWith(t testing.TB, key jose.SigningKey, claims map[string]any, typ string) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
	s, err := jose.NewSigner(key, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Unsigned returns an alg "none" token (attack).
func Unsigned(claims map[string]any) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt"}`))
	p, _ := json.Marshal(claims)
	return h + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

// HS256WithPublicKey signs claims with HMAC keyed by the RSA public key's
// DER bytes: the classic algorithm-confusion attack.
func (i *IdP) HS256WithPublicKey(claims map[string]any) string {
	der, _ := x509.MarshalPKIXPublicKey(i.RSA.Public())
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"at+jwt","kid":"rsa1"}`))
	p, _ := json.Marshal(claims)
	in := h + "." + base64.RawURLEncoding.EncodeToString(p)
	m := hmac.New(sha256.New, der)
	m.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Thumbprint is the RFC 7638 SHA-256 thumbprint of pub, base64url.
func Thumbprint(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
