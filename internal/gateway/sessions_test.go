package gateway

import (
	"fmt"
	"testing"
	"time"
)

// TestSessionBinderBudgets: the binding table is bounded per subject and in
// total, reservations count, idle bindings are evicted to make room, and an
// id bound to one subject is never rebound to another. Measured in table
// entries.
func TestSessionBinderBudgets(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newSessionBinder(6, 2, time.Minute)
	b.now = func() time.Time { return now }
	must := func(owner, id string) {
		t.Helper()
		if r := b.reserve(owner); r != nil {
			t.Fatalf("reserve %s: %s", owner, r.message())
		}
		if !b.commit(owner, id) {
			t.Fatalf("commit %s %s", owner, id)
		}
	}
	must("a", "a1")
	must("a", "a2")
	r := b.reserve("a")
	if r == nil || !r.perSubject || r.status() != 429 || r.retryAfterSeconds() != "60" {
		t.Fatalf("third session of a: %+v", r)
	}
	// A reservation in flight counts too.
	if b.reserve("b") != nil || b.reserve("b") != nil {
		t.Fatal("b's two reservations")
	}
	if r := b.reserve("b"); r == nil || !r.perSubject {
		t.Fatal("reservations do not count against the share")
	}
	b.release("b")
	b.release("b")
	b.release("b") // more releases than reservations change nothing
	if n := b.ownerLen("b"); n != 0 {
		t.Fatalf("b holds %d after releasing", n)
	}
	must("b", "b1")
	must("c", "c1")
	must("c", "c2")
	must("d", "d1")
	if r := b.reserve("e"); r == nil || r.perSubject || r.status() != 503 {
		t.Fatalf("full table: %+v", r)
	}
	// An id another subject holds is never rebound, and the reservation is given back.
	b.forget("c2")
	if b.reserve("d") != nil {
		t.Fatal("reserve d")
	}
	if b.commit("d", "a1") {
		t.Fatal("a1 of a was rebound to d")
	}
	if id, ok := b.lookup("a1", "a"); !ok || id != "a1" {
		t.Fatal("a lost a1")
	}
	if _, ok := b.lookup("a1", "d"); ok {
		t.Fatal("d owns a1")
	}
	b.release("d")
	if n := b.ownerLen("d"); n != 1 {
		t.Fatalf("d holds %d, want 1", n)
	}
	// Idle bindings are evicted to make room; a used one stays.
	now = now.Add(50 * time.Second)
	b.lookup("a1", "a")
	now = now.Add(20 * time.Second)
	for i := 0; i < 4; i++ {
		must(fmt.Sprintf("n%d", i), fmt.Sprintf("n%d", i))
	}
	if n := b.len(); n != 5 {
		t.Fatalf("%d bindings, want a1 and four new ones", n)
	}
	if _, ok := b.lookup("a2", "a"); ok {
		t.Fatal("idle a2 still bound")
	}
	if _, ok := b.lookup("a1", "a"); !ok {
		t.Fatal("a1 was used and must stay")
	}
	// A subject at its share gets room when its own bindings went idle.
	b2 := newSessionBinder(100, 1, time.Minute)
	b2.now = func() time.Time { return now }
	if b2.reserve("x") != nil || !b2.commit("x", "x1") {
		t.Fatal("x1")
	}
	if r := b2.reserve("x"); r == nil {
		t.Fatal("x beyond its share")
	}
	now = now.Add(2 * time.Minute)
	if r := b2.reserve("x"); r != nil {
		t.Fatalf("x after its binding went idle: %s", r.message())
	}
}
