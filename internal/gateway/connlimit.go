package gateway

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Connections are the one cost a caller imposes before sending a single
// byte of a request: a file descriptor, a goroutine, and buffers for the
// headers it may send slowly. A connLimiter counts them at accept time,
// over every listener the gateway serves:
//
//   - one peer address (IPv6: its /64) holds at most perAddr connections;
//     one more is closed as soon as it is accepted;
//   - all peers together hold at most max connections. At the cap, a new
//     connection closes the one that has been idle longest — a keep-alive
//     connection between requests, one still sending its request headers,
//     or one waiting for an (unauthenticated) authorization-server form
//     body; when every connection is busy with an admitted request, the
//     new connection is closed instead.
//
// Evicting the idle rather than refusing the new keeps the gateway
// reachable while an attacker holds many silent connections: they are what
// gets closed. Header bytes in flight are then bounded too: at most
// max × (limits.max_header_bytes + the 4 KiB read buffer).
type connLimiter struct {
	max     int // 0: no total cap
	perAddr int // <= 0: no per-address cap
	exempt  func(netip.Addr) bool

	mu     sync.Mutex // guards total, byAddr, conns and each conn's idle state
	total  int
	byAddr map[string]int
	conns  map[*limitedConn]struct{}

	refusedAddr atomic.Int64 // closed at accept: per-address cap
	refusedFull atomic.Int64 // closed at accept: total cap, nothing idle
	evicted     atomic.Int64 // idle connections closed for a new one
}

func newConnLimiter(total, perAddr int, exempt func(netip.Addr) bool) *connLimiter {
	return &connLimiter{max: total, perAddr: perAddr, exempt: exempt,
		byAddr: map[string]int{}, conns: map[*limitedConn]struct{}{}}
}

// limitedConn is an admitted connection; Close gives its place back.
type limitedConn struct {
	net.Conn
	l    *connLimiter
	key  string // per-address key; "" when exempt
	born time.Time

	// guarded by l.mu
	idle     bool      // evictable: no admitted request in progress
	since    time.Time // when it last became idle
	released bool
}

// Close closes the connection and releases its place (once).
func (c *limitedConn) Close() error {
	c.l.release(c)
	return c.Conn.Close()
}

// CloseWrite half-closes a TCP connection: net/http uses it to let a
// refusal reach a client that is still sending (no reset).
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// addrKey is the key a client address is counted under: the address, or
// for IPv6 its /64, the block one host usually holds whole (the same
// grouping as the authorization server's registration and sign-in
// limits).
func addrKey(host string) string {
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

func peerAddr(c net.Conn) (netip.Addr, bool) {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		a, ok := netip.AddrFromSlice(ta.IP)
		return a.Unmap(), ok
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// admit counts c in, or returns nil when it must be closed. An idle
// connection evicted to make room is closed here.
func (l *connLimiter) admit(c net.Conn) *limitedConn {
	lc := &limitedConn{Conn: c, l: l, born: time.Now(), idle: true}
	lc.since = lc.born
	if a, ok := peerAddr(c); ok && (l.exempt == nil || !l.exempt(a)) {
		lc.key = addrKey(a.String())
	}
	var victim *limitedConn
	l.mu.Lock()
	if l.perAddr > 0 && lc.key != "" && l.byAddr[lc.key] >= l.perAddr {
		l.mu.Unlock()
		l.refusedAddr.Add(1)
		return nil
	}
	if l.max > 0 && l.total >= l.max {
		for o := range l.conns {
			if o.idle && (victim == nil || o.since.Before(victim.since)) {
				victim = o
			}
		}
		if victim == nil {
			l.mu.Unlock()
			l.refusedFull.Add(1)
			return nil
		}
		l.releaseLocked(victim)
	}
	l.total++
	if lc.key != "" {
		l.byAddr[lc.key]++
	}
	l.conns[lc] = struct{}{}
	l.mu.Unlock()
	if victim != nil {
		l.evicted.Add(1)
		_ = victim.Conn.Close()
	}
	return lc
}

func (l *connLimiter) release(c *limitedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.releaseLocked(c)
}

func (l *connLimiter) releaseLocked(c *limitedConn) {
	if c.released {
		return
	}
	c.released = true
	l.total--
	if c.key != "" {
		if l.byAddr[c.key]--; l.byAddr[c.key] <= 0 {
			delete(l.byAddr, c.key)
		}
	}
	delete(l.conns, c)
}

// setIdle marks c evictable (idle) or busy.
func (l *connLimiter) setIdle(c *limitedConn, idle bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if idle && !c.idle {
		c.since = time.Now()
	}
	c.idle = idle
}

// Open reports the connections currently counted (tests, metrics).
func (l *connLimiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// connState is the http.Server hook that tracks which connections are
// idle: new (headers not yet read) and keep-alive idle ones are; one with
// a request in progress is not.
func (l *connLimiter) connState(c net.Conn, s http.ConnState) {
	lc := unwrapConn(c)
	if lc == nil {
		return
	}
	switch s {
	case http.StateNew, http.StateIdle:
		l.setIdle(lc, true)
	case http.StateActive, http.StateHijacked:
		l.setIdle(lc, false)
	case http.StateClosed:
		l.release(lc)
	}
}

func unwrapConn(c net.Conn) *limitedConn {
	for c != nil {
		if lc, ok := c.(*limitedConn); ok {
			return lc
		}
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = nc.NetConn()
	}
	return nil
}

type connCtxKey struct{}

// connContext stores the admitted connection in each request's context,
// so a handler can mark it idle while it waits for an unauthenticated body.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if lc := unwrapConn(c); lc != nil {
		return context.WithValue(ctx, connCtxKey{}, lc)
	}
	return ctx
}

// waitingUnauthenticated marks r's connection evictable while an
// unauthenticated caller is still to send its body; the returned func
// ends that. An HTTP/2 connection (several requests) is left alone.
func (l *connLimiter) waitingUnauthenticated(r *http.Request) func() {
	lc, _ := r.Context().Value(connCtxKey{}).(*limitedConn)
	if l == nil || lc == nil || r.ProtoMajor != 1 {
		return func() {}
	}
	l.setIdle(lc, true)
	return func() { l.setIdle(lc, false) }
}

// limitListener applies a connLimiter to a listener's accepted
// connections.
type limitListener struct {
	net.Listener
	l *connLimiter
}

func (ln *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if lc := ln.l.admit(c); lc != nil {
			return lc, nil
		}
		_ = c.Close()
	}
}

// headerTimeout bounds the time to send request headers (slow headers).
const headerTimeout = 10 * time.Second

// fdReserve is the descriptors kept aside before the connection cap is
// derived from RLIMIT_NOFILE (listeners, logs, stores, the Go runtime).
const fdReserve = 64

// connCap is the total connection cap: the configured one, lowered so that
// client connections use at most half of the descriptors RLIMIT_NOFILE
// leaves after fdReserve — the other half is for upstream connections
// (one per concurrent forwarded request, at worst) and stdio children.
func connCap(configured int, nofile uint64) int {
	if nofile == 0 {
		return configured
	}
	avail := 1
	if nofile > fdReserve+2 {
		avail = int(min((nofile-fdReserve)/2, 1<<30))
	}
	if configured <= 0 || configured > avail {
		return avail
	}
	return configured
}

func (g *Gateway) newConnLimiter() *connLimiter {
	l := g.cfg.Limits
	nofile := openFileLimit()
	total := connCap(l.MaxConnections, nofile)
	per := l.MaxConnectionsPerAddress
	if per > total {
		per = total
	}
	if total < l.MaxConnections {
		g.log.Warn("limits.max_connections lowered to fit the open-file limit",
			"configured", l.MaxConnections, "max_connections", total, "rlimit_nofile", nofile,
			"reason", "half the descriptors left after 64 stay free for upstream connections and stdio children")
	}
	g.log.Info("connection caps", "max_connections", total, "max_connections_per_address", per, "rlimit_nofile", nofile)
	return newConnLimiter(total, per, func(a netip.Addr) bool { return g.trusted(a.String()) })
}

func (g *Gateway) idleTimeout() time.Duration {
	if d := g.cfg.Limits.IdleTimeout.Duration; d > 0 {
		return d
	}
	return 60 * time.Second
}
