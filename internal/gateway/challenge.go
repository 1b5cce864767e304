package gateway

import (
	"errors"
	"net/http"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/policy"
	"github.com/mcpgate/mcpgate/internal/resource"
)

// maxHeaderName bounds the Mcp-Name value an unauthenticated request may
// have matched against the policy's globs for its challenge; a longer one
// gets the challenge of an unknown operation.
const maxHeaderName = 1024

// scopeChallenges chooses the scopes the challenges of one upstream name
// (config challenge_scopes; 2026-07-28 authorization §Scope Selection
// Strategy, security best practices §Scope Minimization). It is built with
// the policy and swapped with it on reload.
type scopeChallenges struct {
	eng *policy.Engine
	// initial is the 401 scope set of a request whose operation is unknown:
	// the required scopes, plus the basic (recommended) or all (extended)
	// scopes_supported.
	initial []string
	// extra is added to every challenge: nothing (minimum), the basic
	// scopes (recommended), every scope in scopes_supported (extended).
	extra []string
	// published are the scopes a 401 may name from the unvalidated
	// Mcp-Method/Mcp-Name headers: scopes_supported and the required
	// scopes. A rule scope the operator does not publish is only ever
	// named to an authenticated caller, in a 403.
	published map[string]bool
}

func newScopeChallenges(u config.Upstream, eng *policy.Engine) *scopeChallenges {
	s := &scopeChallenges{eng: eng, published: map[string]bool{}}
	required := eng.Required()
	for _, sc := range append(append([]string(nil), u.ScopesSupported...), required...) {
		s.published[sc] = true
	}
	switch u.ChallengeScopes {
	case "minimum":
	case "extended":
		s.extra = policy.SortedSet(u.ScopesSupported)
	default: // "recommended"
		priv := map[string]bool{}
		for _, sc := range eng.Privileged() {
			priv[sc] = true
		}
		for _, sc := range u.ScopesSupported {
			if !priv[sc] {
				s.extra = append(s.extra, sc)
			}
		}
		s.extra = policy.SortedSet(s.extra)
	}
	s.initial = policy.SortedSet(append(required, s.extra...))
	return s
}

// unauthenticated is the scope set of a 401 (or 400) challenge to a
// request with headers h. The body is not read before authentication, so
// the operation is known only from the Mcp-Method and Mcp-Name headers of
// a 2026-07-28 request; they are checked against the body later, and here
// only add scopes the operator publishes.
func (s *scopeChallenges) unauthenticated(h http.Header) []string {
	method, name, ok := headerOperation(h)
	if !ok {
		return s.initial
	}
	out := append([]string(nil), s.initial...)
	for _, sc := range s.eng.ScopesFor(method, name) {
		if s.published[sc] {
			out = append(out, sc)
		}
	}
	return policy.SortedSet(out)
}

// stepUp is the scope set of a 403 insufficient_scope challenge for an
// operation that needs need: all of them in one challenge ("servers SHOULD
// include all scopes required for the current operation in a single
// challenge"), plus the extra scopes of the approach.
func (s *scopeChallenges) stepUp(need []string) []string {
	return policy.SortedSet(append(append([]string(nil), need...), s.extra...))
}

// headerOperation reads the operation a 2026-07-28 request declares in its
// headers: Mcp-Method, and Mcp-Name for the methods that mirror a name.
// ok is false for earlier revisions and for values the gateway would
// refuse anyway.
func headerOperation(h http.Header) (method, name string, ok bool) {
	if !mcp.HasHeaderValidation(h.Get(mcp.HeaderProtocolVersion)) {
		return "", "", false
	}
	ms := h.Values(mcp.HeaderMethod)
	if len(ms) != 1 || ms[0] == "" {
		return "", "", false
	}
	method = ms[0]
	if !nameMethods[method] {
		return method, "", true
	}
	ns := h.Values(mcp.HeaderName)
	if len(ns) != 1 || len(ns[0]) > maxHeaderName {
		return "", "", false
	}
	if name, ok = mcp.DecodeHeaderValue(ns[0]); !ok {
		return "", "", false
	}
	return method, name, true
}

// era is the era whose error codes the answer to this request uses,
// decided from the MCP-Protocol-Version header (mcp.ErrorEra): refusals
// are written before the body is read, and a 2026-07-28 request always
// carries the header (the body's _meta must equal it).
func (x *exchange) era() mcp.Era {
	return mcp.ErrorEra(x.r.Header.Get(mcp.HeaderProtocolVersion))
}

// challengeError is err with the scopes this request's challenge names.
func (x *exchange) challengeError(err error) *resource.Error {
	var re *resource.Error
	c := resource.Error{Status: http.StatusUnauthorized, Code: "invalid_token", Description: "the access token was refused"}
	if errors.As(err, &re) {
		c = *re
	}
	c.Scopes = []string{}
	if s := x.m.challenges.Load(); s != nil {
		c.Scopes = append(c.Scopes, s.unauthenticated(x.r.Header)...)
	}
	return &c
}
