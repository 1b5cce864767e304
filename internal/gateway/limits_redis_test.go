package gateway

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/state"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

// sharedLimiter is a rate limiter on srv's shared buckets with a clock the
// test moves, and a count of its round trips.
func sharedLimiter(t *testing.T, srv *testutil.Redis, rate float64, burst int, now *time.Time) (*rateLimiter, *countHook) {
	t.Helper()
	r, err := state.Open(config.Redis{URL: srv.URL(), KeyPrefix: "t:", Timeout: config.Duration{Duration: 500 * time.Millisecond}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	if err := r.Ping(context.Background()); err != nil { // dial now: connection setup is not counted
		t.Fatal(err)
	}
	hook := &countHook{}
	r.Client().AddHook(hook)
	l := newRateLimiter(rate, burst)
	l.now = func() time.Time { return *now }
	l.shared = newSharedRate(state.NewBuckets(r, rate, burst), l, burst, slog.New(slog.DiscardHandler))
	return l, hook
}

// TestSharedRateBorrowsInGrowingBatches: a busy subject borrows 1, 2, 4, 8,
// then maxBatch tokens per round trip; once its stash has expired it
// starts again at 1. (The clock is the test's; Redis's own clock refills
// the bucket, negligibly at this rate.)
func TestSharedRateBorrowsInGrowingBatches(t *testing.T) {
	srv := testutil.StartRedis(t)
	now := time.Unix(1e9, 0)
	l, hook := sharedLimiter(t, srv, 0.001, 1000, &now)
	if got := maxBatchFor(1000); got != 16 {
		t.Fatalf("maxBatchFor(1000) = %d", got)
	}
	hook.n.Store(0)
	for i := range 1 + 2 + 4 + 8 + 16 + 16 {
		if ok, _ := l.allow("alice"); !ok {
			t.Fatalf("request %d refused", i)
		}
	}
	// the first run of the script is EVALSHA + EVAL: one extra command
	if n := hook.n.Load(); n != 6+1 {
		t.Fatalf("47 requests took %d Redis commands, want 6 batches (+1 script load)", n)
	}
	now = now.Add(2 * stashTTL) // the stash is dropped: back to batches of 1
	hook.n.Store(0)
	l.allow("alice")
	l.allow("alice")
	if n := hook.n.Load(); n != 2 {
		t.Fatalf("after the stash expired: %d round trips for 2 requests, want 2 (batches 1, 2)", n)
	}
}

// TestSharedRateTolerance: two replicas on one bucket of 10 never admit
// more than 10 (no refill), however requests alternate; a replica whose
// Redis is unreachable falls back to its own bucket.
func TestSharedRateTolerance(t *testing.T) {
	srv := testutil.StartRedis(t)
	now := time.Unix(1e9, 0)
	a, _ := sharedLimiter(t, srv, 0.0001, 10, &now)
	b, _ := sharedLimiter(t, srv, 0.0001, 10, &now)
	admitted := 0
	for i := range 40 {
		l := a
		if i%3 == 0 {
			l = b
		}
		if ok, wait := l.allow("bob"); ok {
			admitted++
		} else if wait <= 0 {
			t.Fatalf("refusal %d without a wait", i)
		}
	}
	if admitted > 10 || admitted < 10-2*maxBatchFor(10) {
		t.Fatalf("admitted %d from a shared bucket of 10", admitted)
	}
	srv.Stop()
	local := 0
	for range 20 {
		if ok, _ := a.allow("carol"); ok {
			local++
		}
	}
	if local != 10 {
		t.Fatalf("Redis down: carol got %d from the local bucket of 10", local)
	}
}
