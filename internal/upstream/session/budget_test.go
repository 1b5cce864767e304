package session

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/upstream"
)

// asSubject serves f's server for the caller subject names.
func asSubject(f *fixture, subject func(*http.Request) string) {
	f.http.Config.Handler = serveAs(f.srv, func(r *http.Request) upstream.Caller { return upstream.Caller{Owner: subject(r)} }, upstream.NoFilter)
}

const statelessMeta = `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}`

// TestStatelessChildrenWithinBudget (issue 11, hole 9): 2026-07-28
// requests start a child each; behind upstream.Limit they cannot exceed the
// budget, whatever the reply type, and the subject's share is enforced.
// The measure is the children counter, not time.
func TestStatelessChildrenWithinBudget(t *testing.T) {
	slots := upstream.NewSlots(6, 3)
	f := start(t, nil, func(o *Options) { o.Dial = upstream.Limit(o.Dial, slots) })
	asSubject(f, func(r *http.Request) string { return r.Header.Get("X-Subject") })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"sleep",%s}}`, i, statelessMeta)
			req, _ := http.NewRequestWithContext(ctx, "POST", f.http.URL, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", both)
			req.Header.Set("X-Subject", "alice")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	waitFor(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return statuses[http.StatusTooManyRequests] == 17 && statuses[http.StatusOK] == 3
	}, "3 SSE answers and 17 refusals")
	if n := f.children.n.Load(); n != 3 {
		t.Fatalf("%d children for one subject with a share of 3", n)
	}
	// Another subject gets its share; the total holds.
	r := f.post(t, "", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"},`+statelessMeta+`}}`, jsonOnly)
	if r.status != 200 {
		t.Fatalf("another subject (empty): %d %s", r.status, r.body)
	}
	if n := slots.Len(); n != 3 {
		t.Fatalf("%d slots in use after the other subject's request ended, want 3", n)
	}
	cancel()
	wg.Wait()
	waitFor(t, func() bool { return f.children.n.Load() == 0 && slots.Len() == 0 }, "children and slots released")
}

// TestInitializeBeyondBudget: initialize beyond the budget while the
// subject's only session is busy (a request in flight) is a 429 with
// Retry-After and a JSON-RPC error carrying the request id; once that
// session is idle, initialize closes it to make room (one child at most).
func TestInitializeBeyondBudget(t *testing.T) {
	slots := upstream.NewSlots(1, 1)
	f := start(t, nil, func(o *Options) { o.Dial = upstream.Limit(o.Dial, slots) })
	sid := f.init(t)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", f.http.URL, strings.NewReader(call(9, "sleep", "")))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", jsonOnly)
	req.Header.Set("Mcp-Session-Id", sid)
	var wg sync.WaitGroup
	wg.Go(func() {
		if r, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, r.Body)
			r.Body.Close()
		}
	})
	defer wg.Wait()
	defer cancel()
	waitFor(t, func() bool { ss := f.srv.get(sid); return ss != nil && ss.idleSince(time.Now()) == 0 }, "the sleep request in flight")
	const init5 = `{"jsonrpc":"2.0","id":5,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	r := f.post(t, "", init5, jsonOnly)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || r.header.Get("Mcp-Session-Id") != "" ||
		!strings.Contains(r.body, `"id":5`) || !strings.Contains(r.body, `"code":-42900,`) {
		t.Fatalf("initialize beyond the budget: %d %v %s", r.status, r.header, r.body)
	}
	if n := f.children.n.Load(); n != 1 {
		t.Fatalf("%d children, want 1", n)
	}
	cancel()
	wg.Wait()
	waitFor(t, func() bool { ss := f.srv.get(sid); return ss != nil && ss.idleSince(time.Now()) > 0 }, "the session idle")
	if r := f.post(t, "", init5, jsonOnly); r.status != 200 || r.header.Get("Mcp-Session-Id") == "" {
		t.Fatalf("initialize with the only session idle: %d %s", r.status, r.body)
	}
	if n := f.children.n.Load(); n != 1 {
		t.Fatalf("%d children, want 1", n)
	}
	if r := f.post(t, sid, call(4, "echo", ""), jsonOnly); r.status != 404 {
		t.Fatalf("evicted session: %d", r.status)
	}
}

// TestSilentChildSSETimeout (hole 9): an SSE reply waiting on a child that
// never answers ends with a JSON-RPC error event after RequestTimeout, in a
// session and stateless; the stateless child is then closed.
func TestSilentChildSSETimeout(t *testing.T) {
	f := start(t, nil, func(o *Options) { o.RequestTimeout = 300 * time.Millisecond })
	sid := f.init(t)
	client := &http.Client{Timeout: 15 * time.Second} // the echo server's sleep lasts 30 s
	for _, c := range []struct{ name, sid, body string }{
		{"session", sid, call(21, "sleep", "")},
		{"stateless", "", `{"jsonrpc":"2.0","id":21,"method":"tools/call","params":{"name":"sleep",` + statelessMeta + `}}`},
	} {
		req, _ := http.NewRequest("POST", f.http.URL, strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", both)
		if c.sid != "" {
			req.Header.Set("Mcp-Session-Id", c.sid)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: the SSE reply never ended: %v", c.name, err)
		}
		lines := dataLines(string(b))
		if len(lines) == 0 || !strings.Contains(lines[len(lines)-1], `"id":21`) || !strings.Contains(lines[len(lines)-1], `"code":-50400,`) {
			t.Fatalf("%s: want a JSON-RPC error event for id 21: %q", c.name, b)
		}
	}
	// The session still works, and the timed-out id can be used again.
	if r := f.post(t, sid, call(21, "echo", ""), jsonOnly); r.status != 200 || !strings.Contains(r.body, `"text":"hi"`) {
		t.Fatalf("session after a timeout: %d %s", r.status, r.body)
	}
	waitFor(t, func() bool { return f.children.n.Load() == 1 }, "the stateless child closed, the session's kept")
}
