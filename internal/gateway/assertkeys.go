package gateway

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/privfile"
)

// The keys that sign identity assertions (upcred_assertion.go).
//
// One key set serves every upstream with upstream_auth.identity_assertion;
// it is the gateway's own, never the built-in authorization server's. Each
// key has an activation time: it is published in the JWKS from the moment
// it exists, signs from its activation on, and stops signing when its
// successor activates. A successor is made assertionLead before it
// activates, so that every replica (each rereads the key file at least every
// assertionReload) and every verifier (the JWKS response may be cached for
// assertionJWKSMaxAge) knows it before the first assertion it signs. A key
// stays published until every assertion it signed has expired: assertions
// live at most config.MaxAssertionTTL, plus assertionSkew for clocks.
//
// With identity_assertion_keys.key_file the set lives in that file (0600,
// replaced atomically, changes made under an exclusive lock on
// <key_file>.lock), so a restart keeps it and replicas sharing the file
// share it; without it, in memory.
const (
	assertionLead       = 10 * time.Minute
	assertionReload     = 10 * time.Second
	assertionJWKSMaxAge = 5 * time.Minute
	assertionSkew       = time.Minute
	// assertionTyp is the JWT header typ of identity assertions (RFC 8725
	// §3.11 explicit typing): no other JWT the gateway or its
	// authorization server issues carries it.
	assertionTyp = "mcpgate-identity+jwt"
)

// assertionKey is one signing key.
type assertionKey struct {
	KID       string    `json:"kid"`
	Created   time.Time `json:"created"`
	Activates time.Time `json:"activates"`
	PKCS8     []byte    `json:"pkcs8"`

	priv   *ecdsa.PrivateKey
	header string // the encoded JWS protected header: alg, kid, typ
}

// keyFile is the key file's content.
type keyFile struct {
	Version int             `json:"version"`
	Keys    []*assertionKey `json:"keys"`
}

// keySnapshot is the key set as requests see it, replaced whole.
type keySnapshot struct {
	keys    []*assertionKey // by activation, oldest first
	jwks    []byte          // the published JWK Set
	etag    string
	checked time.Time // when the set was last read and rotated
	// due is the next time the set changes by itself (a key activates
	// or is dropped): it is checked again then.
	due time.Time
}

// assertionKeys holds the key set and keeps it rotated.
type assertionKeys struct {
	file   string // "" in memory
	period time.Duration
	now    func() time.Time
	log    *slog.Logger

	snap atomic.Pointer[keySnapshot]
	mu   sync.Mutex // guards mem and serialises refreshes
	mem  []*assertionKey
}

// newAssertionKeys loads (or creates) the key set.
func newAssertionKeys(k config.IdentityAssertionKeys, log *slog.Logger, now func() time.Time) (*assertionKeys, error) {
	ks := &assertionKeys{file: k.KeyFile, period: k.Period(), now: now, log: log}
	if err := ks.refresh(); err != nil {
		return nil, fmt.Errorf("identity_assertion_keys: %w", err)
	}
	return ks, nil
}

// current returns the snapshot, refreshed first when it is due (one caller
// at a time; the others keep the snapshot they have, which stays valid).
func (ks *assertionKeys) current() *keySnapshot {
	s, now := ks.snap.Load(), ks.now()
	if now.Sub(s.checked) < assertionReload && now.Before(s.due) {
		return s
	}
	if ks.mu.TryLock() {
		err := ks.refreshLocked()
		ks.mu.Unlock()
		if err != nil {
			ks.log.Warn("identity assertion keys not refreshed; the current ones stay in use", "err", err)
		}
	}
	return ks.snap.Load()
}

// signer is the key that signs now: the newest active one. When none is
// active yet — a replica whose clock is behind the one that made the
// first key — the first key signs: it is the only one there ever was, so
// no verifier can hold a JWKS without it.
func (s *keySnapshot) signer(now time.Time) *assertionKey {
	if len(s.keys) == 0 {
		return nil
	}
	k := s.keys[0]
	for _, c := range s.keys[1:] {
		if !c.Activates.After(now) {
			k = c
		}
	}
	return k
}

// refresh reads the set, rotates it and publishes the result.
func (ks *assertionKeys) refresh() error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.refreshLocked()
}

func (ks *assertionKeys) refreshLocked() error {
	now := ks.now()
	var keys []*assertionKey
	var err error
	if ks.file == "" {
		keys, _, err = rotateKeys(ks.mem, now, ks.period)
		ks.mem = keys
	} else {
		keys, err = ks.refreshFile(now)
	}
	var s *keySnapshot
	if err == nil {
		s, err = newSnapshot(keys, now, ks.period)
	}
	if err != nil {
		if old := ks.snap.Load(); old != nil { // keep the keys; retry after assertionReload, not per request
			retry := *old
			retry.checked, retry.due = now, now.Add(assertionReload)
			ks.snap.Store(&retry)
		}
		return err
	}
	ks.snap.Store(s)
	return nil
}

// refreshFile reads, rotates and (when it changed) rewrites the key file
// under the cross-process lock.
func (ks *assertionKeys) refreshFile(now time.Time) ([]*assertionKey, error) {
	unlock, err := lockKeyFile(ks.file + ".lock")
	if err != nil {
		return nil, fmt.Errorf("key_file lock: %w", err)
	}
	defer unlock()
	keys, err := readKeyFile(ks.file)
	if err != nil {
		return nil, err
	}
	keys, changed, err := rotateKeys(keys, now, ks.period)
	if err != nil {
		return nil, err
	}
	if changed {
		if err := writeKeyFile(ks.file, keys); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// rotateKeys drops keys whose assertions have all expired, makes the first
// key when there is none, and makes the successor of the newest key
// assertionLead before that key's period ends.
func rotateKeys(keys []*assertionKey, now time.Time, period time.Duration) ([]*assertionKey, bool, error) {
	retain := config.MaxAssertionTTL + assertionSkew
	var kept []*assertionKey
	changed := false
	for i, k := range keys {
		if i+1 < len(keys) && !keys[i+1].Activates.After(now.Add(-retain)) {
			changed = true // its successor has signed for longer than any assertion lives
			continue
		}
		kept = append(kept, k)
	}
	if len(kept) == 0 {
		k, err := newAssertionKey(now, now)
		if err != nil {
			return nil, false, err
		}
		return []*assertionKey{k}, true, nil
	}
	newest := kept[len(kept)-1]
	if !newest.Activates.After(now) && !now.Before(newest.Activates.Add(period-assertionLead)) {
		at := newest.Activates.Add(period)
		if at.Before(now.Add(assertionLead)) {
			at = now.Add(assertionLead) // the set was not refreshed for a while
		}
		k, err := newAssertionKey(now, at)
		if err != nil {
			return nil, false, err
		}
		kept, changed = append(kept, k), true
	}
	return kept, changed, nil
}

// newSnapshot builds the published form of keys.
func newSnapshot(keys []*assertionKey, now time.Time, period time.Duration) (*keySnapshot, error) {
	set := jose.JSONWebKeySet{}
	due := now.Add(period)
	for i, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.KID, Algorithm: "ES256", Use: "sig"})
		if k.Activates.After(now) && k.Activates.Before(due) {
			due = k.Activates
		}
		if i+1 < len(keys) {
			if drop := keys[i+1].Activates.Add(config.MaxAssertionTTL + assertionSkew); drop.After(now) && drop.Before(due) {
				due = drop
			}
		}
	}
	if newest := keys[len(keys)-1]; !newest.Activates.After(now) {
		if succ := newest.Activates.Add(period - assertionLead); succ.After(now) && succ.Before(due) {
			due = succ
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	return &keySnapshot{keys: keys, jwks: b, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`, checked: now, due: due}, nil
}

// newAssertionKey makes a P-256 key that signs from activates on. Its kid
// is its RFC 7638 thumbprint.
func newAssertionKey(now, activates time.Time) (*assertionKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	k := &assertionKey{Created: now.UTC().Truncate(time.Second), Activates: activates.UTC().Truncate(time.Second), PKCS8: der}
	return k, k.init(priv)
}

// init sets the parsed key, the kid and the JWS header.
func (k *assertionKey) init(priv *ecdsa.PrivateKey) error {
	tp, err := (&jose.JSONWebKey{Key: priv.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return err
	}
	kid := base64.RawURLEncoding.EncodeToString(tp)
	if k.KID != "" && k.KID != kid {
		return fmt.Errorf("key %s: the kid does not match the key", k.KID)
	}
	k.KID, k.priv = kid, priv
	hdr, _ := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{"ES256", kid, assertionTyp})
	k.header = base64.RawURLEncoding.EncodeToString(hdr)
	return nil
}

// readKeyFile reads the key set; a missing file is an empty set. A damaged
// file or one others may read is an error, never silently replaced: the
// keys in it may still be the ones upstreams trust.
func readKeyFile(path string) ([]*assertionKey, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key_file %s is readable by others (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f keyFile
	if err := json.Unmarshal(raw, &f); err != nil || f.Version != 1 {
		return nil, fmt.Errorf("key_file %s is damaged (%v): restore it, or remove it to start with new keys", path, err)
	}
	for _, k := range f.Keys {
		pk, err := x509.ParsePKCS8PrivateKey(k.PKCS8)
		priv, ok := pk.(*ecdsa.PrivateKey)
		if err != nil || !ok || priv.Curve != elliptic.P256() {
			return nil, fmt.Errorf("key_file %s: key %s is not a P-256 key: restore the file, or remove it", path, k.KID)
		}
		if err := k.init(priv); err != nil {
			return nil, fmt.Errorf("key_file %s: %w", path, err)
		}
	}
	slices.SortStableFunc(f.Keys, func(a, b *assertionKey) int { return a.Activates.Compare(b.Activates) })
	return f.Keys, nil
}

// writeKeyFile replaces the key file atomically (a temporary 0600 file in
// the same directory, synced, renamed over it).
func writeKeyFile(path string, keys []*assertionKey) error {
	raw, err := json.MarshalIndent(keyFile{Version: 1, Keys: keys}, "", "  ")
	if err != nil {
		return err
	}
	if err := privfile.Replace(path, raw); err != nil {
		return fmt.Errorf("key_file: %w", err)
	}
	return nil
}
