package gateway

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// Session ids on the way through the gateway, one mechanism for every
// protocol revision and upstream kind:
//
//   - a request that carries Mcp-Session-Id is served only when the binding
//     table holds that id for the caller (checkSession), whatever its era;
//   - the client's Mcp-Session-Id header is never copied upstream: the
//     upstream request carries the id the binding lookup returned, or none
//     (upstreamSession);
//   - an initialize reserves its place in the table before it goes
//     upstream (a full table is a clear 429/503, not a session without an
//     id), and the id the upstream mints is bound to the caller before the
//     client sees it; a session id in any other response that is not the
//     caller's bound one is removed (sessionReply).

// checkSession enforces that a session id belongs to the caller, in every
// era: a 2026-07-28 request has no session, so it may carry only an id the
// caller owns (and then reaches that session), never another subject's.
// Unknown and foreign ids get the same 404 so that ids cannot be probed.
func (x *exchange) checkSession(protoInfo) bool {
	sid := x.r.Header.Get(mcp.HeaderSessionID)
	if sid == "" {
		return true
	}
	if bound, ok := x.m.sessions.lookup(sid, owner(x.p)); ok {
		x.sid = bound
		return true
	}
	x.dec = "session"
	x.audit(x.method, "", "deny", "session id not owned by caller", http.StatusNotFound)
	writeRPCError(x.w, http.StatusNotFound, x.rpcID, mcp.CodeInvalidRequest,
		"session not found: it expired, was deleted, or belongs to someone else; send initialize to start a new session", nil)
	return false
}

// upstreamSession sets the session header of the upstream request from the
// binding lookup only; whatever the client sent is dropped.
func (x *exchange) upstreamSession(h http.Header) {
	for k := range h {
		if strings.EqualFold(k, mcp.HeaderSessionID) {
			delete(h, k)
		}
	}
	if x.sid != "" {
		h[mcp.HeaderSessionID] = []string{x.sid}
	}
}

// reserveSession makes room for the session an initialize will create. It
// reports false after answering the refusal; release must run when the
// exchange ends (it is a no-op once the session is bound).
func (x *exchange) reserveSession() (ok bool, release func()) {
	own := owner(x.p)
	if r := x.m.sessions.reserve(own); r != nil {
		x.dec = "session_limit"
		x.audit(x.method, "", "deny", "session limit", r.status())
		x.w.Header().Set("Retry-After", r.retryAfterSeconds())
		writeRPCError(x.w, r.status(), x.rpcID, mcp.AppCode(r.status()), r.message(), nil)
		return false, nil
	}
	done := false
	x.bindOnReply = func(sid string) bool {
		done = true
		return x.m.sessions.commit(own, sid)
	}
	return true, func() {
		if !done {
			x.m.sessions.release(own)
		}
	}
}

// sessionReply runs when the upstream's response headers are ready: it
// binds a new session to the caller, forgets a binding the upstream says is
// gone (404), and never lets an unbound session id reach the client.
func (x *exchange) sessionReply(h http.Header, status int) {
	sid := h.Get(mcp.HeaderSessionID)
	if x.bindOnReply != nil && status < 300 && sid != "" {
		if x.bindOnReply(sid) {
			return
		}
		x.m.g.log.Warn("the upstream returned a session id that is bound to another subject; refused", "upstream", x.m.name)
		h.Del(mcp.HeaderSessionID)
		x.dec = "session"
		x.w.replace(http.StatusBadGateway, mcp.ErrorResponse(x.rpcID, mcp.CodeUpstream,
			"the upstream MCP server returned a session id that is already in use; retry initialize", nil))
		return
	}
	if status == http.StatusNotFound && x.sid != "" {
		x.m.sessions.forget(x.sid)
	}
	if sid != "" && sid != x.sid {
		h.Del(mcp.HeaderSessionID)
	}
}

// replace makes the recorder answer with status and a JSON body of the
// gateway's own instead of the upstream's response, whose writes are then
// dropped. Only valid from onHeader.
func (r *recorder) replace(status int, body []byte) {
	r.override = &override{status: status, body: body}
}

type override struct {
	status int
	body   []byte
}

// writeOverride sends the replacement set by replace.
func (r *recorder) writeOverride() {
	h := r.ResponseWriter.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(r.override.body)))
	h.Set("Cache-Control", "no-store")
	r.status = r.override.status
	r.ResponseWriter.WriteHeader(r.override.status)
	_, _ = r.ResponseWriter.Write(r.override.body)
}
