package gateway

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/resource"
	"github.com/mcpgate/mcpgate/internal/upstream/httpproxy"
	"github.com/mcpgate/mcpgate/internal/upstream/session"
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
	if bound, done, ok := x.m.sessions.lookup(sid, x.ownerKey()); ok {
		x.sid, x.sessionDone = bound, done
		return true
	}
	x.refuse(decSession, x.denied(&failure{status: http.StatusNotFound, code: mcp.CodeInvalidRequest,
		msg: "session not found: it expired, was deleted, or belongs to someone else; send initialize to start a new session"},
		x.method, "", "session id not owned by caller"))
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
	own := x.ownerKey()
	res, r := x.m.sessions.reserve(own)
	if r != nil {
		x.w.Header().Set("Retry-After", r.retryAfterSeconds())
		x.refuse(decSessionLimit, x.denied(&failure{status: r.status(), code: mcp.AppCode(r.status()), msg: r.message()}, x.method, "", "session limit"))
		return false, nil
	}
	done := false
	x.bindOnReply = func(sid string) bool {
		done = true
		if !x.m.sessions.commit(res, own, sid, x.m.who(x.p)) {
			return false
		}
		// The new session is in use until this exchange ends.
		x.sessionDone = res.done
		return true
	}
	return true, func() {
		if !done {
			x.m.sessions.release(res)
		}
	}
}

// who is what the binding keeps of the session's creator: enough for the
// identity headers of the DELETE that ends an evicted session upstream.
func (m *mount) who(p *resource.Principal) *resource.Principal {
	if len(m.stripHeaders) == 0 {
		return nil
	}
	return &resource.Principal{Subject: p.Subject, ClientID: p.ClientID, Issuer: p.Issuer, Scopes: p.Scopes}
}

// endSession ends the upstream session of a binding the gateway dropped
// (evicted to make room, or expired): a session server closes it (the
// child or legacy connection ends and frees its slot) before returning; a
// Streamable HTTP upstream gets a DELETE with the gateway's credential and
// the creator's identity headers, in the background, bounded in time and
// in number (best effort: beyond endSessionsInFlight it is skipped and the
// upstream's own idle timeout ends the session).
func (m *mount) endSession(b *binding) {
	switch h := m.handler.(type) {
	case *session.Server:
		h.Close(b.id)
	case *httpproxy.Proxy:
		select {
		case m.ending <- struct{}{}:
		default:
			m.g.log.Debug("too many upstream DELETEs in flight; an evicted session is left to the upstream's idle timeout", "upstream", m.name)
			return
		}
		var hdr http.Header
		if b.who != nil {
			hdr = m.identity(b.who)
		}
		go func() {
			defer func() { <-m.ending }()
			ctx, cancel := context.WithTimeout(context.Background(), endSessionTimeout)
			defer cancel()
			if err := h.EndSession(ctx, b.id, hdr); err != nil {
				m.g.log.Debug("DELETE of an evicted session failed", "upstream", m.name, "err", err)
			}
		}()
	}
}

const (
	endSessionTimeout   = 5 * time.Second
	endSessionsInFlight = 16
)

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
		x.dec = decSession
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
