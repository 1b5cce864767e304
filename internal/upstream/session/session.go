// Package session is a Streamable HTTP MCP server in front of any
// upstream.Conn (stdio children, legacy HTTP+SSE servers): sessions with
// Mcp-Session-Id, POST answered with JSON or SSE, the standalone GET
// stream, Last-Event-ID replay, DELETE, idle reaping, and the 2026-07-28
// stateless mode through a per-request handshake.
package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Counter is a metrics gauge.
type Counter interface{ Add(delta int) }

// Options configure a Server.
type Options struct {
	Dial upstream.Dialer
	// IdleTimeout closes sessions without requests or open streams.
	// Default 30m.
	IdleTimeout time.Duration
	// MaxSessions bounds live sessions. Default 100.
	MaxSessions int
	// RequestTimeout bounds the wait for an answer. Default 60s. A JSON
	// reply waits at most this long; an SSE reply waits this long for the
	// answer or the next progress notification of its request. The request
	// then ends with a JSON-RPC error.
	RequestTimeout time.Duration
	Logger         *slog.Logger
	Sessions       Counter
	Streams        Counter
	// ReplayBuffer is the number of events kept per session for
	// Last-Event-ID. Default 256.
	ReplayBuffer int
	// KeepAlive is the interval of SSE comments on idle streams. Default 25s.
	KeepAlive time.Duration
	// TaskTTLMax caps how long a task created on a task host keeps the
	// host busy when it is never seen to end (its ttlMs, or this when it
	// has none). Default 24h (limits.task_ttl_max).
	TaskTTLMax time.Duration
}

// Server serves MCP sessions over Streamable HTTP.
type Server struct {
	o    Options
	stop chan struct{}

	mu       sync.Mutex // guards sessions, closed
	sessions map[string]*session
	closed   bool
	wg       sync.WaitGroup

	parked parking   // stateless requests waiting for the client's input (mrtr.go)
	hosts  hostTable // long-lived connections hosting 2026-07-28 tasks (taskhost.go)
}

type nopCounter struct{}

func (nopCounter) Add(int) {}

// New returns a Server and starts its idle reaper.
func New(o Options) *Server {
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 30 * time.Minute
	}
	if o.MaxSessions == 0 {
		o.MaxSessions = 100
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 60 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Sessions == nil {
		o.Sessions = nopCounter{}
	}
	if o.Streams == nil {
		o.Streams = nopCounter{}
	}
	if o.ReplayBuffer == 0 {
		o.ReplayBuffer = 256
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = 25 * time.Second
	}
	if o.TaskTTLMax == 0 {
		o.TaskTTLMax = 24 * time.Hour
	}
	s := &Server{o: o, stop: make(chan struct{}), sessions: map[string]*session{}}
	s.wg.Add(1)
	go s.reap()
	return s
}

// TaskHosts returns the number of open task hosts (taskhost.go).
func (s *Server) TaskHosts() int { return s.hosts.Len() }

// Len returns the number of live sessions.
func (s *Server) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

func (s *Server) reap() {
	defer s.wg.Done()
	every := min(s.o.IdleTimeout/2, time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		var idle []*session
		s.mu.Lock()
		for _, ss := range s.sessions {
			if ss.idleSince(time.Now()) > s.o.IdleTimeout {
				idle = append(idle, ss)
			}
		}
		s.mu.Unlock()
		for _, ss := range idle {
			s.o.Logger.Info("closing idle session", "session", ss.short())
			ss.close(errors.New("the session was idle too long"))
		}
		s.hosts.reap(time.Now(), s.o.IdleTimeout)
	}
}

// Shutdown ends every session and stream, bounded by ctx. Idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	all := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		all = append(all, ss)
	}
	s.mu.Unlock()
	close(s.stop)
	s.parked.closeAll()
	done := make(chan struct{})
	go func() {
		s.hosts.closeAll()
		var wg sync.WaitGroup
		for _, ss := range all {
			wg.Go(func() { ss.close(errors.New("the gateway is shutting down")) })
		}
		wg.Wait()
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) get(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[id]
}

func (s *Server) remove(id string) {
	s.mu.Lock()
	_, ok := s.sessions[id]
	delete(s.sessions, id)
	s.mu.Unlock()
	if ok {
		s.o.Sessions.Add(-1)
	}
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ServeMCP dispatches by method and era (upstream.Handler).
func (s *Server) ServeMCP(w http.ResponseWriter, r *http.Request, req *upstream.Request) {
	switch r.Method {
	case http.MethodPost:
		s.post(w, r, req)
	case http.MethodGet, http.MethodDelete:
		if v := r.Header.Get(mcp.HeaderProtocolVersion); mcp.EraOf(v) == mcp.EraStateless {
			mcp.WriteError(w, http.StatusMethodNotAllowed, nil, mcp.CodeInvalidRequest, "GET and DELETE are not part of protocol version "+v, nil)
			return
		}
		ss := s.get(r.Header.Get(mcp.HeaderSessionID))
		if ss == nil {
			mcp.WriteError(w, http.StatusNotFound, nil, mcp.CodeInvalidRequest, "session not found: send initialize to start a new session", nil)
			return
		}
		if r.Method == http.MethodDelete {
			ss.close(errors.New("the client ended the session"))
			w.WriteHeader(http.StatusOK)
			return
		}
		ss.listen(w, r, req.Filter())
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		mcp.WriteError(w, http.StatusMethodNotAllowed, nil, mcp.CodeInvalidRequest, "use POST, GET or DELETE", nil)
	}
}

func wantsSSE(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}

func (s *Server) post(w http.ResponseWriter, r *http.Request, req *upstream.Request) {
	body, err := readAll(r)
	if err != nil {
		mcp.WriteError(w, http.StatusBadRequest, nil, mcp.CodeParseError, "could not read the request body", nil)
		return
	}
	msgs, _, err := mcp.Peek(body, 0)
	if err != nil {
		mcp.WriteError(w, http.StatusBadRequest, nil, mcp.CodeInvalidRequest, err.Error(), nil)
		return
	}
	sid := r.Header.Get(mcp.HeaderSessionID)
	first := &msgs[0]
	if sid == "" && mcp.EraOf(first.MetaVersion) == mcp.EraStateless {
		s.stateless(w, r, first, req)
		return
	}
	if first.Method == "initialize" {
		if sid != "" {
			mcp.WriteError(w, http.StatusBadRequest, first.ID, mcp.CodeInvalidRequest, "initialize must not carry Mcp-Session-Id", nil)
			return
		}
		s.initialize(w, r, first, req)
		return
	}
	if sid == "" {
		mcp.WriteError(w, http.StatusBadRequest, first.ID, mcp.CodeInvalidRequest, "Mcp-Session-Id header is required: send initialize first", nil)
		return
	}
	ss := s.get(sid)
	if ss == nil {
		mcp.WriteError(w, http.StatusNotFound, first.ID, mcp.CodeInvalidRequest, "session not found: it expired or was deleted; send initialize to start a new session", nil)
		return
	}
	ss.handle(w, r, msgs, req.Filter())
}

// initialize starts a session: dial, forward initialize, answer with the
// new session id.
func (s *Server) initialize(w http.ResponseWriter, r *http.Request, msg *mcp.Envelope, req *upstream.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		mcp.WriteError(w, http.StatusServiceUnavailable, msg.ID, mcp.CodeUnavailable, "the gateway is shutting down", nil)
		return
	}
	if len(s.sessions) >= s.o.MaxSessions {
		s.mu.Unlock()
		w.Header().Set("Retry-After", "30")
		mcp.WriteError(w, http.StatusServiceUnavailable, msg.ID, mcp.CodeUnavailable, "too many sessions on this upstream (max_sessions); retry later", nil)
		return
	}
	s.mu.Unlock()
	conn, err := s.o.Dial(context.WithoutCancel(r.Context()), req.Caller)
	if upstream.RefuseDial(w, msg.ID, err) {
		return
	}
	if err != nil {
		s.o.Logger.Error("could not start the upstream session", "err", err)
		mcp.WriteError(w, http.StatusBadGateway, msg.ID, mcp.CodeUpstream, "could not start the upstream MCP server; see the gateway log", nil)
		return
	}
	ss := newSession(s, newID(), conn)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = conn.Close()
		mcp.WriteError(w, http.StatusServiceUnavailable, msg.ID, mcp.CodeUnavailable, "the gateway is shutting down", nil)
		return
	}
	s.sessions[ss.id] = ss
	s.mu.Unlock()
	s.o.Sessions.Add(1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ss.pump()
	}()
	w.Header().Set(mcp.HeaderSessionID, ss.id)
	// From now on the connection's slot is busy only while the session is
	// in use; an idle session may be closed to make room for another
	// session of the same subject (upstream.Limit).
	ss.touch(1)
	if ss.act != nil {
		ss.act.Idle()
	}
	ss.handle(w, r, []mcp.Envelope{*msg}, req.Filter())
	ss.touch(-1)
}

// Close ends the session id (the gateway evicted its binding). It returns
// once the upstream connection is closed; an unknown id is a no-op.
func (s *Server) Close(id string) {
	if ss := s.get(id); ss != nil {
		ss.close(errors.New("the gateway ended this idle session to make room for a new one of the same subject"))
	}
}
