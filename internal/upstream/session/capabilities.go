package session

import "encoding/json"

// TasksExtension is the Tasks extension's identifier (SEP-2663).
const TasksExtension = "io.modelcontextprotocol/tasks"

// statelessCapabilities are the capabilities server/discover reports for an
// upstream this server reaches with one short-lived connection per
// 2026-07-28 request. They are the upstream's, less what that path cannot
// carry:
//
//   - the Tasks extension: a task lives in the upstream connection that
//     created it, which is closed once the request is answered, so a
//     tasks/get could never find it. "A gateway that passes a server's
//     capabilities through must not claim an extension the upstream lacks"
//     — on this path the upstream lacks it;
//   - the 2025-11-25 tasks capability, which servers "MUST NOT continue to
//     advertise ... under any protocol version that includes this
//     extension" (SEP-2663 §Backward Compatibility).
//
// Members are matched exactly; anything unreadable is passed unchanged.
func statelessCapabilities(caps json.RawMessage) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(caps, &m) != nil || m == nil {
		return caps
	}
	changed := false
	if _, ok := m["tasks"]; ok {
		delete(m, "tasks")
		changed = true
	}
	if raw, ok := m["extensions"]; ok {
		var ext map[string]json.RawMessage
		if json.Unmarshal(raw, &ext) == nil && ext != nil {
			if _, ok := ext[TasksExtension]; ok {
				delete(ext, TasksExtension)
				b, _ := json.Marshal(ext)
				m["extensions"] = b
				changed = true
			}
		}
	}
	if !changed {
		return caps
	}
	out, err := json.Marshal(m)
	if err != nil {
		return caps
	}
	return out
}
