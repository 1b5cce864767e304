package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Tasks (the Tasks extension, SEP-2663 as specified in
// modelcontextprotocol/ext-tasks specification/draft/tasks.md, and the
// experimental tasks of 2025-11-25 basic/utilities/tasks). A task id is a
// handle on the result of the tools/call that created it, so the gateway
// treats it as it treats a session id: never as a credential.
//
//   - The gateway learns each task id from the reply of the tools/call that
//     created it (a result with resultType "task" and taskId, or the
//     2025-11-25 CreateTaskResult's task.taskId) and binds it to the caller
//     (issuer, subject and client id) and the tool.
//   - tasks/get, tasks/update, tasks/cancel and tasks/result are routed by
//     params.taskId (mcp.Envelope.Name; Mcp-Name must equal it in
//     2026-07-28) and reach the upstream only for a task bound to the
//     caller; any other id — another caller's, expired, never seen — gets
//     the same -32602 "task not found", exactly as an unknown id.
//   - The originating tool's policy applies to every task request
//     (policy.DecideTask): a caller who lost access to the tool cannot
//     fetch the result of its tasks.
//   - tasks/list results keep only the caller's tasks; a task's result
//     (tasks/get "result") has its lists filtered like any other result.
//   - The audit log names the task id and its tool.
//
// The binding table and its budgets: tasks_binder.go.

// taskOwner is the key tasks are bound to: the caller's issuer and subject
// (owner) and the client it called through.
func (x *exchange) taskOwner() string { return x.ownerKey() + "\x00" + x.p.ClientID }

// taskBudgetKey is what the per-subject task budget counts by: issuer and
// subject, so that more client ids do not buy a subject more tasks.
func (x *exchange) taskBudgetKey() string { return x.ownerKey() }

// taskNotFound is the one answer for a task the caller may not name: the
// Tasks extension's "Invalid or nonexistent taskId: -32602" (§Error
// Handling), identical for another caller's task and an unknown one.
const taskNotFound = "Failed to retrieve task: Task not found"

// authorizeTask decides a request on a task: the task must be bound to the
// caller, and the caller must still be allowed the tool that created it.
func (x *exchange) authorizeTask(e *mcp.Envelope) bool {
	if e.Method == "tasks/result" && mcp.EraOf(e.MetaVersion) == mcp.EraStateless {
		// The extension defines tasks/get, tasks/update and tasks/cancel
		// and reserves the tasks/ prefix; a completed task's result is
		// inlined in tasks/get. tasks/result is 2025-11-25 only.
		x.dec = "protocol"
		mcp.WriteError(x.w, http.StatusOK, e.ID, mcp.CodeMethodNotFound, "Method not found: tasks/result is not part of protocol version 2026-07-28; tasks/get inlines a completed task's result", nil)
		return false
	}
	if !declaredTasks(e) {
		// "Servers MUST return this error for non-declaring clients
		// issuing tasks/get, tasks/update, and tasks/cancel requests"
		// (-32021, §Error Handling). It depends on the request alone, so
		// it tells nothing about the task.
		x.dec = "deny"
		x.auditTask(e.Method, e.Name, "", "deny", "the request does not declare the Tasks extension", http.StatusBadRequest)
		need := map[string]any{"extensions": map[string]any{mcp.TasksExtension: map[string]any{}}}
		mcp.WriteError(x.w, http.StatusBadRequest, e.ID, mcp.CodeMissingRequiredClientCapability, "Missing required client capability: declare the io.modelcontextprotocol/tasks extension in _meta clientCapabilities", mcp.MissingCapabilityData{RequiredCapabilities: need})
		return false
	}
	tool, ok := x.m.tasks.lookup(e.Name, x.taskOwner())
	if !ok {
		var answered bool
		if tool, ok, answered = x.sharedTask(e); answered { // replicas.go
			return false
		}
	}
	if !ok {
		x.dec = "deny"
		x.auditTask(e.Method, e.Name, "", "deny", "task not bound to the caller", http.StatusOK)
		id := e.ID
		if id == nil {
			id = x.rpcID
		}
		mcp.WriteError(x.w, http.StatusOK, id, mcp.CodeInvalidParams, taskNotFound, nil)
		return false
	}
	d := x.m.policy.Load().DecideTask(x.caller(), e.Method, tool)
	if !d.Allow {
		x.dec = "deny"
		x.auditTask(e.Method, e.Name, tool, "deny", d.Reason, http.StatusForbidden)
		x.deny(d, e)
		return false
	}
	x.auditTask(e.Method, e.Name, tool, "allow", d.Reason, 0)
	return true
}

// declaredTasks reports whether a task request may proceed as far as the
// extension's negotiation goes: a 2026-07-28 tasks/get, tasks/update or
// tasks/cancel must declare the extension in its per-request
// capabilities; other eras negotiate at initialize.
func declaredTasks(e *mcp.Envelope) bool {
	if mcp.EraOf(e.MetaVersion) != mcp.EraStateless || e.Method == "tasks/result" {
		return true
	}
	var p struct {
		Meta map[string]json.RawMessage `json:"_meta"`
	}
	_ = json.Unmarshal(e.Params, &p)
	return mcp.DeclaresTasks(p.Meta["io.modelcontextprotocol/clientCapabilities"])
}

// authorizeListen refuses a subscriptions/listen that names a task the
// caller may not name (SEP-2663 §Task Status Notifications:
// params.notifications.taskIds). Members are matched exactly, as servers
// written with JSON.parse read them.
func (x *exchange) authorizeListen(e *mcp.Envelope) bool {
	if e.Method != "subscriptions/listen" || !bytes.Contains(e.Params, []byte("taskIds")) && !bytes.Contains(e.Params, []byte(`\u`)) {
		return true
	}
	var ids []string
	ok := false
	if n, found := exactMember(e.Params, "notifications"); !found {
		ok = true
	} else if raw, found := exactMember(n, "taskIds"); !found {
		ok = true
	} else {
		ok = json.Unmarshal(raw, &ids) == nil
	}
	if !ok {
		x.dec = "protocol"
		mcp.WriteError(x.w, http.StatusBadRequest, e.ID, mcp.CodeInvalidParams, "Invalid params: params.notifications.taskIds must be an array of task ids", nil)
		return false
	}
	for _, id := range ids {
		if !x.authorizeTask(&mcp.Envelope{ID: e.ID, Method: e.Method, Name: id}) {
			return false
		}
	}
	return true
}

func (x *exchange) auditTask(method, taskID, tool, decision, reason string, status int) {
	rec := &auditRecord{
		Time: time.Now().UTC(), RequestID: x.id, Upstream: x.m.name, Method: method, Name: taskID,
		TaskID: taskID, Tool: tool, Decision: decision, Reason: reason, Status: status, Remote: x.m.g.remoteAddr(x.r),
	}
	if x.p != nil {
		rec.Subject, rec.ClientID, rec.Issuer, rec.TokenID = x.p.Subject, x.p.ClientID, x.p.Issuer, x.p.TokenID
	}
	x.m.g.audit.write(rec)
}

// withTasks wraps the list filter next of one exchange with what tasks and
// caching need of server messages: a task created by one of this POST's
// tools/call requests is bound to the caller (learn; stream filters do not
// know the requests and bind nothing), tasks lists keep the caller's tasks,
// a task's result has its lists filtered, cache hints are corrected
// (cache.go), and the result of this POST's initialize or server/discover
// declares the authorization extensions the gateway supports
// (extensions.go).
func (x *exchange) withTasks(next upstream.Filter, learn bool) upstream.Filter {
	var calls, retries, cancels map[string]string // canonical id → tool; ids of MRTR retries; → task id of a tasks/cancel
	var undeclared map[string]bool                // canonical ids of tools/call that did not declare the Tasks extension
	var handshakes map[string]bool                // canonical ids of initialize and server/discover requests (extensions.go)
	if learn {
		for i := range x.msgs {
			e := &x.msgs[i]
			if !e.IsRequest() {
				continue
			}
			k, _ := mcp.CanonicalID(e.ID)
			if e.Method == "tools/call" {
				if calls == nil {
					calls = map[string]string{}
				}
				calls[k] = e.Name
				if !declaredTasks(e) {
					if undeclared == nil {
						undeclared = map[string]bool{}
					}
					undeclared[k] = true
				}
			}
			if e.Method == "tasks/cancel" {
				if cancels == nil {
					cancels = map[string]string{}
				}
				cancels[k] = e.Name
			}
			if e.Method == "initialize" || e.Method == "server/discover" {
				if handshakes == nil {
					handshakes = map[string]bool{}
				}
				handshakes[k] = true
			}
			if isRetry(e.Params) {
				if retries == nil {
					retries = map[string]string{}
				}
				retries[k] = e.Method
			}
		}
	}
	return func(msg []byte) []byte {
		escaped := bytes.Contains(msg, []byte(`\u`))
		taskish := escaped || bytes.Contains(msg, []byte(`"task`)) || len(cancels) > 0 // "task", "taskId", "tasks"; a tasks/cancel ack may name none
		nested := escaped || mayHoldList(msg) && bytes.Count(msg, []byte(`"result"`)) > 1
		hints := escaped || bytes.Contains(msg, []byte("input_required")) || len(retries) > 0
		declare := len(handshakes) > 0
		if !taskish && !nested && !hints && !declare {
			return next.Apply(msg)
		}
		env, err := mcp.PeekOne(msg)
		if err != nil {
			if taskish || declare {
				return withheld(nil)
			}
			return next.Apply(msg)
		}
		if env.Result == nil && taskish && (env.Method == "notifications/tasks" || env.Method == "notifications/tasks/status") {
			x.noteTaskEnd(env.Params, "")
		}
		if env.Result == nil || env.Result[0] != '{' {
			return next.Apply(msg)
		}
		k, _ := mcp.CanonicalID(env.ID)
		res, changed := env.Result, false
		if tool, ok := calls[k]; ok && taskish {
			if r := x.learnTask(tool, res, undeclared[k]); r != nil {
				return mcp.ErrorResponse(env.ID, r.code, r.Error(), nil)
			}
		}
		if taskish {
			x.noteTaskEnd(res, cancels[k])
		}
		if taskish {
			if out, ok := x.filterTaskList(res); ok {
				res, changed = out, true
			}
		}
		if nested {
			if out, ok := x.filterTaskResult(res); ok {
				res, changed = out, true
			}
		}
		if out, ok := cacheHints(res, retries[k] != ""); ok {
			res, changed = out, true
		}
		if handshakes[k] {
			if out, ok := declareExtensions(res, x.m.authExtensionsOf()); ok {
				res, changed = out, true
			}
		}
		if changed {
			msg = rebuild(env.ID, res)
		}
		return next.Apply(msg)
	}
}

// learnTask binds the task a tools/call of tool created, if its result is
// one: resultType "task" with taskId (SEP-2663 §Task Creation), or the
// 2025-11-25 CreateTaskResult {task: {taskId, ttl}}. A task created for a
// 2026-07-28 request that did not declare the extension (undeclared) is
// not bound: "A server MUST NOT return CreateTaskResult to a client that
// did not include the extension capability on its request", and such a
// client could never poll it. The gateway asks the upstream to cancel it
// and answers the call with -50200 saying so.
func (x *exchange) learnTask(tool string, result json.RawMessage, undeclared bool) *taskRefusal {
	var id string
	var ttl json.RawMessage
	if rt, _ := exactString(result, "resultType"); rt == "task" {
		tid, ok := exactString(result, "taskId")
		if !ok {
			return nil
		}
		id = tid
		ttl, _ = exactMember(result, "ttlMs")
	} else if task, ok := exactMember(result, "task"); ok {
		tid, ok := exactString(task, "taskId")
		if !ok {
			return nil
		}
		id = tid
		ttl, _ = exactMember(task, "ttl")
	} else {
		return nil
	}
	if id == "" {
		return &taskRefusal{mcp.CodeUpstream, "the upstream returned a task with an empty taskId"}
	}
	if undeclared {
		r := &taskRefusal{mcp.CodeUpstream, "the upstream MCP server returned a task to a request that did not declare the Tasks extension; the gateway asked it to cancel the task: declare io.modelcontextprotocol/tasks in _meta clientCapabilities to call this tool as a task"}
		x.auditTask("tools/call", id, tool, "deny", r.Error(), 0)
		x.cancelOrphan(id)
		return r
	}
	var d time.Duration
	var ms float64
	if json.Unmarshal(ttl, &ms) == nil && ms > 0 && ms < float64(1<<62)/float64(time.Millisecond) {
		d = time.Duration(ms * float64(time.Millisecond))
	}
	if err := x.m.tasks.bind(id, x.taskOwner(), x.taskBudgetKey(), tool, d); err != nil {
		r, _ := err.(*taskRefusal)
		x.auditTask("tools/call", id, tool, "deny", r.Error(), 0)
		if r.code != mcp.CodeUpstream { // never cancel an id that is another caller's
			x.cancelOrphan(id)
		}
		return r
	}
	if r := x.shareTask(id, tool, d); r != nil { // replicas.go
		x.auditTask("tools/call", id, tool, "deny", r.Error(), 0)
		if r.code != mcp.CodeUpstream {
			x.cancelOrphan(id)
		}
		return r
	}
	x.auditTask("tools/call", id, tool, "task_created", "", 0)
	x.noteTaskEnd(result, "")
	return nil
}

// exactMember returns the member key of the JSON object obj, matched
// exactly (the last one when repeated, as JSON.parse does): encoding/json
// would also take "TASKID" for taskId.
func exactMember(obj json.RawMessage, key string) (json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(obj, &m) != nil {
		return nil, false
	}
	v, ok := m[key]
	return v, ok
}

// exactString returns the string member key of obj, matched exactly.
func exactString(obj json.RawMessage, key string) (string, bool) {
	raw, ok := exactMember(obj, key)
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// filterTaskList keeps, in a result's tasks member (2025-11-25 tasks/list),
// only the tasks bound to the caller. Entries that are not objects with a
// string taskId name nothing the caller may use and are dropped.
func (x *exchange) filterTaskList(result json.RawMessage) (json.RawMessage, bool) {
	members, err := mcp.Members(result)
	if err != nil {
		return result, false
	}
	own := x.taskOwner()
	changed := false
	for i := range members {
		if members[i].Key != "tasks" {
			continue
		}
		var entries []json.RawMessage
		if json.Unmarshal(members[i].Raw, &entries) != nil {
			continue
		}
		kept := entries[:0:0]
		for _, ent := range entries {
			id, ok := exactString(ent, "taskId")
			if !ok {
				continue
			}
			if _, ok := x.m.tasks.lookup(id, own); ok {
				kept = append(kept, ent)
			}
		}
		if len(kept) == len(entries) {
			continue
		}
		members[i].Raw = mcp.JoinArray(kept)
		changed = true
	}
	if !changed {
		return result, false
	}
	return mcp.JoinMembers(members), true
}

// filterTaskResult filters the lists of a task's result (tasks/get of a
// completed task, SEP-2663: "The structure matches the result type of the
// original request"), as the result of the request itself would be.
func (x *exchange) filterTaskResult(result json.RawMessage) (json.RawMessage, bool) {
	members, err := mcp.Members(result)
	if err != nil {
		return result, false
	}
	changed := false
	for i := range members {
		if members[i].Key != "result" || len(members[i].Raw) == 0 || members[i].Raw[0] != '{' {
			continue
		}
		if out, ok := x.m.policy.Load().FilterLists(x.caller(), members[i].Raw); ok {
			members[i].Raw = out
			changed = true
		}
	}
	if !changed {
		return result, false
	}
	return mcp.JoinMembers(members), true
}

// rebuild is a response message around a rewritten result.
func rebuild(id, result json.RawMessage) []byte {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	out, err := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  json.RawMessage `json:"result"`
	}{"2.0", id, result})
	if err != nil {
		return withheld(id)
	}
	return out
}
