package gateway

import (
	"bytes"
	"testing"
	"time"
)

// FuzzSealedOpen: the reader of stored connected-account values never
// panics, opens only what was sealed under the same name, and a sealed
// value with any byte changed does not open.
func FuzzSealedOpen(f *testing.F) {
	s, err := newSealedStore(nil, bytes.Repeat([]byte{7}, 32))
	if err != nil {
		f.Fatal(err)
	}
	good, _ := s.seal(bucketTickets, "k", ticket{Subject: "alice", Expires: time.Unix(1, 0)})
	f.Add(good, "k", 0)
	f.Add([]byte{}, "k", 0)
	f.Add(good[:5], "other", 3)
	f.Fuzz(func(t *testing.T, raw []byte, key string, flip int) {
		var tk ticket
		// only a value sealed under "k" opens (seeds are sealed anew in
		// each fuzz worker, with the same key and another nonce)
		if err := s.open(bucketTickets, key, raw, &tk); err == nil && (key != "k" || tk.Subject != "alice") {
			t.Fatalf("opened a value that was not sealed under %q: %q", key, raw)
		}
		if key != "k" && s.open(bucketTickets, key, good, &tk) == nil {
			t.Fatalf("a value sealed under k opened under %q", key)
		}
		if len(good) > 0 {
			mod := bytes.Clone(good)
			mod[(flip%len(mod)+len(mod))%len(mod)] ^= 1
			if s.open(bucketTickets, "k", mod, &tk) == nil {
				t.Fatal("a modified value opened")
			}
		}
	})
}
