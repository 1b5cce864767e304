package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/resource"
)

// Per-subject budgets over several replicas (budgets.go): three gateways
// on one redis-server, requests sent as a load balancer would.

// budgetReplicas is three replicas with small per-subject shares: 2 HTTP
// sessions, 2 streams, lease_ttl 3s.
func budgetReplicas(t *testing.T) *replicaSet {
	return startReplicas(t, 3, func(c *config.Gateway) {
		c.Limits.MaxHTTPSessionsPerSubject, c.Limits.MaxStreamsPerSubject = 2, 2
		c.State.Redis.LeaseTTL.Duration = 3 * time.Second
	})
}

// leases is the number of live leases of owner in budget.
func (rs *replicaSet) leases(t *testing.T, budget, owner string) int {
	t.Helper()
	n, err := rs.gws[0].gw.budgets.leases.Count(context.Background(), budget, owner)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// owner is the owner key of sub's sessions (issuer and subject).
func (rs *replicaSet) owner(sub string) string {
	return owner(&resource.Principal{Issuer: rs.gws[0].idp.Issuer, Subject: sub})
}

// refusedGlobally checks a 429 -42900 naming the replicas.
func refusedGlobally(t *testing.T, what string, r reply) {
	t.Helper()
	code, msg, _ := r.rpcError(t)
	if r.status != http.StatusTooManyRequests || code != mcp.CodeRateLimited || !strings.Contains(msg, "across the gateway's replicas") {
		t.Fatalf("%s: %d %s; want 429 -42900 naming the share across replicas", what, r.status, r.body)
	}
}

// TestBudgetsSessionShareIsGlobal: alice, whose share is 2 HTTP sessions,
// holds one at replica 0 and one at replica 1: replica 2, which holds none
// of hers, refuses a third (each replica alone would admit 2, 6 in all);
// bob is not affected. Using her session at replica 2 (adoption) works
// and counts once. A DELETE gives the place back.
func TestBudgetsSessionShareIsGlobal(t *testing.T) {
	rs := budgetReplicas(t)
	alice, bob := rs.token(t, "alice"), rs.token(t, "bob")
	s0 := rs.initialize(t, 0, alice)
	rs.initialize(t, 1, alice)
	refusedGlobally(t, "alice's third session at replica 2", rs.do(t, 2, "POST", initBody, bearer(alice)))
	rs.initialize(t, 2, bob)
	budget := budgetName("sess", "mcp")
	if r := rs.do(t, 2, "POST", rlistBody, with(bearer(alice), "Mcp-Session-Id", s0)); r.status != 200 {
		t.Fatalf("alice's session created at 0, used at 2 at her share: %d %s", r.status, r.body)
	}
	if n := rs.leases(t, budget, rs.owner("alice")); n != 2 {
		t.Fatalf("alice holds %d session leases after an adoption, want 2 (one per session)", n)
	}
	if r := rs.do(t, 1, "DELETE", "", with(bearer(alice), "Mcp-Session-Id", s0)); r.status != 200 {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	if n := rs.leases(t, budget, rs.owner("alice")); n != 1 {
		t.Fatalf("after DELETE alice holds %d leases, want 1", n)
	}
	rs.initialize(t, 2, alice)
}

// TestBudgetsLeasesOfADeadReplicaExpire: a replica that stops renewing
// (its heartbeat stopped, as when it is killed: nothing is released) loses
// its leases within lease_ttl and the subject's place comes back; the
// leases of the replicas still alive outlive lease_ttl.
func TestBudgetsLeasesOfADeadReplicaExpire(t *testing.T) {
	rs := budgetReplicas(t)
	alice := rs.token(t, "alice")
	rs.initialize(t, 0, alice)
	rs.initialize(t, 1, alice)
	refusedGlobally(t, "alice's third session", rs.do(t, 2, "POST", initBody, bearer(alice)))
	rs.gws[1].gw.budgets.close() // replica 1 "dies": no release, no renewal
	budget := budgetName("sess", "mcp")
	deadline := time.Now().Add(4 * rs.gws[0].gw.budgets.leases.TTL())
	for rs.leases(t, budget, rs.owner("alice")) > 1 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := rs.leases(t, budget, rs.owner("alice")); n != 1 {
		t.Fatalf("alice holds %d leases well after replica 1 stopped renewing, want 1 (replica 0's, renewed)", n)
	}
	rs.initialize(t, 2, alice)
}

// openStream opens a GET stream of session sid at replica i and returns
// its answer; an admitted stream is open until the returned cancel.
func (rs *replicaSet) openStream(t *testing.T, i int, tok, sid string) (status int, body string, closeIt func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", rs.gws[i].url+"/mcp", nil)
	req.Host = rs.host
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		var b strings.Builder
		_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
		resp.Body.Close()
		cancel()
		return resp.StatusCode, b.String(), func() {}
	}
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	if !strings.HasPrefix(line, "id:") {
		t.Fatalf("stream at %d: first line %q", i, line)
	}
	return 200, "", func() { cancel(); resp.Body.Close() }
}

// TestBudgetsStreamShareIsGlobal: alice (2 streams) has one open at
// replica 0 and one at replica 1: replica 2 refuses a third; once one
// closes its place is back.
func TestBudgetsStreamShareIsGlobal(t *testing.T) {
	rs := budgetReplicas(t)
	alice := rs.token(t, "alice")
	sid := rs.initialize(t, 0, alice)
	_, _, close0 := rs.openStream(t, 0, alice, sid)
	defer close0()
	_, _, close1 := rs.openStream(t, 1, alice, sid)
	status, body, _ := rs.openStream(t, 2, alice, sid)
	if status != http.StatusTooManyRequests || !strings.Contains(body, "across the gateway's replicas") {
		t.Fatalf("alice's third stream at replica 2: %d %s; want 429 naming the replicas", status, body)
	}
	close1()
	budget, owner := "stream", rs.owner("alice")
	for deadline := time.Now().Add(5 * time.Second); rs.leases(t, budget, owner) > 1 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	status, body, close2 := rs.openStream(t, 2, alice, sid)
	defer close2()
	if status != 200 {
		t.Fatalf("after a stream closed: %d %s", status, body)
	}
}

// TestBudgetsRedisDownRefuses: with Redis down, nothing counted by a
// shared budget is created — a session (initialize) or a stream at a
// session this replica holds — : 503, -50300, Retry-After, "shared state
// (Redis) unavailable", nothing forwarded; once Redis is back both work.
func TestBudgetsRedisDownRefuses(t *testing.T) {
	rs := budgetReplicas(t)
	alice := rs.token(t, "alice")
	sid := rs.initialize(t, 0, alice)
	rs.redis.Stop()
	hits := rs.gws[0].up.hits.Load()
	r := rs.do(t, 0, "POST", initBody, bearer(alice))
	if code, msg, _ := r.rpcError(t); r.status != 503 || code != mcp.CodeUnavailable || r.header.Get("Retry-After") == "" || !strings.Contains(msg, "shared state (Redis) unavailable") {
		t.Fatalf("initialize with Redis down: %d %s (Retry-After %q)", r.status, r.body, r.header.Get("Retry-After"))
	}
	status, body, _ := rs.openStream(t, 0, alice, sid)
	if status != 503 || !strings.Contains(body, "shared state (Redis) unavailable") || !strings.Contains(body, "-50300") {
		t.Fatalf("stream with Redis down: %d %s", status, body)
	}
	if n := rs.gws[0].up.hits.Load(); n != hits {
		t.Fatalf("%d requests reached the upstream with Redis down", n-hits)
	}
	rs.redis.Start()
	rs.initialize(t, 0, alice)
	status, body, closeS := rs.openStream(t, 0, alice, sid)
	defer closeS()
	if status != 200 {
		t.Fatalf("stream after Redis returned: %d %s", status, body)
	}
}

// TestBudgetsSessionPostNoRoundTrip: a POST to a session this replica
// holds costs no lease round trip — the cached-bearer hot path stays at
// most one (the rate limit's borrow); only creating a session or a stream
// takes a lease. Figures: docs/performance.md.
func TestBudgetsSessionPostNoRoundTrip(t *testing.T) {
	rs := budgetReplicas(t)
	tg := rs.gws[0]
	alice := rs.token(t, "alice")
	sid := rs.initialize(t, 0, alice)
	rs.do(t, 0, "POST", rlistBody, with(bearer(alice), "Mcp-Session-Id", sid)) // warm
	hook := &countHook{}
	tg.gw.redis.Client().AddHook(hook)
	for i := range 20 {
		before := hook.n.Load()
		if r := rs.do(t, 0, "POST", rlistBody, with(bearer(alice), "Mcp-Session-Id", sid)); r.status != 200 {
			t.Fatalf("POST %d: %d %s", i, r.status, r.body)
		}
		if n := hook.n.Load() - before; n > 1 {
			t.Fatalf("POST %d to an existing session took %d Redis round trips, want at most 1", i, n)
		}
	}
	before := hook.n.Load()
	rs.initialize(t, 0, rs.token(t, "carol"))
	t.Logf("initialize: %d Redis round trips", hook.n.Load()-before)
	before = hook.n.Load()
	_, _, closeS := rs.openStream(t, 0, alice, sid)
	closeS()
	time.Sleep(100 * time.Millisecond) // the release runs when the handler returns
	t.Logf("GET stream open and close: %d Redis round trips", hook.n.Load()-before)
}

// TestBudgetsStdioChildrenShareIsGlobal: alice, whose share is one stdio
// child, has one at replica 0: replica 1 refuses to start another (429,
// no child started) — each replica alone would run one; once her session
// is deleted (its child ends) replica 1 starts hers.
func TestBudgetsStdioChildrenShareIsGlobal(t *testing.T) {
	rs := stdioReplicasWith(t, func(c *config.Gateway) { c.Limits.MaxSessionsPerSubject = 1 })
	alice := rs.token(t, "alice")
	sid := rs.initialize(t, 0, alice)
	r := rs.do(t, 1, "POST", initBody, bearer(alice))
	if r.status != http.StatusTooManyRequests || !strings.Contains(string(r.body), "across the gateway's replicas") || r.header.Get("Retry-After") == "" {
		t.Fatalf("alice's second child at replica 1: %d %s; want 429 naming the replicas, with Retry-After", r.status, r.body)
	}
	if n := sessionsAt(rs.gws[1]); n != 0 {
		t.Fatalf("replica 1 runs %d sessions after refusing", n)
	}
	if r := rs.do(t, 0, "DELETE", "", with(bearer(alice), "Mcp-Session-Id", sid)); r.status != 200 && r.status != 204 {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	budget, owner := budgetName("conn", "mcp"), rs.owner("alice")
	for deadline := time.Now().Add(5 * time.Second); rs.leases(t, budget, owner) > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	rs.initialize(t, 1, alice)
}

// TestBudgetsTaskShareIsGlobal: alice, whose share is one task binding,
// has a task bound at replica 0: replica 1 refuses to bind a second one
// (-42900 naming the replicas), yet serves her first task (an adopted
// task shares its lease).
func TestBudgetsTaskShareIsGlobal(t *testing.T) {
	up := newTaskUpstream(t, false)
	rs := startReplicas(t, 2, func(c *config.Gateway) {
		c.Upstreams[0].URL = up.srv.URL
		c.Limits.MaxTasksPerSubject = 1
	})
	alice := rs.token(t, "alice")
	r := rs.do(t, 0, "POST", taskCall("echo"), statelessHeaders(alice, "tools/call", "echo"))
	var m struct {
		Result struct {
			TaskID string `json:"taskId"`
		} `json:"result"`
	}
	if json.Unmarshal(r.body, &m) != nil || m.Result.TaskID == "" {
		t.Fatalf("tools/call at 0: %d %s", r.status, r.body)
	}
	r = rs.do(t, 1, "POST", taskCall("echo"), statelessHeaders(alice, "tools/call", "echo"))
	if code, msg, _ := r.rpcError(t); code != mcp.CodeRateLimited || !strings.Contains(msg, "across the gateway's replicas") {
		t.Fatalf("alice's second task at replica 1: %d %s; want -42900 naming the replicas", r.status, r.body)
	}
	id := m.Result.TaskID
	if r := rs.do(t, 1, "POST", statelessTask("tasks/get", id), statelessHeaders(alice, "tasks/get", id)); r.status != 200 || strings.Contains(string(r.body), `"error"`) {
		t.Fatalf("her first task at replica 1: %d %s", r.status, r.body)
	}
}

// TestBudgetsAdoptedSessionOutlivesIdleExpiry: a session created at
// replica 0 and used through replica 1 (as with load-balancer affinity on
// Mcp-Session-Id) still counts after replica 0's binding idled out: the
// expiry there leaves the lease to replica 1, which renews it beyond
// lease_ttl; its DELETE releases it.
func TestBudgetsAdoptedSessionOutlivesIdleExpiry(t *testing.T) {
	rs := budgetReplicas(t)
	alice := rs.token(t, "alice")
	sid := rs.initialize(t, 0, alice)
	if r := rs.do(t, 1, "POST", rlistBody, with(bearer(alice), "Mcp-Session-Id", sid)); r.status != 200 {
		t.Fatalf("at replica 1: %d %s", r.status, r.body)
	}
	b0 := rs.gws[0].gw.mounts[0].sessions
	b0.mu.Lock()
	s := b0.sessions[sid]
	delete(b0.sessions, sid)
	b0.mu.Unlock()
	if s == nil {
		t.Fatal("replica 0 holds no binding of the session it created")
	}
	b0.drop(s) // what the idle sweep does after session_idle_timeout
	budget, owner := budgetName("sess", "mcp"), rs.owner("alice")
	time.Sleep(2 * rs.gws[0].gw.budgets.leases.TTL())
	if n := rs.leases(t, budget, owner); n != 1 {
		t.Fatalf("the session in use through replica 1 holds %d leases after replica 0's binding expired, want 1", n)
	}
	if r := rs.do(t, 1, "DELETE", "", with(bearer(alice), "Mcp-Session-Id", sid)); r.status != 200 {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	if n := rs.leases(t, budget, owner); n != 0 {
		t.Fatalf("after DELETE: %d leases", n)
	}
}
