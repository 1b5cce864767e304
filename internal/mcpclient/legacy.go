package mcpclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/mcpgate/mcpgate/internal/legacysse"
)

// legacyConn is the deprecated HTTP+SSE transport (2024-11-05) over the
// shared client (internal/legacysse): one GET event stream that first
// names the endpoint for POSTs, then carries every server message;
// responses are matched to requests by id.
type legacyConn struct {
	conn *legacysse.Conn

	mu          sync.Mutex             // guards the fields below
	waiting     map[string]chan []byte // request id → its response
	unsolicited func([]byte)           // Listen's deliver, once it runs
	backlog     [][]byte               // server messages before Listen (at most 256)
	ended       bool                   // the stream ended; waiting is closed
}

// maxBacklog bounds the server messages kept until Listen runs.
const maxBacklog = 256

// Legacy reports whether the transport uses HTTP+SSE.
func (t *Transport) Legacy() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.legacy != nil
}

// ConnectLegacy opens the HTTP+SSE stream at t.URL and waits for its
// endpoint event. The endpoint must be on the stream's origin.
func (t *Transport) ConnectLegacy(ctx context.Context) error {
	lc := &legacyConn{waiting: map[string]chan []byte{}}
	conn, err := legacysse.Dial(ctx, legacysse.Options{
		URL: t.URL, HTTP: t.client(), Header: t.Headers, OnMessage: lc.dispatch,
	})
	if err != nil {
		return legacyError("opening the HTTP+SSE stream", err)
	}
	lc.conn = conn
	go lc.watch()
	t.mu.Lock()
	t.legacy = lc
	t.stateless, t.sessionID = false, ""
	t.mu.Unlock()
	return nil
}

// legacyError gives the shared client's errors mcpclient's types: a
// refused answer is an *HTTPError, an authentication failure an
// *AuthError (unwrapped from http.Client's *url.Error).
func legacyError(what string, err error) error {
	var se *legacysse.StatusError
	if errors.As(err, &se) {
		return fmt.Errorf("%s: %w", what, se)
	}
	return unwrapAuth(err)
}

// watch fails every waiting request once the stream ends.
func (lc *legacyConn) watch() {
	<-lc.conn.Done()
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.ended = true
	for _, ch := range lc.waiting {
		close(ch)
	}
	lc.waiting = map[string]chan []byte{}
}

// dispatch routes one server message: a response to its waiting request,
// anything else to Listen (or the backlog until Listen runs).
func (lc *legacyConn) dispatch(msg []byte) {
	var w wire
	_ = json.Unmarshal(msg, &w)
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if w.Method == "" && len(w.ID) > 0 {
		key := string(bytes.TrimSpace(w.ID))
		if ch, ok := lc.waiting[key]; ok {
			delete(lc.waiting, key)
			ch <- msg
			return
		}
	}
	if lc.unsolicited != nil {
		lc.unsolicited(msg)
		return
	}
	if len(lc.backlog) < maxBacklog {
		lc.backlog = append(lc.backlog, msg)
	}
}

// await registers a request id before its POST; the channel receives the
// response, or is closed when the stream ends.
func (lc *legacyConn) await(key string) (chan []byte, error) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.ended {
		return nil, lc.conn.Err()
	}
	ch := make(chan []byte, 1)
	lc.waiting[key] = ch
	return ch, nil
}

func (lc *legacyConn) forget(key string) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	delete(lc.waiting, key)
}

// postLegacy sends one message to the endpoint; for a request it waits
// for the response on the stream.
func (t *Transport) postLegacy(ctx context.Context, lc *legacyConn, raw []byte, m *wire, isRequest bool, deliver func([]byte)) error {
	var ch chan []byte
	if isRequest {
		key := string(bytes.TrimSpace(m.ID))
		var err error
		if ch, err = lc.await(key); err != nil {
			return err
		}
		defer lc.forget(key)
	}
	if err := lc.conn.Send(ctx, raw); err != nil {
		var se *legacysse.StatusError
		if errors.As(err, &se) {
			return se
		}
		return opError(m.Method, unwrapAuth(err))
	}
	if !isRequest {
		return nil
	}
	select {
	case msg, ok := <-ch:
		if !ok {
			return fmt.Errorf("%s: %w", m.Method, lc.conn.Err())
		}
		deliver(msg)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// listenLegacy passes unsolicited stream messages to deliver until ctx
// ends or the stream closes.
func (t *Transport) listenLegacy(ctx context.Context, lc *legacyConn, deliver func([]byte)) error {
	lc.mu.Lock()
	lc.unsolicited = deliver
	backlog := lc.backlog
	lc.backlog = nil
	lc.mu.Unlock()
	for _, m := range backlog {
		deliver(m)
	}
	select {
	case <-ctx.Done():
		return nil
	case <-lc.conn.Done():
		return lc.conn.Err()
	}
}
