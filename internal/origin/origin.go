// Package origin holds the RFC 6454 origin rules of the client side: a
// credential goes only to the origin (scheme, host, port) it was issued
// for, and redirects of MCP requests stay on that origin.
package origin

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Of is the RFC 6454 origin of u: lower-case scheme and host and an
// explicit port ("https://example.com:443"), so that a default port written
// out and left implicit compare equal. It is "" for a URL without scheme or
// host.
func Of(u *url.URL) string {
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

// Same reports whether a and b have the same non-empty origin.
func Same(a, b *url.URL) bool {
	oa := Of(a)
	return oa != "" && oa == Of(b)
}

// OfString is Of a URL string ("" when it does not parse).
func OfString(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return Of(u)
}

// maxMCPRedirects bounds a redirect chain of one MCP request.
const maxMCPRedirects = 5

// ErrOther is wrapped by the error of an MCP request that would
// carry a credential to another origin than the one it is for (a
// redirect, a request built for another URL).
var ErrOther = errors.New("credentials stay on their origin")

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
		return fmt.Errorf("%w: the server redirected to a URL with credentials in it (%s)", ErrOther, Of(to))
	}
	if !Same(from, to) {
		return fmt.Errorf("%w: the server at %s redirected to %s; refusing to follow (use that URL directly if you trust it)",
			ErrOther, Of(from), Of(to))
	}
	return nil
}

// Pin returns a copy of c (which it leaves alone) that follows only
// same-origin redirects, then applies c's own redirect policy. The MCP
// transports and the broker call it on whatever client they are given,
// so no caller can forget the rule.
func Pin(c *http.Client) *http.Client {
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
