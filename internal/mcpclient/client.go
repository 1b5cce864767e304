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
	"slices"
	"strings"
	"sync"

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

	once       sync.Once
	t          *Transport
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
	_, v := c.transport().Era()
	return v
}

// Modern reports whether the server speaks the stateless 2026-07-28 era.
func (c *Client) Modern() bool {
	m, _ := c.transport().Era()
	return m
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

// Connect negotiates the era: a modern server/discover first (unless a
// legacy version is forced). A DiscoverResult or an
// UnsupportedProtocolVersionError names the server's versions: the newest
// one mcpgate speaks is used, modern or not. Any other answer identifies a
// legacy server, which gets initialize.
func (c *Client) Connect(ctx context.Context) error {
	t := c.transport()
	pv := c.ProtocolVersion
	if pv != "" && mcp.EraOf(pv) != mcp.EraOf(mcp.V20260728) {
		return c.initialize(ctx, pv)
	}
	v := pv
	if v == "" {
		v = mcp.V20260728
	}
	t.SetEra(true, v)
	res, err := c.Call(ctx, "server/discover", map[string]any{})
	var offered []string
	switch {
	case err == nil:
		var d struct {
			SupportedVersions []string `json:"supportedVersions"`
		}
		_ = json.Unmarshal(res, &d)
		offered = d.SupportedVersions
		if len(offered) == 0 {
			// not a DiscoverResult (a legacy server answering an unknown
			// method with an empty result): use the handshake
			t.SetEra(false, "")
			return c.initialize(ctx, "")
		}
		c.setInfo(res)
		if slices.Contains(offered, v) {
			return nil
		}
	default:
		var re *RPCError
		if errors.As(err, &re) && re.Code == mcp.CodeUnsupportedProtocolVersion {
			var d mcp.UnsupportedVersionData
			_ = json.Unmarshal(re.Data, &d)
			offered = d.Supported
		} else if pv != "" || !fallbackToLegacy(err) {
			return err
		}
	}
	best := newestSupported(offered)
	switch {
	case best == "" && len(offered) > 0:
		return fmt.Errorf("the server speaks MCP %s; mcpgate speaks %s", strings.Join(offered, ", "), strings.Join(mcp.Supported(), ", "))
	case best != "" && mcp.EraOf(best) == mcp.EraOf(mcp.V20260728):
		if pv != "" && best != pv {
			return fmt.Errorf("the server does not speak MCP %s (it offers %s)", pv, strings.Join(offered, ", "))
		}
		t.SetEra(true, best)
		if err == nil {
			return nil
		}
		res, err := c.Call(ctx, "server/discover", map[string]any{})
		if err == nil {
			c.setInfo(res)
		}
		return err
	case pv != "":
		return fmt.Errorf("the server does not speak MCP %s (it offers %s)", pv, strings.Join(offered, ", "))
	}
	t.SetEra(false, "")
	return c.initialize(ctx, best)
}

func (c *Client) setInfo(res json.RawMessage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ServerInfo = res
}

// newestSupported is the newest of offered that mcpgate speaks.
func newestSupported(offered []string) string {
	for _, v := range mcp.Supported() { // newest first
		if slices.Contains(offered, v) {
			return v
		}
	}
	return ""
}

// fallbackToLegacy: anything but an auth failure or a network error
// identifies a legacy server.
func fallbackToLegacy(err error) bool {
	var he *HTTPError
	var re *RPCError
	switch {
	case errors.As(err, &re):
		return true
	case errors.As(err, &he):
		return he.Status >= 400 && he.Status < 500 && he.Status != 401 && he.Status != 403
	}
	return false
}

// initialize runs the legacy handshake offering version v (default the
// newest initialization-based revision).
func (c *Client) initialize(ctx context.Context, v string) error {
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

func (c *Client) handshake(ctx context.Context, params any) error {
	res, err := c.Call(ctx, "initialize", params)
	if err != nil {
		return err
	}
	var r struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	if err := json.Unmarshal(res, &r); err != nil || r.ProtocolVersion == "" {
		return fmt.Errorf("initialize: the server's answer has no protocolVersion")
	}
	if !mcp.IsSupported(r.ProtocolVersion) {
		return fmt.Errorf("initialize: the server chose protocol version %q, which mcpgate does not speak (supported: %s)", r.ProtocolVersion, strings.Join(mcp.Supported(), ", "))
	}
	c.transport().SetEra(false, r.ProtocolVersion)
	c.setInfo(res)
	return c.Notify(ctx, "notifications/initialized", nil)
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
	return c.handshake(ctx, p)
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
		if c.Modern() {
			// 2026-07-28: tools with invalid x-mcp-header annotations
			// are not offered
			result = filtered
		}
	}
	return result, nil
}

// withMeta adds the 2026-07-28 per-request _meta fields.
func (c *Client) withMeta(method string, params any) (any, error) {
	modern, version := c.transport().Era()
	if !modern {
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
	meta[mcp.MetaProtocolVersion] = version
	meta["io.modelcontextprotocol/clientInfo"] = c.info()
	if _, ok := meta["io.modelcontextprotocol/clientCapabilities"]; !ok {
		meta["io.modelcontextprotocol/clientCapabilities"] = c.capabilities()
	}
	m["_meta"] = meta
	return m, nil
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

// HTTPError is an answer that is not a JSON-RPC message.
type HTTPError struct {
	Status int
	Body   string
}

func (e *HTTPError) Error() string {
	b := strings.TrimSpace(e.Body)
	if len(b) > 300 {
		b = b[:300] + "…"
	}
	if b == "" {
		return fmt.Sprintf("the server answered HTTP %d", e.Status)
	}
	return fmt.Sprintf("the server answered HTTP %d: %s", e.Status, b)
}
