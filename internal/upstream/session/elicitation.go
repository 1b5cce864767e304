package session

import (
	"encoding/json"
	"strconv"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// URL-mode elicitation across the eras, for a 2026-07-28 client of a
// session-era upstream (stateless.go). The upstream speaks 2025-11-25: it
// asks with an elicitation/create request (mode "url", with an
// elicitationId), or answers the request with a -32042
// URLElicitationRequired error, and may send
// notifications/elicitation/complete. The 2026-07-28 client knows none of
// these three: "Implementations of this protocol version MUST NOT emit
// these codes: … -32042 — URL elicitation required (2025-11-25 only)", and
// the changelog removes "the notifications/elicitation/complete
// notification and the elicitationId field of URL mode elicitation
// requests … the client learns the outcome of an out-of-band interaction
// by retrying the original request". So:
//
//   - the request becomes an input request of an InputRequiredResult
//     (mrtr.go) without its elicitationId;
//   - the -32042 error becomes an InputRequiredResult whose inputRequests
//     are its elicitations, without requestState: the connection is done,
//     and the client's retry is simply sent again (its inputResponses
//     removed: the upstream never asked for them in that form);
//   - the completion notification is dropped.
//
// A client that did not declare elicitation.url gets neither: "Servers
// MUST NOT send an inputRequests that the client has not declared support
// for". The upstream's request is answered -32602 as the 2025-11-25 text
// has clients do ("Server sends an elicitation/create request with a mode
// not declared in client capabilities: -32602 (Invalid params)"), and its
// -32042 becomes MissingRequiredClientCapability naming elicitation.url.

// clientCaps returns a 2026-07-28 request's
// _meta["io.modelcontextprotocol/clientCapabilities"].
func clientCaps(params json.RawMessage) json.RawMessage {
	var p struct {
		Meta map[string]json.RawMessage `json:"_meta"`
	}
	if json.Unmarshal(params, &p) != nil {
		return nil
	}
	return p.Meta["io.modelcontextprotocol/clientCapabilities"]
}

// isURLElicitation reports whether an elicitation/create request's params
// ask for URL mode, as mcp.URLElicitations reads them (exact member names,
// escapes decoded); params it cannot read count as URL mode (fail closed).
func isURLElicitation(params json.RawMessage) bool {
	found, ok := mcp.URLElicitations([]byte(`{"method":"elicitation/create","params":` + string(params) + `}`))
	return !ok || len(found) > 0
}

// modernElicitParams removes the 2025-11-25 elicitationId from URL-mode
// params.
func modernElicitParams(params json.RawMessage) json.RawMessage {
	var p map[string]json.RawMessage
	if json.Unmarshal(params, &p) != nil || p["elicitationId"] == nil || !isURLElicitation(params) {
		return params
	}
	delete(p, "elicitationId")
	out, err := json.Marshal(p)
	if err != nil {
		return params
	}
	return out
}

// urlRequired rewrites the upstream's -32042 answer m to the client's
// request id for a 2026-07-28 client; ok is false when m is not one.
func urlRequired(m []byte, id json.RawMessage, caps json.RawMessage) (out []byte, ok bool) {
	var r struct {
		Error *struct {
			Code    json.RawMessage `json:"code"` // by value: -32042.0 is -32042 (mcp.CodeIs)
			Message string          `json:"message"`
			Data    json.RawMessage `json:"data"`
		} `json:"error"`
	}
	if json.Unmarshal(m, &r) != nil || r.Error == nil {
		return nil, false
	}
	if is, _ := mcp.CodeIs(r.Error.Code, mcp.CodeURLElicitationRequired); !is {
		return nil, false
	}
	if !mcp.DeclaresURLElicitation(caps) {
		return mcp.ErrorResponse(id, mcp.CodeMissingRequiredClientCapability,
			"the server needs a URL-mode elicitation, which the client did not declare (clientCapabilities.elicitation.url): "+r.Error.Message,
			map[string]any{"requiredCapabilities": map[string]any{"elicitation": map[string]any{"url": map[string]any{}}}}), true
	}
	var d struct {
		Elicitations []json.RawMessage `json:"elicitations"`
	}
	_ = json.Unmarshal(r.Error.Data, &d)
	reqs := map[string]any{}
	for i, e := range d.Elicitations {
		reqs["url-elicitation-"+strconv.Itoa(i+1)] = map[string]any{"method": "elicitation/create", "params": modernElicitParams(e)}
	}
	if len(reqs) == 0 {
		// "The error MUST include a list of elicitations": without one
		// there is nothing to ask, and -32042 must not reach this client.
		return mcp.ErrorResponse(id, mcp.CodeUpstream, "the upstream MCP server required a URL elicitation but named none: "+r.Error.Message, nil), true
	}
	out, _ = json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "result": map[string]any{
		"resultType":    "input_required",
		"inputRequests": reqs,
	}})
	return out, true
}

// withoutInputResponses removes params.inputResponses from a retried
// request that carries no requestState (the retry after a translated
// -32042): the session-era upstream gets the request as it first saw it.
func withoutInputResponses(raw []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return raw
	}
	var p map[string]json.RawMessage
	if json.Unmarshal(m["params"], &p) != nil || p["inputResponses"] == nil {
		return raw
	}
	delete(p, "inputResponses")
	m["params"], _ = json.Marshal(p)
	out, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return out
}
