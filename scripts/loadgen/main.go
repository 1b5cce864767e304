// Command loadgen drives a running `mcpgate serve` over loopback with a
// configurable, bounded mix of MCP traffic and measures the gateway
// process: latency per kind, errors by status, CPU time per request, RSS,
// PSS and private memory (/proc/<pid>/smaps_rollup) and goroutines (the
// gateway's /metrics), before, during and after the load.
//
// It starts everything it needs on loopback: an issuer whose JWKS the
// gateway trusts (ES256 tokens per subject, DPoP-bound ones, and tokens
// signed by an unpublished key for the 401 path), a cheap Streamable HTTP
// MCP server, itself as a stdio MCP server (-stdio-server), and the
// gateway binary with a generated configuration (or, with -target
// yardstick, a bare httputil.ReverseProxy; extra serve flags with
// -gateway-arg, e.g. --redis-url, so that the same load runs against each
// state backend; -variant runs several side by side). Scenarios:
//
//	mix       open-loop load at -rate for -duration with -mix weights
//	latency   the mix's operations one at a time (c=1, closed loop) for -duration
//	sessions  hold -hold 2025-11-25 sessions open; calls among them; DELETE all
//	streams   hold -hold sessions each with an idle GET stream; close; compare
//	stdio     hold -hold stdio sessions (one child each); calls; DELETE all
//	soak      mix, sampling every -sample-every to -csv, then a leak check
//	hop       two replicas on one Redis: stdio calls straight to the owner vs through the other
//
// Examples (see docs/performance.md):
//
//	go run ./scripts/loadgen -gateway bin/mcpgate -scenario mix -rate 300 -duration 60s
//	go run ./scripts/loadgen -gateway bin/mcpgate -scenario streams -hold 10000
//	go run ./scripts/loadgen -gateway bin/mcpgate -scenario soak -duration 30m -csv soak.csv
//	go run ./scripts/loadgen -scenario latency -mix stateless=1 -rounds 3 \
//	    -variant memory= -variant 'redis=--redis-url=redis://127.0.0.1:6379/0' -variant yardstick=
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// options are the command line.
type options struct {
	gateway, target, scenario, mixSpec string
	csvPath, redisServer               string
	gatewayArgs, variantSpecs          multiFlag
	variants                           []variant
	rounds                             int
	rate                               float64
	concurrency, maxStreams            int
	hold, subjects, callsPer           int
	duration, streamHold, sampleEvery  time.Duration
	releaseWait                        time.Duration
	warmup                             time.Duration
	tolerance                          float64
	audit                              bool
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// Hard ceilings: a mistyped flag must not exhaust the machine.
const (
	ceilingInFlight = 2048
	ceilingStreams  = 20000
	ceilingHold     = 20000
	ceilingRate     = 20000
)

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&o.gateway, "gateway", "bin/mcpgate", "mcpgate binary to start")
	fs.StringVar(&o.target, "target", "gateway", "gateway, or yardstick: a bare httputil.ReverseProxy process in front of the same upstream (no auth; the invalid kind then fails by design)")
	fs.Var(&o.gatewayArgs, "gateway-arg", "extra argument to `mcpgate serve` (repeatable), e.g. --redis-url=redis://127.0.0.1:6379/0")
	fs.Var(&o.variantSpecs, "variant", "NAME=ARGS (repeatable): run the scenario once per variant, alternated -rounds times, and print them side by side; ARGS are extra serve arguments, NAME yardstick is the bare reverse proxy. E.g. -variant memory= -variant 'redis=--redis-url=redis://127.0.0.1:6379/0'")
	fs.IntVar(&o.rounds, "rounds", 1, "rounds of the variants")
	fs.StringVar(&o.redisServer, "redis-server", "redis-server", "redis-server binary started (once, on a free loopback port, no persistence) when an argument holds "+redisPlaceholder+", which becomes its URL; each run starts from an empty database and zeroed INFO commandstats")
	fs.StringVar(&o.scenario, "scenario", "mix", "mix | latency | sessions | streams | stdio | soak | hop")
	fs.StringVar(&o.mixSpec, "mix", "session=1,stateless=4,list=2,stream=1,dpop=1,invalid=1", "kind=weight list")
	fs.Float64Var(&o.rate, "rate", 200, "operations started per second (open loop)")
	fs.IntVar(&o.concurrency, "concurrency", 64, "maximum requests in flight; a due operation beyond it is skipped and counted")
	fs.IntVar(&o.maxStreams, "max-streams", 200, "maximum idle streams the mix holds at once")
	fs.IntVar(&o.hold, "hold", 1000, "sessions/streams/children held open (sessions, streams, stdio)")
	fs.IntVar(&o.subjects, "subjects", 100, "distinct token subjects (per-subject limits are raised to fit)")
	fs.IntVar(&o.callsPer, "calls-per-session", 3, "tools/call requests in each session of the mix")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "load phase (mix, soak; calls while held in the others)")
	fs.DurationVar(&o.streamHold, "stream-hold", 20*time.Second, "how long the mix keeps each idle stream open")
	fs.DurationVar(&o.sampleEvery, "sample-every", 10*time.Second, "sampling interval of the gateway process")
	fs.DurationVar(&o.releaseWait, "release-wait", 4*time.Minute, "streams: how long to sample the idle gateway after the streams and sessions ended, until its heap is back near the start")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Minute, "soak: samples in this first part are not compared")
	fs.Float64Var(&o.tolerance, "tolerance", 0.10, "soak: allowed growth of the last third's mean over the first third's")
	fs.StringVar(&o.csvPath, "csv", "", "soak: CSV file of the samples (default soak-<time>.csv)")
	fs.BoolVar(&o.audit, "audit", false, "keep the gateway's audit log on (to a file in its directory)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case o.rate <= 0 || o.rate > ceilingRate:
		return o, fmt.Errorf("-rate must be in (0, %d]", ceilingRate)
	case o.concurrency < 1 || o.concurrency > ceilingInFlight:
		return o, fmt.Errorf("-concurrency must be in [1, %d]", ceilingInFlight)
	case o.maxStreams < 0 || o.maxStreams > ceilingStreams:
		return o, fmt.Errorf("-max-streams must be in [0, %d]", ceilingStreams)
	case o.hold < 1 || o.hold > ceilingHold:
		return o, fmt.Errorf("-hold must be in [1, %d]", ceilingHold)
	case o.subjects < 1 || o.subjects > 10000:
		return o, fmt.Errorf("-subjects must be in [1, 10000]")
	case o.scenario == "stdio" && o.hold > 500:
		return o, fmt.Errorf("-hold %d stdio children is more than 500 processes: lower it", o.hold)
	}
	if _, err := parseMix(o.mixSpec); err != nil {
		return o, err
	}
	if o.rounds < 1 || o.rounds > 20 {
		return o, fmt.Errorf("-rounds must be in [1, 20]")
	}
	for _, spec := range o.variantSpecs {
		v, err := parseVariant(spec)
		if err != nil {
			return o, err
		}
		o.variants = append(o.variants, v)
	}
	return o, nil
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "-stdio-server" {
		stdioServer()
		return
	}
	if len(os.Args) == 3 && os.Args[1] == "-yardstick-server" {
		serveYardstick(os.Args[2])
		return
	}
	if len(os.Args) == 2 && os.Args[1] == "-upstream-server" {
		serveUpstream()
		return
	}
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	ok, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(3)
	}
}

// env is what a scenario works with.
type env struct {
	o     options
	gw    *gateway
	is    *issuer
	up    *upstreamProc
	d     *driver
	rec   *recorder
	cpuUS float64    // the target's CPU per request in the measured phase
	redis *redisProc // the variant's Redis, nil when it uses none
	peer  *gateway   // the hop scenario's second replica
	costs map[string]kindCost
	// loadStart is /proc/loadavg when the run started.
	loadStart string
}

func run(o options) (bool, error) {
	fds := raiseFileLimit(200_000)
	is, err := startIssuer()
	if err != nil {
		return false, err
	}
	self, err := os.Executable()
	if err != nil {
		return false, err
	}
	up, err := startUpstream(self)
	if err != nil {
		return false, err
	}
	defer up.cmd.Process.Kill()
	vs := o.variants
	if len(vs) == 0 {
		vs = []variant{{name: o.target, target: o.target, args: o.gatewayArgs}}
	}
	var rp *redisProc
	for _, v := range vs {
		if usesRedis(v.args) && rp == nil {
			dir, err := os.MkdirTemp("", "loadgen-redis")
			if err != nil {
				return false, err
			}
			defer os.RemoveAll(dir)
			if rp, err = startRedis(o.redisServer, dir); err != nil {
				return false, err
			}
			defer rp.stop()
			fmt.Printf("loadgen: redis-server pid %d at %s\n", rp.cmd.Process.Pid, rp.url)
		}
	}
	pass := true
	var results []result
	for round := 1; round <= o.rounds; round++ {
		for _, v := range vs { // alternated, so that machine drift spreads over all variants
			fmt.Printf("\n=== %s, round %d of %d\n", v.name, round, o.rounds)
			r, ok, err := runOne(o, v, is, up, self, fds, rp)
			if err != nil {
				return false, fmt.Errorf("%s: %w", v.name, err)
			}
			r.round = round
			results = append(results, r)
			pass = pass && ok
		}
	}
	if len(results) > 1 {
		printComparison(os.Stdout, results)
	}
	return pass, nil
}

// runOne starts the variant's target, runs the scenario against it, and
// stops it.
func runOne(o options, v variant, is *issuer, up *upstreamProc, self string, fds uint64, rp *redisProc) (result, bool, error) {
	loadStart := loadAvg()
	cfg, err := configFor(o, is.url, up.url, self)
	if err != nil {
		return result{}, false, err
	}
	if !usesRedis(v.args) {
		rp = nil
	} else {
		if err := rp.reset(); err != nil {
			return result{}, false, fmt.Errorf("redis reset: %w", err)
		}
		v.args = withRedis(v.args, rp.url)
	}
	var gw, peer *gateway
	switch v.target {
	case "gateway":
		bin, _ := filepath.Abs(o.gateway)
		var peerCfg gatewayConfig
		if o.scenario == "hop" && rp != nil {
			if peerCfg, err = replicaConfigs(&cfg); err != nil {
				return result{}, false, err
			}
		}
		gw, err = startGateway(bin, cfg, v.args)
		if err == nil && peerCfg.Listen != "" {
			if peer, err = startGateway(bin, peerCfg, v.args); err != nil {
				gw.stop()
			} else {
				defer peer.stop()
			}
		}
	case "yardstick":
		gw, err = startYardstick(self, up.url)
	default:
		err = fmt.Errorf("-target must be gateway or yardstick, not %q", v.target)
	}
	if err != nil {
		return result{}, false, err
	}
	defer gw.stop()
	fmt.Printf("loadgen: scenario %s; %s pid %d at %s (args %q); RLIMIT_NOFILE %d; max_connections asked %d (the gateway lowers it to (RLIMIT_NOFILE-64)/2)\n",
		o.scenario, v.target, gw.pid, gw.url, v.args, fds, cfg.MaxConnections)
	rec := newRecorder()
	d := newDriver(gw.url, o.concurrency, rec)
	d.callsPer = o.callsPer
	if err := mintTokens(d, is, gw.url+"/mcp", gw.url+"/stdio/mcp", o.subjects); err != nil {
		return result{}, false, err
	}
	e := &env{o: o, gw: gw, peer: peer, is: is, up: up, d: d, rec: rec, redis: rp, loadStart: loadStart}
	ok := true
	switch o.scenario {
	case "mix":
		err = e.mix()
	case "latency":
		err = e.latency()
	case "soak":
		ok, err = e.soak()
	case "sessions":
		err = e.holdSessions("/mcp", "sessions")
	case "stdio":
		err = e.holdSessions("/stdio/mcp", "stdio")
	case "streams":
		err = e.holdStreams()
	case "hop":
		err = e.hop()
	default:
		err = fmt.Errorf("unknown -scenario %q (mix, latency, sessions, streams, stdio, soak, hop)", o.scenario)
	}
	return e.result(v.name), ok, err
}

// configFor sizes the gateway's limits for the scenario: per-subject
// shares to fit -hold over -subjects, and connection caps above what the
// scenario opens (the defaults, 2048 and 128 per address, would refuse
// 10,000 loopback streams by design).
func configFor(o options, issuerURL, upstreamURL, self string) (gatewayConfig, error) {
	listen, err := freePort()
	if err != nil {
		return gatewayConfig{}, err
	}
	metrics, err := freePort()
	if err != nil {
		return gatewayConfig{}, err
	}
	perSubject := (max(o.hold, o.maxStreams) + o.subjects - 1) / o.subjects
	stdio := max(o.hold, 16) + 10
	if o.scenario != "stdio" && o.scenario != "hop" {
		stdio = 32
	}
	return gatewayConfig{Listen: listen, Metrics: metrics, IssuerURL: issuerURL, UpstreamURL: upstreamURL, StdioCommand: self,
		StreamsPerSubject: perSubject + 16, HTTPSessionsPerSubject: max(1024, 2*perSubject),
		StdioSessions: stdio, StdioPerSubject: min(perSubject+2, stdio/2),
		MaxConnections: max(2048, 2*o.hold+o.concurrency+256, 2*o.maxStreams+o.concurrency+256), Audit: o.audit}, nil
}

// mintTokens gives the driver one Bearer and one DPoP-bound token per
// subject (audience: the HTTP mount; stdio sessions use the stdio one),
// and one invalid token.
func mintTokens(d *driver, is *issuer, aud, stdioAud string, n int) error {
	key, err := newDPoPKey()
	if err != nil {
		return err
	}
	d.key = key
	for i := range n {
		t, err := is.token(fmt.Sprintf("user-%d", i), aud, "", 2*time.Hour, true)
		if err != nil {
			return err
		}
		d.tokens = append(d.tokens, t)
		dt, _ := is.token(fmt.Sprintf("dpop-user-%d", i), aud, key.jkt, 2*time.Hour, true)
		d.dpopTokens = append(d.dpopTokens, dt)
		st, _ := is.token(fmt.Sprintf("user-%d", i), stdioAud, "", 2*time.Hour, true)
		d.stdioTokens = append(d.stdioTokens, st)
	}
	d.invalid, err = is.token("intruder", aud, "", time.Hour, false)
	return err
}
