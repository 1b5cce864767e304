package gateway

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/resource"
)

// Session budgets without self-lockout: a subject at its share evicts its
// own least recently used idle session instead of being refused, so a
// client that crashes or restarts without DELETE never locks its subject
// out; busy sessions and other subjects' sessions are never evicted.
// Counts are processes (/proc) and table entries.

// sleepIn starts the echo server's 30 s "sleep" tool in session sid and
// returns when the request is on its way; the reply (or error) arrives on
// the channel. cancel ends it.
func sleepIn(t *testing.T, tg *testGateway, tok, sid string, id int) (<-chan reply, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan reply, 1)
	req, _ := http.NewRequestWithContext(ctx, "POST", tg.url+"/mcp", strings.NewReader(sessionCall(id, "sleep")))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			ch <- reply{status: -1, body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		ch <- reply{status: resp.StatusCode, header: resp.Header, body: []byte(b.String())}
	}()
	return ch, cancel
}

// waitBusy waits until n requests are in flight in the session server.
func waitInFlight(t *testing.T, tg *testGateway, own string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if tg.gw.mounts[0].sessions.busy(own) >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%d requests never got in flight", n)
}

func aliceOwner(tg *testGateway, sub string) string {
	return owner(&resource.Principal{Issuer: tg.idp.Issuer, Subject: sub})
}

// TestAttackAbandonedSessionsStdio: one subject opens 3× its share of
// sessions one after another without DELETE (a client that crashes and
// restarts); every initialize succeeds, the subject never holds more than
// its share of children or bindings, the evicted sessions get 404; a
// session with a request in flight survives the whole flood and still
// answers; bob's session is never evicted; and only a subject whose every
// session is busy is refused (429).
func TestAttackAbandonedSessionsStdio(t *testing.T) {
	bin := echoServer(t)
	tg := stdioGateway(t, bin, func(c *config.Gateway) { c.Upstreams[0].MaxSessions = 8 }) // share 4
	alice, bob := tg.token(t, "alice", "mcp:read"), tg.token(t, "bob", "mcp:read")
	own := aliceOwner(tg, "alice")
	bobSID := tg.initialize(t, bob)
	busySID := tg.initialize(t, alice)
	done, cancel := sleepIn(t, tg, alice, busySID, 7)
	defer cancel()
	waitInFlight(t, tg, own, 1)
	var sids []string
	for i := 0; i < 12; i++ {
		r := tg.do(t, "POST", "/mcp", initBody, bearer(alice))
		if r.status != 200 || r.header.Get("Mcp-Session-Id") == "" {
			t.Fatalf("initialize %d of a subject at its share: %d %s", i+2, r.status, r.body)
		}
		sids = append(sids, r.header.Get("Mcp-Session-Id"))
		if n := tg.gw.mounts[0].sessions.ownerLen(own); n > 4 {
			t.Fatalf("alice holds %d bindings, share 4", n)
		}
		if n := children(t, bin); n > 5 {
			t.Fatalf("%d children after initialize %d: alice's share is 4, bob has 1", n, i+2)
		}
	}
	for _, sid := range sids[:9] {
		if r := tg.do(t, "POST", "/mcp", sessionCall(2, "echo"), with(bearer(alice), "Mcp-Session-Id", sid)); r.status != http.StatusNotFound {
			t.Fatalf("evicted session %s: %d %s", sid[:8], r.status, r.body)
		}
	}
	for _, sid := range []string{busySID, sids[9], sids[10], sids[11]} {
		if r := tg.do(t, "POST", "/mcp", sessionCall(3, "echo"), with(bearer(alice), "Mcp-Session-Id", sid)); r.status != 200 {
			t.Fatalf("session %s that must have survived: %d %s", sid[:8], r.status, r.body)
		}
	}
	select {
	case r := <-done:
		t.Fatalf("the long request in the busy session ended: %d %s", r.status, r.body)
	default:
	}
	if r := tg.do(t, "POST", "/mcp", sessionCall(2, "echo"), with(bearer(bob), "Mcp-Session-Id", bobSID)); r.status != 200 {
		t.Fatalf("bob's session after alice's flood: %d %s", r.status, r.body)
	}
	// Every session of alice busy: now initialize is refused.
	var cancels []context.CancelFunc
	for i, sid := range sids[9:] {
		_, c := sleepIn(t, tg, alice, sid, 20+i)
		cancels = append(cancels, c)
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	waitInFlight(t, tg, own, 4)
	r := tg.do(t, "POST", "/mcp", initBody, bearer(alice))
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("initialize with every session busy: %d %v %s", r.status, r.header, r.body)
	}
	if code, _, id := r.rpcError(t); code != mcp.CodeRateLimited || string(id) != "1" {
		t.Fatalf("refusal: %d %s", code, id)
	}
	if n := children(t, bin); n > 5 {
		t.Fatalf("%d children", n)
	}
	tg.initialize(t, tg.token(t, "carol", "mcp:read"))
}

// TestAttackAbandonedSessionsHTTP: the same on a Streamable HTTP upstream:
// 3× the share without DELETE all succeed, the table holds the share, the
// evicted ids get 404 and the upstream gets a DELETE for each of them;
// a session with an open stream survives; bob's session survives.
func TestAttackAbandonedSessionsHTTP(t *testing.T) {
	tg := startGateway(t, func(c *config.Gateway) {
		c.Limits.RequestsPerSecond, c.Limits.Burst = 1e6, 1e6
		c.Limits.MaxHTTPSessionsPerSubject = 3
	})
	alice, bob := tg.token(t, "alice", "mcp:read"), tg.token(t, "bob", "mcp:read")
	own := aliceOwner(tg, "alice")
	bobSID := tg.initialize(t, bob)
	streamSID := tg.initialize(t, alice)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", tg.url+"/mcp", nil)
	for k, v := range with(bearer(alice), "Accept", "text/event-stream", "Mcp-Session-Id", streamSID, "MCP-Protocol-Version", "2025-11-25") {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream: %v %v", err, resp)
	}
	wg.Go(func() {
		buf := make([]byte, 512)
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				return
			}
		}
	})
	var sids []string
	for i := 0; i < 9; i++ {
		sids = append(sids, tg.initialize(t, alice))
		if n := tg.gw.mounts[0].sessions.ownerLen(own); n > 3 {
			t.Fatalf("alice holds %d bindings, share 3", n)
		}
	}
	if n := tg.gw.mounts[0].sessions.len(); n != 4 {
		t.Fatalf("table holds %d, want alice's 3 and bob's 1", n)
	}
	evicted := sids[:7]
	for _, sid := range evicted {
		if r := tg.do(t, "POST", "/mcp", sessionCall(2, "echo"), with(bearer(alice), "Mcp-Session-Id", sid)); r.status != http.StatusNotFound {
			t.Fatalf("evicted %s: %d %s", sid, r.status, r.body)
		}
	}
	for _, sid := range []string{streamSID, sids[7], sids[8]} {
		if r := tg.do(t, "POST", "/mcp", sessionCall(3, "echo"), with(bearer(alice), "Mcp-Session-Id", sid)); r.status != 200 {
			t.Fatalf("surviving session %s: %d %s", sid, r.status, r.body)
		}
	}
	if r := tg.do(t, "POST", "/mcp", sessionCall(2, "echo"), with(bearer(bob), "Mcp-Session-Id", bobSID)); r.status != 200 {
		t.Fatalf("bob: %d %s", r.status, r.body)
	}
	// The upstream was told: one DELETE per evicted session, none for the others.
	deadline := time.Now().Add(5 * time.Second)
	var deleted map[string]bool
	for {
		deleted = map[string]bool{}
		tg.up.mu.Lock()
		for _, h := range tg.up.headers {
			if h.Get("X-Test-Method") == "" && h.Get("Mcp-Session-Id") != "" && h.Get("Content-Type") == "" && h.Get("Accept") == "" {
				deleted[h.Get("Mcp-Session-Id")] = true
			}
		}
		tg.up.mu.Unlock()
		if len(deleted) >= len(evicted) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, sid := range evicted {
		if !deleted[sid] {
			t.Fatalf("no DELETE upstream for evicted %s (DELETEs %v)", sid, deleted)
		}
	}
	for _, sid := range []string{streamSID, sids[7], sids[8], bobSID} {
		if deleted[sid] {
			t.Fatalf("DELETE upstream for live session %s", sid)
		}
	}
}
