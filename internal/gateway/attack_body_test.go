package gateway

// Attack rows for issue 11 hole 8 (unauthenticated memory pinning): a
// connection that announces a large body and sends it slowly (or never
// finishes it). These tests use only what the gateway had before the fix,
// so that they run, and fail, on the old code too.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
)

// heapInUse is the live heap after a collection (runtime/metrics).
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// slowConn is a raw connection that sent its request headers and part of
// the body it announced.
type slowConn struct {
	c  net.Conn
	br *bufio.Reader
}

// openSlow sends a POST to path announcing cl bytes (chunked when cl < 0)
// with hdr, then the first sent bytes of a JSON body, and nothing more.
func openSlow(t testing.TB, addr, path string, cl int64, sent int, hdr map[string]string) *slowConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var b strings.Builder
	host := addr
	if h, ok := hdr["Host"]; ok {
		host = h
	}
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n", path, host)
	if cl >= 0 {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", cl)
	} else {
		b.WriteString("Transfer-Encoding: chunked\r\n")
	}
	for k, v := range hdr {
		if k == "Host" {
			continue
		}
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	chunk := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"pad":"` + strings.Repeat("a", max(sent-80, 0))
	chunk = chunk[:min(len(chunk), sent)]
	if cl < 0 {
		fmt.Fprintf(&b, "%x\r\n%s\r\n", len(chunk), chunk)
	} else {
		b.WriteString(chunk)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	return &slowConn{c: c, br: bufio.NewReader(c)}
}

// response reads the reply, waiting at most d.
func (s *slowConn) response(d time.Duration) (*http.Response, []byte, error) {
	_ = s.c.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(s.br, nil)
	if err != nil {
		return nil, nil, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b, nil
}

// TestAttackSlowBodiesPinNoMemory: N connections announce the maximum body
// (4 MiB) and send only its first KiB. Unauthenticated, the gateway must
// not read (or allocate for) any of it and must answer at once; with a
// valid token, it must not allocate what was announced, only what arrived.
// On the old code every connection pinned a 4 MiB buffer before
// authentication: 64 connections, 256 MiB.
func TestAttackSlowBodiesPinNoMemory(t *testing.T) {
	const n = 64
	const announce = 4 << 20
	tg := startGateway(t, func(c *config.Gateway) { c.Limits.RequestsPerSecond = -1 })
	addr := strings.TrimPrefix(tg.url, "http://")
	good := tg.token(t, "alice", "mcp:read")
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		// unauth: the refusal must come before the body does.
		unauth bool
	}{
		{"no token", nil, true},
		{"garbage token", map[string]string{"Authorization": "Bearer not-a-token"}, true},
		{"valid token", map[string]string{"Authorization": "Bearer " + good}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := heapInUse()
			conns := make([]*slowConn, n)
			for i := range conns {
				conns[i] = openSlow(t, addr, "/mcp", announce, 1024, tc.hdr)
			}
			if tc.unauth {
				for i, sc := range conns {
					resp, _, err := sc.response(5 * time.Second)
					if err != nil {
						t.Fatalf("conn %d: no refusal while the body is incomplete: %v", i, err)
					}
					if resp.StatusCode != http.StatusUnauthorized {
						t.Fatalf("conn %d: status %d, want 401", i, resp.StatusCode)
					}
				}
			} else {
				time.Sleep(300 * time.Millisecond) // let the server start reading
			}
			grew := heapInUse() - before
			t.Logf("%d connections announcing %d bytes: heap grew %d KiB", n, announce, grew>>10)
			if limit := int64(16 << 20); grew > limit {
				t.Fatalf("heap grew %d MiB for %d slow bodies (limit %d MiB): bodies are allocated from what was announced", grew>>20, n, limit>>20)
			}
			for _, sc := range conns {
				sc.c.Close()
			}
		})
	}
}

// TestAttackUnauthenticatedBodyNeverRead: a refusal from the headers comes
// while the body is still incomplete, closes the connection, and never
// waits for (or drains) the body — whatever the way of sending it.
func TestAttackUnauthenticatedBodyNeverRead(t *testing.T) {
	tg := startGateway(t, func(c *config.Gateway) { c.Limits.RequestsPerSecond = -1 })
	addr := strings.TrimPrefix(tg.url, "http://")
	expired := tg.idp.Claims("alice", tg.url+"/mcp", "mcp:read")
	expired["exp"] = time.Now().Add(-time.Hour).Unix()
	wrongAud := tg.idp.Claims("alice", "https://elsewhere.example/mcp", "mcp:read")
	for _, tc := range []struct {
		name string
		path string
		cl   int64
		sent int
		hdr  map[string]string
		want int
	}{
		{"no token, 4 MiB announced", "/mcp", 4 << 20, 1024, nil, 401},
		{"no token, small body", "/mcp", 200, 10, nil, 401},
		{"no token, chunked", "/mcp", -1, 1024, nil, 401},
		{"expired token", "/mcp", 100 << 10, 1024, bearer(tg.idp.Sign(t, "RS256", expired)), 401},
		{"wrong audience", "/mcp", 100 << 10, 1024, bearer(tg.idp.Sign(t, "RS256", wrongAud)), 401},
		{"DPoP scheme without proof", "/mcp", 100 << 10, 1024, map[string]string{"Authorization": "DPoP " + tg.token(t, "alice", "mcp:read")}, 401},
		{"two Authorization headers", "/mcp", 100 << 10, 1024, map[string]string{"Authorization": "Bearer a", "authorization": "Bearer b"}, 400},
		{"legacy message endpoint", "/mcp/message?sessionId=x", 100 << 10, 1024, nil, 401},
		{"announced beyond max_body_bytes", "/mcp", 5 << 20, 1024, nil, 401},
		{"health check", "/healthz", 100 << 10, 1024, nil, 200},
		{"resource metadata", "/.well-known/oauth-protected-resource/mcp", 100 << 10, 1024, nil, 405},
		{"unknown path", "/nothing-here", 100 << 10, 1024, nil, 404},
		{"wrong Host", "/mcp", 100 << 10, 1024, map[string]string{"Host": "evil.example"}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := openSlow(t, addr, tc.path, tc.cl, tc.sent, tc.hdr)
			resp, body, err := sc.response(5 * time.Second)
			if err != nil {
				t.Fatalf("no answer while the body is incomplete (the gateway waits for it): %v", err)
			}
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if strings.HasPrefix(tc.path, "/mcp") && !strings.Contains(string(body), `"jsonrpc":"2.0"`) {
				t.Fatalf("refusal without a JSON-RPC body: %s", body)
			}
			if !resp.Close {
				t.Fatal("the refusal leaves the connection open: net/http then drains the unread body")
			}
			_ = sc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := sc.br.ReadByte(); err == nil {
				t.Fatal("the connection stays open after the refusal")
			}
		})
	}
}

// TestAttackAuthServerFormBounded: the built-in authorization server's
// endpoints parse forms that net/http would read up to 10 MB, with no
// deadline: the gateway bounds them (limits.max_form_bytes, 64 KiB).
func TestAttackAuthServerFormBounded(t *testing.T) {
	var mu sync.Mutex
	var seen []int
	as := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		mu.Lock()
		seen = append(seen, len(r.PostForm.Get("x")))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{}`)
	})
	tg := startGatewayWith(t, nil, Options{AuthServer: as})
	for _, tc := range []struct {
		name string
		size int
		want int
	}{
		{"small form", 100, 200},
		{"1 MiB form", 1 << 20, 413},
		{"just over 64 KiB", 64<<10 + 1, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := "x=" + strings.Repeat("a", tc.size-2)
			req, _ := http.NewRequest("POST", tg.url+"/token", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, b)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range seen {
		if n > 64<<10 {
			t.Fatalf("the authorization server parsed a %d-byte form", n)
		}
	}
}

// startGatewayWith is startGateway with gateway options (an authorization
// server handler).
func startGatewayWith(t testing.TB, mutate func(*config.Gateway), opts Options) *testGateway {
	t.Helper()
	tg := startGateway(t, mutate)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Getenv == nil {
		opts.Getenv = func(string) string { return "" }
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := *tg.cfg
	cfg.Listen = ln.Addr().String()
	cfg.PublicURL = "http://" + cfg.Listen
	cfg.AllowedHosts = append(cfg.AllowedHosts, cfg.Listen)
	gw, err := New(context.Background(), &cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gw.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
	})
	return &testGateway{gw: gw, url: cfg.PublicURL, idp: tg.idp, up: tg.up, cfg: &cfg, audit: tg.audit}
}
