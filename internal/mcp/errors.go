package mcp

import (
	"encoding/json"
)

// JSON-RPC 2.0 and MCP error codes.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
	// CodeUnauthorized is the MCP DPoP profile's code for an authentication
	// failure carried in a JSON-RPC body (ext-auth DPoP §errors).
	CodeUnauthorized = -32001
	// CodeForbidden accompanies 403 responses (insufficient scope, policy).
	CodeForbidden = -32003
	// CodeHeaderMismatch: HTTP headers do not match the body (2026-07-28).
	CodeHeaderMismatch = -32020
	// CodeUnsupportedProtocolVersion (2026-07-28 versioning).
	CodeUnsupportedProtocolVersion = -32022
	// CodeUpstream is mcpgate's code for an upstream that failed or vanished.
	CodeUpstream = -32050
	// CodeRateLimited is mcpgate's code for a request refused by a limit.
	CodeRateLimited = -32029
)

// RPCError is the error object of a JSON-RPC response.
type RPCError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

type errorResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   RPCError        `json:"error"`
}

// ErrorResponse builds a JSON-RPC error response. A nil id is written as
// null, as JSON-RPC requires when the id could not be determined.
func ErrorResponse(id json.RawMessage, code int, message string, data any) []byte {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	b, err := json.Marshal(errorResponse{JSONRPC: "2.0", ID: id, Error: RPCError{Code: code, Message: message, Data: data}})
	if err != nil {
		// data failed to marshal: drop it rather than lose the response.
		b, _ = json.Marshal(errorResponse{JSONRPC: "2.0", ID: id, Error: RPCError{Code: code, Message: message}})
	}
	return b
}

// UnsupportedVersionData is the data member of CodeUnsupportedProtocolVersion.
type UnsupportedVersionData struct {
	Supported []string `json:"supported"`
	Requested string   `json:"requested"`
}

// WithID returns msg, a JSON-RPC message, with its id replaced (a proxy
// that sends a request under its own id answers with the caller's). msg is
// returned unchanged if it is not a JSON object.
func WithID(msg []byte, id json.RawMessage) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(msg, &m) != nil {
		return msg
	}
	m["id"] = id
	out, err := json.Marshal(m)
	if err != nil {
		return msg
	}
	return out
}
