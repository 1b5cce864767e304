package gateway

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

// TestConnectionTotalCapEvictsIdle: at limits.max_connections, a new
// connection closes the longest-idle one (silent, slow headers, or waiting
// for an authorization-server form), so /healthz keeps answering while
// three addresses hold more than the cap; the count and the process's
// descriptors stay within the cap.
func TestConnectionTotalCapEvictsIdle(t *testing.T) {
	const total, per = 64, 32
	for _, tc := range []struct {
		name string
		req  func(addr string) string
	}{
		{"silent", func(string) string { return "" }},
		{"slow headers", func(string) string { return "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + strings.Repeat("a", 30000) }},
		{"silent form body", func(addr string) string { return silentForm(addr, 65536, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := startGatewayWith(t, func(c *config.Gateway) {
				c.Limits.MaxConnections = total
				c.Limits.MaxConnectionsPerAddress = per
			}, Options{AuthServer: okAS})
			addr := strings.TrimPrefix(tg.url, "http://")
			// the first gateway (startGatewayWith builds two) is idle
			before := fdCount(t)
			n := 0
			for _, from := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
				for range per {
					rawFrom(t, from, addr, tc.req(addr))
					n++
				}
			}
			time.Sleep(100 * time.Millisecond) // let the server read what was sent
			for i := range 5 {
				if st, err := healthz(t, fmt.Sprintf("127.0.0.%d", 10+i), addr); err != nil || st != http.StatusOK {
					t.Fatalf("/healthz %d at the connection cap: %d %v", i, st, err)
				}
			}
			open := tg.gw.conns.Open()
			grew := fdCount(t) - before
			t.Logf("%d idle connections, cap %d: %d open, %d evicted, descriptors +%d", n, total, open, tg.gw.conns.evicted.Load(), grew)
			if open > total {
				t.Errorf("%d connections open over the cap of %d", open, total)
			}
			if tg.gw.conns.evicted.Load() < int64(n-total) {
				t.Errorf("only %d idle connections evicted for %d over the cap", tg.gw.conns.evicted.Load(), n-total)
			}
			if grew > n+5+total+16 {
				t.Errorf("descriptors grew by %d: more than the %d client ends plus the cap", grew, n+5)
			}
		})
	}
}

// TestConnectionCapBusyRefusesNew: when every connection is busy with an
// admitted request, a new one is closed rather than an active one.
func TestConnectionCapBusyRefusesNew(t *testing.T) {
	l := newConnLimiter(2, -1, nil)
	a, b, c := pipeConn(t, "192.0.2.1"), pipeConn(t, "192.0.2.2"), pipeConn(t, "192.0.2.3")
	la, lb := l.admit(a), l.admit(b)
	if la == nil || lb == nil {
		t.Fatal("under the cap refused")
	}
	l.setIdle(la, false)
	l.setIdle(lb, false)
	if l.admit(c) != nil || l.Open() != 2 || l.refusedFull.Load() != 1 {
		t.Fatalf("busy at the cap: a new connection was admitted (open %d)", l.Open())
	}
	l.setIdle(lb, true)
	if lc := l.admit(c); lc == nil || l.evicted.Load() != 1 || !lb.released || la.released {
		t.Fatal("an idle connection was not the one evicted")
	}
	_ = la.Close()
	_ = la.Close() // released once
	if l.Open() != 1 {
		t.Fatalf("open %d after close, want 1", l.Open())
	}
}

// TestConnectionPerAddressIPv6Grouped: IPv6 peers count per /64, so the
// addresses of one block share one cap; trusted proxies are exempt.
func TestConnectionPerAddressIPv6Grouped(t *testing.T) {
	l := newConnLimiter(0, 2, func(a netip.Addr) bool { return a.String() == "10.0.0.1" })
	for i, tc := range []struct {
		peer string
		ok   bool
	}{
		{"2001:db8:1:2::1", true},
		{"2001:db8:1:2:ffff::9", true},
		{"2001:db8:1:2:abcd::1", false}, // same /64: third
		{"2001:db8:1:3::1", true},       // next /64
		{"::ffff:192.0.2.1", true},
		{"192.0.2.1", true},
		{"192.0.2.1", false}, // mapped and plain are one address
		{"10.0.0.1", true}, {"10.0.0.1", true}, {"10.0.0.1", true},
	} {
		if got := l.admit(pipeConn(t, tc.peer)) != nil; got != tc.ok {
			t.Errorf("%d %s: admitted %v, want %v", i, tc.peer, got, tc.ok)
		}
	}
	for _, tc := range [][2]string{
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::ffff:203.0.113.5", "203.0.113.5"},
		{"not-an-ip", "not-an-ip"},
	} {
		if got := addrKey(tc[0]); got != tc[1] {
			t.Errorf("addrKey(%s) = %s, want %s", tc[0], got, tc[1])
		}
	}
}

// TestFormBudgetPerAddressBlock: the authorization server's budget is
// separate from the MCP one, and one IPv6 /64 (any number of addresses)
// holds at most a sixteenth of it.
func TestFormBudgetPerAddressBlock(t *testing.T) {
	b := newFormBudget(8<<20, 64<<10) // share 512 KiB
	taken := int64(0)
	for i := range 1000 {
		if !b.take(addrKey(fmt.Sprintf("2001:db8:1:2::%x", i+1)), 64<<10) {
			break
		}
		taken += 64 << 10
	}
	if taken != 512<<10 {
		t.Fatalf("one /64 took %d KiB of the form budget, want its 512 KiB share", taken>>10)
	}
	if !b.take(addrKey("2001:db8:1:3::1"), 64<<10) {
		t.Fatal("another /64 refused")
	}
}

// TestConnCapFitsOpenFileLimit: the cap is lowered to half the
// descriptors RLIMIT_NOFILE leaves after the reserve.
func TestConnCapFitsOpenFileLimit(t *testing.T) {
	for _, tc := range []struct {
		conf   int
		nofile uint64
		want   int
	}{
		{2048, 1024, 480},
		{2048, 65536, 2048},
		{2048, 0, 2048},
		{2048, 4160, 2048},
		{2048, 4159, 2047},
		{2048, 10, 1},
		{0, 1024, 480},
	} {
		if got := connCap(tc.conf, tc.nofile); got != tc.want {
			t.Errorf("connCap(%d, %d) = %d, want %d", tc.conf, tc.nofile, got, tc.want)
		}
	}
	if n := openFileLimit(); n > 0 {
		t.Logf("this process: RLIMIT_NOFILE %d, default cap %d", n, connCap(2048, n))
	}
}

// TestConnectionLimitsConfigValidated: the connection keys are validated
// by name.
func TestConnectionLimitsConfigValidated(t *testing.T) {
	for _, tc := range []struct {
		mut  func(*config.Gateway)
		want string
	}{
		{func(c *config.Gateway) { c.Limits.MaxConnections = -1 }, "limits.max_connections"},
		{func(c *config.Gateway) { c.Limits.MaxConnectionsPerAddress = -2 }, "limits.max_connections_per_address"},
		{func(c *config.Gateway) { c.Limits.MaxConnections, c.Limits.MaxConnectionsPerAddress = 10, 20 }, "limits.max_connections_per_address"},
		{func(c *config.Gateway) { c.Limits.IdleTimeout = config.Duration{Duration: -time.Second} }, "limits.idle_timeout"},
		{func(c *config.Gateway) { c.Limits.FormBytesInFlight = -1 }, "limits.form_bytes_in_flight"},
		{func(c *config.Gateway) { c.Limits.FormBytesInFlight = 1000 }, "limits.form_bytes_in_flight"},
	} {
		cfg := baseConfig("127.0.0.1:1", &testutil.IdP{Issuer: "https://idp.example"}, "http://127.0.0.1:2")
		cfg.ApplyDefaults()
		tc.mut(cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an error naming %s, got %v", tc.want, err)
		}
	}
	cfg := baseConfig("127.0.0.1:1", &testutil.IdP{Issuer: "https://idp.example"}, "http://127.0.0.1:2")
	cfg.ApplyDefaults()
	l := cfg.Limits
	if l.MaxConnections != 2048 || l.MaxConnectionsPerAddress != 128 || l.IdleTimeout.Duration != time.Minute || l.FormBytesInFlight != 8<<20 {
		t.Fatalf("defaults: %+v", l)
	}
	cfg.Limits.MaxConnectionsPerAddress = -1
	if err := cfg.Validate(); err != nil {
		t.Fatalf("-1 turns the per-address cap off: %v", err)
	}
}

// pipeConn is a connection whose peer is the given address.
func pipeConn(t *testing.T, peer string) net.Conn {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return addrConn{a, &net.TCPAddr{IP: net.ParseIP(peer), Port: 1}}
}

type addrConn struct {
	net.Conn
	peer net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.peer }

var _ = httptest.NewRecorder
