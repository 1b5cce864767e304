package gateway

import (
	"context"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/state"
	"github.com/mcpgate/mcpgate/internal/upstream/legacy"
)

// A 2024-11-05 client holds its HTTP+SSE stream on one replica and POSTs
// its messages to ?sessionId=…, which a load balancer without affinity
// sends to any replica. With state.replica configured, the stream's
// replica publishes the session in the shared directory (kind
// state.KindLegacy) while the stream is open, and a replica that gets a
// POST for a session it does not hold forwards it there (forwardHop),
// after the same ownership check. Without state.replica such a POST is
// answered 404, as on a single replica for an unknown session.

// legacyPublishTTL is how long a published front session outlives its
// last keep-alive (every 25 s): a killed replica's sessions leave the
// directory within it.
const legacyPublishTTL = 75 * time.Second

// legacyPublisher publishes a mount's front sessions (legacy.Publisher).
type legacyPublisher struct{ m *mount }

// publisher is the front's Publisher: nil unless other replicas can
// forward to this one.
func (m *mount) publisher() legacy.Publisher {
	if sh := m.g.shared; sh == nil || sh.hops == nil {
		return nil
	}
	return legacyPublisher{m}
}

func (p legacyPublisher) entry(owner string) state.Entry {
	sh := p.m.g.shared
	return state.Entry{Owner: owner, Held: true, Replica: sh.self, Instance: sh.instance}
}

func (p legacyPublisher) Opened(ctx context.Context, id, owner string) error {
	ok, err := p.m.g.shared.dir.Put(ctx, state.KindLegacy, p.m.name, id, p.entry(owner), legacyPublishTTL)
	if err == nil && !ok {
		err = errForeignSession // a random 128-bit id: never in practice
	}
	return err
}

func (p legacyPublisher) Alive(id, owner string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	dir := p.m.g.shared.dir
	ok, err := dir.Touch(ctx, state.KindLegacy, p.m.name, id, legacyPublishTTL)
	if err == nil && !ok { // Redis restarted empty: publish again
		_, err = dir.Put(ctx, state.KindLegacy, p.m.name, id, p.entry(owner), legacyPublishTTL)
	}
	if err != nil {
		p.m.g.log.Warn("renewing a legacy SSE session in the shared directory failed; the next keep-alive retries", "upstream", p.m.name, "err", err)
	}
}

func (p legacyPublisher) Closed(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := p.m.g.shared.dir.Delete(ctx, state.KindLegacy, p.m.name, id); err != nil {
		p.m.g.log.Warn("removing an ended legacy SSE session from the shared directory failed; it expires with its TTL", "upstream", p.m.name, "err", err)
	}
}

// legacySession checks that sid is a front session of the caller: held
// here, or (replicas) published by another replica, in which case the
// request is routed there (x.hopTo). It answers the request when it
// reports false.
func (x *exchange) legacySession(sid string) bool {
	if sid != "" && x.m.front.Owner(sid) == x.ownerKey() {
		return true
	}
	if sid != "" && x.hop == nil && x.m.front.Owner(sid) == "" && x.m.g.shared != nil {
		e, err := x.m.g.shared.dir.Get(x.r.Context(), state.KindLegacy, x.m.name, sid)
		if err != nil {
			x.unavailable(err)
			return false
		}
		if e != nil && e.Owner == x.ownerKey() {
			if local, found := x.route(e); found && !local {
				x.hopKind, x.hopID = state.KindLegacy, sid
				return true
			}
		}
	}
	x.refuse(decSession, x.denied(&failure{status: http.StatusNotFound, code: mcp.CodeInvalidRequest,
		msg: "session not found: open a new SSE stream"}, x.method, "", "legacy session id not owned by caller"))
	return false
}
