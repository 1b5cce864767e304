package gateway

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
)

// legacyStreamAt opens a 2024-11-05 HTTP+SSE stream at replica i and
// returns its endpoint and a reader of its message events.
func (rs *replicaSet) legacyStreamAt(t *testing.T, i int, tok string) (endpoint string, next func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", rs.gws[i].url+"/mcp", nil)
	req.Host = rs.host
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("legacy GET at replica %d: %v %v", i, err, resp)
	}
	t.Cleanup(func() { resp.Body.Close() })
	br := bufio.NewReader(resp.Body)
	read := func() (event, data string) {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("stream: %v", err)
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "event: "):
				event = line[7:]
			case strings.HasPrefix(line, "data: "):
				data = line[6:]
			case line == "" && data != "":
				return event, data
			}
		}
	}
	ev, endpoint := read()
	if ev != "endpoint" {
		t.Fatalf("first event %q %q", ev, endpoint)
	}
	return endpoint, func() string { _, d := read(); return d }
}

// TestReplicasLegacyForwarded: a 2024-11-05 client's stream is at A and
// its POSTs reach B (no load-balancer affinity): B forwards them to A,
// whose stream carries the answers; another subject's POST at B is
// refused as at A; once A is gone, B answers 404 so the client opens a
// new stream.
func TestReplicasLegacyForwarded(t *testing.T) {
	for _, transport := range []string{"stdio", "streamable"} {
		t.Run(transport, func(t *testing.T) {
			var rs *replicaSet
			if transport == "stdio" {
				rs = stdioReplicas(t)
			} else {
				rs = startReplicas(t, 2, nil)
			}
			alice, mallory := rs.token(t, "alice"), rs.token(t, "mallory")
			endpoint, next := rs.legacyStreamAt(t, 0, alice)
			post := func(i int, body, tok string) reply {
				return rs.gws[i].do(t, "POST", endpoint, body, with(bearer(tok), "Host", rs.host))
			}
			if r := post(1, initBody, alice); r.status != 202 {
				t.Fatalf("initialize POSTed at B: %d %s", r.status, r.body)
			}
			if d := next(); !strings.Contains(d, `"protocolVersion"`) {
				t.Fatalf("initialize result on A's stream: %s", d)
			}
			if r := post(1, rlistBody, alice); r.status != 202 {
				t.Fatalf("tools/list POSTed at B: %d %s", r.status, r.body)
			}
			if d := next(); !strings.Contains(d, `"echo"`) {
				t.Fatalf("tools/list result on A's stream: %s", d)
			}
			if r := post(1, rlistBody, mallory); r.status != 404 {
				t.Fatalf("another subject POSTing into alice's session at B: %d %s", r.status, r.body)
			}
			if r := rs.gws[1].do(t, "POST", "/mcp/message?sessionId=0123", rlistBody, with(bearer(alice), "Host", rs.host)); r.status != 404 {
				t.Fatalf("unknown session at B: %d %s", r.status, r.body)
			}
			rs.stop(0)
			r := post(1, rlistBody, alice)
			if r.status != 404 || !strings.Contains(string(r.body), "open a new SSE stream") {
				t.Fatalf("stream's replica gone: %d %s; want 404 telling to open a new stream", r.status, r.body)
			}
		})
	}
}

// TestReplicasLegacyNotPublishedWithoutReplica: with Redis but no
// state.replica, a front session is not published (no one could forward
// to this replica), and another replica answers 404 as before.
func TestReplicasLegacyNotPublishedWithoutReplica(t *testing.T) {
	rs := startReplicas(t, 2, func(c *config.Gateway) { c.State.Replica = config.Replica{} })
	alice := rs.token(t, "alice")
	endpoint, _ := rs.legacyStreamAt(t, 0, alice)
	if r := rs.gws[1].do(t, "POST", endpoint, initBody, with(bearer(alice), "Host", rs.host)); r.status != 404 {
		t.Fatalf("POST at B without state.replica: %d %s; want 404", r.status, r.body)
	}
	if r := rs.gws[0].do(t, "POST", endpoint, initBody, with(bearer(alice), "Host", rs.host)); r.status != 202 {
		t.Fatalf("POST at A: %d %s", r.status, r.body)
	}
}

// TestReplicasLegacyRedisDown: with the directory unreachable a stream is
// refused 503 (other replicas could not find it), a POST for a session
// this replica does not hold is 503, not "not found"; when Redis returns,
// streams open and their POSTs are forwarded again.
func TestReplicasLegacyRedisDown(t *testing.T) {
	rs := startReplicas(t, 2, nil)
	alice := rs.token(t, "alice")
	endpoint, _ := rs.legacyStreamAt(t, 0, alice)
	rs.redis.Stop()
	r := rs.gws[1].do(t, "POST", endpoint, initBody, with(bearer(alice), "Host", rs.host))
	if code, _, _ := r.rpcError(t); r.status != 503 || code != -50300 {
		t.Fatalf("POST at B with Redis down: %d %s; want 503 -50300", r.status, r.body)
	}
	g := rs.gws[0].do(t, "GET", "/mcp", "", with(bearer(alice), "Host", rs.host, "Accept", "text/event-stream"))
	if code, _, _ := g.rpcError(t); g.status != 503 || code != -50300 || g.header.Get("Retry-After") == "" {
		t.Fatalf("stream with Redis down: %d %s; want 503 -50300 with Retry-After", g.status, g.body)
	}
	rs.redis.Start()
	endpoint, next := rs.legacyStreamAt(t, 0, alice)
	if r := rs.gws[1].do(t, "POST", endpoint, initBody, with(bearer(alice), "Host", rs.host)); r.status != 202 {
		t.Fatalf("POST at B after Redis returned: %d %s", r.status, r.body)
	}
	if d := next(); !strings.Contains(d, `"protocolVersion"`) {
		t.Fatalf("initialize result: %s", d)
	}
}
