package authserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"slices"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// FuzzParseAssertion: the assertion parser never panics, and whatever it
// accepts has exactly one signature with an allowed algorithm and no
// embedded key; verification with an unrelated key never succeeds.
func FuzzParseAssertion(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	t := &testing.T{}
	f.Add(signJWT(t, key, jose.ES256, "k1", typIDJAG, map[string]any{"iss": "https://idp.example", "exp": time.Now().Unix()}))
	f.Add(unsignedJWT(typIDJAG, map[string]any{"iss": "x"}))
	f.Add("eyJhbGciOiJFUzI1NiJ9.e30.AAAA")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		a, err := parseAssertion(raw)
		if err != nil {
			return
		}
		if len(a.tok.Headers) != 1 || !slices.Contains(assertionAlgs, jose.SignatureAlgorithm(a.tok.Headers[0].Algorithm)) || a.tok.Headers[0].JSONWebKey != nil {
			t.Fatalf("accepted %q with headers %+v", raw, a.tok.Headers)
		}
		var out map[string]any
		if a.verify([]jose.JSONWebKey{{Key: other.Public(), KeyID: a.kid}}, &out) == nil {
			t.Fatalf("%q verified with an unrelated key", raw)
		}
		_ = a.issuer()
	})
}
