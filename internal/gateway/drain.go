package gateway

import (
	"context"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// A graceful stop (a rolling upgrade's SIGTERM) has two phases:
//
//  1. Drain: /readyz answers 503 "draining" at once, so load balancers
//     take the replica out of rotation, while every request — in flight or
//     new — is still served (/healthz stays 200: the process is healthy,
//     only leaving). `mcpgate serve` holds this phase for shutdown_drain.
//  2. Shutdown: the listeners close (http.Server.Shutdown), long-lived
//     streams end with an SSE retry field so their clients reconnect to
//     another replica, in-flight requests finish within shutdown_timeout,
//     a request that still gets through is refused with 503 + Retry-After
//     (JSON-RPC mcp.CodeUnavailable), and only then are upstream sessions
//     and stdio children stopped.

// childStopBudget bounds stopping upstream sessions and children after the
// in-flight requests: the stdio shutdown sequence (close stdin, wait,
// SIGTERM, wait, SIGKILL) needs its own time even when shutdown_timeout was
// used up by slow requests, so that no child outlives the gateway.
const childStopBudget = 10 * time.Second

// stoppingRetryAfter is the Retry-After of a request refused during the
// final phase: the client's retry reaches a replica that is still ready.
const stoppingRetryAfter = "1"

// Drain starts phase 1 of a graceful stop: /readyz fails from now on while
// everything is still served. Shutdown is phase 2. Idempotent.
func (g *Gateway) Drain() {
	if !g.draining.Swap(true) {
		g.log.Info("draining: /readyz now answers 503; still serving")
	}
}

// Draining reports whether Drain or Shutdown has started.
func (g *Gateway) Draining() bool { return g.draining.Load() }

// readyDraining answers /readyz for a draining replica.
func (g *Gateway) readyDraining(w http.ResponseWriter) bool {
	if !g.draining.Load() {
		return false
	}
	writeJSON(w, http.StatusServiceUnavailable, []byte(`{"ready":false,"status":"draining","error":"this replica is draining before shutdown"}`))
	return true
}

// drainPhases applies the phases to every request. While draining, each
// response closes its connection (Connection: close), so that no client
// holds an idle kept-alive connection that the final phase would close
// under a request it is just sending. Once Shutdown has started, the
// requests that still reach the gateway (an HTTP/2 stream opened before
// GOAWAY, a request racing the close) are refused with 503 — they would
// otherwise race the stopping upstreams. The health probes keep answering.
func (g *Gateway) drainPhases(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.draining.Load() {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Connection", "close")
		if !g.stopping.Load() || r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		unreadGuard(w, r)(h)
		h.Set("Retry-After", stoppingRetryAfter)
		mcp.WriteError(w, http.StatusServiceUnavailable, nil, mcp.CodeUnavailable,
			"this gateway replica is shutting down: retry the request, another replica will answer it", nil)
	})
}

// stopContext is the context for stopping upstream sessions and children:
// ctx's remaining time, but at least childStopBudget.
func stopContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) >= childStopBudget {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(context.WithoutCancel(ctx), childStopBudget)
}
