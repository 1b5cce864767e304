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

// ErrReplayFull is returned when the memory store is full of live entries:
// the proof is refused (fail closed) rather than forgetting an entry.
var ErrReplayFull = errors.New("dpop: replay store full")

// MemoryReplay is a bounded in-memory ReplayStore.
type MemoryReplay struct {
	max int
	now func() time.Time

	mu      sync.Mutex // guards entries
	entries map[string]time.Time
}

// NewMemoryReplay holds at most max live entries.
func NewMemoryReplay(max int) *MemoryReplay {
	return &MemoryReplay{max: max, now: time.Now, entries: map[string]time.Time{}}
}

// Seen implements ReplayStore.
func (m *MemoryReplay) Seen(_ context.Context, key string, until time.Time) (bool, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if exp, ok := m.entries[key]; ok && exp.After(now) {
		return true, nil
	}
	if len(m.entries) >= m.max {
		for k, exp := range m.entries {
			if !exp.After(now) {
				delete(m.entries, k)
			}
		}
		if len(m.entries) >= m.max {
			return false, ErrReplayFull
		}
	}
	m.entries[key] = until
	return false, nil
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
