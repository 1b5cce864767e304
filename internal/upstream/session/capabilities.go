package session

import (
	"encoding/json"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// TasksExtension is the Tasks extension's identifier (SEP-2663).
const TasksExtension = mcp.TasksExtension

// statelessCapabilities are the capabilities server/discover reports for an
// upstream this server reaches with one short-lived connection per
// 2026-07-28 request. They are the upstream's, less what that path cannot
// carry: the 2025-11-25 tasks capability. A 2025-11-25 task-augmented
// request would create its task on a per-request connection, where no
// tasks/get could find it; and servers "MUST NOT continue to advertise
// ... under any protocol version that includes this extension" (SEP-2663
// §Backward Compatibility).
//
// The Tasks extension itself passes when the upstream declares it: the
// requests that may create a task, and the task methods, are served on the
// caller's task host (taskhost.go), so the gateway carries the extension
// on the upstream's behalf — it "must not claim an extension the upstream
// lacks, nor hide one the gateway supports on the upstream's behalf"
// (issue 12 item 6). It is never added.
//
// Members are matched exactly; anything unreadable is passed unchanged.
func statelessCapabilities(caps json.RawMessage) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(caps, &m) != nil || m == nil {
		return caps
	}
	if _, ok := m["tasks"]; !ok {
		return caps
	}
	delete(m, "tasks")
	out, err := json.Marshal(m)
	if err != nil {
		return caps
	}
	return out
}
