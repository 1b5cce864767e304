package dpop

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"sync"
	"time"
)

// ReplayStore remembers proof identifiers until they expire. Seen records
// key and reports whether it was already recorded. An implementation shared
// by several gateway replicas (Redis) plugs in here.
type ReplayStore interface {
	Seen(ctx context.Context, key string, until time.Time) (bool, error)
}

// OwnedReplayStore is a ReplayStore that charges every entry to an owner
// (the token's subject at a resource, the client at a token endpoint), so
// that one owner filling its share refuses only itself: SeenBy returns
// ErrReplayShareFull for that owner while others still get entries.
type OwnedReplayStore interface {
	ReplayStore
	SeenBy(ctx context.Context, owner, key string, until time.Time) (bool, error)
}

// ErrReplayFull is returned when the memory store is full of live entries:
// the proof is refused (fail closed) rather than forgetting an entry.
var ErrReplayFull = errors.New("dpop: replay store full")

// ErrReplayUnavailable is returned by a shared store (Redis) that could not
// answer: the proof is refused (fail closed), the caller answers 503 and
// the client retries once the store is back.
var ErrReplayUnavailable = errors.New("dpop: shared replay store unavailable")

// ErrReplayShareFull is returned when the owner of a proof already holds
// its share of live entries: its proof is refused (fail closed), other
// owners are not affected.
var ErrReplayShareFull = errors.New("dpop: this caller's share of the replay store is full")

// replaySweepEvery bounds how often a full store scans for expired
// entries, so that a caller at its share cannot make every request cost a
// scan of the whole store.
const replaySweepEvery = time.Second

// replaySweepFloor is the smallest store that sweeps before it is full:
// below it, expired entries cost less than scanning for them.
const replaySweepFloor = 4096

// MemoryReplay is a bounded in-memory OwnedReplayStore: at most max live
// entries in all and at most share per owner. An entry is the first 16
// bytes of SHA-256 of its key, its expiry and its owner, so its size does
// not depend on the (caller-chosen) jti. A key is looked up across all
// owners, so a replay is refused whoever presents it.
type MemoryReplay struct {
	max, share int
	now        func() time.Time

	mu        sync.Mutex // guards the fields below
	entries   map[[16]byte]replayEntry
	owners    map[string]int // live entries per owner
	lastSweep time.Time
	sweepAt   int // len(entries) that triggers a sweep before the store is full
}

type replayEntry struct {
	exp   int64 // unix nanoseconds
	owner string
}

// NewMemoryReplay holds at most max live entries, with no share per owner
// beyond that.
func NewMemoryReplay(max int) *MemoryReplay { return NewOwnedMemoryReplay(max, max) }

// NewOwnedMemoryReplay holds at most max live entries in all and at most
// share (clamped to 1..max) per owner.
func NewOwnedMemoryReplay(max, share int) *MemoryReplay {
	max = maxOf(max, 1)
	share = min(maxOf(share, 1), max)
	return &MemoryReplay{max: max, share: share, now: time.Now, entries: map[[16]byte]replayEntry{}, owners: map[string]int{}, sweepAt: replaySweepFloor}
}

func maxOf(a, b int) int { return max(a, b) }

// Seen implements ReplayStore: SeenBy with one anonymous owner.
func (m *MemoryReplay) Seen(ctx context.Context, key string, until time.Time) (bool, error) {
	return m.SeenBy(ctx, "", key, until)
}

// SeenBy implements OwnedReplayStore.
func (m *MemoryReplay) SeenBy(_ context.Context, owner, key string, until time.Time) (bool, error) {
	h := sha256.Sum256([]byte(key))
	var k [16]byte
	copy(k[:], h[:16])
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.entries[k]; ok {
		if e.exp > now.UnixNano() {
			return true, nil
		}
		m.drop(k, e)
	}
	if len(m.entries) >= m.sweepAt {
		// The store has doubled since the last sweep: expired entries are
		// dropped now, not only once it is full, so a store that never
		// fills does not keep every proof it ever saw until it does (a
		// 30-minute soak grew ~300 B per DPoP request).
		m.sweep(now)
	}
	if m.owners[owner] >= m.share || len(m.entries) >= m.max {
		m.sweep(now)
		if m.owners[owner] >= m.share && m.share < m.max {
			return false, ErrReplayShareFull
		}
		if len(m.entries) >= m.max {
			return false, ErrReplayFull
		}
	}
	m.entries[k] = replayEntry{exp: until.UnixNano(), owner: owner}
	m.owners[owner]++
	return false, nil
}

func (m *MemoryReplay) drop(k [16]byte, e replayEntry) {
	delete(m.entries, k)
	if m.owners[e.owner]--; m.owners[e.owner] <= 0 {
		delete(m.owners, e.owner)
	}
}

// sweep removes expired entries, at most once per replaySweepEvery.
func (m *MemoryReplay) sweep(now time.Time) {
	if now.Sub(m.lastSweep) < replaySweepEvery && !m.lastSweep.After(now) {
		return
	}
	m.lastSweep = now
	n := now.UnixNano()
	for k, e := range m.entries {
		if e.exp <= n {
			m.drop(k, e)
		}
	}
	m.sweepAt = max(2*len(m.entries), replaySweepFloor)
}

// Len reports the live and expired entries held, and the number of owners.
func (m *MemoryReplay) Len() (entries, owners int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries), len(m.owners)
}

// HMACNonces are nonces of one process: an HMAC over a time slot with a
// random key. A nonce is valid during its slot and the next one, so
// clients have at least one full period to use it. Deprecated: replicas
// do not accept each other's nonces; use AEADNonces, which any replica
// holding the key can check.
type HMACNonces struct {
	key    []byte
	period time.Duration
	now    func() time.Time
}

// NewHMACNonces returns nonces rotating every period (default 5 minutes)
// with a random key.
func NewHMACNonces(period time.Duration) *HMACNonces {
	if period <= 0 {
		period = 5 * time.Minute
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &HMACNonces{key: key, period: period, now: time.Now}
}

func (n *HMACNonces) forSlot(slot int64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(slot))
	m := hmac.New(sha256.New, n.key)
	m.Write(b[:])
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

func (n *HMACNonces) slot() int64 { return n.now().UnixNano() / int64(n.period) }

// Current implements NonceSource.
func (n *HMACNonces) Current() string { return n.forSlot(n.slot()) }

// Valid reports whether nonce is of this slot or the previous one.
func (n *HMACNonces) Valid(nonce string) bool {
	_, ok := n.Check(nonce)
	return ok
}

// Check implements NonceSource.
func (n *HMACNonces) Check(nonce string) (time.Time, bool) {
	s := n.slot()
	switch {
	case hmac.Equal([]byte(nonce), []byte(n.forSlot(s))):
		return time.Unix(0, (s+2)*int64(n.period)), true
	case hmac.Equal([]byte(nonce), []byte(n.forSlot(s-1))):
		return time.Unix(0, (s+1)*int64(n.period)), true
	}
	return time.Time{}, false
}

// Lifetime implements NonceSource (the shortest guaranteed validity).
func (n *HMACNonces) Lifetime() time.Duration { return n.period }
