package main

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestParseMixAndPick(t *testing.T) {
	m, err := parseMix("session=1, stateless=3,list=0,invalid=2")
	if err != nil {
		t.Fatal(err)
	}
	if m.total() != 6 || m.has(kindList) || !m.has(kindInvalid) {
		t.Fatalf("mix %+v: total %d", m, m.total())
	}
	// 0 → session, 1..3 → stateless, 4..5 → invalid: the boundaries
	want := []string{kindSession, kindStateless, kindStateless, kindStateless, kindInvalid, kindInvalid}
	for n, k := range want {
		if got := m.pick(n); got != k {
			t.Errorf("pick(%d) = %s, want %s", n, got, k)
		}
	}
}

func TestMixChooseFollowsWeights(t *testing.T) {
	m, _ := parseMix("stateless=1,dpop=9")
	r := rand.New(rand.NewPCG(7, 8))
	n := map[string]int{}
	for range 100000 {
		n[m.choose(r)]++
	}
	if f := float64(n[kindDPoP]) / 100000; f < 0.89 || f > 0.91 {
		t.Fatalf("dpop drawn %.3f of the time, want 0.9 ± 0.01 (%v)", f, n)
	}
}

func TestParseMixErrors(t *testing.T) {
	for spec, want := range map[string]string{
		"":                     "no kind with a positive weight",
		"session=0":            "no kind with a positive weight",
		"sesion=1":             "unknown kind",
		"session":              "want kind=weight",
		"session=-1":           "non-negative integer",
		"session=1.5":          "non-negative integer",
		"session=1,session=2":  "given twice",
		"stateless=1,stream=x": "non-negative integer",
	} {
		_, err := parseMix(spec)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseMix(%q) = %v, want an error with %q", spec, err, want)
		}
	}
}

func TestPacer(t *testing.T) {
	start := time.Unix(1000, 0)
	p := newPacer(start, 200) // every 5 ms
	if got := p.due(10).Sub(start); got != 50*time.Millisecond {
		t.Fatalf("due(10) = +%s, want +50ms", got)
	}
}

func TestPercentileNearestRank(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{50: 50 * time.Millisecond, 90: 90 * time.Millisecond,
		99: 99 * time.Millisecond, 100: 100 * time.Millisecond, 0.1: time.Millisecond} {
		if got := percentile(s, p); got != want {
			t.Errorf("p%v = %s, want %s", p, got, want)
		}
	}
	if got := percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("one sample: %s", got)
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("no samples: %s", got)
	}
	// p50 of 4 sorted values is the 2nd (nearest rank), not an interpolation
	if got := percentile([]time.Duration{1, 2, 3, 4}, 50); got != 2 {
		t.Errorf("p50 of 1..4 = %d, want 2", got)
	}
	// a fractional rank rounds up: p90 of 4 values is the 4th (rank 3.6)
	if got := percentile([]time.Duration{1, 2, 3, 4}, 90); got != 4 {
		t.Errorf("p90 of 1..4 = %d, want 4", got)
	}
}

func TestRecorderErrorsAndReservoir(t *testing.T) {
	r := newRecorder()
	for i := range maxSamples + 1000 {
		r.add("k", time.Duration(i), "")
	}
	r.add("k", time.Hour, "503")
	r.add("k", time.Hour, "503")
	k := r.kinds["k"]
	if len(k.samples) != maxSamples || k.count != maxSamples+1002 || k.errors["503"] != 2 {
		t.Fatalf("samples %d, count %d, errors %v", len(k.samples), k.count, k.errors)
	}
	if k.max != time.Duration(maxSamples+999) { // failures do not count into latency
		t.Fatalf("max = %s", k.max)
	}
	r.add("skipped (max streams)", 0, outcomeSkipped)
	if ops, errs := r.total(); ops != maxSamples+1002 || errs != 2 {
		t.Fatalf("total = %d ops, %d errors: a skip is neither", ops, errs)
	}
	var b strings.Builder
	r.report(&b)
	if !strings.Contains(b.String(), "503×2") {
		t.Fatalf("report lacks the errors by status:\n%s", b.String())
	}
}

const rollup = `55d0c0a1e000-7ffd1a1f5000 ---p 00000000 00:00 0                          [rollup]
Rss:               21468 kB
Pss:               20012 kB
Pss_Dirty:          3400 kB
Pss_Anon:           3300 kB
Pss_File:          16712 kB
Shared_Clean:       1500 kB
Shared_Dirty:          0 kB
Private_Clean:     16568 kB
Private_Dirty:      3400 kB
Referenced:        21468 kB
Anonymous:          3300 kB
Swap:                  0 kB
`

func TestParseSmapsRollup(t *testing.T) {
	m, err := parseSmapsRollup(strings.NewReader(rollup))
	if err != nil {
		t.Fatal(err)
	}
	if m != (memory{RSS: 21468, PSS: 20012, Private: 16568 + 3400, Anonymous: 3300}) {
		t.Fatalf("%+v", m)
	}
	if _, err := parseSmapsRollup(strings.NewReader("Pss: 1 kB\n")); err == nil {
		t.Fatal("a rollup without Rss read as zero memory")
	}
}

func TestParseStatCPU(t *testing.T) {
	// a command name with spaces and a ')' must not shift the fields
	stat := "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 130 0 0 20 0 9 0 100 0 0"
	d, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if d != 3800*time.Millisecond { // (250+130) ticks at 100 Hz
		t.Fatalf("cpu = %s, want 3.8s", d)
	}
	if _, err := parseStatCPU("4242 (x) S 1 2"); err == nil {
		t.Fatal("short stat accepted")
	}
}

func TestParseMetrics(t *testing.T) {
	text := "# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines 123\n" +
		"go_goroutines_extra 9\ngo_memstats_heap_inuse_bytes 4.194304e+06\ngo_memstats_stack_inuse_bytes 655360\n"
	g, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if g != (gauges{Goroutines: 123, HeapInuse: 4194304, StackInuse: 655360}) {
		t.Fatalf("%+v", g)
	}
	if _, err := parseMetrics(strings.NewReader("process_cpu_seconds_total 1\n")); err == nil {
		t.Fatal("metrics without go_goroutines accepted")
	}
}

func TestLeakCheck(t *testing.T) {
	flat := []float64{50, 90, 100, 101, 99, 100, 102, 98, 100, 101, 99, 100}
	if _, _, ok, err := leakCheck(flat, 2, 0.05, 0); err != nil || !ok {
		t.Fatalf("flat series after warm-up: ok=%v err=%v", ok, err)
	}
	// warm-up matters: counted in, the ramp would hide growth or fake it
	growing := []float64{100, 100, 100, 104, 108, 112, 116, 120, 124}
	first, last, ok, err := leakCheck(growing, 0, 0.10, 0)
	if err != nil || ok {
		t.Fatalf("growing series passed: %v → %v (err %v)", first, last, err)
	}
	if first != 100 || last != 120 {
		t.Fatalf("thirds: %v, %v", first, last)
	}
	// slack: +3 goroutines on a base of 10 is noise, not a leak
	small := []float64{10, 10, 10, 11, 12, 13, 13, 13, 13}
	if _, _, ok, _ := leakCheck(small, 0, 0.10, 8); !ok {
		t.Fatal("small absolute wobble failed the check")
	}
	if _, _, _, err := leakCheck(flat, 8, 0.1, 0); err == nil {
		t.Fatal("4 samples after warm-up compared")
	}
	if _, _, _, err := leakCheck(flat, 12, 0.1, 0); err == nil {
		t.Fatal("nothing after warm-up compared")
	}
}

func TestParseFlagsBounds(t *testing.T) {
	for _, args := range [][]string{
		{"-rate", "0"}, {"-rate", "1e9"}, {"-concurrency", "100000"}, {"-max-streams", "1000000"},
		{"-hold", "0"}, {"-scenario", "stdio", "-hold", "5000"}, {"-mix", "bogus=1"},
	} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
	if _, err := parseFlags([]string{"-scenario", "streams", "-hold", "10000"}); err != nil {
		t.Fatal(err)
	}
}

func TestConfigFitsTheScenario(t *testing.T) {
	o, _ := parseFlags([]string{"-scenario", "streams", "-hold", "10000", "-subjects", "1000"})
	c, err := configFor(o, "http://127.0.0.1:1", "http://127.0.0.1:2/mcp", "/bin/loadgen")
	if err != nil {
		t.Fatal(err)
	}
	// 10 per subject: a stream share below that would refuse with 429
	if c.StreamsPerSubject < 10 || c.MaxConnections < 20000 {
		t.Fatalf("%+v", c)
	}
	y := c.yaml()
	for _, want := range []string{"max_connections_per_address: -1", "disabled: true", "jwks_uri: http://127.0.0.1:1/jwks"} {
		if !strings.Contains(y, want) {
			t.Errorf("config lacks %q:\n%s", want, y)
		}
	}
}

func TestParseVariant(t *testing.T) {
	v, err := parseVariant("redis=--redis-url=redis://127.0.0.1:6379/0 --log-level=debug")
	if err != nil || v.name != "redis" || v.target != "gateway" || len(v.args) != 2 || v.args[0] != "--redis-url=redis://127.0.0.1:6379/0" {
		t.Fatalf("%+v %v", v, err)
	}
	if v, err := parseVariant("memory="); err != nil || len(v.args) != 0 || v.target != "gateway" {
		t.Fatalf("empty args: %+v %v", v, err)
	}
	if v, err := parseVariant("yardstick="); err != nil || v.target != "yardstick" {
		t.Fatalf("yardstick: %+v %v", v, err)
	}
	for _, bad := range []string{"memory", "=--x", "yardstick=--redis-url=x"} {
		if _, err := parseVariant(bad); err == nil {
			t.Errorf("parseVariant(%q) accepted", bad)
		}
	}
}

func TestRoundTripsFromCommandStats(t *testing.T) {
	info := "# Commandstats\r\ncmdstat_evalsha:calls=10,usec=5,usec_per_call=0.5,rejected_calls=0,failed_calls=1\r\n" +
		"cmdstat_set:calls=7,usec=1\r\ncmdstat_zadd:calls=4,usec=1\r\ncmdstat_hmget:calls=6,usec=1\r\n" +
		"cmdstat_pexpire:calls=12,usec=1\r\ncmdstat_pttl:calls=4,usec=1\r\ncmdstat_info:calls=3,usec=1\r\n" +
		"cmdstat_config|resetstat:calls=1,usec=1\r\ncmdstat_get:calls=2,usec=1\r\ncmdstat_exists:calls=4,usec=1\r\n"
	b := redisSample{calls: parseCommandStats(info)}
	if b.calls["evalsha"] != 10 || b.calls["config|resetstat"] != 1 {
		t.Fatalf("parsed %v", b.calls)
	}
	a := redisSample{calls: map[string]int64{"evalsha": 0, "info": 2}}
	total, by := roundTrips(a, redisSample{calls: b.calls})
	// evalsha 10 + get 2 + set 7-4 (the replay script's SETs) + pexpire 12-6-4
	// (the scripts' PEXPIREs); exists, zadd, hmget, pttl are inner commands,
	// info and config the generator's.
	want := map[string]int64{"evalsha": 10, "get": 2, "set": 3, "pexpire": 2}
	if total != 17 || len(by) != len(want) {
		t.Fatalf("round trips %d %v, want 17 %v", total, by, want)
	}
	for k, v := range want {
		if by[k] != v {
			t.Errorf("%s: %d, want %d", k, by[k], v)
		}
	}
}

func TestRedisPlaceholder(t *testing.T) {
	args := []string{"--redis-url={redis}", "--x"}
	if !usesRedis(args) || usesRedis([]string{"--redis-url=redis://h:1"}) {
		t.Fatal("usesRedis")
	}
	if got := withRedis(args, "redis://127.0.0.1:7/0"); got[0] != "--redis-url=redis://127.0.0.1:7/0" || got[1] != "--x" || args[0] != "--redis-url={redis}" {
		t.Fatalf("withRedis: %v (input %v)", got, args)
	}
}
