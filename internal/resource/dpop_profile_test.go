package resource

// The MCP DPoP profile as it stands (ext-auth specification/draft/
// dpop-extension.mdx, SEP-1932, text of commit f2f9453), checked the way the
// conformance suite's auth/dpop-server-validation scenario does: a valid
// standard RFC 9449 request must be accepted, each malformed variant refused
// with 401 and a DPoP challenge. Proofs are built here by hand with go-jose
// (not with package dpop), as a third-party client would.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/dpop"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func pubJWK(k *ecdsa.PrivateKey, withPrivate bool) map[string]any {
	pad := func(i *big.Int) string { b := make([]byte, 32); i.FillBytes(b); return b64(b) }
	m := map[string]any{"kty": "EC", "crv": "P-256", "x": pad(k.X), "y": pad(k.Y)}
	if withPrivate {
		d, err := k.Bytes()
		if err != nil {
			panic(err)
		}
		m["d"] = b64(d)
	}
	return m
}

// handProof signs header and claims: ES256 with k, or as alg says ("none",
// "HS256"); tamper flips the signature.
func handProof(t *testing.T, k *ecdsa.PrivateKey, header, claims map[string]any, tamper bool) string {
	t.Helper()
	hb, _ := json.Marshal(header)
	cb, _ := json.Marshal(claims)
	input := b64(hb) + "." + b64(cb)
	var sig []byte
	switch header["alg"] {
	case "none":
	case "HS256":
		m := hmac.New(sha256.New, []byte("shared-secret"))
		m.Write([]byte(input))
		sig = m.Sum(nil)
	default:
		sum := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, k, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	}
	if tamper {
		sig[5] ^= 0xff
	}
	return input + "." + b64(sig)
}

func TestDPoPServerValidationScenario(t *testing.T) {
	idp := testutil.NewIdP(t)
	v := newVerifier(t, idp, func(o *Options) { o.DPoP = "required" })
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jkt, _ := dpop.Thumbprint(key.Public())
	bound := func(aud, jkt string) string {
		c := idp.Claims("dora", aud, "mcp:read")
		c["cnf"] = map[string]any{"jkt": jkt}
		return idp.Sign(t, "ES256", c)
	}
	token := bound(endpoint, jkt)
	// The probe body of the scenario; the proof carries no content_digest.
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"conformance-dpop-server-test","version":"1.0.0"}}}`)
	type mod struct {
		header map[string]any
		claims map[string]any
		omit   []string
		tamper bool
	}
	proof := func(tok string, m mod) string {
		h := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": pubJWK(key, false)}
		c := map[string]any{"jti": randomJTI(), "htm": "POST", "htu": endpoint, "iat": time.Now().Unix(), "ath": dpop.ATH(tok)}
		for k, x := range m.header {
			h[k] = x
		}
		for k, x := range m.claims {
			c[k] = x
		}
		for _, k := range m.omit {
			delete(h, k)
			delete(c, k)
		}
		return handProof(t, key, h, c, m.tamper)
	}
	send := func(authz string, proofs ...string) error {
		r := httptest.NewRequest("POST", endpoint, strings.NewReader(string(body)))
		r.Header.Set("Authorization", authz)
		for _, p := range proofs {
			r.Header.Add("DPoP", p)
		}
		_, err := v.Authenticate(r, body)
		return err
	}

	// "MCP servers MUST validate DPoP proofs according to RFC 9449 Section
	// 4.3." — and this extension "uses DPoP as defined in RFC 9449, without
	// introducing MCP-specific claims, request body digests, or additional
	// proof material": a standard proof without content_digest is valid.
	if err := send("DPoP "+token, proof(token, mod{})); err != nil {
		t.Fatalf("valid standard RFC 9449 request refused: %v", err)
	}

	foreign, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	foreignJKT, _ := dpop.Thumbprint(foreign.Public())
	mismatch := bound(endpoint, foreignJKT)
	wrongAud := bound("https://not-this-server.example.com/mcp", jkt)
	now := time.Now().Unix()
	// "If any validation step fails, the MCP server MUST reject the request
	// with an HTTP 401 response and include appropriate error information
	// in the WWW-Authenticate header as specified in RFC 9449 Section 7.1."
	negatives := []struct {
		name   string
		authz  string
		proofs []string
	}{
		{"tampered-signature", "DPoP " + token, []string{proof(token, mod{tamper: true})}},
		{"missing-jti", "DPoP " + token, []string{proof(token, mod{omit: []string{"jti"}})}},
		{"wrong-typ", "DPoP " + token, []string{proof(token, mod{header: map[string]any{"typ": "jwt"}})}},
		{"htu-mismatch", "DPoP " + token, []string{proof(token, mod{claims: map[string]any{"htu": "https://wrong.example.com/mcp"}})}},
		{"htm-mismatch", "DPoP " + token, []string{proof(token, mod{claims: map[string]any{"htm": "GET"}})}},
		{"private-key-in-jwk", "DPoP " + token, []string{proof(token, mod{header: map[string]any{"jwk": pubJWK(key, true)}})}},
		{"wrong-ath", "DPoP " + token, []string{proof(token, mod{claims: map[string]any{"ath": "not-the-right-hash"}})}},
		{"bearer-scheme", "Bearer " + token, []string{proof(token, mod{})}},
		{"duplicate-dpop-header", "DPoP " + token, []string{proof(token, mod{}), proof(token, mod{})}},
		{"comma-joined-dpop-header", "DPoP " + token, []string{proof(token, mod{}) + ", " + proof(token, mod{})}},
		{"missing-htm", "DPoP " + token, []string{proof(token, mod{omit: []string{"htm"}})}},
		{"missing-htu", "DPoP " + token, []string{proof(token, mod{omit: []string{"htu"}})}},
		{"missing-iat", "DPoP " + token, []string{proof(token, mod{omit: []string{"iat"}})}},
		{"missing-jwk", "DPoP " + token, []string{proof(token, mod{omit: []string{"jwk"}})}},
		{"ath-absent", "DPoP " + token, []string{proof(token, mod{omit: []string{"ath"}})}},
		{"malformed-not-a-jwt", "DPoP " + token, []string{"this-is-not-a-jwt"}},
		{"no-proof", "DPoP " + token, nil},
		{"cnf-jkt-mismatch", "DPoP " + mismatch, []string{proof(mismatch, mod{})}},
		// "Implementations conforming to this specification MUST verify
		// that the iat claim is within ±5 minutes of the server's current
		// time."
		{"iat-stale", "DPoP " + token, []string{proof(token, mod{claims: map[string]any{"iat": now - 303}})}},
		{"iat-future", "DPoP " + token, []string{proof(token, mod{claims: map[string]any{"iat": now + 303}})}},
		{"iat-string", "DPoP " + token, []string{proof(token, mod{claims: map[string]any{"iat": "now"}})}},
		// "Only asymmetric signature algorithms MUST be used for DPoP
		// proofs. Symmetric algorithms and the none algorithm MUST NOT be
		// permitted."
		{"alg-none", "DPoP " + token, []string{proof(token, mod{header: map[string]any{"alg": "none"}})}},
		{"alg-symmetric", "DPoP " + token, []string{proof(token, mod{header: map[string]any{"alg": "HS256"}})}},
		// "MCP servers MUST continue to validate that access tokens were
		// specifically issued for them, even when DPoP is used."
		{"wrong-audience", "DPoP " + wrongAud, []string{proof(wrongAud, mod{})}},
	}
	for _, n := range negatives {
		t.Run(n.name, func(t *testing.T) {
			err := send(n.authz, n.proofs...)
			if err == nil {
				t.Fatal("accepted")
			}
			var re *Error
			if !errors.As(err, &re) || re.Status != http.StatusUnauthorized {
				t.Fatalf("want 401, got %v", err)
			}
			if n.name == "bearer-scheme" {
				return // any refusal will do (the scenario's own predicate)
			}
			if !hasDPoPChallenge(v.Challenge(err)) {
				t.Fatalf("no DPoP challenge in %q", v.Challenge(err))
			}
		})
	}

	// jti replay: the same proof twice (RFC 9449 §11.1; mcpgate tracks jti).
	p := proof(token, mod{})
	if err := send("DPoP "+token, p); err != nil {
		t.Fatal(err)
	}
	if err := send("DPoP "+token, p); err == nil {
		t.Fatal("replayed proof accepted")
	}
	// Inside the window, just: accepted.
	if err := send("DPoP "+token, proof(token, mod{claims: map[string]any{"iat": time.Now().Unix() - 290}})); err != nil {
		t.Fatalf("iat 290 s old refused: %v", err)
	}
}

func hasDPoPChallenge(chs []string) bool {
	for _, c := range chs {
		if strings.HasPrefix(c, "DPoP ") || c == "DPoP" {
			return true
		}
	}
	return false
}

func randomJTI() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return b64(b)
}
