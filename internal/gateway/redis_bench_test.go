package gateway

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

// BenchmarkRedisMode sends the same requests one at a time (c=1) to a
// gateway in memory mode and to one on a real redis-server, alternating
// blocks of 100 requests so that machine drift (this machine is shared)
// affects both alike (each goes first every other block): a tools/call with a cached Bearer token, and with a
// fresh DPoP proof each. It reports per mode the p50 latency, the
// gateway's CPU per request (the dpop rows include the client's proof
// signing, alike in both modes), the Redis server's CPU per request and
// the Redis round trips per request.
// Figures: docs/performance.md "Shared state (Redis) — hot path".
func BenchmarkRedisMode(b *testing.B) {
	srv := testutil.StartRedis(b)
	var gws [2]*testGateway
	for i, mode := range []string{"memory", "redis"} {
		gws[i] = startGateway(b, func(c *config.Gateway) {
			c.Audit.Disabled = true
			c.Limits.RequestsPerSecond, c.Limits.Burst = 1e6, 1e6
			c.Limits.DPoPReplayEntries, c.Limits.DPoPReplayPerSubject = 1e6, 1e6 // -count reruns: bob's proofs stay live 5 min
			c.Upstreams[0].DPoP = "optional"
			if mode == "redis" {
				c.State.Redis = config.Redis{URL: srv.URL()}
			}
		})
	}
	hook := &countHook{}
	gws[1].gw.redis.Client().AddHook(hook)
	for _, path := range []string{"bearer", "dpop"} {
		b.Run(path, func(b *testing.B) {
			var runs [2]*seqRun
			for i, tg := range gws {
				runs[i] = newSeqRun(b, tg, path)
			}
			runs[1].hook = hook
			trips0 := hook.n.Load()
			rcpu := time.Duration(0)
			b.ResetTimer()
			for done := 0; done < b.N; done += 100 {
				n := min(100, b.N-done)
				if done%200 == 0 { // each mode goes first every other block
					runs[0].block(b, n)
				}
				r0 := srv.CPU()
				runs[1].block(b, n)
				rcpu += srv.CPU() - r0
				if done%200 != 0 {
					runs[0].block(b, n)
				}
			}
			b.StopTimer()
			for i, mode := range []string{"memory", "redis"} {
				runs[i].report(b, mode)
			}
			b.ReportMetric(float64(rcpu.Microseconds())/float64(b.N), "redis-server-cpu-µs/op")
			b.ReportMetric(float64(hook.n.Load()-trips0)/float64(b.N), "redis-trips/op")
		})
	}
}

// seqRun sends requests of one kind to one gateway and keeps their
// latencies and the CPU they cost.
type seqRun struct {
	tg     *testGateway
	client *http.Client
	hdr    func() map[string]string
	lat    []time.Duration
	cpu    time.Duration
	// hook counts Redis round trips (nil in memory mode); quiet are the
	// latencies of the requests that made none.
	hook  *countHook
	quiet []time.Duration
}

func newSeqRun(b *testing.B, tg *testGateway, path string) *seqRun {
	r := &seqRun{tg: tg, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
	tok := tg.token(b, "alice", "mcp:read")
	r.hdr = func() map[string]string { return bearer(tok) }
	if path == "dpop" {
		c := newDPoPCaller(b, tg, "bob")
		r.hdr = func() map[string]string { return c.headers(b, tg) }
	}
	r.post(b, r.hdr()) // warm: token cache, connection, script cache
	return r
}

func (r *seqRun) block(b *testing.B, n int) {
	start := cpuTime()
	for range n {
		h := r.hdr() // made outside the measured request
		var before int64
		if r.hook != nil {
			before = r.hook.n.Load()
		}
		d := r.post(b, h)
		r.lat = append(r.lat, d)
		if r.hook != nil && r.hook.n.Load() == before {
			r.quiet = append(r.quiet, d)
		}
	}
	r.cpu += cpuTime() - start
}

func (r *seqRun) report(b *testing.B, mode string) {
	slices.Sort(r.lat)
	b.ReportMetric(float64(r.lat[len(r.lat)/2].Microseconds()), mode+"-p50-µs")
	b.ReportMetric(float64(r.cpu.Microseconds())/float64(len(r.lat)), mode+"-cpu-µs/op")
	if len(r.quiet) > 0 {
		slices.Sort(r.quiet)
		b.ReportMetric(float64(r.quiet[len(r.quiet)/2].Microseconds()), mode+"-no-trip-p50-µs")
	}
}

func (r *seqRun) post(b *testing.B, h map[string]string) time.Duration {
	req, _ := http.NewRequest("POST", r.tg.url+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"x":1}}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range h {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := r.client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
	return time.Since(start)
}
