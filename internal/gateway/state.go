package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

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
func (g *Gateway) stateReady(ctx context.Context) error {
	if g.redis == nil {
		return nil
	}
	if err := g.redis.Ping(ctx); err != nil {
		return fmt.Errorf("shared state (Redis) unavailable")
	}
	return nil
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
