package oauth

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// addrClass sorts an address into the categories the SSRF rules care about.
type addrClass int

const (
	classPublic addrClass = iota
	classLoopback
	classPrivate
	classLinkLocal
	classForbidden // unspecified, multicast, broadcast
)

func (c addrClass) String() string {
	return [...]string{"public", "loopback", "private", "link-local", "unroutable"}[c]
}

func classify(a netip.Addr) addrClass {
	a = a.Unmap()
	switch {
	case a.IsLoopback():
		return classLoopback
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return classLinkLocal
	case a.IsPrivate(), isCGNAT(a):
		return classPrivate
	case a.IsUnspecified(), a.IsMulticast(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return classForbidden
	}
	return classPublic
}

func isCGNAT(a netip.Addr) bool {
	return a.Is4() && netip.MustParsePrefix("100.64.0.0/10").Contains(a)
}

// Guard applies the MCP security guidance to every URL the engine fetches or
// opens (C23/C24): https only (http for loopback hosts, or everywhere with
// AllowHTTP), and no connection to loopback, private or link-local
// addresses unless the MCP server itself lives in that class or the user
// allowed it. The check runs on the resolved address at dial time, so DNS
// answers that change between check and use are caught too.
type Guard struct {
	// AllowHTTP permits plain http to non-loopback hosts (--allow-http).
	AllowHTTP bool
	// AllowPrivate permits every address class (--allow-private-urls).
	AllowPrivate bool
	allowed      map[addrClass]bool
}

// NewGuard builds a guard for the MCP server at serverURL: the address
// class of the server's own host is allowed.
func NewGuard(serverURL string, allowHTTP, allowPrivate bool) *Guard {
	g := &Guard{AllowHTTP: allowHTTP, AllowPrivate: allowPrivate, allowed: map[addrClass]bool{classPublic: true}}
	if u, err := url.Parse(serverURL); err == nil {
		for _, c := range hostClasses(u.Hostname()) {
			if c != classForbidden {
				g.allowed[c] = true
			}
		}
	}
	return g
}

// hostClasses resolves host (literal or name) to its address classes.
func hostClasses(host string) []addrClass {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return []addrClass{classLoopback}
	}
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []addrClass{classify(a)}
	}
	addrs, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip", host)
	if err != nil {
		return nil
	}
	var out []addrClass
	for _, a := range addrs {
		out = append(out, classify(a))
	}
	return out
}

// IsLoopbackHost reports whether host names the local machine.
func IsLoopbackHost(host string) bool {
	cs := hostClasses(host)
	if len(cs) == 0 {
		return false
	}
	for _, c := range cs {
		if c != classLoopback {
			return false
		}
	}
	return true
}

// CheckURL validates a URL learned from a server (metadata, endpoints,
// authorization URL) before it is fetched or opened. what names the URL in
// the error message.
func (g *Guard) CheckURL(raw, what string) error {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return fmt.Errorf("%s %q is not an absolute URL", what, raw)
	}
	if u.User != nil {
		return fmt.Errorf("%s %q carries credentials in the URL; refusing it", what, redactURL(u))
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
	case "http":
		if !g.AllowHTTP && !IsLoopbackHost(u.Hostname()) {
			return fmt.Errorf("%s %s uses plain http to a non-loopback host; use https, or pass --allow-http if you accept that risk", what, redactURL(u))
		}
	default:
		return fmt.Errorf("%s %q has scheme %q; only https (and http for loopback) is allowed", what, redactURL(u), u.Scheme)
	}
	if g.AllowPrivate {
		return nil
	}
	for _, c := range hostClasses(u.Hostname()) {
		if !g.allowed[c] {
			return fmt.Errorf("%s %s points to a %s address while the MCP server is not there (SSRF protection); pass --allow-private-urls to allow it", what, redactURL(u), c)
		}
	}
	return nil
}

// Control is a net.Dialer Control function enforcing the address rules on
// the address actually dialled.
func (g *Guard) Control(network, address string, _ syscall.RawConn) error {
	if g.AllowPrivate {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("refusing to dial %q: %v", address, err)
	}
	c := classify(ap.Addr())
	if !g.allowed[c] {
		return fmt.Errorf("refusing to connect to %s: a %s address (SSRF protection; pass --allow-private-urls to allow it)", address, c)
	}
	return nil
}

// redactURL drops userinfo, query and fragment for messages.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	c.Fragment = ""
	return c.String()
}
