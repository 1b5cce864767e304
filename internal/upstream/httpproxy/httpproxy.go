// Package httpproxy is a streaming reverse proxy to a Streamable HTTP MCP
// upstream. JSON replies are read (bounded) and passed through the
// request's response filter; SSE replies are relayed event by event,
// flushed as they arrive, never buffered and never timed out while live.
package httpproxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Counter counts live streams.
type Counter interface{ Add(delta int) }

// Options configure a Proxy.
type Options struct {
	// URL is the upstream MCP endpoint.
	URL string
	// Transport reaches the upstream; default a tuned *http.Transport.
	Transport http.RoundTripper
	// Header is added to every upstream request (the gateway's credential).
	Header http.Header
	// ResponseTimeout bounds the wait for response headers. Default 60s.
	// A live SSE body is never timed out.
	ResponseTimeout time.Duration
	// MaxResponseBytes bounds JSON bodies. Default 16 MiB.
	MaxResponseBytes int64
	Logger           *slog.Logger
	Streams          Counter
}

// Proxy forwards MCP requests to one upstream.
type Proxy struct {
	o      Options
	target *url.URL
	// direct: GET streams use their own connection instead of the
	// Transport (see dialStream); false when a custom Transport or an
	// HTTP proxy from the environment is configured.
	direct bool
	dialer *net.Dialer
}

// New validates o.
func New(o Options) (*Proxy, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream url %q must be an absolute http(s) URL", o.URL)
	}
	direct := false
	if o.Transport == nil {
		probe, _ := http.NewRequest(http.MethodGet, o.URL, nil)
		if pu, _ := http.ProxyFromEnvironment(probe); pu == nil {
			direct = true
		}
		o.Transport = &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
			// Small buffers: an idle SSE stream holds them for its lifetime.
			ReadBufferSize:    2048,
			WriteBufferSize:   2048,
			ForceAttemptHTTP2: true,
		}
	}
	if o.ResponseTimeout == 0 {
		o.ResponseTimeout = 60 * time.Second
	}
	if o.MaxResponseBytes == 0 {
		o.MaxResponseBytes = mcp.MaxMessageBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Proxy{o: o, target: u, direct: direct, dialer: &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}}, nil
}

// forwarded are the request headers passed upstream; everything else
// (credentials, cookies, hop-by-hop headers) stays at the gateway.
var forwarded = []string{"Accept", "Content-Type", mcp.HeaderSessionID, mcp.HeaderProtocolVersion, mcp.HeaderMethod, mcp.HeaderName, mcp.HeaderLastEventID, "User-Agent"}

// returned are the response headers passed back to the client.
var returned = []string{"Content-Type", mcp.HeaderSessionID, mcp.HeaderProtocolVersion, "Retry-After", "Cache-Control"}

// ServeMCP proxies one request for req (upstream.Handler). The caller has
// read and checked the body and set r.Body to the same bytes.
func (p *Proxy) ServeMCP(w http.ResponseWriter, r *http.Request, req *upstream.Request) {
	filter := req.Filter()
	detach := req.Detach
	if r.Method != http.MethodGet || !p.direct {
		detach = nil
	}
	ctx := r.Context()
	if detach != nil {
		// A detached stream outlives this handler; its connection is
		// closed by the relay (client gone, upstream done, shutdown).
		ctx = context.WithoutCancel(ctx)
	}
	// Headers must arrive within ResponseTimeout; the body may then
	// stream for as long as both sides keep it open.
	ctx, cancel := context.WithCancel(ctx)
	detached := false
	defer func() {
		if !detached {
			cancel()
		}
	}()
	out, err := p.outgoing(ctx, r, req.Caller.Header)
	if err != nil {
		p.fail(w, req.ID, http.StatusBadGateway, "could not build the upstream request")
		return
	}
	resp, ok := p.roundTrip(w, r, out, req.ID, cancel)
	if !ok {
		return
	}
	defer func() {
		if !detached {
			resp.Body.Close()
		}
	}()
	detached = p.relay(w, resp, filter, detach, req.ID)
}

// outgoing builds the upstream request: the target URL, the body, the
// forwarded MCP headers, the caller's identity headers and the gateway's
// credential — never the client's.
func (p *Proxy) outgoing(ctx context.Context, r *http.Request, identity http.Header) (*http.Request, error) {
	var body io.Reader = http.NoBody
	contentLength := int64(0)
	if r.Body != nil && r.Body != http.NoBody {
		body, contentLength = r.Body, r.ContentLength
		if contentLength < 0 {
			b, _ := io.ReadAll(r.Body)
			body, contentLength = bytes.NewReader(b), int64(len(b))
		}
	}
	// The target URL is copied, not parsed again for every request.
	out, err := http.NewRequestWithContext(ctx, r.Method, "", body)
	if err != nil {
		return nil, err
	}
	target := *p.target
	out.URL, out.Host = &target, target.Host
	out.ContentLength = contentLength
	for _, h := range forwarded {
		if v := r.Header.Values(h); len(v) > 0 {
			out.Header[http.CanonicalHeaderKey(h)] = v
		}
	}
	for k, v := range r.Header {
		if isParamHeader(k) {
			out.Header[k] = v
		}
	}
	// Defence in depth: the client's proof and cookies never go upstream;
	// a DPoP proof the gateway made for its own upstream token (a
	// connected account) comes with identity, below.
	out.Header.Del("DPoP")
	out.Header.Del("Cookie")
	for k, v := range identity {
		out.Header[k] = v
	}
	for k, v := range p.o.Header {
		out.Header[k] = v
	}
	// Defence in depth: the client's credentials never go upstream, even
	// if a caller forgot to strip them (the gateway's own credential may
	// use Authorization and is set above from trusted sources only).
	if r.Header.Get("Authorization") != "" && out.Header.Get("Authorization") == r.Header.Get("Authorization") {
		out.Header.Del("Authorization")
	}
	if d := r.Header.Values("DPoP"); len(d) > 0 && slices.Equal(out.Header.Values("DPoP"), d) {
		out.Header.Del("DPoP")
	}
	return out, nil
}

// roundTrip sends out and waits at most ResponseTimeout for the response
// headers (cancel ends the request). On failure it has answered the client,
// unless the client went away, and reports false.
func (p *Proxy) roundTrip(w http.ResponseWriter, r, out *http.Request, id []byte, cancel func()) (*http.Response, bool) {
	timer := time.AfterFunc(p.o.ResponseTimeout, cancel)
	var (
		resp *http.Response
		err  error
	)
	if r.Method == http.MethodGet && p.direct {
		resp, err = p.dialStream(out.Context(), out)
	} else {
		resp, err = p.o.Transport.RoundTrip(out)
	}
	stopped := timer.Stop()
	if err == nil {
		return resp, true
	}
	switch {
	case r.Context().Err() != nil:
		// the client went away
	case !stopped || errors.Is(err, context.DeadlineExceeded):
		p.fail(w, id, http.StatusGatewayTimeout, "the upstream MCP server did not answer within "+p.o.ResponseTimeout.String())
	default:
		p.o.Logger.Warn("upstream unreachable", "err", err)
		p.fail(w, id, http.StatusBadGateway, "the upstream MCP server is unreachable; retry later")
	}
	return nil, false
}

// relay answers the client from resp, by media type: SSE event by event
// (detached onto the hijacked connection when detach allows), JSON read
// whole and filtered. Any other answer is not an MCP answer and is not
// relayed (mcp.ConfineAnswer, notMCP). It reports whether the stream was
// detached (resp.Body then belongs to it).
func (p *Proxy) relay(w http.ResponseWriter, resp *http.Response, filter upstream.Filter, detach upstream.Detacher, id []byte) (detached bool) {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	for _, h := range returned {
		if v := resp.Header.Values(h); len(v) > 0 {
			w.Header()[http.CanonicalHeaderKey(h)] = v
		}
	}
	switch {
	case !mcp.ConfineAnswer(w.Header()):
		p.notMCP(w, resp, id, resp.Request != nil && resp.Request.Method == http.MethodDelete)
	case mt == "text/event-stream":
		if detach != nil && resp.StatusCode == http.StatusOK && p.streamDetached(w, resp, filter, detach) {
			return true
		}
		p.stream(w, resp, filter)
	default: // application/json
		p.json(w, resp, filter, id)
	}
	return false
}

// notMCP answers for an upstream reply that is neither JSON nor an event
// stream (HTML, SVG, text, no type): an upstream is trusted less than the
// gateway's origin, which serves the authorization server's pages and
// cookies, so its bytes are never relayed as a document. A 202, 204, a
// DELETE's 2xx or an empty body passes as its status alone; anything else becomes a
// JSON-RPC error with the upstream's 4xx status (clients act on 404 and
// 405), else 502. Refusing also keeps an unfiltered list in a body of
// another type from reaching the caller.
func (p *Proxy) notMCP(w http.ResponseWriter, resp *http.Response, id []byte, isDelete bool) {
	var one [1]byte
	n, _ := io.ReadFull(resp.Body, one[:])
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if n == 0 || resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusNoContent || (isDelete && resp.StatusCode/100 == 2) {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(resp.StatusCode)
		return
	}
	status := resp.StatusCode
	if status/100 != 4 {
		status = http.StatusBadGateway
	}
	p.fail(w, id, status, mcp.ConfinedError(resp.StatusCode, resp.Header.Get("Content-Type")))
}

func isParamHeader(k string) bool {
	return len(k) > len(mcp.HeaderParamPrefix) && strings.EqualFold(k[:len(mcp.HeaderParamPrefix)], mcp.HeaderParamPrefix)
}

func (p *Proxy) fail(w http.ResponseWriter, id []byte, status int, msg string) {
	mcp.WriteError(w, status, id, mcp.CodeUpstream, msg, nil)
}

func (p *Proxy) json(w http.ResponseWriter, resp *http.Response, filter upstream.Filter, id []byte) {
	b, err := mcp.ReadAll(io.LimitReader(resp.Body, p.o.MaxResponseBytes+1), min(resp.ContentLength, p.o.MaxResponseBytes+1))
	if err != nil {
		p.fail(w, id, http.StatusBadGateway, "the upstream reply was cut off")
		return
	}
	if int64(len(b)) > p.o.MaxResponseBytes {
		p.fail(w, id, http.StatusBadGateway, "the upstream reply exceeds "+strconv.FormatInt(p.o.MaxResponseBytes, 10)+" bytes")
		return
	}
	b = filter.ApplyBody(b)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(b)
}

// stream relays an SSE body event by event.
func (p *Proxy) stream(w http.ResponseWriter, resp *http.Response, filter upstream.Filter) {
	if p.o.Streams != nil {
		p.o.Streams.Add(1)
		defer p.o.Streams.Add(-1)
	}
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	r := mcp.NewSSEReader(resp.Body, int(p.o.MaxResponseBytes))
	for {
		ev, err := r.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, context.Canceled) {
				p.o.Logger.Debug("upstream stream ended", "err", err)
			}
			if resp.Request != nil && upstream.WriteReconnect(resp.Request.Context(), w) {
				_ = rc.Flush()
			}
			return
		}
		if filter != nil && len(ev.Data) > 0 {
			ev.Data = filter.Apply(ev.Data)
		}
		if err := mcp.WriteEvent(w, ev); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// dialStream opens a long-lived GET stream on a connection of its own,
// reading the response with http.ReadResponse. An idle stream then costs
// the handler's goroutine and one small buffer, instead of the Transport's
// read and write loops with their buffers (docs/performance.md). The
// connection closes when the body is closed or ctx ends.
func (p *Proxy) dialStream(ctx context.Context, out *http.Request) (*http.Response, error) {
	host := p.target.Host
	if p.target.Port() == "" {
		if p.target.Scheme == "https" {
			host += ":443"
		} else {
			host += ":80"
		}
	}
	conn, err := p.dialer.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	if p.target.Scheme == "https" {
		tc := tls.Client(conn, &tls.Config{ServerName: p.target.Hostname(), MinVersion: tls.VersionTLS12})
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		conn = tc
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	out.Close = true // one stream per connection; no keep-alive
	if err := out.Write(conn); err != nil {
		stop()
		conn.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 1024), out)
	if err != nil {
		stop()
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	resp.Body = &connBody{ReadCloser: resp.Body, conn: conn, stop: stop}
	return resp, nil
}

// connBody closes the stream's connection with its body.
type connBody struct {
	io.ReadCloser
	conn net.Conn
	stop func() bool
}

// Close closes the connection first: closing the body alone would wait for
// a Read blocked on an idle stream.
func (b *connBody) Close() error {
	b.stop()
	b.conn.Close()
	return b.ReadCloser.Close()
}

// EndSession sends DELETE for session sid to the upstream (the gateway
// dropped its binding: evicted or expired), with the gateway's credential
// and h (identity headers). Bounded by ctx; the answer is discarded.
func (p *Proxy) EndSession(ctx context.Context, sid string, h http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, p.target.String(), http.NoBody)
	if err != nil {
		return err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	for k, v := range p.o.Header {
		req.Header[k] = v
	}
	req.Header.Set(mcp.HeaderSessionID, sid)
	resp, err := p.o.Transport.RoundTrip(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	return resp.Body.Close()
}
