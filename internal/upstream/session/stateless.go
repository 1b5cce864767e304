package session

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// stateless serves a 2026-07-28 request (no session) over a short-lived
// upstream connection: the gateway performs the initialize handshake on
// the client's behalf, forwards the request, relays the answer, and closes
// the connection. Closing the client stream cancels the request (the child
// is shut down). A server request for input is answered with an
// InputRequiredResult and the connection waits for the client's retry
// (mrtr.go). A tools/call whose client declared the Tasks extension, and
// every tasks/get, tasks/update and tasks/cancel, are served on the
// caller's long-lived task host instead (taskhost.go).
func (s *Server) stateless(w http.ResponseWriter, r *http.Request, msg *mcp.Envelope, req *upstream.Request) {
	if !msg.IsRequest() {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	rl := &relay{s: s, w: w, r: r, msg: msg, info: req.Caller, filter: req.Filter(), caps: clientCaps(msg.Params)}
	in := readInputParams(msg.Params)
	switch {
	case in.State != "":
		p := s.parked.resume(in.State, hostKey(rl.info), msg.Method, msg.Name)
		if p == nil {
			mcp.WriteError(w, http.StatusBadRequest, msg.ID, mcp.CodeInvalidParams, "requestState is unknown, expired, already used, or was issued for another request: send the request again without requestState and inputResponses", nil)
			return
		}
		if p.host != nil {
			p.host.resume(rl, p, in)
			return
		}
		if !rl.resumeConn(p, in) {
			return
		}
	case onHost(msg, rl.caps):
		s.serveOnHost(rl, in)
		return
	default:
		if !rl.openConn(in) {
			return
		}
	}
	rl.run()
}

// resumeConn continues a parked per-request connection with the client's
// answer to its input request.
func (rl *relay) resumeConn(p *parked, in inputParams) bool {
	rl.useConn(p.conn, p.origID)
	if err := p.conn.Send(rl.r.Context(), inputAnswer(p.askID, in)); err != nil {
		_ = p.conn.Close()
		mcp.WriteError(rl.w, http.StatusBadGateway, rl.msg.ID, mcp.CodeUpstream, "the upstream MCP server is gone", nil)
		return false
	}
	return true
}

// inputAnswer is the upstream's input request askID answered with the
// client's inputResponses entry (or an error when it sent none).
func inputAnswer(askID json.RawMessage, in inputParams) []byte {
	if res := in.Responses[inputKey]; len(res) > 0 {
		return []byte(`{"jsonrpc":"2.0","id":` + string(askID) + `,"result":` + string(res) + `}`)
	}
	return mcp.ErrorResponse(askID, mcp.CodeInvalidParams, "the client sent no inputResponses entry for "+inputKey, nil)
}

// openConn dials a per-request connection, performs the handshake and
// forwards the request (server/discover is answered from the handshake).
// It reports false when the request has been answered.
func (rl *relay) openConn(in inputParams) bool {
	s, w, msg := rl.s, rl.w, rl.msg
	ctx := rl.r.Context()
	conn, err := s.o.Dial(context.WithoutCancel(ctx), rl.info)
	if upstream.RefuseDial(w, msg.ID, err) {
		return false
	}
	if err != nil {
		mcp.WriteError(w, http.StatusBadGateway, msg.ID, mcp.CodeUpstream, "could not start the upstream MCP server; see the gateway log", nil)
		return false
	}
	hctx, cancel := context.WithTimeout(ctx, s.o.RequestTimeout)
	initResult, err := handshake(hctx, conn, msg)
	cancel()
	if err != nil {
		_ = conn.Close()
		mcp.WriteError(w, http.StatusBadGateway, msg.ID, mcp.CodeUpstream, "the upstream MCP server did not complete initialization: "+err.Error(), nil)
		return false
	}
	if msg.Method == "server/discover" {
		_ = conn.Close()
		writeJSON(w, rl.filter.Apply(discoverResult(msg.ID, initResult)))
		return false
	}
	if err := conn.Send(ctx, forwardRaw(msg, in)); err != nil {
		_ = conn.Close()
		mcp.WriteError(w, http.StatusBadGateway, msg.ID, mcp.CodeUpstream, "the upstream MCP server is gone", nil)
		return false
	}
	rl.useConn(conn, msg.ID)
	return true
}

// forwardRaw is the request as the upstream gets it: without the
// inputResponses of a retry after a -32042 (elicitation.go). A
// tasks/update keeps them: they are its payload, the answers to the
// task's inputRequests.
func forwardRaw(msg *mcp.Envelope, in inputParams) []byte {
	if len(in.Responses) > 0 && msg.Method != "tasks/update" {
		return withoutInputResponses(msg.Raw)
	}
	return msg.Raw
}

// useConn makes rl relay the request origID on a per-request connection:
// the connection is closed when the relay ends, unless it was parked for
// the client's input.
func (rl *relay) useConn(conn upstream.Conn, origID json.RawMessage) {
	rl.origID = origID
	rl.send = conn.Send
	rl.next = func(ctx context.Context) ([]byte, bool, error) {
		m, err := conn.Recv(ctx)
		if err != nil {
			return nil, false, err
		}
		env, err := mcp.PeekOne(m)
		return m, err == nil && env.IsResponse() && sameID(env.ID, origID), nil
	}
	rl.end = func() { _ = conn.Close() }
	rl.park = func(askID json.RawMessage) (string, bool) {
		p := &parked{conn: conn, owner: hostKey(rl.info), method: rl.msg.Method, name: rl.msg.Name, origID: origID, askID: askID}
		return rl.s.parked.park(p, rl.s.o.RequestTimeout)
	}
}

func writeJSON(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

const handshakeID = `"mcpgate-handshake"`

// handshake performs initialize + notifications/initialized for a
// stateless request and returns the initialize result.
func handshake(ctx context.Context, conn upstream.Conn, msg *mcp.Envelope) (json.RawMessage, error) {
	clientInfo := json.RawMessage(`{"name":"mcpgate","version":"1"}`)
	var p struct {
		Meta struct {
			ClientInfo json.RawMessage `json:"io.modelcontextprotocol/clientInfo"`
			Caps       json.RawMessage `json:"io.modelcontextprotocol/clientCapabilities"`
		} `json:"_meta"`
	}
	caps := json.RawMessage(`{}`)
	if json.Unmarshal(msg.Params, &p) == nil {
		if len(p.Meta.ClientInfo) > 0 {
			clientInfo = p.Meta.ClientInfo
		}
		if len(p.Meta.Caps) > 0 {
			caps = p.Meta.Caps
		}
	}
	init := `{"jsonrpc":"2.0","id":` + handshakeID + `,"method":"initialize","params":{"protocolVersion":"` + mcp.V20251125 +
		`","capabilities":` + string(caps) + `,"clientInfo":` + string(clientInfo) + `}}`
	if err := conn.Send(ctx, []byte(init)); err != nil {
		return nil, err
	}
	for {
		m, err := conn.Recv(ctx)
		if err != nil {
			return nil, err
		}
		env, err := mcp.PeekOne(m)
		if err != nil || !env.IsResponse() || string(env.ID) != handshakeID {
			continue
		}
		if env.Error != nil {
			return nil, errorText(env.Error)
		}
		if err := conn.Send(ctx, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)); err != nil {
			return nil, err
		}
		return env.Result, nil
	}
}

type rpcErr string

func (e rpcErr) Error() string { return string(e) }

func errorText(raw json.RawMessage) error {
	var e struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(raw, &e)
	return rpcErr("initialize failed: " + e.Message)
}

// discoverResult answers server/discover from the initialize result.
func discoverResult(id json.RawMessage, init json.RawMessage) []byte {
	var r struct {
		Capabilities json.RawMessage `json:"capabilities"`
		ServerInfo   json.RawMessage `json:"serverInfo"`
		Instructions string          `json:"instructions,omitempty"`
	}
	_ = json.Unmarshal(init, &r)
	res, _ := json.Marshal(map[string]any{
		"supportedVersions": mcp.Supported(),
		"capabilities":      statelessCapabilities(r.Capabilities), // capabilities.go
		"serverInfo":        r.ServerInfo,
		// "Servers MUST include caching hints on results ... returned by
		// server/discover" (2026-07-28 server/utilities/caching): this one
		// is built for one caller's connection, so it is private and not
		// kept.
		"ttlMs":      0,
		"cacheScope": "private",
		"resultType": "complete", // relay.go, withResultType
	})
	out, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "result": json.RawMessage(res)})
	return out
}
