package dpop

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

var nonceSecret = []byte("replica-shared-secret-0123456789abcdef")

type clock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClock() *clock               { return &clock{t: time.Now()} }
func mustNonces(t *testing.T, o AEADNonceOptions) *AEADNonces {
	t.Helper()
	n, err := NewAEADNonces(o)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAEADNoncesAcrossReplicas: the MCP DPoP profile's stateless replay
// protection (ext-auth specification/draft/dpop-extension.mdx): "the MCP
// server may create a nonce by encrypting a timestamp using an
// Authenticated Encryption with Associated Data (AEAD) scheme ... which
// can be decrypted, parsed and verified to be within an acceptable time
// window when the MCP client returns the DPoP Proof". A nonce of one
// replica is accepted by another with the same key and no shared state,
// and refused when expired, forged, of another key or of another server.
func TestAEADNoncesAcrossReplicas(t *testing.T) {
	c := newClock()
	a := mustNonces(t, AEADNonceOptions{Secret: nonceSecret, Purpose: "https://gw.example", Now: c.now})
	b := mustNonces(t, AEADNonceOptions{Secret: nonceSecret, Purpose: "https://gw.example", Now: c.now})
	n := a.Current()
	if until, ok := b.Check(n); !ok || until.Sub(c.now()) > 5*time.Minute || until.Sub(c.now()) < 4*time.Minute {
		t.Fatalf("replica b refuses replica a's nonce: %v %v", until, ok)
	}
	if a.Current() == n {
		t.Error("two nonces are equal: the seal must use a fresh IV each time")
	}
	refused := map[string]string{"empty": "", "garbage": "abc", "too long": n + "A", "too short": n[:len(n)-1]}
	raw, _ := base64.RawURLEncoding.DecodeString(n)
	for i, name := range map[int]string{0: "version", 1: "key id", 7: "iv", 20: "sealed time", len(raw) - 1: "tag"} {
		f := append([]byte(nil), raw...)
		f[i] ^= 0x01
		refused["flipped "+name] = base64.RawURLEncoding.EncodeToString(f)
	}
	otherKey := mustNonces(t, AEADNonceOptions{Secret: []byte(strings.Repeat("k", 40)), Purpose: "https://gw.example", Now: c.now})
	refused["other key"] = otherKey.Current()
	otherServer := mustNonces(t, AEADNonceOptions{Secret: nonceSecret, Purpose: "https://other.example", Now: c.now})
	refused["other server, same key"] = otherServer.Current()
	random := mustNonces(t, AEADNonceOptions{Purpose: "https://gw.example", Now: c.now})
	refused["random key of another process"] = random.Current()
	refused["hmac nonce"] = NewHMACNonces(time.Minute).Current()
	for name, bad := range refused {
		if _, ok := b.Check(bad); ok {
			t.Errorf("%s: accepted", name)
		}
	}
	// Freshness: accepted for the lifetime, refused after it; a replica
	// whose clock is behind by up to 30 s still accepts.
	c.add(4*time.Minute + 59*time.Second)
	if _, ok := b.Check(n); !ok {
		t.Error("refused within its lifetime")
	}
	c.add(2 * time.Second)
	if _, ok := b.Check(n); ok {
		t.Error("expired nonce accepted")
	}
	ahead := &clock{t: c.now().Add(20 * time.Second)}
	fut := mustNonces(t, AEADNonceOptions{Secret: nonceSecret, Purpose: "https://gw.example", Now: ahead.now}).Current()
	if _, ok := b.Check(fut); !ok {
		t.Error("nonce of a replica 20 s ahead refused")
	}
	ahead.add(time.Minute)
	fut = mustNonces(t, AEADNonceOptions{Secret: nonceSecret, Purpose: "https://gw.example", Now: ahead.now}).Current()
	if _, ok := b.Check(fut); ok {
		t.Error("nonce sealed 80 s in the future accepted")
	}
	// Configurable window.
	short := mustNonces(t, AEADNonceOptions{Secret: nonceSecret, Purpose: "p", Lifetime: 30 * time.Second, Now: c.now})
	sn := short.Current()
	c.add(31 * time.Second)
	if _, ok := short.Check(sn); ok {
		t.Error("lifetime 30s: a 31 s old nonce accepted")
	}
	if _, err := NewAEADNonces(AEADNonceOptions{Secret: []byte("short")}); !errors.Is(err, ErrNonceKeyTooShort) {
		t.Errorf("short secret: %v", err)
	}
}

// TestAEADNonceKeyRotation: the new key seals, the previous one still
// opens until its nonces expire; a replica not yet rotated does not accept
// new-key nonces (roll replicas with previous_key first).
func TestAEADNonceKeyRotation(t *testing.T) {
	c := newClock()
	next := []byte("the-next-secret-after-rotation-0123456789")
	before := mustNonces(t, AEADNonceOptions{Secret: nonceSecret, Purpose: "p", Now: c.now})
	after := mustNonces(t, AEADNonceOptions{Secret: next, Previous: nonceSecret, Purpose: "p", Now: c.now})
	oldNonce := before.Current()
	if _, ok := after.Check(oldNonce); !ok {
		t.Fatal("the previous key's nonce refused after rotation")
	}
	newNonce := after.Current()
	if _, ok := mustNonces(t, AEADNonceOptions{Secret: next, Purpose: "p", Now: c.now}).Check(newNonce); !ok {
		t.Fatal("new nonces are not sealed with the new key")
	}
	if _, ok := before.Check(newNonce); ok {
		t.Error("a replica without the new key accepted its nonce")
	}
	dropped := mustNonces(t, AEADNonceOptions{Secret: next, Purpose: "p", Now: c.now})
	if _, ok := dropped.Check(oldNonce); ok {
		t.Error("a key no longer configured still opens nonces")
	}
}

type recordingReplay struct {
	mu    sync.Mutex // guards until
	until map[string]time.Time
}

func (r *recordingReplay) Seen(_ context.Context, key string, until time.Time) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.until[key]; ok {
		return true, nil
	}
	r.until[key] = until
	return false, nil
}

// TestJTIRememberedOnlyWhileNonceLives: with server nonces a proof cannot
// be accepted once its nonce expired, so its jti is kept no longer than
// that (the replay store stays bounded by the nonce window), and a replay
// within it is still refused.
func TestJTIRememberedOnlyWhileNonceLives(t *testing.T) {
	c := newClock()
	src := mustNonces(t, AEADNonceOptions{Secret: nonceSecret, Purpose: "p", Lifetime: time.Minute, Now: c.now})
	rec := &recordingReplay{until: map[string]time.Time{}}
	v := NewVerifier(VerifierOptions{Nonces: src, Replay: rec, Now: c.now})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	nonce := src.Current()
	p, _ := NewProof(key, "ES256", "POST", endpoint, ProofOptions{Nonce: nonce})
	got, err := v.Verify(p, Params{Method: "POST", URL: endpoint})
	if err != nil {
		t.Fatal(err)
	}
	until, _ := src.Check(nonce)
	for _, u := range rec.until {
		if u.After(until) {
			t.Errorf("jti kept until %v, after its nonce expires (%v)", u, until)
		}
	}
	if _, err := v.Verify(p, Params{Method: "POST", URL: endpoint}); err == nil {
		t.Error("replay within the nonce window accepted")
	}
	if v.NextNonce(got) != "" {
		t.Error("a fresh nonce offered for a nonce that is still young")
	}
	c.add(40 * time.Second)
	if v.NextNonce(got) == "" {
		t.Error("no fresh nonce offered past half the lifetime")
	}
}
