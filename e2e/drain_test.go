//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// finalMargin is how long before the gateway logged the final phase a
// request must have started to be sure it got in: a connection still in
// the listen backlog when the listener closes is reset, which is what the
// drain (load balancers stop sending) exists to avoid.
const finalMargin = 250 * time.Millisecond

// TestGracefulDrain: a real `mcpgate serve` with stdio children under a
// steady load of tool calls gets SIGTERM with shutdown_drain 2s. /readyz
// turns 503 "draining" while /healthz stays 200; no request that started
// before the final phase fails; a long tool call in flight across the
// final phase completes; a GET stream gets an SSE retry field and ends;
// the process exits 0 and its children are gone.
func TestGracefulDrain(t *testing.T) {
	everything := Module(t, "@modelcontextprotocol/server-everything/dist/index.js")
	_, gw, mcpURL, tok := protect(t, "--shutdown-drain", "2s", "--", "node", everything, "stdio")
	ctx := Ctx(t, 3*time.Minute)
	client := &http.Client{Timeout: 60 * time.Second}
	const workers = 4
	sessions := make([]*RawSession, workers+1)
	for i := range sessions {
		s, err := OpenRawSession(ctx, client, mcpURL, tok)
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		sessions[i] = s
	}
	stream := openSSE(t, ctx, mcpURL, tok, sessions[0].ID)
	pid := gw.Proc.cmd.Process.Pid
	children := childPIDs(t, pid)
	if len(children) < len(sessions) {
		t.Fatalf("%d child processes for %d stdio sessions", len(children), len(sessions))
	}

	// ≤ 16 requests a second: under the default per-subject rate limit (20/s).
	load := SteadyLoad(workers, 250*time.Millisecond, func(ctx context.Context, w int) error {
		res, err := sessions[w].CallTool(ctx, "echo", map[string]any{"message": "drain-" + strconv.Itoa(w)})
		if err == nil && !strings.Contains(string(res), "drain-"+strconv.Itoa(w)) {
			err = fmt.Errorf("echo answered %s", res)
		}
		return err
	})
	defer load.Stop()
	waitUntil(t, 30*time.Second, "the load got going", func() bool { return load.Count() >= 20 })
	long := make(chan error, 1)
	go func() {
		_, err := sessions[workers].CallTool(ctx, "trigger-long-running-operation", map[string]any{"duration": 4, "steps": 2})
		long <- err
	}()

	gw.Proc.Signal(syscall.SIGTERM)
	waitUntil(t, 10*time.Second, "/readyz answered 503 draining", func() bool {
		status, body := get(gw.URL + "/readyz")
		return status == http.StatusServiceUnavailable && strings.Contains(body, "draining")
	})
	if status, _ := get(gw.URL + "/healthz"); status != http.StatusOK {
		t.Fatalf("/healthz while draining: %d, want 200", status)
	}
	rest := readToEnd(t, stream)
	if !strings.Contains(rest, "retry: 1000\n") {
		t.Fatalf("the GET stream ended without an SSE retry field: %q", rest)
	}
	if err := gw.Proc.Wait(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	calls := load.Stop()
	if code := gw.Proc.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("mcpgate exited %d, want 0", code)
	}
	if err := <-long; err != nil {
		t.Fatalf("a tool call in flight across the final phase failed: %v", err)
	}
	final := loggedAt(t, gw.Proc.Output(), "shutting down")
	before := final.Add(-finalMargin)
	if n := Started(calls, before); n < 20 {
		t.Fatalf("only %d requests started before the final phase: the assertion below would be vacuous", n)
	}
	for _, c := range Failed(calls, before) {
		t.Errorf("request of worker %d started %s before the final phase and failed: %v", c.Worker, final.Sub(c.Start), c.Err)
	}
	t.Logf("%d requests, %d started before the final phase (less %s), %d failures in all (after it: refused connections, expected)",
		len(calls), Started(calls, before), finalMargin, len(Failed(calls, time.Now())))
	for _, c := range children {
		if _, err := os.Stat("/proc/" + strconv.Itoa(c)); err == nil {
			t.Errorf("child %d outlived the gateway", c)
		}
	}
}

// TestSecondSIGTERMSkipsDrain: with a long drain, a second SIGTERM ends it
// and the gateway exits 0 (a "did not hang" bound, not a timing check).
func TestSecondSIGTERMSkipsDrain(t *testing.T) {
	everything := Module(t, "@modelcontextprotocol/server-everything/dist/index.js")
	_, gw, _, _ := protect(t, "--shutdown-drain", "10m", "--", "node", everything, "stdio")
	gw.Proc.Signal(syscall.SIGINT)
	waitUntil(t, 10*time.Second, "/readyz answered 503 draining", func() bool {
		status, body := get(gw.URL + "/readyz")
		return status == http.StatusServiceUnavailable && strings.Contains(body, "draining")
	})
	gw.Proc.Signal(syscall.SIGTERM)
	if err := gw.Proc.Wait(60 * time.Second); err != nil {
		t.Fatalf("a second signal did not end the 10m drain: %v", err)
	}
	if code := gw.Proc.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("mcpgate exited %d, want 0", code)
	}
}

// openSSE opens the session's GET stream and reads its priming event.
func openSSE(t *testing.T, ctx context.Context, url, tok, sid string) *bufio.Reader {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET stream: %v %v", err, resp)
	}
	t.Cleanup(func() { resp.Body.Close() })
	br := bufio.NewReader(resp.Body)
	if line, _ := br.ReadString('\n'); !strings.HasPrefix(line, "id:") {
		t.Fatalf("GET stream's first line %q, want its priming event", line)
	}
	return br
}

// readToEnd reads the rest of a stream; one that does not end within a
// generous bound fails the test.
func readToEnd(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(br)
		got <- string(b)
	}()
	select {
	case s := <-got:
		return s
	case <-time.After(60 * time.Second):
		t.Fatal("the GET stream did not end at shutdown")
		return ""
	}
}

func get(u string) (int, string) {
	resp, err := http.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitUntil(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
	}
}

// childPIDs lists the direct children of pid.
func childPIDs(t *testing.T, pid int) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

var logTime = regexp.MustCompile(`time=(\S+)`)

// loggedAt is the time of the gateway's first log line holding msg.
func loggedAt(t *testing.T, output, msg string) time.Time {
	t.Helper()
	for _, l := range strings.Split(output, "\n") {
		if !strings.Contains(l, msg) {
			continue
		}
		if m := logTime.FindStringSubmatch(l); m != nil {
			if at, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
				return at
			}
		}
	}
	t.Fatalf("no log line %q with a time in:\n%s", msg, output)
	return time.Time{}
}
