package gateway

import (
	"net/http"
	"sync"
	"testing"

	"github.com/mcpgate/mcpgate/internal/upstream"
)

// TestEveryForwardNamesItsFilter: the gateway hands its upstream handler
// every request with an upstream.Request that names the caller, the
// request id and the response filter — a real filter wherever a response
// can hold a list (POST, GET stream), upstream.NoFilter only for DELETE.
// A forward built without a filter does not compile (upstream.NewRequest);
// this test fails if a path picks NoFilter where lists pass.
func TestEveryForwardNamesItsFilter(t *testing.T) {
	tg := startGateway(t, nil)
	type seen struct {
		method, owner string
		id            string
		filtered      bool
	}
	var (
		mu  sync.Mutex // guards got
		got []seen
	)
	real := tg.gw.mounts[0].handler
	tg.gw.mounts[0].handler = upstream.HandlerFunc(func(w http.ResponseWriter, r *http.Request, req *upstream.Request) {
		mu.Lock()
		got = append(got, seen{r.Method, req.Caller.Owner, string(req.ID), req.Filter() != nil})
		mu.Unlock()
		if r.Method == http.MethodGet { // the fake's stream stays open; this one ends at once
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			return
		}
		real.ServeMCP(w, r, req)
	})
	tok := tg.token(t, "alice", "mcp:read")
	sid := tg.initialize(t, tok)
	h := with(bearer(tok), "Mcp-Session-Id", sid, "MCP-Protocol-Version", "2025-11-25")
	if r := tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":"L","method":"tools/list"}`, h); r.status != 200 {
		t.Fatalf("tools/list: %d %s", r.status, r.body)
	}
	if r := tg.do(t, "GET", "/mcp", "", h); r.status != 200 {
		t.Fatalf("GET: %d %s", r.status, r.body)
	}
	if r := tg.do(t, "DELETE", "/mcp", "", h); r.status != 200 {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	owner := tg.idp.Issuer + "\x00alice"
	want := []seen{{"POST", owner, "1", true}, {"POST", owner, `"L"`, true}, {"GET", owner, "", true}, {"DELETE", owner, "", false}}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("forwards %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("forward %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}
