package session

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// refuseTasks is a response filter that replaces every CreateTaskResult
// with an error, as the gateway's task binder does when it refuses one.
func refuseTasks(msg []byte) []byte {
	if env, err := mcp.PeekOne(msg); err == nil && strings.Contains(string(env.Result), `"resultType":"task"`) {
		return mcp.ErrorResponse(env.ID, mcp.CodeRateLimited, "too many tasks", nil)
	}
	return msg
}

const slowCall = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow",` + tasksMeta + `}}`

// TestTaskHostPerIdentity: a host is shared only by requests whose
// upstream-visible identity is the same (review F1): another client id of
// the subject, or the same client with narrower scopes, gets its own
// host, dialled with its own identity — never the connection (and the
// X-Scopes) of the client that opened the first one.
func TestTaskHostPerIdentity(t *testing.T) {
	f := startTasks(t, nil)
	admin := map[string]string{"X-Subject": "alice", "X-Client": "A", "X-Scopes": "mcp:read mcp:admin"}
	otherClient := map[string]string{"X-Subject": "alice", "X-Client": "B", "X-Scopes": "mcp:read mcp:admin"}
	narrowed := map[string]string{"X-Subject": "alice", "X-Client": "A", "X-Scopes": "mcp:read"}
	f.postAs(t, admin, slowCall)
	f.postAs(t, admin, slowCall)
	if n := f.dials.Load(); n != 1 {
		t.Fatalf("%d dials: one identity must share its host", n)
	}
	f.postAs(t, otherClient, slowCall)
	f.postAs(t, narrowed, slowCall)
	if n := f.dials.Load(); n != 3 || f.srv.TaskHosts() != 3 {
		t.Fatalf("%d dials, %d hosts: another client id and a narrowed token must each get their own host", n, f.srv.TaskHosts())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.callers[1]; c.Client != "B" {
		t.Fatalf("client B's host was dialled for %+v", c)
	}
	if c := f.callers[2]; c.Header.Get("X-Scopes") != "mcp:read" {
		t.Fatalf("the narrowed token's host was dialled with %+v", c)
	}
}

// TestTaskHostOtherClientTask: a task of one client is not reachable
// through another client of the same subject (its host is another), and
// neither can that client resume the first one's parked request nor use
// its requestState up (review F2, and the low-severity consumption).
func TestTaskHostOtherClientTask(t *testing.T) {
	f := startTasks(t, nil)
	a := map[string]string{"X-Subject": "alice", "X-Client": "A"}
	b := map[string]string{"X-Subject": "alice", "X-Client": "B"}
	_, m := f.postAs(t, a, slowCall)
	tid := field(t, m, "taskId")
	_, m = f.postAs(t, b, taskReq(2, "tasks/get", tid, tasksMeta))
	if code, msg := errorOf(m); code != mcp.CodeInvalidParams || msg != "Failed to retrieve task: Task not found" {
		t.Fatalf("client B polled client A's task: %v", m)
	}
	_, m = f.postAs(t, a, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"ask",`+tasksMeta+`}}`)
	state := field(t, m, "requestState")
	retry := `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"ask","requestState":"` + state + `","inputResponses":{"input-1":{"action":"accept","content":{"n":"B"}}},` + tasksMeta + `}}`
	if status, _ := f.postAs(t, b, retry); status != http.StatusBadRequest {
		t.Fatalf("client B resumed client A's request: %d", status)
	}
	_, m = f.postAs(t, a, retry)
	if !strings.Contains(string(m["result"]), "answered") {
		t.Fatalf("client A's state did not survive client B's attempt: %v", m)
	}
}

// TestTaskHostRelatedTaskRouting: a server request that names its task
// (_meta related-task) goes only to a request on that task, never to
// "the only request in flight" on the host (review F2).
func TestTaskHostRelatedTaskRouting(t *testing.T) {
	f := startTasks(t, nil)
	_, m := f.post(t, "alice", slowCall)
	if !strings.HasSuffix(field(t, m, "taskId"), ".task-1") {
		t.Fatalf("create: %v", m)
	}
	done := make(chan map[string]json.RawMessage)
	go func() {
		_, m := f.post(t, "alice", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"mine","delay":300},`+tasksMeta+`}}`)
		done <- m
	}()
	waitFor(t, func() bool { return f.inFlight("alice") == 1 }, "echo in flight")
	f.conn(0).reply(`{"jsonrpc":"2.0","id":"ask-task","method":"elicitation/create","params":{"mode":"form","message":"password for task-1?","requestedSchema":{"type":"object","properties":{}},"_meta":{"io.modelcontextprotocol/related-task":{"taskId":"task-1"}}}}`)
	m = <-done
	if field(t, m, "resultType") != "complete" || !strings.Contains(string(m["result"]), "mine") {
		t.Fatalf("the echo request got another task's input request: %v", m)
	}
}

// TestTaskHostRefusedTask: a task the gateway refuses to bind (its filter
// replaced the CreateTaskResult) is cancelled upstream and does not hold
// the host (review F3).
func TestTaskHostRefusedTask(t *testing.T) {
	slots := upstream.NewSlots(1, 1)
	f := startTasks(t, func(o *Options) { o.Dial = upstream.Limit(o.Dial, slots) })
	_, m := f.postAs(t, map[string]string{"X-Subject": "alice", "X-Refuse-Tasks": "1"}, slowCall)
	if code, _ := errorOf(m); code != mcp.CodeRateLimited {
		t.Fatalf("refused create: %v", m)
	}
	c := f.conn(0)
	waitFor(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.tasks["task-1"] == "cancelled"
	}, "the refused task cancelled upstream")
	if slotBusy(slots) {
		t.Fatal("a refused task holds the host busy")
	}
}

// TestTaskHostUnpolledReclaimed: a host whose live tasks nobody polled
// for the idle timeout no longer holds its place against other subjects
// once the total is full (review F5); its tasks are then answered as lost.
func TestTaskHostUnpolledReclaimed(t *testing.T) {
	slots := upstream.NewSlots(1, 1)
	f := startTasks(t, func(o *Options) {
		o.Dial = upstream.Limit(o.Dial, slots)
		o.IdleTimeout = time.Hour
	})
	_, m := f.post(t, "alice", slowCall)
	tid := field(t, m, "taskId")
	f.srv.hosts.reap(time.Now().Add(30*time.Minute), time.Hour)
	if !slotBusy(slots) {
		t.Fatal("a task polled within the idle timeout stopped holding its host")
	}
	f.srv.hosts.reap(time.Now().Add(2*time.Hour), time.Hour)
	if f.srv.TaskHosts() != 1 {
		t.Fatal("a host with a live task was closed by the reaper")
	}
	_, m = f.post(t, "bob", slowCall)
	if !strings.HasSuffix(field(t, m, "taskId"), ".task-1") {
		t.Fatalf("bob was refused though alice's host holds only an unpolled task: %v", m)
	}
	waitFor(t, func() bool {
		_, m := f.post(t, "alice", taskReq(3, "tasks/get", tid, tasksMeta))
		_, msg := errorOf(m)
		return strings.Contains(msg, "the upstream MCP server that held this task ended")
	}, "alice's task answered as lost")
}

// TestTTLOfOverflow: a ttlMs beyond what a Duration holds is no ttl (then
// capped by TaskTTLMax), not a wrapped negative or tiny duration.
func TestTTLOfOverflow(t *testing.T) {
	for _, raw := range []string{`{"ttlMs":1e300}`, `{"ttlMs":9.3e15}`, `{"ttlMs":-5}`} {
		if d := ttlOf(json.RawMessage(raw)); d != 0 {
			t.Fatalf("ttlOf(%s) = %v, want 0", raw, d)
		}
	}
	if d := ttlOf(json.RawMessage(`{"ttlMs":1500}`)); d != 1500*time.Millisecond {
		t.Fatalf("ttlOf(1500) = %v", d)
	}
}
