package authserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// signingKey is stored in the "keys" bucket.
type signingKey struct {
	KID       string    `json:"kid"`
	PKCS8     []byte    `json:"pkcs8"`
	Created   time.Time `json:"created"`
	State     string    `json:"state"`          // next, current, retired
	Since     time.Time `json:"since,omitzero"` // when it became current
	RetiredAt time.Time `json:"retired_at,omitzero"`
	key       *ecdsa.PrivateKey
}

// keyring rotates ES256 signing keys: a new key is published (state
// "next") one rotation period before it signs; a retired key stays in the
// JWKS until every token it signed has expired.
type keyring struct {
	store   Store
	period  time.Duration
	maxLife time.Duration // longest access token lifetime
	mu      sync.Mutex    // guards keys and loaded
	keys    []*signingKey
	loaded  time.Time
}

// fresh reloads the keys from the store when the last load is older than
// a few seconds: replicas sharing a store see each other's keys.
func (kr *keyring) fresh() {
	kr.mu.Lock()
	stale := time.Since(kr.loaded) > 5*time.Second
	kr.mu.Unlock()
	if stale {
		_ = kr.load()
	}
}

func newKey(state string) (*signingKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return &signingKey{KID: randomID(12), PKCS8: der, Created: time.Now(), State: state, key: k}, nil
}

// load reads the keys and rotates when due.
func (kr *keyring) load() error {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	all, err := kr.store.List("keys")
	if err != nil {
		return err
	}
	kr.keys = kr.keys[:0]
	for _, raw := range all {
		var k signingKey
		if err := json.Unmarshal(raw, &k); err != nil {
			return fmt.Errorf("stored signing key is damaged: %v", err)
		}
		pk, err := x509.ParsePKCS8PrivateKey(k.PKCS8)
		if err != nil {
			return fmt.Errorf("stored signing key %s: %v", k.KID, err)
		}
		var ok bool
		if k.key, ok = pk.(*ecdsa.PrivateKey); !ok {
			return fmt.Errorf("stored signing key %s is not ECDSA", k.KID)
		}
		kr.keys = append(kr.keys, &k)
	}
	sort.Slice(kr.keys, func(i, j int) bool { return kr.keys[i].Created.Before(kr.keys[j].Created) })
	kr.loaded = time.Now()
	return kr.rotateLocked(time.Now())
}

func (kr *keyring) save(k *signingKey) error {
	raw, _ := json.Marshal(k)
	return kr.store.Put("keys", k.KID, raw, 0)
}

// rotateLocked makes sure there is a current and a next key, promotes the
// next key once the current one is older than the period, and forgets
// retired keys whose tokens have all expired.
func (kr *keyring) rotateLocked(now time.Time) error {
	var current, next *signingKey
	kept := kr.keys[:0]
	for _, k := range kr.keys { // oldest first: the newest current/next wins
		switch k.State {
		case "current":
			if current != nil { // two replicas started at once
				current.State, current.RetiredAt = "retired", now
				if err := kr.save(current); err != nil {
					return err
				}
			}
			current = k
		case "next":
			if next != nil {
				next.State, next.RetiredAt = "retired", now
				if err := kr.save(next); err != nil {
					return err
				}
			}
			next = k
		case "retired":
			if now.Sub(k.RetiredAt) > kr.maxLife+time.Minute {
				if err := kr.store.Delete("keys", k.KID); err != nil {
					return err
				}
				continue
			}
		}
		kept = append(kept, k)
	}
	kr.keys = kept
	if current == nil {
		c, err := newKey("current")
		if err != nil {
			return err
		}
		if next != nil { // a published next key takes over at once
			next.State, c = "current", next
			c.Since = now
		} else {
			c.Since = now
			kr.keys = append(kr.keys, c)
		}
		current = c
		if err := kr.save(current); err != nil {
			return err
		}
		if next == current {
			next = nil
		}
	}
	if next == nil {
		n, err := newKey("next")
		if err != nil {
			return err
		}
		kr.keys = append(kr.keys, n)
		next = n
		if err := kr.save(n); err != nil {
			return err
		}
	}
	since := current.Since
	if since.IsZero() {
		since = current.Created
	}
	if now.Sub(since) > kr.period && now.Sub(next.Created) > kr.period/2 {
		current.State, current.RetiredAt = "retired", now
		next.State, next.Since = "current", now
		n, err := newKey("next")
		if err != nil {
			return err
		}
		kr.keys = append(kr.keys, n)
		for _, k := range []*signingKey{current, next, n} {
			if err := kr.save(k); err != nil {
				return err
			}
		}
	}
	return nil
}

// signer returns the current key.
func (kr *keyring) signer() *signingKey {
	kr.fresh()
	kr.mu.Lock()
	defer kr.mu.Unlock()
	for _, k := range kr.keys {
		if k.State == "current" {
			return k
		}
	}
	return nil
}

// jwks publishes every key that is about to sign, signs, or signed tokens
// that are still valid.
func (kr *keyring) jwks() jose.JSONWebKeySet {
	kr.fresh()
	kr.mu.Lock()
	defer kr.mu.Unlock()
	var set jose.JSONWebKeySet
	for _, k := range kr.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.key.Public(), KeyID: k.KID, Algorithm: "ES256", Use: "sig"})
	}
	return set
}
