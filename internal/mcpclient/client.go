// Package mcpclient is a Streamable HTTP MCP client for both protocol
// eras: the session era (initialize, Mcp-Session-Id) and the stateless
// 2026-07-28 era (per-request _meta, Mcp-Method / Mcp-Name / Mcp-Param-*
// headers). Authentication is pluggable (Auth); internal/oauth provides it.
package mcpclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/mcpgate/mcpgate/internal/legacysse"
	"github.com/mcpgate/mcpgate/internal/mcp"
)

// Auth applies credentials to requests and reacts to 401/403 answers.
type Auth interface {
	Apply(ctx context.Context, req *http.Request, body []byte) error
	// Handle is called for 401 and 403 answers (and any answer carrying
	// a DPoP-Nonce); retry says whether to send the request again.
	Handle(ctx context.Context, resp *http.Response, op string) (retry bool, err error)
}

// Client is a one-shot MCP client over a Transport: it negotiates the era,
// numbers its requests and returns their results.
type Client struct {
	URL     string
	HTTP    *http.Client
	Auth    Auth
	Headers http.Header
	// Name and Version are the clientInfo.
	Name, Version string
	// ProtocolVersion forces a revision; "" negotiates (modern first,
	// then initialize).
	ProtocolVersion string
	// Extensions are the extensions this client declares it implements
	// (identifier → settings object): in the initialize request's
	// capabilities and in each 2026-07-28 request's
	// _meta["io.modelcontextprotocol/clientCapabilities"]. nil declares none.
	Extensions map[string]any
	// OnNotification receives server notifications (progress, logs).
	OnNotification func(method string, params json.RawMessage)

	once sync.Once
	t    *Transport
	// mu guards nextID, initParams and ServerInfo.
	mu         sync.Mutex
	nextID     int64
	initParams json.RawMessage
	ServerInfo json.RawMessage // initialize or server/discover result
}

func (c *Client) transport() *Transport {
	c.once.Do(func() {
		c.t = &Transport{URL: c.URL, HTTP: c.HTTP, Auth: c.Auth, Headers: c.Headers}
		c.t.OnSessionExpired = c.reinitialize
	})
	return c.t
}

// NegotiatedVersion is the negotiated protocol revision.
func (c *Client) NegotiatedVersion() string {
	_, v := c.transport().Protocol()
	return v
}

// Era is the negotiated protocol era.
func (c *Client) Era() mcp.Era {
	e, _ := c.transport().Protocol()
	return e
}

// capabilities are the client capabilities it declares: the extensions
// it implements, nothing else (it offers no roots, sampling or
// elicitation of its own).
func (c *Client) capabilities() map[string]any {
	if len(c.Extensions) == 0 {
		return map[string]any{}
	}
	return map[string]any{"extensions": c.Extensions}
}

func (c *Client) info() map[string]string {
	n, v := c.Name, c.Version
	if n == "" {
		n = "mcpgate"
	}
	if v == "" {
		v = "dev"
	}
	return map[string]string{"name": n, "version": v}
}

// Connect negotiates the era (Negotiate): server/discover first, then
// the initialize handshake, then HTTP+SSE.
func (c *Client) Connect(ctx context.Context) error {
	got, err := Negotiate(ctx, Negotiation{
		Transport: c.transport(), Version: c.ProtocolVersion, Meta: c.meta, Handshake: c.initialize,
	})
	if err != nil {
		return err
	}
	if got.Discover != nil {
		c.setInfo(got.Discover)
	}
	return nil
}

func (c *Client) setInfo(res json.RawMessage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ServerInfo = res
}

// initialize runs the handshake offering v (default the newest
// initialization-based revision) and returns the revision the server
// chose.
func (c *Client) initialize(ctx context.Context, v string) (string, error) {
	if v == "" {
		v = mcp.V20251125
	}
	params := map[string]any{
		"protocolVersion": v,
		"capabilities":    c.capabilities(),
		"clientInfo":      c.info(),
	}
	c.mu.Lock()
	c.initParams, _ = json.Marshal(params)
	c.mu.Unlock()
	return c.handshake(ctx, params)
}

func (c *Client) handshake(ctx context.Context, params any) (string, error) {
	res, err := c.Call(ctx, "initialize", params)
	if err != nil {
		return "", err
	}
	var r struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	if err := json.Unmarshal(res, &r); err != nil || r.ProtocolVersion == "" {
		return "", fmt.Errorf("initialize: the server's answer has no protocolVersion")
	}
	if !mcp.IsSupported(r.ProtocolVersion) {
		return "", fmt.Errorf("initialize: the server chose protocol version %q, which mcpgate does not speak (supported: %s)", r.ProtocolVersion, strings.Join(mcp.Supported(), ", "))
	}
	era, _ := c.transport().Protocol()
	c.transport().SetProtocol(era, r.ProtocolVersion)
	c.setInfo(res)
	return r.ProtocolVersion, c.Notify(ctx, "notifications/initialized", nil)
}

// reinitialize replays the handshake after the server dropped the session.
func (c *Client) reinitialize(ctx context.Context) error {
	c.mu.Lock()
	raw := c.initParams
	c.mu.Unlock()
	if raw == nil {
		return errors.New("no initialize to replay")
	}
	var p any
	_ = json.Unmarshal(raw, &p)
	_, err := c.handshake(ctx, p)
	return err
}

// Close ends the session (DELETE), tolerating servers without sessions.
func (c *Client) Close(ctx context.Context) { c.transport().Delete(ctx) }

// Notify sends a notification.
func (c *Client) Notify(ctx context.Context, method string, params any) error {
	msg := map[string]any{"jsonrpc": "2.0", "method": method}
	if params != nil {
		msg["params"] = params
	}
	raw, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	return c.transport().Post(ctx, raw, func([]byte) {})
}

// Call sends a request and returns its result, or an *RPCError.
func (c *Client) Call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	c.mu.Unlock()
	p, err := c.withMeta(method, params)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": p})
	if err != nil {
		return nil, err
	}
	var result json.RawMessage
	var rpcErr *RPCError
	var got bool
	err = c.transport().Post(ctx, raw, func(msg []byte) {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
			Result json.RawMessage `json:"result"`
			Error  *RPCError       `json:"error"`
		}
		if json.Unmarshal(msg, &m) != nil {
			return
		}
		switch {
		case m.Method != "" && m.ID == nil:
			if c.OnNotification != nil {
				c.OnNotification(m.Method, m.Params)
			}
		case m.Method != "":
			// a server request (sampling, elicitation, roots): this client
			// offers none of those capabilities
			c.answer(ctx, m.ID, mcp.CodeMethodNotFound, "mcpgate's one-shot client does not support "+m.Method)
		case string(m.ID) == fmt.Sprint(id):
			got, result, rpcErr = true, m.Result, m.Error
		}
	})
	if err != nil {
		return nil, err
	}
	switch {
	case !got:
		return nil, fmt.Errorf("%s: no response", method)
	case rpcErr != nil:
		return nil, rpcErr
	case result == nil:
		return nil, errors.New("the response has neither result nor error")
	}
	if method == "tools/list" {
		filtered, _ := c.transport().LearnTools(result)
		if c.Era() == mcp.EraStateless {
			// 2026-07-28: tools with invalid x-mcp-header annotations
			// are not offered
			result = filtered
		}
	}
	return result, nil
}

// withMeta adds the 2026-07-28 per-request _meta fields; a
// clientCapabilities the caller set in params stays.
func (c *Client) withMeta(method string, params any) (any, error) {
	era, version := c.transport().Protocol()
	if era != mcp.EraStateless {
		return params, nil
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	if string(raw) != "null" {
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("params of %s must be an object", method)
		}
	}
	meta, _ := m["_meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	for k, v := range c.meta(version) {
		if _, set := meta[k]; !set || k != MetaClientCapabilities {
			meta[k] = v
		}
	}
	m["_meta"] = meta
	return m, nil
}

// meta is this client's 2026-07-28 per-request _meta at version.
func (c *Client) meta(version string) map[string]any {
	return RequestMeta(version, c.info(), c.capabilities())
}

func (c *Client) answer(ctx context.Context, id json.RawMessage, code int, msg string) {
	_ = c.transport().Post(ctx, mcp.ErrorResponse(id, code, msg, nil), func([]byte) {})
}

// RPCError is a JSON-RPC error answer.
type RPCError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// UnmarshalJSON reads the code by value, as JSON.parse does (mcp.Int):
// an error coded -32042.0 is a -32042 error, not an unreadable answer.
func (e *RPCError) UnmarshalJSON(b []byte) error {
	var w struct {
		Code    mcp.Int         `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data,omitempty"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*e = RPCError{Code: int(w.Code), Message: w.Message, Data: w.Data}
	return nil
}

func (e *RPCError) Error() string {
	s := fmt.Sprintf("JSON-RPC error %d: %s", e.Code, e.Message)
	if len(e.Data) > 0 && string(e.Data) != "null" {
		s += " " + string(e.Data)
	}
	return s
}

// HTTPError is an answer that is not a JSON-RPC message: the one HTTP
// status error of the client half, whichever transport got it (the
// HTTP+SSE client's legacysse.StatusError is the same type).
type HTTPError = legacysse.StatusError
