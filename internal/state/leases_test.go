package state

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/testutil"
)

// TestLeasesShareIsGlobal: two replicas (handles) acquire from one
// owner's set: at most share leases in all; an id already held is granted
// again without counting twice; a release frees a place; another owner
// and another budget are separate; keys and members never hold the ids.
func TestLeasesShareIsGlobal(t *testing.T) {
	srv := testutil.StartRedis(t)
	a, b := NewLeases(open(t, srv, noenv, nil), time.Minute), NewLeases(open(t, srv, noenv, nil), time.Minute)
	ctx := context.Background()
	for i, l := range []*Leases{a, b} {
		if ok, err := l.Acquire(ctx, "sess", "alice", "sid-"+string(rune('0'+i)), 2); !ok || err != nil {
			t.Fatalf("lease %d: ok=%v err=%v", i, ok, err)
		}
	}
	if ok, err := a.Acquire(ctx, "sess", "alice", "sid-9", 2); ok || err != nil {
		t.Fatalf("alice's third lease: ok=%v err=%v, want refused", ok, err)
	}
	if ok, err := a.Acquire(ctx, "sess", "alice", "sid-1", 2); !ok || err != nil {
		t.Fatalf("a lease alice holds, adopted by another replica: ok=%v err=%v, want granted", ok, err)
	}
	if n, _ := b.Count(ctx, "sess", "alice"); n != 2 {
		t.Fatalf("count %d, want 2 (an adopted lease counts once)", n)
	}
	if ok, _ := b.Acquire(ctx, "sess", "bob", "sid-9", 2); !ok {
		t.Fatal("bob refused: shares are per owner")
	}
	if ok, _ := b.Acquire(ctx, "streams", "alice", "st-1", 2); !ok {
		t.Fatal("another budget refused")
	}
	if err := b.Release(ctx, "sess", "alice", "sid-0"); err != nil {
		t.Fatal(err)
	}
	if ok, err := a.Acquire(ctx, "sess", "alice", "sid-9", 2); !ok || err != nil {
		t.Fatalf("after a release: ok=%v err=%v", ok, err)
	}
	keys, _ := a.r.Client().Keys(ctx, "t:lease:*").Result()
	for _, k := range keys {
		if strings.Contains(k, "alice") || strings.Contains(k, "bob") {
			t.Errorf("key %q names its owner", k)
		}
		ms, _ := a.r.Client().ZRange(ctx, k, 0, -1).Result()
		for _, m := range ms {
			if strings.Contains(m, "sid") || strings.Contains(m, "st-") {
				t.Errorf("member %q holds the lease id", m)
			}
		}
	}
}

// TestLeasesExpireUnlessRenewed: a lease whose replica stops renewing
// expires after ttl and its place comes back; one renewed stays; renewing
// after the set was lost (Redis restarted empty) writes it again; a
// rename keeps the place; a released lease is not written back while
// its set lives.
func TestLeasesExpireUnlessRenewed(t *testing.T) {
	srv := testutil.StartRedis(t)
	l := NewLeases(open(t, srv, noenv, nil), 300*time.Millisecond)
	ctx := context.Background()
	for _, id := range []string{"kept", "dead"} {
		if ok, err := l.Acquire(ctx, "child", "alice", id, 2); !ok || err != nil {
			t.Fatalf("%s: ok=%v err=%v", id, ok, err)
		}
	}
	for range 4 { // 4 × 150ms: past the ttl of "dead", "kept" renewed throughout
		time.Sleep(150 * time.Millisecond)
		if err := l.Renew(ctx, []Held{{Budget: "child", Owner: "alice", IDs: []string{"kept"}}}); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := l.Count(ctx, "child", "alice"); n != 1 {
		t.Fatalf("count %d, want 1 (the unrenewed lease expired)", n)
	}
	if ok, _ := l.Acquire(ctx, "child", "alice", "new", 2); !ok {
		t.Fatal("the expired lease's place did not come back")
	}
	if ok, _ := l.Acquire(ctx, "child", "alice", "more", 2); ok {
		t.Fatal("a third lease with share 2")
	}
	if err := l.Rename(ctx, "child", "alice", "new", "renamed"); err != nil {
		t.Fatal(err)
	}
	if n, _ := l.Count(ctx, "child", "alice"); n != 2 {
		t.Fatalf("count after rename %d, want 2", n)
	}
	// a lease released elsewhere (its session ended through another
	// replica) is not written back by a replica that still lists it
	if err := l.Release(ctx, "child", "alice", "renamed"); err != nil {
		t.Fatal(err)
	}
	if err := l.Renew(ctx, []Held{{Budget: "child", Owner: "alice", IDs: []string{"kept", "renamed"}}}); err != nil {
		t.Fatal(err)
	}
	if n, _ := l.Count(ctx, "child", "alice"); n != 1 {
		t.Fatalf("count after a release and a renewal listing it %d, want 1", n)
	}
	// nor when the release emptied the set
	if err := l.Release(ctx, "child", "alice", "kept"); err != nil {
		t.Fatal(err)
	}
	if err := l.Renew(ctx, []Held{{Budget: "child", Owner: "alice", IDs: []string{"kept", "renamed"}}}); err != nil {
		t.Fatal(err)
	}
	if n, _ := l.Count(ctx, "child", "alice"); n != 0 {
		t.Fatalf("count after releases emptied the set and a renewal listing them %d, want 0", n)
	}
	if err := l.r.Client().FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := l.Renew(ctx, []Held{{Budget: "child", Owner: "alice", IDs: []string{"kept", "renamed"}}}); err != nil {
		t.Fatal(err)
	}
	if n, _ := l.Count(ctx, "child", "alice"); n != 2 {
		t.Fatalf("count after an empty restart and a renewal %d, want 2", n)
	}
}

// TestLeasesRenewChunks: a heartbeat with more leases than one script call
// takes renews all of them.
func TestLeasesRenewChunks(t *testing.T) {
	srv := testutil.StartRedis(t)
	l := NewLeases(open(t, srv, noenv, nil), time.Minute)
	ctx := context.Background()
	var held []Held
	for o := range 3 {
		h := Held{Budget: "sess", Owner: "o" + string(rune('0'+o))}
		for i := range renewChunk {
			h.IDs = append(h.IDs, h.Owner+"-"+strings.Repeat("x", i%7)+string(rune(i)))
		}
		held = append(held, h)
	}
	if err := l.Renew(ctx, held); err != nil {
		t.Fatal(err)
	}
	for _, h := range held {
		if n, _ := l.Count(ctx, "sess", h.Owner); n != len(h.IDs) {
			t.Fatalf("%s: %d leases, want %d", h.Owner, n, len(h.IDs))
		}
	}
}

// TestLeasesFailClosed: Redis stopped → every call is ErrUnavailable
// (never "granted"); restarted, acquiring works again.
func TestLeasesFailClosed(t *testing.T) {
	srv := testutil.StartRedis(t)
	l := NewLeases(open(t, srv, noenv, nil), time.Minute)
	ctx := context.Background()
	srv.Stop()
	ok, err := l.Acquire(ctx, "sess", "alice", "a", 5)
	if ok || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Redis down: ok=%v err=%v, want ErrUnavailable", ok, err)
	}
	for i, err := range []error{l.Release(ctx, "sess", "alice", "a"), l.Rename(ctx, "sess", "alice", "a", "b"),
		l.Renew(ctx, []Held{{Budget: "sess", Owner: "alice", IDs: []string{"a"}}})} {
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call %d with Redis down: %v", i, err)
		}
	}
	srv.Start()
	if ok, err := l.Acquire(ctx, "sess", "alice", "a", 5); !ok || err != nil {
		t.Fatalf("after restart: ok=%v err=%v", ok, err)
	}
}
