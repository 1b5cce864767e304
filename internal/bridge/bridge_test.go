package bridge

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcpclient"
)

// harness runs a bridge against handler, feeding stdin lines and
// collecting stdout messages by id.
type harness struct {
	t      *testing.T
	in     *io.PipeWriter
	mu     sync.Mutex
	out    []map[string]any
	done   chan error
	posts  chan *http.Request
	srv    *httptest.Server
	closed time.Time
}

func start(t *testing.T, handler http.HandlerFunc) *harness {
	return startWith(t, handler, Options{})
}

// startWith is start with options (Transport, Stdin and Stdout are the
// harness's).
func startWith(t *testing.T, handler http.HandlerFunc, o Options) *harness {
	h := &harness{t: t, done: make(chan error, 1)}
	h.srv = httptest.NewServer(handler)
	t.Cleanup(h.srv.Close)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	h.in = inW
	o.Transport, o.Stdin, o.Stdout = &mcpclient.Transport{URL: h.srv.URL + "/mcp", HTTP: h.srv.Client()}, inR, outW
	b := New(o)
	go func() {
		sc := bufio.NewScanner(outR)
		sc.Buffer(make([]byte, 1<<20), 1<<22)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("stdout carried a non-JSON line: %q", sc.Text())
			}
			h.mu.Lock()
			h.out = append(h.out, m)
			h.mu.Unlock()
		}
	}()
	go func() { h.done <- b.Run(context.Background()); outW.Close() }()
	return h
}

func (h *harness) send(lines ...string) {
	for _, l := range lines {
		fmt.Fprintln(h.in, l)
	}
}

// answer waits for the message with id.
func (h *harness) answer(id any) map[string]any {
	h.t.Helper()
	want, _ := json.Marshal(id)
	return h.await("an answer for id "+string(want), func(m map[string]any) bool {
		got, _ := json.Marshal(m["id"])
		return string(got) == string(want) && m["method"] == nil
	})
}

// await waits for a stdout message that match accepts.
func (h *harness) await(what string, match func(map[string]any) bool) map[string]any {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		for _, m := range h.out {
			if match(m) {
				h.mu.Unlock()
				return m
			}
		}
		h.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.t.Fatalf("no %s; stdout: %v", what, h.out)
	return nil
}

func errCode(m map[string]any) int {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(float64)
	return int(c)
}

func errMsg(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	s, _ := e["message"].(string)
	return s
}

const initReq = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

// legacy is a session-era server whose tools/call behaviour is scripted.
func legacy(t *testing.T, call func(w http.ResponseWriter, r *http.Request, id json.RawMessage, params json.RawMessage)) http.HandlerFunc {
	var mu sync.Mutex
	var deletes int
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			mu.Lock()
			deletes++
			mu.Unlock()
			w.WriteHeader(204)
			return
		}
		if r.Method == http.MethodGet {
			w.WriteHeader(405)
			return
		}
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		}
		json.NewDecoder(r.Body).Decode(&m)
		switch m.Method {
		case "server/discover":
			w.WriteHeader(400)
			fmt.Fprint(w, "Bad Request: no session")
		case "initialize":
			w.Header().Set("Mcp-Session-Id", "s1")
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"f","version":"1"}}}`, m.ID)
		case "":
			w.WriteHeader(202)
		default:
			if m.ID == nil {
				w.WriteHeader(202)
				return
			}
			call(w, r, m.ID, m.Params)
		}
	}
}

func TestEveryRequestGetsAnAnswer(t *testing.T) {
	h := start(t, legacy(t, func(w http.ResponseWriter, r *http.Request, id, params json.RawMessage) {
		var p struct {
			Name string `json:"name"`
		}
		json.Unmarshal(params, &p)
		switch p.Name {
		case "ok":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[]}}`, id)
		case "boom":
			w.WriteHeader(502)
			fmt.Fprint(w, "bad gateway")
		case "html":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<html>captive portal</html>")
		case "cut":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n")
		case "slow":
			select {
			case <-r.Context().Done():
			case <-time.After(3 * time.Second):
			}
		}
	}))
	h.send(initReq, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	h.answer(1)
	h.send(`not json`,
		`{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"ok"}}`,
		`{"jsonrpc":"2.0","id":"b","method":"tools/call","params":{"name":"boom"}}`,
		`{"jsonrpc":"2.0","id":"c","method":"tools/call","params":{"name":"html"}}`,
		`{"jsonrpc":"2.0","id":"d","method":"tools/call","params":{"name":"cut"}}`,
		`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"ok"}}`,
		`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"ok"}}`)
	if m := h.answer(nil); errCode(m) != -32700 {
		t.Fatalf("invalid JSON: %v", m)
	}
	if m := h.answer("a"); m["result"] == nil {
		t.Fatalf("ok: %v", m)
	}
	if m := h.answer("b"); errCode(m) != -50200 || !strings.Contains(errMsg(m), "502") {
		t.Fatalf("502: %v", m)
	}
	if m := h.answer("c"); errCode(m) != -50200 || !strings.Contains(errMsg(m), "text/html") {
		t.Fatalf("html: %v", m)
	}
	if m := h.answer("d"); errCode(m) != -50200 || !strings.Contains(errMsg(m), "before answering") {
		t.Fatalf("cut stream: %v", m)
	}
	h.answer(7)
	// many in flight at once, each answered with its own id
	for i := range 40 {
		h.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"ok"}}`, 100+i))
	}
	for i := range 40 {
		if m := h.answer(100 + i); m["result"] == nil {
			t.Fatalf("concurrent %d: %v", i, m)
		}
	}
	// a cancelled slow request gets no answer; stdin EOF shuts down fast
	h.send(`{"jsonrpc":"2.0","id":"s","method":"tools/call","params":{"name":"slow"}}`,
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"s"}}`)
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	h.in.Close()
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the bridge did not stop after stdin closed")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("shutdown took %s", d)
	}
}

func TestUnreachableServer(t *testing.T) {
	h := start(t, func(w http.ResponseWriter, r *http.Request) {})
	h.srv.Close()
	h.send(initReq)
	if m := h.answer(1); errCode(m) != -50200 || !strings.Contains(errMsg(m), "cannot reach") {
		t.Fatalf("unreachable: %v", m)
	}
}

// TestEraBridging: a 2025-era stdio client against a 2026-07-28-only
// server: initialize is answered from server/discover, requests gain the
// modern _meta and headers, notifications/initialized is not forwarded.
func TestEraBridging(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	h := start(t, func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Meta map[string]json.RawMessage `json:"_meta"`
			} `json:"params"`
		}
		json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		seen = append(seen, m.Method)
		mu.Unlock()
		if string(m.Params.Meta["io.modelcontextprotocol/protocolVersion"]) != `"2026-07-28"` || r.Header.Get("Mcp-Method") != m.Method ||
			m.Method == "initialize" || r.Header.Get("Mcp-Session-Id") != "" {
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"not modern: %s"}}`, m.Method)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch m.Method {
		case "server/discover":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},"serverInfo":{"name":"modern","version":"9"}}}`, m.ID)
		case "tools/call":
			if r.Header.Get("Mcp-Name") != "echo" || !strings.Contains(string(m.Params.Meta["io.modelcontextprotocol/clientInfo"]), `"t"`) {
				w.WriteHeader(400)
				return
			}
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"modern ok"}]}}`, m.ID)
		default:
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{}}`, m.ID)
		}
	})
	h.send(initReq)
	m := h.answer(1)
	res, _ := m["result"].(map[string]any)
	if res["protocolVersion"] != "2025-06-18" || fmt.Sprint(res["serverInfo"]) != "map[name:modern version:9]" {
		t.Fatalf("initialize: %v", m)
	}
	h.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{}}}`)
	if m := h.answer(2); !strings.Contains(fmt.Sprint(m["result"]), "modern ok") {
		t.Fatalf("tools/call: %v", m)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range seen {
		if s == "notifications/initialized" || s == "initialize" {
			t.Fatalf("%s reached a modern-only server: %v", s, seen)
		}
	}
}

// TestSessionExpiryReplaysInitialize: a 404 on the session re-initializes
// with the client's own initialize and retries the request.
func TestSessionExpiryReplaysInitialize(t *testing.T) {
	var mu sync.Mutex
	inits, sid := 0, ""
	h := start(t, func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				ClientInfo struct{ Name string } `json:"clientInfo"`
			} `json:"params"`
		}
		json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method != http.MethodPost:
			w.WriteHeader(405)
		case m.Method == "server/discover":
			w.WriteHeader(404)
		case m.Method == "initialize":
			inits++
			if m.Params.ClientInfo.Name != "t" {
				w.WriteHeader(400)
				return
			}
			sid = fmt.Sprintf("s%d", inits)
			w.Header().Set("Mcp-Session-Id", sid)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"f","version":"1"}}}`, m.ID)
		case m.ID == nil:
			w.WriteHeader(202)
		case r.Header.Get("Mcp-Session-Id") != sid || sid == "s1":
			sid = "expired"
			w.WriteHeader(404)
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[]}}`, m.ID)
		}
	})
	h.send(initReq)
	h.answer(1)
	h.send(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	if m := h.answer(2); m["result"] == nil {
		t.Fatalf("after expiry: %v", m)
	}
	mu.Lock()
	defer mu.Unlock()
	if inits != 2 {
		t.Fatalf("%d initializes, want 2", inits)
	}
}

// TestOversizedLine: a message over MaxLine gets -32600 and the bridge
// keeps reading the next one.
func TestOversizedLine(t *testing.T) {
	in := strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"` + strings.Repeat("x", 200) + `"}}` + "\n" + "not json\n")
	var out strings.Builder
	b := New(Options{Transport: &mcpclient.Transport{URL: "http://127.0.0.1:1", HTTP: http.DefaultClient}, Stdin: in, Stdout: &lockedWriter{w: &out}, MaxLine: 64})
	if err := b.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "-32600") || !strings.Contains(lines[0], "larger than 64 bytes") || !strings.Contains(lines[1], "-32700") {
		t.Fatalf("output: %q", out.String())
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// waitRequest waits for a server request the bridge wrote to stdout.
func (h *harness) waitRequest(method string) map[string]any {
	h.t.Helper()
	return h.await(method+" request", func(m map[string]any) bool { return m["method"] == method && m["id"] != nil })
}

// TestInputRequiredRoundTrip: a 2026-07-28 server answers tools/call with
// an InputRequiredResult; the bridge asks its session-era client with an
// elicitation/create request, retries with inputResponses and the
// requestState, and the client gets only the final result. A client that
// declines gets the error for its request.
func TestInputRequiredRoundTrip(t *testing.T) {
	var mu sync.Mutex
	var retries []string
	h := start(t, func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Name      string                     `json:"name"`
				State     string                     `json:"requestState"`
				Responses map[string]json.RawMessage `json:"inputResponses"`
			} `json:"params"`
		}
		json.NewDecoder(r.Body).Decode(&m)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case m.Method == "server/discover":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},"serverInfo":{"name":"modern","version":"9"}}}`, m.ID)
		case m.Method == "tools/call" && m.Params.State == "":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"resultType":"input_required","requestState":"st-1","inputRequests":{"confirm":{"method":"elicitation/create","params":{"message":"sure?","requestedSchema":{"type":"object","properties":{}}}}}}}`, m.ID)
		case m.Method == "tools/call":
			mu.Lock()
			if string(m.ID) == "2" || string(m.ID) == "3" {
				w.WriteHeader(400) // a retry must not reuse the first request's id
				fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32600,"message":"retry reused the id"}}`, m.ID)
				return
			}
			retries = append(retries, m.Params.State+" "+string(m.Params.Responses["confirm"]))
			mu.Unlock()
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"resultType":"complete","content":[{"type":"text","text":"confirmed"}]}}`, m.ID)
		default:
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{}}`, m.ID)
		}
	})
	h.send(initReq)
	h.answer(1)
	h.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"deploy","arguments":{}}}`)
	req := h.waitRequest("elicitation/create")
	id, _ := json.Marshal(req["id"])
	h.send(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":{"action":"accept","content":{}}}`)
	if m := h.answer(2); !strings.Contains(fmt.Sprint(m["result"]), "confirmed") || strings.Contains(fmt.Sprint(m), "input_required") {
		t.Fatalf("the client got %v", m)
	}
	mu.Lock()
	got := strings.Join(retries, ";")
	mu.Unlock()
	if got != `st-1 {"action":"accept","content":{}}` {
		t.Fatalf("retry carried %q", got)
	}

	// A declined request ends with the client's refusal.
	h.mu.Lock()
	h.out = nil
	h.mu.Unlock()
	h.send(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"deploy","arguments":{}}}`)
	req = h.waitRequest("elicitation/create")
	id, _ = json.Marshal(req["id"])
	h.send(`{"jsonrpc":"2.0","id":` + string(id) + `,"error":{"code":-1,"message":"user said no"}}`)
	if m := h.answer(3); errCode(m) == 0 || !strings.Contains(errMsg(m), "user said no") {
		t.Fatalf("declined: %v", m)
	}
}
