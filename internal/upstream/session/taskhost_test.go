package session

import (
	"context"
	"encoding/json"
	"errors"
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

// tasksConn is an in-process upstream implementing the Tasks extension as
// ext-tasks specification/draft/tasks.md describes it (one connection, as
// a stdio child is): tools/call "slow" creates a task (ids count from 1 on
// every connection, so two connections hand out the same ids), tasks/get
// reports it, tasks/cancel acknowledges and cancels it; "echo" answers
// after a delay given in the call (answers come out of order); "ask" asks
// the client for input first; "hang" never answers.
type tasksConn struct {
	owner  string
	out    chan []byte
	closed chan struct{}
	once   sync.Once

	mu     sync.Mutex        // guards tasks, asks, n
	tasks  map[string]string // id → status
	asks   map[string]json.RawMessage
	n      int
	finish chan string // test: complete a task
}

func newTasksConn(owner string) *tasksConn {
	c := &tasksConn{owner: owner, out: make(chan []byte, 64), closed: make(chan struct{}), tasks: map[string]string{},
		asks: map[string]json.RawMessage{}, finish: make(chan string, 4)}
	go func() {
		for {
			select {
			case id := <-c.finish:
				c.mu.Lock()
				c.tasks[id] = "completed"
				c.mu.Unlock()
			case <-c.closed:
				return
			}
		}
	}()
	return c
}

func (c *tasksConn) reply(m string) {
	select {
	case c.out <- []byte(m):
	case <-c.closed:
	}
}

func (c *tasksConn) task(id string) string {
	st := c.tasks[id]
	extra := ""
	if st == "completed" {
		extra = `,"result":{"content":[{"type":"text","text":"done ` + id + `"}]}`
	}
	return `"taskId":"` + id + `","status":"` + st + `","statusMessage":"owner ` + c.owner + `","createdAt":"2026-08-01T00:00:00Z","lastUpdatedAt":"2026-08-01T00:00:00Z","ttlMs":null` + extra
}

func (c *tasksConn) Send(_ context.Context, msg []byte) error {
	select {
	case <-c.closed:
		return io.EOF
	default:
	}
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Result json.RawMessage `json:"result"`
		Params struct {
			Name      string `json:"name"`
			TaskID    string `json:"taskId"`
			Arguments struct {
				Text  string `json:"text"`
				Delay int    `json:"delay"`
			} `json:"arguments"`
		} `json:"params"`
	}
	_ = json.Unmarshal(msg, &m)
	id := string(m.ID)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case m.Method == "" && m.ID != nil: // the client's answer to "ask"
		if call, ok := c.asks[id]; ok {
			delete(c.asks, id)
			go c.reply(`{"jsonrpc":"2.0","id":` + string(call) + `,"result":{"content":[{"type":"text","text":"answered ` + strings.ReplaceAll(string(m.Result), `"`, `'`) + `"}]}}`)
		}
	case m.Method == "initialize":
		go c.reply(`{"jsonrpc":"2.0","id":` + id + `,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{},"extensions":{"io.modelcontextprotocol/tasks":{}}},"serverInfo":{"name":"tasks","version":"1"}}}`)
	case m.Method == "tools/call" && m.Params.Name == "slow":
		c.n++
		tid := fmt.Sprintf("task-%d", c.n)
		c.tasks[tid] = "working"
		go c.reply(`{"jsonrpc":"2.0","id":` + id + `,"result":{"resultType":"task",` + c.task(tid) + `}}`)
	case m.Method == "tools/call" && m.Params.Name == "echo":
		text, delay := m.Params.Arguments.Text, time.Duration(m.Params.Arguments.Delay)*time.Millisecond
		go func() {
			time.Sleep(delay)
			c.reply(`{"jsonrpc":"2.0","id":` + id + `,"result":{"content":[{"type":"text","text":"` + text + `"}]}}`)
		}()
	case m.Method == "tools/call" && m.Params.Name == "ask":
		c.n++
		ask := fmt.Sprintf(`"ask-%d"`, c.n)
		c.asks[ask] = m.ID
		go c.reply(`{"jsonrpc":"2.0","id":` + ask + `,"method":"elicitation/create","params":{"mode":"form","message":"name?","requestedSchema":{"type":"object","properties":{}}}}`)
	case m.Method == "tasks/get":
		if _, ok := c.tasks[m.Params.TaskID]; !ok {
			go c.reply(`{"jsonrpc":"2.0","id":` + id + `,"error":{"code":-32602,"message":"Failed to retrieve task: Task not found"}}`)
			break
		}
		go c.reply(`{"jsonrpc":"2.0","id":` + id + `,"result":{"resultType":"complete",` + c.task(m.Params.TaskID) + `}}`)
	case m.Method == "tasks/update":
		saw := strings.Contains(string(msg), `"inputResponses":{"k":`)
		go c.reply(`{"jsonrpc":"2.0","id":` + id + `,"result":{"resultType":"complete","sawInput":` + fmt.Sprint(saw) + `}}`)
	case m.Method == "tasks/cancel":
		if _, ok := c.tasks[m.Params.TaskID]; ok {
			c.tasks[m.Params.TaskID] = "cancelled"
		}
		go c.reply(`{"jsonrpc":"2.0","id":` + id + `,"result":{"resultType":"complete"}}`)
	}
	return nil
}

func (c *tasksConn) Recv(ctx context.Context) ([]byte, error) {
	select {
	case m := <-c.out:
		return m, nil
	case <-c.closed:
		return nil, io.EOF
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *tasksConn) Close() error { c.once.Do(func() { close(c.closed) }); return nil }

// tasksFixture is a Server in front of tasksConn upstreams, one per dial,
// with the subject taken from X-Subject.
type tasksFixture struct {
	srv     *Server
	http    *httptest.Server
	mu      sync.Mutex // guards conns, callers
	conns   []*tasksConn
	callers []upstream.Caller // of each dial
	dials   atomic.Int64
}

func startTasks(t *testing.T, mut func(*Options)) *tasksFixture {
	t.Helper()
	f := &tasksFixture{}
	o := Options{Dial: func(_ context.Context, info upstream.Caller) (upstream.Conn, error) {
		f.dials.Add(1)
		c := newTasksConn(info.Owner)
		f.mu.Lock()
		f.conns = append(f.conns, c)
		f.callers = append(f.callers, info)
		f.mu.Unlock()
		return c, nil
	}, RequestTimeout: 5 * time.Second, KeepAlive: time.Second}
	if mut != nil {
		mut(&o)
	}
	f.srv = New(o)
	f.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := upstream.Caller{Owner: r.Header.Get("X-Subject"), Client: r.Header.Get("X-Client")}
		if v := r.Header.Get("X-Scopes"); v != "" {
			c.Header = http.Header{"X-Scopes": {v}}
		}
		filter := upstream.NoFilter
		if r.Header.Get("X-Refuse-Tasks") != "" { // the gateway's binder refuses every task
			filter = upstream.Filtered(refuseTasks)
		}
		f.srv.ServeMCP(w, r, upstream.NewRequest(c, filter))
	}))
	t.Cleanup(func() {
		f.http.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = f.srv.Shutdown(ctx)
	})
	return f
}

func (f *tasksFixture) conn(i int) *tasksConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns[i]
}

// tasksMeta declares the Tasks extension in the per-request capabilities.
const tasksMeta = `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{},"extensions":{"io.modelcontextprotocol/tasks":{}}}}`

func (f *tasksFixture) post(t *testing.T, subject, body string) (int, map[string]json.RawMessage) {
	t.Helper()
	return f.postAs(t, map[string]string{"X-Subject": subject}, body)
}

// postAs posts body with the fixture's caller headers hdr (X-Subject,
// X-Client, X-Scopes, X-Refuse-Tasks).
func (f *tasksFixture) postAs(t *testing.T, hdr map[string]string, body string) (int, map[string]json.RawMessage) {
	t.Helper()
	req, _ := http.NewRequest("POST", f.http.URL, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", jsonOnly)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON-RPC message: %d %s", r.StatusCode, b)
	}
	return r.StatusCode, m
}

func taskReq(id int, method, task, meta string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q,"params":{"taskId":%q,%s}}`, id, method, task, meta)
}

func field(t *testing.T, m map[string]json.RawMessage, key string) string {
	t.Helper()
	var res map[string]json.RawMessage
	_ = json.Unmarshal(m["result"], &res)
	var s string
	_ = json.Unmarshal(res[key], &s)
	return s
}

func errorOf(m map[string]json.RawMessage) (code int, msg string) {
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(m["error"], &e)
	return e.Code, e.Message
}

// TestTaskHostRoundTrip: a task created by one POST is polled and
// cancelled by separate POSTs on the one connection that created it — "A
// server MUST NOT return CreateTaskResult until the task is durably
// created — that is, until a tasks/get for the returned taskId would
// resolve" — with the client's ids on every answer.
func TestTaskHostRoundTrip(t *testing.T) {
	f := startTasks(t, nil)
	_, m := f.post(t, "alice", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"slow",`+tasksMeta+`}}`)
	tid := field(t, m, "taskId")
	if field(t, m, "resultType") != "task" || !strings.HasSuffix(tid, ".task-1") || string(m["id"]) != "7" {
		t.Fatalf("create: %v", m)
	}
	_, m = f.post(t, "alice", taskReq(8, "tasks/get", tid, tasksMeta))
	if field(t, m, "status") != "working" || string(m["id"]) != "8" {
		t.Fatalf("poll: %v", m)
	}
	_, m = f.post(t, "alice", taskReq(9, "tasks/cancel", tid, tasksMeta))
	if field(t, m, "resultType") != "complete" || string(m["id"]) != "9" {
		t.Fatalf("cancel: %v", m)
	}
	_, m = f.post(t, "alice", taskReq(10, "tasks/get", tid, tasksMeta))
	if field(t, m, "status") != "cancelled" {
		t.Fatalf("poll after cancel: %v", m)
	}
	if n := f.dials.Load(); n != 1 || f.srv.TaskHosts() != 1 {
		t.Fatalf("%d dials, %d hosts: want one host for the whole round trip", n, f.srv.TaskHosts())
	}
	// A tools/call without the extension declared is not served on the
	// host: "A server MUST NOT return CreateTaskResult to a client that did
	// not include the extension capability on its request".
	f.post(t, "alice", `{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"},`+statelessMeta+`}}`)
	if n := f.dials.Load(); n != 2 {
		t.Fatalf("%d dials: a request without the extension must get its own connection", n)
	}
}

// TestTaskHostCollidingIDs: concurrent requests of independent POSTs with
// one client id, answered out of order, each get their own answer.
func TestTaskHostCollidingIDs(t *testing.T) {
	f := startTasks(t, nil)
	f.post(t, "alice", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow",`+tasksMeta+`}}`)
	var wg sync.WaitGroup
	got := make([]string, 8)
	ids := make([]string, 8)
	for i := range 8 {
		wg.Go(func() {
			body := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"t%d","delay":%d},%s}}`, i, (8-i)*20, tasksMeta)
			_, m := f.post(t, "alice", body)
			got[i], ids[i] = string(m["result"]), string(m["id"])
		})
	}
	wg.Wait()
	for i := range 8 {
		if !strings.Contains(got[i], fmt.Sprintf(`"t%d"`, i)) || ids[i] != "1" {
			t.Fatalf("request %d got %s (id %s)", i, got[i], ids[i])
		}
	}
	if n := f.dials.Load(); n != 1 {
		t.Fatalf("%d dials, want the one host", n)
	}
}

// TestTaskHostOtherSubject: another subject never reaches the owner's
// host, even with the same task id (its own host hands out the same ids).
func TestTaskHostOtherSubject(t *testing.T) {
	f := startTasks(t, nil)
	_, m := f.post(t, "alice", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow",`+tasksMeta+`}}`)
	aliceTask := field(t, m, "taskId")
	for _, method := range []string{"tasks/get", "tasks/cancel", "tasks/update"} {
		_, m := f.post(t, "bob", taskReq(2, method, aliceTask, tasksMeta))
		if code, msg := errorOf(m); code != mcp.CodeInvalidParams || msg != "Failed to retrieve task: Task not found" {
			t.Fatalf("bob's %s on alice's task: %v", method, m)
		}
	}
	if f.dials.Load() != 1 {
		t.Fatal("bob's task requests opened a connection")
	}
	// Bob's host hands out the same upstream id; the ids clients see
	// differ (hostkey.go).
	_, m = f.post(t, "bob", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"slow",`+tasksMeta+`}}`)
	bobTask := field(t, m, "taskId")
	if !strings.HasSuffix(bobTask, ".task-1") || bobTask == aliceTask {
		t.Fatalf("bob's create: %v", m)
	}
	_, m = f.post(t, "bob", taskReq(4, "tasks/get", bobTask, tasksMeta))
	if field(t, m, "statusMessage") != "owner bob" || field(t, m, "taskId") != bobTask {
		t.Fatalf("bob's poll reached another host: %v", m)
	}
	_, m = f.post(t, "alice", taskReq(5, "tasks/get", aliceTask, tasksMeta))
	if field(t, m, "statusMessage") != "owner alice" {
		t.Fatalf("alice's poll reached another host: %v", m)
	}
	// Without the extension declared and without a task: -32021, "Servers
	// MUST return this error for non-declaring clients issuing tasks/get".
	status, m := f.post(t, "carol", taskReq(6, "tasks/get", aliceTask, statelessMeta))
	if code, _ := errorOf(m); code != mcp.CodeMissingRequiredClientCapability || status != http.StatusBadRequest {
		t.Fatalf("non-declaring tasks/get: %d %v", status, m)
	}
}

// TestTaskHostIdleClose: a host is kept while a task it created is live
// and closed once it has neither a live task nor a request for the idle
// period (the reaper's clock is passed in: no sleeping).
func TestTaskHostIdleClose(t *testing.T) {
	f := startTasks(t, func(o *Options) { o.IdleTimeout = time.Hour })
	_, m := f.post(t, "alice", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow",`+tasksMeta+`}}`)
	tid := field(t, m, "taskId")
	later := time.Now().Add(2 * time.Hour)
	f.srv.hosts.reap(later, time.Hour)
	if f.srv.TaskHosts() != 1 {
		t.Fatal("a host with a live task was closed as idle")
	}
	f.conn(0).finish <- "task-1"
	waitFor(t, func() bool {
		_, m := f.post(t, "alice", taskReq(2, "tasks/get", tid, tasksMeta))
		return field(t, m, "status") == "completed"
	}, "task completed")
	f.srv.hosts.reap(time.Now(), time.Hour)
	if f.srv.TaskHosts() != 1 {
		t.Fatal("a host that just served a request was closed")
	}
	f.srv.hosts.reap(later, time.Hour)
	if f.srv.TaskHosts() != 0 {
		t.Fatal("an idle host without live tasks was kept")
	}
	select {
	case <-f.conn(0).closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle host's connection was not closed")
	}
	// Its tasks are answered as lost, clearly.
	_, m = f.post(t, "alice", taskReq(3, "tasks/get", tid, tasksMeta))
	if code, msg := errorOf(m); code != mcp.CodeInvalidParams || !strings.Contains(msg, "ended") {
		t.Fatalf("poll on a closed host: %v", m)
	}
}

// TestTaskHostChildDeath: when the host's connection ends, a request in
// flight gets a JSON-RPC error at once, its tasks are answered as lost,
// and the next tools/call opens a new host.
func TestTaskHostChildDeath(t *testing.T) {
	f := startTasks(t, nil)
	_, m := f.post(t, "alice", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow",`+tasksMeta+`}}`)
	tid := field(t, m, "taskId")
	done := make(chan map[string]json.RawMessage)
	go func() {
		_, m := f.post(t, "alice", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"hang",`+tasksMeta+`}}`)
		done <- m
	}()
	waitFor(t, func() bool { return f.inFlight("alice") == 1 }, "hang in flight")
	_ = f.conn(0).Close() // the child dies
	m = <-done
	if code, msg := errorOf(m); code != mcp.CodeUpstream || !strings.Contains(msg, "ended before answering") || string(m["id"]) != "2" {
		t.Fatalf("request in flight when the child died: %v", m)
	}
	waitFor(t, func() bool { return f.srv.TaskHosts() == 0 }, "dead host removed")
	_, m = f.post(t, "alice", taskReq(3, "tasks/get", tid, tasksMeta))
	if code, msg := errorOf(m); code != mcp.CodeInvalidParams || !strings.Contains(msg, "the upstream MCP server that held this task ended") {
		t.Fatalf("poll of a task of the dead host: %v", m)
	}
	_, m = f.post(t, "alice", `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"slow",`+tasksMeta+`}}`)
	if !strings.HasSuffix(field(t, m, "taskId"), ".task-1") || field(t, m, "taskId") == tid || f.dials.Load() != 2 {
		t.Fatalf("no new host after the child died: %v (%d dials)", m, f.dials.Load())
	}
}

// TestTaskHostBudget: the host takes a place of the connection budget,
// and is busy while its task is live: the subject's next connection is
// refused with -42900 (429), another subject's with -50300 (503) when the
// total is used up.
func TestTaskHostBudget(t *testing.T) {
	slots := upstream.NewSlots(1, 1)
	f := startTasks(t, func(o *Options) { o.Dial = upstream.Limit(o.Dial, slots) })
	_, m := f.post(t, "alice", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow",`+tasksMeta+`}}`)
	tid := field(t, m, "taskId")
	if slots.Len() != 1 || !slotBusy(slots) {
		t.Fatalf("the host with a live task holds %d slots (busy %v), want 1 busy", slots.Len(), slotBusy(slots))
	}
	status, m := f.post(t, "alice", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"},`+statelessMeta+`}}`)
	if code, _ := errorOf(m); status != http.StatusTooManyRequests || code != mcp.CodeRateLimited {
		t.Fatalf("alice beyond her share: %d %v", status, m)
	}
	status, m = f.post(t, "bob", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"slow",`+tasksMeta+`}}`)
	if code, _ := errorOf(m); status != http.StatusServiceUnavailable || code != mcp.CodeUnavailable {
		t.Fatalf("bob beyond the total: %d %v", status, m)
	}
	// The host still serves its owner.
	_, m = f.post(t, "alice", taskReq(4, "tasks/get", tid, tasksMeta))
	if field(t, m, "status") != "working" {
		t.Fatalf("poll: %v", m)
	}
}

func slotBusy(s *upstream.Slots) bool {
	sl, _, err := s.Acquire("probe")
	if err == nil {
		sl.Release()
	}
	var le *upstream.LimitError
	return err != nil && asLimit(err, &le) && !le.PerSubject
}

// TestTaskHostMRTR: a request on the host that needs the client's input
// is answered with an InputRequiredResult; the retry with inputResponses
// and requestState resumes it on the same host.
func TestTaskHostMRTR(t *testing.T) {
	f := startTasks(t, nil)
	_, m := f.post(t, "alice", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ask",`+tasksMeta+`}}`)
	state := field(t, m, "requestState")
	if field(t, m, "resultType") != "input_required" || state == "" {
		t.Fatalf("ask: %v", m)
	}
	// Another request in between does not disturb the parked one.
	_, mid := f.post(t, "alice", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"mid"},`+tasksMeta+`}}`)
	if !strings.Contains(string(mid["result"]), "mid") {
		t.Fatalf("echo while parked: %v", mid)
	}
	// Another subject cannot use the requestState, nor use it up.
	status, _ := f.post(t, "bob", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"ask","requestState":"`+state+`","inputResponses":{"input-1":{"action":"accept","content":{"n":"x"}}},`+tasksMeta+`}}`)
	if status != http.StatusBadRequest {
		t.Fatalf("bob resumed alice's request: %d", status)
	}
	_, m = f.post(t, "alice", `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"ask","requestState":"`+state+`","inputResponses":{"input-1":{"action":"accept","content":{"n":"luca"}}},`+tasksMeta+`}}`)
	if !strings.Contains(string(m["result"]), "answered {'action':'accept','content':{'n':'luca'}}") || string(m["id"]) != "4" {
		t.Fatalf("resumed: %v", m)
	}
	if f.dials.Load() != 1 {
		t.Fatalf("%d dials: MRTR left the host", f.dials.Load())
	}
}

func asLimit(err error, le **upstream.LimitError) bool { return errors.As(err, le) }

// inFlight returns how many requests owner's host has in flight.
func (f *tasksFixture) inFlight(owner string) int {
	f.srv.hosts.mu.Lock()
	h := f.srv.hosts.m[hostKey(upstream.Caller{Owner: owner})]
	f.srv.hosts.mu.Unlock()
	if h == nil || h.ss == nil {
		return 0
	}
	h.ss.mu.Lock()
	defer h.ss.mu.Unlock()
	return len(h.ss.pending)
}

// TestTaskHostUpdateKeepsInputResponses: a tasks/update reaches the host
// with its inputResponses — "The client provides responses via the
// inputResponses field in one or more subsequent tasks/update requests" —
// which the gateway strips only from retries of other requests (found by
// the conformance alpha's tasks-mrtr-input).
func TestTaskHostUpdateKeepsInputResponses(t *testing.T) {
	f := startTasks(t, nil)
	_, m := f.post(t, "alice", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow",`+tasksMeta+`}}`)
	_, m = f.post(t, "alice", `{"jsonrpc":"2.0","id":2,"method":"tasks/update","params":{"taskId":"`+field(t, m, "taskId")+`","inputResponses":{"k":{"action":"accept"}},`+tasksMeta+`}}`)
	if !strings.Contains(string(m["result"]), `"sawInput":true`) {
		t.Fatalf("tasks/update: %v", m)
	}
}

// TestStatelessResultType: "Servers implementing this protocol version
// MUST include this field" (2026-07-28 schema, Result.resultType): a
// session-era upstream's result gets "complete", on a per-request
// connection and on a task host; a result that has one keeps it.
func TestStatelessResultType(t *testing.T) {
	f := startTasks(t, nil)
	for _, meta := range []string{statelessMeta, tasksMeta} {
		_, m := f.post(t, "alice", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"},`+meta+`}}`)
		if field(t, m, "resultType") != "complete" {
			t.Fatalf("result without resultType: %v", m)
		}
	}
	_, m := f.post(t, "alice", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow",`+tasksMeta+`}}`)
	if field(t, m, "resultType") != "task" {
		t.Fatalf("a CreateTaskResult lost its resultType: %v", m)
	}
	_, m = f.post(t, "alice", `{"jsonrpc":"2.0","id":3,"method":"server/discover","params":{`+statelessMeta+`}}`)
	if field(t, m, "resultType") != "complete" {
		t.Fatalf("server/discover without resultType: %v", m)
	}
}
