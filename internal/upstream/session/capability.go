package session

import (
	"encoding/json"
	"net/http"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// missingCapability returns, as a ClientCapabilities object, the capability
// that the upstream's request for input (method, params) needs and that
// the 2026-07-28 request with params reqParams did not declare in
// _meta["io.modelcontextprotocol/clientCapabilities"]; nil when it was
// declared. The gateway serves such a request as its server, and "A
// server MUST NOT rely on capabilities the client has not declared. If
// processing a request requires a capability the client did not include
// in io.modelcontextprotocol/clientCapabilities, the server MUST return a
// MissingRequiredClientCapabilityError (-32021) whose
// data.requiredCapabilities lists the missing capabilities. On HTTP, the
// response status MUST be 400 Bad Request." (2026-07-28 basic/index); and
// "Servers MUST NOT send an inputRequests that the client has not declared
// support for in its capabilities" (basic/patterns/mrtr).
func missingCapability(reqParams json.RawMessage, method string, params json.RawMessage) map[string]any {
	var p struct {
		Meta struct {
			Caps map[string]json.RawMessage `json:"io.modelcontextprotocol/clientCapabilities"`
		} `json:"_meta"`
	}
	_ = json.Unmarshal(reqParams, &p)
	caps := p.Meta.Caps
	switch method {
	case "sampling/createMessage":
		if caps["sampling"] == nil {
			return map[string]any{"sampling": map[string]any{}}
		}
	case "roots/list":
		if caps["roots"] == nil {
			return map[string]any{"roots": map[string]any{}}
		}
	case "elicitation/create":
		var ask struct {
			Mode string `json:"mode"`
		}
		_ = json.Unmarshal(params, &ask)
		mode := ask.Mode
		if mode == "" {
			mode = "form"
		}
		var modes map[string]json.RawMessage
		if caps["elicitation"] == nil || json.Unmarshal(caps["elicitation"], &modes) != nil {
			return map[string]any{"elicitation": map[string]any{mode: map[string]any{}}}
		}
		// "an empty capabilities object is equivalent to declaring
		// support for form mode only" (2026-07-28 client/elicitation)
		if len(modes) == 0 {
			modes = map[string]json.RawMessage{"form": json.RawMessage(`{}`)}
		}
		if modes[mode] == nil {
			return map[string]any{"elicitation": map[string]any{mode: map[string]any{}}}
		}
	}
	return nil
}

// refuseCapability answers the 2026-07-28 request id with
// MissingRequiredClientCapabilityError: 400 on a JSON reply, an error event
// on an SSE reply whose status has gone out.
func refuseCapability(w http.ResponseWriter, sse bool, final func([]byte), id json.RawMessage, need map[string]any) {
	msg := mcp.ErrorResponse(id, mcp.CodeMissingRequiredClientCapability,
		"the upstream MCP server needs a client capability this request did not declare",
		mcp.MissingCapabilityData{RequiredCapabilities: need})
	if !sse {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
	}
	final(msg)
}
