package session

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Serving 2026-07-28 requests on task hosts (taskhost.go).

// taskMethods are the Tasks extension's methods, routed by params.taskId.
var taskMethods = map[string]bool{"tasks/get": true, "tasks/update": true, "tasks/cancel": true}

// onHost reports whether a 2026-07-28 request is served on a task host: a
// tools/call (the one method that "currently support[s] task-augmented
// execution") whose client declared the extension — "A server MUST NOT
// return CreateTaskResult to a client that did not include the extension
// capability on its request" — and every task method.
func onHost(msg *mcp.Envelope, caps json.RawMessage) bool {
	return taskMethods[msg.Method] || msg.Method == "tools/call" && mcp.DeclaresTasks(caps)
}

// serveOnHost serves rl's request on the caller's task host.
func (s *Server) serveOnHost(rl *relay, in inputParams) {
	msg := rl.msg
	if taskMethods[msg.Method] {
		h, local := s.hosts.holding(hostKey(rl.info), msg.Name)
		if h == nil {
			s.unknownTask(rl)
			return
		}
		h.poll(local)
		h.serve(rl, in, local)
		return
	}
	h, err := s.hosts.acquire(s, rl)
	switch {
	case upstream.RefuseDial(rl.w, msg.ID, err):
	case errors.Is(err, errShuttingDown):
		mcp.WriteError(rl.w, http.StatusServiceUnavailable, msg.ID, mcp.CodeUnavailable, "the gateway is shutting down", nil)
	case err != nil && rl.r.Context().Err() != nil:
	case err != nil:
		s.o.Logger.Warn("could not open the task host", "err", err)
		mcp.WriteError(rl.w, http.StatusBadGateway, msg.ID, mcp.CodeUpstream, "could not start the upstream MCP server for tasks; see the gateway log", nil)
	default:
		h.serve(rl, in, "")
	}
}

// unknownTask answers a task method for a task no host of the caller
// holds. The gateway has checked that the task is the caller's, so it was
// on a host that ended, or the upstream never made it.
func (s *Server) unknownTask(rl *relay) {
	msg := rl.msg
	switch {
	case s.hosts.wasLost(hostKey(rl.info), msg.Name):
		writeJSON(rl.w, mcp.ErrorResponse(msg.ID, mcp.CodeInvalidParams, "Failed to retrieve task: the upstream MCP server that held this task ended, so the task and its result are lost; call the tool again", nil))
	case !mcp.DeclaresTasks(rl.caps):
		// "Servers MUST return this error for non-declaring clients
		// issuing tasks/get, tasks/update, and tasks/cancel requests."
		need := map[string]any{"extensions": map[string]any{TasksExtension: map[string]any{}}}
		mcp.WriteError(rl.w, http.StatusBadRequest, msg.ID, mcp.CodeMissingRequiredClientCapability, "Missing required client capability: declare the io.modelcontextprotocol/tasks extension", mcp.MissingCapabilityData{RequiredCapabilities: need})
	default:
		// "Invalid or nonexistent taskId: -32602"
		writeJSON(rl.w, mcp.ErrorResponse(msg.ID, mcp.CodeInvalidParams, "Failed to retrieve task: Task not found", nil))
	}
}

// serve sends rl's request to the host under a gateway id, with local,
// when set, as the upstream's id of the task it names, and relays its
// answer.
func (h *taskHost) serve(rl *relay, in inputParams, local string) {
	ss, msg := h.ss, rl.msg
	upID := h.newID()
	wt := &waiter{sink: ss.newSink(), id: msg.ID, progress: progressToken(msg.Params), method: msg.Method, name: msg.Name}
	ss.mu.Lock()
	closed := ss.closed
	if !closed {
		ss.pending[idKey(upID)] = wt
	}
	ss.mu.Unlock()
	if closed {
		mcp.WriteError(rl.w, http.StatusBadGateway, msg.ID, mcp.CodeUpstream, "the upstream MCP server for tasks ended; retry the request", nil)
		return
	}
	ss.touch(1)
	defer ss.touch(-1)
	h.idle.Do(func() {
		if ss.act != nil {
			ss.act.Idle() // from now on busy only while in use (taskhost.go)
		}
	})
	raw := forwardRaw(msg, in)
	if local != "" {
		raw = withTaskID(raw, local)
	}
	if err := ss.conn.Send(rl.r.Context(), mcp.WithID(raw, upID)); err != nil {
		h.forget(upID)
		mcp.WriteError(rl.w, http.StatusBadGateway, msg.ID, mcp.CodeUpstream, "the upstream MCP server for tasks is gone; retry the request", nil)
		ss.close(err)
		return
	}
	h.attach(rl, upID, wt)
	rl.run()
}

// resume continues a request parked on the host with the client's answer
// to the upstream's input request. The park's hold on the host becomes
// this request's.
func (h *taskHost) resume(rl *relay, p *parked, in inputParams) {
	ss := h.ss
	defer ss.touch(-1)
	ss.mu.Lock()
	p.wt.id = rl.msg.ID
	ss.mu.Unlock()
	if err := ss.conn.Send(rl.r.Context(), inputAnswer(p.askID, in)); err != nil {
		h.forget(p.origID)
		mcp.WriteError(rl.w, http.StatusBadGateway, rl.msg.ID, mcp.CodeUpstream, "the upstream MCP server for tasks is gone; retry the request", nil)
		return
	}
	h.attach(rl, p.origID, p.wt)
	rl.run()
}

// attach makes rl relay the request upID on the host: its messages are
// those the session's router delivers to wt.
func (h *taskHost) attach(rl *relay, upID json.RawMessage, wt *waiter) {
	ss := h.ss
	rl.origID = upID
	rl.send = ss.conn.Send
	rl.next = func(ctx context.Context) ([]byte, bool, error) {
		select {
		case ev := <-wt.ch:
			return h.outward(ev.data), ev.final, nil
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-ss.done:
			select {
			case ev := <-wt.ch: // close delivered the request's error
				return h.outward(ev.data), ev.final, nil
			default:
				return nil, false, errors.New("the task host ended")
			}
		}
	}
	rl.end = func() { h.abandon(upID, nil) }
	rl.park = func(askID json.RawMessage) (string, bool) {
		ss.touch(1) // the parked request keeps the host busy
		p := &parked{host: h, wt: wt, owner: h.key, method: rl.msg.Method, name: rl.msg.Name, origID: upID, askID: askID}
		state, ok := ss.srv.parked.park(p, ss.srv.o.RequestTimeout)
		if !ok {
			ss.touch(-1)
		}
		return state, ok
	}
	rl.answered = func(m, out []byte) { h.learn(rl.msg.Method, rl.msg.Name, m, out) }
}

// forget removes a request from the host's pending table; it reports
// whether it was still waiting for its answer.
func (h *taskHost) forget(upID json.RawMessage) bool {
	h.ss.mu.Lock()
	defer h.ss.mu.Unlock()
	_, ok := h.ss.pending[idKey(upID)]
	delete(h.ss.pending, idKey(upID))
	return ok
}

// abandon gives up a request on the host (the client left, the wait timed
// out, a parked request was not resumed): the upstream's pending input
// request askID, if any, gets an error, and a request still running is
// cancelled with notifications/cancelled. It does not wait for the
// upstream.
func (h *taskHost) abandon(upID, askID json.RawMessage) {
	var msgs [][]byte
	if askID != nil {
		msgs = append(msgs, mcp.ErrorResponse(askID, mcp.CodeInvalidParams, "the client did not answer this input request", nil))
	}
	if h.forget(upID) {
		msgs = append(msgs, []byte(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":`+string(upID)+`,"reason":"the client of this 2026-07-28 request is gone"}}`))
	}
	if askID != nil {
		h.ss.touch(-1) // the park's hold (attach)
	}
	if len(msgs) == 0 {
		return // answered: nothing to tell the upstream
	}
	go func() {
		for _, m := range msgs {
			if h.ss.conn.Send(context.Background(), m) != nil {
				return
			}
		}
	}()
}

// route handles a message of the host's upstream that is neither an
// answer nor a request's progress (conn.go). Every request on the host is
// of the one identity the host serves (hostKey). A message that names its
// task (_meta related-task, notifications/tasks) goes only to a request
// on that task, never to another request. A stdio or SSE server does not
// say which client request any other message concerns, so one is
// attributed to a request only when exactly one can be meant; an input
// request that cannot be attributed is refused to the upstream, a
// notification dropped.
func (h *taskHost) route(env mcp.Envelope, msg []byte) {
	ss := h.ss
	var reply []byte
	task, related := relatedTask(env.Params)
	if env.Method == "notifications/tasks" {
		task, _ = taskState(env.Params)
		related = true
	}
	switch {
	case env.IsRequest() && env.Method == "ping":
		reply = []byte(`{"jsonrpc":"2.0","id":` + string(env.ID) + `,"result":{}}`)
	case related:
		if env.Method == "notifications/tasks" {
			if _, status := taskState(env.Params); terminal[status] {
				h.ended(task, false)
			}
		}
		q := h.qualify(task)
		if wt := h.only(func(w *waiter) bool { return taskMethods[w.method] && w.name == q }); wt != nil {
			ss.deliver(wt.sink, msg, false)
			return
		}
		if !env.IsRequest() {
			return
		}
		reply = mcp.ErrorResponse(env.ID, mcp.CodeInternalError, "no request of the client is in flight on the task this request names", nil)
	case env.IsRequest() && inputMethods[env.Method]:
		if wt := h.only(func(w *waiter) bool { return !taskMethods[w.method] }); wt != nil {
			ss.deliver(wt.sink, msg, false)
			return
		}
		reply = mcp.ErrorResponse(env.ID, mcp.CodeInternalError, "the gateway has several requests in flight on this connection and cannot tell which one this input request is for", nil)
	case env.IsRequest():
		reply = mcp.ErrorResponse(env.ID, mcp.CodeMethodNotFound, "the client of a 2026-07-28 request cannot answer "+env.Method, nil)
	default:
		if wt := h.only(func(*waiter) bool { return true }); wt != nil {
			ss.deliver(wt.sink, msg, false)
		}
		return
	}
	go func() { _ = ss.conn.Send(context.Background(), reply) }()
}

// only returns the one pending request that match accepts, or nil when
// none or several do.
func (h *taskHost) only(match func(*waiter) bool) *waiter {
	h.ss.mu.Lock()
	defer h.ss.mu.Unlock()
	var found *waiter
	for _, w := range h.ss.pending {
		if match(w) {
			if found != nil {
				return nil
			}
			found = w
		}
	}
	return found
}

// terminal are the task statuses after which a task does not change:
// "Terminal states: completed, failed, cancelled".
var terminal = map[string]bool{"completed": true, "failed": true, "cancelled": true}

// learn updates the host's tasks from the answer m (with the client's id
// and qualified task ids, before the gateway's filter) to a request of
// method on task name (the client's id), and out, the answer the client
// gets. A task the gateway refused to bind (out is no longer that
// CreateTaskResult) is cancelled upstream and not recorded: the client
// can never name it, so it must not hold the host.
func (h *taskHost) learn(method, name string, m, out []byte) {
	var env map[string]json.RawMessage
	if json.Unmarshal(m, &env) != nil {
		return
	}
	_, local, _ := splitTaskID(name)
	if e := env["error"]; e != nil {
		if is, _ := mcp.CodeIs(errorCode(e), mcp.CodeInvalidParams); is && method == "tasks/get" {
			h.ended(local, true) // "Invalid or nonexistent taskId: -32602"
		}
		return
	}
	res := env["result"]
	switch method {
	case "tools/call":
		id, status, ok := createdTask(res)
		if !ok {
			return
		}
		_, created, _ := splitTaskID(id)
		if sent, _, bound := createdTask(exactMember(out, "result")); !bound || sent != id {
			h.cancel(created)
			return
		}
		h.add(created, ttlOf(res), terminal[status])
	case "tasks/get":
		if _, status := taskState(res); terminal[status] {
			h.ended(local, false)
		}
	case "tasks/cancel":
		// The ack ends the host's interest: "Clients MAY delete all state
		// associated with the task as soon as they send a cancellation".
		h.ended(local, false)
	}
}

// createdTask reads a CreateTaskResult: resultType "task" and its taskId.
func createdTask(res json.RawMessage) (id, status string, ok bool) {
	var kind string
	_ = json.Unmarshal(exactMember(res, "resultType"), &kind)
	id, status = taskState(res)
	return id, status, kind == "task" && id != ""
}

// cancel asks the upstream to cancel its task local, without waiting (the
// answer, under a gateway id nobody waits for, is dropped).
func (h *taskHost) cancel(local string) {
	if local == "" {
		return
	}
	id, _ := json.Marshal(local)
	msg := []byte(`{"jsonrpc":"2.0","id":` + string(h.newID()) + `,"method":"tasks/cancel","params":{"taskId":` + string(id) + `}}`)
	go func() { _ = h.ss.conn.Send(context.Background(), msg) }()
}

func errorCode(e json.RawMessage) json.RawMessage { return exactMember(e, "code") }

// exactMember returns obj's member key, matched exactly (encoding/json
// would also match case variants into a struct field).
func exactMember(obj json.RawMessage, key string) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(obj, &m) != nil {
		return nil
	}
	return m[key]
}

// taskState reads taskId and status of a Task (a CreateTaskResult, a
// tasks/get result, notifications/tasks params).
func taskState(obj json.RawMessage) (id, status string) {
	_ = json.Unmarshal(exactMember(obj, "taskId"), &id)
	_ = json.Unmarshal(exactMember(obj, "status"), &status)
	return id, status
}

// ttlOf reads a Task's ttlMs ("null for unlimited": 0); a value beyond
// what a Duration holds is 0 too (add caps it by TaskTTLMax either way).
func ttlOf(obj json.RawMessage) time.Duration {
	var ms float64
	if json.Unmarshal(exactMember(obj, "ttlMs"), &ms) != nil || ms <= 0 || ms >= float64(1<<62)/float64(time.Millisecond) {
		return 0
	}
	return time.Duration(ms * float64(time.Millisecond))
}
