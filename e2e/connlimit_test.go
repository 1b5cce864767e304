//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestE2EConnectionCapsAndFormFlood (review gw findings 2 and 4, through
// the binary with the built-in authorization server and its default
// limits): 4,096 connections from 32 loopback addresses send `POST /token`
// headers announcing 64 KiB and no body. The gateway keeps its descriptors
// under limits.max_connections (closing the longest-idle connections),
// still answers /healthz, and another client's /token is answered, not
// refused for lack of budget. The old binary held every connection
// (descriptors +4,096) and answered /token 503 ("the server is busy").
func TestE2EConnectionCapsAndFormFlood(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(202) }))
	t.Cleanup(up.Close)
	dir := t.TempDir()
	port := FreePort(t)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
authorization_server: builtin
builtin:
  store: %s
  users_file: %s
upstreams:
  - url: %s
`, port, filepath.Join(dir, "as.db"), writeUsers(t, dir), up.URL)
	file := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(file, []byte(cfg), 0o600)
	p, _ := Start(t, "mcpgate", []string{Mcpgate(t), "serve", "--config", file}, []string{"MCPGATE_CONFIG_DIR=" + filepath.Join(dir, "gw")}, regexp.MustCompile(`mcpgate serving`))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	WaitHTTP(t, "http://"+addr+"/healthz")
	pid := p.cmd.Process.Pid
	fds := func() int {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Skipf("cannot read the gateway's descriptors: %v", err)
		}
		return len(ents)
	}
	before := fds()
	const addrs, per = 32, 128
	req := fmt.Sprintf("POST /token HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 65536\r\n\r\n", addr)
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for a := range addrs {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(10+a))}, Timeout: 5 * time.Second}
		for range per {
			c, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			conns = append(conns, c)
			_, _ = io.WriteString(c, req) // a closed connection may refuse it
		}
	}
	time.Sleep(500 * time.Millisecond) // let the gateway read the headers it accepted
	peak := fds()

	get := func(from, raw string) (int, string, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return 0, "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, raw); err != nil {
			return 0, "", err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, "", err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b), nil
	}
	hs, _, herr := get("127.0.2.1", "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\nConnection: close\r\n\r\n")
	form := "grant_type=client_credentials&client_id=nobody&client_secret=x"
	ts, tbody, terr := get("127.0.2.2", fmt.Sprintf("POST /token HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", addr, len(form), form))
	t.Logf("%d silent /token connections: gateway descriptors %d -> %d; /healthz %d %v; /token %d %v %.120s",
		len(conns), before, peak, hs, herr, ts, terr, tbody)
	if peak-before > 2048+16 {
		t.Errorf("the gateway holds %d more descriptors for %d silent connections: over limits.max_connections (2048)", peak-before, len(conns))
	}
	if herr != nil || hs != http.StatusOK {
		t.Errorf("/healthz during the flood: %d %v", hs, herr)
	}
	if terr != nil || ts >= 500 {
		t.Errorf("another client's /token during the flood: %d %v %s", ts, terr, tbody)
	}
	if !strings.Contains(p.Output(), "connection caps") {
		t.Errorf("the chosen connection caps were not logged")
	}
}
