package dpop

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// NonceSource issues and checks server nonces (RFC 9449 §8 and §9).
type NonceSource interface {
	// Current returns a nonce to send in DPoP-Nonce.
	Current() string
	// Check reports whether nonce was issued by this source and is still
	// fresh, and until when it stays acceptable: a proof carrying it
	// cannot be accepted after that, so its jti need not be remembered
	// longer.
	Check(nonce string) (until time.Time, ok bool)
	// Lifetime is how long a nonce is accepted after it was issued.
	Lifetime() time.Duration
}

// Stateless nonces of the MCP DPoP profile: "the MCP server may create a
// nonce by encrypting a timestamp using an Authenticated Encryption with
// Associated Data (AEAD) scheme such as defined in RFC 7518 Section 5.2
// which can be decrypted, parsed and verified to be within an acceptable
// time window when the MCP client returns the DPoP Proof to the MCP
// server" (ext-auth specification/draft/dpop-extension.mdx, "Stateless
// Operation and DPoP Proof Replay Protection").
//
// Layout (base64url, no padding, 55 characters):
//
//	version 0x01 | key id (4) | AES-GCM nonce (12) | sealed issue time (8 + 16 tag)
//
// The issue time is Unix milliseconds. The associated data is the version,
// the key id and the purpose (the server's public origin), so a nonce of
// one deployment is never accepted by another that happens to share a
// key, and a nonce is never readable or forgeable without the key.
const (
	nonceVersion  = 0x01
	nonceKIDLen   = 4
	nonceRawLen   = 1 + nonceKIDLen + 12 + 8 + 16
	nonceTextLen  = (nonceRawLen*8 + 5) / 6
	nonceMinKey   = 32
	nonceMaxSkew  = 30 * time.Second // replicas' clocks may differ this much
	nonceKeyLabel = "mcpgate dpop nonce key v1"
)

// ErrNonceKeyTooShort is returned for a nonce secret under 32 bytes.
var ErrNonceKeyTooShort = errors.New("dpop: a nonce secret needs at least 32 bytes")

// AEADNonceOptions configure AEADNonces.
type AEADNonceOptions struct {
	// Secret is the current secret (at least 32 bytes, any encoding): new
	// nonces are sealed with a key derived from it (HKDF-SHA256). Replicas
	// that share it accept each other's nonces without shared state. nil:
	// a random key made now, so only this process accepts its nonces.
	Secret []byte
	// Previous is the secret before the last rotation: its nonces are
	// still accepted until they expire, none is issued with it. Optional.
	Previous []byte
	// Purpose binds nonces to one server (its public origin); it is
	// authenticated, not secret.
	Purpose string
	// Lifetime is how long a nonce is accepted after it was issued.
	// Default 5 minutes (the profile's iat window).
	Lifetime time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

type nonceKey struct {
	id   [nonceKIDLen]byte
	aead cipher.AEAD
}

// AEADNonces are stateless, replica-independent DPoP nonces: an AES-256-GCM
// sealed issue time, checked against Lifetime. It is safe for concurrent
// use (it holds no mutable state).
type AEADNonces struct {
	keys     []nonceKey // [0] seals; all open
	purpose  []byte
	lifetime time.Duration
	now      func() time.Time
}

// NewAEADNonces builds a nonce source from o.
func NewAEADNonces(o AEADNonceOptions) (*AEADNonces, error) {
	n := &AEADNonces{purpose: []byte(o.Purpose), lifetime: o.Lifetime, now: o.Now}
	if n.lifetime <= 0 {
		n.lifetime = 5 * time.Minute
	}
	if n.now == nil {
		n.now = time.Now
	}
	secret := o.Secret
	if secret == nil {
		secret = make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, err
		}
	}
	for _, s := range [][]byte{secret, o.Previous} {
		if s == nil {
			continue
		}
		k, err := deriveNonceKey(s)
		if err != nil {
			return nil, err
		}
		n.keys = append(n.keys, k)
	}
	if len(n.keys) == 2 && n.keys[0].id == n.keys[1].id {
		n.keys = n.keys[:1] // the same secret twice
	}
	return n, nil
}

func deriveNonceKey(secret []byte) (nonceKey, error) {
	if len(secret) < nonceMinKey {
		return nonceKey{}, ErrNonceKeyTooShort
	}
	raw, err := hkdf.Key(sha256.New, secret, nil, nonceKeyLabel, 32)
	if err != nil {
		return nonceKey{}, err
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nonceKey{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nonceKey{}, err
	}
	k := nonceKey{aead: aead}
	id := sha256.Sum256(append([]byte(nonceKeyLabel+" id\x00"), raw...))
	copy(k.id[:], id[:])
	return k, nil
}

func (n *AEADNonces) ad(kid []byte) []byte {
	ad := make([]byte, 0, 1+nonceKIDLen+len(n.purpose))
	ad = append(ad, nonceVersion)
	ad = append(ad, kid...)
	return append(ad, n.purpose...)
}

// Lifetime implements NonceSource.
func (n *AEADNonces) Lifetime() time.Duration { return n.lifetime }

// Current implements NonceSource: a fresh nonce sealing the time now.
func (n *AEADNonces) Current() string {
	return n.issue(n.now())
}

func (n *AEADNonces) issue(at time.Time) string {
	k := n.keys[0]
	out := make([]byte, 1+nonceKIDLen+12, nonceRawLen)
	out[0] = nonceVersion
	copy(out[1:], k.id[:])
	iv := out[1+nonceKIDLen:]
	if _, err := rand.Read(iv); err != nil {
		panic(fmt.Sprintf("dpop: reading random bytes: %v", err)) // crypto/rand never fails on supported platforms
	}
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(at.UnixMilli()))
	out = k.aead.Seal(out, iv, ts[:], n.ad(k.id[:]))
	return base64.RawURLEncoding.EncodeToString(out)
}

// Check implements NonceSource. Refused: anything not exactly one of our
// nonces (length, version, key id, tag), a nonce sealed more than 30 s in
// the future (clock skew between replicas), or one older than Lifetime.
func (n *AEADNonces) Check(nonce string) (time.Time, bool) {
	if len(nonce) != nonceTextLen {
		return time.Time{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(raw) != nonceRawLen || raw[0] != nonceVersion {
		return time.Time{}, false
	}
	kid := raw[1 : 1+nonceKIDLen]
	for _, k := range n.keys {
		if subtle.ConstantTimeCompare(kid, k.id[:]) != 1 {
			continue
		}
		iv := raw[1+nonceKIDLen : 1+nonceKIDLen+12]
		ts, err := k.aead.Open(nil, iv, raw[1+nonceKIDLen+12:], n.ad(kid))
		if err != nil || len(ts) != 8 {
			return time.Time{}, false
		}
		issued := time.UnixMilli(int64(binary.BigEndian.Uint64(ts)))
		now := n.now()
		if issued.After(now.Add(nonceMaxSkew)) || now.Sub(issued) > n.lifetime {
			return time.Time{}, false
		}
		return issued.Add(n.lifetime), true
	}
	return time.Time{}, false
}
