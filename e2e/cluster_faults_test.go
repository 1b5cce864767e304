//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestClusterStdioOwner: a stdio session lives on the replica that runs
// its child. Reached through another replica it works (the request is
// forwarded to the owner); once the owner is killed the other replicas
// answer the spec's 404 at once (no hang), and initializing again through
// the load balancer gives a working session.
func TestClusterStdioOwner(t *testing.T) {
	c := StartCluster(t, ClusterOptions{})
	tok := c.Token(t, 0, StdioPath)
	sid := c.Initialize(t, 0, StdioPath, tok)
	for _, i := range []int{1, 2, 1} {
		if a := c.Echo(i, StdioPath, tok, sid, "via "+strconv.Itoa(i)); a.Status != 200 || !strings.Contains(a.Body, "via "+strconv.Itoa(i)) {
			t.Fatalf("the stdio session of replica 0 at replica %d: %v %d %.300s", i, a.Err, a.Status, a.Body)
		}
	}
	c.Kill(t, 0)
	for _, i := range []int{1, 2} {
		start := time.Now()
		a := c.Echo(i, StdioPath, tok, sid, "owner gone")
		if a.Err != nil || a.Status != http.StatusNotFound || !strings.Contains(a.Body, `"jsonrpc"`) {
			t.Errorf("the session of the killed replica at replica %d: %v %d %.300s (want 404 with a JSON-RPC error)", i, a.Err, a.Status, a.Body)
		}
		t.Logf("replica %d answered %d in %v after the owner died", i, a.Status, time.Since(start).Round(time.Millisecond))
	}
	c.WaitBalanced(t, 0, false)
	fresh := c.Initialize(t, -1, StdioPath, tok)
	for i := range 4 {
		if a := c.Echo(-1, StdioPath, tok, fresh, "again"); a.Status != 200 || !strings.Contains(a.Body, "again") {
			t.Fatalf("call %d in the new session: %v %d %.300s", i, a.Err, a.Status, a.Body)
		}
	}
}

// TestClusterMRTRState: a 2026-07-28 tools/call to the stdio upstream (a
// session-era server) that asks for sampling gets an InputRequiredResult
// at replica 0; the retry with inputResponses and the requestState at
// replica 1 resumes the parked upstream request (forwarded to its owner);
// the same retry at any replica afterwards is refused: the state is
// single-use across replicas (2026-07-28 basic/patterns/mrtr, SEP-2322).
func TestClusterMRTRState(t *testing.T) {
	c := StartCluster(t, ClusterOptions{})
	tok := c.Token(t, 0, StdioPath)
	const meta = `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"sampling":{}}}`
	hdr := []string{"Authorization", "Bearer " + tok, "MCP-Protocol-Version", "2026-07-28", "Mcp-Method", "tools/call", "Mcp-Name", "trigger-sampling-request"}
	ask := c.Post(0, StdioPath, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"trigger-sampling-request","arguments":{"prompt":"cluster"},`+meta+`}}`, hdr...)
	var ir struct {
		Result struct {
			ResultType    string                     `json:"resultType"`
			RequestState  string                     `json:"requestState"`
			InputRequests map[string]json.RawMessage `json:"inputRequests"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(lastMessage(ask)), &ir); err != nil || ir.Result.ResultType != "input_required" || ir.Result.RequestState == "" || len(ir.Result.InputRequests) != 1 {
		t.Fatalf("want an InputRequiredResult at replica 0: %v %d %.500s", err, ask.Status, ask.Body)
	}
	var inputKey string
	for k := range ir.Result.InputRequests {
		inputKey = k
	}
	retry := func(i, id int) Answer {
		return c.Post(i, StdioPath, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"trigger-sampling-request","arguments":{"prompt":"cluster"},"requestState":%q,"inputResponses":{%q:{"role":"assistant","model":"m","content":{"type":"text","text":"sampled-across-replicas"}}},%s}}`,
			id, ir.Result.RequestState, inputKey, meta), hdr...)
	}
	if a := retry(1, 2); a.Status != 200 || !strings.Contains(a.Body, "sampled-across-replicas") || strings.Contains(lastMessage(a), `"error"`) {
		t.Fatalf("the retry at replica 1: %v %d %.500s", a.Err, a.Status, a.Body)
	}
	for _, i := range []int{2, 0, 1} {
		a := retry(i, 3+i)
		if a.Err != nil || strings.Contains(a.Body, "sampled-across-replicas") || !strings.Contains(lastMessage(a), `"error"`) {
			t.Errorf("the used requestState again at replica %d: %v %d %.500s (want a JSON-RPC error)", i, a.Err, a.Status, a.Body)
		}
	}
}

// lastMessage is the last JSON-RPC message of a JSON or SSE answer.
func lastMessage(a Answer) string {
	if !strings.HasPrefix(a.Header.Get("Content-Type"), "text/event-stream") {
		return a.Body
	}
	last := ""
	for _, l := range strings.Split(a.Body, "\n") {
		if d, ok := strings.CutPrefix(l, "data: "); ok && d != "" {
			last = d
		}
	}
	return last
}

// clusterLoad is a SteadyLoad through the load balancer: worker w holds a
// 2025-11-25 session to the HTTP upstream as machine-(first+w) (its own
// subject, so the replicas' audit logs say whose request each was) and
// calls tool in a loop. Each call carries an X-Load-Call header with its
// tag, which HAProxy's log captures (Cluster.LBLog).
type clusterLoad struct {
	*Load
	first   int
	mu      sync.Mutex        // guards current and tags
	current map[int]time.Time // when worker w's call in progress started
	tags    map[int][]string  // each worker's calls' tags, in order
}

type loadTagKey struct{}

// loadTagTransport puts the call's tag (from its context) on every request.
type loadTagTransport struct{}

func (loadTagTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if tag, ok := r.Context().Value(loadTagKey{}).(string); ok {
		r = r.Clone(r.Context())
		r.Header.Set("X-Load-Call", tag)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func startClusterLoad(t *testing.T, c *Cluster, first, workers int, pause time.Duration, tool string, args map[string]any) *clusterLoad {
	ctx := Ctx(t, 5*time.Minute)
	sessions := make([]*RawSession, workers)
	for w := range sessions {
		client := &http.Client{Timeout: 60 * time.Second, Transport: loadTagTransport{}}
		s, err := OpenRawSession(ctx, client, c.LB+HTTPPath, c.Token(t, first+w, HTTPPath))
		if err != nil {
			t.Fatalf("session %d: %v", first+w, err)
		}
		sessions[w] = s
	}
	l := &clusterLoad{first: first, current: map[int]time.Time{}, tags: map[int][]string{}}
	l.Load = SteadyLoad(workers, pause, func(ctx context.Context, w int) error {
		l.mu.Lock()
		l.current[w] = time.Now()
		tag := fmt.Sprintf("w%d-%d", first+w, len(l.tags[w]))
		l.tags[w] = append(l.tags[w], tag)
		l.mu.Unlock()
		defer func() { l.mu.Lock(); delete(l.current, w); l.mu.Unlock() }()
		_, err := sessions[w].CallTool(context.WithValue(ctx, loadTagKey{}, tag), tool, args)
		return err
	})
	t.Cleanup(func() { l.Stop() })
	return l
}

// tagged pairs each call with its tag (a worker's calls are recorded in
// the order they were made; only a call cut by Stop is left out, the last).
func (l *clusterLoad) tagged(calls []Call) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := map[int]int{}
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = l.tags[c.Worker][next[c.Worker]]
		next[c.Worker]++
	}
	return out
}

// inFlightAt counts the workers whose request in progress has reached
// replica i (its audit record is there, written after it was started).
func (l *clusterLoad) inFlightAt(t *testing.T, c *Cluster, i int) int {
	l.mu.Lock()
	cur := make(map[int]time.Time, len(l.current))
	for w, s := range l.current {
		cur[w] = s
	}
	l.mu.Unlock()
	n := 0
	recs := c.AuditLog(t, i)
	for w, s := range cur {
		if reachedAt(recs, l.first+w, s, time.Now()) {
			n++
		}
	}
	return n
}

// reachedAt reports whether machine-n's tools/call has an allowed record
// in recs between from and to.
func reachedAt(recs []AuditRecord, n int, from, to time.Time) bool {
	sub := "machine-" + strconv.Itoa(n)
	for _, r := range recs {
		if r.Subject == sub && r.Method == "tools/call" && r.Decision == "allow" && !r.Time.Before(from) && !r.Time.After(to) {
			return true
		}
	}
	return false
}

// TestClusterKillUnderLoad: through HAProxy, six workers call a one-second
// tool and four call echo every 20ms; replica 1 is SIGKILLed while at
// least two of the long calls are in flight on it (their audit records
// are in its log). Only calls in flight on it fail: every failed call
// started before replica 1 was reaped, and HAProxy's log shows it was sent to replica
// 1 and not elsewhere; a long call fails only if replica 1's audit log
// holds it. Calls that reached replica 1 after it died (before the health
// check took it out) were retried on another replica and succeeded.
func TestClusterKillUnderLoad(t *testing.T) {
	c := StartCluster(t, ClusterOptions{Workers: 10})
	long := startClusterLoad(t, c, 0, 6, 50*time.Millisecond, "trigger-long-running-operation", map[string]any{"duration": 1, "steps": 2})
	fast := startClusterLoad(t, c, 6, 4, 20*time.Millisecond, "echo", map[string]any{"message": "fast"})
	waitUntil(t, 60*time.Second, "the load got going", func() bool { return long.Count() >= 6 && fast.Count() >= 40 })
	waitUntil(t, 60*time.Second, "two long calls in flight on replica 1", func() bool { return long.inFlightAt(t, c, 1) >= 2 })
	kill := time.Now()
	c.Kill(t, 1)
	// dead: the process is reaped. A call that started between the signal
	// and this moment may still have reached the dying replica.
	dead := time.Now()
	c.WaitBalanced(t, 1, false)
	nl, nf := long.Count(), fast.Count()
	waitUntil(t, 60*time.Second, "the load went on after the kill", func() bool { return long.Count() >= nl+12 && fast.Count() >= nf+40 })
	lb, recs := c.LBLog(), c.AuditLog(t, 1)
	inFlight, failed, redispatched := 0, 0, 0
	for _, load := range []*clusterLoad{long, fast} {
		calls := load.Stop()
		for k, tag := range load.tagged(calls) {
			call, e := calls[k], lb[tag]
			if strings.HasPrefix(e.Retries, "+") {
				redispatched++
			}
			held := call.Start.Before(dead) && call.End.After(kill) && reachedAt(recs, load.first+call.Worker, call.Start, dead)
			if load == long && held {
				inFlight++
			}
			if call.Err == nil {
				continue
			}
			failed++
			switch {
			case !call.Start.Before(dead):
				t.Errorf("call %s started %v after replica 1 died and failed (HAProxy: %+v): %v", tag, call.Start.Sub(dead).Round(time.Millisecond), e, call.Err)
			case e.Server != "r1":
				t.Errorf("call %s failed but HAProxy sent it to %q, not the killed replica r1 (%+v): %v", tag, e.Server, e, call.Err)
			case strings.HasPrefix(e.Term, "SC"):
				t.Errorf("call %s failed connecting to r1 and was not sent to another replica (%+v): %v", tag, e, call.Err)
			case load == long && !held:
				t.Errorf("long call %s failed but replica 1's audit log does not hold it: %v", tag, call.Err)
			}
		}
	}
	if inFlight < 2 {
		t.Fatalf("%d long calls were in flight on the killed replica: the test proves nothing", inFlight)
	}
	t.Logf("%d long calls in flight on replica 1 at the kill (audit log); %d calls failed in all, each sent to r1 before the kill (HAProxy log); %d redispatched to another replica",
		inFlight, failed, redispatched)
}

// TestClusterRollingRestart: under a steady load of tool calls through
// HAProxy, each replica in turn gets SIGTERM (drain 2s: /readyz turns 503,
// HAProxy stops sending, in-flight calls finish), exits 0 and is started
// again; the next one goes only when HAProxy sees it ready. No call fails.
func TestClusterRollingRestart(t *testing.T) {
	c := StartCluster(t, ClusterOptions{})
	const workers = 4
	load := startClusterLoad(t, c, 0, workers, 50*time.Millisecond, "echo", map[string]any{"message": "rolling"})
	waitUntil(t, 60*time.Second, "the load got going", func() bool { return load.Count() >= 4*workers })
	for i := range c.Replicas {
		c.Terminate(t, i)
		c.Restart(t, i)
		n := load.Count()
		waitUntil(t, 60*time.Second, "calls after replica "+strconv.Itoa(i)+" came back", func() bool { return load.Count() >= n+2*workers })
	}
	calls := load.Stop()
	for _, call := range Failed(calls, time.Now()) {
		t.Errorf("worker %d's call failed during the rolling restart: %v", call.Worker, call.Err)
	}
	for i := range c.Replicas {
		if since := served(c.AuditLog(t, i), time.Now().Add(-time.Hour)); since == 0 {
			t.Errorf("replica %d served no call", i)
		}
	}
	t.Logf("%d calls during a rolling restart of %d replicas, %d failed", len(calls), len(c.Replicas), len(Failed(calls, time.Now())))
}

func served(recs []AuditRecord, since time.Time) int {
	n := 0
	for _, r := range recs {
		if r.Method == "tools/call" && r.Decision == "allow" && r.Time.After(since) {
			n++
		}
	}
	return n
}
