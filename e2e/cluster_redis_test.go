//go:build e2e

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/dpop"
)

// TestClusterRedisOutage: with Redis stopped every replica turns not
// ready (/readyz 503), a DPoP proof and a session that must be looked up
// get 503 with JSON-RPC -50300 and Retry-After (fail closed), and no
// replica exits. With Redis started again, empty, everything recovers:
// every replica is ready and balanced, DPoP proofs and new sessions work,
// and the credentials issued before the outage (the built-in server's, in
// PostgreSQL) still work. What the empty Redis lost is logged: the session
// directory (a session from before answers 404 on a replica that did not
// create it, and its client initializes again), DPoP replay records and
// rate-limit buckets (docs/security.md "Shared state").
func TestClusterRedisOutage(t *testing.T) {
	c := StartCluster(t, ClusterOptions{})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	proof := func(tok, nonce string) string {
		htu := c.LB + HTTPPath
		if tok == "" {
			htu = c.LB + "/token"
		}
		p, err := dpop.NewProof(key, "ES256", "POST", htu, dpop.ProofOptions{AccessToken: tok, Nonce: nonce})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	dtok := dpopToken(t, c, proof("", ""))
	nonce := c.Post(0, HTTPPath, initialize, "Authorization", "DPoP "+dtok, "DPoP", proof(dtok, "")).Header.Get("DPoP-Nonce")
	used := proof(dtok, nonce)
	if a := c.Post(0, HTTPPath, initialize, "Authorization", "DPoP "+dtok, "DPoP", used); a.Status != 200 {
		t.Fatalf("DPoP before the outage: %d %.300s", a.Status, a.Body)
	}
	tok := c.Token(t, 0, HTTPPath)
	sid := c.Initialize(t, 0, HTTPPath, tok)

	c.Redis.Stop()
	for i := range c.Replicas {
		waitUntil(t, 30*time.Second, "replica "+strconv.Itoa(i)+" not ready without Redis", func() bool {
			st, body := c.Readyz(i)
			return st == http.StatusServiceUnavailable && strings.Contains(body, "shared state (Redis) unavailable")
		})
	}
	unavailable := func(what string, a Answer) {
		t.Helper()
		if a.Err != nil || a.Status != http.StatusServiceUnavailable || !strings.Contains(a.Body, "-50300") || a.Header.Get("Retry-After") == "" ||
			!strings.Contains(a.Body, "Redis") {
			t.Errorf("%s without Redis: %v %d %v %.300s (want 503, JSON-RPC -50300 naming Redis, Retry-After)", what, a.Err, a.Status, a.Header, a.Body)
		}
	}
	for i := range c.Replicas {
		unavailable("a DPoP proof at replica "+strconv.Itoa(i), c.Post(i, HTTPPath, initialize, "Authorization", "DPoP "+dtok, "DPoP", proof(dtok, nonce)))
	}
	for _, i := range []int{1, 2} {
		unavailable("replica 0's session at replica "+strconv.Itoa(i), c.Echo(i, HTTPPath, tok, sid, "no redis"))
	}
	for i, r := range c.Replicas {
		select {
		case <-r.Proc.done:
			t.Fatalf("replica %d exited without Redis:\n%s", i, r.Proc.Output())
		default:
		}
	}

	c.Redis.Start()
	for i := range c.Replicas {
		waitUntil(t, 30*time.Second, "replica ready again", func() bool { st, _ := c.Readyz(i); return st == http.StatusOK })
		c.WaitBalanced(t, i, true)
	}
	for i := range c.Replicas {
		if a := c.Post(i, HTTPPath, initialize, "Authorization", "DPoP "+dtok, "DPoP", proof(dtok, nonce)); a.Status != 200 {
			t.Errorf("a DPoP proof at replica %d after Redis returned: %d %.300s", i, a.Status, a.Body)
		}
	}
	fresh := c.Initialize(t, -1, HTTPPath, tok) // the token from before the outage
	for i := range c.Replicas {
		if a := c.Echo(i, HTTPPath, tok, fresh, "recovered"); a.Status != 200 || !strings.Contains(a.Body, "recovered") {
			t.Errorf("a new session at replica %d after Redis returned: %d %.300s", i, a.Status, a.Body)
		}
	}
	// what an empty Redis lost (documented, not a failure)
	old := c.Echo(1, HTTPPath, tok, sid, "old")
	if old.Status != 200 && old.Status != http.StatusNotFound {
		t.Errorf("the session from before the outage at replica 1: %d %.300s (want 200, or 404 so that the client initializes again)", old.Status, old.Body)
	}
	replay := c.Post(2, HTTPPath, initialize, "Authorization", "DPoP "+dtok, "DPoP", used)
	t.Logf("after Redis restarted empty: the session from before at replica 1 → %d; the DPoP proof used before the outage, replayed at replica 2 → %d",
		old.Status, replay.Status)
}
