package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/testutil"
)

// syncBuffer is a bytes.Buffer the serve goroutine writes and the test reads.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestServeRedisURL: `mcpgate serve --redis-url` opens the shared state:
// /readyz is 200 with Redis up and 503 naming it when Redis is down; with
// a wrong password (MCPGATE_REDIS_PW, via state.redis.password_env in a
// config file) /readyz is 503 and stderr never holds the password.
func TestServeRedisURL(t *testing.T) {
	const right, wrong = "right-horse-battery", "Wr0ng-s3cret-staple"
	srv := testutil.StartRedis(t, "--requirepass", right)
	idp := testutil.NewIdP(t)
	up := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(up.Close)
	for _, tc := range []struct {
		name, pw string
		ready    int
	}{{"right password", right, 200}, {"wrong password", wrong, 503}} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			cfg := t.TempDir() + "/mcpgate.yaml"
			if err := os.WriteFile(cfg, []byte("state:\n  redis:\n    password_env: MCPGATE_REDIS_PW\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var errb syncBuffer
			done := make(chan int, 1)
			getenv := func(k string) string {
				if k == "MCPGATE_REDIS_PW" {
					return tc.pw
				}
				return ""
			}
			go func() {
				done <- dispatch(ctx, []string{"serve", "--config", cfg, "--listen", addr, "--redis-url", srv.URL(),
					"--issuer", idp.Issuer, "--upstream", up.URL + "/mcp"},
					&env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &errb, getenv: getenv})
			}()
			defer func() { cancel(); <-done }()
			status, body := 0, ""
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					status, body = resp.StatusCode, string(b)
					if status == tc.ready {
						break
					}
				}
			}
			if status != tc.ready {
				t.Fatalf("/readyz %d %s, want %d; stderr %s", status, body, tc.ready, errb.String())
			}
			if tc.ready == 503 && !strings.Contains(body, "shared state (Redis) unavailable") {
				t.Fatalf("/readyz with a wrong password: %s", body)
			}
			if strings.Contains(errb.String()+body, wrong) || strings.Contains(errb.String()+body, right) {
				t.Fatalf("a password appears in stderr or /readyz: %s %s", errb.String(), body)
			}
		})
	}
}
