package p256

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"math/big"
	mrand "math/rand/v2"
	"testing"

	"filippo.io/nistec"
)

func newKey(t testing.TB) (*ecdsa.PrivateKey, *PublicKey) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return priv, k
}

// check compares Verify with crypto/ecdsa.Verify and returns the result.
func check(t *testing.T, k *PublicKey, hash []byte, r, s *big.Int) bool {
	t.Helper()
	want := ecdsa.Verify(k.Key(), hash, r, s)
	if got := k.Verify(hash, r, s); got != want {
		t.Fatalf("Verify(%x, r=%x, s=%x) = %v, crypto/ecdsa says %v", hash, r, s, got, want)
	}
	return want
}

func TestValidSignaturesVerify(t *testing.T) {
	for range 8 {
		priv, k := newKey(t)
		for i := range 64 {
			msg := []byte{byte(i), 'm', 's', 'g'}
			h := sha256.Sum256(msg)
			r, s, err := ecdsa.Sign(rand.Reader, priv, h[:])
			if err != nil {
				t.Fatal(err)
			}
			if !check(t, k, h[:], r, s) {
				t.Fatal("a valid signature did not verify")
			}
			// The malleated twin (r, n−s) is valid ECDSA too.
			if !check(t, k, h[:], r, new(big.Int).Sub(n, s)) {
				t.Fatal("(r, n-s) did not verify")
			}
		}
	}
}

func TestInvalidSignaturesFail(t *testing.T) {
	priv, k := newKey(t)
	_, other := newKey(t)
	h := sha256.Sum256([]byte("payload"))
	r, s, _ := ecdsa.Sign(rand.Reader, priv, h[:])
	one := big.NewInt(1)
	cases := []struct {
		name string
		key  *PublicKey
		hash []byte
		r, s *big.Int
	}{
		{"other key", other, h[:], r, s},
		{"other hash", k, func() []byte { x := sha256.Sum256([]byte("payloaD")); return x[:] }(), r, s},
		{"r+1", k, h[:], new(big.Int).Add(r, one), s},
		{"s+1", k, h[:], r, new(big.Int).Add(s, one)},
		{"swapped", k, h[:], s, r},
		{"r=0", k, h[:], big.NewInt(0), s},
		{"s=0", k, h[:], r, big.NewInt(0)},
		{"r=n", k, h[:], new(big.Int).Set(n), s},
		{"s=n", k, h[:], r, new(big.Int).Set(n)},
		{"r+n", k, h[:], new(big.Int).Add(r, n), s},
		{"s+n", k, h[:], r, new(big.Int).Add(s, n)},
		{"negative r", k, h[:], new(big.Int).Neg(r), s},
		{"r=n-1", k, h[:], new(big.Int).Sub(n, one), s},
		{"s=1", k, h[:], r, big.NewInt(1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if check(t, c.key, c.hash, c.r, c.s) {
				t.Fatal("an invalid signature verified")
			}
		})
	}
}

// TestPointAtInfinityRejected: r = −e/d makes u1·G + u2·Q the point at
// infinity, which has no x coordinate; the signature must fail.
func TestPointAtInfinityRejected(t *testing.T) {
	priv, k := newKey(t)
	h := sha256.Sum256([]byte("infinity"))
	e := new(big.Int).SetBytes(h[:])
	d, err := priv.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	dinv := new(big.Int).ModInverse(new(big.Int).SetBytes(d), n)
	r := new(big.Int).Mul(e, dinv)
	r.Neg(r).Mod(r, n)
	for _, s := range []*big.Int{big.NewInt(1), big.NewInt(12345), new(big.Int).Sub(n, big.NewInt(2))} {
		if check(t, k, h[:], r, s) {
			t.Fatal("a signature whose R is the point at infinity verified")
		}
	}
}

// TestEveryDigitPath: scalars with long runs of ones and zeros, and digits
// at the carry boundary, through keys whose signatures are made by hand so
// that u2 takes chosen values.
func TestEveryDigitPath(t *testing.T) {
	priv, k := newKey(t)
	rnd := mrand.New(mrand.NewPCG(1, 2))
	scalars := []*big.Int{big.NewInt(1), big.NewInt(64), big.NewInt(65), big.NewInt(127), big.NewInt(128), big.NewInt(129), big.NewInt(255), big.NewInt(256), big.NewInt(0x8080), big.NewInt(0x8180),
		new(big.Int).Sub(n, big.NewInt(1)), new(big.Int).Lsh(big.NewInt(1), 255), new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(1))}
	for range 64 {
		b := make([]byte, 32)
		for i := range b {
			b[i] = []byte{0, 0xff, 0x40, 0xbf, byte(rnd.Uint32())}[rnd.IntN(5)]
		}
		scalars = append(scalars, new(big.Int).Mod(new(big.Int).SetBytes(b), n))
	}
	for _, u2 := range scalars {
		if u2.Sign() == 0 {
			continue
		}
		// The product u2·Q through the table must equal crypto/ecdsa's
		// ScalarMult.
		p := nistec.NewP256Point()
		k.mul(p, u2)
		//lint:ignore SA1019 deprecated, but independent of filippo.io/nistec: the reference value
		x, y := elliptic.P256().ScalarMult(priv.X, priv.Y, u2.FillBytes(make([]byte, 32)))
		//lint:ignore SA1019 the reference encoding of that point
		want := elliptic.Marshal(elliptic.P256(), x, y)
		if got := p.Bytes(); string(got) != string(want) {
			t.Fatalf("u2=%x: table product differs from ScalarMult", u2)
		}
	}
}

func TestRejectsOtherCurves(t *testing.T) {
	priv, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := NewPublicKey(&priv.PublicKey); err == nil {
		t.Fatal("a P-384 key was accepted")
	}
	if _, err := NewPublicKey(nil); err == nil {
		t.Fatal("nil was accepted")
	}
}

func TestVerifyJWS(t *testing.T) {
	priv, k := newKey(t)
	h := sha256.Sum256([]byte("a.b"))
	r, s, _ := ecdsa.Sign(rand.Reader, priv, h[:])
	sig := append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	if !k.VerifyJWS(h[:], sig) {
		t.Fatal("valid JWS signature rejected")
	}
	if k.VerifyJWS(h[:], sig[:63]) || k.VerifyJWS(h[:], append(sig, 0)) {
		t.Fatal("a signature of the wrong length verified")
	}
}

// FuzzVerifyMatchesStdlib: for any hash and signature bytes, and for
// mutations of a valid signature, the result equals crypto/ecdsa's.
func FuzzVerifyMatchesStdlib(f *testing.F) {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k, err := NewPublicKey(&priv.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	h := sha256.Sum256([]byte("seed"))
	r, s, _ := ecdsa.Sign(rand.Reader, priv, h[:])
	f.Add(h[:], r.Bytes(), s.Bytes(), false)
	f.Add(h[:], r.Bytes(), s.Bytes(), true)
	f.Add([]byte{}, []byte{1}, []byte{1}, false)
	f.Fuzz(func(t *testing.T, hash, rb, sb []byte, sign bool) {
		var rr, ss *big.Int
		if sign {
			// A real signature of this hash, so the accept path is fuzzed too.
			var err error
			rr, ss, err = ecdsa.Sign(rand.Reader, priv, hash)
			if err != nil {
				t.Skip()
			}
			if len(rb) > 0 { // and, sometimes, a mutation of it
				rr.Xor(rr, new(big.Int).SetBytes(rb[:min(len(rb), 2)]))
			}
		} else {
			rr, ss = new(big.Int).SetBytes(rb), new(big.Int).SetBytes(sb)
		}
		want := ecdsa.Verify(&priv.PublicKey, hash, rr, ss)
		if got := k.Verify(hash, rr, ss); got != want {
			t.Fatalf("Verify = %v, crypto/ecdsa says %v", got, want)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	priv, k := newKey(b)
	h := sha256.Sum256([]byte("bench"))
	r, s, _ := ecdsa.Sign(rand.Reader, priv, h[:])
	b.Run("table", func(b *testing.B) {
		for b.Loop() {
			if !k.Verify(h[:], r, s) {
				b.Fatal("no")
			}
		}
	})
	b.Run("crypto-ecdsa", func(b *testing.B) {
		for b.Loop() {
			if !ecdsa.Verify(&priv.PublicKey, h[:], r, s) {
				b.Fatal("no")
			}
		}
	})
}

func BenchmarkNewPublicKey(b *testing.B) {
	priv, _ := newKey(b)
	for b.Loop() {
		if _, err := NewPublicKey(&priv.PublicKey); err != nil {
			b.Fatal(err)
		}
	}
}
