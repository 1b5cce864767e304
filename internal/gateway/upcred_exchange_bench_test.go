package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/resource"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// BenchmarkCredentialStatic and BenchmarkCredentialExchangeCached are the
// gateway's work per POST (as BenchmarkHandlerOnly) with a static
// upstream_auth header and with token exchange answered from the cache:
// the difference is what a cached exchanged token costs a call
// (issue 15: at most 5 µs; docs/performance.md).
func BenchmarkCredentialStatic(b *testing.B) {
	b.Setenv("MCPGATE_BENCH_UPSTREAM_TOKEN", "static-token")
	tg := startGatewayOpts(b, func(c *config.Gateway) {
		benchLimits(c)
		c.Upstreams[0].UpstreamAuth = &config.UpstreamAuth{Header: "Authorization", ValueEnv: "MCPGATE_BENCH_UPSTREAM_TOKEN"}
	}, Options{Getenv: func(string) string { return "Bearer static-token" }})
	benchCredential(b, tg, "Bearer static-token")
}

func BenchmarkCredentialExchangeCached(b *testing.B) {
	fx := &fakeExchanger{answer: upstreamTokenFor}
	tg := startExchangeGateway(b, fx, benchLimits)
	benchCredential(b, tg, "")
	if fx.calls.Load() != 1 {
		b.Fatalf("%d exchanges, want 1 (cached)", fx.calls.Load())
	}
}

func benchLimits(c *config.Gateway) {
	c.Audit.Disabled = true
	c.Limits.RequestsPerSecond, c.Limits.Burst = 1e9, 1e9
}

// benchCredential serves tools/call POSTs in memory; the upstream checks
// it got an Authorization header (want, when set).
func benchCredential(b *testing.B, tg *testGateway, want string) {
	tok := tg.idp.Sign(b, "RS256", tg.idp.Claims("alice", tg.url+"/mcp", "mcp:read"))
	tg.gw.mounts[0].handler = upstream.HandlerFunc(func(w http.ResponseWriter, r *http.Request, req *upstream.Request) {
		if got := req.Caller.Header.Get("Authorization"); got == "" || (want != "" && got != want) {
			http.Error(w, "no upstream credential", http.StatusUnauthorized)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hi"}]}}`))
	})
	h := tg.gw.Handler()
	host := strings.TrimPrefix(tg.url, "http://")
	b.ReportAllocs()
	cpu0 := cpuTime()
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
	// CPU time per call: on a shared 2-core machine wall time says more
	// about the neighbours than about the gateway.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkExchangeAddToCached is the exchange source alone on a cache
// hit: what token exchange adds to the credentials step of a call.
func BenchmarkExchangeAddToCached(b *testing.B) {
	tg := startGatewayB(b)
	tok := tg.idp.Sign(b, "RS256", tg.idp.Claims("alice", tg.url+"/mcp", "mcp:read"))
	s := &exchangeSource{x: &fakeExchanger{answer: upstreamTokenFor}, header: "Authorization", scheme: "Bearer",
		cache: newExchangeCache(defaultExchangeEntries), now: time.Now}
	r := httptest.NewRequest("POST", "/mcp", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	c := credCaller{p: &resource.Principal{Issuer: tg.idp.Issuer, Subject: "alice", Expiry: time.Now().Add(time.Hour)}, r: r}
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		h := http.Header{}
		if err := s.addTo(r.Context(), c, h); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}
