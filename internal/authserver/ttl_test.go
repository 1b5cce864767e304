package authserver

import (
	"testing"
	"time"
)

// TestTTLUntilNeverEternal: a deadline already past must not become the
// stores' "never expires" (TTL 0 or less).
func TestTTLUntilNeverEternal(t *testing.T) {
	for _, at := range []time.Time{time.Now(), time.Now().Add(-time.Hour), {}} {
		if d := ttlUntil(at); d <= 0 {
			t.Errorf("ttlUntil(%v) = %v: the entry would never expire", at, d)
		}
	}
	st := NewMemoryStore()
	if err := st.Put("refresh", "k", []byte("v"), ttlUntil(time.Now().Add(-time.Minute))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if v, _ := st.Get("refresh", "k"); v != nil {
		t.Fatal("an entry whose deadline had passed is still there after its clamped TTL")
	}
}
