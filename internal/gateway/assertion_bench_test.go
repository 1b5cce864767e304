package gateway

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/resource"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// BenchmarkIdentityAssertion is the cost of the credential step alone:
// signing a new ES256 assertion per request, or reusing the cached one.
func BenchmarkIdentityAssertion(b *testing.B) {
	ks, err := newAssertionKeys(config.IdentityAssertionKeys{}, slog.New(slog.DiscardHandler), time.Now)
	if err != nil {
		b.Fatal(err)
	}
	p := &resource.Principal{Subject: "alice", ClientID: "client-1", Issuer: "https://idp.example", Scopes: []string{"mcp:read", "mcp:write"}, Expiry: time.Now().Add(time.Hour)}
	for _, mode := range []string{"per_request", "cached"} {
		b.Run(mode, func(b *testing.B) {
			a := &identityAssertions{keys: ks, issuer: "https://gw.example", audience: "https://up.example/mcp",
				header: config.DefaultAssertionHeader, ttl: 2 * time.Minute, now: time.Now}
			if mode == "cached" {
				a.cache = newAssertionCache(assertionCacheSize)
			}
			c := credCaller{p: p}
			b.ReportAllocs()
			for b.Loop() {
				h := http.Header{}
				if err := a.addTo(b.Context(), c, h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHandlerOnlyAssertion is BenchmarkHandlerOnly (the gateway's
// own work per POST, no sockets) with identity assertions in each mode;
// the difference to BenchmarkHandlerOnly is what they add to a call.
func BenchmarkHandlerOnlyAssertion(b *testing.B) {
	for _, mode := range []string{"per_request", "cached"} {
		b.Run(mode, func(b *testing.B) {
			tg := startGateway(b, func(c *config.Gateway) {
				c.Audit.Disabled = true
				c.Limits.RequestsPerSecond, c.Limits.Burst = 1e9, 1e9
				c.Upstreams[0].UpstreamAuth = &config.UpstreamAuth{IdentityAssertion: &config.IdentityAssertion{Mode: mode}}
			})
			tok := tg.idp.Sign(b, "RS256", tg.idp.Claims("alice", tg.url+"/mcp", "mcp:read"))
			tg.gw.mounts[0].handler = upstream.HandlerFunc(func(w http.ResponseWriter, r *http.Request, req *upstream.Request) {
				if req.Caller.Header.Get(config.DefaultAssertionHeader) == "" {
					b.Fatal("no assertion")
				}
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
		})
	}
}
