package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

// kindCost is what one kind of operation cost the target in the latency
// scenario: the target's CPU, redis-server's CPU and the Redis round trips
// per HTTP request.
type kindCost struct {
	requests       int64
	cpu, redisCPU  time.Duration
	trips          int64
	tripsByCommand map[string]int64
}

func (c kindCost) perReq(d time.Duration) float64 {
	return float64(d.Microseconds()) / float64(max(c.requests, 1))
}

func (c kindCost) tripsPerReq() float64 { return float64(c.trips) / float64(max(c.requests, 1)) }

// phaseOps is how many operations of one kind run back to back (times the
// kind's weight) before the next kind's phase: long enough that the
// samples around a phase cost nothing worth counting, short enough that
// every kind sees the same minutes of machine noise.
const phaseOps = 100

// costSample is the target's CPU and, with a Redis, redis-server's sample.
type costSample struct {
	cpu   time.Duration
	redis redisSample
}

// With a second replica (hop) the CPU is both replicas' together.
func (e *env) costSample() costSample {
	var s costSample
	s.cpu, _ = readCPU(e.gw.pid)
	if e.peer != nil {
		b, _ := readCPU(e.peer.pid)
		s.cpu += b
	}
	if e.redis != nil {
		s.redis, _ = e.redis.sample()
	}
	return s
}

// latency runs the mix's operations one after another (one in flight,
// no pacing) for -duration: the c=1 latency of each kind. Kinds run in
// phases of phaseOps × weight operations, cycled until the time is up, so
// that CPU and Redis round trips can be counted per kind from samples
// around each phase.
func (e *env) latency() error {
	m, _ := parseMix(e.o.mixSpec)
	if m.has(kindStream) {
		return fmt.Errorf("-scenario latency: leave stream out of -mix (a held stream is not a request)")
	}
	r := rand.New(rand.NewPCG(5, 6))
	slots := make(chan struct{}, 1)
	run := func(kind string) {
		slots <- struct{}{}
		e.op(context.Background(), kind, slots, nil)
	}
	for range 200 { // warm-up: first-seen tokens, connections, scripts loaded
		run(m.choose(r))
	}
	e.rec = newRecorder()
	e.d.rec = e.rec
	e.costs = map[string]kindCost{}
	before := e.snap("before")
	deadline := time.Now().Add(e.o.duration)
	var reqs int64
	for time.Now().Before(deadline) {
		for i, kind := range m.kinds {
			weight := m.cum[i]
			if i > 0 {
				weight -= m.cum[i-1]
			}
			a := e.costSample()
			var n int64
			for range weight * phaseOps {
				run(kind)
				n += requestsPerOp(kind, e.o.callsPer)
			}
			e.addCost(kind, a, e.costSample(), n)
			reqs += n
		}
	}
	end := e.snap("end")
	e.cpuUS = cpuPerOp(before, end, reqs)
	e.rec.report(os.Stdout)
	printKindCosts(os.Stdout, e.costs)
	return nil
}

// requestsPerOp is the number of HTTP requests one operation of kind sends.
func requestsPerOp(kind string, callsPer int) int64 {
	if kind == kindSession {
		return int64(3 + callsPer) // initialize, initialized, calls, DELETE
	}
	return 1
}

func (e *env) addCost(kind string, a, b costSample, n int64) {
	c := e.costs[kind]
	if c.tripsByCommand == nil {
		c.tripsByCommand = map[string]int64{}
	}
	c.requests += n
	c.cpu += b.cpu - a.cpu
	if e.redis != nil {
		c.redisCPU += b.redis.cpu - a.redis.cpu
		t, by := roundTrips(a.redis, b.redis)
		c.trips += t
		for k, v := range by {
			c.tripsByCommand[k] += v
		}
	}
	e.costs[kind] = c
}

func printKindCosts(w io.Writer, costs map[string]kindCost) {
	kinds := make([]string, 0, len(costs))
	for k := range costs {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	fmt.Fprintf(w, "%-10s %9s %14s %16s %14s  %s\n", "kind", "requests", "cpu µs/req", "redis cpu µs/req", "round trips/req", "by command")
	for _, k := range kinds {
		c := costs[k]
		fmt.Fprintf(w, "%-10s %9d %14.0f %16.0f %14.3f  %s\n", k, c.requests, c.perReq(c.cpu), c.perReq(c.redisCPU), c.tripsPerReq(), perRequest(c))
	}
}

func perRequest(c kindCost) string {
	keys := make([]string, 0, len(c.tripsByCommand))
	for k := range c.tripsByCommand {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.3f", k, float64(c.tripsByCommand[k])/float64(max(c.requests, 1))))
	}
	return strings.Join(parts, ", ")
}

// latencyKind is the kind whose latency stands for a cost kind in the
// summary: a session's calls, not the whole initialize…DELETE operation.
func latencyKind(kind string) string {
	if kind == kindSession || strings.HasPrefix(kind, "hop/") {
		return kind + "/call"
	}
	return kind
}

// printCosts prints the latency scenario's per-kind figures of every run,
// then per variant and kind the median over the rounds, and each
// variant's difference from the first variant: the added p50 and p99 and
// the CPU per request relative to it (the floors compare the
// Redis mode with the memory mode).
func printCosts(w io.Writer, rs []result) {
	var kinds []string
	for k := range rs[0].costs {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	fmt.Fprintf(w, "\n== per kind and run (c=1): p50 / p99, gateway CPU µs per HTTP request, redis-server CPU µs, Redis round trips per request\n")
	for _, r := range rs {
		for _, k := range kinds {
			c := r.costs[k]
			l := r.latency[latencyKind(k)]
			fmt.Fprintf(w, "%-12s %2d %-10s %8s / %8s  cpu %5.0f  redis %4.0f  trips %.3f  [%s]  load %s\n", r.name, r.round, k,
				us(l[0]), us(l[1]), c.perReq(c.cpu), c.perReq(c.redisCPU), c.tripsPerReq(), perRequest(c), r.load)
		}
	}
	var names []string
	for _, r := range rs {
		if !slices.Contains(names, r.name) {
			names = append(names, r.name)
		}
	}
	type med struct{ p50, p99, cpu, trips float64 }
	medians := map[string]map[string]med{}
	for _, n := range names {
		medians[n] = map[string]med{}
		for _, k := range kinds {
			var p50, p99, cpu, trips []float64
			for _, r := range rs {
				if r.name != n {
					continue
				}
				c := r.costs[k]
				l := r.latency[latencyKind(k)]
				p50 = append(p50, float64(l[0].Microseconds()))
				p99 = append(p99, float64(l[1].Microseconds()))
				cpu = append(cpu, c.perReq(c.cpu))
				trips = append(trips, c.tripsPerReq())
			}
			medians[n][k] = med{median(p50), median(p99), median(cpu), median(trips)}
		}
	}
	base := names[0]
	fmt.Fprintf(w, "\n== medians over the rounds; Δ against %s (added p50 / p99, CPU per request in %%)\n", base)
	fmt.Fprintf(w, "%-12s %-10s %9s %9s %9s %8s %22s %9s\n", "variant", "kind", "p50 µs", "p99 µs", "cpu µs", "trips", "Δp50 / Δp99 µs", "Δcpu")
	for _, n := range names {
		for _, k := range kinds {
			m, b := medians[n][k], medians[base][k]
			fmt.Fprintf(w, "%-12s %-10s %9.0f %9.0f %9.0f %8.3f %22s %+8.1f%%\n", n, k, m.p50, m.p99, m.cpu, m.trips,
				fmt.Sprintf("%+.0f / %+.0f", m.p50-b.p50, m.p99-b.p99), 100*(m.cpu-b.cpu)/b.cpu)
		}
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
