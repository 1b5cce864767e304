package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// The hop scenario: two replicas on one Redis (state.replica configured on
// both, one shared key), stdio sessions whose children run on the first
// (A). Calls for them go alternately, in phases, straight to A and to the
// second replica (B), which finds A in the shared directory and forwards
// each request there with a signed hop: the difference is what a request
// costs when the load balancer sends it to a replica that does not own
// its session (docs/deployment.md: affinity on Mcp-Session-Id avoids it).

// replicaConfigs turns cfg into replica A's configuration and returns B's.
func replicaConfigs(cfg *gatewayConfig) (gatewayConfig, error) {
	dir, err := os.MkdirTemp("", "loadgen-hop")
	if err != nil {
		return gatewayConfig{}, err
	}
	key := make([]byte, 32)
	rand.Read(key)
	secret := filepath.Join(dir, "replica.key")
	if err := os.WriteFile(secret, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return gatewayConfig{}, err
	}
	b := *cfg
	if b.Listen, err = freePort(); err != nil {
		return gatewayConfig{}, err
	}
	if b.Metrics, err = freePort(); err != nil {
		return gatewayConfig{}, err
	}
	cfg.PublicURL = "http://" + cfg.Listen
	cfg.AllowedHosts = []string{cfg.Listen, b.Listen}
	cfg.ReplicaSecretFile = secret
	cfg.AdvertiseURL = "http://" + cfg.Listen
	b.PublicURL, b.AllowedHosts, b.ReplicaSecretFile = cfg.PublicURL, cfg.AllowedHosts, secret
	b.AdvertiseURL = "http://" + b.Listen
	return b, nil
}

// hop opens -hold (at most 50) stdio sessions on A and times tools/call
// requests for them, one in flight, alternating phases of phaseOps calls
// sent to A (hop/direct) and to B (hop/forwarded). CPU per request is A's
// plus B's; Redis round trips are both replicas'.
func (e *env) hop() error {
	if e.peer == nil {
		return fmt.Errorf("-scenario hop needs Redis: give --redis-url={redis} (-gateway-arg or -variant)")
	}
	n := min(e.o.hold, 50)
	var open []session
	for i := range n {
		s, o := e.d.open(context.Background(), "hop", "/stdio/mcp", i)
		if o != "" {
			e.rec.report(os.Stdout)
			return fmt.Errorf("stdio session %d on replica A: %s", i, o)
		}
		open = append(open, s)
	}
	viaB := newDriver(e.peer.url, 1, e.rec)
	viaB.stdioTokens = e.d.stdioTokens
	for i := range 100 { // warm-up: connections, the directory lookups, first hops
		e.d.call(context.Background(), "warm-up", open[i%len(open)])
		viaB.call(context.Background(), "warm-up", open[i%len(open)])
	}
	e.rec = newRecorder()
	e.d.rec, viaB.rec = e.rec, e.rec
	e.costs = map[string]kindCost{}
	deadline := time.Now().Add(e.o.duration)
	for i := 0; time.Now().Before(deadline); {
		for _, p := range []struct {
			kind string
			d    *driver
		}{{"hop/direct", e.d}, {"hop/forwarded", viaB}} {
			a := e.costSample()
			for range phaseOps {
				p.d.call(context.Background(), p.kind, open[i%len(open)])
				i++
			}
			e.addCost(p.kind, a, e.costSample(), phaseOps)
		}
	}
	var reqs int64
	var cpu time.Duration
	for _, c := range e.costs {
		reqs, cpu = reqs+c.requests, cpu+c.cpu
	}
	e.cpuUS = float64(cpu.Microseconds()) / float64(max(reqs, 1))
	for _, s := range open {
		e.d.end(context.Background(), "hop", s)
	}
	e.rec.report(os.Stdout)
	printKindCosts(os.Stdout, e.costs)
	return nil
}
