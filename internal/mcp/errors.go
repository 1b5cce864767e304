package mcp

import (
	"encoding/json"
)

// JSON-RPC 2.0 error codes (-32700, -32600 to -32603), used by every era.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
)

// Error codes the MCP specification defines (2026-07-28 basic/index
// §Error Codes): "-32020 to -32099 — reserved for the MCP specification.
// [...] Implementations MUST NOT emit any code from this sub-range that is
// not defined by this specification and MUST use defined codes only with
// their specified meanings." These three are all it defines.
const (
	// CodeHeaderMismatch: HTTP headers do not match the body (HTTP 400).
	CodeHeaderMismatch = -32020
	// CodeMissingRequiredClientCapability: processing the request needs a
	// client capability the request did not declare (HTTP 400; data
	// MissingCapabilityData).
	CodeMissingRequiredClientCapability = -32021
	// CodeUnsupportedProtocolVersion: the request's revision is not
	// supported (HTTP 400; data UnsupportedVersionData).
	CodeUnsupportedProtocolVersion = -32022
)

// mcpgate's own conditions, which neither JSON-RPC nor MCP names. "New
// error codes for purposes not defined by this specification SHOULD be
// allocated outside the JSON-RPC reserved range (-32768 to -32000)"
// (2026-07-28 basic/index §Error Codes), so each is the HTTP status the
// condition is answered with, times -100: AppCode(status). They are valid
// in every era; CodeFor is the one place that tells a client of an earlier
// revision the legacy code it knows instead.
const (
	// CodeUnauthorized: no usable access token (HTTP 401).
	CodeUnauthorized = -40100
	// CodeForbidden: the token lacks a scope or claim, or the policy
	// denies the operation (HTTP 403).
	CodeForbidden = -40300
	// CodeRateLimited: a per-subject limit refused the request (HTTP 429).
	CodeRateLimited = -42900
	// CodeUpstream: the upstream MCP server failed, vanished or sent what
	// the gateway cannot relay (HTTP 502).
	CodeUpstream = -50200
	// CodeUnavailable: the gateway cannot take the request now — shutting
	// down, a shared budget is used up (HTTP 503).
	CodeUnavailable = -50300
	// CodeUpstreamTimeout: the upstream did not answer in time (HTTP 504).
	CodeUpstreamTimeout = -50400
)

// Legacy codes (-32000 to -32019) mcpgate reported to clients of the 2025
// revisions before the 2026-07-28 allocation policy: "Codes in this
// sub-range were allocated by implementations before this policy was
// introduced. New codes MUST NOT be allocated in this sub-range, and new
// implementations SHOULD NOT use codes from this sub-range at all." Only
// CodeFor returns them, and only for a peer of a 2025 (or earlier) era.
const (
	legacyUnauthorized = -32001
	legacyForbidden    = -32003
)

// AppCode is mcpgate's code for a refusal answered with HTTP error status
// (400–599): -100 × status (-40100 for 401, -50300 for 503), outside the
// JSON-RPC reserved range. Any other status counts as 500 (a 3xx would
// land inside it: -32000 for 320).
func AppCode(status int) int {
	if status < 400 || status > 599 {
		status = 500
	}
	return -100 * status
}

// CodeFor returns the code that reports code to a peer of era. Requests of
// the 2026-07-28 era (and of revisions unknown to mcpgate, which can only
// be newer) get code itself: a JSON-RPC, MCP-defined or application code.
// Clients of the 2025 revisions keep the legacy codes mcpgate has always
// sent them for authentication (-32001) and authorization (-32003)
// refusals; every other code is the same in all eras, and no era ever gets
// a code from the reserved -32020…-32099 that the specification does not
// define.
func CodeFor(era Era, code int) int {
	if era == EraStateless {
		return code
	}
	switch code {
	case CodeUnauthorized:
		return legacyUnauthorized
	case CodeForbidden:
		return legacyForbidden
	}
	return code
}

// ErrorEra is the era whose error-code rules govern the answer to a
// request that declared revision v (its MCP-Protocol-Version header or
// _meta protocol version; "" when it declared none, which the transport
// reads as 2025-03-26). An unknown revision gets the current rules.
func ErrorEra(v string) Era {
	if v == "" {
		return EraSession
	}
	if e := EraOf(v); e != EraUnknown {
		return e
	}
	return EraStateless
}

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

// MissingCapabilityData is the data member of
// CodeMissingRequiredClientCapability: "data.requiredCapabilities lists the
// missing capabilities" (2026-07-28 basic/index), a ClientCapabilities
// object.
type MissingCapabilityData struct {
	RequiredCapabilities map[string]any `json:"requiredCapabilities"`
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
