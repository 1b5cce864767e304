// Package legacysse is the one client of MCP's deprecated HTTP+SSE
// transport (revision 2024-11-05, "HTTP with SSE"), shared by the client
// engine (internal/mcpclient, for the bridge, the broker and mcpgate call)
// and the gateway's legacy upstreams (internal/upstream/legacy).
//
// The 2024-11-05 transport: "When a client connects, the server MUST send
// an endpoint event containing a URI for the client to use for sending
// messages. All subsequent client messages MUST be sent as HTTP POST
// requests to this endpoint. Server messages are sent as SSE message
// events." A Conn opens the stream, waits for the endpoint, refuses one on
// another origin (every POST carries the stream's credentials), POSTs each
// message there and hands every server message to Options.OnMessage.
//
// Credentials are the HTTP client's business: mcpclient passes one whose
// transport authenticates (mcpclient.AuthTransport), the gateway one
// carrying its configured upstream headers. Whatever client is passed,
// its redirects are pinned to the stream's origin (origin.Pin).
package legacysse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/origin"
)

// DefaultEndpointTimeout bounds the wait for the endpoint event.
const DefaultEndpointTimeout = 30 * time.Second

// DefaultHeaderTimeout bounds the wait for a stream's response headers
// when the HTTP client has no Timeout.
const DefaultHeaderTimeout = 30 * time.Second

// DoStream sends req, whose response body is a long-lived event stream,
// with c. c.Timeout bounds a whole exchange, body included, so it would
// end the stream; DoStream sends without it and bounds only the wait for
// the response headers by it (DefaultHeaderTimeout when c has none). The
// transport bounds dial and TLS handshake; the body lives until req's
// context ends or the body is closed.
func DoStream(c *http.Client, req *http.Request) (*http.Response, error) {
	if c == nil {
		c = http.DefaultClient
	}
	cp := *c
	wait := cp.Timeout
	if wait <= 0 {
		wait = DefaultHeaderTimeout
	}
	cp.Timeout = 0
	ctx, cancel := context.WithCancel(req.Context())
	timer := time.AfterFunc(wait, cancel)
	resp, err := cp.Do(req.WithContext(ctx))
	if !timer.Stop() {
		if err == nil {
			resp.Body.Close()
		}
		cancel()
		return nil, fmt.Errorf("no response headers within %s", wait)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose releases a stream's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// Options configure a Conn.
type Options struct {
	// URL is the SSE endpoint (the GET stream).
	URL string
	// HTTP sends the stream and every POST (nil: http.DefaultClient); it
	// is pinned to URL's origin. Its Timeout bounds each POST, and only
	// the wait for the stream's response headers (DoStream): the stream
	// itself lives as long as the connection.
	HTTP *http.Client
	// Header is added to every request (the gateway's upstream headers).
	Header http.Header
	// OnMessage receives each server message (the data of a message event
	// that is valid JSON), in stream order, on the stream's goroutine; it
	// may block to push back. It must be set.
	OnMessage func([]byte)
	// EndpointTimeout bounds the wait for the endpoint event (default
	// DefaultEndpointTimeout).
	EndpointTimeout time.Duration
}

// StatusError is a non-2xx answer to the stream GET or a POST.
type StatusError struct {
	Status int
	Body   string // its first bytes
}

func (e *StatusError) Error() string {
	b := strings.TrimSpace(e.Body)
	if len(b) > 300 {
		b = b[:300] + "…"
	}
	if b == "" {
		return fmt.Sprintf("the server answered HTTP %d", e.Status)
	}
	return fmt.Sprintf("the server answered HTTP %d: %s", e.Status, b)
}

// Conn is one open HTTP+SSE connection.
type Conn struct {
	o        Options
	client   *http.Client
	endpoint string
	cancel   context.CancelFunc // ends the stream
	done     chan struct{}      // closed when the stream has ended

	mu  sync.Mutex // guards err
	err error      // why the stream ended
}

// Dial opens the stream at o.URL and waits for its endpoint event. ctx
// bounds the dial only (a login the HTTP client runs on a 401 included);
// the stream lives until Close or until the server ends it.
func Dial(ctx context.Context, o Options) (*Conn, error) {
	if o.OnMessage == nil {
		return nil, errors.New("legacysse: Options.OnMessage is required")
	}
	if o.EndpointTimeout <= 0 {
		o.EndpointTimeout = DefaultEndpointTimeout
	}
	base, err := url.Parse(o.URL)
	if err != nil || origin.Of(base) == "" {
		return nil, fmt.Errorf("the HTTP+SSE URL %q is not an absolute http(s) URL", o.URL)
	}
	sctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel) // the caller gave up while dialing
	defer stop()
	c := &Conn{o: o, client: origin.Pin(o.HTTP), cancel: cancel, done: make(chan struct{})}
	resp, err := c.open(sctx)
	if err != nil {
		cancel()
		return nil, err
	}
	endpoints := make(chan string, 1)
	go c.read(resp.Body, endpoints)
	raw, err := c.awaitEndpoint(ctx, endpoints)
	if err == nil {
		c.endpoint, err = endpointOf(base, raw)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	return c, nil
}

// open sends the stream GET.
func (c *Conn) open(ctx context.Context) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.o.URL, nil)
	if err != nil {
		return nil, err
	}
	c.addHeaders(req)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := DoStream(c.client, req)
	if err != nil {
		return nil, fmt.Errorf("opening the HTTP+SSE stream: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp)
	}
	return resp, nil
}

func (c *Conn) addHeaders(req *http.Request) {
	for k, vs := range c.o.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
}

// read passes the stream's events on until it ends: the first endpoint
// event to endpoints, message events to OnMessage.
func (c *Conn) read(body io.ReadCloser, endpoints chan<- string) {
	defer close(c.done)
	defer body.Close()
	r := mcp.NewSSEReader(body, mcp.MaxMessageBytes)
	named := false
	for {
		ev, err := r.Next()
		if err != nil {
			c.end(fmt.Errorf("the HTTP+SSE stream ended: %w", err))
			if !named {
				close(endpoints)
			}
			return
		}
		switch {
		case ev.Event == "endpoint" && !named:
			endpoints <- strings.TrimSpace(string(ev.Data))
			named = true
		case ev.Event == "" || ev.Event == "message":
			if len(ev.Data) > 0 && json.Valid(ev.Data) {
				c.o.OnMessage(ev.Data)
			}
		}
	}
}

// awaitEndpoint waits for the endpoint event.
func (c *Conn) awaitEndpoint(ctx context.Context, endpoints <-chan string) (string, error) {
	t := time.NewTimer(c.o.EndpointTimeout)
	defer t.Stop()
	select {
	case e, ok := <-endpoints:
		if !ok {
			return "", fmt.Errorf("the HTTP+SSE stream closed before naming its endpoint (%v)", c.Err())
		}
		return e, nil
	case <-t.C:
		return "", fmt.Errorf("the HTTP+SSE stream named no endpoint within %s", c.o.EndpointTimeout)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// endpointOf resolves the endpoint against the stream URL. Every POST
// carries the stream's credentials, so it must be on the stream's exact
// origin (scheme, host, port) and carry no userinfo.
func endpointOf(base *url.URL, raw string) (string, error) {
	u, err := base.Parse(raw)
	if err == nil && u.User == nil && origin.Same(base, u) {
		return u.String(), nil
	}
	target := "an unparsable URL"
	if err == nil {
		target = origin.Of(u)
		if u.User != nil {
			target += " (with credentials in the URL)"
		}
	}
	return "", fmt.Errorf("%w: the HTTP+SSE endpoint of %s points to %s; refusing to post there", origin.ErrOther, origin.Of(base), target)
}

// Endpoint is the URL messages are posted to.
func (c *Conn) Endpoint() string { return c.endpoint }

// Send POSTs one message to the endpoint; the answer comes on the stream.
// A non-2xx answer is a *StatusError.
func (c *Conn) Send(ctx context.Context, msg []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(msg))
	if err != nil {
		return err
	}
	c.addHeaders(req)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return statusError(resp)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return nil
}

// Done is closed when the stream has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err says why the stream ended (nil while it is open).
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Conn) end(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

// Close ends the stream; it is idempotent.
func (c *Conn) Close() error {
	c.cancel()
	return nil
}

// statusError reads the first bytes of a refused answer and closes it.
func statusError(resp *http.Response) *StatusError {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return &StatusError{Status: resp.StatusCode, Body: string(b)}
}
