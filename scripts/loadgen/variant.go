package main

import (
	"fmt"
	"io"
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
	load    string  // /proc/loadavg at the start and the end of the run
	latency map[string][2]time.Duration
	costs   map[string]kindCost // latency scenario: per kind
}

// compared are the kinds whose p50/p99 the comparison shows.
var compared = []string{kindStateless, kindList, kindDPoP, kindSession + "/call", "sessions/call", "stdio/call", "hop/direct/call", "hop/forwarded/call"}

func (e *env) result(name string) result {
	r := result{name: name, cpuUS: e.cpuUS, load: e.loadStart + " → " + loadAvg(), latency: map[string][2]time.Duration{}, costs: e.costs}
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	for _, k := range compared {
		if ks := e.rec.kinds[k]; ks != nil && len(ks.samples) > 0 {
			s := slices.Clone(ks.samples)
			slices.Sort(s)
			r.latency[k] = [2]time.Duration{percentile(s, 50), percentile(s, 99)}
		}
	}
	return r
}

// loadAvg is the first three fields of /proc/loadavg (what uptime prints).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func printComparison(w io.Writer, rs []result) {
	fmt.Fprintf(w, "\n== side by side (CPU per request of the target process; p50 / p99 per kind)\n")
	fmt.Fprintf(w, "%-14s %5s %10s", "variant", "round", "cpu µs/req")
	var kinds []string
	for _, k := range compared {
		for _, r := range rs {
			if _, ok := r.latency[k]; ok {
				kinds = append(kinds, k)
				break
			}
		}
	}
	for _, k := range kinds {
		fmt.Fprintf(w, " %21s", k)
	}
	fmt.Fprintf(w, "  %s\n", "load average (start → end)")
	for _, r := range rs {
		fmt.Fprintf(w, "%-14s %5d %10.0f", r.name, r.round, r.cpuUS)
		for _, k := range kinds {
			l, ok := r.latency[k]
			cell := "—"
			if ok {
				cell = us(l[0]) + " / " + us(l[1])
			}
			fmt.Fprintf(w, " %21s", cell)
		}
		fmt.Fprintf(w, "  %s\n", r.load)
	}
	if rs[0].costs != nil {
		printCosts(w, rs)
	}
}
