package upstream

import (
	"errors"
	"sync"
	"testing"
)

// fakeShared is a deployment-wide count in memory (state.Leases in the
// gateway): the leases of every subject, shared by several Slots as by
// several replicas.
type fakeShared struct {
	mu     sync.Mutex // guards leases and down
	leases map[string]map[string]bool
	down   bool
}

func (f *fakeShared) Acquire(subject, lease string, share int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return &LimitError{Unavailable: true}
	}
	set := f.leases[subject]
	if set == nil {
		set = map[string]bool{}
		f.leases[subject] = set
	}
	if !set[lease] && len(set) >= share {
		return &LimitError{PerSubject: true, Global: true, Limit: share}
	}
	set[lease] = true
	return nil
}

func (f *fakeShared) Rename(subject, from, to string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.leases[subject], from)
	f.leases[subject][to] = true
}

func (f *fakeShared) Release(subject, lease string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.leases[subject], lease)
}

func (f *fakeShared) count(subject string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.leases[subject])
}

// TestSlotsSharedShare: two budgets (replicas) on one shared count: a
// subject at its share over both is refused by the one holding none of
// its slots (Global), and the one holding an idle slot of it ends that one
// instead; a release and an eviction give the lease back; a lease named
// twice (an adopted session) counts once; an unreachable count refuses
// and leaves no slot behind.
func TestSlotsSharedShare(t *testing.T) {
	sh := &fakeShared{leases: map[string]map[string]bool{}}
	a, b := NewSlots(10, 2).SetShared(sh), NewSlots(10, 2).SetShared(sh)
	s1, done1, err := a.AcquireAs("alice", "sess-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Acquire("alice"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.AcquireAs("alice", "sess-1"); err != nil {
		t.Fatalf("a lease alice holds already, at the other replica: %v", err)
	}
	if n := sh.count("alice"); n != 2 {
		t.Fatalf("%d leases, want 2", n)
	}
	c := NewSlots(10, 2).SetShared(sh)
	var le *LimitError
	if _, _, err := c.Acquire("alice"); !errors.As(err, &le) || !le.Global || !le.PerSubject {
		t.Fatalf("third replica, alice at her share: %v, want a Global per-subject refusal", err)
	}
	if c.Len() != 0 {
		t.Fatalf("the refused slot stayed: %d", c.Len())
	}
	if _, _, err := c.Acquire("bob"); err != nil {
		t.Fatalf("bob: %v", err)
	}
	// a holds alice's sess-1, idle and evictable: a new one at a ends it
	evicted := false
	done1()
	s1.Evictable(func() { evicted = true })
	if _, _, err := a.Acquire("alice"); err != nil || !evicted {
		t.Fatalf("at the replica holding an idle slot of alice: err=%v evicted=%v", err, evicted)
	}
	if sh.leases["alice"]["sess-1"] {
		t.Fatal("the evicted slot's lease was not given back")
	}
	sh.mu.Lock()
	sh.down = true
	sh.mu.Unlock()
	if _, _, err := c.Acquire("carol"); !errors.As(err, &le) || !le.Unavailable || le.RetryAfter() != "5" {
		t.Fatalf("shared count unreachable: %v", err)
	}
	if n := c.SubjectLen("carol"); n != 0 {
		t.Fatalf("carol holds %d slots after the refusal", n)
	}
}

// TestSlotExpireKeepsLease: an expired slot gives back its local place
// and leaves its lease (another replica may renew it); Release gives both.
func TestSlotExpireKeepsLease(t *testing.T) {
	sh := &fakeShared{leases: map[string]map[string]bool{}}
	s := NewSlots(10, 2).SetShared(sh)
	sl, _, err := s.AcquireAs("alice", "sess-1")
	if err != nil {
		t.Fatal(err)
	}
	sl.Expire()
	if s.Len() != 0 || sh.count("alice") != 1 {
		t.Fatalf("after Expire: %d local, %d leases; want 0 and 1", s.Len(), sh.count("alice"))
	}
	if len(s.Leases()) != 0 {
		t.Fatal("an expired slot is still renewed")
	}
	sl2, _, _ := s.Acquire("alice")
	sl2.SetLease("sess-2")
	if !sh.leases["alice"]["sess-2"] || s.Leases()["alice"][0] != "sess-2" {
		t.Fatalf("SetLease: %v %v", sh.leases, s.Leases())
	}
	sl2.Release()
	if sh.leases["alice"]["sess-2"] {
		t.Fatal("Release kept the lease")
	}
}
