package gateway

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/state"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Tasks and parked Multi Round-Trip requests across replicas, on the same
// directory and the same routing as sessions (forward.go): a task id is
// recorded with its owner and tool when the gateway binds it (tasks.go),
// a requestState with its owner when the gateway hands it out; another
// replica finds them there under the same ownership check, adopts a task
// of an HTTP upstream, and forwards a task on a task host or a parked
// request to the replica that holds the upstream connection. Single use of
// a requestState stays where it is decided: on the replica where the
// request is parked.

// shareTask records a task the caller's tools/call created (after the
// local binding succeeded). A Redis error refuses the call's task as a
// full table would (-50300): no replica could check its owner.
func (x *exchange) shareTask(id, tool string, ttl time.Duration) *taskRefusal {
	sh := x.m.g.shared
	if sh == nil {
		return nil
	}
	if ttl <= 0 || ttl > x.m.tasks.maxTTL {
		ttl = x.m.tasks.maxTTL
	}
	e := x.entry(x.taskOwner())
	e.Tool = tool
	ok, err := sh.dir.Put(x.r.Context(), state.KindTask, x.m.name, id, e, ttl)
	if err != nil {
		x.m.g.log.Warn("shared state (Redis) unavailable; a task could not be recorded", "upstream", x.m.name, "err", err)
		return &taskRefusal{mcp.CodeUnavailable, "shared state (Redis) unavailable: the gateway could not record this task; the gateway asked the upstream to cancel it; retry shortly"}
	}
	if !ok {
		return &taskRefusal{mcp.CodeUpstream, "the upstream returned a task id that is already bound to another caller"}
	}
	return nil
}

// sharedTask looks up a task this replica has not bound: ok when the
// directory holds it for the caller (x.hopTo is set when another replica
// holds its task host); answered when it wrote a 503.
func (x *exchange) sharedTask(e *mcp.Envelope) (tool string, ok, answered bool) {
	sh := x.m.g.shared
	if sh == nil {
		return "", false, false
	}
	ent, err := sh.dir.Get(x.r.Context(), state.KindTask, x.m.name, e.Name)
	if err != nil {
		x.unavailable(err)
		return "", false, true
	}
	if ent == nil || ent.Owner != x.taskOwner() {
		return "", false, false
	}
	local, found := x.route(ent)
	switch {
	case !found:
		return "", false, false
	case !local:
		if x.hopKind == "" {
			x.hopKind, x.hopID = state.KindTask, e.Name
		}
		return ent.Tool, true, false
	}
	if err := x.m.tasks.bind(e.Name, x.taskOwner(), x.taskBudgetKey(), ent.Tool, 0); err != nil {
		return "", false, false // this replica's table refuses it: as unknown, the caller retries elsewhere
	}
	return ent.Tool, true, false
}

// routeState sends a retry carrying a requestState to the replica where
// its upstream connection is parked (stdio and sse upstreams; an HTTP
// upstream's requestState is its own business and passes through, as on
// one replica). It reports false when it answered.
func (x *exchange) routeState() bool {
	sh := x.m.g.shared
	if sh == nil || x.hop != nil || x.hopTo != "" || !x.m.held() || len(x.msgs) != 1 {
		return true
	}
	st := requestState(x.msgs[0].Params)
	if st == "" {
		return true
	}
	e, err := sh.dir.Get(x.r.Context(), state.KindState, x.m.name, st)
	if err != nil {
		x.unavailable(err)
		return false
	}
	if e == nil || e.Owner != x.ownerKey() {
		return true // the session server answers "requestState is unknown"
	}
	if _, found := x.route(e); found && x.hopTo != "" {
		x.hopKind, x.hopID = state.KindState, st
	}
	return true
}

// requestState is params.requestState, matched exactly.
func requestState(params json.RawMessage) string {
	if !bytes.Contains(params, []byte("requestState")) && !bytes.Contains(params, []byte(`\u`)) {
		return ""
	}
	s, _ := exactString(params, "requestState")
	return s
}

// shareStates records each requestState this replica hands out for a
// parked request (InputRequiredResult), so that a retry reaching another
// replica is forwarded here. A Redis error turns the answer into a 503
// JSON-RPC error: the state could not be made findable.
func (x *exchange) shareStates(next upstream.Filter) upstream.Filter {
	sh := x.m.g.shared
	if sh == nil || sh.hops == nil || !x.m.held() {
		return next
	}
	return func(msg []byte) []byte {
		if !bytes.Contains(msg, []byte("input_required")) {
			return next(msg)
		}
		env, err := mcp.PeekOne(msg)
		if err != nil || env.Result == nil {
			return next(msg)
		}
		if rt, _ := exactString(env.Result, "resultType"); rt != "input_required" {
			return next(msg)
		}
		st := requestState(env.Result)
		if st == "" {
			return next(msg)
		}
		ttl := x.m.g.cfg.Limits.UpstreamTimeout.Duration + time.Minute
		if _, err := sh.dir.Put(x.r.Context(), state.KindState, x.m.name, st, x.entry(x.ownerKey()), ttl); err != nil {
			x.m.g.log.Warn("shared state (Redis) unavailable; a requestState could not be recorded", "upstream", x.m.name, "err", err)
			return mcp.ErrorResponse(env.ID, mcp.CodeUnavailable, "shared state (Redis) unavailable: retry the request shortly", nil)
		}
		return next(msg)
	}
}
