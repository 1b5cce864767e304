package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"sync"
	"time"
)

// maxSamples bounds the latencies kept per kind (reservoir beyond it), so a
// long soak does not grow the generator's own memory.
const maxSamples = 200_000

// outcomeSkipped marks an operation the generator did not start because
// one of its own bounds (-concurrency, -max-streams) was reached.
const outcomeSkipped = "skipped"

// recorder collects latencies and outcomes per kind.
type recorder struct {
	mu    sync.Mutex // guards kinds
	kinds map[string]*kindStats
	seed  uint64
}

type kindStats struct {
	count   int64
	errors  map[string]int64 // "401", "503", "conn: ..." → count
	samples []time.Duration
	seen    int64 // samples offered (for the reservoir)
	max     time.Duration
}

func newRecorder() *recorder {
	return &recorder{kinds: map[string]*kindStats{}, seed: 0x9e3779b97f4a7c15}
}

// add records one operation; outcome "" is success.
func (r *recorder) add(kind string, d time.Duration, outcome string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.kinds[kind]
	if k == nil {
		k = &kindStats{errors: map[string]int64{}}
		r.kinds[kind] = k
	}
	k.count++
	if outcome != "" {
		k.errors[outcome]++
		return
	}
	k.max = max(k.max, d)
	k.seen++
	if len(k.samples) < maxSamples {
		k.samples = append(k.samples, d)
		return
	}
	// reservoir sampling (xorshift: cheap, deterministic)
	r.seed ^= r.seed << 13
	r.seed ^= r.seed >> 7
	r.seed ^= r.seed << 17
	if j := int64(r.seed % uint64(k.seen)); j < maxSamples {
		k.samples[j] = d
	}
}

// percentile is the nearest-rank percentile (p in (0,100]) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// total returns operations and errors over every kind; operations the
// generator skipped itself (its own bounds) are neither.
func (r *recorder) total() (ops, errs int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range r.kinds {
		for o, n := range k.errors {
			if o == outcomeSkipped {
				ops -= n
				continue
			}
			errs += n
		}
		ops += k.count
	}
	return
}

// report prints one row per kind: count, errors by outcome, percentiles.
func (r *recorder) report(w io.Writer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.kinds))
	for n := range r.kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "%-22s %8s %7s %9s %9s %9s %9s  %s\n", "kind", "count", "errors", "p50", "p90", "p99", "max", "errors by status")
	for _, n := range names {
		k := r.kinds[n]
		s := slices.Clone(k.samples)
		slices.Sort(s)
		var nerr int64
		for _, c := range k.errors {
			nerr += c
		}
		fmt.Fprintf(w, "%-22s %8d %7d %9s %9s %9s %9s  %s\n", n, k.count, nerr,
			us(percentile(s, 50)), us(percentile(s, 90)), us(percentile(s, 99)), us(k.max), errorList(k.errors))
	}
}

func errorList(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := ""
	for _, k := range keys {
		out += fmt.Sprintf("%s×%d ", k, m[k])
	}
	return out
}

func us(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%dµs", d.Microseconds())
	}
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}
