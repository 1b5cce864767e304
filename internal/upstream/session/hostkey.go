package session

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Who shares a task host, and how its task ids reach clients.
//
// A host is one upstream connection that outlives the request that opened
// it, dialled once with that request's identity headers and handshake. So
// it is shared only by requests whose upstream-visible identity is the
// same: hostKey covers the owner (issuer and subject), the client id and
// every header the upstream gets on the caller's behalf (and a stdio
// child's per-caller environment, upstream.Caller.Env). A client of the
// same subject with another client id, or the same client with a narrowed
// token (another scopes header), gets its own host. MRTR states parked on
// a host are bound to that key too (mrtr.go).
//
// Task ids are per connection on a session-era server (a counter is
// natural for a stdio child), so two hosts can hand out the same id. A
// client never sees an upstream's id as it is: it sees "<host id>.<id>",
// the host id being random and unique per host, so ids of different hosts
// never collide in the gateway's task binder. The gateway unwraps the id
// of tasks/get, tasks/update and tasks/cancel (params.taskId) before the
// host's upstream gets it, and qualifies every id the upstream sends back
// (outward).

// hostKey is the canonical identity of a caller as a task host's
// upstream sees it: a SHA-256 over length-prefixed owner, client id and
// every header name (canonical, sorted) with its values in order.
func hostKey(c upstream.Caller) string {
	h := sha256.New()
	count := func(n int) {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(n))
		h.Write(b[:])
	}
	put := func(s string) {
		count(len(s))
		h.Write([]byte(s))
	}
	put(c.Owner)
	put(c.Client)
	byName := map[string][]string{}
	for k, v := range c.Header {
		ck := http.CanonicalHeaderKey(k)
		byName[ck] = append(byName[ck], v...)
	}
	names := make([]string, 0, len(byName))
	for k := range byName {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		vals := byName[k]
		put(k)
		count(len(vals))
		for _, v := range vals {
			put(v)
		}
	}
	count(len(c.Env)) // a child's per-caller environment (stdio)
	for _, e := range c.Env {
		put(e)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// newHostID is a host's random id, the prefix of its task ids. It holds
// no ".", which separates it from the upstream's id.
func newHostID() string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return "h" + hex.EncodeToString(b[:])
}

// qualify is the id a client sees for the host's upstream task id.
func (h *taskHost) qualify(local string) string { return h.id + "." + local }

// splitTaskID splits a client's task id into its host id and the
// upstream's id; ok is false for an id no host issued.
func splitTaskID(name string) (host, local string, ok bool) {
	host, local, ok = strings.Cut(name, ".")
	return host, local, ok && host != "" && local != ""
}

// relatedTaskKey is the _meta member tying a message to a task.
const relatedTaskKey = "io.modelcontextprotocol/related-task"

// withTaskID is a task request's raw message with params.taskId replaced
// by id (the upstream's own id).
func withTaskID(raw []byte, id string) []byte {
	var msg map[string]json.RawMessage
	if json.Unmarshal(raw, &msg) != nil {
		return raw
	}
	var params map[string]json.RawMessage
	if json.Unmarshal(msg["params"], &params) != nil {
		return raw
	}
	params["taskId"], _ = json.Marshal(id)
	msg["params"], _ = json.Marshal(params)
	out, err := json.Marshal(msg)
	if err != nil {
		return raw
	}
	return out
}

// outward qualifies every task id the host's upstream sends in m: the
// taskId of a result (a CreateTaskResult, a tasks/get result) and of
// notifications/tasks params, and _meta's related-task taskId of results
// and params. Members are matched exactly, as clients read them.
func (h *taskHost) outward(m []byte) []byte {
	if !bytes.Contains(m, []byte("task")) && !bytes.Contains(m, []byte(`\u`)) {
		return m
	}
	var msg map[string]json.RawMessage
	if json.Unmarshal(m, &msg) != nil {
		return m
	}
	var method string
	_ = json.Unmarshal(msg["method"], &method)
	changed := false
	for _, k := range []string{"result", "params"} {
		top := k == "result" || strings.HasPrefix(method, "notifications/tasks")
		if out, ok := h.qualifyIn(msg[k], top); ok {
			msg[k], changed = out, true
		}
	}
	if !changed {
		return m
	}
	out, err := json.Marshal(msg)
	if err != nil {
		return mcp.ErrorResponse(msg["id"], mcp.CodeUpstream, "the upstream MCP server sent a message the gateway cannot read", nil)
	}
	return out
}

// qualifyIn qualifies obj's taskId (when top) and its _meta related-task
// taskId.
func (h *taskHost) qualifyIn(obj json.RawMessage, top bool) (json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if len(obj) == 0 || obj[0] != '{' || json.Unmarshal(obj, &m) != nil {
		return obj, false
	}
	changed := false
	if top {
		changed = h.qualifyMember(m, "taskId")
	}
	var meta map[string]json.RawMessage
	if json.Unmarshal(m["_meta"], &meta) == nil && meta != nil {
		var rel map[string]json.RawMessage
		if json.Unmarshal(meta[relatedTaskKey], &rel) == nil && h.qualifyMember(rel, "taskId") {
			meta[relatedTaskKey], _ = json.Marshal(rel)
			m["_meta"], _ = json.Marshal(meta)
			changed = true
		}
	}
	if !changed {
		return obj, false
	}
	out, err := json.Marshal(m)
	return out, err == nil
}

func (h *taskHost) qualifyMember(m map[string]json.RawMessage, key string) bool {
	var id string
	if json.Unmarshal(m[key], &id) != nil {
		return false
	}
	m[key], _ = json.Marshal(h.qualify(id))
	return true
}

// relatedTask is the upstream's id of the task a message names in its
// params' _meta related-task; ok is false when it names none.
func relatedTask(params json.RawMessage) (string, bool) {
	if !bytes.Contains(params, []byte("related-task")) && !bytes.Contains(params, []byte(`\u`)) {
		return "", false
	}
	meta := exactMember(params, "_meta")
	rel := exactMember(meta, relatedTaskKey)
	if rel == nil {
		return "", false
	}
	var id string
	_ = json.Unmarshal(exactMember(rel, "taskId"), &id)
	return id, true
}
