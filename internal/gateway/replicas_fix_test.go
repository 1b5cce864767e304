package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/state"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

// fixedSessionUpstream is the fake upstream, except that every initialize
// answers the same Mcp-Session-Id: an upstream that hands one session to
// two subjects.
func fixedSessionUpstream(t *testing.T) string {
	f := newFakeUpstream(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		f.serve(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		if w.Header().Get("Mcp-Session-Id") != "" {
			w.Header().Set("Mcp-Session-Id", "FIXED-SESSION")
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestAttackReplicasReusedSessionID: alice initializes at A and gets the
// upstream's FIXED-SESSION; bob's initialize at B gets the same id from
// the upstream and is refused (502). The refusal leaves nothing behind:
// bob presenting the id at B or A gets 404 and never reaches alice's
// upstream session, and alice keeps her session at both replicas.
func TestAttackReplicasReusedSessionID(t *testing.T) {
	url := fixedSessionUpstream(t)
	rs := startReplicas(t, 2, func(c *config.Gateway) { c.Upstreams[0].URL = url })
	alice, bob := rs.token(t, "alice"), rs.token(t, "bob")
	sid := rs.initialize(t, 0, alice)
	if sid != "FIXED-SESSION" {
		t.Fatalf("alice's session %q", sid)
	}
	r := rs.do(t, 1, "POST", initBody, bearer(bob))
	if r.status != 502 || r.header.Get("Mcp-Session-Id") != "" {
		t.Fatalf("bob's initialize at B: %d %s %v; want 502 without a session id", r.status, r.body, r.header)
	}
	if n := rs.gws[1].gw.mounts[0].sessions.len(); n != 0 {
		t.Fatalf("B kept %d bindings after refusing bob's session", n)
	}
	if n := rs.gws[1].gw.mounts[0].sessions.ownerLen(rs.gws[1].idp.Issuer + "\x00bob"); n != 0 {
		t.Fatalf("B kept %d places of bob's refused session", n)
	}
	for i := range 2 {
		if r := rs.do(t, i, "POST", rlistBody, with(bearer(bob), "Mcp-Session-Id", sid)); r.status != 404 {
			t.Fatalf("bob with alice's session id at replica %d: %d %s; want 404", i, r.status, r.body)
		}
		if r := rs.do(t, i, "POST", rlistBody, with(bearer(alice), "Mcp-Session-Id", sid)); r.status != 200 {
			t.Fatalf("alice at replica %d after bob's refusal: %d %s", i, r.status, r.body)
		}
	}
	e, err := rs.gws[0].gw.shared.dir.Get(context.Background(), state.KindSession, "mcp", sid)
	if err != nil || e == nil || e.Owner != rs.gws[0].idp.Issuer+"\x00alice" {
		t.Fatalf("directory entry %+v (%v); want alice's", e, err)
	}
}

// TestReplicasForwardedQuery: a forwarded request keeps its query string,
// which the hop is signed over: the owner accepts it.
func TestReplicasForwardedQuery(t *testing.T) {
	rs := stdioReplicas(t)
	alice := rs.token(t, "alice")
	sid := rs.initialize(t, 0, alice)
	r := rs.gws[1].do(t, "POST", "/mcp?trace=1&x=%2F", rlistBody, with(with(bearer(alice), "Mcp-Session-Id", sid), "Host", rs.host))
	if r.status != 200 || !strings.Contains(string(r.body), `"echo"`) {
		t.Fatalf("forwarded with a query: %d %s", r.status, r.body)
	}
}

// TestReadyzRedisOutOfMemory: /readyz fails while Redis refuses writes
// (out of memory under noeviction, where PING still succeeds and every
// DPoP check and initialize answers 503), and recovers with it.
func TestReadyzRedisOutOfMemory(t *testing.T) {
	srv := testutil.StartRedis(t, "--maxmemory-policy", "noeviction")
	tg := startGateway(t, func(c *config.Gateway) { c.State.Redis = config.Redis{URL: srv.URL()} })
	probe := func() int {
		tg.gw.stateProbe.mu.Lock()
		tg.gw.stateProbe.at = time.Time{} // skip the probe's rate limit
		tg.gw.stateProbe.mu.Unlock()
		return tg.do(t, "GET", "/readyz", "", nil).status
	}
	if s := probe(); s != 200 {
		t.Fatalf("healthy: /readyz %d", s)
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	if err := c.ConfigSet(context.Background(), "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if s := probe(); s != 503 {
		t.Fatalf("Redis out of memory: /readyz %d, want 503", s)
	}
	if err := c.ConfigSet(context.Background(), "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if s := probe(); s != 200 {
		t.Fatalf("memory freed: /readyz %d", s)
	}
}
