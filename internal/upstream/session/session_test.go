package session

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/upstream/stdio"
)

var echoBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "echoserver")
	if err != nil {
		panic(err)
	}
	echoBin = filepath.Join(dir, "echoserver")
	out, err := exec.Command("go", "build", "-o", echoBin, "../stdio/testdata/echoserver").CombinedOutput()
	if err != nil {
		panic(string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type counter struct{ n atomic.Int64 }

func (c *counter) Add(d int) { c.n.Add(int64(d)) }

type fixture struct {
	srv      *Server
	http     *httptest.Server
	children *counter
}

// standalone serves h as the gateway would, for no one in particular and
// without a filter.
func standalone(h upstream.Handler) http.Handler {
	return serveAs(h, func(*http.Request) upstream.Caller { return upstream.Caller{} }, upstream.NoFilter)
}

// serveAs serves h with the Request the gateway would build: the caller
// of each request and filter.
func serveAs(h upstream.Handler, caller func(*http.Request) upstream.Caller, filter upstream.ResponseFilter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeMCP(w, r, upstream.NewRequest(caller(r), filter))
	})
}

func start(t *testing.T, env []string, mut func(*Options)) *fixture {
	t.Helper()
	children := &counter{}
	o := Options{Dial: stdio.Dialer(stdio.Options{Command: []string{echoBin}, Env: env, ShutdownGrace: 300 * time.Millisecond, Children: children}),
		RequestTimeout: 5 * time.Second, KeepAlive: time.Second}
	if mut != nil {
		mut(&o)
	}
	s := New(o)
	h := httptest.NewServer(standalone(s))
	f := &fixture{srv: s, http: h, children: children}
	t.Cleanup(func() {
		h.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return f
}

type resp struct {
	status int
	header http.Header
	body   string
}

func (f *fixture) post(t *testing.T, sid, body, accept string) resp {
	t.Helper()
	req, _ := http.NewRequest("POST", f.http.URL, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", accept)
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{r.StatusCode, r.Header, string(b)}
}

const jsonOnly = "application/json"
const both = "application/json, text/event-stream"

func (f *fixture) init(t *testing.T) string {
	t.Helper()
	r := f.post(t, "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`, jsonOnly)
	if r.status != 200 || r.header.Get("Mcp-Session-Id") == "" || !strings.Contains(r.body, "echoserver") {
		t.Fatalf("initialize: %d %v %s", r.status, r.header, r.body)
	}
	return r.header.Get("Mcp-Session-Id")
}

func call(id int, name, extra string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":{"text":"hi"}%s}}`, id, name, extra)
}

func dataLines(body string) []string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if d, ok := strings.CutPrefix(l, "data: "); ok && d != "" {
			out = append(out, d)
		}
	}
	return out
}

func TestSessionLifecycle(t *testing.T) {
	f := start(t, nil, nil)
	sid := f.init(t)
	if r := f.post(t, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, both); r.status != 202 {
		t.Fatalf("notification: %d", r.status)
	}
	if r := f.post(t, sid, call(1, "echo", ""), jsonOnly); r.status != 200 || !strings.Contains(r.body, `"text":"hi"`) {
		t.Fatalf("echo JSON: %d %s", r.status, r.body)
	}
	// Progress notifications arrive before the result on the SSE stream.
	r := f.post(t, sid, call(2, "progress", `,"_meta":{"progressToken":"p1"}`), both)
	lines := dataLines(r.body)
	if len(lines) != 4 || !strings.Contains(lines[0], "notifications/progress") || !strings.Contains(lines[3], `"id":2`) {
		t.Fatalf("progress stream: %q", lines)
	}
	// Missing and unknown session ids.
	if r := f.post(t, "", call(3, "echo", ""), jsonOnly); r.status != 400 {
		t.Fatalf("missing session: %d", r.status)
	}
	if r := f.post(t, "nope", call(3, "echo", ""), jsonOnly); r.status != 404 || !strings.Contains(r.body, `"id":3`) {
		t.Fatalf("unknown session: %d %s", r.status, r.body)
	}
	// DELETE ends the session; its child is reaped.
	req, _ := http.NewRequest("DELETE", f.http.URL, nil)
	req.Header.Set("Mcp-Session-Id", sid)
	dr, err := http.DefaultClient.Do(req)
	if err != nil || dr.StatusCode != 200 {
		t.Fatalf("delete: %v %v", err, dr)
	}
	if r := f.post(t, sid, call(4, "echo", ""), jsonOnly); r.status != 404 {
		t.Fatalf("after delete: %d", r.status)
	}
	waitFor(t, func() bool { return f.children.n.Load() == 0 }, "child reaped after DELETE")
}

func TestSamplingRoundTrip(t *testing.T) {
	f := start(t, nil, nil)
	sid := f.init(t)
	req, _ := http.NewRequest("POST", f.http.URL, strings.NewReader(call(5, "sample", "")))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", both)
	req.Header.Set("Mcp-Session-Id", sid)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	sc := bufio.NewScanner(r.Body)
	var got []string
	for sc.Scan() {
		d, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || d == "" {
			continue
		}
		got = append(got, d)
		if strings.Contains(d, "sampling/createMessage") {
			// The client answers the server's request with a POST: 202.
			if a := f.post(t, sid, `{"jsonrpc":"2.0","id":"s1","result":{"role":"assistant","content":{"type":"text","text":"42"}}}`, both); a.status != 202 {
				t.Fatalf("response POST: %d", a.status)
			}
		}
		if strings.Contains(d, `"id":5`) {
			break
		}
	}
	if len(got) != 2 || !strings.Contains(got[1], "sampled:") || !strings.Contains(got[1], "42") {
		t.Fatalf("sampling stream: %q", got)
	}
}

func TestStandaloneStreamAndReplay(t *testing.T) {
	f := start(t, nil, nil)
	sid := f.init(t)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", f.http.URL, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	r, err := http.DefaultClient.Do(req)
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("GET: %v %v", err, r)
	}
	// A second GET stream is refused.
	req2, _ := http.NewRequest("GET", f.http.URL, nil)
	req2.Header.Set("Accept", "text/event-stream")
	req2.Header.Set("Mcp-Session-Id", sid)
	if r2, _ := http.DefaultClient.Do(req2); r2.StatusCode != http.StatusConflict {
		t.Fatalf("second GET: %d", r2.StatusCode)
	}
	// An unrelated notification reaches the GET stream.
	if x := f.post(t, sid, call(6, "notify", ""), jsonOnly); x.status != 200 {
		t.Fatalf("notify: %d", x.status)
	}
	sc := bufio.NewScanner(r.Body)
	var lastID string
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
			lastID = id
		}
		if strings.Contains(sc.Text(), "notifications/message") {
			break
		}
	}
	cancel()
	r.Body.Close()
	if lastID == "" {
		t.Fatal("no event id")
	}
	// Resume from the priming event: the notification is replayed.
	stream, _, _ := strings.Cut(lastID, "-")
	req3, _ := http.NewRequest("GET", f.http.URL, nil)
	req3.Header.Set("Accept", "text/event-stream")
	req3.Header.Set("Mcp-Session-Id", sid)
	req3.Header.Set("Last-Event-ID", stream+"-0")
	waitFor(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		r3, err := http.DefaultClient.Do(req3.WithContext(ctx))
		if err != nil || r3.StatusCode != 200 {
			return false
		}
		defer r3.Body.Close()
		sc := bufio.NewScanner(r3.Body)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "notifications/message") {
				return true
			}
		}
		return false
	}, "replay after Last-Event-ID")
}

func TestOneChildPerSessionAndCrash(t *testing.T) {
	f := start(t, nil, nil)
	a, b := f.init(t), f.init(t)
	pa := f.post(t, a, call(1, "pid", ""), jsonOnly).body
	pb := f.post(t, b, call(1, "pid", ""), jsonOnly).body
	if pa == pb {
		t.Fatalf("two sessions share a process: %s", pa)
	}
	// A crash mid-request gives the waiting client a JSON-RPC error.
	r := f.post(t, a, call(2, "crash", ""), jsonOnly)
	if r.status == 200 && !strings.Contains(r.body, "error") || !strings.Contains(r.body, `"id":2`) {
		t.Fatalf("crash: %d %s", r.status, r.body)
	}
	if r := f.post(t, a, call(3, "echo", ""), jsonOnly); r.status != 404 {
		t.Fatalf("after crash the session is gone: %d", r.status)
	}
	if r := f.post(t, b, call(4, "echo", ""), jsonOnly); r.status != 200 {
		t.Fatalf("the other session survives: %d", r.status)
	}
}

func TestStubbornChildIsKilledAndNothingLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	f := start(t, []string{"IGNORE_TERM=1"}, nil)
	sid := f.init(t)
	f.post(t, sid, call(1, "echo", ""), jsonOnly)
	if f.children.n.Load() != 1 {
		t.Fatalf("children %d", f.children.n.Load())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if f.children.n.Load() != 0 {
		t.Fatal("SIGTERM-ignoring child survived shutdown")
	}
	f.http.Close()
	http.DefaultClient.CloseIdleConnections()
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before+2 }, fmt.Sprintf("goroutines back to %d", before))
}

func TestIdleSessionsAreReaped(t *testing.T) {
	f := start(t, nil, func(o *Options) { o.IdleTimeout = 200 * time.Millisecond })
	f.init(t)
	waitFor(t, func() bool { return f.srv.Len() == 0 && f.children.n.Load() == 0 }, "idle session reaped")
}

func TestStatelessRequest(t *testing.T) {
	f := start(t, nil, nil)
	body := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"text":"yo"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`
	r := f.post(t, "", body, jsonOnly)
	if r.status != 200 || !strings.Contains(r.body, `"text":"yo"`) || r.header.Get("Mcp-Session-Id") != "" {
		t.Fatalf("stateless: %d %s", r.status, r.body)
	}
	d := f.post(t, "", `{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, jsonOnly)
	var m struct {
		Result struct {
			Versions   []string        `json:"supportedVersions"`
			ServerInfo json.RawMessage `json:"serverInfo"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(d.body), &m); err != nil || len(m.Result.Versions) == 0 || !strings.Contains(string(m.Result.ServerInfo), "echoserver") {
		t.Fatalf("discover: %s", d.body)
	}
	waitFor(t, func() bool { return f.children.n.Load() == 0 }, "per-request children closed")
	req, _ := http.NewRequest("GET", f.http.URL, nil)
	req.Header.Set("MCP-Protocol-Version", "2026-07-28")
	if g, _ := http.DefaultClient.Do(req); g.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET in 2026: %d", g.StatusCode)
	}
}

func TestFilterApplied(t *testing.T) {
	f := start(t, nil, nil)
	sid := f.init(t)
	f.http.Config.Handler = serveAs(f.srv, func(*http.Request) upstream.Caller { return upstream.Caller{} }, upstream.Filtered(func(m []byte) []byte {
		return []byte(strings.ReplaceAll(string(m), "secret_admin", "hidden"))
	}))
	r := f.post(t, sid, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, both)
	if strings.Contains(r.body, "secret_admin") || !strings.Contains(r.body, "hidden") {
		t.Fatalf("filter not applied: %s", r.body)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStatelessInputRequired: a 2026-07-28 request whose upstream asks
// for sampling gets an InputRequiredResult (SEP-2322); the retry with
// inputResponses and the requestState resumes the same upstream process,
// and the answer carries the retry's id. The state is single-use, bound to
// the subject and the request, and expires.
func TestStatelessInputRequired(t *testing.T) {
	f := start(t, nil, func(o *Options) { o.RequestTimeout = 2 * time.Second })
	subject := "alice"
	var mu sync.Mutex
	f.http.Config.Handler = serveAs(f.srv, func(*http.Request) upstream.Caller {
		mu.Lock()
		defer mu.Unlock()
		return upstream.Caller{Owner: subject}
	}, upstream.NoFilter)
	as := func(s string) { mu.Lock(); subject = s; mu.Unlock() }
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"sampling":{}}}`
	type irResult struct {
		ID     json.RawMessage `json:"id"`
		Result struct {
			ResultType    string `json:"resultType"`
			RequestState  string `json:"requestState"`
			InputRequests map[string]struct {
				Method string          `json:"method"`
				Params json.RawMessage `json:"params"`
			} `json:"inputRequests"`
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
		} `json:"result"`
		Error *struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	ask := func(accept string) irResult {
		t.Helper()
		r := f.post(t, "", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"sample",`+meta+`}}`, accept)
		body := r.body
		if accept == both {
			lines := dataLines(r.body)
			if len(lines) == 0 {
				t.Fatalf("no events: %s", r.body)
			}
			body = lines[len(lines)-1]
		}
		var ir irResult
		if err := json.Unmarshal([]byte(body), &ir); err != nil || ir.Result.ResultType != "input_required" || ir.Result.RequestState == "" ||
			ir.Result.InputRequests["input-1"].Method != "sampling/createMessage" || string(ir.ID) != "7" {
			t.Fatalf("want an InputRequiredResult: %d %s", r.status, r.body)
		}
		return ir
	}
	retry := func(id int, name, state string) irResult {
		t.Helper()
		r := f.post(t, "", fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"requestState":%q,"inputResponses":{"input-1":{"role":"assistant","model":"m","content":{"type":"text","text":"42"}}},%s}}`, id, name, state, meta), jsonOnly)
		var ir irResult
		_ = json.Unmarshal([]byte(r.body), &ir)
		return ir
	}

	for _, accept := range []string{jsonOnly, both} {
		ir := ask(accept)
		got := retry(8, "sample", ir.Result.RequestState)
		if string(got.ID) != "8" || len(got.Result.Content) == 0 || !strings.Contains(got.Result.Content[0].Text, "42") {
			t.Fatalf("%s: the retry did not resume the upstream: %+v", accept, got)
		}
		if again := retry(9, "sample", ir.Result.RequestState); again.Error == nil || again.Error.Code != -32602 {
			t.Fatalf("%s: a used requestState was accepted: %+v", accept, again)
		}
	}
	ir := ask(jsonOnly)
	as("mallory")
	if got := retry(10, "sample", ir.Result.RequestState); got.Error == nil {
		t.Fatalf("another subject resumed alice's request: %+v", got)
	}
	// Another subject's attempt leaves the state to its owner: knowing a
	// state must not let anyone end alice's request.
	as("alice")
	if got := retry(11, "sample", ir.Result.RequestState); got.Error != nil {
		t.Fatalf("a state tried by another subject was used up: %+v", got)
	}
	ir = ask(jsonOnly)
	if got := retry(12, "echo", ir.Result.RequestState); got.Error == nil {
		t.Fatal("a state was accepted for another tool")
	}
	// A retry without the answer tells the upstream so, as an error.
	ir = ask(jsonOnly)
	r := f.post(t, "", fmt.Sprintf(`{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"sample","requestState":%q,%s}}`, ir.Result.RequestState, meta), jsonOnly)
	if !strings.Contains(r.body, `"id":13`) || !strings.Contains(r.body, "-32602") || !strings.Contains(r.body, "no inputResponses entry") {
		t.Fatalf("retry without inputResponses: %s", r.body)
	}
	ask(jsonOnly) // left waiting: it must expire and its process end
	waitFor(t, func() bool { return f.children.n.Load() == 0 }, "waiting upstream processes closed after expiry")
}
