package gateway

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// The answer to a caller without a connection, by what the client can
// show (MCP "URL Mode Elicitation for OAuth Flows", 2025-11-25 and
// 2026-07-28):
//
//   - 2026-07-28, the request declares elicitation.url in
//     _meta clientCapabilities: an InputRequiredResult whose one input
//     request is an elicitation/create in url mode (no elicitationId: the
//     2026-07-28 changelog removed it; the client learns the outcome by
//     retrying);
//   - 2025-11-25 (the only session revision with URL mode): the -32042
//     URLElicitationRequired error with the elicitation in
//     data.elicitations — on initialize only when its capabilities declare
//     elicitation.url; later requests of a session cannot say, and the
//     error's message names the URL for a client that shows errors;
//   - any other client: a tools/call gets a tool result with isError whose
//     text tells the user the URL; other requests a JSON-RPC error whose
//     message does.
//
// The URL is the gateway's own connect URL (connect_flow.go), never the
// upstream's authorization endpoint: the gateway checks who opens it.

// connectAnswer answers the exchange with cr.
func (x *exchange) connectAnswer(cr *connectRequired) {
	e := x.firstRequest()
	if e == nil {
		x.refuse(decError, &failure{status: http.StatusBadGateway, code: mcp.CodeUpstream, msg: cr.Error()})
		return
	}
	msg := "Connect your " + cr.upstream + " account to continue: open " + cr.url
	elicit := map[string]any{"mode": "url", "url": cr.url, "message": "Connect your " + cr.upstream + " account to continue."}
	x.dec = decDeny
	x.audit(e.Method, e.Name, "deny", "connected account required", http.StatusOK)
	era := x.era()
	switch {
	case era == mcp.EraStateless && mcp.DeclaresURLElicitation(metaClientCaps(e.Params)):
		x.result(e.ID, map[string]any{"resultType": "input_required", "inputRequests": map[string]any{
			"connect-" + cr.upstream: map[string]any{"method": "elicitation/create", "params": elicit}}})
	case era == mcp.EraSession && x.sessionDeclaresURL(e):
		elicit["elicitationId"] = randomToken()
		mcp.WriteError(x.w, http.StatusOK, e.ID, mcp.CodeURLElicitationRequired, msg,
			map[string]any{"elicitations": []any{elicit}})
	case e.Method == "tools/call":
		x.result(e.ID, map[string]any{"isError": true, "content": []any{map[string]any{"type": "text", "text": msg}}})
	default:
		mcp.WriteError(x.w, http.StatusOK, e.ID, mcp.CodeUpstream, msg, map[string]any{"url": cr.url})
	}
}

// sessionDeclaresURL: a 2025-11-25 client that declared (initialize) or
// may have declared (a later request) URL-mode elicitation.
func (x *exchange) sessionDeclaresURL(e *envelopeView) bool {
	if e.Method == "initialize" {
		var p struct {
			ProtocolVersion string          `json:"protocolVersion"`
			Capabilities    json.RawMessage `json:"capabilities"`
		}
		_ = json.Unmarshal(e.Params, &p)
		return p.ProtocolVersion >= mcp.V20251125 && mcp.DeclaresURLElicitation(p.Capabilities)
	}
	return x.r.Header.Get(mcp.HeaderProtocolVersion) == mcp.V20251125
}

// envelopeView is the request the answer is for.
type envelopeView struct {
	ID     json.RawMessage
	Method string
	Name   string
	Params json.RawMessage
}

func (x *exchange) firstRequest() *envelopeView {
	for i := range x.msgs {
		if m := &x.msgs[i]; m.IsRequest() {
			return &envelopeView{ID: m.ID, Method: m.Method, Name: m.Name, Params: m.Params}
		}
	}
	return nil
}

// result writes a JSON-RPC result for id.
func (x *exchange) result(id json.RawMessage, result any) {
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "result": result})
	mcp.WriteJSON(x.w, http.StatusOK, body)
}

// metaClientCaps is a 2026-07-28 request's
// _meta["io.modelcontextprotocol/clientCapabilities"].
func metaClientCaps(params json.RawMessage) json.RawMessage {
	var p struct {
		Meta map[string]json.RawMessage `json:"_meta"`
	}
	if json.Unmarshal(params, &p) != nil {
		return nil
	}
	return p.Meta["io.modelcontextprotocol/clientCapabilities"]
}

// asConnectRequired reports err's connect URL, when it is one.
func asConnectRequired(err error) (*connectRequired, bool) {
	var cr *connectRequired
	return cr, errors.As(err, &cr)
}
