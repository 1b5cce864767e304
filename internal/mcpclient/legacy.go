package mcpclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/origin"
)

// legacyConn is the deprecated HTTP+SSE transport (2024-11-05): one GET
// event stream that first names the endpoint for POSTs, then carries every
// server message; responses are matched to requests by id.
type legacyConn struct {
	endpoint string
	cancel   context.CancelFunc
	done     chan struct{}

	mu          sync.Mutex
	waiting     map[string]chan []byte
	unsolicited func([]byte)
	backlog     [][]byte
	err         error
}

// Legacy reports whether the transport uses HTTP+SSE.
func (t *Transport) Legacy() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.legacy != nil
}

// ConnectLegacy opens the HTTP+SSE stream at t.URL and waits for its
// endpoint event. The endpoint must be on the stream's origin.
func (t *Transport) ConnectLegacy(ctx context.Context) error {
	sctx, cancel := context.WithCancel(context.Background())
	var resp *http.Response
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(sctx, http.MethodGet, t.URL, nil)
		if err != nil {
			cancel()
			return err
		}
		for k, vs := range t.Headers {
			req.Header[k] = vs
		}
		req.Header.Set("Accept", "text/event-stream")
		if t.Auth != nil {
			if err := t.Auth.Apply(ctx, req, nil); err != nil {
				cancel()
				return err
			}
		}
		resp, err = t.do(req)
		if err != nil {
			cancel()
			return fmt.Errorf("opening the HTTP+SSE stream: %w", err)
		}
		if (resp.StatusCode == 401 || resp.StatusCode == 403) && t.Auth != nil && attempt < maxAttempts {
			retry, herr := t.Auth.Handle(ctx, resp, "GET")
			readSome(resp)
			if herr != nil {
				cancel()
				return herr
			}
			if retry {
				continue
			}
		}
		break
	}
	if resp.StatusCode != http.StatusOK {
		body := readSome(resp)
		cancel()
		return fmt.Errorf("opening the HTTP+SSE stream: %w", &HTTPError{Status: resp.StatusCode, Body: body})
	}
	r := mcp.NewSSEReader(resp.Body, 0)
	endpoint := make(chan string, 1)
	lc := &legacyConn{cancel: cancel, done: make(chan struct{}), waiting: map[string]chan []byte{}}
	go func() {
		defer close(lc.done)
		defer resp.Body.Close()
		sent := false
		for {
			ev, err := r.Next()
			if err != nil {
				lc.mu.Lock()
				lc.err = fmt.Errorf("the HTTP+SSE stream ended: %v", err)
				for _, ch := range lc.waiting {
					close(ch)
				}
				lc.waiting = map[string]chan []byte{}
				lc.mu.Unlock()
				if !sent {
					close(endpoint)
				}
				return
			}
			if ev.Event == "endpoint" && !sent {
				endpoint <- strings.TrimSpace(string(ev.Data))
				sent = true
				continue
			}
			if len(ev.Data) == 0 || !json.Valid(ev.Data) {
				continue
			}
			lc.dispatch(ev.Data)
		}
	}()
	select {
	case e, ok := <-endpoint:
		if !ok {
			return errors.New("the HTTP+SSE stream closed before naming its endpoint")
		}
		base, _ := url.Parse(t.URL)
		u, err := base.Parse(e)
		if err != nil || u.User != nil || !origin.Same(base, u) {
			// every POST carries the server's credentials: the endpoint
			// must be on the stream's exact origin (scheme, host, port)
			cancel()
			target := "an unparsable URL"
			if err == nil {
				target = origin.Of(u)
				if u.User != nil {
					target += " (with credentials in the URL)"
				}
			}
			return fmt.Errorf("%w: the HTTP+SSE endpoint of %s points to %s; refusing to post there", origin.ErrOther, origin.Of(base), target)
		}
		lc.endpoint = u.String()
	case <-time.After(30 * time.Second):
		cancel()
		return errors.New("the HTTP+SSE stream named no endpoint within 30 s")
	case <-ctx.Done():
		cancel()
		return ctx.Err()
	}
	t.mu.Lock()
	t.legacy = lc
	t.modern, t.sessionID = false, ""
	t.mu.Unlock()
	return nil
}

func (lc *legacyConn) dispatch(msg []byte) {
	var w wire
	_ = json.Unmarshal(msg, &w)
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if w.Method == "" && len(w.ID) > 0 {
		if ch, ok := lc.waiting[string(bytes.TrimSpace(w.ID))]; ok {
			delete(lc.waiting, string(bytes.TrimSpace(w.ID)))
			ch <- msg
			return
		}
	}
	if lc.unsolicited != nil {
		lc.unsolicited(msg)
		return
	}
	if len(lc.backlog) < 256 {
		lc.backlog = append(lc.backlog, msg)
	}
}

// postLegacy sends one message to the endpoint; for a request it waits
// for the response on the stream.
func (t *Transport) postLegacy(ctx context.Context, lc *legacyConn, raw []byte, m *wire, isRequest bool, deliver func([]byte)) error {
	var ch chan []byte
	key := string(bytes.TrimSpace(m.ID))
	if isRequest {
		ch = make(chan []byte, 1)
		lc.mu.Lock()
		if lc.err != nil {
			err := lc.err
			lc.mu.Unlock()
			return err
		}
		lc.waiting[key] = ch
		lc.mu.Unlock()
		defer func() {
			lc.mu.Lock()
			delete(lc.waiting, key)
			lc.mu.Unlock()
		}()
	}
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, lc.endpoint, bytes.NewReader(raw))
		if err != nil {
			return err
		}
		for k, vs := range t.Headers {
			req.Header[k] = vs
		}
		req.Header.Set("Content-Type", "application/json")
		if t.Auth != nil {
			if err := t.Auth.Apply(ctx, req, raw); err != nil {
				return err
			}
		}
		resp, err := t.do(req)
		if err != nil {
			return fmt.Errorf("%s: %w", m.Method, err)
		}
		if (resp.StatusCode == 401 || resp.StatusCode == 403) && t.Auth != nil && attempt < maxAttempts {
			retry, herr := t.Auth.Handle(ctx, resp, m.Method)
			readSome(resp)
			if herr != nil {
				return herr
			}
			if retry {
				continue
			}
		}
		body := readSome(resp)
		if resp.StatusCode/100 != 2 {
			return &HTTPError{Status: resp.StatusCode, Body: body}
		}
		break
	}
	if !isRequest {
		return nil
	}
	select {
	case msg, ok := <-ch:
		if !ok {
			lc.mu.Lock()
			err := lc.err
			lc.mu.Unlock()
			return fmt.Errorf("%s: %w", m.Method, err)
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
	case <-lc.done:
		lc.mu.Lock()
		defer lc.mu.Unlock()
		return lc.err
	}
}
