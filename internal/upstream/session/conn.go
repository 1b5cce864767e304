package session

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// event is one server→client message on a stream.
type event struct {
	stream int64
	seq    int64
	data   []byte
	final  bool // the response that ends a POST stream
}

func (e event) id() string {
	return strconv.FormatInt(e.stream, 10) + "-" + strconv.FormatInt(e.seq, 10)
}

// sink is where a live HTTP response receives events.
type sink struct {
	stream int64
	ch     chan event
	gone   bool // the client disconnected; events go to the replay buffer only
}

// waiter is a client request waiting for its response.
type waiter struct {
	*sink
	id       json.RawMessage // the request's id as the client spelled it
	progress string          // params._meta.progressToken, to route progress notifications
	method   string          // the request's method and routing key, so a task host can
	name     string          // attribute server requests and task notifications (taskhost.go)
}

// idKey is the key of a request in pending: ids are compared by value
// (mcp.CanonicalID), so an upstream that answers 1.0 with 1 is matched,
// and two requests one server could confuse are never in flight together.
func idKey(id json.RawMessage) string {
	k, _ := mcp.CanonicalID(id)
	return k
}

type session struct {
	srv  *Server
	id   string
	conn upstream.Conn
	done chan struct{}

	mu         sync.Mutex // guards everything below
	pending    map[string]*waiter
	standalone *sink
	posts      []*sink // live POST SSE streams, newest last
	backlog    [][]byte
	ring       []event
	nextStream int64
	seq        map[int64]int64
	active     int
	last       time.Time
	// act tells the connection budget when the session is in use (active
	// > 0), so that only idle sessions are closed to make room.
	act      upstream.Activity
	actDone  func()
	closed   bool
	closeErr error

	// host is set when the connection is a task host (taskhost.go): its
	// requests are multiplexed under gateway ids, and messages that are
	// neither answers nor a request's progress are routed by the host.
	host *taskHost
}

const maxBacklog = 256

func newSession(s *Server, id string, conn upstream.Conn) *session {
	ss := &session{srv: s, id: id, conn: conn, done: make(chan struct{}), pending: map[string]*waiter{},
		seq: map[int64]int64{}, last: time.Now(), nextStream: 1}
	ss.act, _ = conn.(upstream.Activity)
	return ss
}

func (ss *session) short() string { return ss.id[:8] }

func (ss *session) idleSince(now time.Time) time.Duration {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.active > 0 {
		return 0
	}
	return now.Sub(ss.last)
}

func (ss *session) touch(delta int) {
	ss.mu.Lock()
	ss.activeLocked(delta)
	ss.last = time.Now()
	ss.mu.Unlock()
}

// activeLocked counts the session's requests and streams, and holds the
// connection's budget slot busy while there is any.
func (ss *session) activeLocked(delta int) {
	was := ss.active
	ss.active += delta
	if ss.act == nil {
		return
	}
	if was == 0 && ss.active > 0 {
		ss.actDone = ss.act.Busy()
	} else if was > 0 && ss.active == 0 && ss.actDone != nil {
		ss.actDone()
		ss.actDone = nil
	}
}

// close ends the session: every waiting request gets a JSON-RPC error,
// streams end, the upstream connection closes.
func (ss *session) close(reason error) {
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return
	}
	ss.closed = true
	ss.closeErr = reason
	pending := ss.pending
	ss.pending = map[string]*waiter{}
	ss.mu.Unlock()
	text := "the upstream MCP session ended (" + reason.Error() + "); initialize a new session and retry"
	if ss.host != nil {
		text = "the upstream MCP server ended before answering (" + reason.Error() + "); retry the request"
	}
	for _, w := range pending {
		ss.deliver(w.sink, mcp.ErrorResponse(w.id, mcp.CodeUpstream, text, nil), true)
	}
	close(ss.done)
	if ss.host != nil {
		ss.srv.hosts.ended(ss.host, reason)
	} else {
		ss.srv.remove(ss.id)
	}
	_ = ss.conn.Close()
}

// pump routes every upstream message until the connection ends.
func (ss *session) pump() {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-ss.done
		cancel()
	}()
	for {
		msg, err := ss.conn.Recv(ctx)
		if err != nil {
			if err != io.EOF && ctx.Err() == nil {
				ss.srv.o.Logger.Warn("upstream session ended", "session", ss.short(), "err", err)
			}
			ss.close(fmt.Errorf("upstream ended: %v", err))
			return
		}
		ss.route(msg)
	}
}

// route sends a server→client message to the stream it belongs to: a
// response to its request's stream; progress to the request that asked
// for it; anything else to the standalone stream, else the newest POST
// stream, else the backlog until a stream opens.
func (ss *session) route(msg []byte) {
	env, err := mcp.PeekOne(msg)
	if err != nil {
		ss.srv.o.Logger.Warn("upstream sent a malformed message; dropped", "session", ss.short())
		return
	}
	ss.mu.Lock()
	if env.IsResponse() {
		w := ss.pending[idKey(env.ID)]
		delete(ss.pending, idKey(env.ID))
		ss.mu.Unlock()
		if w != nil {
			ss.deliver(w.sink, msg, true)
		}
		return
	}
	var target *sink
	if env.Method == "notifications/progress" {
		tok := progressToken(env.Params)
		for _, w := range ss.pending {
			if tok != "" && w.progress == tok {
				target = w.sink
				break
			}
		}
	}
	if target == nil && ss.host != nil {
		ss.mu.Unlock()
		ss.host.route(env, msg)
		return
	}
	if target == nil && ss.standalone != nil && !ss.standalone.gone {
		target = ss.standalone
	}
	for i := len(ss.posts) - 1; target == nil && i >= 0; i-- {
		if !ss.posts[i].gone {
			target = ss.posts[i]
		}
	}
	if target == nil {
		if len(ss.backlog) < maxBacklog {
			ss.backlog = append(ss.backlog, msg)
		}
		ss.mu.Unlock()
		return
	}
	ss.mu.Unlock()
	ss.deliver(target, msg, false)
}

// deliver records the event for replay and hands it to a live sink; a sink
// that cannot keep up is detached (its client resumes with Last-Event-ID).
func (ss *session) deliver(s *sink, msg []byte, final bool) {
	ss.mu.Lock()
	ss.seq[s.stream]++
	ev := event{stream: s.stream, seq: ss.seq[s.stream], data: msg, final: final}
	ss.ring = append(ss.ring, ev)
	if n := len(ss.ring) - ss.srv.o.ReplayBuffer; n > 0 {
		ss.ring = ss.ring[n:]
	}
	gone := s.gone
	if !gone {
		select {
		case s.ch <- ev:
		default:
			s.gone = true
		}
	}
	ss.mu.Unlock()
}

func (ss *session) newSink() *sink {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := &sink{stream: ss.nextStream, ch: make(chan event, 256)}
	ss.nextStream++
	return s
}

// handle serves a POST in an existing session.
func (ss *session) handle(w http.ResponseWriter, r *http.Request, msgs []mcp.Envelope, filter upstream.Filter) {
	ss.touch(1)
	defer ss.touch(-1)
	var reqs []*mcp.Envelope
	for i := range msgs {
		if msgs[i].IsRequest() {
			reqs = append(reqs, &msgs[i])
		}
	}
	s := ss.newSink()
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		mcp.WriteError(w, http.StatusNotFound, firstID(reqs), mcp.CodeInvalidRequest, "session not found: send initialize to start a new session", nil)
		return
	}
	for _, e := range reqs {
		if _, dup := ss.pending[idKey(e.ID)]; dup {
			ss.mu.Unlock()
			mcp.WriteError(w, http.StatusBadRequest, e.ID, mcp.CodeInvalidRequest, "request id "+string(e.ID)+" is already in flight in this session: use a new id", nil)
			return
		}
	}
	for _, e := range reqs {
		ss.pending[idKey(e.ID)] = &waiter{sink: s, id: e.ID, progress: progressToken(e.Params)}
	}
	sse := len(reqs) > 0 && wantsSSE(r)
	if sse {
		// Registered before the requests go out, so that a server request
		// the upstream sends at once finds this stream (serveSSE drops it).
		ss.posts = append(ss.posts, s)
	}
	ss.mu.Unlock()
	for i := range msgs {
		if err := ss.conn.Send(r.Context(), msgs[i].Raw); err != nil {
			ss.forget(reqs)
			ss.dropPost(s)
			mcp.WriteError(w, http.StatusBadGateway, firstID(reqs), mcp.CodeUpstream, "the upstream MCP server is gone; initialize a new session", nil)
			ss.close(err)
			return
		}
	}
	if len(reqs) == 0 {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if sse {
		ss.serveSSE(w, r, s, reqs, filter)
		return
	}
	ss.serveJSON(w, r, s, reqs, filter)
}

func firstID(reqs []*mcp.Envelope) json.RawMessage {
	if len(reqs) == 0 {
		return nil
	}
	return reqs[0].ID
}

func (ss *session) forget(reqs []*mcp.Envelope) {
	ss.mu.Lock()
	for _, e := range reqs {
		delete(ss.pending, idKey(e.ID))
	}
	ss.mu.Unlock()
}

// serveJSON waits for every response and answers with one JSON body.
func (ss *session) serveJSON(w http.ResponseWriter, r *http.Request, s *sink, reqs []*mcp.Envelope, filter upstream.Filter) {
	timer := time.NewTimer(ss.srv.o.RequestTimeout)
	defer timer.Stop()
	var out [][]byte
	for len(out) < len(reqs) {
		select {
		case ev := <-s.ch:
			if ev.final {
				out = append(out, filter.Apply(ev.data))
			}
		case <-r.Context().Done():
			ss.detach(s)
			return
		case <-ss.done:
			if len(s.ch) > 0 {
				continue
			}
			mcp.WriteError(w, http.StatusBadGateway, reqs[0].ID, mcp.CodeUpstream, "the upstream MCP session ended; initialize a new session and retry", nil)
			return
		case <-timer.C:
			ss.forget(reqs)
			ss.cancelUpstream(reqs)
			mcp.WriteError(w, http.StatusGatewayTimeout, reqs[0].ID, mcp.CodeUpstreamTimeout, "the upstream MCP server did not answer within "+ss.srv.o.RequestTimeout.String(), nil)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if len(out) == 1 {
		_, _ = w.Write(out[0])
		return
	}
	_, _ = w.Write([]byte("[" + string(joinBytes(out)) + "]"))
}

func joinBytes(parts [][]byte) []byte {
	var b []byte
	for i, p := range parts {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, p...)
	}
	return b
}

func (ss *session) detach(s *sink) {
	ss.mu.Lock()
	s.gone = true
	ss.mu.Unlock()
}

func sseHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
}

// serveSSE streams events of one POST until all its responses are sent.
// A request whose answer (or progress notification) does not come within
// RequestTimeout ends with a JSON-RPC error event, like a JSON reply.
func (ss *session) serveSSE(w http.ResponseWriter, r *http.Request, s *sink, reqs []*mcp.Envelope, filter upstream.Filter) {
	ss.srv.o.Streams.Add(1)
	defer ss.srv.o.Streams.Add(-1)
	defer ss.dropPost(s)                              // registered by handle
	open := make(map[string]*mcp.Envelope, len(reqs)) // requests not answered yet
	for _, e := range reqs {
		open[string(e.ID)] = e
	}
	sseHeaders(w)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	ka := time.NewTicker(ss.srv.o.KeepAlive)
	defer ka.Stop()
	wait := time.NewTimer(ss.srv.o.RequestTimeout)
	defer wait.Stop()
	for len(open) > 0 {
		select {
		case ev := <-s.ch:
			env, err := mcp.PeekOne(ev.data)
			if !ss.send(w, rc, s, ev, filter) {
				return
			}
			switch {
			case ev.final:
				if err == nil {
					delete(open, string(env.ID))
				} else {
					clear(open) // unreadable final answer: nothing left to wait for
				}
			case err == nil && env.Method == "notifications/progress":
				wait.Reset(ss.srv.o.RequestTimeout)
			}
		case <-ka.C:
			if !ss.keepAlive(w, rc, s) {
				return
			}
		case <-wait.C:
			late := make([]*mcp.Envelope, 0, len(open))
			for _, e := range open {
				late = append(late, e)
			}
			ss.forget(late)
			ss.cancelUpstream(late)
			for _, e := range late {
				msg := mcp.ErrorResponse(e.ID, mcp.CodeUpstreamTimeout, "the upstream MCP server did not answer within "+ss.srv.o.RequestTimeout.String(), nil)
				if err := mcp.WriteEvent(w, mcp.Event{Event: "message", Data: msg}); err != nil {
					break
				}
			}
			_ = rc.Flush()
			return
		case <-ss.done:
			if len(s.ch) > 0 {
				continue
			}
			return
		case <-r.Context().Done():
			// Session era: disconnection is not cancellation; later events
			// stay in the replay buffer for Last-Event-ID.
			ss.detach(s)
			return
		}
	}
}

// cancelUpstream tells the upstream that the gateway stopped waiting for
// reqs (notifications/cancelled), so it can stop working on them. It does
// not wait: a child that stopped reading must not hold the handler.
func (ss *session) cancelUpstream(reqs []*mcp.Envelope) {
	msgs := make([][]byte, 0, len(reqs))
	for _, e := range reqs {
		msgs = append(msgs, []byte(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":`+string(e.ID)+`,"reason":"the gateway's request timeout expired"}}`))
	}
	go func() {
		for _, m := range msgs {
			if ss.conn.Send(context.Background(), m) != nil {
				return
			}
		}
	}()
}

func (ss *session) dropPost(s *sink) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for i, p := range ss.posts {
		if p == s {
			ss.posts = append(ss.posts[:i], ss.posts[i+1:]...)
			return
		}
	}
}

// listen serves the standalone GET stream (one per session), replaying
// events after Last-Event-ID first.
func (ss *session) listen(w http.ResponseWriter, r *http.Request, filter upstream.Filter) {
	if !wantsSSE(r) {
		mcp.WriteError(w, http.StatusNotAcceptable, nil, mcp.CodeInvalidRequest, "GET needs Accept: text/event-stream", nil)
		return
	}
	s := ss.newSink()
	ss.mu.Lock()
	if ss.standalone != nil && !ss.standalone.gone {
		ss.mu.Unlock()
		mcp.WriteError(w, http.StatusConflict, nil, mcp.CodeInvalidRequest, "this session already has an open GET stream", nil)
		return
	}
	var replay []event
	if last := r.Header.Get(mcp.HeaderLastEventID); last != "" {
		stream, seq, ok := parseEventID(last)
		for _, ev := range ss.ring {
			if ok && ev.stream == stream && ev.seq > seq {
				replay = append(replay, ev)
			}
		}
		if ok {
			s.stream = stream // resumption continues the same stream
		}
	}
	backlog := ss.backlog
	ss.backlog = nil
	ss.standalone = s
	ss.activeLocked(1)
	ss.mu.Unlock()
	defer func() {
		ss.mu.Lock()
		if ss.standalone == s {
			ss.standalone = nil
		}
		ss.activeLocked(-1)
		ss.last = time.Now()
		ss.mu.Unlock()
	}()
	ss.srv.o.Streams.Add(1)
	defer ss.srv.o.Streams.Add(-1)
	sseHeaders(w)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// A priming event with an id lets the client resume even before the
	// first message (2025-11-25 SSE polling).
	_ = mcp.WriteEvent(w, mcp.Event{ID: strconv.FormatInt(s.stream, 10) + "-0", HasID: true, Data: []byte{}})
	for _, ev := range replay {
		_ = mcp.WriteEvent(w, mcp.Event{ID: ev.id(), Event: "message", Data: filter.Apply(ev.data)})
	}
	for _, m := range backlog {
		ss.deliver(s, m, false)
	}
	_ = rc.Flush()
	ka := time.NewTicker(ss.srv.o.KeepAlive)
	defer ka.Stop()
	for {
		select {
		case ev := <-s.ch:
			if !ss.send(w, rc, s, ev, filter) {
				return
			}
		case <-ka.C:
			if !ss.keepAlive(w, rc, s) {
				return
			}
		case <-r.Context().Done():
			ss.detach(s)
			if upstream.WriteReconnect(r.Context(), w) {
				_ = rc.Flush()
			}
			return
		case <-ss.done:
			return
		}
	}
}

func parseEventID(id string) (stream, seq int64, ok bool) {
	a, b, found := strings.Cut(id, "-")
	if !found {
		return 0, 0, false
	}
	s, err1 := strconv.ParseInt(a, 10, 64)
	q, err2 := strconv.ParseInt(b, 10, 64)
	return s, q, err1 == nil && err2 == nil
}

// send writes one event to a live stream and flushes it; on a write error
// the sink is detached (later events stay in the replay buffer) and send
// reports false.
func (ss *session) send(w http.ResponseWriter, rc *http.ResponseController, s *sink, ev event, filter upstream.Filter) bool {
	if err := mcp.WriteEvent(w, mcp.Event{ID: ev.id(), Event: "message", Data: filter.Apply(ev.data)}); err != nil {
		ss.detach(s)
		return false
	}
	_ = rc.Flush()
	return true
}

// keepAlive writes an SSE comment so idle intermediaries keep the stream.
func (ss *session) keepAlive(w http.ResponseWriter, rc *http.ResponseController, s *sink) bool {
	if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
		ss.detach(s)
		return false
	}
	_ = rc.Flush()
	return true
}
