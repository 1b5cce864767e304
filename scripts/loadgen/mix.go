package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kinds of work the generator sends. Each is one "operation" whose latency
// is recorded: a session is initialize + calls + DELETE as one operation
// (its requests are also recorded one by one under session/*).
const (
	kindSession   = "session"   // 2025-11-25: initialize, initialized, calls, DELETE
	kindStateless = "stateless" // 2026-07-28 tools/call, no session
	kindList      = "list"      // 2026-07-28 tools/list
	kindStream    = "stream"    // 2025-11-25 session + idle GET stream held open
	kindDPoP      = "dpop"      // 2026-07-28 tools/call with a DPoP-bound token and a fresh proof
	kindInvalid   = "invalid"   // a token with a bad signature: the 401 path
)

var allKinds = []string{kindSession, kindStateless, kindList, kindStream, kindDPoP, kindInvalid}

// mix is a weighted choice among kinds.
type mix struct {
	kinds []string
	cum   []int // cumulative weights, same order as kinds
}

// parseMix reads "session=1,stateless=4,...". Unknown kinds, negative or
// non-integer weights and an all-zero mix are errors that say what to fix.
func parseMix(s string) (mix, error) {
	var m mix
	total := 0
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return mix{}, fmt.Errorf("mix entry %q: want kind=weight (kinds: %s)", part, strings.Join(allKinds, ", "))
		}
		if !slices.Contains(allKinds, k) {
			return mix{}, fmt.Errorf("mix: unknown kind %q (kinds: %s)", k, strings.Join(allKinds, ", "))
		}
		if seen[k] {
			return mix{}, fmt.Errorf("mix: kind %q given twice", k)
		}
		seen[k] = true
		w, err := strconv.Atoi(v)
		if err != nil || w < 0 {
			return mix{}, fmt.Errorf("mix: weight of %q must be a non-negative integer, got %q", k, v)
		}
		if w == 0 {
			continue
		}
		total += w
		m.kinds = append(m.kinds, k)
		m.cum = append(m.cum, total)
	}
	if total == 0 {
		return mix{}, fmt.Errorf("mix %q has no kind with a positive weight", s)
	}
	return m, nil
}

// pick maps a number in [0, total) to its kind.
func (m mix) pick(n int) string {
	i, _ := slices.BinarySearch(m.cum, n+1)
	return m.kinds[i]
}

func (m mix) total() int { return m.cum[len(m.cum)-1] }

// choose draws a kind with its weight's probability.
func (m mix) choose(r *rand.Rand) string { return m.pick(r.IntN(m.total())) }

// has reports whether kind has a positive weight.
func (m mix) has(kind string) bool { return slices.Contains(m.kinds, kind) }

// pacer spaces operations at a fixed rate from start (open loop): the i-th
// operation is due at start + i/rate, whatever happened to earlier ones, so
// a slow gateway shows up as latency and refused starts, not as a lower
// offered rate.
type pacer struct {
	start time.Time
	every time.Duration
}

func newPacer(start time.Time, rate float64) pacer {
	return pacer{start: start, every: time.Duration(float64(time.Second) / rate)}
}

// due is when operation i starts.
func (p pacer) due(i int64) time.Time { return p.start.Add(time.Duration(i) * p.every) }
