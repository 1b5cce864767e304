package state

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/dpop"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

// open is a handle on srv as a replica would open it.
func open(t *testing.T, srv *testutil.Redis, getenv func(string) string, mut func(*config.Redis)) *Redis {
	t.Helper()
	cfg := config.Redis{URL: srv.URL(), KeyPrefix: "t:", Timeout: config.Duration{Duration: 500 * time.Millisecond}}
	if mut != nil {
		mut(&cfg)
	}
	r, err := Open(cfg, getenv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func noenv(string) string { return "" }

// TestReplayAcrossReplicas: a jti recorded through one handle (replica A)
// is a replay through another (replica B); another scope (another mount)
// is not affected; the record expires with the proof's window.
func TestReplayAcrossReplicas(t *testing.T) {
	srv := testutil.StartRedis(t)
	a, b := NewReplay(open(t, srv, noenv, nil), "mcp", 10), NewReplay(open(t, srv, noenv, nil), "mcp", 10)
	ctx := context.Background()
	until := time.Now().Add(5 * time.Minute)
	if seen, err := a.SeenBy(ctx, "alice", "jkt:1", until); seen || err != nil {
		t.Fatalf("first use at A: seen=%v err=%v", seen, err)
	}
	if seen, err := b.SeenBy(ctx, "alice", "jkt:1", until); !seen || err != nil {
		t.Fatalf("replay at B: seen=%v err=%v, want seen", seen, err)
	}
	if seen, err := b.SeenBy(ctx, "mallory", "jkt:1", until); !seen || err != nil {
		t.Fatalf("replay at B by another owner: seen=%v err=%v, want seen", seen, err)
	}
	other := NewReplay(a.r, "other", 10)
	if seen, err := other.SeenBy(ctx, "alice", "jkt:1", until); seen || err != nil {
		t.Fatalf("another scope: seen=%v err=%v", seen, err)
	}
	keys, err := a.r.Client().Keys(ctx, "t:jti:mcp:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("jti keys %v %v", keys, err)
	}
	if strings.Contains(keys[0], "jkt") {
		t.Errorf("key %q holds the caller's jti; want its hash", keys[0])
	}
	ttl := a.r.Client().PTTL(ctx, keys[0]).Val()
	if ttl <= 4*time.Minute || ttl > 5*time.Minute {
		t.Errorf("jti ttl %v, want the proof window (≤5m)", ttl)
	}
}

// TestReplayShareIsGlobal: an owner at its share is refused at every
// replica (ErrReplayShareFull); other owners are not.
func TestReplayShareIsGlobal(t *testing.T) {
	srv := testutil.StartRedis(t)
	a, b := NewReplay(open(t, srv, noenv, nil), "mcp", 2), NewReplay(open(t, srv, noenv, nil), "mcp", 2)
	ctx := context.Background()
	until := time.Now().Add(time.Minute)
	for i, s := range []*Replay{a, b} {
		if _, err := s.SeenBy(ctx, "alice", "k"+string(rune('0'+i)), until); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.SeenBy(ctx, "alice", "k9", until); !errors.Is(err, dpop.ErrReplayShareFull) {
		t.Fatalf("alice's third proof: %v, want ErrReplayShareFull", err)
	}
	if _, err := b.SeenBy(ctx, "bob", "k9", until); err != nil {
		t.Fatalf("bob: %v", err)
	}
	// expired entries leave the share: carol (share 1) whose first proof's
	// window is over gets a second entry, and then no third
	one := NewReplay(a.r, "mcp", 1)
	if _, err := one.SeenBy(ctx, "carol", "c1", time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // past the 1ms ttl of an expired proof
	if _, err := one.SeenBy(ctx, "carol", "c2", until); err != nil {
		t.Fatalf("carol after her first entry expired: %v", err)
	}
	if _, err := one.SeenBy(ctx, "carol", "c3", until); !errors.Is(err, dpop.ErrReplayShareFull) {
		t.Fatalf("carol's second live entry: %v, want ErrReplayShareFull", err)
	}
}

// TestReplayFailsClosed: Redis stopped → ErrReplayUnavailable (never
// "not seen"), no panic; restarted empty → records reset, the store works.
// A closed handle also fails closed.
func TestReplayFailsClosed(t *testing.T) {
	srv := testutil.StartRedis(t)
	r := open(t, srv, noenv, nil)
	s := NewReplay(r, "mcp", 5)
	ctx := context.Background()
	until := time.Now().Add(time.Minute)
	if _, err := s.SeenBy(ctx, "alice", "k1", until); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	seen, err := s.SeenBy(ctx, "alice", "k2", until)
	if !errors.Is(err, dpop.ErrReplayUnavailable) || !errors.Is(err, ErrUnavailable) || seen {
		t.Fatalf("Redis down: seen=%v err=%v, want ErrReplayUnavailable", seen, err)
	}
	if err := r.Ping(ctx); err == nil {
		t.Fatal("Ping with Redis down: nil")
	}
	srv.Start()
	if seen, err := s.SeenBy(ctx, "alice", "k1", until); seen || err != nil {
		t.Fatalf("after an empty restart: seen=%v err=%v, want a fresh record (documented reset)", seen, err)
	}
	if seen, err := s.SeenBy(ctx, "alice", "k1", until); !seen || err != nil {
		t.Fatalf("replay after restart: seen=%v err=%v", seen, err)
	}
	_ = r.Close()
	if _, err := s.SeenBy(ctx, "alice", "k3", until); !errors.Is(err, dpop.ErrReplayUnavailable) {
		t.Fatalf("closed handle: %v", err)
	}
}

// TestReplayOutOfMemoryFailsClosed: a Redis at maxmemory with noeviction
// refuses the write; the proof is refused (503), not accepted.
func TestReplayOutOfMemoryFailsClosed(t *testing.T) {
	srv := testutil.StartRedis(t, "--maxmemory-policy", "noeviction")
	r := open(t, srv, noenv, nil)
	ctx := context.Background()
	if err := r.Client().ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	_, err := NewReplay(r, "mcp", 5).SeenBy(ctx, "alice", "k1", time.Now().Add(time.Minute))
	if !errors.Is(err, dpop.ErrReplayUnavailable) {
		t.Fatalf("Redis out of memory: %v, want ErrReplayUnavailable", err)
	}
}

// TestPasswordNeverInErrors: a wrong password fails Ping and every store
// call, and no error text holds it.
func TestPasswordNeverInErrors(t *testing.T) {
	const right, wrong = "right-horse-battery", "Wr0ng-s3cret-staple"
	srv := testutil.StartRedis(t, "--requirepass", right)
	getenv := func(k string) string {
		if k == "REDIS_PW" {
			return wrong
		}
		return ""
	}
	r := open(t, srv, getenv, func(c *config.Redis) { c.PasswordEnv = "REDIS_PW" })
	ctx := context.Background()
	var errs []error
	errs = append(errs, r.Ping(ctx))
	_, err := NewReplay(r, "mcp", 5).SeenBy(ctx, "a", "k", time.Now().Add(time.Minute))
	errs = append(errs, err)
	_, _, err = NewBuckets(r, 1, 5).Take(ctx, "a", 1)
	errs = append(errs, err)
	for i, err := range errs {
		if err == nil {
			t.Fatalf("call %d with a wrong password: nil error", i)
		}
		if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), right) {
			t.Errorf("call %d: error %q holds a password", i, err)
		}
	}
	good := open(t, srv, func(string) string { return right }, func(c *config.Redis) { c.PasswordEnv = "REDIS_PW" })
	if err := good.Ping(ctx); err != nil {
		t.Fatalf("right password: %v", err)
	}
}

// TestBucketsShared: two replicas take from one bucket: at most burst
// tokens in all, then none with a wait; a Redis error is ErrUnavailable.
func TestBucketsShared(t *testing.T) {
	srv := testutil.StartRedis(t)
	a, b := NewBuckets(open(t, srv, noenv, nil), 0.001, 5), NewBuckets(open(t, srv, noenv, nil), 0.001, 5)
	ctx := context.Background()
	total := 0
	for _, bk := range []*Buckets{a, b, a, b} {
		got, _, err := bk.Take(ctx, "alice", 2)
		if err != nil {
			t.Fatal(err)
		}
		total += got
	}
	if total != 5 {
		t.Fatalf("granted %d tokens from a burst of 5", total)
	}
	got, wait, err := b.Take(ctx, "alice", 1)
	if got != 0 || wait <= 0 || err != nil {
		t.Fatalf("empty bucket: got=%d wait=%v err=%v", got, wait, err)
	}
	if got, _, _ := a.Take(ctx, "bob", 3); got != 3 {
		t.Fatalf("bob's own bucket: %d", got)
	}
	srv.Stop()
	if _, _, err := a.Take(ctx, "alice", 1); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Redis down: %v", err)
	}
}

// TestReplayTimeoutFailsClosed: a Redis that accepts but does not answer
// (paused) makes SeenBy fail closed within the timeout, and the store
// works again once Redis answers.
func TestReplayTimeoutFailsClosed(t *testing.T) {
	srv := testutil.StartRedis(t)
	r := open(t, srv, noenv, func(c *config.Redis) { c.Timeout.Duration = 100 * time.Millisecond })
	s := NewReplay(r, "mcp", 5)
	ctx := context.Background()
	until := time.Now().Add(time.Minute)
	if _, err := s.SeenBy(ctx, "alice", "k1", until); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	seen, err := s.SeenBy(ctx, "alice", "k2", until)
	srv.Resume()
	if !errors.Is(err, dpop.ErrReplayUnavailable) || seen {
		t.Fatalf("paused Redis: seen=%v err=%v, want ErrReplayUnavailable", seen, err)
	}
	var ok bool
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !ok; time.Sleep(20 * time.Millisecond) {
		seen, err = s.SeenBy(ctx, "alice", "k1", until)
		ok = err == nil
	}
	if !ok || !seen {
		t.Fatalf("after Resume: seen=%v err=%v, want the k1 record back (Redis kept it)", seen, err)
	}
}

// TestWritableOutOfMemory: a Redis out of memory (noeviction) still
// answers PING but refuses writes: Writable, the readiness probe, fails;
// it passes again once memory is available.
func TestWritableOutOfMemory(t *testing.T) {
	srv := testutil.StartRedis(t, "--maxmemory-policy", "noeviction")
	r := open(t, srv, noenv, nil)
	ctx := context.Background()
	if err := r.Writable(ctx, "i1"); err != nil {
		t.Fatalf("healthy Redis: %v", err)
	}
	if err := r.Client().ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Ping(ctx); err != nil {
		t.Fatalf("PING under OOM: %v (the case readiness must catch answers PING)", err)
	}
	if err := r.Writable(ctx, "i1"); err == nil {
		t.Fatal("Redis out of memory: Writable passed")
	}
	if err := r.Client().ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Writable(ctx, "i1"); err != nil {
		t.Fatalf("after memory freed: %v", err)
	}
	if ttl := r.Client().PTTL(ctx, r.Key("readyz", "i1")).Val(); ttl <= 0 || ttl > 2*time.Second {
		t.Fatalf("probe key TTL %v; want it to expire within 2s", ttl)
	}
}
