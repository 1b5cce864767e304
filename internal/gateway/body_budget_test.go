package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

// TestBodyBudgetBoundsAuthenticatedSlowBodies: authenticated callers that
// send bodies slowly hold at most limits.body_bytes_in_flight between
// them (the budget's high-water mark, and the heap); every one of them
// ends with 408 (read timeout) or 503 (budget) and a JSON-RPC error, and
// the budget is whole again afterwards. Which of the two each gets
// depends on timing, so only these properties are asserted, no split.
func TestBodyBudgetBoundsAuthenticatedSlowBodies(t *testing.T) {
	const budget = 8 << 20
	const n = 24
	tg := startGateway(t, func(c *config.Gateway) {
		c.Limits.RequestsPerSecond = -1
		c.Limits.BodyBytesInFlight = budget
		c.Limits.BodyReadTimeout = config.Duration{Duration: 1500 * time.Millisecond}
	})
	addr := strings.TrimPrefix(tg.url, "http://")
	before := heapInUse()
	conns := make([]*slowConn, n)
	for i := range conns {
		// distinct subjects: the global budget is what is tested here
		conns[i] = openSlow(t, addr, "/mcp", 4<<20, 600<<10, bearer(tg.token(t, fmt.Sprintf("user%d", i), "mcp:read")))
	}
	statuses := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var grew int64
	for i, sc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body, err := sc.response(30 * time.Second)
			if err != nil {
				t.Errorf("conn %d: no answer: %v", i, err)
				return
			}
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
			switch resp.StatusCode {
			case http.StatusServiceUnavailable:
				if resp.Header.Get("Retry-After") == "" {
					t.Errorf("conn %d: 503 without Retry-After", i)
				}
			case http.StatusRequestTimeout:
			default:
				t.Errorf("conn %d: status %d, want 408 or 503", i, resp.StatusCode)
			}
			if !strings.Contains(string(body), `"jsonrpc":"2.0"`) || !strings.Contains(string(body), `"error"`) {
				t.Errorf("conn %d: %d without a JSON-RPC error body: %s", i, resp.StatusCode, body)
			}
		}()
	}
	// the heap while the bodies are held (whatever is admitted by now)
	time.Sleep(500 * time.Millisecond)
	grew = heapInUse() - before
	wg.Wait()
	peak := tg.gw.bodies.Peak()
	t.Logf("%d slow authenticated bodies: statuses %v, budget peak %d KiB, heap grew %d KiB", n, statuses, peak>>10, grew>>10)
	if peak > budget {
		t.Fatalf("the budget reached %d bytes, over the %d configured", peak, budget)
	}
	if grew > budget+8<<20 {
		t.Fatalf("heap grew %d MiB with a %d MiB budget", grew>>20, budget>>20)
	}
	if total := statuses[http.StatusServiceUnavailable] + statuses[http.StatusRequestTimeout]; total != n {
		t.Fatalf("want every one of the %d slow bodies refused with 408 or 503, got %v", n, statuses)
	}
	for end := time.Now().Add(5 * time.Second); tg.gw.bodies.InUse() != 0 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond) // finish() runs after the answer is written
	}
	if got := tg.gw.bodies.InUse(); got != 0 {
		t.Fatalf("budget not returned: %d bytes still held", got)
	}
	if r := tg.do(t, "POST", "/mcp", listBody, bearer(tg.token(t, "alice", "mcp:read"))); r.status != 200 {
		t.Fatalf("after the flood: %d %s", r.status, r.body)
	}
}

// TestBodyBudgetShareOfOneCaller: one subject holds at most its share
// (a quarter of the budget, at least max_body_bytes), so another caller
// still gets through while it floods.
func TestBodyBudgetShareOfOneCaller(t *testing.T) {
	tg := startGateway(t, func(c *config.Gateway) {
		c.Limits.RequestsPerSecond = -1
		c.Limits.MaxBodyBytes = 1 << 20
		c.Limits.BodyBytesInFlight = 8 << 20 // share: 2 MiB
	})
	addr := strings.TrimPrefix(tg.url, "http://")
	mallory := bearer(tg.token(t, "mallory", "mcp:read"))
	refused := 0
	for range 8 {
		sc := openSlow(t, addr, "/mcp", 1<<20, 600<<10, mallory)
		if resp, _, err := sc.response(300 * time.Millisecond); err == nil && resp.StatusCode == http.StatusServiceUnavailable {
			refused++
		}
	}
	if refused < 6 {
		t.Fatalf("one subject held more than its share: only %d of 8 slow bodies refused", refused)
	}
	if r := tg.do(t, "POST", "/mcp", listBody, bearer(tg.token(t, "alice", "mcp:read"))); r.status != 200 {
		t.Fatalf("another caller during the flood: %d %s", r.status, r.body)
	}
}

// TestBodyDeadlineClearedAfterRead: the read deadline covers the body only;
// an upstream that answers after it has passed still gets its answer
// through (a deadline left behind would end the request).
func TestBodyDeadlineClearedAfterRead(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		time.Sleep(600 * time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":7,"result":{"tools":[]}}`)
	}))
	t.Cleanup(slow.Close)
	tg := startGateway(t, func(c *config.Gateway) {
		c.Upstreams[0].URL = slow.URL
		c.Limits.BodyReadTimeout = config.Duration{Duration: 200 * time.Millisecond}
	})
	if r := tg.do(t, "POST", "/mcp", listBody, bearer(tg.token(t, "alice", "mcp:read"))); r.status != 200 || !strings.Contains(string(r.body), `"tools"`) {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

// TestBodyLimitsConfigValidated: the new limits are validated by key.
func TestBodyLimitsConfigValidated(t *testing.T) {
	for _, tc := range []struct {
		mut  func(*config.Gateway)
		want string
	}{
		{func(c *config.Gateway) { c.Limits.BodyBytesInFlight = 1 << 20 }, "limits.body_bytes_in_flight"},
		{func(c *config.Gateway) { c.Limits.BodyBytesInFlight = -1 }, "limits.body_bytes_in_flight"},
		{func(c *config.Gateway) { c.Limits.BodyReadTimeout = config.Duration{Duration: -time.Second} }, "limits.body_read_timeout"},
		{func(c *config.Gateway) { c.Limits.MaxFormBytes = -1 }, "limits.max_form_bytes"},
		{func(c *config.Gateway) { c.Upstreams[0].DPoPContentDigest = "always" }, "upstreams[0].dpop_content_digest"},
		{func(c *config.Gateway) { c.Upstreams[0].DPoP, c.Upstreams[0].DPoPContentDigest = "off", "required" }, "upstreams[0].dpop_content_digest"},
	} {
		cfg := baseConfig("127.0.0.1:1", &testutil.IdP{Issuer: "https://idp.example"}, "http://127.0.0.1:2")
		cfg.ApplyDefaults()
		tc.mut(cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an error naming %s, got %v", tc.want, err)
		}
	}
}
