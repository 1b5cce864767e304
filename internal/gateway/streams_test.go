package gateway

import (
	"bufio"
	"context"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
)

// openStreams opens n idle GET streams at url (session ids from sids) and
// waits until each delivered its first event.
func openStreams(t testing.TB, url string, hdr func(i int) map[string]string, n int) (closeAll func()) {
	t.Helper()
	var cancels []context.CancelFunc
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	for i := range n {
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		req.Header.Set("Accept", "text/event-stream")
		for k, v := range hdr(i) {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != 200 {
			if resp != nil {
				resp.Body.Close()
			}
			cancel()
			t.Fatalf("stream %d: %v %v", i, err, resp)
		}
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		if !strings.HasPrefix(line, "id:") {
			t.Fatalf("stream %d first line %q", i, line)
		}
	}
	return func() {
		for _, c := range cancels {
			c()
		}
		client.CloseIdleConnections()
	}
}

func settle() int {
	var last int
	for range 50 {
		runtime.GC()
		n := runtime.NumGoroutine()
		if n == last {
			return n
		}
		last = n
		time.Sleep(20 * time.Millisecond)
	}
	return last
}

func heapAndStacks() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}

// streamCost measures goroutines and bytes per idle SSE stream, directly
// at the upstream and through the gateway; the difference is the gateway's.
func streamCost(t testing.TB, n int) (goroutines float64, bytes float64, leaked int) {
	tg := startGateway(t, func(c *config.Gateway) {
		c.Limits.MaxStreamsPerSubject, c.Limits.RequestsPerSecond, c.Limits.Burst = 1000, 1e6, 1e6
		c.Limits.MaxSessionsPerSubject = 1000
	})
	tok := tg.token(t, "alice", "mcp:read")
	sids := make([]string, n)
	for i := range sids {
		sids[i] = tg.initialize(t, tok)
	}
	base := settle()
	m0 := heapAndStacks()
	closeDirect := openStreams(t, tg.up.srv.URL, func(i int) map[string]string { return map[string]string{"Mcp-Session-Id": sids[i]} }, n)
	g1 := settle()
	m1 := heapAndStacks()
	closeDirect()
	settle()
	m2 := heapAndStacks()
	g2 := settle()
	closeProxied := openStreams(t, tg.url+"/mcp", func(i int) map[string]string {
		return map[string]string{"Mcp-Session-Id": sids[i], "Authorization": "Bearer " + tok, "MCP-Protocol-Version": "2025-11-25"}
	}, n)
	g3 := settle()
	m3 := heapAndStacks()
	closeProxied()
	end := settle()
	direct := float64(g1-base) / float64(n)
	proxied := float64(g3-g2) / float64(n)
	return proxied - direct, (float64(m3-m2) - float64(m1-m0)) / float64(n), end - base
}

func TestIdleStreamGoroutinesAndNoLeak(t *testing.T) {
	g, b, leaked := streamCost(t, 20)
	t.Logf("gateway cost per idle SSE stream: %.1f goroutines, %.1f KiB", g, b/1024)
	if g > 4 {
		t.Fatalf("%.1f goroutines per idle stream, want ≤ 4", g)
	}
	if leaked > 0 {
		t.Fatalf("%d goroutines left after all streams closed", leaked)
	}
}

func BenchmarkIdleStream(b *testing.B) {
	for b.Loop() {
		g, bytes, _ := streamCost(b, 50)
		b.ReportMetric(g, "goroutines/stream")
		b.ReportMetric(bytes/1024, "KiB/stream")
	}
}

// TestDetachedStreamReleasesItsSlot: a stream served on the hijacked
// connection counts against max_streams_per_subject until the client
// leaves, then frees its slot; events still flow through it.
func TestDetachedStreamReleasesItsSlot(t *testing.T) {
	tg := startGateway(t, func(c *config.Gateway) { c.Limits.MaxStreamsPerSubject = 1 })
	tok := tg.token(t, "alice", "mcp:read")
	a, b := tg.initialize(t, tok), tg.initialize(t, tok)
	hdr := func(sid string) func(int) map[string]string {
		return func(int) map[string]string {
			return map[string]string{"Mcp-Session-Id": sid, "Authorization": "Bearer " + tok}
		}
	}
	closeA := openStreams(t, tg.url+"/mcp", hdr(a), 1) // reads the upstream's first event through the gateway
	r := tg.do(t, "GET", "/mcp", "", map[string]string{"Mcp-Session-Id": b, "Authorization": "Bearer " + tok, "Accept": "text/event-stream"})
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("second stream with a limit of 1: %d", r.status)
	}
	closeA()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok := func() (ok bool) {
			// recover must run even when ok is already false: a
			// short-circuited recover() would let the panic escape.
			defer func() {
				if recover() != nil {
					ok = false
				}
			}()
			c := openStreams(&quietT{TB: t}, tg.url+"/mcp", hdr(b), 1)
			c()
			return true
		}()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the slot of a closed detached stream was never released")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// quietT turns Fatalf into a panic the caller recovers from (retry loops).
type quietT struct{ testing.TB }

func (q *quietT) Fatalf(format string, args ...any) { panic(format) }
func (q *quietT) Helper()                           {}
