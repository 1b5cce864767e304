package legacy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/legacysse"
	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// ClientOptions configure client Conns.
type ClientOptions struct {
	// URL is the SSE endpoint (Dialer) or the MCP endpoint (StreamableDialer).
	URL        string
	Header     http.Header
	HTTPClient *http.Client
	Logger     *slog.Logger
}

func (o *ClientOptions) defaults() {
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// clientConn is the shared receive side: a queue of server→client messages
// and the connection's lifetime.
type clientConn struct {
	o      ClientOptions
	header http.Header
	msgs   chan []byte
	ctx    context.Context
	cancel context.CancelFunc

	mu  sync.Mutex // guards err
	err error
}

func newClientConn(o ClientOptions, info upstream.Caller) *clientConn {
	h := http.Header{}
	for k, v := range info.Header {
		h[k] = v
	}
	for k, v := range o.Header {
		h[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &clientConn{o: o, header: h, msgs: make(chan []byte, 1024), ctx: ctx, cancel: cancel}
}

func (c *clientConn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	c.cancel()
}

func (c *clientConn) push(m []byte) {
	select {
	case c.msgs <- m:
	case <-c.ctx.Done():
	}
}

// Recv returns the next server→client message.
func (c *clientConn) Recv(ctx context.Context) ([]byte, error) {
	select {
	case m := <-c.msgs:
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.ctx.Done():
		select {
		case m := <-c.msgs:
			return m, nil
		default:
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.err != nil {
			return nil, c.err
		}
		return nil, io.EOF
	}
}

// readEvents pushes the data of "message" events until the body ends
// (the Streamable HTTP answers and GET stream of streamConn).
func (c *clientConn) readEvents(body io.ReadCloser) error {
	defer body.Close()
	r := mcp.NewSSEReader(body, mcp.MaxMessageBytes)
	for {
		ev, err := r.Next()
		if err != nil {
			return err
		}
		if (ev.Event == "" || ev.Event == "message") && len(bytes.TrimSpace(ev.Data)) > 0 {
			c.push(ev.Data)
		}
	}
}

// Dialer connects to a 2024-11-05 HTTP+SSE server.
func Dialer(o ClientOptions) upstream.Dialer {
	o.defaults()
	return func(ctx context.Context, info upstream.Caller) (upstream.Conn, error) {
		c := &sseConn{clientConn: newClientConn(o, info)}
		return c, c.open(ctx)
	}
}

// sseConn is an upstream Conn over the shared HTTP+SSE client
// (internal/legacysse): it opens the stream, refuses an endpoint on
// another origin, and queues every server message for Recv.
type sseConn struct {
	*clientConn
	conn *legacysse.Conn
}

func (c *sseConn) open(ctx context.Context) error {
	conn, err := legacysse.Dial(ctx, legacysse.Options{URL: c.o.URL, HTTP: c.o.HTTPClient, Header: c.header, OnMessage: c.push})
	if err != nil {
		c.cancel()
		return fmt.Errorf("legacy SSE upstream: %w", err)
	}
	c.conn = conn
	go func() {
		select {
		case <-conn.Done():
			c.fail(fmt.Errorf("legacy SSE upstream: %w", conn.Err()))
		case <-c.ctx.Done():
			_ = conn.Close()
		}
	}()
	return nil
}

func (c *sseConn) Send(ctx context.Context, msg []byte) error {
	if err := c.conn.Send(ctx, msg); err != nil {
		var se *legacysse.StatusError
		if errors.As(err, &se) {
			return fmt.Errorf("legacy SSE upstream refused the message: status %d", se.Status)
		}
		return fmt.Errorf("legacy SSE upstream: %w", err)
	}
	return nil
}

func (c *sseConn) Close() error {
	c.cancel()
	return c.conn.Close()
}

// StreamableDialer connects to a Streamable HTTP server as a Conn, so old
// clients reach modern servers through the Front.
func StreamableDialer(o ClientOptions) upstream.Dialer {
	o.defaults()
	return func(ctx context.Context, info upstream.Caller) (upstream.Conn, error) {
		return &streamConn{clientConn: newClientConn(o, info)}, nil
	}
}

type streamConn struct {
	*clientConn
	mu        sync.Mutex // guards sessionID, version, listening
	sessionID string
	version   string
	listening bool
	closeOnce sync.Once
}

func (c *streamConn) headers() http.Header {
	h := c.header.Clone()
	c.mu.Lock()
	if c.sessionID != "" {
		h.Set(mcp.HeaderSessionID, c.sessionID)
	}
	if c.version != "" {
		h.Set(mcp.HeaderProtocolVersion, c.version)
	}
	c.mu.Unlock()
	return h
}

func (c *streamConn) Send(ctx context.Context, msg []byte) error {
	env, err := mcp.PeekOne(msg)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(c.ctx, http.MethodPost, c.o.URL, bytes.NewReader(msg))
	if err != nil {
		return err
	}
	req.Header = c.headers()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := c.o.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	if env.Method == "initialize" {
		if sid := resp.Header.Get(mcp.HeaderSessionID); sid != "" {
			c.mu.Lock()
			c.sessionID = sid
			c.mu.Unlock()
		}
	}
	if env.Method == "notifications/initialized" {
		c.listen()
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case resp.StatusCode == http.StatusAccepted:
		resp.Body.Close()
	case mt == "text/event-stream":
		go func() { _ = c.readEvents(resp.Body) }()
	case mt == "application/json":
		b, err := io.ReadAll(io.LimitReader(resp.Body, mcp.MaxMessageBytes))
		resp.Body.Close()
		if err != nil {
			return err
		}
		msgs, _, err := mcp.Peek(b, 0)
		if err != nil {
			return fmt.Errorf("upstream sent a malformed reply: %w", err)
		}
		for _, m := range msgs {
			if env.Method == "initialize" && m.Result != nil {
				c.learnVersion(m.Result)
			}
			c.push(m.Raw)
		}
	default:
		resp.Body.Close()
		if env.IsRequest() {
			c.push(mcp.ErrorResponse(env.ID, mcp.CodeUpstream, fmt.Sprintf("the upstream answered HTTP %d", resp.StatusCode), nil))
		}
	}
	return nil
}

func (c *streamConn) learnVersion(result []byte) {
	var r struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	if decodeJSON(result, &r) == nil && mcp.IsSupported(r.ProtocolVersion) {
		c.mu.Lock()
		c.version = r.ProtocolVersion
		c.mu.Unlock()
	}
}

// listen opens the optional GET stream once; 404/405 are fine.
func (c *streamConn) listen() {
	c.mu.Lock()
	if c.listening {
		c.mu.Unlock()
		return
	}
	c.listening = true
	c.mu.Unlock()
	go func() {
		req, err := http.NewRequestWithContext(c.ctx, http.MethodGet, c.o.URL, nil)
		if err != nil {
			return
		}
		req.Header = c.headers()
		req.Header.Set("Accept", "text/event-stream")
		resp, err := legacysse.DoStream(c.o.HTTPClient, req) // a stream: no whole-exchange timeout
		if err != nil {
			return
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return
		}
		_ = c.readEvents(resp.Body)
	}()
}

func (c *streamConn) Close() error {
	c.closeOnce.Do(func() {
		h := c.headers()
		c.cancel()
		if h.Get(mcp.HeaderSessionID) == "" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, c.o.URL, nil)
		if err != nil {
			return
		}
		req.Header = h
		if resp, err := c.o.HTTPClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	return nil
}

func decodeJSON(b []byte, v any) error { return json.Unmarshal(b, v) }
