package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"
)

// variant is one target of a side-by-side run: the gateway with extra
// serve arguments, or the yardstick.
type variant struct {
	name, target string
	args         []string
}

// parseVariant reads NAME=ARGS. ARGS are split on spaces (no quoting: a
// serve flag takes its value after '='). The name "yardstick" selects the
// bare reverse proxy, which takes no arguments.
func parseVariant(s string) (variant, error) {
	name, args, ok := strings.Cut(s, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return variant{}, fmt.Errorf("-variant %q: want NAME=ARGS (ARGS may be empty), e.g. memory= or redis=--redis-url=redis://127.0.0.1:6379/0", s)
	}
	v := variant{name: name, target: "gateway", args: strings.Fields(args)}
	if name == "yardstick" {
		if len(v.args) > 0 {
			return variant{}, fmt.Errorf("-variant yardstick takes no arguments, got %q", args)
		}
		v.target = "yardstick"
	}
	return v, nil
}

// result is what a side-by-side comparison prints of one run.
type result struct {
	name    string
	round   int
	cpuUS   float64 // target's CPU per HTTP request
	latency map[string][2]time.Duration
}

// compared are the kinds whose p50/p99 the comparison shows.
var compared = []string{kindStateless, kindList, kindDPoP, kindSession + "/call", "sessions/call"}

func (e *env) result(name string) result {
	r := result{name: name, cpuUS: e.cpuUS, latency: map[string][2]time.Duration{}}
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	for _, k := range compared {
		if ks := e.rec.kinds[k]; ks != nil {
			s := slices.Clone(ks.samples)
			slices.Sort(s)
			r.latency[k] = [2]time.Duration{percentile(s, 50), percentile(s, 99)}
		}
	}
	return r
}

func printComparison(w io.Writer, rs []result) {
	fmt.Fprintf(w, "\n== side by side (CPU per request of the target process; p50 / p99 per kind)\n")
	fmt.Fprintf(w, "%-14s %5s %10s", "variant", "round", "cpu µs/req")
	for _, k := range compared {
		fmt.Fprintf(w, " %21s", k)
	}
	fmt.Fprintln(w)
	for _, r := range rs {
		fmt.Fprintf(w, "%-14s %5d %10.0f", r.name, r.round, r.cpuUS)
		for _, k := range compared {
			l, ok := r.latency[k]
			cell := "—"
			if ok {
				cell = us(l[0]) + " / " + us(l[1])
			}
			fmt.Fprintf(w, " %21s", cell)
		}
		fmt.Fprintln(w)
	}
}

// latency runs the mix's operations one after another (one in flight,
// no pacing) for -duration: the c=1 latency of each kind.
func (e *env) latency() error {
	m, _ := parseMix(e.o.mixSpec)
	if m.has(kindStream) {
		return fmt.Errorf("-scenario latency: leave stream out of -mix (a held stream is not a request)")
	}
	r := rand.New(rand.NewPCG(5, 6))
	slots := make(chan struct{}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), e.o.duration)
	defer cancel()
	for range 200 { // warm-up: first-seen tokens, connections
		slots <- struct{}{}
		e.op(context.Background(), m.choose(r), slots, nil)
	}
	e.rec = newRecorder()
	e.d.rec = e.rec
	before := e.snap("before")
	var reqs int64
	for ctx.Err() == nil {
		kind := m.choose(r)
		slots <- struct{}{}
		e.op(context.Background(), kind, slots, nil)
		reqs++
		if kind == kindSession {
			reqs += int64(2 + e.o.callsPer)
		}
	}
	end := e.snap("end")
	e.cpuUS = cpuPerOp(before, end, reqs)
	e.rec.report(os.Stdout)
	return nil
}
