package gateway

import (
	"context"
	"errors"
	"net/http"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/resource"
	"github.com/mcpgate/mcpgate/internal/state"
)

// A credentialSource is one way the gateway obtains the credential a
// caller reaches an upstream with (an upstream_auth mode beyond the static
// header: a connected account, a token exchange, a signed identity
// assertion). The caller's own access token never goes upstream: token
// passthrough is forbidden (MCP security best practices, "Token
// Passthrough"); a source obtains a credential of its own for the caller.
type credentialSource interface {
	// addTo adds the caller's credential for the upstream to h, the
	// headers sent upstream with this request (and with any upstream
	// session it creates). An error refuses the request before anything
	// is forwarded; refuseCredential turns it into the client's answer.
	addTo(ctx context.Context, c credCaller, h http.Header) error
}

// credCaller is what a credential source knows of the caller.
type credCaller struct {
	// p is the authenticated caller.
	p *resource.Principal
	// r is the client's request. Its Authorization header is the caller's
	// validated access token: a source may present it to an identity
	// provider (RFC 8693 subject_token), never send it upstream. It is
	// absent on a request another replica forwarded (the hop carries the
	// principal, not the token).
	r *http.Request
	// era is the era of the exchange's error codes (exchange.era); a
	// source whose answer differs by revision reads the
	// MCP-Protocol-Version header of r.
	era mcp.Era
	// legacy marks a 2024-11-05 HTTP+SSE stream: its upstream connection
	// keeps the headers of this request for as long as the stream lives.
	legacy bool
}

// buildCredentials returns the credential sources of upstream u, in the
// order they add their headers. The static upstream_auth header is not
// one of them: it is the same for every caller (mount.upstreamHeader).
func (m *mount) buildCredentials(u config.Upstream) ([]credentialSource, error) {
	var srcs []credentialSource
	for _, build := range []func(config.Upstream) (credentialSource, error){m.newExchangeSource, m.newIdentityAssertions, m.newFederatedToken, m.newOAuthSource} {
		s, err := build(u)
		if err != nil {
			return nil, err
		}
		if s != nil {
			srcs = append(srcs, s)
		}
	}
	return srcs, nil
}

// credentials is the pipeline step that computes the headers sent upstream
// for this caller: identity headers, the static credential, then every
// credential source. A source's error refuses the request.
func (x *exchange) credentials() bool {
	h := x.m.identity(x.p)
	c := credCaller{p: x.p, r: x.r, era: x.era(), legacy: x.method == "legacy_stream"}
	for _, s := range x.m.credSources {
		if err := s.addTo(x.r.Context(), c, h); err != nil {
			x.refuseCredential(err)
			return false
		}
	}
	x.upHeader = h
	return x.childEnv()
}

// refuseCredential answers a request whose upstream credential could not
// be obtained. The message is the source's error, which must say what
// failed and what to do, and never carries a secret.
func (x *exchange) refuseCredential(err error) {
	if x.refuseExchange(err) { // upcred_exchange.go
		return
	}
	if cr, ok := asConnectRequired(err); ok {
		x.connectAnswer(cr)
		return
	}
	if errors.Is(err, errConnectBusy) || errors.Is(err, errRefreshBusy) {
		x.w.Header().Set("Retry-After", "30")
		x.refuse(decBusy, &failure{status: http.StatusServiceUnavailable, code: mcp.CodeUnavailable, msg: err.Error()})
		return
	}
	if errors.Is(err, state.ErrUnavailable) {
		x.stateUnavailable("upstream_refresh_lock_unavailable")
		return
	}
	x.m.g.log.Warn("upstream credential unavailable", "upstream", x.m.name, "request_id", x.id, "err", err)
	x.refuse(decError, &failure{status: http.StatusBadGateway, code: mcp.CodeUpstream,
		msg: "no upstream credential for this caller: " + err.Error()})
}
