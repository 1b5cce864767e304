package gateway

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
)

func TestUpstreamCredentialFromFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "cred")
	os.WriteFile(file, []byte("Bearer gateway-own-token\n"), 0o600)
	tg := startGateway(t, func(c *config.Gateway) {
		c.Upstreams[0].UpstreamAuth = &config.UpstreamAuth{Header: "Authorization", ValueFile: file}
	})
	tok := tg.token(t, "alice", "mcp:read")
	if r := tg.do(t, "POST", "/mcp", listBody, bearer(tok)); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if got := tg.up.lastHeader().Get("Authorization"); got != "Bearer gateway-own-token" {
		t.Fatalf("upstream saw Authorization %q, want the gateway's own credential", got)
	}
}

func TestOversizedHeadersRefused(t *testing.T) {
	tg := startGateway(t, func(c *config.Gateway) { c.Limits.MaxHeaderBytes = 8 << 10 })
	r := tg.do(t, "POST", "/mcp", listBody, map[string]string{"X-Big": strings.Repeat("a", 64<<10)})
	if r.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", r.status)
	}
	if tg.up.hits.Load() != 0 {
		t.Fatal("reached the upstream")
	}
}

func TestShutdownEndsOpenStreamsWithinDeadline(t *testing.T) {
	tg := startGateway(t, nil)
	tok := tg.token(t, "alice", "mcp:read")
	sid := tg.initialize(t, tok)
	req, _ := http.NewRequest("GET", tg.url+"/mcp", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Mcp-Session-Id", sid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET: %v %v", err, resp)
	}
	br := bufio.NewReader(resp.Body)
	br.ReadString('\n')
	ended := make(chan struct{})
	go func() {
		for {
			if _, err := br.ReadString('\n'); err != nil {
				close(ended)
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := tg.gw.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the open stream was not closed by shutdown")
	}
	t.Logf("shutdown with an open stream took %s", time.Since(start))
	if _, err := http.Get(tg.url + "/healthz"); err == nil {
		t.Fatal("still accepting connections after shutdown")
	}
}
