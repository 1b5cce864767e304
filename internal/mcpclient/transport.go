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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/origin"
)

// Transport is the Streamable HTTP client transport for one endpoint:
// it sends JSON-RPC messages one POST each, reads JSON or SSE answers
// (resuming a cut SSE answer with GET + Last-Event-ID after the server's
// retry delay), keeps the session id (session era) or derives the
// 2026-07-28 headers from each body (modern era), applies credentials and
// lets Auth react to 401/403, and waits out 429s.
type Transport struct {
	URL     string
	HTTP    *http.Client
	Auth    Auth
	Headers http.Header
	// OnSessionExpired is called when the server answers 404 to a request
	// carrying a session id; a nil error retries the request once (the
	// caller re-initialized).
	OnSessionExpired func(ctx context.Context) error

	clientOnce sync.Once    // builds authClient on first use
	authClient *http.Client // HTTP pinned and authenticating (AuthClient)

	mu          sync.Mutex               // guards the fields below
	legacy      *legacyConn              // HTTP+SSE (2024-11-05) when set
	version     string                   // protocol revision sent
	stateless   bool                     // 2026-07-28 era (no session); HTTP+SSE is legacy != nil
	sessionID   string                   // session era: Mcp-Session-Id
	toolHeaders map[string][]headerParam // x-mcp-header params per tool
}

// Protocol returns the era and revision the transport speaks: HTTP+SSE
// once ConnectLegacy succeeded, else stateless or session (the session
// era's revision is "" until initialize answered).
func (t *Transport) Protocol() (mcp.Era, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.legacy != nil:
		return mcp.EraLegacySSE, t.version
	case t.stateless:
		return mcp.EraStateless, t.version
	}
	return mcp.EraSession, t.version
}

// SetProtocol sets the era and revision sent from now on. EraLegacySSE is
// entered with ConnectLegacy only; here it sets the revision.
func (t *Transport) SetProtocol(era mcp.Era, version string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stateless, t.version = era == mcp.EraStateless, version
	if t.stateless {
		t.sessionID = ""
	}
}

// SessionID is the session-era session id ("" when none).
func (t *Transport) SessionID() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sessionID
}

// ResetSession forgets the session id (before a re-initialize).
func (t *Transport) ResetSession() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sessionID = ""
}

// LearnTools caches the x-mcp-header annotations of a tools/list result
// (needed to send Mcp-Param-* headers) and returns the result without
// the tools whose annotations are invalid, with the reasons.
func (t *Transport) LearnTools(result json.RawMessage) (json.RawMessage, []string) {
	filtered, headers, rejected := FilterTools(result)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.toolHeaders == nil {
		t.toolHeaders = map[string][]headerParam{}
	}
	for name, hs := range headers {
		t.toolHeaders[name] = hs
	}
	return filtered, rejected
}

// wire is the part of a message the transport looks at.
type wire struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
}

// decorate sets the transport headers for a message.
func (t *Transport) decorate(req *http.Request, m *wire) {
	for k, vs := range t.Headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	t.mu.Lock()
	version, modern, sid := t.version, t.stateless, t.sessionID
	tool := t.toolHeaders
	t.mu.Unlock()
	if version != "" && (m == nil || m.Method != "initialize") {
		req.Header.Set(mcp.HeaderProtocolVersion, version)
	}
	if sid != "" && !modern {
		req.Header.Set(mcp.HeaderSessionID, sid)
	}
	if !modern || m == nil || m.Method == "" {
		return
	}
	req.Header.Set(mcp.HeaderMethod, m.Method)
	var params struct {
		Name      string         `json:"name"`
		URI       string         `json:"uri"`
		TaskID    string         `json:"taskId"`
		Arguments map[string]any `json:"arguments"`
	}
	_ = json.Unmarshal(m.Params, &params)
	switch m.Method {
	case "tools/call", "prompts/get":
		if params.Name != "" {
			req.Header.Set(mcp.HeaderName, mcp.EncodeHeaderValue(params.Name))
		}
	case "resources/read":
		if params.URI != "" {
			req.Header.Set(mcp.HeaderName, mcp.EncodeHeaderValue(params.URI))
		}
	case "tasks/get", "tasks/update", "tasks/cancel":
		// Tasks extension (SEP-2663) §Streamable HTTP: Routing Headers.
		if params.TaskID != "" {
			req.Header.Set(mcp.HeaderName, mcp.EncodeHeaderValue(params.TaskID))
		}
	}
	if m.Method == "tools/call" {
		for _, hp := range tool[params.Name] {
			if v, ok := hp.value(params.Arguments); ok {
				req.Header.Set(mcp.HeaderParamPrefix+hp.Name, mcp.EncodeHeaderValue(v))
			}
		}
	}
}

// maxBusyRetries bounds the resends after 429 Too Many Requests.
const maxBusyRetries = 2

// Post sends one JSON-RPC message. Every message the server sends back on
// this request (notifications, server requests, the response) goes to
// deliver, in order, as valid JSON. For a request, Post returns nil only
// once the response with the same id was delivered; an answer that ends
// without it is an error.
func (t *Transport) Post(ctx context.Context, raw []byte, deliver func([]byte)) error {
	var m wire
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("not a JSON-RPC message: %v", err)
	}
	return t.post(ctx, raw, &m, deliver)
}

// PostParsed is Post for a message whose id, method and params the caller
// already decoded (the bridge: one parse per message).
func (t *Transport) PostParsed(ctx context.Context, raw []byte, id json.RawMessage, method string, params json.RawMessage, deliver func([]byte)) error {
	return t.post(ctx, raw, &wire{ID: id, Method: method, Params: params}, deliver)
}

// post sends one message: credentials and challenges are the
// AuthTransport's (authtransport.go); post itself waits out a 429 and
// re-initializes a session the server forgot.
func (t *Transport) post(ctx context.Context, raw []byte, m *wire, deliver func([]byte)) error {
	isRequest := m.Method != "" && len(m.ID) > 0 && string(m.ID) != "null"
	op := m.Method
	if op == "" {
		op = "response"
	}
	t.mu.Lock()
	lc := t.legacy
	t.mu.Unlock()
	if lc != nil {
		return t.postLegacy(ctx, lc, raw, m, isRequest, deliver)
	}
	reinit := false
	for busy := 0; ; {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(raw))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		t.decorate(req, m)
		resp, err := t.do(req)
		if err != nil {
			return opError(op, err)
		}
		switch {
		case t.Auth != nil && challenged(resp):
			// a challenge the Auth declined: the credential is refused
			body := readSome(resp)
			return &HTTPError{Status: resp.StatusCode, Body: challengeText(resp) + body}
		case resp.StatusCode == http.StatusTooManyRequests && busy < maxBusyRetries:
			busy++
			if err := waitRetryAfter(ctx, resp); err != nil {
				return err
			}
			continue
		case resp.StatusCode == http.StatusNotFound && req.Header.Get(mcp.HeaderSessionID) != "" &&
			m.Method != "initialize" && !reinit && t.OnSessionExpired != nil:
			readSome(resp)
			reinit = true
			t.ResetSession()
			if err := t.OnSessionExpired(ctx); err != nil {
				return fmt.Errorf("re-initializing the expired session: %w", err)
			}
			continue
		}
		return t.read(ctx, resp, m, isRequest, deliver)
	}
}

// opError names the operation of a failed send; the transport's own
// authentication errors already say what failed and pass unchanged.
func opError(op string, err error) error {
	var ae *AuthError
	if errors.As(err, &ae) || errors.Is(err, origin.ErrOther) {
		return err
	}
	return fmt.Errorf("%s: %w", op, err)
}

// waitRetryAfter waits out a 429 (its Retry-After when at most 10 s).
func waitRetryAfter(ctx context.Context, resp *http.Response) error {
	wait := time.Second
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n >= 0 && n <= 10 {
		wait = time.Duration(n)*time.Second + 100*time.Millisecond
	}
	readSome(resp)
	select {
	case <-time.After(wait):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// readSome keeps the start of an answer that is not an MCP message (for
// an error's text) and drains a little more so the connection can be
// reused; neither bound is a message bound.
func readSome(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return string(b)
}

func challengeText(resp *http.Response) string {
	if v := resp.Header.Values("WWW-Authenticate"); len(v) > 0 {
		return "WWW-Authenticate: " + strings.Join(v, ", ") + " "
	}
	return ""
}

// read consumes an answer to a POST.
func (t *Transport) read(ctx context.Context, resp *http.Response, m *wire, isRequest bool, deliver func([]byte)) error {
	if sid := resp.Header.Get(mcp.HeaderSessionID); sid != "" && m.Method == "initialize" && resp.StatusCode/100 == 2 {
		t.mu.Lock()
		if !t.stateless {
			t.sessionID = sid
		}
		t.mu.Unlock()
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if !isRequest {
		body := readSome(resp)
		if resp.StatusCode/100 == 2 {
			return nil
		}
		return &HTTPError{Status: resp.StatusCode, Body: body}
	}
	op := m.Method
	switch {
	case ct == "text/event-stream" && resp.StatusCode == http.StatusOK:
		return t.readStream(ctx, resp, m.ID, op, deliver)
	case ct == "application/json":
		b, err := io.ReadAll(io.LimitReader(resp.Body, mcp.MaxMessageBytes+1))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		if len(b) > mcp.MaxMessageBytes {
			return fmt.Errorf("%s: the server's JSON answer exceeds %d bytes, the largest MCP message mcpgate reads", op, mcp.MaxMessageBytes)
		}
		var w wire
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
			// not an MCP endpoint for this method (whatever the body
			// says): the caller may fall back to another transport
			return &HTTPError{Status: resp.StatusCode, Body: string(b)}
		}
		if json.Unmarshal(b, &w) == nil && (w.Result != nil || w.Error != nil) {
			if !bytes.Equal(bytes.TrimSpace(w.ID), bytes.TrimSpace(m.ID)) && string(w.ID) != "null" {
				return fmt.Errorf("%s: the server answered another request id (%s)", op, w.ID)
			}
			if string(w.ID) == "null" {
				// an error not tied to the request (header validation):
				// re-address it to this request
				b = mcpErrorWithID(m.ID, w.Error)
			}
			deliver(b)
			return nil
		}
		if resp.StatusCode/100 != 2 {
			return &HTTPError{Status: resp.StatusCode, Body: string(b)}
		}
		return fmt.Errorf("%s: the server's JSON answer is not a JSON-RPC response", op)
	default:
		body := readSome(resp)
		if resp.StatusCode/100 == 2 {
			return fmt.Errorf("%s: the server answered with Content-Type %q, not JSON or an event stream", op, resp.Header.Get("Content-Type"))
		}
		return &HTTPError{Status: resp.StatusCode, Body: body}
	}
}

func mcpErrorWithID(id json.RawMessage, errObj json.RawMessage) []byte {
	return []byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"error":` + string(errObj) + `}`)
}

// readStream reads SSE events until the response to id; when the stream
// ends early after an event id, it reconnects with GET + Last-Event-ID
// after the server's retry delay (2025-11-25 polling), a few times.
func (t *Transport) readStream(ctx context.Context, resp *http.Response, id json.RawMessage, op string, deliver func([]byte)) error {
	lastID, retry := "", time.Duration(-1)
	for reconnects := 0; ; reconnects++ {
		done, err := func() (bool, error) {
			defer resp.Body.Close()
			r := mcp.NewSSEReader(resp.Body, mcp.MaxMessageBytes)
			for {
				ev, err := r.Next()
				if err != nil {
					if errors.Is(err, io.EOF) {
						return false, nil
					}
					return false, err
				}
				if ev.HasID {
					lastID = ev.ID
				}
				if ev.Retry >= 0 {
					retry = time.Duration(ev.Retry) * time.Millisecond
				}
				if len(ev.Data) == 0 {
					continue
				}
				var w wire
				if json.Unmarshal(ev.Data, &w) != nil {
					continue // not JSON-RPC: never passed on
				}
				deliver(ev.Data)
				if w.Method == "" && bytes.Equal(bytes.TrimSpace(w.ID), bytes.TrimSpace(id)) {
					return true, nil
				}
			}
		}()
		if done {
			return nil
		}
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		if lastID == "" || reconnects >= 5 {
			if err != nil {
				return fmt.Errorf("%s: reading the event stream: %w", op, err)
			}
			return fmt.Errorf("%s: the server closed the event stream before answering", op)
		}
		if retry < 0 {
			retry = time.Second
		}
		select {
		case <-time.After(retry):
		case <-ctx.Done():
			return ctx.Err()
		}
		resp, err = t.get(ctx, lastID)
		if err != nil {
			return fmt.Errorf("%s: resuming the event stream: %w", op, err)
		}
		if resp.StatusCode != http.StatusOK {
			body := readSome(resp)
			return fmt.Errorf("%s: resuming the event stream: %w", op, &HTTPError{Status: resp.StatusCode, Body: body})
		}
	}
}

// get opens a GET event stream (optionally resuming after lastEventID).
func (t *Transport) get(ctx context.Context, lastEventID string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return nil, err
	}
	t.decorate(req, nil)
	req.Header.Set("Accept", "text/event-stream")
	if lastEventID != "" {
		req.Header.Set(mcp.HeaderLastEventID, lastEventID)
	}
	return t.do(req)
}

// Listen opens the optional standalone GET stream (session era) and
// delivers its messages until ctx ends, reconnecting with Last-Event-ID.
// It returns nil when the server offers no stream (404/405).
func (t *Transport) Listen(ctx context.Context, deliver func([]byte)) error {
	t.mu.Lock()
	lc := t.legacy
	t.mu.Unlock()
	if lc != nil {
		return t.listenLegacy(ctx, lc, deliver)
	}
	lastID, retry := "", time.Second
	for failures := 0; ctx.Err() == nil; {
		resp, err := t.get(ctx, lastID)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
		} else if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
			readSome(resp)
			return nil
		} else if resp.StatusCode != http.StatusOK {
			readSome(resp)
			failures++
		} else {
			failures = 0
			r := mcp.NewSSEReader(resp.Body, mcp.MaxMessageBytes)
			for {
				ev, err := r.Next()
				if err != nil {
					break
				}
				if ev.HasID {
					lastID = ev.ID
				}
				if ev.Retry >= 0 {
					retry = time.Duration(ev.Retry) * time.Millisecond
				}
				if len(ev.Data) > 0 && json.Valid(ev.Data) {
					deliver(ev.Data)
				}
			}
			resp.Body.Close()
		}
		if failures > 5 {
			return fmt.Errorf("the server's event stream keeps failing")
		}
		select {
		case <-time.After(retry):
		case <-ctx.Done():
		}
	}
	return nil
}

// Delete ends the session (session era; closes the HTTP+SSE stream);
// errors are ignored.
func (t *Transport) Delete(ctx context.Context) {
	t.mu.Lock()
	lc := t.legacy
	t.mu.Unlock()
	if lc != nil {
		_ = lc.conn.Close()
		return
	}
	sid := t.SessionID()
	if sid == "" {
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, t.URL, nil)
	if err != nil {
		return
	}
	t.decorate(req, nil)
	if resp, err := t.do(req); err == nil {
		readSome(resp)
	}
}
