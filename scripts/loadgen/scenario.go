package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"
)

// snap samples the gateway and prints it with a label.
func (e *env) snap(label string) snapshot {
	s, err := sample(e.gw.pid, e.gw.metricsURL)
	if err != nil {
		fmt.Printf("%-8s sample failed: %v\n", label, err)
		return s
	}
	fmt.Printf("%-8s %s\n", label, s)
	return s
}

// quiesce closes the generator's idle keep-alive connections (each holds
// a goroutine and buffers in the gateway) and lets the gateway settle, so
// that a sample counts what is held open on purpose.
func (e *env) quiesce(maxWait time.Duration) {
	e.d.client.CloseIdleConnections()
	e.settle(maxWait)
}

// settle waits for the gateway's goroutine count to stop moving (streams
// and children end asynchronously), at most max.
func (e *env) settle(maxWait time.Duration) {
	last := -1.0
	for deadline := time.Now().Add(maxWait); time.Now().Before(deadline); time.Sleep(time.Second) {
		g, err := readGauges(e.gw.metricsURL)
		if err != nil {
			return
		}
		if g.Goroutines == last {
			return
		}
		last = g.Goroutines
	}
}

// cpuPerOp prints the gateway's CPU time per request between two samples.
func cpuPerOp(a, b snapshot, requests int64) float64 {
	if requests == 0 {
		return 0
	}
	cpu := b.CPU - a.CPU
	wall := b.At.Sub(a.At)
	fmt.Printf("target CPU: %.2f s over %.1f s (%.0f%% of one core); %d HTTP requests: %.0f µs CPU per request (10 ms clock ticks)\n",
		cpu.Seconds(), wall.Seconds(), 100*cpu.Seconds()/wall.Seconds(), requests, float64(cpu.Microseconds())/float64(requests))
	return float64(cpu.Microseconds()) / float64(requests)
}

// loop runs the open-loop mix until ctx ends: operations are due at the
// pacer's times, start only when a slot of -concurrency is free (else they
// are counted as skipped), and streams stay open -stream-hold, at most
// -max-streams at once.
func (e *env) loop(ctx context.Context) (requests int64) {
	m, _ := parseMix(e.o.mixSpec)
	r := rand.New(rand.NewPCG(1, 2))
	slots := make(chan struct{}, e.o.concurrency)
	streamSlots := make(chan struct{}, max(e.o.maxStreams, 1))
	p := newPacer(time.Now(), e.o.rate)
	var wg sync.WaitGroup
	var reqs sync.Mutex // guards requests
	count := func(n int64) { reqs.Lock(); requests += n; reqs.Unlock() }
	perOp := map[string]int64{kindSession: int64(3 + e.o.callsPer), kindStream: 4}
	for i := int64(0); ctx.Err() == nil; i++ {
		if wait := time.Until(p.due(i)); wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			if ctx.Err() != nil {
				break
			}
		}
		kind := m.choose(r)
		select {
		case slots <- struct{}{}:
		default:
			e.rec.add("skipped (max in-flight)", 0, outcomeSkipped)
			continue
		}
		if kind == kindStream {
			select {
			case streamSlots <- struct{}{}:
			default:
				<-slots
				e.rec.add("skipped (max streams)", 0, outcomeSkipped)
				continue
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := int64(1)
			if c, ok := perOp[kind]; ok {
				n = c
			}
			count(n)
			e.op(ctx, kind, slots, streamSlots)
		}()
	}
	wg.Wait()
	return requests
}

// op runs one operation of kind; it frees its in-flight slot when its
// requests are done (a stream frees its stream slot when it is closed).
func (e *env) op(ctx context.Context, kind string, slots, streamSlots chan struct{}) {
	rctx := context.WithoutCancel(ctx) // an operation in flight finishes even at the end of the run
	switch kind {
	case kindSession:
		e.d.timed(kindSession, func() string { return e.d.sessionOp(rctx) })
	case kindStateless:
		e.d.timed(kindStateless, func() string { return e.d.stateless(rctx) })
	case kindList:
		e.d.timed(kindList, func() string { return e.d.list(rctx) })
	case kindDPoP:
		e.d.timed(kindDPoP, func() string { return e.d.dpopCall(rctx) })
	case kindInvalid:
		e.d.timed(kindInvalid, func() string { return e.d.invalidCall(rctx) })
	case kindStream:
		defer func() { <-streamSlots }()
		s, o := e.d.open(rctx, kindStream, "/mcp", e.d.subject())
		var st stream
		if o == "" {
			st, o = e.d.openStream(s)
		}
		<-slots
		slots = nil
		if o == "" {
			select {
			case <-ctx.Done():
			case <-time.After(e.o.streamHold):
			}
			st.close()
			e.d.end(rctx, kindStream, s)
		}
		return
	}
	<-slots
}

// every runs f each period until stop is called; stop returns once f has
// run for the last time, so nothing samples after the caller moves on.
func every(period time.Duration, f func()) (stop func()) {
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				f()
			}
		}
	}()
	return func() { close(done); <-exited }
}

// mix runs the load for -duration and reports.
func (e *env) mix() error {
	before := e.snap("before")
	ctx, cancel := context.WithTimeout(context.Background(), e.o.duration)
	defer cancel()
	stop := every(e.o.sampleEvery, func() { e.snap("during") })
	reqs := e.loop(ctx)
	stop()
	end := e.snap("end")
	e.cpuUS = cpuPerOp(before, end, reqs)
	e.quiesce(30 * time.Second)
	e.snap("after")
	e.rec.report(os.Stdout)
	return nil
}

// soak is the mix with samples to a CSV and a leak check at the end.
func (e *env) soak() (bool, error) {
	path := e.o.csvPath
	if path == "" {
		path = "soak-" + time.Now().UTC().Format("20060102T150405") + ".csv"
	}
	f, err := os.Create(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	w := csv.NewWriter(f)
	w.Write(csvHeader)
	start := time.Now()
	var samples []snapshot
	var mu sync.Mutex // guards samples
	take := func() {
		s, err := sample(e.gw.pid, e.gw.metricsURL)
		if err != nil {
			fmt.Println("sample failed:", err)
			return
		}
		ops, errs := e.rec.total()
		writeCSVRow(w, start, s, ops, errs)
		mu.Lock()
		samples = append(samples, s)
		mu.Unlock()
		fmt.Printf("%6.0fs %s; ops %d, errors %d\n", s.At.Sub(start).Seconds(), s, ops, errs)
	}
	take()
	ctx, cancel := context.WithTimeout(context.Background(), e.o.duration)
	defer cancel()
	stop := every(e.o.sampleEvery, take)
	reqs := e.loop(ctx)
	stop()
	mu.Lock()
	underLoad := slices.Clone(samples) // the leak check compares samples under load only
	mu.Unlock()
	take() // after the load: in the CSV, not in the comparison
	e.cpuUS = cpuPerOp(underLoad[0], underLoad[len(underLoad)-1], reqs)
	e.rec.report(os.Stdout)
	warm := int(e.o.warmup / e.o.sampleEvery)
	fmt.Printf("samples under load: %d every %s to %s; warm-up %d samples; tolerance +%.0f%%\n", len(underLoad), e.o.sampleEvery, path, warm, 100*e.o.tolerance)
	return verdict(os.Stdout, underLoad, warm, e.o.tolerance), nil
}

// parallel runs f(i) for i in [0, n) on at most -concurrency goroutines.
func (e *env) parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, min(e.o.concurrency, max(runtime.NumCPU()*16, 32)))
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() { defer wg.Done(); defer func() { <-sem }(); f(i) }()
	}
	wg.Wait()
}

func perUnit(a, b snapshot, n int) string {
	f := func(x, y int64) float64 { return float64(y-x) / float64(n) }
	return fmt.Sprintf("private %.1f KiB, PSS %.1f KiB, RSS %.1f KiB, heap in use %.1f KiB, stacks %.1f KiB, goroutines %.2f",
		f(a.Mem.Private, b.Mem.Private), f(a.Mem.PSS, b.Mem.PSS), f(a.Mem.RSS, b.Mem.RSS),
		(b.G.HeapInuse-a.G.HeapInuse)/1024/float64(n), (b.G.StackInuse-a.G.StackInuse)/1024/float64(n),
		(b.G.Goroutines-a.G.Goroutines)/float64(n))
}

// callsWhileOpen sends tools/call requests at -rate for -duration, each on
// a random held session, and reports their latency.
func (e *env) callsWhileOpen(kind string, sess []session) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), e.o.duration)
	defer cancel()
	r := rand.New(rand.NewPCG(3, 4))
	slots := make(chan struct{}, e.o.concurrency)
	p := newPacer(time.Now(), e.o.rate)
	var wg sync.WaitGroup
	var n int64
	for i := int64(0); ctx.Err() == nil; i++ {
		if wait := time.Until(p.due(i)); wait > 0 {
			time.Sleep(wait)
		}
		s := sess[r.IntN(len(sess))]
		select {
		case slots <- struct{}{}:
		default:
			e.rec.add("skipped (max in-flight)", 0, outcomeSkipped)
			continue
		}
		n++
		wg.Add(1)
		go func() { defer wg.Done(); defer func() { <-slots }(); e.d.call(context.Background(), kind, s) }()
	}
	wg.Wait()
	return n
}

// holdSessions opens -hold sessions on path, measures the gateway (and its
// children for stdio), sends calls among them, deletes them all and
// measures again.
func (e *env) holdSessions(path, kind string) error {
	e.quiesce(5 * time.Second)
	base := e.snap("before")
	redisBase := e.redisMemory()
	sess := make([]session, e.o.hold)
	ok := make([]bool, e.o.hold)
	e.parallel(e.o.hold, func(i int) {
		var o string
		sess[i], o = e.d.open(context.Background(), kind, path, i)
		ok[i] = o == ""
	})
	var open []session
	for i, s := range sess {
		if ok[i] {
			open = append(open, s)
		}
	}
	if len(open) == 0 {
		e.rec.report(os.Stdout)
		return fmt.Errorf("no %s session opened", kind)
	}
	e.quiesce(10 * time.Second)
	held := e.snap("held")
	fmt.Printf("per session (%s, %d open): %s%s\n", kind, len(open), perUnit(base, held, len(open)), e.redisPer(redisBase, len(open)))
	if kind == "stdio" {
		fmt.Printf("children: %d, together %s; per session with its child: PSS %.1f KiB, private %.1f KiB\n", held.Kids, held.Children,
			float64(held.Mem.PSS-base.Mem.PSS+held.Children.PSS)/float64(len(open)),
			float64(held.Mem.Private-base.Mem.Private+held.Children.Private)/float64(len(open)))
	}
	calls := e.callsWhileOpen(kind, open)
	end := e.snap("calls")
	e.cpuUS = cpuPerOp(held, end, calls)
	e.parallel(len(open), func(i int) { e.d.end(context.Background(), kind, open[i]) })
	e.quiesce(30 * time.Second)
	e.snap("after")
	e.rec.report(os.Stdout)
	return nil
}

// holdStreams opens -hold sessions, then one idle GET stream on each: the
// difference between the two samples is the cost of the streams alone.
// Then it closes the streams and checks that goroutines return.
func (e *env) holdStreams() error {
	e.quiesce(5 * time.Second)
	base := e.snap("before")
	redisBase := e.redisMemory()
	sess := make([]session, e.o.hold)
	ok := make([]bool, e.o.hold)
	e.parallel(e.o.hold, func(i int) {
		var o string
		sess[i], o = e.d.open(context.Background(), kindStream, "/mcp", i)
		ok[i] = o == ""
	})
	var open []session
	for i, s := range sess {
		if ok[i] {
			open = append(open, s)
		}
	}
	e.quiesce(10 * time.Second)
	withSessions := e.snap("sessions")
	fmt.Printf("per session (%d open, no stream): %s%s\n", len(open), perUnit(base, withSessions, len(open)), e.redisPer(redisBase, len(open)))
	streams := make([]stream, len(open))
	sok := make([]bool, len(open))
	e.parallel(len(open), func(i int) {
		var o string
		streams[i], o = e.d.openStream(open[i])
		sok[i] = o == ""
	})
	n := 0
	for _, k := range sok {
		if k {
			n++
		}
	}
	e.quiesce(10 * time.Second)
	held := e.snap("streams")
	fmt.Printf("per idle stream (%d open; upstream holds %s): %s\n", n, e.up.openStreams(), perUnit(withSessions, held, max(n, 1)))
	for i, s := range streams {
		if sok[i] {
			s.close()
		}
	}
	e.quiesce(30 * time.Second)
	closed := e.snap("closed")
	fmt.Printf("after closing the streams: goroutines %+.0f against the sessions-only sample; upstream streams open: %s\n",
		closed.G.Goroutines-withSessions.G.Goroutines, e.up.openStreams())
	e.parallel(len(open), func(i int) { e.d.end(context.Background(), kindStream, open[i]) })
	e.quiesce(30 * time.Second)
	e.snap("after")
	e.awaitRelease(base)
	e.rec.report(os.Stdout)
	return nil
}

// awaitRelease samples the idle gateway every 15 s for up to -release-wait
// until its heap in use is back within 8 MiB of base: freed memory is
// reused at once but counted as in use until a GC runs (an idle process
// collects at least every 2 minutes), and private memory follows as the
// scavenger returns the freed pages to the OS, gradually.
func (e *env) awaitRelease(base snapshot) {
	deadline := time.Now().Add(e.o.releaseWait)
	for time.Now().Before(deadline) {
		time.Sleep(15 * time.Second)
		s := e.snap("release")
		if s.G.HeapInuse <= base.G.HeapInuse+8<<20 {
			fmt.Printf("released: heap in use %s (base %s), private %s (base %s), goroutines %.0f (base %.0f)\n",
				kib(int64(s.G.HeapInuse/1024)), kib(int64(base.G.HeapInuse/1024)), kib(s.Mem.Private), kib(base.Mem.Private), s.G.Goroutines, base.G.Goroutines)
			return
		}
	}
	fmt.Printf("not back within %s: heap in use still above base + 8 MiB\n", e.o.releaseWait)
}

// redisMemory is the variant's Redis used_memory, 0 without one.
func (e *env) redisMemory() int64 {
	if e.redis == nil {
		return 0
	}
	return e.redis.usedMemory()
}

// redisPer is Redis's memory growth since base per unit, "" without Redis.
func (e *env) redisPer(base int64, n int) string {
	if e.redis == nil {
		return ""
	}
	return fmt.Sprintf("; Redis used_memory %+.2f KiB each", float64(e.redis.usedMemory()-base)/1024/float64(max(n, 1)))
}
