package gateway

import (
	"net/http"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// protoInfo is the era decided once at the edge for one request.
type protoInfo struct {
	version string // the declared revision ("" when none was declared)
	era     mcp.Era
}

// nameMethods are the methods whose routing key is mirrored in Mcp-Name:
// params.name / params.uri (2026-07-28 streamable-http §Standard Request
// Headers) and params.taskId of the Tasks extension's methods (SEP-2663
// §Streamable HTTP: Routing Headers).
var nameMethods = map[string]bool{"tools/call": true, "resources/read": true, "prompts/get": true,
	"tasks/get": true, "tasks/update": true, "tasks/cancel": true}

func unsupported(v string) *failure {
	return &failure{status: http.StatusBadRequest, code: mcp.CodeUnsupportedProtocolVersion,
		msg:  "Unsupported protocol version " + quoteSafe(v) + ": use one of the supported versions",
		data: mcp.UnsupportedVersionData{Supported: mcp.Supported(), Requested: v}}
}

func mismatch(msg string) *failure {
	return &failure{status: http.StatusBadRequest, code: mcp.CodeHeaderMismatch, msg: "Header mismatch: " + msg}
}

// classifyPOST validates MCP-Protocol-Version against the body and, for
// 2026-07-28 requests, the Mcp-Method / Mcp-Name mirrors. The declared
// version never relaxes any other check: authentication and policy run the
// same for every revision.
func classifyPOST(h http.Header, msgs []mcp.Envelope, batch bool) (protoInfo, *failure) {
	hv := h.Get(mcp.HeaderProtocolVersion)
	if hv != "" && !mcp.IsSupported(hv) {
		return protoInfo{}, unsupported(hv)
	}
	info := protoInfo{version: hv, era: mcp.EraSession}
	for i := range msgs {
		m := &msgs[i]
		if m.MetaVersion == "" {
			if mcp.HasHeaderValidation(hv) && m.IsRequest() {
				return protoInfo{}, mismatch("MCP-Protocol-Version is " + hv + " but the body has no _meta " + mcp.MetaProtocolVersion)
			}
			continue
		}
		if !mcp.IsSupported(m.MetaVersion) {
			return protoInfo{}, unsupported(m.MetaVersion)
		}
		if hv == "" {
			return protoInfo{}, mismatch("MCP-Protocol-Version header is required and must equal _meta " + mcp.MetaProtocolVersion)
		}
		if hv != m.MetaVersion {
			return protoInfo{}, mismatch("MCP-Protocol-Version " + quoteSafe(hv) + " does not match _meta protocol version " + quoteSafe(m.MetaVersion))
		}
		info.version = m.MetaVersion
		if mcp.EraOf(m.MetaVersion) == mcp.EraStateless {
			info.era = mcp.EraStateless
		}
	}
	if batch && hv != "" && hv != mcp.V20250326 {
		return protoInfo{}, &failure{status: http.StatusBadRequest, code: mcp.CodeInvalidRequest,
			msg: "JSON-RPC batches are not allowed after protocol version 2025-03-26: send one message per POST"}
	}
	if mcp.HasHeaderValidation(info.version) {
		if batch {
			return protoInfo{}, &failure{status: http.StatusBadRequest, code: mcp.CodeInvalidRequest, msg: "JSON-RPC batches are not allowed in protocol version " + info.version}
		}
		if f := checkMirrors(h, &msgs[0]); f != nil {
			return protoInfo{}, f
		}
	}
	return info, nil
}

// checkMirrors enforces that Mcp-Method and Mcp-Name equal the body
// (2026-07-28 streamable-http §Server Validation: 400 and -32020).
func checkMirrors(h http.Header, m *mcp.Envelope) *failure {
	if m.Method == "" {
		return nil
	}
	hm := h.Values(mcp.HeaderMethod)
	switch {
	case len(hm) == 0:
		return mismatch("Mcp-Method header is required")
	case len(hm) > 1:
		return mismatch("Mcp-Method header appears more than once")
	case hm[0] != m.Method:
		return mismatch("Mcp-Method header value " + quoteSafe(hm[0]) + " does not match body value " + quoteSafe(m.Method))
	}
	hn := h.Values(mcp.HeaderName)
	if !nameMethods[m.Method] {
		if len(hn) > 0 {
			return mismatch("Mcp-Name header is not defined for method " + quoteSafe(m.Method))
		}
		return nil
	}
	if len(hn) != 1 {
		return mismatch("exactly one Mcp-Name header is required for " + m.Method)
	}
	name, ok := mcp.DecodeHeaderValue(hn[0])
	if !ok {
		return mismatch("Mcp-Name header has a malformed =?base64?…?= value")
	}
	if name != m.Name {
		return mismatch("Mcp-Name header value " + quoteSafe(name) + " does not match body value " + quoteSafe(m.Name))
	}
	return nil
}

// classifyStream validates the version header of a GET or DELETE. In the
// stateless era neither exists: 405.
func classifyStream(h http.Header) *failure {
	hv := h.Get(mcp.HeaderProtocolVersion)
	if hv == "" {
		return nil
	}
	if !mcp.IsSupported(hv) {
		return unsupported(hv)
	}
	if mcp.EraOf(hv) == mcp.EraStateless {
		return &failure{status: http.StatusMethodNotAllowed, code: mcp.CodeInvalidRequest,
			msg: "GET and DELETE are not part of protocol version " + hv + ": use POST (subscriptions/listen for notifications)"}
	}
	return nil
}
