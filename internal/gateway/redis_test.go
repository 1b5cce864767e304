package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/dpop"
	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

// Two replicas (A, B) of one deployment: the same configuration, one
// Redis. Requests to B go to B's listener with A's public Host, as behind
// a load balancer.

// redisPair starts replica A (startGateway) and replica B on srv.
func redisPair(t *testing.T, srv *testutil.Redis, mutate func(*config.Gateway)) (a, b *testGateway) {
	t.Helper()
	a = startGateway(t, func(c *config.Gateway) {
		c.State.Redis = config.Redis{URL: srv.URL()}
		if mutate != nil {
			mutate(c)
		}
	})
	return a, a.replica(t)
}

// replica is another gateway with tg's configuration (public URL, IdP,
// upstream) on its own listener.
func (tg *testGateway) replica(t *testing.T) *testGateway {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(context.Background(), tg.cfg, Options{Logger: slog.New(slog.DiscardHandler), Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	gw.audit.w = &lockedWriter{w: &bytes.Buffer{}}
	go func() { _ = gw.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
	})
	b := &testGateway{gw: gw, url: "http://" + ln.Addr().String(), idp: tg.idp, up: tg.up, cfg: tg.cfg}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if r := b.do(t, "GET", "/readyz", "", b.host(tg)); r.status == http.StatusOK {
			break
		}
	}
	return b
}

// host is the Host header of tg's public URL, for requests to another replica.
func (tg *testGateway) host(of *testGateway) map[string]string {
	return map[string]string{"Host": strings.TrimPrefix(of.url, "http://")}
}

// TestRedisDPoPProofReplayedToAnotherReplica: a proof accepted by A is
// refused by B (401 invalid_dpop_proof); a fresh proof is accepted by B.
func TestRedisDPoPProofReplayedToAnotherReplica(t *testing.T) {
	srv := testutil.StartRedis(t)
	a, b := redisPair(t, srv, func(c *config.Gateway) { c.Upstreams[0].DPoP = "required" })
	alice := newDPoPCaller(t, a, "alice")
	h := alice.headers(t, a)
	if r := a.do(t, "POST", "/mcp", listBody, h); r.status != http.StatusOK {
		t.Fatalf("A: %d %s", r.status, r.body)
	}
	r := b.do(t, "POST", "/mcp", listBody, with(h, "Host", strings.TrimPrefix(a.url, "http://")))
	if r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), "jti replay") {
		t.Fatalf("replay at B: %d %s, want 401 naming the jti replay", r.status, r.body)
	}
	if r := b.do(t, "POST", "/mcp", listBody, with(alice.headers(t, a), "Host", strings.TrimPrefix(a.url, "http://"))); r.status != http.StatusOK {
		t.Fatalf("fresh proof at B: %d %s", r.status, r.body)
	}
}

// TestRedisDPoPNoncesAcrossReplicas: with one dpop_nonces.key_file, a
// nonce B issued is accepted by A (stateless AEAD nonces, no Redis).
func TestRedisDPoPNoncesAcrossReplicas(t *testing.T) {
	srv := testutil.StartRedis(t)
	key := filepath.Join(t.TempDir(), "nonce.key")
	if err := os.WriteFile(key, []byte("shared-nonce-secret-for-every-replica-0123"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, b := redisPair(t, srv, func(c *config.Gateway) {
		c.Upstreams[0].DPoP, c.Upstreams[0].DPoPNonce = "required", true
		c.DPoPNonces.KeyFile = key
	})
	alice := newDPoPCaller(t, a, "alice")
	r := b.do(t, "POST", "/mcp", listBody, with(alice.headers(t, a), "Host", strings.TrimPrefix(a.url, "http://")))
	nonce := r.header.Get("DPoP-Nonce")
	if r.status != http.StatusUnauthorized || nonce == "" {
		t.Fatalf("B without a nonce: %d, nonce %q; want 401 use_dpop_nonce", r.status, nonce)
	}
	p, err := dpop.NewProof(alice.key, "ES256", "POST", a.url+"/mcp", dpop.ProofOptions{AccessToken: alice.tok, Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	if r := a.do(t, "POST", "/mcp", listBody, map[string]string{"Authorization": "DPoP " + alice.tok, "DPoP": p}); r.status != http.StatusOK {
		t.Fatalf("A with B's nonce: %d %s", r.status, r.body)
	}
}

// TestRedisRateLimitIsGlobal: with an (almost) non-refilling bucket of 16,
// A and B together admit at most 16 of bob's requests — in memory mode
// they would admit 32 — and at least 16 − replicas×maxBatch (tokens
// borrowed by one replica and not spent).
func TestRedisRateLimitIsGlobal(t *testing.T) {
	srv := testutil.StartRedis(t)
	const burst = 16
	a, b := redisPair(t, srv, func(c *config.Gateway) { c.Limits.RequestsPerSecond, c.Limits.Burst = 0.001, burst })
	tok := a.token(t, "bob", "mcp:read")
	ok, limited := 0, 0
	for i := range 4 * burst {
		tg, h := a, bearer(tok)
		if i%2 == 1 {
			tg, h = b, with(h, "Host", strings.TrimPrefix(a.url, "http://"))
		}
		switch r := tg.do(t, "POST", "/mcp", listBody, h); r.status {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
			if code, _, _ := r.rpcError(t); code != mcp.CodeRateLimited || r.header.Get("Retry-After") == "" {
				t.Fatalf("429 without -42900 and Retry-After: %d %v", code, r.header)
			}
		default:
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
	}
	if lo := burst - 2*maxBatchFor(burst); ok > burst || ok < lo {
		t.Fatalf("admitted %d of bob's requests across two replicas (%d refused); want %d..%d", ok, limited, lo, burst)
	}
}

// TestRedisDownFailsClosed: Redis stopped → a DPoP request is refused with
// 503, -50300, Retry-After and "shared state (Redis) unavailable"; /readyz
// is 503 naming the shared state; a Bearer request is rate-limited by the
// replica's own buckets (documented fallback) and served. Redis back
// (empty) → /readyz 200 and DPoP accepted again.
func TestRedisDownFailsClosed(t *testing.T) {
	srv := testutil.StartRedis(t)
	a := startGateway(t, func(c *config.Gateway) {
		c.State.Redis = config.Redis{URL: srv.URL(), Timeout: config.Duration{Duration: 200 * time.Millisecond}}
	})
	alice := newDPoPCaller(t, a, "alice")
	if r := a.do(t, "POST", "/mcp", listBody, alice.headers(t, a)); r.status != http.StatusOK {
		t.Fatalf("before: %d %s", r.status, r.body)
	}
	srv.Stop()
	r := a.do(t, "POST", "/mcp", listBody, alice.headers(t, a))
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("DPoP with Redis down: %d %v %s, want 503 with Retry-After", r.status, r.header, r.body)
	}
	if code, msg, _ := r.rpcError(t); code != mcp.CodeUnavailable || !strings.Contains(msg, "shared state (Redis) unavailable") {
		t.Fatalf("DPoP with Redis down: code %d %q", code, msg)
	}
	if n := a.up.hits.Load(); n != 1 {
		t.Fatalf("upstream reached %d times; the refused request must not be forwarded", n)
	}
	rd := a.readyz(t, http.StatusServiceUnavailable)
	if rd.status != http.StatusServiceUnavailable || !strings.Contains(string(rd.body), "shared state (Redis) unavailable") {
		t.Fatalf("/readyz with Redis down: %d %s", rd.status, rd.body)
	}
	if r := a.do(t, "POST", "/mcp", listBody, bearer(a.token(t, "bob", "mcp:read"))); r.status != http.StatusOK {
		t.Fatalf("Bearer with Redis down (local rate limit): %d %s", r.status, r.body)
	}
	srv.Start()
	if rd := a.readyz(t, http.StatusOK); rd.status != http.StatusOK {
		t.Fatalf("/readyz after Redis restarted: %d %s", rd.status, rd.body)
	}
	if r := a.do(t, "POST", "/mcp", listBody, alice.headers(t, a)); r.status != http.StatusOK {
		t.Fatalf("DPoP after Redis restarted: %d %s", r.status, r.body)
	}
}

// readyz polls /readyz until it answers want (it asks Redis at most every
// stateProbeEvery) or 5 s have passed, and returns the last answer.
func (tg *testGateway) readyz(t *testing.T, want int) reply {
	t.Helper()
	var rd reply
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if rd = tg.do(t, "GET", "/readyz", "", nil); rd.status == want {
			break
		}
	}
	return rd
}

// TestRedisReadyzProbesAreBounded: a flood of /readyz costs at most one
// PING per stateProbeEvery.
func TestRedisReadyzProbesAreBounded(t *testing.T) {
	srv := testutil.StartRedis(t)
	a := startGateway(t, func(c *config.Gateway) { c.State.Redis = config.Redis{URL: srv.URL()} })
	hook := &countHook{}
	a.gw.redis.Client().AddHook(hook)
	start := time.Now()
	for range 50 {
		a.do(t, "GET", "/readyz", "", nil)
	}
	if max := int64(time.Since(start)/stateProbeEvery) + 1; hook.n.Load() > max {
		t.Fatalf("50 probes in %v sent %d PINGs, want at most %d", time.Since(start), hook.n.Load(), max)
	}
}

// TestRedisLocalFallbackStillLimits: Redis down, the replica's own bucket
// still refuses beyond the burst.
func TestRedisLocalFallbackStillLimits(t *testing.T) {
	srv := testutil.StartRedis(t)
	a := startGateway(t, func(c *config.Gateway) {
		c.State.Redis = config.Redis{URL: srv.URL()}
		c.Limits.RequestsPerSecond, c.Limits.Burst = 0.001, 3
	})
	srv.Stop()
	tok := a.token(t, "bob", "mcp:read")
	var codes []int
	for range 5 {
		codes = append(codes, a.do(t, "POST", "/mcp", listBody, bearer(tok)).status)
	}
	want := []int{200, 200, 200, 429, 429}
	for i := range want {
		if codes[i] != want[i] {
			t.Fatalf("Redis down, burst 3: %v, want %v", codes, want)
		}
	}
}

// TestRedisWrongPasswordNeverLogged: a wrong password makes /readyz fail
// and requests fall back or fail closed; neither the logs nor any answer
// hold the password.
func TestRedisWrongPasswordNeverLogged(t *testing.T) {
	const right, wrong = "right-horse-battery", "Wr0ng-s3cret-staple"
	srv := testutil.StartRedis(t, "--requirepass", right)
	var logs lockedWriter
	logs.w = &bytes.Buffer{}
	idp := testutil.NewIdP(t)
	up := newFakeUpstream(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(ln.Addr().String(), idp, up.srv.URL)
	cfg.State.Redis = config.Redis{URL: srv.URL(), PasswordEnv: "REDIS_PW"}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string {
		if k == "REDIS_PW" {
			return wrong
		}
		return ""
	}
	gw, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	gw.audit.w = &lockedWriter{w: &bytes.Buffer{}}
	go func() { _ = gw.Serve(context.Background(), ln) }()
	t.Cleanup(func() { _ = gw.Shutdown(context.Background()) })
	tg := &testGateway{gw: gw, url: "http://" + ln.Addr().String(), idp: idp, up: up, cfg: cfg}
	var answers []string
	for range 3 {
		rd := tg.do(t, "GET", "/readyz", "", nil)
		if rd.status != http.StatusServiceUnavailable {
			t.Fatalf("/readyz with a wrong password: %d %s", rd.status, rd.body)
		}
		r := tg.do(t, "POST", "/mcp", listBody, bearer(tg.token(t, "bob", "mcp:read")))
		answers = append(answers, string(rd.body), string(r.body))
	}
	logs.mu.Lock()
	out := logs.w.String()
	logs.mu.Unlock()
	if !strings.Contains(out, "shared buckets unreachable") {
		t.Fatalf("the rate limit fallback was not logged: %s", out)
	}
	for _, s := range append(answers, out) {
		if strings.Contains(s, wrong) || strings.Contains(s, right) {
			t.Fatalf("a password appears in %q", s)
		}
	}
}

// countHook counts Redis round trips (a pipeline is one).
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

// roundTrips is the number of Redis round trips of each of n requests.
func roundTrips(t *testing.T, tg *testGateway, n int, hdr func(i int) map[string]string) []int64 {
	t.Helper()
	hook := &countHook{}
	tg.gw.redis.Client().AddHook(hook)
	out := make([]int64, n)
	for i := range n {
		before := hook.n.Load()
		if r := tg.do(t, "POST", "/mcp", listBody, hdr(i)); r.status != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
		out[i] = hook.n.Load() - before
	}
	return out
}

// TestRedisRoundTripsPerRequest: the cached-bearer hot path costs at most
// one Redis round trip per request (a borrow from the shared bucket), a
// new token the same (verification needs no Redis), a DPoP request one
// more (the replay script). Figures: docs/performance.md.
func TestRedisRoundTripsPerRequest(t *testing.T) {
	srv := testutil.StartRedis(t)
	a := startGateway(t, func(c *config.Gateway) {
		c.State.Redis = config.Redis{URL: srv.URL()}
		c.Limits.RequestsPerSecond, c.Limits.Burst = 1000, 1000
	})
	// warm the script cache (the first run of a script is EVALSHA, then EVAL)
	alice := newDPoPCaller(t, a, "alice")
	a.do(t, "POST", "/mcp", listBody, alice.headers(t, a))
	tok := a.token(t, "bob", "mcp:read")
	const n = 40
	check := func(name string, counts []int64, lo, hi int64) {
		total := int64(0)
		for i, c := range counts {
			if c < lo || c > hi {
				t.Fatalf("%s: request %d took %d Redis round trips, want %d..%d (%v)", name, i, c, lo, hi, counts)
			}
			total += c
		}
		t.Logf("%s: %d round trips for %d requests (%.2f per request)", name, total, len(counts), float64(total)/float64(len(counts)))
	}
	check("cached bearer", roundTrips(t, a, n, func(int) map[string]string { return bearer(tok) }), 0, 1)
	check("new token", roundTrips(t, a, n, func(i int) map[string]string {
		return bearer(a.token(t, "carol", "mcp:read"))
	}), 0, 1)
	check("dpop", roundTrips(t, a, n, func(int) map[string]string { return alice.headers(t, a) }), 1, 2)
}

// TestRedisReadyzBody: /readyz names the shared state only when it fails.
func TestRedisReadyzBody(t *testing.T) {
	srv := testutil.StartRedis(t)
	a := startGateway(t, func(c *config.Gateway) { c.State.Redis = config.Redis{URL: srv.URL()} })
	rd := a.do(t, "GET", "/readyz", "", nil)
	var body map[string]any
	if err := json.Unmarshal(rd.body, &body); err != nil || rd.status != http.StatusOK || body["ready"] != true || body["state"] != nil {
		t.Fatalf("/readyz: %d %s", rd.status, rd.body)
	}
}
