package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const endpoint = "https://mcp.example.com/mcp"

func ecKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rawProof signs arbitrary header fields and claims (for attacks).
func rawProof(t *testing.T, key any, alg jose.SignatureAlgorithm, embed bool, typ string, claims map[string]any) string {
	t.Helper()
	opts := &jose.SignerOptions{EmbedJWK: embed}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

func goodClaims(tok string, body []byte) map[string]any {
	return map[string]any{"jti": base64.RawURLEncoding.EncodeToString([]byte(time.Now().String())), "htm": "POST", "htu": endpoint,
		"iat": time.Now().Unix(), "ath": ATH(tok), "content_digest": ContentDigest(body)}
}

func TestRoundTripAndThumbprint(t *testing.T) {
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	ek := ecKey(t)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edk, _ := ed25519.GenerateKey(rand.Reader)
	v := NewVerifier(VerifierOptions{})
	cases := []struct {
		alg string
		sig signer
	}{{"ES256", ek}, {"RS256", rk}, {"PS256", rk}, {"EdDSA", edk}}
	for _, c := range cases {
		p, err := NewProof(c.sig, c.alg, "POST", endpoint+"?q=1#f", ProofOptions{AccessToken: "tok", Body: body, ContentDigest: true})
		if err != nil {
			t.Fatal(c.alg, err)
		}
		got, err := v.Verify(p, Params{Method: "POST", URL: "HTTPS://MCP.example.com:443/mcp", AccessToken: "tok", Body: body, RequireContentDigest: true})
		if err != nil {
			t.Fatalf("%s: %v", c.alg, err)
		}
		want, _ := Thumbprint(c.sig.Public())
		if got.JKT != want || got.JTI == "" {
			t.Fatalf("%s: jkt %s want %s", c.alg, got.JKT, want)
		}
	}
	if _, err := NewProof(ek, "HS256", "POST", endpoint, ProofOptions{}); err == nil {
		t.Fatal("symmetric proof alg accepted by NewProof")
	}
}

func TestAttacks(t *testing.T) {
	ek := ecKey(t)
	body := []byte(`{"a":1}`)
	tok := "access-token"
	params := Params{Method: "POST", URL: endpoint, AccessToken: tok, Body: body, RequireContentDigest: true}
	mut := func(f func(map[string]any)) string {
		c := goodClaims(tok, body)
		f(c)
		return rawProof(t, ek, jose.ES256, true, "dpop+jwt", c)
	}
	hsKey := []byte("0123456789abcdef0123456789abcdef")
	noneProof := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"dpop+jwt"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"jti":"x","htm":"POST","htu":"`+endpoint+`"}`)) + "."
	// A jwk carrying the private key.
	priv := jose.JSONWebKey{Key: ek, Algorithm: "ES256"}
	privJSON, _ := priv.MarshalJSON()
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","typ":"dpop+jwt","jwk":` + string(privJSON) + `}`))
	cl, _ := json.Marshal(goodClaims(tok, body))
	privProof := hdr + "." + base64.RawURLEncoding.EncodeToString(cl) + ".AAAA"
	rows := map[string]string{
		"empty":             "",
		"garbage":           "a.b.c",
		"alg none":          noneProof,
		"HS256":             rawProof(t, hsKey, jose.HS256, false, "dpop+jwt", goodClaims(tok, body)),
		"no embedded jwk":   rawProof(t, ek, jose.ES256, false, "dpop+jwt", goodClaims(tok, body)),
		"wrong typ":         rawProof(t, ek, jose.ES256, true, "JWT", goodClaims(tok, body)),
		"private jwk":       privProof,
		"other URL":         mut(func(c map[string]any) { c["htu"] = "https://mcp.example.com/other" }),
		"other method":      mut(func(c map[string]any) { c["htm"] = "GET" }),
		"other body":        mut(func(c map[string]any) { c["content_digest"] = ContentDigest([]byte("x")) }),
		"no content_digest": mut(func(c map[string]any) { delete(c, "content_digest") }),
		"wrong ath":         mut(func(c map[string]any) { c["ath"] = ATH("other") }),
		"no ath":            mut(func(c map[string]any) { delete(c, "ath") }),
		"iat too old":       mut(func(c map[string]any) { c["iat"] = time.Now().Add(-10 * time.Minute).Unix() }),
		"iat in the future": mut(func(c map[string]any) { c["iat"] = time.Now().Add(10 * time.Minute).Unix() }),
		"no jti":            mut(func(c map[string]any) { delete(c, "jti") }),
		"base64url digest":  mut(func(c map[string]any) { c["content_digest"] = strings.ReplaceAll(ContentDigest(body), "+", "-") + "x" }),
	}
	v := NewVerifier(VerifierOptions{})
	for name, proof := range rows {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(proof, params)
			var de *Error
			if !errors.As(err, &de) || de.Code != CodeInvalidProof {
				t.Fatalf("accepted or wrong error: %v", err)
			}
			if strings.Contains(de.Description, tok) {
				t.Fatal("description leaks the token")
			}
		})
	}
	t.Run("replay", func(t *testing.T) {
		p := mut(func(map[string]any) {})
		if _, err := v.Verify(p, params); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(p, params); err == nil {
			t.Fatal("replayed proof accepted")
		}
	})
}

func TestNonces(t *testing.T) {
	n := NewHMACNonces(time.Minute)
	base := time.Now().Truncate(time.Minute)
	n.now = func() time.Time { return base }
	v := NewVerifier(VerifierOptions{Nonces: n})
	ek := ecKey(t)
	p, _ := NewProof(ek, "ES256", "POST", endpoint, ProofOptions{})
	_, err := v.Verify(p, Params{Method: "POST", URL: endpoint})
	var de *Error
	if !errors.As(err, &de) || de.Code != CodeUseNonce || de.Nonce == "" {
		t.Fatalf("want use_dpop_nonce with a nonce: %v", err)
	}
	p, _ = NewProof(ek, "ES256", "POST", endpoint, ProofOptions{Nonce: de.Nonce})
	if _, err := v.Verify(p, Params{Method: "POST", URL: endpoint}); err != nil {
		t.Fatal(err)
	}
	n.now = func() time.Time { return base.Add(90 * time.Second) }
	if !n.Valid(de.Nonce) {
		t.Fatal("nonce of the previous slot must stay valid")
	}
	n.now = func() time.Time { return base.Add(3 * time.Minute) }
	if n.Valid(de.Nonce) || n.Valid("forged") {
		t.Fatal("expired or forged nonce accepted")
	}
}

func TestReplayStoreFailsClosedWhenFull(t *testing.T) {
	m := NewMemoryReplay(2)
	until := time.Now().Add(time.Minute)
	m.Seen(t.Context(), "a", until)
	m.Seen(t.Context(), "b", until)
	if _, err := m.Seen(t.Context(), "c", until); !errors.Is(err, ErrReplayFull) {
		t.Fatalf("full store: %v", err)
	}
	m.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	if seen, err := m.Seen(t.Context(), "c", time.Now().Add(3*time.Minute)); err != nil || seen {
		t.Fatalf("expired entries must be evicted: %v %v", seen, err)
	}
}

func FuzzVerify(f *testing.F) {
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p, _ := NewProof(ek, "ES256", "POST", endpoint, ProofOptions{})
	f.Add(p)
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	v := NewVerifier(VerifierOptions{})
	f.Fuzz(func(t *testing.T, proof string) {
		got, err := v.Verify(proof, Params{Method: "POST", URL: endpoint})
		if err == nil && got.JKT == "" {
			t.Fatal("accepted proof without a key thumbprint")
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	ek := ecKey(b)
	v := NewVerifier(VerifierOptions{Replay: NewMemoryReplay(1 << 30)})
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	proofs := make([]string, 0, 1000)
	for range 1000 {
		p, _ := NewProof(ek, "ES256", "POST", endpoint, ProofOptions{AccessToken: "t", Body: body, ContentDigest: true})
		proofs = append(proofs, p)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		v.replay = NewMemoryReplay(10)
		if _, err := v.Verify(proofs[i%len(proofs)], Params{Method: "POST", URL: endpoint, AccessToken: "t", Body: body, RequireContentDigest: true}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

type signer interface {
	Public() crypto.PublicKey
	Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error)
}

func TestOversizedRSAKeyRefusedBeforeVerification(t *testing.T) {
	big, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewProof(big, "RS256", "POST", endpoint, ProofOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewVerifier(VerifierOptions{}).Verify(p, Params{Method: "POST", URL: endpoint})
	var de *Error
	if !errors.As(err, &de) || !strings.Contains(de.Description, "2048 to 4096") {
		t.Fatalf("1024-bit key: %v", err)
	}
}
