package gateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/upstream"
)

// TestSessionBinderBudgets: the binding table is bounded per subject and in
// total; a subject at its share evicts its own least recently used idle
// binding (and the upstream session is ended), never a busy one and never
// another subject's; reservations count; an id bound to one subject is
// never rebound to another; idle bindings expire. Measured in table
// entries and ended sessions.
func TestSessionBinderBudgets(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newSessionBinder(upstream.NewSlots(6, 2), time.Minute)
	b.now = func() time.Time { return now }
	var ended []string
	b.end = func(s *binding, _ bool) { ended = append(ended, s.id) }
	must := func(owner, id string) {
		t.Helper()
		res, r := b.reserve(owner)
		if r != nil {
			t.Fatalf("reserve %s: %s", owner, r.message())
		}
		if !b.commit(res, owner, id, nil) {
			t.Fatalf("commit %s %s", owner, id)
		}
		res.done()
		now = now.Add(time.Second)
	}
	must("a", "a1")
	must("a", "a2")
	// a is at its share: a1 (least recently used, idle) makes room.
	must("a", "a3")
	if _, _, ok := b.lookup("a1", "a"); ok || len(ended) != 1 || ended[0] != "a1" {
		t.Fatalf("a1 not evicted: ended %v", ended)
	}
	if n := b.ownerLen("a"); n != 2 {
		t.Fatalf("a holds %d, want its share 2", n)
	}
	// Busy bindings are never evicted: with a2 and a3 in use, a is refused.
	_, done2, ok2 := b.lookup("a2", "a")
	_, done3, ok3 := b.lookup("a3", "a")
	if !ok2 || !ok3 {
		t.Fatal("a2, a3")
	}
	res, r := b.reserve("a")
	if r == nil || !r.perSubject || r.status() != 429 || r.retryAfterSeconds() == "" {
		t.Fatalf("third session of a with both in use: %+v %v", r, res)
	}
	done3()
	now = now.Add(time.Second)
	must("a", "a4") // a3 is idle again: evicted; a2 still busy stays
	if _, d, ok := b.lookup("a2", "a"); !ok {
		t.Fatal("the busy a2 was evicted")
	} else {
		d()
	}
	if _, _, ok := b.lookup("a3", "a"); ok {
		t.Fatal("a3 still bound")
	}
	done2()
	// A reservation in flight counts too (and is busy).
	rb1, _ := b.reserve("b")
	rb2, _ := b.reserve("b")
	if rb1 == nil || rb2 == nil {
		t.Fatal("b's two reservations")
	}
	if _, r := b.reserve("b"); r == nil || !r.perSubject {
		t.Fatal("reservations do not count against the share")
	}
	b.release(rb1)
	b.release(rb2)
	b.release(rb2) // more releases than reservations change nothing
	if n := b.ownerLen("b"); n != 0 {
		t.Fatalf("b holds %d after releasing", n)
	}
	must("b", "b1")
	must("c", "c1")
	must("c", "c2")
	// The table (6) is full: a2 a4 b1 c1 c2 + d1. Without EvictAnyIdle a
	// full table refuses and ends nobody's session.
	must("d", "d1")
	before := len(ended)
	if _, r := b.reserve("e"); r == nil || r.perSubject || r.status() != 503 {
		t.Fatalf("full table: %+v", r)
	}
	if len(ended) != before {
		t.Fatal("a full table ended another subject's session")
	}
	// An id another subject holds is never rebound, and the reservation is given back.
	b.forget("c2")
	res, _ = b.reserve("d")
	if res == nil {
		t.Fatal("reserve d")
	}
	if b.commit(res, "d", "a2", nil) {
		t.Fatal("a2 of a was rebound to d")
	}
	if id, d, ok := b.lookup("a2", "a"); !ok || id != "a2" {
		t.Fatal("a lost a2")
	} else {
		d()
	}
	if _, _, ok := b.lookup("a2", "d"); ok {
		t.Fatal("d owns a2")
	}
	if n := b.ownerLen("d"); n != 1 {
		t.Fatalf("d holds %d, want 1", n)
	}
	// Idle bindings expire (and their upstream sessions are ended).
	now = now.Add(2 * time.Minute)
	if _, _, ok := b.lookup("a2", "a"); ok {
		t.Fatal("a2 outlived the idle timeout")
	}
	must("x", "x1")
	if n := b.len(); n != 1 {
		t.Fatalf("%d bindings after the sweep, want x1", n)
	}

	// A table that evicts any idle binding when full (HTTP upstreams)
	// still never evicts a busy one.
	g := newSessionBinder(upstream.NewSlots(4, 2).EvictAnyIdle(), time.Hour)
	g.now = b.now
	ended = nil
	g.end = func(s *binding, _ bool) { ended = append(ended, s.id) }
	for i := 0; i < 4; i++ {
		res, r := g.reserve(fmt.Sprintf("o%d", i))
		if r != nil || !g.commit(res, fmt.Sprintf("o%d", i), fmt.Sprintf("s%d", i), nil) {
			t.Fatal("fill")
		}
		if i > 0 {
			res.done() // s0 stays busy
		}
		now = now.Add(time.Second)
	}
	res, r = g.reserve("newcomer")
	if r != nil || !g.commit(res, "newcomer", "n1", nil) {
		t.Fatalf("newcomer on a full table of idle bindings: %+v", r)
	}
	if len(ended) != 1 || ended[0] != "s1" {
		t.Fatalf("evicted %v, want the least recently used idle s1 (s0 is busy)", ended)
	}
}
