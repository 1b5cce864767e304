//go:build e2e

package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestClusterBudgetsGlobal: one subject's share of stdio sessions (3, one
// child each) holds across the three replicas, not per replica: with two
// sessions at replica 0 and one at replica 1, replica 2 — which holds none
// of them — refuses a fourth (429, JSON-RPC -42900, Retry-After, naming
// the replicas; each replica alone would admit 3, 9 in all). After replica
// 0 is killed (SIGKILL: it releases nothing) its two leases expire within
// state.redis.lease_ttl (3s here) and replica 2 admits two sessions; the
// restarted replica 0 then refuses a fourth: replica 1's session still
// counts, renewed by its heartbeat (docs/security.md "Shared state
// (Redis)").
func TestClusterBudgetsGlobal(t *testing.T) {
	c := StartCluster(t, ClusterOptions{LeaseTTL: "3s", Limits: "  requests_per_second: 200\n  burst: 400\n  max_sessions_per_subject: 3\n"})
	tok := c.Token(t, 0, StdioPath)
	for _, i := range []int{0, 0, 1} {
		c.Initialize(t, i, StdioPath, tok)
	}
	refused := func(at int, what string) {
		t.Helper()
		a := c.Post(at, StdioPath, initialize, "Authorization", "Bearer "+tok)
		if a.Err != nil || a.Status != http.StatusTooManyRequests || !strings.Contains(a.Body, "-42900") ||
			!strings.Contains(a.Body, "across the gateway's replicas") || a.Header.Get("Retry-After") == "" {
			t.Fatalf("%s: %v %d %v %.300s (want 429 -42900 naming the replicas, Retry-After)", what, a.Err, a.Status, a.Header, a.Body)
		}
	}
	refused(2, "a fourth session at replica 2")
	// another subject is not affected
	c.Initialize(t, 2, StdioPath, c.Token(t, 1, StdioPath))

	killed := time.Now()
	c.Kill(t, 0)
	var back time.Duration
	waitUntil(t, 30*time.Second, "replica 0's leases back after it was killed", func() bool {
		a := c.Post(2, StdioPath, initialize, "Authorization", "Bearer "+tok)
		if a.Status == http.StatusOK {
			back = time.Since(killed)
			return true
		}
		if a.Status != http.StatusTooManyRequests {
			t.Fatalf("initialize at replica 2 while replica 0's leases expire: %v %d %.300s", a.Err, a.Status, a.Body)
		}
		time.Sleep(200 * time.Millisecond)
		return false
	})
	t.Logf("replica 0's leases came back %v after the kill (lease_ttl 3s)", back.Round(100*time.Millisecond))
	c.Initialize(t, 2, StdioPath, tok)
	// replica 0 restarted holds none of them: two at replica 2, and replica
	// 1's, older than lease_ttl by now, kept by its heartbeat
	c.Restart(t, 0)
	refused(0, "a fourth session at the restarted replica 0")
}
