package dpop

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// signRaw signs a JWS whose header and payload are given verbatim, so
// that duplicate or mistyped members survive (json.Marshal of a map could
// not produce them).
func signRaw(t *testing.T, key *ecdsa.PrivateKey, header, payload string) string {
	t.Helper()
	in := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	h := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func jwkJSON(t *testing.T, key *ecdsa.PrivateKey) string {
	t.Helper()
	b := func(n interface{ FillBytes([]byte) []byte }) string {
		return base64.RawURLEncoding.EncodeToString(n.FillBytes(make([]byte, 32)))
	}
	return fmt.Sprintf(`{"kty":"EC","crv":"P-256","x":%q,"y":%q}`, b(key.X), b(key.Y))
}

// TestAttackProofMembersStrictlyTyped: the proof's claims and header are
// read as RFC 9449 §4.2 defines them (review finding 5: an iat sent as a
// JSON string was accepted). iat is a NumericDate — a JSON number, which
// may have a fraction — never a string, boolean or null; jti, htm, htu,
// ath, nonce are strings; no member name twice or in another case; typ and
// alg strings, jwk an object.
func TestAttackProofMembersStrictlyTyped(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwk := jwkJSON(t, key)
	now := time.Now().Unix()
	hdr := `{"typ":"dpop+jwt","alg":"ES256","jwk":` + jwk + `}`
	claims := func(iat string, extra string) string {
		jti := make([]byte, 12)
		_, _ = rand.Read(jti)
		return fmt.Sprintf(`{"jti":%q,"htm":"POST","htu":%q,"iat":%s,"ath":%q%s}`, base64.RawURLEncoding.EncodeToString(jti), endpoint, iat, ATH("t"), extra)
	}
	n := fmt.Sprint(now)
	cases := []struct {
		name, header, payload string
		ok                    bool
	}{
		{"control", hdr, claims(n, ""), true},
		{"iat with a fraction", hdr, claims(n+".25", ""), true},
		{"iat in exponent form", hdr, claims(fmt.Sprintf("%.9e", float64(now)), ""), true},
		{"iat as a string", hdr, claims(`"`+n+`"`, ""), false},
		{"iat as a string with a fraction", hdr, claims(`"`+n+`.5"`, ""), false},
		{"iat true", hdr, claims("true", ""), false},
		{"iat null", hdr, claims("null", ""), false},
		{"iat an array", hdr, claims("["+n+"]", ""), false},
		{"iat an object", hdr, claims(`{"v":`+n+`}`, ""), false},
		{"iat huge", hdr, claims("1e300", ""), false},
		{"iat twice (old, then now)", hdr, fmt.Sprintf(`{"iat":1,"jti":"a1","htm":"POST","htu":%q,"iat":%s,"ath":%q}`, endpoint, n, ATH("t")), false},
		{"iat twice (now, then old)", hdr, fmt.Sprintf(`{"iat":%s,"jti":"a2","htm":"POST","htu":%q,"iat":1,"ath":%q}`, n, endpoint, ATH("t")), false},
		{"jti twice", hdr, claims(n, `,"jti":"other"`), false},
		{"htu twice", hdr, claims(n, `,"htu":"https://evil.example/mcp"`), false},
		{"ath twice", hdr, claims(n, `,"ath":"x"`), false},
		{"IAT in upper case besides iat", hdr, claims(n, `,"IAT":1`), false},
		{"Jti case variant", hdr, claims(n, `,"Jti":"x"`), false},
		{"name escaped to a duplicate", hdr, claims(n, `,"\u006a\u0074\u0069":"x"`), false},
		{"jti a number", hdr, fmt.Sprintf(`{"jti":12345,"htm":"POST","htu":%q,"iat":%s,"ath":%q}`, endpoint, n, ATH("t")), false},
		{"htm an array", hdr, fmt.Sprintf(`{"jti":"a3","htm":["POST"],"htu":%q,"iat":%s,"ath":%q}`, endpoint, n, ATH("t")), false},
		{"htu an object", hdr, fmt.Sprintf(`{"jti":"a4","htm":"POST","htu":{"u":%q},"iat":%s,"ath":%q}`, endpoint, n, ATH("t")), false},
		{"ath a number", hdr, fmt.Sprintf(`{"jti":"a5","htm":"POST","htu":%q,"iat":%s,"ath":1}`, endpoint, n), false},
		{"nonce null", hdr, claims(n, `,"nonce":null`), false},
		{"content_digest null", hdr, claims(n, `,"content_digest":null`), false},
		{"claims an array", hdr, `[` + claims(n, "") + `]`, false},
		{"data after the claims", hdr, claims(n, "") + `{}`, false},
		{"typ twice (JWT, then dpop+jwt)", `{"typ":"JWT","typ":"dpop+jwt","alg":"ES256","jwk":` + jwk + `}`, claims(n, ""), false},
		{"typ twice (dpop+jwt, then JWT)", `{"typ":"dpop+jwt","typ":"JWT","alg":"ES256","jwk":` + jwk + `}`, claims(n, ""), false},
		{"TYP case variant", `{"typ":"dpop+jwt","TYP":"JWT","alg":"ES256","jwk":` + jwk + `}`, claims(n, ""), false},
		{"typ an array", `{"typ":["dpop+jwt"],"alg":"ES256","jwk":` + jwk + `}`, claims(n, ""), false},
		{"alg twice", `{"typ":"dpop+jwt","alg":"none","alg":"ES256","jwk":` + jwk + `}`, claims(n, ""), false},
		{"alg a number", `{"typ":"dpop+jwt","alg":256,"jwk":` + jwk + `}`, claims(n, ""), false},
		{"jwk twice", `{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"oct","k":"AAAA"},"jwk":` + jwk + `}`, claims(n, ""), false},
		{"jwk a string", `{"typ":"dpop+jwt","alg":"ES256","jwk":` + mustQuote(jwk) + `}`, claims(n, ""), false},
		{"jwk member twice", `{"typ":"dpop+jwt","alg":"ES256","jwk":` + strings.Replace(jwk, `"kty":"EC",`, `"kty":"RSA","kty":"EC",`, 1) + `}`, claims(n, ""), false},
	}
	for _, c := range cases {
		v := NewVerifier(VerifierOptions{})
		_, err := v.Verify(signRaw(t, key, c.header, c.payload), Params{Method: "POST", URL: endpoint, AccessToken: "t"})
		if c.ok && err != nil {
			t.Errorf("%s: refused: %v", c.name, err)
		}
		if !c.ok && err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}

func mustQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestAttackOwnedReplayShares: an owner at its share is refused alone
// (ErrReplayShareFull); the others still get entries until the total is
// reached (ErrReplayFull); an entry is looked up across owners (a replay
// is refused whoever presents it); expiry frees entries.
func TestAttackOwnedReplayShares(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	m := NewOwnedMemoryReplay(10, 4)
	m.now = c.now
	until := c.now().Add(time.Minute)
	for i := range 4 {
		if seen, err := m.SeenBy(ctx, "alice", fmt.Sprint("a", i), until); seen || err != nil {
			t.Fatalf("alice %d: %v %v", i, seen, err)
		}
	}
	for i := range 50 {
		if _, err := m.SeenBy(ctx, "alice", fmt.Sprint("a-more", i), until); !errors.Is(err, ErrReplayShareFull) {
			t.Fatalf("alice past her share: %v, want ErrReplayShareFull", err)
		}
	}
	if seen, err := m.SeenBy(ctx, "bob", "b0", until); seen || err != nil {
		t.Fatalf("bob after alice's flood: %v %v", seen, err)
	}
	if seen, err := m.SeenBy(ctx, "bob", "a0", until); !seen || err != nil {
		t.Fatalf("alice's key presented by bob: seen=%v %v, want seen", seen, err)
	}
	for i := range 3 {
		_, _ = m.SeenBy(ctx, "bob", fmt.Sprint("b-more", i), until)
	}
	for i := range 2 {
		if _, err := m.SeenBy(ctx, "carol", fmt.Sprint("c", i), until); err != nil {
			t.Fatalf("carol %d: %v", i, err)
		}
	}
	if _, err := m.SeenBy(ctx, "dave", "d0", until); !errors.Is(err, ErrReplayFull) {
		t.Fatalf("store at its total: %v, want ErrReplayFull", err)
	}
	if n, _ := m.Len(); n != 10 {
		t.Fatalf("entries %d, want the total 10", n)
	}
	c.add(2 * time.Minute)
	if seen, err := m.SeenBy(ctx, "alice", "a0", c.now().Add(time.Minute)); seen || err != nil {
		t.Fatalf("after expiry: %v %v", seen, err)
	}
	if _, err := m.SeenBy(ctx, "dave", "d0", c.now().Add(time.Minute)); err != nil {
		t.Fatalf("dave after expiry: %v", err)
	}
	if n, owners := m.Len(); n != 2 || owners != 2 {
		t.Fatalf("after expiry and a sweep: %d entries of %d owners, want 2 of 2", n, owners)
	}
}

// TestJTIRememberedOnlyWhileProofAcceptable: the jti is kept until
// iat + window (+1 s), not longer: after that the iat check refuses the
// proof anyway. Before, it was kept to iat + 2 windows.
func TestJTIRememberedOnlyWhileProofAcceptable(t *testing.T) {
	c := newClock()
	rec := &recordingReplay{until: map[string]time.Time{}}
	v := NewVerifier(VerifierOptions{Replay: rec, Now: c.now, IATWindow: time.Minute})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p, _ := NewProof(key, "ES256", "POST", endpoint, ProofOptions{})
	got, err := v.Verify(p, Params{Method: "POST", URL: endpoint})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range rec.until {
		if u.After(got.IAT.Add(time.Minute + time.Second)) {
			t.Errorf("jti kept until %v, past iat+window (%v)", u, got.IAT.Add(time.Minute))
		}
	}
}
