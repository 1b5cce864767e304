package oauth

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Origin is the RFC 6454 origin of u: lower-case scheme and host and an
// explicit port ("https://example.com:443"), so that a default port written
// out and left implicit compare equal. It is "" for a URL without scheme or
// host.
func Origin(u *url.URL) string {
	if u == nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "https":
			port = "443"
		case "http":
			port = "80"
		}
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// SameOrigin reports whether a and b have the same non-empty origin.
func SameOrigin(a, b *url.URL) bool {
	oa := Origin(a)
	return oa != "" && oa == Origin(b)
}

// OriginOf is Origin of a URL string ("" when it does not parse).
func OriginOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return Origin(u)
}

// maxMCPRedirects bounds a redirect chain of one MCP request.
const maxMCPRedirects = 5

// ErrOtherOrigin is wrapped by the error of an MCP request that would
// carry a credential to another origin than the one it is for (a
// redirect, a request built for another URL).
var ErrOtherOrigin = errors.New("credentials stay on their origin")

// checkSameOriginRedirect is the redirect policy of every MCP transport
// request (Streamable HTTP POST, GET and DELETE, the HTTP+SSE stream and
// its endpoint, the broker's upstream requests): a request carries the
// credential (Authorization, DPoP proof, --header values) of the origin it
// was first sent to, and net/http copies those headers onto every hop
// (Authorization is dropped only when the host name changes, not the port;
// DPoP and custom headers never), so a redirect may only stay on that
// exact origin (scheme, host, port). Anything else ends the request with
// an error naming the target's origin.
func checkSameOriginRedirect(req *http.Request, via []*http.Request) error {
	if len(via) == 0 {
		return nil
	}
	if len(via) >= maxMCPRedirects {
		return fmt.Errorf("too many redirects (more than %d)", maxMCPRedirects)
	}
	from, to := via[0].URL, req.URL
	if req.URL.User != nil {
		return fmt.Errorf("%w: the server redirected to a URL with credentials in it (%s)", ErrOtherOrigin, Origin(to))
	}
	if !SameOrigin(from, to) {
		return fmt.Errorf("%w: the server at %s redirected to %s; refusing to follow (use that URL directly if you trust it)",
			ErrOtherOrigin, Origin(from), Origin(to))
	}
	return nil
}

// PinOrigin returns a copy of c (which it leaves alone) that follows only
// same-origin redirects, then applies c's own redirect policy. The MCP
// transports and the broker call it on whatever client they are given,
// so no caller can forget the rule.
func PinOrigin(c *http.Client) *http.Client {
	if c == nil {
		c = http.DefaultClient
	}
	cp := *c
	prev := c.CheckRedirect
	cp.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := checkSameOriginRedirect(req, via); err != nil {
			return err
		}
		if prev != nil {
			return prev(req, via)
		}
		return nil
	}
	return &cp
}

// NewMCPHTTPClient is the HTTP client of every MCP transport request of the
// client commands and the broker: connections go through the guard's
// dialer (the same SSRF rules as the OAuth engine, on the address actually
// dialled), redirects stay on the request's origin and pass the guard's
// URL check. base (TLS settings) is cloned; nil clones
// http.DefaultTransport. Unlike the engine's client it has no overall
// timeout: event streams stay open.
func NewMCPHTTPClient(g *Guard, base *http.Transport) *http.Client {
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	} else {
		base = base.Clone()
	}
	base.DialContext = g.dialer().DialContext
	return PinOrigin(&http.Client{
		Transport: base,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			return g.CheckURL(req.URL.String(), "redirect target")
		},
	})
}

// dialer is a net.Dialer enforcing the guard on the dialled address.
func (g *Guard) dialer() *net.Dialer {
	return &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: g.Control}
}
