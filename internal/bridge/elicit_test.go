package bridge

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// URL-mode elicitation through the bridge (issue 12 item 7). Texts:
// docs/specification/2025-11-25/client/elicitation.mdx,
// docs/specification/2026-07-28/client/elicitation.mdx and
// basic/patterns/mrtr.mdx (modelcontextprotocol repository, snapshot of
// 2026-08-22).

const initURL = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{"form":{},"url":{}}},"clientInfo":{"name":"t","version":"1"}}}`
const initForm = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{}},"clientInfo":{"name":"t","version":"1"}}}`

// modernURLServer is a 2026-07-28 server whose tools/call needs a URL
// elicitation with url u: an InputRequiredResult first, then, on a retry
// with the input, the result. It records the client capabilities of
// every request.
type modernURLServer struct {
	mu      sync.Mutex
	caps    []string
	retries []string
}

func (s *modernURLServer) handler(u string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Meta      map[string]json.RawMessage `json:"_meta"`
				State     string                     `json:"requestState"`
				Responses map[string]json.RawMessage `json:"inputResponses"`
			} `json:"params"`
		}
		_ = json.NewDecoder(r.Body).Decode(&m)
		s.mu.Lock()
		s.caps = append(s.caps, string(m.Params.Meta["io.modelcontextprotocol/clientCapabilities"]))
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case m.Method == "server/discover":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},"serverInfo":{"name":"modern","version":"9"}}}`, m.ID)
		case m.Method == "tools/call" && m.Params.State == "":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"resultType":"input_required","requestState":"st-1","inputRequests":{"connect":{"method":"elicitation/create","params":{"mode":"url","message":"Connect your account","url":%q}}}}}`, m.ID, u)
		case m.Method == "tools/call":
			s.mu.Lock()
			s.retries = append(s.retries, string(m.Params.Responses["connect"]))
			s.mu.Unlock()
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"resultType":"complete","content":[{"type":"text","text":"connected"}]}}`, m.ID)
		default:
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{}}`, m.ID)
		}
	}
}

// TestURLElicitationModernToSessionClient: a modern server's URL-mode
// input request reaches the session-era stdio client as the 2025-11-25
// request it knows — "URL mode elicitation requests MUST specify mode:
// "url", a message, and include these additional parameters: url,
// elicitationId" — and once the retried request completes, the client
// gets the completion notification for that id ("Servers MAY send a
// notifications/elicitation/complete notification when an out-of-band
// interaction started by URL mode elicitation is completed … MUST include
// the elicitationId established in the original elicitation/create
// request"), before its result.
func TestURLElicitationModernToSessionClient(t *testing.T) {
	const u = "https://mcp.example.com/connect?x=1"
	s := &modernURLServer{}
	h := start(t, s.handler(u))
	h.send(initURL)
	h.answer(1)
	h.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"files","arguments":{}}}`)
	req := h.waitRequest("elicitation/create")
	p, _ := req["params"].(map[string]any)
	eid, _ := p["elicitationId"].(string)
	if p["mode"] != "url" || p["url"] != u || p["message"] != "Connect your account" || eid == "" {
		t.Fatalf("the client got %v", req)
	}
	id, _ := json.Marshal(req["id"])
	h.send(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":{"action":"accept"}}`)
	final := h.answer(2)
	if !strings.Contains(fmt.Sprint(final["result"]), "connected") {
		t.Fatalf("the client got %v", final)
	}
	h.mu.Lock()
	var order []string
	for _, m := range h.out {
		if m["method"] == "notifications/elicitation/complete" {
			pp, _ := m["params"].(map[string]any)
			order = append(order, "complete:"+fmt.Sprint(pp["elicitationId"]))
		}
		if fmt.Sprint(m["id"]) == "2" {
			order = append(order, "result")
		}
	}
	h.mu.Unlock()
	if strings.Join(order, " ") != "complete:"+eid+" result" {
		t.Fatalf("want the completion for %s before the result, got %v", eid, order)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.retries) != 1 || s.retries[0] != `{"action":"accept"}` {
		t.Fatalf("the retry carried %v", s.retries)
	}
	// "declare the elicitation capability … only when the local client
	// declared it": the remote saw exactly what the client declared
	for _, c := range s.caps {
		if c != `{"elicitation":{"form":{},"url":{}}}` {
			t.Fatalf("the remote saw client capabilities %s", c)
		}
	}
}

// TestURLElicitationRefusedByBridge: "Servers MUST NOT send elicitation
// requests with modes that are not supported by the client", and a URL
// the client should never show (mcp.CheckElicitationURL) is not relayed:
// the client's request ends with an error, and no elicitation/create
// reaches it.
func TestURLElicitationRefusedByBridge(t *testing.T) {
	rows := []struct{ name, init, url, want string }{
		{"client declared form only", initForm, "https://mcp.example.com/connect", "did not declare"},
		{"javascript URL", initURL, "javascript:alert(1)", "refuses"},
		{"user info", initURL, "https://bank.example@evil.example/", "refuses"},
		{"http to a remote host", initURL, "http://evil.example/", "refuses"},
		{"bidi override", initURL, "https://evil.example/\u202egnp.exe", "refuses"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			s := &modernURLServer{}
			h := start(t, s.handler(row.url))
			h.send(row.init)
			h.answer(1)
			h.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"files","arguments":{}}}`)
			m := h.answer(2)
			if errCode(m) == 0 || !strings.Contains(errMsg(m), row.want) {
				t.Fatalf("want an error saying %q, got %v", row.want, m)
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			for _, o := range h.out {
				if o["method"] == "elicitation/create" {
					t.Fatalf("the client was asked: %v", o)
				}
			}
			if row.init == initForm {
				for _, c := range s.caps {
					if strings.Contains(c, "url") {
						t.Fatalf("the remote was told of URL mode the client never declared: %s", c)
					}
				}
			}
		})
	}
}

// TestURLElicitationModernClientGetsInputRequired: a 2026-07-28 stdio
// client handles Multi Round-Trip Requests itself ("If a client receives
// an InputRequiredResult that contains the inputRequests field, the client
// MUST construct the requested inputs before retrying the original
// request"): the bridge passes the result as it is.
func TestURLElicitationModernClientGetsInputRequired(t *testing.T) {
	s := &modernURLServer{}
	h := start(t, s.handler("https://mcp.example.com/connect"))
	h.send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2026-07-28","capabilities":{"elicitation":{"url":{}}},"clientInfo":{"name":"t","version":"1"}}}`)
	h.answer(1)
	h.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"files","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{"url":{}}}}}}`)
	m := h.answer(2)
	r, _ := m["result"].(map[string]any)
	if r["resultType"] != "input_required" || r["requestState"] != "st-1" {
		t.Fatalf("the 2026-07-28 client got %v", m)
	}
}

// TestURLElicitationSessionEraPassesThrough: against a session-era server
// the bridge relays the server request, the completion notification and
// the -32042 error unchanged ("When a request cannot be processed until an
// elicitation is completed, the server MAY return a URLElicitationRequired
// error (code -32042)"; "The error MUST include a list of elicitations"),
// and the server sees the client's capabilities as declared.
func TestURLElicitationSessionEraPassesThrough(t *testing.T) {
	const ask = `{"jsonrpc":"2.0","id":"ask-1","method":"elicitation/create","params":{"mode":"url","elicitationId":"e-1","url":"https://mcp.example.com/c","message":"Connect"}}`
	const done = `{"jsonrpc":"2.0","method":"notifications/elicitation/complete","params":{"elicitationId":"e-1"}}`
	const required = `{"code":-32042,"message":"This request requires more information.","data":{"elicitations":[{"mode":"url","elicitationId":"e-2","url":"https://mcp.example.com/d","message":"Authorize"}]}}`
	var mu sync.Mutex
	var initBody string
	answered := make(chan string, 1)
	base := legacy(t, func(w http.ResponseWriter, r *http.Request, id, params json.RawMessage) {
		if strings.Contains(string(params), `"needs-auth"`) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":%s}`, id, required)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "event: message\ndata: %s\n\n", ask)
		w.(http.Flusher).Flush()
		select {
		case a := <-answered:
			if !strings.Contains(a, `"action":"accept"`) {
				return
			}
		case <-time.After(5 * time.Second):
			return
		}
		fmt.Fprintf(w, "event: message\ndata: %s\n\n", done)
		fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[]}}\n\n", id)
	})
	h := start(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			s := string(body)
			if strings.Contains(s, `"initialize"`) {
				mu.Lock()
				initBody = s
				mu.Unlock()
			}
			if strings.Contains(s, `"ask-1"`) && !strings.Contains(s, "method") {
				answered <- s
				w.WriteHeader(202)
				return
			}
			r.Body = readCloser{strings.NewReader(s)}
		}
		base(w, r)
	})
	h.send(initURL)
	h.answer(1)
	mu.Lock()
	if !strings.Contains(initBody, `"capabilities":{"elicitation":{"form":{},"url":{}}}`) {
		t.Fatalf("the server got initialize %s", initBody)
	}
	mu.Unlock()
	h.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"needs-auth","arguments":{}}}`)
	m := h.answer(2)
	if got, _ := json.Marshal(m["error"]); errCode(m) != -32042 || !strings.Contains(string(got), `"elicitationId":"e-2"`) {
		t.Fatalf("the client got %v", m)
	}
	h.send(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"connect","arguments":{}}}`)
	req := h.waitRequest("elicitation/create")
	if p, _ := req["params"].(map[string]any); p["elicitationId"] != "e-1" || p["url"] != "https://mcp.example.com/c" {
		t.Fatalf("the client got %v", req)
	}
	h.send(`{"jsonrpc":"2.0","id":"ask-1","result":{"action":"accept"}}`)
	h.await("the completion notification", func(m map[string]any) bool {
		p, _ := m["params"].(map[string]any)
		return m["method"] == "notifications/elicitation/complete" && p["elicitationId"] == "e-1"
	})
	h.answer(3)
}

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }
