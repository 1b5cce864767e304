// Package legacy implements the 2024-11-05 HTTP+SSE transport: a front
// that serves old clients on top of any upstream.Dialer, and client Conns
// that reach legacy SSE servers and Streamable HTTP servers.
package legacy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// FrontOptions configure a Front.
type FrontOptions struct {
	Dial upstream.Dialer
	// MessagePath is the absolute path the endpoint event points at.
	MessagePath string
	// PublicBase, when set, makes the endpoint an absolute URL.
	PublicBase  string
	IdleTimeout time.Duration
	Logger      *slog.Logger
	// KeepAlive is the interval of SSE comments. Default 25s.
	KeepAlive time.Duration
	// Publish, when set, makes each session known beyond this process
	// (replicas sharing a directory, so that a POST reaching another
	// replica is forwarded here).
	Publish Publisher
}

// A Publisher makes a front session known to other replicas while its
// stream is open.
type Publisher interface {
	// Opened publishes session id of owner before its endpoint event is
	// sent; an error refuses the stream (503): a session other replicas
	// cannot find would fail every POST that reaches them.
	Opened(ctx context.Context, id, owner string) error
	// Alive renews the publication; called on every keep-alive, so a
	// publication outlives a live stream and expires after a dead
	// replica's.
	Alive(id, owner string)
	// Closed withdraws it when the stream ends.
	Closed(id string)
}

// Front serves HTTP+SSE clients.
type Front struct {
	o FrontOptions

	mu       sync.Mutex // guards sessions, closed
	sessions map[string]*frontSession
	closed   bool
}

type frontSession struct {
	owner string
	conn  upstream.Conn
	done  chan struct{}
	once  sync.Once
}

func (s *frontSession) end() {
	s.once.Do(func() {
		close(s.done)
		_ = s.conn.Close()
	})
}

// NewFront returns a Front.
func NewFront(o FrontOptions) *Front {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = 25 * time.Second
	}
	return &Front{o: o, sessions: map[string]*frontSession{}}
}

// Owner returns the subject a session was created for ("" if unknown).
func (f *Front) Owner(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.sessions[id]; ok {
		return s.owner
	}
	return ""
}

// HandleStream serves GET for req: the endpoint event, then every
// server→client message, through req's filter, as a "message" event, until
// the client goes away. The session belongs to req.Caller.Owner.
func (f *Front) HandleStream(w http.ResponseWriter, r *http.Request, req *upstream.Request) {
	filter := req.Filter()
	conn, err := f.o.Dial(context.WithoutCancel(r.Context()), req.Caller)
	if upstream.RefuseDial(w, nil, err) {
		return
	}
	if err != nil {
		f.o.Logger.Error("legacy session: upstream dial failed", "err", err)
		mcp.WriteError(w, http.StatusBadGateway, nil, mcp.CodeUpstream, "could not reach the upstream MCP server", nil)
		return
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	s := &frontSession{owner: req.Caller.Owner, conn: conn, done: make(chan struct{})}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		_ = conn.Close()
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	f.sessions[id] = s
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.sessions, id)
		f.mu.Unlock()
		s.end()
	}()
	if p := f.o.Publish; p != nil {
		if err := p.Opened(r.Context(), id, s.owner); err != nil {
			f.o.Logger.Warn("legacy session: publishing to the shared directory failed", "err", err)
			w.Header().Set("Retry-After", "5")
			mcp.WriteError(w, http.StatusServiceUnavailable, nil, mcp.CodeUnavailable, "shared state (Redis) unavailable: the stream cannot be opened; retry shortly", nil)
			return
		}
		defer p.Closed(id)
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	endpoint := f.o.MessagePath + "?sessionId=" + url.QueryEscape(id)
	if f.o.PublicBase != "" {
		endpoint = f.o.PublicBase + endpoint
	}
	_ = mcp.WriteEvent(w, mcp.Event{Event: "endpoint", Data: []byte(endpoint)})
	_ = rc.Flush()

	msgs := make(chan []byte)
	errc := make(chan error, 1)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		for {
			m, err := conn.Recv(ctx)
			if err != nil {
				errc <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	ka := time.NewTicker(f.o.KeepAlive)
	defer ka.Stop()
	var idle <-chan time.Time
	if f.o.IdleTimeout > 0 {
		t := time.NewTimer(f.o.IdleTimeout)
		defer t.Stop()
		idle = t.C
	}
	for {
		select {
		case m := <-msgs:
			if err := mcp.WriteEvent(w, mcp.Event{Event: "message", Data: filter.Apply(m)}); err != nil {
				return
			}
			_ = rc.Flush()
		case err := <-errc:
			if !errors.Is(err, io.EOF) {
				f.o.Logger.Info("legacy session: upstream ended", "err", err)
			}
			return
		case <-ka.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
			_ = rc.Flush()
			if p := f.o.Publish; p != nil {
				p.Alive(id, s.owner)
			}
		case <-idle:
			return
		case <-s.done:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// HandleMessage serves POST ?sessionId=…: the message goes upstream, the
// answer comes on the stream. The caller checks ownership with Owner.
func (f *Front) HandleMessage(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("sessionId")
	f.mu.Lock()
	s := f.sessions[id]
	f.mu.Unlock()
	if s == nil {
		mcp.WriteError(w, http.StatusNotFound, nil, mcp.CodeInvalidRequest, "session not found: open a new SSE stream", nil)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, mcp.MaxMessageBytes))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if err := s.conn.Send(r.Context(), body); err != nil {
		mcp.WriteError(w, http.StatusBadGateway, nil, mcp.CodeUpstream, "the upstream MCP server is gone; reconnect", nil)
		return
	}
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, "Accepted")
}

// Shutdown ends every stream. Idempotent.
func (f *Front) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	f.closed = true
	all := make([]*frontSession, 0, len(f.sessions))
	for _, s := range f.sessions {
		all = append(all, s)
	}
	f.mu.Unlock()
	for _, s := range all {
		s.end()
	}
	return nil
}
