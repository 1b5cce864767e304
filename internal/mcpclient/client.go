// Package mcpclient is a Streamable HTTP MCP client for both protocol
// eras: the session era (initialize, Mcp-Session-Id) and the stateless
// 2026-07-28 era (per-request _meta, Mcp-Method / Mcp-Name / Mcp-Param-*
// headers). Authentication is pluggable (Auth); internal/oauth provides it.
package mcpclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// Auth applies credentials to requests and reacts to 401/403 answers.
type Auth interface {
	Apply(ctx context.Context, req *http.Request, body []byte) error
	// Handle is called for 401 and 403 answers (and any answer carrying
	// a DPoP-Nonce); retry says whether to send the request again.
	Handle(ctx context.Context, resp *http.Response, op string) (retry bool, err error)
}

// Client talks to one MCP endpoint.
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
	// OnNotification receives server notifications (progress, logs).
	OnNotification func(method string, params json.RawMessage)

	mu          sync.Mutex
	version     string
	modern      bool
	sessionID   string
	nextID      int64
	initParams  json.RawMessage
	ServerInfo  json.RawMessage // initialize or server/discover result
	toolHeaders map[string]map[string]string
}

// RPCError is a JSON-RPC error answer.
type RPCError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
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

// Version is the negotiated protocol revision.
func (c *Client) NegotiatedVersion() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

// Modern reports whether the server speaks the stateless 2026-07-28 era.
func (c *Client) Modern() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.modern
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
	pv := c.ProtocolVersion
	if pv != "" && mcp.EraOf(pv) != mcp.EraOf(mcp.V20260728) {
		return c.initialize(ctx, pv)
	}
	v := pv
	if v == "" {
		v = mcp.V20260728
	}
	c.setEra(true, v)
	res, err := c.Call(ctx, "server/discover", map[string]any{})
	var offered []string
	switch {
	case err == nil:
		var d struct {
			SupportedVersions []string `json:"supportedVersions"`
		}
		_ = json.Unmarshal(res, &d)
		offered = d.SupportedVersions
		c.mu.Lock()
		c.ServerInfo = res
		c.mu.Unlock()
		if len(offered) == 0 || slices.Contains(offered, v) {
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
		c.setEra(true, best)
		if err == nil {
			return nil
		}
		res, err := c.Call(ctx, "server/discover", map[string]any{})
		if err == nil {
			c.mu.Lock()
			c.ServerInfo = res
			c.mu.Unlock()
		}
		return err
	case pv != "":
		return fmt.Errorf("the server does not speak MCP %s (it offers %s)", pv, strings.Join(offered, ", "))
	}
	c.setEra(false, "")
	return c.initialize(ctx, best)
}

func (c *Client) setEra(modern bool, version string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.modern, c.version = modern, version
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
		"capabilities":    map[string]any{},
		"clientInfo":      c.info(),
	}
	c.initParams, _ = json.Marshal(params)
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
	c.mu.Lock()
	c.version = r.ProtocolVersion
	c.ServerInfo = res
	c.mu.Unlock()
	return c.Notify(ctx, "notifications/initialized", nil)
}

// Close ends the session (DELETE), tolerating servers without sessions.
func (c *Client) Close(ctx context.Context) {
	c.mu.Lock()
	sid := c.sessionID
	c.mu.Unlock()
	if sid == "" {
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, c.URL, nil)
	if err != nil {
		return
	}
	c.decorate(req, nil, "")
	if c.Auth != nil {
		_ = c.Auth.Apply(ctx, req, nil)
	}
	if resp, err := c.HTTP.Do(req); err == nil {
		resp.Body.Close()
	}
}

// Notify sends a notification.
func (c *Client) Notify(ctx context.Context, method string, params any) error {
	msg := map[string]any{"jsonrpc": "2.0", "method": method}
	if params != nil {
		msg["params"] = params
	}
	_, err := c.roundTrip(ctx, msg, method, nil)
	return err
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
	msg := map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": p}
	idRaw := json.RawMessage(strconv.FormatInt(id, 10))
	res, err := c.roundTrip(ctx, msg, method, idRaw)
	if err != nil {
		return nil, err
	}
	if method == "tools/list" {
		c.learnToolHeaders(res)
	}
	return res, nil
}

// withMeta adds the 2026-07-28 per-request _meta fields.
func (c *Client) withMeta(method string, params any) (any, error) {
	c.mu.Lock()
	modern, version := c.modern, c.version
	c.mu.Unlock()
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
		meta["io.modelcontextprotocol/clientCapabilities"] = map[string]any{}
	}
	m["_meta"] = meta
	return m, nil
}

// decorate sets the transport headers for a body.
func (c *Client) decorate(req *http.Request, msg map[string]any, method string) {
	for k, vs := range c.Headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	c.mu.Lock()
	version, modern, sid := c.version, c.modern, c.sessionID
	tool := c.toolHeaders
	c.mu.Unlock()
	if version != "" && method != "initialize" {
		req.Header.Set(mcp.HeaderProtocolVersion, version)
	}
	if sid != "" && !modern {
		req.Header.Set(mcp.HeaderSessionID, sid)
	}
	if !modern || msg == nil || method == "" {
		return
	}
	req.Header.Set(mcp.HeaderMethod, method)
	params, _ := msg["params"].(map[string]any)
	switch method {
	case "tools/call", "prompts/get":
		if n, ok := params["name"].(string); ok {
			req.Header.Set(mcp.HeaderName, mcp.EncodeHeaderValue(n))
		}
	case "resources/read":
		if n, ok := params["uri"].(string); ok {
			req.Header.Set(mcp.HeaderName, mcp.EncodeHeaderValue(n))
		}
	}
	if method == "tools/call" {
		name, _ := params["name"].(string)
		args, _ := params["arguments"].(map[string]any)
		for param, header := range tool[name] {
			v, ok := args[param]
			if !ok || v == nil {
				continue
			}
			var s string
			switch x := v.(type) {
			case string:
				s = x
			case bool, float64, json.Number:
				s = fmt.Sprint(x)
			default:
				continue
			}
			req.Header.Set(mcp.HeaderParamPrefix+header, mcp.EncodeHeaderValue(s))
		}
	}
}

// learnToolHeaders caches x-mcp-header annotations from tools/list.
func (c *Client) learnToolHeaders(res json.RawMessage) {
	var r struct {
		Tools []struct {
			Name        string `json:"name"`
			InputSchema struct {
				Properties map[string]struct {
					Header string `json:"x-mcp-header"`
				} `json:"properties"`
			} `json:"inputSchema"`
		} `json:"tools"`
	}
	if json.Unmarshal(res, &r) != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.toolHeaders == nil {
		c.toolHeaders = map[string]map[string]string{}
	}
	for _, t := range r.Tools {
		for p, s := range t.InputSchema.Properties {
			if s.Header != "" {
				if c.toolHeaders[t.Name] == nil {
					c.toolHeaders[t.Name] = map[string]string{}
				}
				c.toolHeaders[t.Name][p] = s.Header
			}
		}
	}
}

const maxAttempts = 6

// roundTrip POSTs one message; for a request it returns the result.
func (c *Client) roundTrip(ctx context.Context, msg map[string]any, method string, id json.RawMessage) (json.RawMessage, error) {
	body, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	reinit := false
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		c.decorate(req, msg, method)
		if c.Auth != nil {
			if err := c.Auth.Apply(ctx, req, body); err != nil {
				return nil, err
			}
		}
		resp, err := c.HTTP.Do(req)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", method, err)
		}
		if (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden ||
			resp.Header.Get("DPoP-Nonce") != "" && resp.StatusCode >= 400) && c.Auth != nil && attempt < maxAttempts {
			retry, herr := c.Auth.Handle(ctx, resp, method)
			drain(resp)
			if herr != nil {
				return nil, herr
			}
			if retry {
				continue
			}
			return nil, &HTTPError{Status: resp.StatusCode, Body: challengeText(resp)}
		}
		if resp.StatusCode == http.StatusTooManyRequests && attempt < 2 {
			// rate limited: wait as told (bounded) and try again
			wait := time.Second
			if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n >= 0 && n <= 10 {
				wait = time.Duration(n)*time.Second + 100*time.Millisecond
			}
			drain(resp)
			select {
			case <-time.After(wait):
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		c.mu.Lock()
		hadSession := c.sessionID != ""
		c.mu.Unlock()
		if resp.StatusCode == http.StatusNotFound && hadSession && method != "initialize" && !reinit && c.initParams != nil {
			// the session expired: initialize again and retry once
			drain(resp)
			reinit = true
			c.mu.Lock()
			c.sessionID = ""
			c.mu.Unlock()
			var p any
			_ = json.Unmarshal(c.initParams, &p)
			if _, err := c.Call(ctx, "initialize", p); err != nil {
				return nil, fmt.Errorf("re-initializing the expired session: %w", err)
			}
			if err := c.Notify(ctx, "notifications/initialized", nil); err != nil {
				return nil, err
			}
			continue
		}
		return c.readResponse(ctx, resp, id, method)
	}
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

func challengeText(resp *http.Response) string {
	if v := resp.Header.Values("WWW-Authenticate"); len(v) > 0 {
		return "WWW-Authenticate: " + strings.Join(v, ", ")
	}
	return ""
}

func (c *Client) readResponse(ctx context.Context, resp *http.Response, id json.RawMessage, method string) (json.RawMessage, error) {
	defer resp.Body.Close()
	if sid := resp.Header.Get(mcp.HeaderSessionID); sid != "" && method == "initialize" {
		c.mu.Lock()
		c.sessionID = sid
		c.mu.Unlock()
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if id == nil { // notification or response
		if resp.StatusCode == http.StatusAccepted || resp.StatusCode/100 == 2 {
			return nil, nil
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, &HTTPError{Status: resp.StatusCode, Body: string(b)}
	}
	switch {
	case ct == "text/event-stream" && resp.StatusCode == http.StatusOK:
		r := mcp.NewSSEReader(resp.Body, 0)
		for {
			ev, err := r.Next()
			if err != nil {
				if errors.Is(err, io.EOF) {
					return nil, fmt.Errorf("%s: the server closed the event stream before answering", method)
				}
				return nil, fmt.Errorf("%s: reading the event stream: %w", method, err)
			}
			if len(ev.Data) == 0 {
				continue
			}
			res, done, err := c.message(ctx, ev.Data, id)
			if done || err != nil {
				return res, err
			}
		}
	case ct == "application/json":
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", method, err)
		}
		res, done, err := c.message(ctx, b, id)
		if done || err != nil {
			return res, err
		}
		if resp.StatusCode/100 != 2 {
			return nil, &HTTPError{Status: resp.StatusCode, Body: string(b)}
		}
		return nil, fmt.Errorf("%s: the server's JSON answer is not the response to this request", method)
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode/100 == 2 {
			return nil, fmt.Errorf("%s: the server answered with Content-Type %q, not JSON or an event stream", method, resp.Header.Get("Content-Type"))
		}
		return nil, &HTTPError{Status: resp.StatusCode, Body: string(b)}
	}
}

// message handles one JSON-RPC message from the server while waiting for
// the response with id.
func (c *Client) message(ctx context.Context, raw []byte, id json.RawMessage) (json.RawMessage, bool, error) {
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
		Result json.RawMessage `json:"result"`
		Error  *RPCError       `json:"error"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, false, fmt.Errorf("the server sent invalid JSON: %v", err)
	}
	switch {
	case m.Method != "" && m.ID == nil:
		if c.OnNotification != nil {
			c.OnNotification(m.Method, m.Params)
		}
		return nil, false, nil
	case m.Method != "":
		// a server request (sampling, elicitation, roots): this client
		// offers none of those capabilities
		c.answer(ctx, m.ID, mcp.CodeMethodNotFound, "mcpgate's one-shot client does not support "+m.Method)
		return nil, false, nil
	case bytes.Equal(bytes.TrimSpace(m.ID), id):
		if m.Error != nil {
			return nil, true, m.Error
		}
		if m.Result == nil {
			return nil, true, errors.New("the response has neither result nor error")
		}
		return m.Result, true, nil
	}
	return nil, false, nil
}

func (c *Client) answer(ctx context.Context, id json.RawMessage, code int, msg string) {
	body := mcp.ErrorResponse(id, code, msg, nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	c.decorate(req, nil, "")
	if c.Auth != nil {
		_ = c.Auth.Apply(ctx, req, body)
	}
	if resp, err := c.HTTP.Do(req); err == nil {
		drain(resp)
	}
}
