package gateway

import (
	"encoding/base64"
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

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/mcp"
)

// taskUpstream is a Streamable HTTP server with the Tasks extension
// (modelcontextprotocol/ext-tasks specification/draft/tasks.md) and the
// 2025-11-25 tasks utility: every tools/call becomes a task. It trusts the
// task id alone, as the extension allows ("A server MAY use task IDs as
// bearer tokens"), so what keeps one caller from another's task is the
// gateway. It records the requests that reach it.
type taskUpstream struct {
	srv     *httptest.Server
	n       atomic.Int64
	mu      sync.Mutex        // guards tasks, reached
	tasks   map[string]string // task id → tool
	reached []string          // method + " " + taskId of task requests
	legacy  bool              // answer with 2025-11-25 shapes
	ttlMs   string            // the created task's ttlMs ("null" or a number)
}

func newTaskUpstream(t testing.TB, legacy bool) *taskUpstream {
	u := &taskUpstream{tasks: map[string]string{}, legacy: legacy, ttlMs: "60000"}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *taskUpstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var msg struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params struct {
			Name   string `json:"name"`
			TaskID string `json:"taskId"`
		} `json:"params"`
	}
	_ = json.Unmarshal(body, &msg)
	if msg.ID == nil {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	var result string
	switch msg.Method {
	case "initialize":
		w.Header().Set("Mcp-Session-Id", fmt.Sprintf("s-%d", u.n.Add(1)))
		result = `{"protocolVersion":"2025-11-25","capabilities":{"tools":{},"tasks":{"list":{},"cancel":{},"requests":{"tools":{"call":{}}}}},"serverInfo":{"name":"tasks","version":"1"}}`
	case "tools/list":
		result = `{"tools":[{"name":"echo","inputSchema":{"type":"object"}},{"name":"admin_delete","inputSchema":{"type":"object"}}],"ttlMs":60000,"cacheScope":"public"}`
	case "tools/call":
		id := fmt.Sprintf("task-%d", u.n.Add(1))
		u.mu.Lock()
		u.tasks[id] = msg.Params.Name
		u.mu.Unlock()
		if u.legacy {
			result = `{"task":{"taskId":"` + id + `","status":"working","createdAt":"2026-01-01T00:00:00Z","lastUpdatedAt":"2026-01-01T00:00:00Z","ttl":` + u.ttlMs + `,"pollInterval":100}}`
		} else {
			result = `{"resultType":"task","taskId":"` + id + `","status":"working","createdAt":"2026-01-01T00:00:00Z","lastUpdatedAt":"2026-01-01T00:00:00Z","ttlMs":` + u.ttlMs + `,"pollIntervalMs":100}`
		}
	case "tasks/get", "tasks/update", "tasks/cancel", "tasks/result":
		u.mu.Lock()
		u.reached = append(u.reached, msg.Method+" "+msg.Params.TaskID)
		tool, ok := u.tasks[msg.Params.TaskID]
		u.mu.Unlock()
		switch {
		case !ok:
			out := `{"jsonrpc":"2.0","id":` + string(msg.ID) + `,"error":{"code":-32602,"message":"Failed to retrieve task: Task not found"}}`
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, out)
			return
		case msg.Method == "tasks/get":
			// The result of the call: a list, to check that a task's
			// result is filtered like the call's own result would be.
			result = `{"resultType":"complete","taskId":"` + msg.Params.TaskID + `","status":"completed","createdAt":"2026-01-01T00:00:00Z","lastUpdatedAt":"2026-01-01T00:00:01Z","ttlMs":60000,` +
				`"result":{"content":[{"type":"text","text":"` + tool + ` done"}],"tools":[{"name":"echo"},{"name":"admin_delete"}]}}`
		default:
			result = `{"resultType":"complete"}`
		}
	case "tasks/list":
		// A leaky server: every task of every caller.
		u.mu.Lock()
		var ts []string
		for id := range u.tasks {
			ts = append(ts, `{"taskId":"`+id+`","status":"working","createdAt":"2026-01-01T00:00:00Z","lastUpdatedAt":"2026-01-01T00:00:00Z","ttl":null}`)
		}
		u.mu.Unlock()
		result = `{"tasks":[` + strings.Join(ts, ",") + `]}`
	default:
		result = `{}`
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, `{"jsonrpc":"2.0","id":`+string(msg.ID)+`,"result":`+result+`}`)
}

func (u *taskUpstream) reachedTask(method, id string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, r := range u.reached {
		if r == method+" "+id {
			return true
		}
	}
	return false
}

func startTaskGateway(t *testing.T, legacy bool, mutate func(*config.Gateway)) (*testGateway, *taskUpstream) {
	up := newTaskUpstream(t, legacy)
	tg := startGateway(t, func(c *config.Gateway) {
		c.Upstreams[0].URL = up.srv.URL
		if mutate != nil {
			mutate(c)
		}
	})
	return tg, up
}

const tasksCaps = `"io.modelcontextprotocol/clientCapabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}}}`

func taskCall(tool string) string {
	return `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"` + tool + `","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",` + tasksCaps + `}}}`
}

func statelessTask(method, id string) string {
	extra := ""
	if method == "tasks/update" {
		extra = `,"inputResponses":{}`
	}
	return `{"jsonrpc":"2.0","id":4,"method":"` + method + `","params":{"taskId":"` + id + `"` + extra + `,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",` + tasksCaps + `}}}`
}

// createTask calls tool for tok in the 2026-07-28 era and returns the task id.
func createTask(t *testing.T, tg *testGateway, tok, tool string) string {
	t.Helper()
	r := tg.do(t, "POST", "/mcp", taskCall(tool), statelessHeaders(tok, "tools/call", tool))
	var m struct {
		Result struct {
			ResultType string `json:"resultType"`
			TaskID     string `json:"taskId"`
		} `json:"result"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &m) != nil || m.Result.ResultType != "task" || m.Result.TaskID == "" {
		t.Fatalf("tools/call %s: %d %s, want a CreateTaskResult", tool, r.status, r.body)
	}
	return m.Result.TaskID
}

// TestTasksMcpNameHeader: "When tasks/get, tasks/update, or tasks/cancel is
// sent over the Streamable HTTP transport, the client MUST set the Mcp-Name
// header to the value of params.taskId." (ext-tasks
// specification/draft/tasks.md §Streamable HTTP: Routing Headers). The
// gateway refused Mcp-Name on these methods ("not defined for method"), so
// every conforming client got 400; now the header is required and must
// equal params.taskId, like the other routing keys.
func TestTasksMcpNameHeader(t *testing.T) {
	tg, up := startTaskGateway(t, false, nil)
	tok := tg.token(t, "alice", "mcp:read")
	id := createTask(t, tg, tok, "echo")
	for _, method := range []string{"tasks/get", "tasks/update", "tasks/cancel"} {
		r := tg.do(t, "POST", "/mcp", statelessTask(method, id), statelessHeaders(tok, method, id))
		if r.status != 200 || strings.Contains(string(r.body), `"error"`) {
			t.Fatalf("%s with Mcp-Name = taskId: %d %s, want 200 and a result", method, r.status, r.body)
		}
		if !up.reachedTask(method, id) {
			t.Fatalf("%s did not reach the upstream", method)
		}
		// Neighbours: header missing, another task's id, base64 form of
		// another id, repeated.
		rows := []struct {
			name string
			hdr  map[string]string
			want int
		}{
			{"no Mcp-Name", statelessHeaders(tok, method, ""), 400},
			{"other id", statelessHeaders(tok, method, "task-999"), 400},
			{"case variant", statelessHeaders(tok, method, strings.ToUpper(id)), 400},
			{"base64 of other", statelessHeaders(tok, method, "=?base64?dGFzay05OTk=?="), 400},
		}
		for _, row := range rows {
			r := tg.do(t, "POST", "/mcp", statelessTask(method, id), row.hdr)
			if r.status != row.want {
				t.Fatalf("%s %s: %d %s, want %d", method, row.name, r.status, r.body, row.want)
			}
			if code, _, _ := r.rpcError(t); code != -32020 {
				t.Fatalf("%s %s: code %d, want -32020", method, row.name, code)
			}
		}
	}
	// The base64 form of the right id is the same value.
	enc := "=?base64?" + b64(id) + "?="
	if r := tg.do(t, "POST", "/mcp", statelessTask("tasks/get", id), statelessHeaders(tok, "tasks/get", enc)); r.status != 200 {
		t.Fatalf("base64 Mcp-Name: %d %s", r.status, r.body)
	}
	// params.taskId is required and must be a string (the routing key).
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":4,"method":"tasks/get","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
		`{"jsonrpc":"2.0","id":4,"method":"tasks/get","params":{"taskId":7,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
		`{"jsonrpc":"2.0","id":4,"method":"tasks/get","params":{"taskId":"` + id + `","TaskId":"task-999","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
	} {
		r := tg.do(t, "POST", "/mcp", body, statelessHeaders(tok, "tasks/get", id))
		if r.status != 400 {
			t.Fatalf("%s: %d %s, want 400", body, r.status, r.body)
		}
	}
}

// TestTasksBoundToCreator: "Servers MUST perform authentication and
// authorization checks on each task-related request to ensure that the
// client has permission to access a task." (tasks.md §Security
// Implications). Another subject — or the same subject through another
// client — naming the task gets the answer of an unknown task, "Invalid or
// nonexistent taskId: -32602" (§Error Handling), and nothing reaches the
// upstream; the gateway used to forward whatever task id it was given.
func TestTasksBoundToCreator(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(map[bool]string{false: "extension", true: "2025-11-25"}[legacy], func(t *testing.T) {
			tg, up := startTaskGateway(t, legacy, nil)
			alice := tg.token(t, "alice", "mcp:read")
			bob := tg.token(t, "bob", "mcp:read")
			claims := tg.idp.Claims("alice", tg.url+"/mcp", "mcp:read")
			claims["client_id"] = "other-client"
			aliceOther := tg.idp.Sign(t, "RS256", claims)
			var id string
			var get func(tok, id string) reply
			if legacy {
				sid := tg.initialize(t, alice)
				r := tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{},"task":{"ttl":60000}}}`,
					with(bearer(alice), "Mcp-Session-Id", sid, "MCP-Protocol-Version", "2025-11-25"))
				var m struct {
					Result struct {
						Task struct {
							TaskID string `json:"taskId"`
						} `json:"task"`
					} `json:"result"`
				}
				if json.Unmarshal(r.body, &m) != nil || m.Result.Task.TaskID == "" {
					t.Fatalf("tools/call: %d %s", r.status, r.body)
				}
				id = m.Result.Task.TaskID
				sids := map[string]string{alice: sid, bob: tg.initialize(t, bob), aliceOther: tg.initialize(t, aliceOther)}
				get = func(tok, id string) reply {
					return tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":5,"method":"tasks/get","params":{"taskId":"`+id+`"}}`,
						with(bearer(tok), "Mcp-Session-Id", sids[tok], "MCP-Protocol-Version", "2025-11-25"))
				}
			} else {
				id = createTask(t, tg, alice, "echo")
				get = func(tok, id string) reply {
					return tg.do(t, "POST", "/mcp", statelessTask("tasks/get", id), statelessHeaders(tok, "tasks/get", id))
				}
			}
			if r := get(alice, id); r.status != 200 || !strings.Contains(string(r.body), `"completed"`) {
				t.Fatalf("creator's tasks/get: %d %s", r.status, r.body)
			}
			unknown := get(alice, "task-424242")
			for name, tok := range map[string]string{"other subject": bob, "other client": aliceOther} {
				r := get(tok, id)
				if r.status != unknown.status || string(r.body) != strings.Replace(string(unknown.body), "task-424242", id, 1) && string(r.body) != string(unknown.body) {
					t.Fatalf("%s: %d %s, want the unknown-task answer %d %s", name, r.status, r.body, unknown.status, unknown.body)
				}
				if code, msg, _ := r.rpcError(t); code != -32602 || msg != "Failed to retrieve task: Task not found" {
					t.Fatalf("%s: %d %q, want -32602 task not found", name, code, msg)
				}
			}
			up.mu.Lock()
			n := len(up.reached)
			up.mu.Unlock()
			if n != 1 {
				t.Fatalf("the upstream saw %d task requests (%v), want only the creator's", n, up.reached)
			}
			// Cancel and update by another subject, too.
			if !legacy {
				for _, m := range []string{"tasks/cancel", "tasks/update"} {
					r := tg.do(t, "POST", "/mcp", statelessTask(m, id), statelessHeaders(bob, m, id))
					if code, _, _ := r.rpcError(t); code != -32602 || up.reachedTask(m, id) {
						t.Fatalf("bob's %s: %d %s", m, r.status, r.body)
					}
				}
			}
			if !strings.Contains(tg.audit.String(), `"task_id":"`+id+`","tool":"echo","decision":"task_created"`) {
				t.Fatalf("audit does not name the created task and its tool:\n%s", tg.audit.String())
			}
		})
	}
}

// TestTasksToolPolicy: a task carries the result of the call that created
// it, so the tool's policy applies to the task: a caller who lost access to
// the tool (policy reload, or a token with fewer scopes) cannot fetch it.
func TestTasksToolPolicy(t *testing.T) {
	tg, up := startTaskGateway(t, false, nil)
	admin := tg.token(t, "alice", "mcp:read mcp:admin")
	id := createTask(t, tg, admin, "admin_delete")
	if r := tg.do(t, "POST", "/mcp", statelessTask("tasks/get", id), statelessHeaders(admin, "tasks/get", id)); r.status != 200 {
		t.Fatalf("admin's tasks/get: %d %s", r.status, r.body)
	}
	// Same subject and client, the admin scope gone.
	reader := tg.token(t, "alice", "mcp:read")
	before := len(up.reached)
	for _, m := range []string{"tasks/get", "tasks/update", "tasks/cancel"} {
		r := tg.do(t, "POST", "/mcp", statelessTask(m, id), statelessHeaders(reader, m, id))
		if r.status != http.StatusForbidden {
			t.Fatalf("%s without the tool's scope: %d %s, want 403", m, r.status, r.body)
		}
		if !strings.Contains(r.header.Get("WWW-Authenticate"), "mcp:admin") {
			t.Fatalf("%s: no step-up challenge for mcp:admin: %q", m, r.header.Get("WWW-Authenticate"))
		}
	}
	if len(up.reached) != before {
		t.Fatal("a denied task request reached the upstream")
	}
	if !strings.Contains(tg.audit.String(), `"task_id":"`+id+`","tool":"admin_delete","decision":"deny"`) {
		t.Fatalf("audit does not name the denied task and its tool:\n%s", tg.audit.String())
	}
	// A method rule for a tasks method applies first.
	tg2, _ := startTaskGateway(t, false, func(c *config.Gateway) {
		c.Upstreams[0].Policy.Methods = []config.Rule{{Match: "tasks/cancel", Deny: true}}
	})
	tok := tg2.token(t, "alice", "mcp:read")
	id2 := createTask(t, tg2, tok, "echo")
	if r := tg2.do(t, "POST", "/mcp", statelessTask("tasks/cancel", id2), statelessHeaders(tok, "tasks/cancel", id2)); r.status != http.StatusForbidden {
		t.Fatalf("tasks/cancel denied by a method rule: %d %s", r.status, r.body)
	}
}

// TestTasksResultAndListFiltered: a task's result is what the call would
// have returned ("The structure matches the result type of the original
// request"), so its lists are filtered for the caller; a 2025-11-25
// tasks/list keeps only the caller's tasks (the 2025-11-25 text: "a poorly
// scoped list could expose unrelated task IDs", SEP-2663 §Security
// Implications).
func TestTasksResultAndListFiltered(t *testing.T) {
	tg, _ := startTaskGateway(t, true, nil)
	alice := tg.token(t, "alice", "mcp:read")
	bob := tg.token(t, "bob", "mcp:read")
	sa, sb := tg.initialize(t, alice), tg.initialize(t, bob)
	call := func(tok, sid string) string {
		r := tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{},"task":{}}}`,
			with(bearer(tok), "Mcp-Session-Id", sid, "MCP-Protocol-Version", "2025-11-25"))
		var m struct {
			Result struct {
				Task struct {
					TaskID string `json:"taskId"`
				} `json:"task"`
			} `json:"result"`
		}
		_ = json.Unmarshal(r.body, &m)
		return m.Result.Task.TaskID
	}
	a1, a2, b1 := call(alice, sa), call(alice, sa), call(bob, sb)
	r := tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":6,"method":"tasks/list","params":{}}`,
		with(bearer(alice), "Mcp-Session-Id", sa, "MCP-Protocol-Version", "2025-11-25"))
	if !strings.Contains(string(r.body), a1) || !strings.Contains(string(r.body), a2) || strings.Contains(string(r.body), b1) {
		t.Fatalf("alice's tasks/list: %s, want %s and %s but not bob's %s", r.body, a1, a2, b1)
	}
	r = tg.do(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":7,"method":"tasks/get","params":{"taskId":"`+a1+`"}}`,
		with(bearer(alice), "Mcp-Session-Id", sa, "MCP-Protocol-Version", "2025-11-25"))
	if !strings.Contains(string(r.body), `"echo"`) || strings.Contains(string(r.body), "admin_delete") {
		t.Fatalf("task result not filtered: %s", r.body)
	}
}

// TestTasksBindingBudget: the binding table is bounded per subject and
// expires (limits.max_tasks_per_subject, limits.task_ttl_max).
func TestTasksBindingBudget(t *testing.T) {
	tg, up := startTaskGateway(t, false, func(c *config.Gateway) { c.Limits.MaxTasksPerSubject = 2 })
	alice := tg.token(t, "alice", "mcp:read")
	createTask(t, tg, alice, "echo")
	id := createTask(t, tg, alice, "echo")
	r := tg.do(t, "POST", "/mcp", taskCall("echo"), statelessHeaders(alice, "tools/call", "echo"))
	if code, msg, _ := r.rpcError(t); code != mcp.CodeRateLimited || !strings.Contains(msg, "limits.max_tasks_per_subject") {
		t.Fatalf("third task: %d %q", code, msg)
	}
	// Another subject has its own budget.
	createTask(t, tg, tg.token(t, "bob", "mcp:read"), "echo")
	_ = up
	_ = id
}

// TestTasksBindingExpiry: a binding lives for the task's ttlMs, capped by
// limits.task_ttl_max, and is unknown once expired.
func TestTasksBindingExpiry(t *testing.T) {
	tg, up := startTaskGateway(t, false, func(c *config.Gateway) { c.Limits.MaxTasksPerSubject = 2 })
	alice := tg.token(t, "alice", "mcp:read")
	createTask(t, tg, alice, "echo")
	id := createTask(t, tg, alice, "echo")
	// Expiry: the task's own ttlMs, capped by task_ttl_max.
	m := tg.gw.mounts[0]
	now := time.Now()
	m.tasks.mu.Lock()
	m.tasks.now = func() time.Time { return now.Add(61 * time.Second) }
	m.tasks.mu.Unlock()
	if r := tg.do(t, "POST", "/mcp", statelessTask("tasks/get", id), statelessHeaders(alice, "tasks/get", id)); !strings.Contains(string(r.body), "Task not found") {
		t.Fatalf("expired binding: %d %s", r.status, r.body)
	}
	createTask(t, tg, alice, "echo") // room again after expiry
	up.ttlMs = "null"
	b := newTaskBinder(config.Limits{TaskTTLMax: config.Duration{Duration: time.Minute}})
	_ = b.bind("x", "o", "o", "echo", 0)
	if got := b.tasks["x"].expires.Sub(time.Now()); got > time.Minute+time.Second || got < 50*time.Second {
		t.Fatalf("ttl null: binding lives %v, want task_ttl_max", got)
	}
	_ = b.bind("y", "o", "o", "echo", 48*time.Hour)
	if got := b.tasks["y"].expires.Sub(time.Now()); got > time.Minute+time.Second {
		t.Fatalf("ttl 48h: binding lives %v, want at most task_ttl_max", got)
	}
	// An id already bound to another caller is never rebound.
	if err := b.bind("x", "other", "other", "echo", 0); err == nil {
		t.Fatal("a task id bound to one caller was rebound to another")
	}
}

// TestTasksListenTaskIDs: subscriptions/listen names tasks too
// (notifications.taskIds); naming another caller's task is refused like
// tasks/get.
func TestTasksListenTaskIDs(t *testing.T) {
	tg, _ := startTaskGateway(t, false, nil)
	alice := tg.token(t, "alice", "mcp:read")
	bob := tg.token(t, "bob", "mcp:read")
	id := createTask(t, tg, alice, "echo")
	body := func(ids string) string {
		return `{"jsonrpc":"2.0","id":9,"method":"subscriptions/listen","params":{"notifications":{"taskIds":` + ids + `},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`
	}
	if r := tg.do(t, "POST", "/mcp", body(`["`+id+`"]`), statelessHeaders(bob, "subscriptions/listen", "")); !strings.Contains(string(r.body), "Task not found") {
		t.Fatalf("bob listening to alice's task: %d %s", r.status, r.body)
	}
	if r := tg.do(t, "POST", "/mcp", body(`"`+id+`"`), statelessHeaders(bob, "subscriptions/listen", "")); r.status != 400 {
		t.Fatalf("taskIds not an array: %d %s", r.status, r.body)
	}
	if r := tg.do(t, "POST", "/mcp", body(`["`+id+`"]`), statelessHeaders(alice, "subscriptions/listen", "")); strings.Contains(string(r.body), "Task not found") {
		t.Fatalf("alice listening to her task: %d %s", r.status, r.body)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestTasksNonDeclaringClient: "Missing required client capabilities:
// -32021 ... Servers MUST return this error for non-declaring clients
// issuing tasks/get, tasks/update, and tasks/cancel requests" (ext-tasks
// specification/draft/tasks.md §Error Handling, commit 7b8e2bd,
// 2026-08-19; the conformance alpha's sep-2663-tasks-methods-non-declaring
// check). The gateway used to answer -32602 "task not found" first. The
// answer is the same for the caller's own task and any other id, and
// nothing reaches the upstream.
func TestTasksNonDeclaringClient(t *testing.T) {
	tg, up := startTaskGateway(t, false, nil)
	tok := tg.token(t, "alice", "mcp:read")
	id := createTask(t, tg, tok, "echo")
	for _, method := range []string{"tasks/get", "tasks/update", "tasks/cancel"} {
		for _, task := range []string{id, "gate-test"} {
			body := strings.Replace(statelessTask(method, task), ","+tasksCaps, "", 1)
			r := tg.do(t, "POST", "/mcp", body, statelessHeaders(tok, method, task))
			code, _, _ := r.rpcError(t)
			if r.status != 400 || code != -32021 || !strings.Contains(string(r.body), `"requiredCapabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}}}`) {
				t.Fatalf("%s %s without the extension: %d %s, want 400 and -32021 naming the extension", method, task, r.status, r.body)
			}
		}
		if up.reachedTask(method, id) {
			t.Fatalf("a non-declaring %s reached the upstream", method)
		}
	}
}

// TestTasksResultNotIn2026: tasks/result is a 2025-11-25 method; the Tasks
// extension inlines a completed task's result in tasks/get ("There is no
// separate tasks/result method", the conformance alpha's
// sep-2663-tasks-result-removed-method-not-found), so a 2026-07-28
// tasks/result is -32601 and reaches no upstream, even for the caller's
// own task.
func TestTasksResultNotIn2026(t *testing.T) {
	tg, up := startTaskGateway(t, false, nil)
	tok := tg.token(t, "alice", "mcp:read")
	id := createTask(t, tg, tok, "echo")
	r := tg.do(t, "POST", "/mcp", statelessTask("tasks/result", id), statelessHeaders(tok, "tasks/result", ""))
	if code, _, _ := r.rpcError(t); code != -32601 {
		t.Fatalf("2026-07-28 tasks/result: %d %s, want -32601", r.status, r.body)
	}
	if up.reachedTask("tasks/result", id) {
		t.Fatal("a 2026-07-28 tasks/result reached the upstream")
	}
}

// TestTasksUndeclaredCallNotBound: an upstream that answers a tools/call
// whose client did not declare the extension with a CreateTaskResult
// breaks "A server MUST NOT return CreateTaskResult to a client that did
// not include the extension capability on its request". Such a client can
// never poll the task, so the gateway does not bind it (it would use the
// subject's budget for nothing): the call gets -50200 saying so, and the
// upstream is asked to cancel the task (review, low).
func TestTasksUndeclaredCallNotBound(t *testing.T) {
	tg, up := startTaskGateway(t, false, nil)
	tok := tg.token(t, "alice", "mcp:read")
	body := strings.Replace(taskCall("echo"), ","+tasksCaps, "", 1)
	r := tg.do(t, "POST", "/mcp", body, statelessHeaders(tok, "tools/call", "echo"))
	code, msg, _ := r.rpcError(t)
	if code != mcp.CodeUpstream || !strings.Contains(msg, "did not declare the Tasks extension") {
		t.Fatalf("undeclared tools/call answered with a task: %d %s", r.status, r.body)
	}
	if n := tg.gw.mounts[0].tasks.len(); n != 0 {
		t.Fatalf("%d task bindings for a client that cannot poll them", n)
	}
	for deadline := time.Now().Add(5 * time.Second); !up.reachedTask("tasks/cancel", "task-1"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the unbound task was not cancelled upstream")
		}
	}
}
