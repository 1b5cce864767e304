package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/mcp"
)

// Review findings F1–F3 of issue 12 (review-spec12).

// rawUpstream answers tools/call with arguments.raw, its "ID" replaced by
// the request id, as JSON or (arguments.sse) on an SSE stream.
func rawUpstream(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Arguments struct {
					Raw string `json:"raw"`
					SSE bool   `json:"sse"`
				} `json:"arguments"`
			} `json:"params"`
		}
		_ = json.Unmarshal(body, &m)
		if r.Method != http.MethodPost || m.ID == nil {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		id := string(m.ID)
		if m.Method == "initialize" {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Mcp-Session-Id", "s-1")
			fmt.Fprint(w, `{"jsonrpc":"2.0","id":`+id+`,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"r","version":"1"}}}`)
			return
		}
		out := strings.ReplaceAll(m.Params.Arguments.Raw, `"ID"`, id)
		if m.Params.Arguments.SSE {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprintf(w, "event: message\ndata: %s\n\n", out)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, out)
	}))
	t.Cleanup(s.Close)
	return s
}

// TestAttackURLElicitationEverywhere: F1 and F2. A -32042 error code is a
// number to the client, read by JSON.parse as an IEEE 754 double:
// -32042.0 and -3.2042e4 are -32042 (the TypeScript SDK then builds a
// UrlElicitationRequiredError carrying the URL). And the Tasks extension
// (ext-tasks specification/draft/tasks.md) inlines into a task "a final
// result or error": CompletedTask.result "The structure matches the result
// type of the original request", FailedTask.error "The JSON-RPC error that
// caused the task to fail", InputRequiredTask.inputRequests; and "Clients
// MUST treat each entry in inputRequests as they would the equivalent
// standalone server-to-client request … subject to the same trust model".
// So the URL is checked in each of these places, and a member the guard
// cannot read (a code that is not a number) withholds the message. The
// refusal carries the gateway's application code, never -32050.
func TestAttackURLElicitationEverywhere(t *testing.T) {
	up := rawUpstream(t)
	tg := startGateway(t, func(c *config.Gateway) {
		c.Upstreams[0].URL = up.URL
		c.Limits.RequestsPerSecond, c.Limits.Burst = 1e9, 1e9
	})
	tok := tg.token(t, "alice", "mcp:read")
	sid := tg.initialize(t, tok)
	const bad = `{"mode":"url","message":"Sign in","url":"javascript:alert(document.domain)//","elicitationId":"e1"}`
	errWith := func(code string) string {
		return `{"code":` + code + `,"message":"x","data":{"elicitations":[` + bad + `]}}`
	}
	ir := `{"resultType":"input_required","inputRequests":{"a":{"method":"elicitation/create","params":` + bad + `}}}`
	rows := []struct{ name, raw string }{
		{"code -32042.0", `{"jsonrpc":"2.0","id":"ID","error":` + errWith("-32042.0") + `}`},
		{"code -3.2042e4", `{"jsonrpc":"2.0","id":"ID","error":` + errWith("-3.2042e4") + `}`},
		{"code -32042e0", `{"jsonrpc":"2.0","id":"ID","error":` + errWith("-32042e0") + `}`},
		{"code -320420E-1", `{"jsonrpc":"2.0","id":"ID","error":` + errWith("-320420E-1") + `}`},
		{"code -32042.000000000000001 (same double)", `{"jsonrpc":"2.0","id":"ID","error":` + errWith("-32042.000000000000001") + `}`},
		{"code a string (unreadable: fail closed)", `{"jsonrpc":"2.0","id":"ID","error":` + errWith(`"-32042"`) + `}`},
		{"code missing (unreadable: fail closed)", `{"jsonrpc":"2.0","id":"ID","error":{"message":"x","data":{"elicitations":[` + bad + `]}}}`},
		{"failed task's error", `{"jsonrpc":"2.0","id":"ID","result":{"taskId":"t","status":"failed","error":` + errWith("-32042") + `}}`},
		{"failed task's error, code -32042.0", `{"jsonrpc":"2.0","id":"ID","result":{"resultType":"task","taskId":"t","status":"failed","error":` + errWith("-32042.0") + `}}`},
		{"completed task's result is an InputRequiredResult", `{"jsonrpc":"2.0","id":"ID","result":{"taskId":"t","status":"completed","result":` + ir + `}}`},
		{"input_required task", `{"jsonrpc":"2.0","id":"ID","result":{"resultType":"complete","taskId":"t","status":"input_required","inputRequests":{"a":{"method":"elicitation/create","params":` + bad + `}}}}`},
		{"result of a result of a result", `{"jsonrpc":"2.0","id":"ID","result":{"status":"completed","result":{"result":{"result":` + ir + `}}}}`},
		{"2025-11-25 CreateTaskResult's task", `{"jsonrpc":"2.0","id":"ID","result":{"task":{"taskId":"t","status":"failed","error":` + errWith("-32042") + `}}}`},
		{"too deep to read (fail closed)", `{"jsonrpc":"2.0","id":"ID","result":` + strings.Repeat(`{"result":`, 12) + ir + strings.Repeat(`}`, 12) + `}`},
	}
	notes := []struct{ name, raw string }{
		{"notifications/tasks failed", `{"jsonrpc":"2.0","method":"notifications/tasks","params":{"taskId":"t","status":"failed","error":` + errWith("-3.2042e4") + `}}`},
		{"notifications/tasks completed with input request", `{"jsonrpc":"2.0","method":"notifications/tasks","params":{"taskId":"t","status":"completed","result":` + ir + `}}`},
		{"notifications/tasks input_required", `{"jsonrpc":"2.0","method":"notifications/tasks","params":{"taskId":"t","status":"input_required","inputRequests":{"a":{"method":"elicitation/create","params":` + bad + `}}}}`},
	}
	call := func(raw string, sse bool) string {
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 5, "method": "tools/call",
			"params": map[string]any{"name": "echo", "arguments": map[string]any{"raw": raw, "sse": sse}}})
		return string(b)
	}
	hdr := with(bearer(tok), "Mcp-Session-Id", sid)
	for _, sse := range []bool{false, true} {
		for _, row := range rows {
			t.Run(fmt.Sprintf("%s/sse=%v", row.name, sse), func(t *testing.T) {
				r := tg.do(t, "POST", "/mcp", call(row.raw, sse), hdr)
				body := string(r.body)
				if strings.Contains(body, "javascript") || !strings.Contains(body, "withheld a URL") {
					t.Fatalf("the URL reached the client: %d %s", r.status, body)
				}
				if strings.Contains(body, "-32050") || !strings.Contains(body, fmt.Sprint(mcp.CodeUpstream)) {
					t.Fatalf("refusal code: %s", body)
				}
			})
		}
	}
	for _, row := range notes {
		t.Run(row.name, func(t *testing.T) {
			raw := row.raw + "\n\nevent: message\ndata: " + `{"jsonrpc":"2.0","id":"ID","result":{"content":[]}}`
			r := tg.do(t, "POST", "/mcp", call(raw, true), hdr)
			body := string(r.body)
			if strings.Contains(body, "javascript") || !strings.Contains(body, "withheld a URL") {
				t.Fatalf("the URL reached the client: %d %s", r.status, body)
			}
		})
	}
	// Neighbours that pass unchanged: another code (by value), a good URL
	// in a task, a task result that merely mentions "url".
	good := `{"mode":"url","message":"Sign in","url":"https://login.example/x","elicitationId":"e1"}`
	for _, raw := range []string{
		`{"jsonrpc":"2.0","id":"ID","error":{"code":-32042.5,"message":"x","data":{"elicitations":[` + bad + `]}}}`,
		`{"jsonrpc":"2.0","id":"ID","error":{"code":-32602,"message":"bad url","data":{"url":"javascript:x"}}}`,
		`{"jsonrpc":"2.0","id":"ID","result":{"taskId":"t","status":"failed","error":{"code":-3.2042e4,"message":"x","data":{"elicitations":[` + good + `]}}}}`,
		`{"jsonrpc":"2.0","id":"ID","result":{"taskId":"t","status":"completed","result":{"content":[{"type":"text","text":"see \"url\""}],"structuredContent":{"url":"javascript:ok-in-data"}}}}`,
	} {
		r := tg.do(t, "POST", "/mcp", call(raw, false), hdr)
		if strings.Contains(string(r.body), "withheld") {
			t.Errorf("neighbour withheld: %s -> %s", raw, r.body)
		}
	}
}

func tokenFor(t *testing.T, tg *testGateway, sub, cid string) string {
	c := tg.idp.Claims(sub, tg.url+"/mcp", "mcp:read")
	c["client_id"] = cid
	return tg.idp.Sign(t, "RS256", c)
}

// TestAttackTaskBudgetPerSubject: F3. One subject using several client
// ids has one budget (limits.max_tasks_per_subject), so it cannot fill the
// upstream's table and lock others out; the refused call gets -42900 and
// the upstream is asked to cancel the task nobody can reach.
func TestAttackTaskBudgetPerSubject(t *testing.T) {
	tg, up := startTaskGateway(t, false, func(c *config.Gateway) { c.Limits.MaxTasks, c.Limits.MaxTasksPerSubject = 6, 2 })
	m1, m2, m3 := tokenFor(t, tg, "mallory", "m1"), tokenFor(t, tg, "mallory", "m2"), tokenFor(t, tg, "mallory", "m3")
	createTask(t, tg, m1, "echo")
	createTask(t, tg, m2, "echo")
	for _, tok := range []string{m1, m2, m3} {
		r := tg.do(t, "POST", "/mcp", taskCall("echo"), statelessHeaders(tok, "tools/call", "echo"))
		if code, msg, _ := r.rpcError(t); code != mcp.CodeRateLimited || !strings.Contains(msg, "limits.max_tasks_per_subject") {
			t.Fatalf("mallory's third task: %d %q", code, msg)
		}
	}
	if n := tg.gw.mounts[0].tasks.len(); n != 2 {
		t.Fatalf("%d bindings, want 2", n)
	}
	// Others still get tasks.
	for _, s := range []string{"carol", "dave"} {
		createTask(t, tg, tg.token(t, s, "mcp:read"), "echo")
		createTask(t, tg, tg.token(t, s, "mcp:read"), "echo")
	}
	// The refused tasks (the upstream created them) were cancelled.
	deadline := time.Now().Add(5 * time.Second)
	for {
		up.mu.Lock()
		n := 0
		for _, r := range up.reached {
			if strings.HasPrefix(r, "tasks/cancel ") {
				n++
			}
		}
		up.mu.Unlock()
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d orphan cancellations reached the upstream, want 3 (%v)", n, up.reached)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A full table answers -50300 and never evicts another's live task.
	r := tg.do(t, "POST", "/mcp", taskCall("echo"), statelessHeaders(tg.token(t, "erin", "mcp:read"), "tools/call", "echo"))
	if code, msg, _ := r.rpcError(t); code != mcp.CodeUnavailable || !strings.Contains(msg, "limits.max_tasks") {
		t.Fatalf("full table: %d %q", code, msg)
	}
}

// TestAttackTaskBindingEnds: a binding whose task reached a terminal
// status ("Terminal states: completed, failed, cancelled") or was
// cancelled through the gateway is kept only for taskTerminalGrace, so it
// stops counting against the subject's budget.
func TestAttackTaskBindingEnds(t *testing.T) {
	tg, up := startTaskGateway(t, false, func(c *config.Gateway) { c.Limits.MaxTasksPerSubject = 2 })
	up.ttlMs = "3600000" // an hour: only the end of the task shortens the binding
	alice := tg.token(t, "alice", "mcp:read")
	done := createTask(t, tg, alice, "echo")
	cancelled := createTask(t, tg, alice, "echo")
	m := tg.gw.mounts[0]
	r := tg.do(t, "POST", "/mcp", statelessTask("tasks/get", done), statelessHeaders(alice, "tasks/get", done))
	if !strings.Contains(string(r.body), `"completed"`) {
		t.Fatalf("tasks/get: %s", r.body)
	}
	r = tg.do(t, "POST", "/mcp", statelessTask("tasks/cancel", cancelled), statelessHeaders(alice, "tasks/cancel", cancelled))
	if r.status != 200 || strings.Contains(string(r.body), "error") {
		t.Fatalf("tasks/cancel: %s", r.body)
	}
	m.tasks.mu.Lock()
	for _, id := range []string{done, cancelled} {
		if left := time.Until(m.tasks.tasks[id].expires); left > taskTerminalGrace+time.Second {
			t.Errorf("binding of %s lives %v after it ended", id, left)
		}
	}
	now := time.Now()
	m.tasks.now = func() time.Time { return now.Add(taskTerminalGrace + time.Second) }
	m.tasks.mu.Unlock()
	createTask(t, tg, alice, "echo")
	createTask(t, tg, alice, "echo")
	// Bob's reply naming alice's task never shortens her binding.
	m.tasks.ended(done, "someone else")
}
