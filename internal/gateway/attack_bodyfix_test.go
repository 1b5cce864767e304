package gateway

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
)

// rawFrom opens a connection to addr from the local address from (any
// 127.0.0.0/8 address is loopback on Linux) and writes req.
func rawFrom(t testing.TB, from, addr, req string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	t.Cleanup(func() { c.Close() })
	if req != "" {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatalf("write from %s: %v", from, err)
		}
	}
	return c
}

// silentForm is a POST to the authorization server announcing cl bytes
// and sending sent of them.
func silentForm(addr string, cl, sent int) string {
	return fmt.Sprintf("POST /token HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s",
		addr, cl, strings.Repeat("a", sent))
}

// bigCall is an authenticated MCP request whose body (about n bytes) is
// larger than any buffer the gateway allocates unbudgeted.
func bigCall(n int) string {
	return `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"pad":"` + strings.Repeat("b", n) + `"}}}`
}

// okAS answers every request 200 after reading its form.
var okAS = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"access_token":"x","token_type":"Bearer"}`)
})

// waitBudget polls until the body budget reaches want bytes or d passes
// (the old code charges silent bodies; the new one never does).
func waitBudget(tg *testGateway, want int64, d time.Duration) int64 {
	end := time.Now().Add(d)
	for {
		got := tg.gw.bodies.InUse()
		if got >= want || time.Now().After(end) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func postForm(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Post(url+"/token", "application/x-www-form-urlencoded", strings.NewReader("grant_type=client_credentials&resource=x"))
	if err != nil {
		t.Fatalf("/token: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestAttackSilentFormBodiesDoNotStarveMCP (review gw finding 2):
// unauthenticated connections from four addresses announce a 64 KiB
// /token form and send none (or nearly all) of it. They must not take any
// of the budget of authenticated MCP bodies: an authenticated request
// with a 200 KiB body still succeeds, and so does another client's small
// /token form. On the old code each silent form took 16 KiB of the shared
// budget before a byte arrived, a quarter per address: four addresses
// exhausted it and both requests got 503.
func TestAttackSilentFormBodiesDoNotStarveMCP(t *testing.T) {
	for _, tc := range []struct {
		name string
		sent int // bytes of the 65536 announced
		per  int // connections per address
	}{
		{"nothing sent", 0, 24},
		{"one byte sent", 1, 24},
		{"all but one byte sent", 65535, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := startGatewayWith(t, func(c *config.Gateway) {
				c.Limits.RequestsPerSecond = -1
				c.Limits.MaxBodyBytes = 256 << 10
				c.Limits.BodyBytesInFlight = 1 << 20 // a quarter: 256 KiB
			}, Options{AuthServer: okAS})
			addr := strings.TrimPrefix(tg.url, "http://")
			for _, from := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"} {
				for range tc.per {
					rawFrom(t, from, addr, silentForm(addr, 65536, tc.sent))
				}
			}
			held := waitBudget(tg, 1<<20, 1500*time.Millisecond)
			t.Logf("%d silent forms: MCP body budget in use %d KiB", 4*tc.per, held>>10)
			if held != 0 {
				t.Errorf("unauthenticated form bodies hold %d bytes of the MCP body budget", held)
			}
			// startGatewayWith serves the first gateway's resource
			tok := tg.idp.Sign(t, "RS256", tg.idp.Claims("alice", tg.cfg.Upstreams[0].Resource, "mcp:read"))
			r := tg.do(t, "POST", "/mcp", bigCall(200<<10), bearer(tok))
			if r.status != http.StatusOK {
				t.Fatalf("authenticated MCP POST during the form flood: %d %s", r.status, r.body)
			}
			if st := postForm(t, tg.url); st != http.StatusOK {
				t.Fatalf("another client's /token during the flood: %d", st)
			}
		})
	}
}

// TestAttackSilentMCPBodiesCostNothing: authenticated callers (distinct
// subjects) that announce 4 MiB and send nothing hold no budget, so a
// request whose body did arrive is not refused. On the old code each took
// 16 KiB before any byte arrived: 64 of them filled a 1 MiB budget.
func TestAttackSilentMCPBodiesCostNothing(t *testing.T) {
	tg := startGateway(t, func(c *config.Gateway) {
		c.Limits.RequestsPerSecond = -1
		c.Limits.MaxBodyBytes = 256 << 10
		c.Limits.BodyBytesInFlight = 1 << 20
	})
	addr := strings.TrimPrefix(tg.url, "http://")
	for i := range 64 {
		openSlow(t, addr, "/mcp", 256<<10, 0, bearer(tg.token(t, fmt.Sprintf("silent%d", i), "mcp:read")))
	}
	held := waitBudget(tg, 1<<20, 1500*time.Millisecond)
	t.Logf("64 silent authenticated bodies: budget in use %d KiB", held>>10)
	if held != 0 {
		t.Errorf("bodies that sent nothing hold %d bytes of the budget", held)
	}
	if r := tg.do(t, "POST", "/mcp", bigCall(200<<10), bearer(tg.token(t, "alice", "mcp:read"))); r.status != http.StatusOK {
		t.Fatalf("authenticated POST with its body next to 64 silent ones: %d %s", r.status, r.body)
	}
}

// fdCount is the number of open descriptors of this process.
func fdCount(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// closedByServer reports whether the server closed c (EOF or reset)
// by deadline, rather than leaving it open.
func closedByServer(c net.Conn, deadline time.Time) bool {
	_ = c.SetReadDeadline(deadline)
	_, err := bufio.NewReader(c).ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func healthz(t *testing.T, from, addr string) (int, error) {
	t.Helper()
	c := rawFrom(t, from, addr, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\nConnection: close\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestAttackConnectionsPerAddressCapped (review gw finding 4): one address
// opens 300 connections that send nothing (and, a neighbour, 60 KB of
// headers without the final CRLF). Beyond the per-address cap (default
// 128) the gateway closes them at once, so its descriptors grow by the
// cap, not by the flood; another address still gets /healthz. On the old
// code every connection was held (until ReadHeaderTimeout) and the
// process's descriptors grew by two per connection (both ends here).
func TestAttackConnectionsPerAddressCapped(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  string
	}{
		{"silent", ""},
		{"slow headers", "POST /mcp HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: "+strings.Repeat("a", 1000)+"\r\n", 60)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := startGateway(t, nil)
			addr := strings.TrimPrefix(tg.url, "http://")
			const n, cap = 300, 128
			before := fdCount(t)
			conns := make([]net.Conn, n)
			for i := range conns {
				conns[i] = rawFrom(t, "127.0.0.7", addr, tc.req)
			}
			closed := 0
			deadline := time.Now().Add(2 * time.Second)
			for _, c := range conns[cap:] {
				if closedByServer(c, deadline) {
					closed++
				}
			}
			grew := fdCount(t) - before
			t.Logf("%d connections from one address: %d of the %d over the cap closed, descriptors +%d", n, closed, n-cap, grew)
			if closed != n-cap {
				t.Errorf("%d of the %d connections over the per-address cap were left open", n-cap-closed, n-cap)
			}
			if grew > n+cap+16 {
				t.Errorf("descriptors grew by %d for %d client connections: the gateway holds more than the cap of %d", grew, n, cap)
			}
			if st, err := healthz(t, "127.0.0.8", addr); err != nil || st != http.StatusOK {
				t.Fatalf("/healthz from another address during the flood: %d %v", st, err)
			}
		})
	}
}
