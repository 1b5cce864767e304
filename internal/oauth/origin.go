package oauth

import (
	"net"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/internal/origin"
)

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
	return origin.Pin(&http.Client{
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
