package gateway

import (
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/mcp"
)

// edgePolicy holds the checks that run before authentication: Origin (all
// revisions require it, DNS rebinding) and Host (when bound to loopback or
// when hosts are configured).
type edgePolicy struct {
	publicOrigin string
	origins      map[string]bool // allowed browser origins
	hosts        map[string]bool // allowed Host values (lower case); nil = no Host check
	loopback     bool            // bound to a loopback address
	listenPort   string
}

func newEdgePolicy(cfg *config.Gateway) (*edgePolicy, error) {
	pub, err := url.Parse(cfg.PublicURL)
	if err != nil {
		return nil, err
	}
	e := &edgePolicy{
		publicOrigin: strings.ToLower(pub.Scheme + "://" + pub.Host),
		origins:      map[string]bool{},
		loopback:     config.IsLoopbackListen(cfg.Listen),
	}
	_, e.listenPort, _ = net.SplitHostPort(cfg.Listen)
	e.origins[e.publicOrigin] = true
	for _, o := range cfg.AllowedOrigins {
		e.origins[strings.ToLower(strings.TrimSuffix(o, "/"))] = true
	}
	if e.loopback || len(cfg.AllowedHosts) > 0 {
		e.hosts = map[string]bool{strings.ToLower(pub.Host): true}
		for _, h := range cfg.AllowedHosts {
			e.hosts[strings.ToLower(h)] = true
		}
		if e.loopback {
			for _, h := range []string{"127.0.0.1", "localhost", "[::1]"} {
				e.hosts[h+":"+e.listenPort] = true
			}
		}
	}
	return e, nil
}

// originAllowed reports whether a request's Origin (if any) may call us.
// Requests without Origin come from non-browser clients and are allowed.
func (e *edgePolicy) originAllowed(origin string) bool {
	if origin == "" {
		return true
	}
	o := strings.ToLower(origin)
	if e.origins[o] {
		return true
	}
	// A page served from this very loopback listener (any loopback name)
	// is same-site with the gateway.
	if e.loopback {
		if u, err := url.Parse(o); err == nil && u.Port() == e.listenPort && isLoopbackHost(u.Hostname()) {
			return true
		}
	}
	return false
}

func (e *edgePolicy) hostAllowed(host string) bool {
	if e.hosts == nil {
		return true
	}
	return e.hosts[strings.ToLower(host)]
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

// check applies the edge policy; it writes the refusal and returns false
// when the request must stop.
func (e *edgePolicy) check(w http.ResponseWriter, r *http.Request) bool {
	if !e.hostAllowed(r.Host) {
		mcp.WriteError(w, http.StatusForbidden, nil, mcp.CodeInvalidRequest,
			"Host header "+quoteSafe(r.Host)+" is not allowed: use the gateway's public host or add it to allowed_hosts", nil)

		return false
	}
	if !e.originAllowed(r.Header.Get("Origin")) {
		mcp.WriteError(w, http.StatusForbidden, nil, mcp.CodeInvalidRequest,
			"Origin "+quoteSafe(r.Header.Get("Origin"))+" is not allowed: add it to allowed_origins", nil)

		return false
	}
	return true
}

// cors sets the CORS response headers for an allowed browser origin. The
// gateway authenticates with the Authorization header only, never cookies,
// so credentials are not allowed.
func (e *edgePolicy) cors(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", "WWW-Authenticate, Mcp-Session-Id, Mcp-Protocol-Version, DPoP-Nonce")
}

// preflight answers a CORS preflight request.
func (e *edgePolicy) preflight(w http.ResponseWriter, r *http.Request) {
	e.cors(w, r)
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, DPoP, Content-Type, Accept, Mcp-Session-Id, Mcp-Protocol-Version, Mcp-Method, Mcp-Name, Last-Event-ID, "+paramHeaderAllowance(r))
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// paramHeaderAllowance echoes the Mcp-Param-* headers a preflight asks for
// (their names are tool-defined, so they cannot be listed in advance).
func paramHeaderAllowance(r *http.Request) string {
	var out []string
	for _, f := range strings.Split(r.Header.Get("Access-Control-Request-Headers"), ",") {
		f = strings.TrimSpace(f)
		if len(f) > len(mcp.HeaderParamPrefix) && strings.EqualFold(f[:len(mcp.HeaderParamPrefix)], mcp.HeaderParamPrefix) && validToken(f) {
			out = append(out, f)
		}
	}
	return strings.Join(out, ", ")
}

func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return s != ""
}

// quoteSafe renders a client-supplied value for an error message: bounded
// and without control characters.
func quoteSafe(s string) string {
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	b := make([]rune, 0, len(s)+2)
	b = append(b, '"')
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			r = '?'
		}
		b = append(b, r)
	}
	return string(append(b, '"'))
}
