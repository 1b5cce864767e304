//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Call is one request of a steady load: when it started and ended, and
// why it failed (nil: it succeeded).
type Call struct {
	Worker     int
	Start, End time.Time
	Err        error
}

// Load is a steady stream of requests from several workers (SteadyLoad),
// for drain and rolling-restart tests: which requests failed, and when
// they had started.
type Load struct {
	stop  context.CancelFunc
	wg    sync.WaitGroup
	mu    sync.Mutex // guards calls
	calls []Call
	n     atomic.Int64
}

// SteadyLoad runs workers goroutines, each calling send in a loop (pause
// between calls) until Stop. send gets a context that ends at Stop and the
// worker's index; it reports whether the request failed. Each worker is
// sequential, so a worker's next request starts after its last ended.
func SteadyLoad(workers int, pause time.Duration, send func(ctx context.Context, worker int) error) *Load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{stop: cancel}
	for w := range workers {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				c := Call{Worker: w, Start: time.Now()}
				c.Err = send(ctx, w)
				c.End = time.Now()
				if ctx.Err() != nil && c.Err != nil {
					return // cut by Stop, not a failure of the system under test
				}
				l.mu.Lock()
				l.calls = append(l.calls, c)
				l.mu.Unlock()
				l.n.Add(1)
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		})
	}
	return l
}

// Count is the number of requests completed so far.
func (l *Load) Count() int64 { return l.n.Load() }

// Stop ends the load, waits for the workers, and returns every call.
func (l *Load) Stop() []Call {
	l.stop()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Call(nil), l.calls...)
}

// Failed returns the calls that failed and had started before t.
func Failed(calls []Call, before time.Time) []Call {
	var out []Call
	for _, c := range calls {
		if c.Err != nil && c.Start.Before(before) {
			out = append(out, c)
		}
	}
	return out
}

// Started counts the calls that had started before t.
func Started(calls []Call, before time.Time) int {
	n := 0
	for _, c := range calls {
		if c.Start.Before(before) {
			n++
		}
	}
	return n
}

// RawSession is a 2025-11-25 MCP session spoken with plain HTTP POSTs (no
// SDK, no standalone GET stream), so that a load counts exactly the
// requests it sends and nothing reconnects behind its back.
type RawSession struct {
	URL, Token, ID string
	Client         *http.Client
	next           atomic.Int64
}

// OpenRawSession initializes a session at url with a bearer token.
func OpenRawSession(ctx context.Context, client *http.Client, url, token string) (*RawSession, error) {
	s := &RawSession{URL: url, Token: token, Client: client}
	res, hdr, err := s.post(ctx, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e-load","version":"1"}}}`)
	if err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	if s.ID = hdr.Get("Mcp-Session-Id"); s.ID == "" {
		return nil, fmt.Errorf("initialize: no Mcp-Session-Id in %s", res)
	}
	if _, _, err := s.post(ctx, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); err != nil {
		return nil, fmt.Errorf("notifications/initialized: %w", err)
	}
	return s, nil
}

// CallTool calls tool with args and fails unless a result (not an error)
// comes back.
func (s *RawSession) CallTool(ctx context.Context, tool string, args map[string]any) (json.RawMessage, error) {
	a, _ := json.Marshal(args)
	id := s.next.Add(1)
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, id, tool, a)
	res, _, err := s.post(ctx, body)
	return res, err
}

// post sends one message; for a request it returns the JSON-RPC result of
// the reply (a JSON body or the response event of an SSE body).
func (s *RawSession) post(ctx context.Context, body string) (json.RawMessage, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", s.URL, strings.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+s.Token)
	if s.ID != "" {
		req.Header.Set("Mcp-Session-Id", s.ID)
		req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the reply: %w", err)
	}
	if resp.StatusCode == http.StatusAccepted {
		return nil, resp.Header, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("HTTP %d: %.300s", resp.StatusCode, b)
	}
	res, err := rpcResult(resp.Header.Get("Content-Type"), b)
	return res, resp.Header, err
}

// rpcResult finds the JSON-RPC response in a JSON or SSE body.
func rpcResult(contentType string, b []byte) (json.RawMessage, error) {
	msgs := [][]byte{b}
	if strings.HasPrefix(contentType, "text/event-stream") {
		msgs = nil
		for _, l := range bytes.Split(b, []byte("\n")) {
			if d, ok := bytes.CutPrefix(l, []byte("data: ")); ok && len(d) > 0 {
				msgs = append(msgs, d)
			}
		}
	}
	for _, m := range msgs {
		var r struct {
			ID     json.RawMessage `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(m, &r) != nil || r.ID == nil {
			continue // a notification (progress) before the response
		}
		if r.Error != nil {
			return nil, fmt.Errorf("JSON-RPC error %d: %s", r.Error.Code, r.Error.Message)
		}
		return r.Result, nil
	}
	return nil, fmt.Errorf("no JSON-RPC response in %.300s", b)
}
