package session

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// stateless serves a 2026-07-28 request (no session) over a short-lived
// upstream connection: the gateway performs the initialize handshake on
// the client's behalf, forwards the request, relays the answer, and closes
// the connection. Closing the client stream cancels the request (the child
// is shut down). A server request for input is answered with an
// InputRequiredResult and the connection waits for the client's retry
// (mrtr.go).
func (s *Server) stateless(w http.ResponseWriter, r *http.Request, msg *mcp.Envelope, req *upstream.Request) {
	if !msg.IsRequest() {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	ctx := r.Context()
	info := req.Caller
	filter := req.Filter()
	var (
		conn   upstream.Conn
		origID = msg.ID // the id the upstream knows the request by
	)
	caps := clientCaps(msg.Params)
	in := readInputParams(msg.Params)
	if in.State != "" {
		p := s.parked.resume(in.State, info.Owner, msg.Method, msg.Name)
		if p == nil {
			mcp.WriteError(w, http.StatusBadRequest, msg.ID, mcp.CodeInvalidParams, "requestState is unknown, expired, already used, or was issued for another request: send the request again without requestState and inputResponses", nil)

			return
		}
		conn, origID = p.conn, p.origID
		answer := mcp.ErrorResponse(p.askID, mcp.CodeInvalidParams, "the client sent no inputResponses entry for "+inputKey, nil)
		if res := in.Responses[inputKey]; len(res) > 0 {
			answer = []byte(`{"jsonrpc":"2.0","id":` + string(p.askID) + `,"result":` + string(res) + `}`)
		}
		if err := conn.Send(ctx, answer); err != nil {
			_ = conn.Close()
			mcp.WriteError(w, http.StatusBadGateway, msg.ID, mcp.CodeUpstream, "the upstream MCP server is gone", nil)
			return
		}
	} else {
		c, err := s.o.Dial(context.WithoutCancel(ctx), info)
		if upstream.RefuseDial(w, msg.ID, err) {
			return
		}
		if err != nil {
			mcp.WriteError(w, http.StatusBadGateway, msg.ID, mcp.CodeUpstream, "could not start the upstream MCP server; see the gateway log", nil)
			return
		}
		conn = c
		hctx, cancel := context.WithTimeout(ctx, s.o.RequestTimeout)
		initResult, err := handshake(hctx, conn, msg)
		cancel()
		if err != nil {
			_ = conn.Close()
			mcp.WriteError(w, http.StatusBadGateway, msg.ID, mcp.CodeUpstream, "the upstream MCP server did not complete initialization: "+err.Error(), nil)
			return
		}
		if msg.Method == "server/discover" {
			_ = conn.Close()
			writeJSON(w, filter.Apply(discoverResult(msg.ID, initResult)))
			return
		}
		raw := msg.Raw
		if len(in.Responses) > 0 {
			raw = withoutInputResponses(raw) // a retry after a -32042 (elicitation.go)
		}
		if err := conn.Send(ctx, raw); err != nil {
			_ = conn.Close()
			mcp.WriteError(w, http.StatusBadGateway, msg.ID, mcp.CodeUpstream, "the upstream MCP server is gone", nil)
			return
		}
	}
	parkedNow := false
	defer func() {
		if !parkedNow {
			_ = conn.Close()
		}
	}()
	s.o.Streams.Add(1)
	defer s.o.Streams.Add(-1)
	sse := wantsSSE(r)
	var rc *http.ResponseController
	if sse {
		sseHeaders(w)
		w.WriteHeader(http.StatusOK)
		rc = http.NewResponseController(w)
		_ = rc.Flush()
	}
	// The wait for the answer ends after RequestTimeout, in JSON and SSE
	// replies alike (the connection, and with it the child, is then
	// closed); on an SSE reply a progress notification restarts it.
	rctx, stopWait := context.WithCancel(ctx)
	defer stopWait()
	wait := time.AfterFunc(s.o.RequestTimeout, stopWait)
	defer wait.Stop()
	final := func(m []byte) {
		if sse {
			_ = mcp.WriteEvent(w, mcp.Event{Event: "message", Data: m})
			_ = rc.Flush()
		} else {
			writeJSON(w, m)
		}
	}
	for {
		m, err := conn.Recv(rctx)
		if err != nil {
			if ctx.Err() != nil {
				return // the client closed the stream: cancelled
			}
			status, text := http.StatusBadGateway, "the upstream MCP server ended before answering"
			if rctx.Err() != nil {
				status, text = http.StatusGatewayTimeout, "the upstream MCP server did not answer within "+s.o.RequestTimeout.String()
			}
			errMsg := mcp.ErrorResponse(msg.ID, mcp.AppCode(status), text, nil)
			if sse {
				_ = mcp.WriteEvent(w, mcp.Event{Event: "message", Data: errMsg})
				_ = rc.Flush()
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write(errMsg)
			return
		}
		env, err := mcp.PeekOne(m)
		if err != nil {
			continue
		}
		if env.IsRequest() {
			// The client cannot answer on this exchange: input requests
			// become an InputRequiredResult, ping is answered here, and
			// anything else is refused to the upstream.
			switch {
			case env.Method == "elicitation/create" && isURLElicitation(env.Params) && !mcp.DeclaresURLElicitation(caps):
				_ = conn.Send(ctx, mcp.ErrorResponse(env.ID, mcp.CodeInvalidParams, "the client did not declare URL-mode elicitation", nil))
			case inputMethods[env.Method]:
				if need := missingCapability(msg.Params, env.Method, env.Params); need != nil {
					refuseCapability(w, sse, final, msg.ID, need)
					return
				}
				if env.Method == "elicitation/create" {
					env.Params = modernElicitParams(env.Params)
				}
				p := &parked{conn: conn, owner: info.Owner, method: msg.Method, name: msg.Name, origID: origID, askID: env.ID}
				state, ok := s.parked.park(p, s.o.RequestTimeout)
				if !ok {
					final(mcp.ErrorResponse(msg.ID, mcp.CodeUnavailable, "the server asked for client input, but too many requests are already waiting for theirs; retry later", nil))
					return
				}
				parkedNow = true
				final(filter.Apply(inputRequired(msg.ID, env.Method, env.Params, state)))
				return
			case env.Method == "ping":
				_ = conn.Send(ctx, []byte(`{"jsonrpc":"2.0","id":`+string(env.ID)+`,"result":{}}`))
			default:
				_ = conn.Send(ctx, mcp.ErrorResponse(env.ID, mcp.CodeMethodNotFound, "the client of a 2026-07-28 request cannot answer "+env.Method, nil))
			}
			continue
		}
		if env.IsResponse() && sameID(env.ID, origID) {
			if !sameID(origID, msg.ID) {
				m = mcp.WithID(m, msg.ID)
			}
			if out, ok := urlRequired(m, msg.ID, caps); ok {
				m = out
			}
			final(filter.Apply(m))
			return
		}
		if env.Method == mcp.MethodElicitationComplete {
			continue // not part of 2026-07-28 (elicitation.go)
		}
		if sse {
			if env.Method == "notifications/progress" && wait.Stop() {
				wait.Reset(s.o.RequestTimeout)
			}
			_ = mcp.WriteEvent(w, mcp.Event{Event: "message", Data: filter.Apply(m)})
			_ = rc.Flush()
		}
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
	})
	out, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "result": json.RawMessage(res)})
	return out
}
