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
	a = unwrap(a)
	switch {
	case a.IsLoopback():
		return classLoopback
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return classLinkLocal
	case a.IsPrivate(), isCGNAT(a):
		return classPrivate
	case a.IsUnspecified(), a.IsMulticast(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}),
		a.Is4() && a.As4()[0] == 0, // 0.0.0.0/8 "this network" (Linux dials 0.x as the local host)
		a.Is6() && opaqueTranslation(a):
		return classForbidden
	}
	return classPublic
}

func isCGNAT(a netip.Addr) bool {
	return a.Is4() && netip.MustParsePrefix("100.64.0.0/10").Contains(a)
}

// Prefixes of IPv6 addresses that carry an IPv4 address a translator or
// tunnel delivers the packet to (unwrap), and of those whose
// embedding depends on the network (opaqueTranslation, refused).
var (
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96")    // RFC 6052: IPv4 in the last 32 bits
	nat64Local     = netip.MustParsePrefix("64:ff9b:1::/48")  // RFC 8215: operator-chosen embedding
	sixToFour      = netip.MustParsePrefix("2002::/16")       // RFC 3056: IPv4 in bits 16-47
	teredo         = netip.MustParsePrefix("2001::/32")       // RFC 4380: obfuscated client IPv4
	v4Compatible   = netip.MustParsePrefix("::/96")           // RFC 4291 (deprecated) ::a.b.c.d
	v4Translated   = netip.MustParsePrefix("::ffff:0:0:0/96") // RFC 2765 SIIT ::ffff:0:a.b.c.d
)

// unwrap returns the IPv4 address an IPv6 address delivers to (IPv4-mapped,
// IPv4-compatible, SIIT-translated, NAT64 well-known prefix, 6to4), so that
// such an address is classified like the IPv4 address it reaches: an
// attacker cannot reach 169.254.169.254 or 127.0.0.1 through a NAT64
// gateway or a 6to4 relay as "public IPv6". Other addresses are returned
// unchanged (:: and ::1 stay IPv6).
func unwrap(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if !a.Is6() {
		return a
	}
	z := a.WithZone("") // prefixes never contain zoned addresses
	b := a.As16()
	v4 := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{b[i], b[i+1], b[i+2], b[i+3]}) }
	switch {
	case a.IsUnspecified() || a.IsLoopback():
		return a
	case v4Compatible.Contains(z), v4Translated.Contains(z), nat64WellKnown.Contains(z):
		return v4(12)
	case sixToFour.Contains(z):
		return v4(2)
	}
	return a
}

// opaqueTranslation reports IPv6 addresses whose IPv4 destination cannot
// be read from the address alone (local-use NAT64, whose embedding the
// network operator chooses; Teredo, whose relay delivers to an obfuscated
// client address behind a NAT): they are refused unless every address is
// allowed (--allow-private-urls).
func opaqueTranslation(a netip.Addr) bool {
	a = a.WithZone("")
	return nat64Local.Contains(a) || teredo.Contains(a)
}

// Guard applies the MCP security guidance to every URL the engine fetches or
// opens (C23/C24): https only (http for loopback hosts, or everywhere with
// AllowHTTP), and no connection to loopback, private or link-local
// addresses unless the server URL the user gave names that class itself
// (see NewGuard) or the user allowed it. The check runs on the resolved address at dial time, so DNS
// answers that change between check and use are caught too.
type Guard struct {
	// AllowHTTP permits plain http to non-loopback hosts (--allow-http).
	AllowHTTP bool
	// AllowPrivate permits every address class (--allow-private-urls).
	AllowPrivate bool
	allowed      map[addrClass]bool
	serverHost   string // host name of the user's server URL (messages)
}

// NewGuard builds a guard for the MCP server at serverURL. Besides public
// addresses it allows one more class, and only when the URL the user gave
// names it itself: a loopback IP literal or localhost allows loopback, a
// private or link-local IP literal allows that class. A host name never
// unlocks a class, whatever it resolves to: DNS belongs to whoever runs
// the name, and one extra A record (127.0.0.1 next to the public address)
// must not open the user's loopback or private network to every URL the
// server names. Each dial is then checked on the address actually dialled
// (Control), so a resolver cannot widen what this decided.
func NewGuard(serverURL string, allowHTTP, allowPrivate bool) *Guard {
	g := &Guard{AllowHTTP: allowHTTP, AllowPrivate: allowPrivate, allowed: map[addrClass]bool{classPublic: true}}
	if u, err := url.Parse(serverURL); err == nil {
		g.serverHost = strings.ToLower(u.Hostname())
		if c, ok := literalClass(u.Hostname()); ok && c != classForbidden {
			g.allowed[c] = true
		}
	}
	return g
}

// literalClass is the address class a host names by its spelling alone: an
// IP literal's class, loopback for localhost and *.localhost (RFC 6761
// reserves them for the local machine); ok is false for any other name.
func literalClass(host string) (addrClass, bool) {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return classLoopback, true
	}
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return classify(a), true
	}
	return 0, false
}

// hostClasses resolves host (literal or name) to its address classes.
func hostClasses(host string) []addrClass {
	if c, ok := literalClass(host); ok {
		return []addrClass{c}
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
		if c, ok := literalClass(u.Hostname()); !g.AllowHTTP && (!ok || c != classLoopback) {
			return fmt.Errorf("%s %s uses plain http to a non-loopback host; use https, or pass --allow-http if you accept that risk", what, redactURL(u))
		}
	default:
		return fmt.Errorf("%s %q has scheme %q; only https (and http for loopback) is allowed", what, redactURL(u), u.Scheme)
	}
	if g.AllowPrivate {
		return nil
	}
	for _, c := range hostClasses(u.Hostname()) {
		if !g.allowed[c] && strings.EqualFold(u.Hostname(), g.serverHost) {
			return fmt.Errorf("%s %s: the name %s resolves to a %s address; mcpgate allows non-public addresses only when the server URL names them itself (an IP literal or localhost): use that, or pass --allow-private-urls (SSRF protection)", what, redactURL(u), u.Hostname(), c)
		}
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
