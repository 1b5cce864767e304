package session

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// relay carries one 2026-07-28 request's exchange with the upstream to the
// client's POST: the answer, the progress of an SSE reply, and the
// upstream's requests for input (an InputRequiredResult, mrtr.go). The
// same loop serves a per-request connection (stateless.go) and a request
// multiplexed on a task host (taskhost.go); they differ only in the hooks.
type relay struct {
	s      *Server
	w      http.ResponseWriter
	r      *http.Request
	msg    *mcp.Envelope
	info   upstream.Caller
	filter upstream.Filter
	caps   json.RawMessage // the request's _meta clientCapabilities

	// origID is the id the upstream knows the request by.
	origID json.RawMessage
	// next returns the next upstream message for this request; final
	// reports the answer that ends it.
	next func(ctx context.Context) (msg []byte, final bool, err error)
	// send delivers a message to the upstream (answers to its requests).
	send func(ctx context.Context, msg []byte) error
	// end releases the request's upstream side when the relay ends
	// without parking it (closes a per-request connection, forgets and
	// cancels a request on a task host).
	end func()
	// park keeps the request waiting for the client's answer to the
	// upstream's input request askID and returns its requestState.
	park func(askID json.RawMessage) (state string, ok bool)
	// answered, when set, sees each final answer m (with the client's
	// id) and out, what the filter made of it, before out is written.
	answered func(m, out []byte)

	sse bool
	rc  *http.ResponseController
}

// run relays until the answer, an input request, the client's
// disconnection or the request timeout.
func (rl *relay) run() {
	parkedNow := false
	defer func() {
		if !parkedNow {
			rl.end()
		}
	}()
	rl.s.o.Streams.Add(1)
	defer rl.s.o.Streams.Add(-1)
	rl.open()
	ctx := rl.r.Context()
	// The wait for the answer ends after RequestTimeout, in JSON and SSE
	// replies alike (the request is then abandoned); on an SSE reply a
	// progress notification restarts it.
	rctx, stopWait := context.WithCancel(ctx)
	defer stopWait()
	wait := time.AfterFunc(rl.s.o.RequestTimeout, stopWait)
	defer wait.Stop()
	for {
		m, final, err := rl.next(rctx)
		if err != nil {
			if ctx.Err() == nil {
				rl.fail(rctx.Err() != nil)
			}
			return // else the client closed the stream: cancelled
		}
		if final {
			rl.answer(m)
			return
		}
		env, err := mcp.PeekOne(m)
		if err != nil {
			continue
		}
		if env.IsRequest() {
			if done, parked := rl.serverRequest(&env); done {
				parkedNow = parked
				return
			}
			continue
		}
		if env.Method == mcp.MethodElicitationComplete {
			continue // not part of 2026-07-28 (elicitation.go)
		}
		if rl.sse {
			if env.Method == "notifications/progress" && wait.Stop() {
				wait.Reset(rl.s.o.RequestTimeout)
			}
			_ = mcp.WriteEvent(rl.w, mcp.Event{Event: "message", Data: rl.filter.Apply(m)})
			_ = rl.rc.Flush()
		}
	}
}

// open starts an SSE reply when the client accepts one.
func (rl *relay) open() {
	rl.sse = wantsSSE(rl.r)
	if !rl.sse {
		return
	}
	sseHeaders(rl.w)
	rl.w.WriteHeader(http.StatusOK)
	rl.rc = http.NewResponseController(rl.w)
	_ = rl.rc.Flush()
}

// final writes the message that ends the exchange.
func (rl *relay) final(m []byte) {
	if rl.sse {
		_ = mcp.WriteEvent(rl.w, mcp.Event{Event: "message", Data: m})
		_ = rl.rc.Flush()
		return
	}
	writeJSON(rl.w, m)
}

// answer writes the upstream's answer under the client's id.
func (rl *relay) answer(m []byte) {
	if env, err := mcp.PeekOne(m); err != nil || !sameID(env.ID, rl.msg.ID) {
		m = mcp.WithID(m, rl.msg.ID)
	}
	if out, ok := urlRequired(m, rl.msg.ID, rl.caps); ok {
		m = out
	}
	m = withResultType(m)
	out := rl.filter.Apply(m)
	if rl.answered != nil {
		rl.answered(m, out)
	}
	rl.final(out)
}

// fail answers a request the upstream did not answer: it ended, or did
// not answer within RequestTimeout (timedOut).
func (rl *relay) fail(timedOut bool) {
	status, text := http.StatusBadGateway, "the upstream MCP server ended before answering"
	if timedOut {
		status, text = http.StatusGatewayTimeout, "the upstream MCP server did not answer within "+rl.s.o.RequestTimeout.String()
	}
	errMsg := mcp.ErrorResponse(rl.msg.ID, mcp.AppCode(status), text, nil)
	if rl.sse {
		rl.final(errMsg)
		return
	}
	rl.w.Header().Set("Content-Type", "application/json")
	rl.w.WriteHeader(status)
	_, _ = rl.w.Write(errMsg)
}

// serverRequest handles a request of the upstream during the exchange.
// The client cannot answer on this exchange: input requests become an
// InputRequiredResult, ping is answered here, and anything else is refused
// to the upstream. done reports that the client's request is answered;
// parked that its upstream side waits for the client's retry.
func (rl *relay) serverRequest(env *mcp.Envelope) (done, parked bool) {
	ctx := rl.r.Context()
	switch {
	case env.Method == "elicitation/create" && isURLElicitation(env.Params) && !mcp.DeclaresURLElicitation(rl.caps):
		_ = rl.send(ctx, mcp.ErrorResponse(env.ID, mcp.CodeInvalidParams, "the client did not declare URL-mode elicitation", nil))
	case inputMethods[env.Method]:
		if need := missingCapability(rl.msg.Params, env.Method, env.Params); need != nil {
			_ = rl.send(ctx, mcp.ErrorResponse(env.ID, mcp.CodeInvalidParams, "the client did not declare the capability this request needs", nil))
			refuseCapability(rl.w, rl.sse, rl.final, rl.msg.ID, need)
			return true, false
		}
		params := env.Params
		if env.Method == "elicitation/create" {
			params = modernElicitParams(params)
		}
		state, ok := rl.park(env.ID)
		if !ok {
			rl.final(mcp.ErrorResponse(rl.msg.ID, mcp.CodeUnavailable, "the server asked for client input, but too many requests are already waiting for theirs; retry later", nil))
			return true, false
		}
		rl.final(rl.filter.Apply(inputRequired(rl.msg.ID, env.Method, params, state)))
		return true, true
	case env.Method == "ping":
		_ = rl.send(ctx, []byte(`{"jsonrpc":"2.0","id":`+string(env.ID)+`,"result":{}}`))
	default:
		_ = rl.send(ctx, mcp.ErrorResponse(env.ID, mcp.CodeMethodNotFound, "the client of a 2026-07-28 request cannot answer "+env.Method, nil))
	}
	return false, false
}

// withResultType adds "resultType": "complete" to a result that has none:
// the upstream speaks a session-era revision, whose results carry no
// discriminator, and the gateway answers as a 2026-07-28 server — "Servers
// implementing this protocol version MUST include this field" (2026-07-28
// schema, Result.resultType). Errors and unreadable messages pass as they are.
func withResultType(m []byte) []byte {
	var msg map[string]json.RawMessage
	if json.Unmarshal(m, &msg) != nil || len(msg["result"]) == 0 || msg["result"][0] != '{' {
		return m
	}
	var res map[string]json.RawMessage
	if json.Unmarshal(msg["result"], &res) != nil {
		return m
	}
	if _, ok := res["resultType"]; ok {
		return m
	}
	res["resultType"] = json.RawMessage(`"complete"`)
	b, err := json.Marshal(res)
	if err != nil {
		return m
	}
	msg["result"] = b
	out, err := json.Marshal(msg)
	if err != nil {
		return m
	}
	return out
}
