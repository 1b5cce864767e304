package gateway

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/resource"
	"github.com/mcpgate/mcpgate/internal/state"
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
// With shared state an id this replica does not hold is looked up in the
// directory (sharedSession) under the same owner check.
func (x *exchange) checkSession(protoInfo) bool {
	sid := x.r.Header.Get(mcp.HeaderSessionID)
	if sid == "" {
		return true
	}
	bound, done, ok := x.m.sessions.lookup(sid, x.ownerKey())
	if ok && x.refreshSession(bound) {
		x.sid, x.sessionDone = bound, done
		return true
	}
	if ok {
		done() // the directory names another owner: the local copy went
	} else if x.m.g.shared != nil {
		if served, answered := x.sharedSession(sid); served || answered {
			return served
		}
	}
	x.refuse(decSession, x.denied(&failure{status: http.StatusNotFound, code: mcp.CodeInvalidRequest,
		msg: "session not found: it expired, was deleted, or belongs to someone else; send initialize to start a new session"},
		x.method, "", "session id not owned by caller"))
	return false
}

// sharedSession looks sid up in the shared directory: the caller's session
// at an HTTP upstream is adopted into this replica's table, one whose
// upstream connection another replica holds is routed there (x.hopTo). A
// Redis error answers 503: the id is never assumed to be the caller's.
func (x *exchange) sharedSession(sid string) (served, answered bool) {
	e, err := x.m.g.shared.dir.Get(x.r.Context(), state.KindSession, x.m.name, sid)
	if err != nil {
		x.unavailable(err)
		return false, true
	}
	if e == nil || e.Owner != x.ownerKey() {
		return false, false
	}
	local, found := x.route(e)
	switch {
	case !found:
		return false, false
	case !local:
		x.hopKind, x.hopID = state.KindSession, sid
		return true, false
	}
	done, ok, r := x.m.sessions.adopt(x.ownerKey(), sid, x.m.who(x.p))
	if r != nil {
		x.sessionRefused(r)
		return false, true
	}
	x.sid, x.sessionDone = sid, done
	return ok, false
}

// refreshSession extends the directory entry of a session in use, at most
// once per half its TTL; an entry that vanished (Redis restarted empty, or
// it expired) is written again, since this replica holds the binding. It
// reports false when the directory names another owner: the local binding
// is dropped and the caller gets the not-found answer (the directory, not
// a replica's copy, decides who owns a session). A Redis failure is
// logged: the caller's ownership was checked against the local table, and
// the next request retries.
func (x *exchange) refreshSession(sid string) bool {
	sh := x.m.g.shared
	ttl := x.m.directoryTTL()
	if sh == nil || !x.m.sessions.shareDue(sid, ttl/2) {
		return true
	}
	ctx, own := x.r.Context(), x.ownerKey()
	e, err := sh.dir.Get(ctx, state.KindSession, x.m.name, sid)
	mine := err == nil && e != nil && e.Owner == own
	switch {
	case err != nil:
	case e == nil:
		mine, err = sh.dir.Put(ctx, state.KindSession, x.m.name, sid, x.entry(own), ttl)
	case mine:
		_, err = sh.dir.Touch(ctx, state.KindSession, x.m.name, sid, ttl)
	}
	if err != nil {
		x.m.g.log.Warn("refreshing a session in the shared directory failed", "upstream", x.m.name, "err", err)
		return true
	}
	if !mine {
		x.m.g.log.Warn("the shared directory names another owner for a session bound here; the local binding was dropped", "upstream", x.m.name)
		x.m.sessions.disown(sid, "")
	}
	return mine
}

// directoryTTL is how long a directory entry outlives its last refresh:
// twice the idle timeout, so that an entry refreshed every half TTL never
// expires before the local binding it stands for.
func (m *mount) directoryTTL() time.Duration { return 2 * m.cfg.SessionIdleTimeout.Duration }

func (x *exchange) sessionRefused(r *bindRefusal) {
	x.w.Header().Set("Retry-After", r.retryAfterSeconds())
	x.refuse(decSessionLimit, x.denied(&failure{status: r.status(), code: mcp.AppCode(r.status()), msg: r.message()}, x.method, "", "session limit"))
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
		x.sessionRefused(r)
		return false, nil
	}
	done := false
	x.bindOnReply = func(sid string) error {
		done = true
		return x.bindNew(res, own, sid)
	}
	return true, func() {
		if !done {
			x.m.sessions.release(res)
		}
	}
}

// bindNew binds the id an initialize's upstream minted to the caller. The
// shared directory decides first (SET NX): the binding becomes visible in
// this replica's table only once the directory accepted it, so that an id
// the upstream handed to another subject is never usable here, not even
// for the idle timeout. Every failure gives back the reservation.
func (x *exchange) bindNew(res *reservation, own, sid string) error {
	if x.m.sessions.foreign(sid, own) {
		x.m.sessions.release(res)
		return errForeignSession
	}
	if err := x.shareSession(sid); err != nil {
		x.m.sessions.release(res)
		return err
	}
	if !x.m.sessions.commit(res, own, sid, x.m.who(x.p)) {
		x.unshareNew(sid) // bound here to another subject since the check above
		return errForeignSession
	}
	// The new session is in use until this exchange ends.
	x.sessionDone = res.done
	return nil
}

// unshareNew removes the directory entry bindNew just wrote.
func (x *exchange) unshareNew(sid string) {
	if x.m.g.shared == nil {
		return
	}
	if err := x.m.g.shared.dir.Delete(x.r.Context(), state.KindSession, x.m.name, sid); err != nil {
		x.m.g.log.Warn("removing a refused session from the shared directory failed; it expires with its TTL", "upstream", x.m.name, "err", err)
	}
}

// who is what the binding keeps of the session's creator: enough for the
// identity headers of the DELETE that ends an evicted session upstream.
func (m *mount) who(p *resource.Principal) *resource.Principal {
	if len(m.stripHeaders) == 0 {
		return nil
	}
	w := &resource.Principal{Subject: p.Subject, ClientID: p.ClientID, Issuer: p.Issuer, Scopes: p.Scopes}
	if act, ok := p.Claims["act"]; ok { // a delegated caller stays one in an identity assertion
		w.Claims = map[string]any{"act": act}
	}
	return w
}

// endSession ends the upstream session of a binding the gateway dropped
// (evicted to make room, or expired): a session server closes it (the
// child or legacy connection ends and frees its slot) before returning; a
// Streamable HTTP upstream gets a DELETE with the gateway's credential,
// the creator's identity headers and per-caller credentials, in the
// background, bounded in time and in number (best effort: beyond
// endSessionsInFlight it is skipped and the upstream's own idle timeout
// ends the session).
func (m *mount) endSession(b *binding, expired bool) {
	if m.unshare(b, expired) {
		m.endUpstream(b)
	}
}

// endUpstream ends b's session at the upstream (or its child), without
// touching the directory.
func (m *mount) endUpstream(b *binding) {
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
			if b.who != nil { // the creator's per-caller credentials (upcred.go), best effort
				for _, s := range m.credSources {
					_ = s.addTo(ctx, credCaller{p: b.who}, hdr)
				}
			}
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
		err := x.bindOnReply(sid)
		if err == nil {
			return
		}
		h.Del(mcp.HeaderSessionID)
		if err != errForeignSession {
			// Not bound anywhere: only the upstream session ends (the
			// directory entry, if any, is not ours to delete).
			x.m.endUpstream(&binding{id: sid, who: x.m.who(x.p)})
			x.m.g.log.Warn("shared state (Redis) unavailable; a new session was ended", "upstream", x.m.name, "err", err)
			h.Set("Retry-After", "5")
			x.dec = decError
			x.w.replace(http.StatusServiceUnavailable, mcp.ErrorResponse(x.rpcID, mcp.CodeUnavailable,
				"shared state (Redis) unavailable: the gateway could not record the new session; retry initialize shortly", nil))
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

// errForeignSession: the upstream minted an id bound to another subject.
var errForeignSession = errors.New("session id bound to another subject")

// shareSession records a new session in the shared directory, so that
// every replica can check its owner (and, for a session whose upstream
// connection lives here, find this replica).
func (x *exchange) shareSession(sid string) error {
	sh := x.m.g.shared
	if sh == nil {
		return nil
	}
	ok, err := sh.dir.Put(x.r.Context(), state.KindSession, x.m.name, sid, x.entry(x.ownerKey()), x.m.directoryTTL())
	if err != nil {
		return err
	}
	if !ok {
		return errForeignSession
	}
	return nil
}

// unshare is the directory's part of ending a binding this replica
// dropped; it reports whether the upstream session is to be ended too.
// A binding at an HTTP upstream that expired here but is still in the
// directory is in use through another replica: only the local copy goes.
func (m *mount) unshare(b *binding, expired bool) bool {
	sh := m.g.shared
	if sh == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if expired && !m.held() {
		if e, err := sh.dir.Get(ctx, state.KindSession, m.name, b.id); err != nil || e != nil {
			return false // in use elsewhere, or unknown: the upstream's idle timeout decides
		}
		return true
	}
	_ = sh.dir.Delete(ctx, state.KindSession, m.name, b.id)
	return true
}

// forgetShared is the binder's gone hook: a session that ended leaves the
// directory.
func (m *mount) forgetShared(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := m.g.shared.dir.Delete(ctx, state.KindSession, m.name, id); err != nil {
		m.g.log.Warn("removing an ended session from the shared directory failed; it expires with its TTL", "upstream", m.name, "err", err)
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
