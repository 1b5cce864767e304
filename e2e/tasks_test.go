//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcpclient"
)

// TestTasksRoundTripSDK: a Tasks round trip through the gateway with the
// official TypeScript SDK's task support (client and server), the upstream
// over Streamable HTTP and as a stdio command: create (tools/call with a
// task), poll (tasks/get), result (tasks/result), list (tasks/list), cancel
// (tasks/cancel) — and another subject's tasks/get, tasks/result and
// tasks/cancel on the owner's task refused exactly as an unknown task
// ("Invalid or nonexistent taskId: -32602", ext-tasks
// specification/draft/tasks.md §Error Handling; "Servers MUST perform
// authentication and authorization checks on each task-related request",
// §Security Implications), its tasks/list without the owner's tasks. The
// fixture's task store ignores sessions, so without the gateway the other
// subject reads the owner's task and result (docs/testing.md).
//
// The pinned conformance alpha (0.2.0-alpha.12) has tasks-* server
// scenarios, but the reference everything server does not implement
// tasks, so they are not run (they would fail at the server, not the
// gateway).
func TestTasksRoundTripSDK(t *testing.T) {
	op := StartOP(t, "plain")
	srvp, m := Start(t, "tasks-server", []string{Node22(t), "fixtures/tasks/server.mjs"}, []string{"PORT=0"}, readyLine)
	server, _ := filepath.Abs("fixtures/tasks/server.mjs")
	for _, front := range []struct{ name, upstream string }{
		{"http", "url: " + m[1]},
		{"stdio", fmt.Sprintf("command: [%s, %s, stdio]", Node22(t), server)},
	} {
		t.Run(front.name, func(t *testing.T) {
			port := FreePort(t)
			cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
limits:
  requests_per_second: 500
  burst: 1000
issuers:
  - issuer: %s
upstreams:
  - %s
    scopes_supported: [mcp:read]
`, port, op.Issuer, front.upstream)
			file := filepath.Join(t.TempDir(), "gateway.yaml")
			os.WriteFile(file, []byte(cfg), 0o600)
			audit := filepath.Join(t.TempDir(), "audit.jsonl")
			gp, _ := Start(t, "mcpgate", []string{Mcpgate(t), "serve", "--config", file}, []string{"MCPGATE_AUDIT_FILE=" + audit}, regexp.MustCompile(`mcpgate serving`))
			gw := &Gateway{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Proc: gp}
			gw.WaitReady(t)
			owner, _ := op.ClientCredentials(t, "mcp-cc", "cc-secret", gw.Endpoint("/mcp"), "mcp:read", nil)
			other, _ := op.ClientCredentials(t, "mcp-cc-read", "cc-read-secret", gw.Endpoint("/mcp"), "mcp:read", nil)
			before := strings.Count(srvp.Output(), "TASKREQ")
			cp, _ := Start(t, "tasks-client", []string{Node22(t), "fixtures/tasks/client.mjs"},
				[]string{"MCP_URL=" + gw.Endpoint("/mcp"), "OWNER_TOKEN=" + owner, "OTHER_TOKEN=" + other}, nil)
			if err := cp.Wait(60 * time.Second); err != nil {
				t.Fatalf("client: %v\n%s", err, cp.Output())
			}
			steps := map[string]map[string]any{}
			for _, l := range strings.Split(cp.Output(), "\n") {
				if s, ok := strings.CutPrefix(l, "STEP "); ok {
					var st map[string]any
					if json.Unmarshal([]byte(s), &st) == nil {
						steps[st["step"].(string)] = st
					}
				}
			}
			for _, name := range []string{"create", "poll", "result", "list", "cancel", "other-get", "other-result", "other-cancel", "unknown-get", "other-list"} {
				st, ok := steps[name]
				if !ok || st["ok"] != true {
					t.Fatalf("step %s: %v\n%s", name, st, cp.Output())
				}
			}
			// Another subject's attempt is indistinguishable from an
			// unknown task.
			unknown, _ := json.Marshal(steps["unknown-get"]["error"])
			for _, name := range []string{"other-get", "other-result", "other-cancel"} {
				got, _ := json.Marshal(steps[name]["error"])
				if string(got) != string(unknown) {
					t.Fatalf("%s: %s, want the unknown-task error %s", name, got, unknown)
				}
			}
			id := steps["create"]["taskId"].(string)
			if front.name == "http" {
				// Nothing of the other subject's reached the upstream: only
				// the owner's task requests did.
				out := srvp.Output()
				if n := strings.Count(out, "TASKREQ tasks/result "+id); n != 1 {
					t.Fatalf("the upstream saw %d tasks/result for the task, want the owner's 1", n)
				}
				if strings.Contains(out, "TASKREQ tasks/cancel "+id) || strings.Count(out, "TASKREQ") == before {
					t.Fatalf("task requests at the upstream:\n%s", out)
				}
			}
			b, _ := os.ReadFile(audit)
			if !strings.Contains(string(b), `"task_id":"`+id+`","tool":"slow","decision":"task_created"`) ||
				!strings.Contains(string(b), `"subject":"mcp-cc-read"`) {
				t.Fatalf("audit does not name the task and its tool:\n%s", b)
			}
		})
	}
}

// bearer is an mcpclient.Auth sending one access token.
type bearer string

func (b bearer) Apply(_ context.Context, req *http.Request, _ []byte) error {
	req.Header.Set("Authorization", "Bearer "+string(b))
	return nil
}

func (bearer) Handle(context.Context, *http.Response, string) (bool, error) { return false, nil }

// TestTasksRoundTrip2026: a 2026-07-28 Tasks-extension round trip through
// the gateway in front of a stdio and a legacy HTTP+SSE upstream
// (fixtures/tasks26/server.mjs, whose task store belongs to one upstream
// connection, as a stdio child's does), driven by the gateway's own client
// (internal/mcpclient: Mcp-Name = taskId on the task methods). Texts:
// ext-tasks specification/draft/tasks.md (commit 7b8e2bd, 2026-08-19).
//
//   - server/discover claims the extension the upstream declares ("must
//     not claim an extension the upstream lacks, nor hide one the gateway
//     supports on the upstream's behalf") and no 2025-11-25 tasks
//     capability;
//   - create ("resultType": "task"), poll (tasks/get "working"), cancel
//     (the empty ack, then "cancelled"), and a second task polled until
//     "completed" with its result inlined — each a separate POST, served
//     on the caller's task host;
//   - another subject's tasks/get and tasks/cancel on the owner's task get
//     exactly the unknown-task answer ("Invalid or nonexistent taskId:
//     -32602") and never reach the upstream.
func TestTasksRoundTrip2026(t *testing.T) {
	op := StartOP(t, "plain")
	server, _ := filepath.Abs("fixtures/tasks26/server.mjs")
	ssep, sse := Start(t, "tasks26-sse", []string{Node22(t), server, "sse"}, []string{"PORT=0"}, readyLine)
	for _, front := range []struct{ name, upstream string }{
		{"stdio", fmt.Sprintf("command: [%s, %s, stdio]", Node22(t), server)},
		{"sse", "url: " + sse[1] + "\n    transport: sse"},
	} {
		t.Run(front.name, func(t *testing.T) {
			port := FreePort(t)
			cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
limits:
  requests_per_second: 500
  burst: 1000
issuers:
  - issuer: %s
upstreams:
  - %s
    scopes_supported: [mcp:read]
`, port, op.Issuer, front.upstream)
			file := filepath.Join(t.TempDir(), "gateway.yaml")
			os.WriteFile(file, []byte(cfg), 0o600)
			gp, _ := Start(t, "mcpgate", []string{Mcpgate(t), "serve", "--config", file}, nil, regexp.MustCompile(`mcpgate serving`))
			gw := &Gateway{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Proc: gp}
			gw.WaitReady(t)
			ownerTok, _ := op.ClientCredentials(t, "mcp-cc", "cc-secret", gw.Endpoint("/mcp"), "mcp:read", nil)
			otherTok, _ := op.ClientCredentials(t, "mcp-cc-read", "cc-read-secret", gw.Endpoint("/mcp"), "mcp:read", nil)
			ctx := Ctx(t, 2*time.Minute)
			client := func(tok string) *mcpclient.Client {
				c := &mcpclient.Client{URL: gw.Endpoint("/mcp"), Auth: bearer(tok), ProtocolVersion: "2026-07-28",
					Extensions: map[string]any{"io.modelcontextprotocol/tasks": map[string]any{}}}
				if err := c.Connect(ctx); err != nil {
					t.Fatalf("connect: %v", err)
				}
				return c
			}
			owner, other := client(ownerTok), client(otherTok)
			var disc struct {
				Capabilities map[string]json.RawMessage `json:"capabilities"`
			}
			_ = json.Unmarshal(owner.ServerInfo, &disc)
			if !strings.Contains(string(disc.Capabilities["extensions"]), `"io.modelcontextprotocol/tasks"`) || disc.Capabilities["tasks"] != nil {
				t.Fatalf("server/discover capabilities: %s", owner.ServerInfo)
			}
			call := func(c *mcpclient.Client, method string, params map[string]any) (map[string]any, error) {
				raw, err := c.Call(ctx, method, params)
				if err != nil {
					return nil, err
				}
				var m map[string]any
				_ = json.Unmarshal(raw, &m)
				return m, nil
			}
			must := func(m map[string]any, err error) map[string]any {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
				return m
			}
			// Create a long task; poll it; cancel it; see it cancelled.
			created := must(call(owner, "tools/call", map[string]any{"name": "slow", "arguments": map[string]any{"ms": 600000}}))
			id, _ := created["taskId"].(string)
			if created["resultType"] != "task" || id == "" {
				t.Fatalf("create: %v", created)
			}
			if got := must(call(owner, "tasks/get", map[string]any{"taskId": id})); got["status"] != "working" || got["taskId"] != id {
				t.Fatalf("poll: %v", got)
			}
			// Another subject: exactly the unknown-task answer.
			_, unknown := call(owner, "tasks/get", map[string]any{"taskId": "no-such-task"})
			for _, method := range []string{"tasks/get", "tasks/cancel"} {
				_, err := call(other, method, map[string]any{"taskId": id})
				if err == nil || unknown == nil || err.Error() != unknown.Error() {
					t.Fatalf("other subject's %s: %v, want the unknown-task error %v", method, err, unknown)
				}
			}
			if ack := must(call(owner, "tasks/cancel", map[string]any{"taskId": id})); ack["resultType"] != "complete" || ack["taskId"] != nil {
				t.Fatalf("cancel ack: %v", ack)
			}
			if got := must(call(owner, "tasks/get", map[string]any{"taskId": id})); got["status"] != "cancelled" {
				t.Fatalf("poll after cancel: %v", got)
			}
			// A short task: polled until completed, its result inlined.
			short := must(call(owner, "tools/call", map[string]any{"name": "slow", "arguments": map[string]any{"ms": 50}}))
			sid, _ := short["taskId"].(string)
			var done map[string]any
			for range 100 {
				if done = must(call(owner, "tasks/get", map[string]any{"taskId": sid})); done["status"] == "completed" {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			res, _ := json.Marshal(done["result"])
			if done["status"] != "completed" || !strings.Contains(string(res), "slow done on connection") {
				t.Fatalf("result: %v", done)
			}
			// Nothing of the other subject reached the upstream (the SSE
			// server prints every task request it receives).
			if front.name == "sse" {
				// The client sees the host's task ids as "<host id>.<upstream
				// id>" (docs/security.md, Tasks point 7); the upstream its own.
				_, local, ok := strings.Cut(id, ".")
				if !ok {
					t.Fatalf("task id %q is not namespaced by its host", id)
				}
				out := ssep.Output()
				if n := strings.Count(out, "TASKREQ tasks/cancel "+local); n != 1 {
					t.Fatalf("the upstream saw %d tasks/cancel for the task, want the owner's 1:\n%s", n, out)
				}
				if n := strings.Count(out, "TASKREQ tasks/get "+local); n != 2 {
					t.Fatalf("the upstream saw %d tasks/get for the task, want the owner's 2:\n%s", n, out)
				}
			}
		})
	}
}

// tasksScenarios are the conformance alpha's tasks-* server scenarios (its
// "pending" suite) run through the gateway in front of the stdio fixture
// (fixtures/tasks26/server.mjs provides the tools they name). The
// extension's scenarios speak 2026-07-28, so every request reaches the
// fixture through a per-request connection or the caller's task host.
// tasks-status-notifications is left out: it runs no check against a
// server without subscriptions/listen (0 of 0).
var tasksScenarios = []string{"tasks-lifecycle", "tasks-capability-negotiation", "tasks-wire-fields",
	"tasks-request-state-removal", "tasks-request-headers", "tasks-required-task-error",
	"tasks-dispatch-and-envelope", "tasks-mrtr-input", "tasks-mrtr-composition"}

// scenarioPassed is the summary of one scenario run with --scenario.
var scenarioPassed = regexp.MustCompile(`Passed: (\d+)/(\d+), (\d+) failed`)

// TestConformanceTasksStdio runs tasksScenarios with 0 failures expected.
func TestConformanceTasksStdio(t *testing.T) {
	op := StartOP(t, "plain")
	server, _ := filepath.Abs("fixtures/tasks26/server.mjs")
	suiteURL, _, _ := conformanceFront(t, op, fmt.Sprintf("command: [%s, %s, stdio]", Node22(t), server))
	for _, name := range tasksScenarios {
		t.Run(name, func(t *testing.T) {
			results := t.TempDir()
			p, _ := Start(t, "conformance-"+name, []string{Node22(t), Module(t, "conformance-alpha/dist/index.js"), "server", "--url", suiteURL, "--scenario", name, "-o", results}, nil, nil)
			if err := p.Wait(3 * time.Minute); err != nil {
				t.Fatal(err)
			}
			out := p.Output()
			m := scenarioPassed.FindStringSubmatch(out)
			if m == nil || m[1] != m[2] || m[3] != "0" || m[1] == "0" {
				checks, _ := filepath.Glob(filepath.Join(results, "*", "checks.json"))
				for _, c := range checks {
					b, _ := os.ReadFile(c)
					t.Logf("%s:\n%s", c, b)
				}
				t.Fatalf("scenario %s:\n%s", name, out)
			}
		})
	}
}
