package dpop

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestMemoryReplaySweepsBeforeFull: a store far from full still drops
// expired entries once it has doubled since its last sweep, so steady
// traffic keeps it near twice its live size instead of growing until
// max (the soak of 2026-12-02 grew ~300 B per DPoP request).
func TestMemoryReplaySweepsBeforeFull(t *testing.T) {
	clock := time.Unix(1_000_000, 0)
	m := NewOwnedMemoryReplay(1_000_000, 1_000_000)
	m.now = func() time.Time { return clock }
	ctx := context.Background()
	peak := 0
	for i := range 100_000 {
		clock = clock.Add(10 * time.Millisecond) // 100 proofs a second
		if seen, err := m.SeenBy(ctx, "s", fmt.Sprintf("jti-%d", i), clock.Add(5*time.Second)); seen || err != nil {
			t.Fatalf("proof %d: seen=%v err=%v", i, seen, err)
		}
		n, _ := m.Len()
		peak = max(peak, n)
	}
	// 500 entries are live at any time (5 s × 100/s); the store must stay
	// within a small multiple of the sweep floor, far from its 100,000
	// inserts.
	if peak > 3*replaySweepFloor {
		t.Fatalf("store peaked at %d entries for 500 live ones", peak)
	}
	// A live entry is never swept: the last proof is still a replay.
	if seen, _ := m.SeenBy(ctx, "s", "jti-99999", clock.Add(5*time.Second)); !seen {
		t.Fatal("a live jti was forgotten by the sweep")
	}
}
