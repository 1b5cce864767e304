package mcp

import "encoding/json"

// TasksExtension is the Tasks extension's identifier (SEP-2663,
// modelcontextprotocol/ext-tasks specification/draft/tasks.md).
const TasksExtension = "io.modelcontextprotocol/tasks"

// DeclaresTasks reports whether client capabilities (2026-07-28 _meta
// clientCapabilities, or initialize capabilities) declare the Tasks
// extension: extensions["io.modelcontextprotocol/tasks"] is an object.
// Member names are matched exactly.
func DeclaresTasks(caps json.RawMessage) bool {
	var c map[string]json.RawMessage
	if json.Unmarshal(caps, &c) != nil {
		return false
	}
	var ext map[string]json.RawMessage
	if json.Unmarshal(c["extensions"], &ext) != nil {
		return false
	}
	v := ext[TasksExtension]
	return len(v) > 0 && v[0] == '{'
}
