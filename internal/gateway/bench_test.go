package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/upstream"
)

// BenchmarkProxiedPOST measures a tools/call POST through the gateway
// (authentication from the verified-token cache, policy, proxy, audit off)
// to an in-process upstream; BenchmarkDirectPOST is the same request to the
// upstream directly. The difference is the gateway's overhead.
func BenchmarkProxiedPOST(b *testing.B) {
	tg := startGatewayB(b)
	tok := tg.idp.Sign(b, "RS256", tg.idp.Claims("alice", tg.url+"/mcp", "mcp:read"))
	benchPOST(b, tg.url+"/mcp", tok)
}

func BenchmarkDirectPOST(b *testing.B) {
	tg := startGatewayB(b)
	benchPOST(b, tg.up.srv.URL, "")
}

func benchPOST(b *testing.B, url, tok string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	start := cpuTime()
	b.ResetTimer()
	defer func() {
		b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-µs/op")
	}()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			postOnce(b, client, url, tok)
		}
	})
}

func postOnce(b *testing.B, client *http.Client, url, tok string) {
	req, _ := http.NewRequest("POST", url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"x":1}}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

// BenchmarkGatewayCPUPerPOST is the figure behind the floor: it
// alternates blocks of 200 requests through the gateway and 200 directly
// to the same in-process upstream (two client goroutines each), so that
// machine drift affects both alike, and reports the CPU per request of
// each and their difference, the gateway's own cost (gw-cpu-µs/op).
func BenchmarkGatewayCPUPerPOST(b *testing.B) {
	tg := startGatewayB(b)
	tok := tg.idp.Sign(b, "RS256", tg.idp.Claims("alice", tg.url+"/mcp", "mcp:read"))
	proxied, direct, n := alternate(b, tg.url+"/mcp", tok, tg.up.srv.URL)
	b.ReportMetric(float64(proxied.Microseconds())/n, "proxied-cpu-µs/op")
	b.ReportMetric(float64(direct.Microseconds())/n, "direct-cpu-µs/op")
	b.ReportMetric(float64((proxied-direct).Microseconds())/n, "gw-cpu-µs/op")
}

// BenchmarkBareReverseProxyCPUPerPOST is the yardstick for the figure
// above: the standard library's httputil.ReverseProxy, with no
// authentication or policy, in front of the same upstream, measured the
// same way (rp-cpu-µs/op).
func BenchmarkBareReverseProxyCPUPerPOST(b *testing.B) {
	tg := startGatewayB(b)
	target, _ := url.Parse(tg.up.srv.URL)
	ps := httptest.NewServer(httputil.NewSingleHostReverseProxy(target))
	defer ps.Close()
	proxied, direct, n := alternate(b, ps.URL, "", tg.up.srv.URL)
	b.ReportMetric(float64((proxied-direct).Microseconds())/n, "rp-cpu-µs/op")
}

// alternate sends blocks of 200 POSTs to proxiedURL and to directURL in
// turn, b.N times each, and returns the CPU spent on each and the number
// of requests per side.
func alternate(b *testing.B, proxiedURL, tok, directURL string) (proxied, direct time.Duration, n float64) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	const block = 200
	run := func(url, tok string) time.Duration {
		start := cpuTime()
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				for range block / 2 {
					postOnce(b, client, url, tok)
				}
			})
		}
		wg.Wait()
		return cpuTime() - start
	}
	run(proxiedURL, tok) // warm both paths
	run(directURL, "")
	b.ResetTimer()
	for b.Loop() {
		proxied += run(proxiedURL, tok)
		direct += run(directURL, "")
	}
	return proxied, direct, float64(b.N * block)
}

// BenchmarkHandlerOnly is the gateway's own work per POST — edge checks,
// body and envelope, authentication from the cache, rate limit, policy,
// session and credential handling — with the upstream replaced by an
// in-memory handler and no sockets: what is left of the per-POST CPU
// besides net/http and the kernel.
func BenchmarkHandlerOnly(b *testing.B) {
	tg := startGatewayB(b)
	tok := tg.idp.Sign(b, "RS256", tg.idp.Claims("alice", tg.url+"/mcp", "mcp:read"))
	tg.gw.mounts[0].handler = upstream.HandlerFunc(func(w http.ResponseWriter, r *http.Request, _ *upstream.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hi"}]}}`))
	})
	h := tg.gw.Handler()
	host := strings.TrimPrefix(tg.url, "http://")
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"x":1}}}`))
		req.Host, req.RemoteAddr = host, "127.0.0.1:1234"
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}

// cpuTime is the process's user+system CPU time: the benchmarks report CPU
// per request, which on a 2-core machine says more than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
