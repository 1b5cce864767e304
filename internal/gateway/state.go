package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/dpop"
	"github.com/mcpgate/mcpgate/internal/state"
)

// Shared state (state.redis): with it the DPoP replay stores and the rate
// limit are the deployment's, in Redis, and /readyz fails while Redis does
// not answer; without it they stay in this process's memory, as always.

// openState sets g.redis: the handle given in Options, else one opened
// from state.redis (closed by Shutdown), else nil (memory mode).
func (g *Gateway) openState() error {
	g.redis = g.opts.Redis
	if g.redis == nil && g.cfg.State.Redis.Enabled() {
		r, err := state.Open(g.cfg.State.Redis, g.getenv)
		if err != nil {
			return err
		}
		g.redis, g.ownRedis = r, true
	}
	if g.budgets = newBudgets(g.redis, g.cfg.State.Redis.LeaseTTL.Duration, g.log); g.budgets != nil {
		g.streams.shared = g.budgets.budget("stream", g.streams.held)
	}
	if g.redis != nil && g.cfg.Limits.RequestsPerSecond > 0 {
		b := state.NewBuckets(g.redis, g.cfg.Limits.RequestsPerSecond, g.cfg.Limits.Burst)
		g.rate.shared = newSharedRate(b, g.rate, g.cfg.Limits.Burst, g.log)
	}
	return nil
}

// closeState closes the handle openState opened.
func (g *Gateway) closeState() error {
	if g.ownRedis {
		return g.redis.Close()
	}
	return nil
}

// stateReady is the shared state's part of /readyz: nil in memory mode.
// /readyz is public, so Redis is asked at most once per stateProbeEvery
// and the answer reused in between (a flood of probes is not a flood of
// round trips); an outage shows within that long. The probe is a write:
// a Redis that answers PING but refuses writes (out of memory under
// noeviction) fails every DPoP check and initialize, so it is not ready.
func (g *Gateway) stateReady(ctx context.Context) error {
	if g.redis == nil {
		return nil
	}
	p := &g.stateProbe
	p.mu.Lock()
	defer p.mu.Unlock()
	if now := time.Now(); now.Sub(p.at) >= stateProbeEvery || now.Before(p.at) {
		p.err = nil
		if g.redis.Writable(ctx, g.probeInstance()) != nil {
			p.err = errors.New("shared state (Redis) unavailable")
		}
		p.at = time.Now()
	}
	return p.err
}

// probeInstance names this process's readiness key: the shared
// directory's instance id (random per start).
func (g *Gateway) probeInstance() string {
	if g.shared != nil {
		return g.shared.instance
	}
	return "-"
}

// stateProbeEvery bounds how often /readyz asks Redis.
const stateProbeEvery = 500 * time.Millisecond

// stateProbe is the last answer of Redis to /readyz.
type stateProbe struct {
	mu  sync.Mutex // guards at and err; held during the probe, so probes queue behind one
	at  time.Time
	err error
}

// replayStore is the DPoP jti store of the mount u: in Redis (scoped to
// the mount's path, as each mount has its own store in memory), else
// newReplayStore's.
func (g *Gateway) replayStore(u config.Upstream) dpop.ReplayStore {
	if g.redis == nil {
		return newReplayStore(g.cfg.Limits)
	}
	h := sha256.Sum256([]byte(u.Path))
	share := g.cfg.Limits.DPoPReplayPerSubject
	if share <= 0 {
		share = 10000
	}
	return state.NewReplay(g.redis, "mcp-"+hex.EncodeToString(h[:8]), share)
}
