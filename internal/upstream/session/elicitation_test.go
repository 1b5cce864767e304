package session

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Texts followed: docs/specification/2025-11-25/client/elicitation.mdx and
// docs/specification/2026-07-28/client/elicitation.mdx,
// basic/patterns/mrtr.mdx, basic/index.mdx "Error Codes" and changelog.mdx
// item 11 of the modelcontextprotocol repository (snapshot of 2026-08-22).

// urlServer is a scripted 2025-11-25 server behind a Conn, standing in
// for a stdio child or a legacy SSE server.
type urlServer struct {
	mu          sync.Mutex
	got         []string // every client→server message, in order
	done        atomic.Bool
	sessions    atomic.Int64
	pendingCall json.RawMessage
}

type scriptConn struct {
	in     chan []byte
	out    chan []byte
	closed chan struct{}
	once   sync.Once
}

func (c *scriptConn) Send(ctx context.Context, msg []byte) error {
	select {
	case c.in <- append([]byte(nil), msg...):
		return nil
	case <-c.closed:
		return io.EOF
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *scriptConn) Recv(ctx context.Context) ([]byte, error) {
	select {
	case m := <-c.out:
		return m, nil
	case <-c.closed:
		return nil, io.EOF
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *scriptConn) Close() error { c.once.Do(func() { close(c.closed) }); return nil }

const (
	goodURL   = "https://mcp.example.com/connect?elicitationId=e-1"
	elicitID  = "550e8400-e29b-41d4-a716-446655440000"
	urlAskMsg = `{"jsonrpc":"2.0","id":"ask-1","method":"elicitation/create","params":{"mode":"url","elicitationId":"` + elicitID + `","url":"` + goodURL + `","message":"Connect your account"}}`
)

func (s *urlServer) dial(context.Context, upstream.Caller) (upstream.Conn, error) {
	c := &scriptConn{in: make(chan []byte, 16), out: make(chan []byte, 16), closed: make(chan struct{})}
	s.sessions.Add(1)
	go s.serve(c)
	return c, nil
}

func (s *urlServer) received() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.got, "\n")
}

func (s *urlServer) serve(c *scriptConn) {
	send := func(m string) {
		select {
		case c.out <- []byte(m):
		case <-c.closed:
		}
	}
	for {
		var raw []byte
		select {
		case raw = <-c.in:
		case <-c.closed:
			return
		}
		s.mu.Lock()
		s.got = append(s.got, string(raw))
		s.mu.Unlock()
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Name string `json:"name"`
			} `json:"params"`
			Result *struct {
				Action string `json:"action"`
			} `json:"result"`
			Error json.RawMessage `json:"error"`
		}
		_ = json.Unmarshal(raw, &m)
		switch {
		case m.Method == "initialize":
			send(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"url-server","version":"1"}}}`)
		case m.Method == "tools/call" && m.Params.Name == "urlask":
			// asks by server request, then (after the answer) completes
			s.mu.Lock()
			s.pendingCall = m.ID
			s.mu.Unlock()
			send(urlAskMsg)
		case m.Method == "tools/call" && m.Params.Name == "urlerr":
			if s.done.Load() {
				send(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"result":{"content":[{"type":"text","text":"connected"}]}}`)
				continue
			}
			send(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"error":{"code":-32042,"message":"This request requires more information.","data":{"elicitations":[{"mode":"url","elicitationId":"` + elicitID + `","url":"` + goodURL + `","message":"Authorization is required"}]}}}`)
		case m.Method == "" && string(m.ID) == `"ask-1"`:
			action := "error"
			if m.Result != nil {
				action = m.Result.Action
			}
			s.mu.Lock()
			id := s.pendingCall
			s.mu.Unlock()
			send(`{"jsonrpc":"2.0","method":"notifications/elicitation/complete","params":{"elicitationId":"` + elicitID + `"}}`)
			send(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":{"content":[{"type":"text","text":"done:` + action + `"}]}}`)
		}
	}
}

func startURLServer(t *testing.T) (*urlServer, *httptest.Server) {
	t.Helper()
	us := &urlServer{}
	s := New(Options{Dial: us.dial, RequestTimeout: 3 * time.Second, KeepAlive: time.Second})
	h := httptest.NewServer(standalone(s))
	t.Cleanup(func() {
		h.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return us, h
}

func postTo(t *testing.T, h *httptest.Server, sid, body, accept string) resp {
	t.Helper()
	f := &fixture{http: h}
	return f.post(t, sid, body, accept)
}

func modernMeta(caps string) string {
	return `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":` + caps + `}`
}

// lastMessage is the JSON body, or the last event of an SSE body.
func lastMessage(t *testing.T, r resp, accept string) (string, []string) {
	t.Helper()
	if accept != both {
		return r.body, nil
	}
	lines := dataLines(r.body)
	if len(lines) == 0 {
		t.Fatalf("no events: %d %s", r.status, r.body)
	}
	return lines[len(lines)-1], lines
}

type inputResult struct {
	ID     json.RawMessage `json:"id"`
	Result struct {
		ResultType    string  `json:"resultType"`
		RequestState  *string `json:"requestState"`
		InputRequests map[string]struct {
			Method string                     `json:"method"`
			Params map[string]json.RawMessage `json:"params"`
		} `json:"inputRequests"`
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
	} `json:"result"`
	Error *struct {
		Code int             `json:"code"`
		Data json.RawMessage `json:"data"`
	} `json:"error"`
}

// TestStatelessURLElicitationRequest: a session-era upstream asks a
// 2026-07-28 client for a URL-mode elicitation by server request. The
// client gets it inside an InputRequiredResult, without the elicitationId
// the revision removed, and never the completion notification: changelog
// item 11, "Remove the notifications/elicitation/complete notification and
// the elicitationId field of URL mode elicitation requests … the client
// learns the outcome of an out-of-band interaction by retrying the
// original request".
func TestStatelessURLElicitationRequest(t *testing.T) {
	for _, accept := range []string{jsonOnly, both} {
		t.Run(accept, func(t *testing.T) {
			us, h := startURLServer(t)
			meta := modernMeta(`{"elicitation":{"url":{}}}`)
			r := postTo(t, h, "", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"urlask",`+meta+`}}`, accept)
			body, _ := lastMessage(t, r, accept)
			var ir inputResult
			if json.Unmarshal([]byte(body), &ir) != nil || ir.Result.ResultType != "input_required" || ir.Result.RequestState == nil {
				t.Fatalf("want an InputRequiredResult: %s", r.body)
			}
			q := ir.Result.InputRequests[inputKey]
			if q.Method != "elicitation/create" || string(q.Params["mode"]) != `"url"` || string(q.Params["url"]) != `"`+goodURL+`"` {
				t.Fatalf("input request: %+v", q)
			}
			if _, has := q.Params["elicitationId"]; has {
				t.Fatalf("the 2025-11-25 elicitationId reached a 2026-07-28 client: %s", body)
			}
			// the upstream was told what the client declared
			if !strings.Contains(us.received(), `"capabilities":{"elicitation":{"url":{}}}`) {
				t.Fatalf("the client's elicitation capability did not reach the upstream: %s", us.received())
			}
			r = postTo(t, h, "", fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"urlask","requestState":%q,"inputResponses":{%q:{"action":"accept"}},%s}}`,
				*ir.Result.RequestState, inputKey, meta), accept)
			body, events := lastMessage(t, r, accept)
			if !strings.Contains(body, `"id":2`) || !strings.Contains(body, "done:accept") {
				t.Fatalf("the retry did not complete: %s", r.body)
			}
			if strings.Contains(r.body, "notifications/elicitation/complete") {
				t.Fatalf("a 2026-07-28 client got the removed completion notification: %q", events)
			}
		})
	}
}

// TestStatelessURLElicitationRequiredError: the upstream answers with
// -32042. "Implementations of this protocol version MUST NOT emit these
// codes: … -32042 — URL elicitation required (2025-11-25 only)"
// (2026-07-28 basic/index). The client gets the elicitations as
// inputRequests instead; its retry reaches the upstream as the original
// request, and "If the InputRequiredResult does not contain a requestState
// field, the client MUST NOT include one in the retry".
func TestStatelessURLElicitationRequiredError(t *testing.T) {
	for _, accept := range []string{jsonOnly, both} {
		t.Run(accept, func(t *testing.T) {
			us, h := startURLServer(t)
			meta := modernMeta(`{"elicitation":{"form":{},"url":{}}}`)
			r := postTo(t, h, "", `{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"urlerr",`+meta+`}}`, accept)
			body, _ := lastMessage(t, r, accept)
			if strings.Contains(r.body, "-32042") {
				t.Fatalf("-32042 reached a 2026-07-28 client: %s", r.body)
			}
			var ir inputResult
			if json.Unmarshal([]byte(body), &ir) != nil || ir.Result.ResultType != "input_required" || string(ir.ID) != `"a"` {
				t.Fatalf("want an InputRequiredResult: %s", r.body)
			}
			if ir.Result.RequestState != nil {
				t.Fatalf("a requestState nobody will redeem: %s", body)
			}
			q := ir.Result.InputRequests["url-elicitation-1"]
			if q.Method != "elicitation/create" || string(q.Params["url"]) != `"`+goodURL+`"` || string(q.Params["message"]) != `"Authorization is required"` {
				t.Fatalf("input request: %s", body)
			}
			if _, has := q.Params["elicitationId"]; has {
				t.Fatalf("elicitationId reached a 2026-07-28 client: %s", body)
			}
			us.done.Store(true) // the user completed the interaction out of band
			r = postTo(t, h, "", `{"jsonrpc":"2.0","id":"b","method":"tools/call","params":{"name":"urlerr","inputResponses":{"url-elicitation-1":{"action":"accept"}},`+meta+`}}`, accept)
			body, _ = lastMessage(t, r, accept)
			if !strings.Contains(body, `"id":"b"`) || !strings.Contains(body, "connected") {
				t.Fatalf("the retry did not complete: %s", r.body)
			}
			if strings.Contains(us.received(), "inputResponses") {
				t.Fatalf("the session-era upstream got inputResponses it never asked for: %s", us.received())
			}
		})
	}
}

// TestStatelessURLElicitationNotDeclared: "Servers MUST NOT send an
// inputRequests that the client has not declared support for" (mrtr); a
// client without elicitation.url gets MissingRequiredClientCapability
// instead of the upstream's -32042, and the upstream's request is answered
// as the 2025-11-25 text has clients answer it: "Server sends an
// elicitation/create request with a mode not declared in client
// capabilities: -32602 (Invalid params)".
func TestStatelessURLElicitationNotDeclared(t *testing.T) {
	for _, caps := range []string{`{}`, `{"elicitation":{}}`, `{"elicitation":{"form":{}}}`, `{"elicitation":{"url":true}}`} {
		t.Run(caps, func(t *testing.T) {
			us, h := startURLServer(t)
			meta := modernMeta(caps)
			r := postTo(t, h, "", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"urlerr",`+meta+`}}`, jsonOnly)
			var ir inputResult
			_ = json.Unmarshal([]byte(r.body), &ir)
			if ir.Error == nil || ir.Error.Code != mcp.CodeMissingRequiredClientCapability || !strings.Contains(string(ir.Error.Data), `"requiredCapabilities":{"elicitation":{"url":{}}}`) {
				t.Fatalf("want MissingRequiredClientCapability: %s", r.body)
			}
			r = postTo(t, h, "", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"urlask",`+meta+`}}`, jsonOnly)
			if strings.Contains(r.body, "input_required") || !strings.Contains(r.body, "done:error") {
				t.Fatalf("an undeclared URL elicitation reached the client: %s", r.body)
			}
			if !strings.Contains(us.received(), `"id":"ask-1","error":{"code":-32602`) {
				t.Fatalf("the upstream's request was not answered -32602: %s", us.received())
			}
		})
	}
}

// TestSessionURLElicitationPassesThrough: a 2025-11-25 client in a session
// gets the server request, the -32042 error and the completion
// notification exactly as the upstream sent them ("Servers MAY send a
// notifications/elicitation/complete notification … MUST only send the
// notification to the client that initiated the elicitation request").
func TestSessionURLElicitationPassesThrough(t *testing.T) {
	us, h := startURLServer(t)
	r := postTo(t, h, "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{"url":{}}},"clientInfo":{"name":"t","version":"1"}}}`, jsonOnly)
	sid := r.header.Get("Mcp-Session-Id")
	if sid == "" {
		t.Fatalf("initialize: %d %s", r.status, r.body)
	}
	postTo(t, h, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, jsonOnly)
	r = postTo(t, h, sid, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"urlerr"}}`, jsonOnly)
	if !strings.Contains(r.body, `"code":-32042`) || !strings.Contains(r.body, elicitID) {
		t.Fatalf("-32042 did not reach the 2025-11-25 client: %s", r.body)
	}
	// the tool call's stream carries the server request; the answer goes
	// in a POST of its own, and the completion and result follow on the
	// call's stream
	type out struct{ body string }
	ch := make(chan out, 1)
	go func() {
		ch <- out{postTo(t, h, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"urlask"}}`, both).body}
	}()
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(us.received(), `"urlask"`) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	a := postTo(t, h, sid, `{"jsonrpc":"2.0","id":"ask-1","result":{"action":"accept"}}`, jsonOnly)
	if a.status != http.StatusAccepted {
		t.Fatalf("the client's answer: %d %s", a.status, a.body)
	}
	got := (<-ch).body
	for _, want := range []string{urlAskMsg, `"method":"notifications/elicitation/complete","params":{"elicitationId":"` + elicitID + `"}`, "done:accept"} {
		if !strings.Contains(got, want) {
			t.Fatalf("missing %s in the call's stream:\n%s", want, got)
		}
	}
}
